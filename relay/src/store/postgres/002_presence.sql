-- Where each tunnel's bridge is connected, so that every node knows the tunnel and how
-- its clients authenticate.
CREATE TABLE tunnel_presence (
    name TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    conn BIGINT NOT NULL,
    auth TEXT NOT NULL,
    bridge_version TEXT NOT NULL,
    connected_at BIGINT NOT NULL,
    disconnected_at BIGINT
);
