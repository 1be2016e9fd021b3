-- Each node's heartbeat (every 5 s), the gauges and newest calls of the tunnels it holds
-- (so that every node's status page shows them), and failed sign-ins (so that a guesser
-- gets the same few tries however many nodes the load balancer spreads them over).
ALTER TABLE tunnel_presence ADD COLUMN gauges TEXT, ADD COLUMN recent TEXT;
CREATE TABLE relay_nodes (
    node TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE auth_failures (
    kind TEXT NOT NULL,
    addr TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX auth_failures_addr ON auth_failures (kind, addr, at_ms);
