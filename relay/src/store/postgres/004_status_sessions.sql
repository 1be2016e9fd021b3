-- Status-page sessions (by the digest of their id), so that any node knows a signed-in
-- browser.
CREATE TABLE status_sessions (
    id_hash BYTEA PRIMARY KEY,
    token_id BIGINT,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);
