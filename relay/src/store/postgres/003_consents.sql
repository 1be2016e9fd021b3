-- Authorizations waiting for a tunnel's owner, so that any node can show, decide and
-- finish them.
CREATE TABLE oauth_consents (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    code_norm TEXT NOT NULL,
    csrf TEXT NOT NULL,
    tunnel TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_display TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    state TEXT,
    challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    decision BOOLEAN,
    approved_owner BIGINT
);
CREATE INDEX oauth_consents_code ON oauth_consents(code_norm);
