-- Each tunnel's last snapshot (its server's initialize and tools/list results), so that
-- any node answers it offline.
CREATE TABLE tunnel_snapshots (
    name TEXT PRIMARY KEY,
    token_id BIGINT NOT NULL,
    initialize BYTEA NOT NULL,
    tools BYTEA NOT NULL,
    updated_ms BIGINT NOT NULL
);
