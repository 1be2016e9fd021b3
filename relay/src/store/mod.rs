//! Persistent state of a relay, in one SQLite file under the data directory: bridge
//! tokens and the tunnel names they own, OAuth clients, authorization codes, access and
//! refresh tokens. Secrets are stored only as SHA-256 digests.
//!
//! Every operation is one short statement or transaction on a local file; callers run
//! them inline (they are rare: connections, OAuth steps; validated access tokens are
//! cached by [`crate::oauth::tokens`]).

use protocol::sync::LockExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::config::sha256;
use crate::observe::trace::TraceEvent;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory {0}: {1}")]
    Dir(String, std::io::Error),
    /// A token label is already used.
    #[error("a token labelled {0:?} already exists")]
    DuplicateLabel(String),
    /// No such token.
    #[error("no token labelled {0:?}")]
    NoSuchToken(String),
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random secret: `prefix` + 32 random bytes in base64url.
pub fn new_secret(prefix: &str) -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("OS randomness");
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// A bridge token as listed by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Row id.
    pub id: i64,
    /// Operator-chosen label.
    pub label: String,
    /// Creation time (epoch seconds).
    pub created: i64,
    /// Revocation time, if revoked.
    pub revoked: Option<i64>,
    /// Tunnel names it owns.
    pub names: Vec<String>,
}

/// What an OAuth grant allows: one client, one tunnel, one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The OAuth client.
    pub client_id: String,
    /// The tunnel name.
    pub tunnel: String,
    /// The resource (the tunnel's public MCP URL): the token's audience.
    pub resource: String,
    /// The bridge token that owned the tunnel when the grant was made.
    pub owner_token: i64,
    /// Granted scope (space-separated).
    pub scope: String,
}

/// A live access token's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// What it grants.
    pub grant: Grant,
    /// When it expires (epoch seconds).
    pub expires: i64,
    /// The token family: one authorization (one consent), kept across refreshes.
    pub family: String,
}

/// An authorization code's stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The grant it leads to.
    pub grant: Grant,
    /// The exact redirect URI of the request.
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// Expiry (epoch seconds).
    pub expires: i64,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id` (random for DCR, the document URL for CIMD).
    pub client_id: String,
    /// `dcr` or `cimd`.
    pub kind: String,
    /// Self-declared name (never shown as truth).
    pub name: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_post` or `client_secret_basic`.
    pub auth_method: String,
    /// SHA-256 of the client secret, for confidential clients.
    pub secret_hash: Option<[u8; 32]>,
    /// The registration (or document) as received, JSON.
    pub metadata: String,
    /// Registration time.
    pub created: i64,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Unknown or expired.
    Invalid,
    /// Already used or revoked: its whole family is now revoked.
    Reused,
}

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS bridge_tokens (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    revoked INTEGER
);
CREATE TABLE IF NOT EXISTS tunnel_names (
    name TEXT PRIMARY KEY,
    token_id INTEGER NOT NULL REFERENCES bridge_tokens(id),
    claimed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    redirect_uris TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    secret_hash BLOB,
    metadata TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_codes (
    hash BLOB PRIMARY KEY,
    client_id TEXT NOT NULL,
    tunnel TEXT NOT NULL,
    resource TEXT NOT NULL,
    owner_token INTEGER NOT NULL,
    scope TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    challenge TEXT NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    family TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_tokens (
    hash BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    tunnel TEXT NOT NULL,
    resource TEXT NOT NULL,
    owner_token INTEGER NOT NULL,
    scope TEXT NOT NULL,
    expires INTEGER NOT NULL,
    family TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS oauth_tokens_family ON oauth_tokens(family);
"#;

/// Tables of the OAuth trace and of client use, added to databases of every age (each
/// statement is idempotent; applied after [`SCHEMA`]). No token, code, secret or request
/// body is ever stored in them.
const TRACE_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS oauth_trace (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    tunnel TEXT,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    reason TEXT NOT NULL,
    client_id TEXT,
    client_name TEXT,
    ip TEXT,
    user_agent TEXT,
    unverified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS oauth_trace_tunnel ON oauth_trace(tunnel, id);
CREATE INDEX IF NOT EXISTS oauth_trace_client ON oauth_trace(client_id);
CREATE TABLE IF NOT EXISTS oauth_client_use (
    tunnel TEXT NOT NULL,
    client_id TEXT NOT NULL,
    first_used INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    PRIMARY KEY (tunnel, client_id)
);
"#;

/// An OAuth client holding live tokens for a tunnel, for its owner's status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedClient {
    /// `client_id`.
    pub client_id: String,
    /// Self-declared name, if any (unverified).
    pub name: Option<String>,
    /// `dcr` or `cimd` (`None` if the client record is gone).
    pub kind: Option<String>,
    /// Its registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// First grant of tokens for the tunnel (epoch seconds), when known.
    pub first_used: Option<i64>,
    /// Last token grant or MCP request on the tunnel (epoch seconds), when known.
    pub last_used: Option<i64>,
}

/// What the store knows of an access or refresh token, live or not (to explain a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    /// `access` or `refresh`.
    pub kind: String,
    /// The grant it carries.
    pub grant: Grant,
    /// Expiry (epoch seconds).
    pub expires: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Columns of `oauth_trace`, in the order [`trace_row`] reads them.
const TRACE_COLUMNS: &str = "id, time, tunnel, step, outcome, error, reason, client_id, \
     client_name, ip, user_agent, unverified";

fn trace_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TraceEvent> {
    Ok(TraceEvent {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        tunnel: r.get(2)?,
        step: r.get(3)?,
        outcome: r.get(4)?,
        error: r.get(5)?,
        reason: r.get(6)?,
        client_id: r.get(7)?,
        client_name: r.get(8)?,
        ip: r.get(9)?,
        user_agent: r.get(10)?,
        unverified: r.get(11)?,
    })
}

/// The relay's database.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `relay.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join("relay.db");
        private_files(&path, true)?;
        let conn = Connection::open(&path)?;
        let store = Self::init(conn)?;
        // SQLite creates the journal files with the database's mode; make sure.
        private_files(&path, false)?;
        Ok(store)
    }

    /// A store that lives in memory (the bridge's embedded relay).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(TRACE_SCHEMA)?;
        // Databases from before unverified trace events were kept apart.
        if conn
            .prepare("SELECT unverified FROM oauth_trace LIMIT 0")
            .is_err()
        {
            conn.execute_batch(
                "ALTER TABLE oauth_trace ADD COLUMN unverified INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.locked()
    }

    // ----- bridge tokens -----------------------------------------------------------

    /// Creates a bridge token; returns it (shown once, stored hashed).
    pub fn create_token(&self, label: &str) -> Result<String, StoreError> {
        let secret = new_secret("brt_");
        self.add_token(label, &secret)?;
        Ok(secret)
    }

    /// Stores a bridge token chosen elsewhere (configured through the environment).
    /// Adding the same token again is a no-op.
    pub fn add_token(&self, label: &str, secret: &str) -> Result<i64, StoreError> {
        self.add_token_hash(label, sha256(secret.as_bytes()))
    }

    /// Stores a bridge token given by its SHA-256 digest; a no-op if already present.
    pub fn add_token_hash(&self, label: &str, hash: [u8; 32]) -> Result<i64, StoreError> {
        let db = self.db();
        if let Some(id) = db
            .query_row(
                "SELECT id FROM bridge_tokens WHERE hash = ?1",
                params![&hash[..]],
                |r| r.get(0),
            )
            .optional()?
        {
            return Ok(id);
        }
        match db.execute(
            "INSERT INTO bridge_tokens (label, hash, created) VALUES (?1, ?2, ?3)",
            params![label, &hash[..], now()],
        ) {
            Ok(_) => Ok(db.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::DuplicateLabel(label.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The live (not revoked) token with this secret.
    pub fn token_id(&self, secret: &str) -> Result<Option<i64>, StoreError> {
        let hash = sha256(secret.as_bytes());
        Ok(self
            .db()
            .query_row(
                "SELECT id FROM bridge_tokens WHERE hash = ?1 AND revoked IS NULL",
                params![&hash[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether a token id is live.
    pub fn token_live(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT 1 FROM bridge_tokens WHERE id = ?1 AND revoked IS NULL",
                params![id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// All tokens with the names they own.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT id, label, created, revoked FROM bridge_tokens ORDER BY id")?;
        let mut tokens: Vec<TokenInfo> = st
            .query_map([], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    label: r.get(1)?,
                    created: r.get(2)?,
                    revoked: r.get(3)?,
                    names: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut st = db.prepare("SELECT name, token_id FROM tunnel_names ORDER BY name")?;
        let names = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for n in names {
            let (name, id) = n?;
            if let Some(t) = tokens.iter_mut().find(|t| t.id == id) {
                t.names.push(name);
            }
        }
        Ok(tokens)
    }

    /// Revokes a token by label. Its names stay reserved; the OAuth grants made on its
    /// authority (access and refresh tokens, unused codes) are revoked with it.
    pub fn revoke_token(&self, label: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM bridge_tokens WHERE label = ?1 AND revoked IS NULL",
                params![label],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Err(StoreError::NoSuchToken(label.to_owned()));
        };
        tx.execute(
            "UPDATE bridge_tokens SET revoked = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        tx.execute(
            "UPDATE oauth_tokens SET revoked = 1 WHERE owner_token = ?1",
            params![id],
        )?;
        tx.execute(
            "UPDATE auth_codes SET used = 1 WHERE owner_token = ?1",
            params![id],
        )?;
        tx.commit()?;
        Ok(())
    }

    // ----- tunnel names ----------------------------------------------------------------

    /// The token owning a name.
    pub fn name_owner(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT token_id FROM tunnel_names WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The token owning a name, if that token is live (not revoked): the only owner on
    /// whose authority OAuth grants for the name are made and honoured.
    pub fn live_owner(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT n.token_id FROM tunnel_names n JOIN bridge_tokens t ON t.id = n.token_id
                 WHERE n.name = ?1 AND t.revoked IS NULL",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Claims a name for a token; `Ok(false)` if another token owns it.
    pub fn claim_name(&self, name: &str, token_id: i64) -> Result<bool, StoreError> {
        let db = self.db();
        let owner: Option<i64> = db
            .query_row(
                "SELECT token_id FROM tunnel_names WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        match owner {
            Some(o) => Ok(o == token_id),
            None => {
                db.execute(
                    "INSERT INTO tunnel_names (name, token_id, claimed) VALUES (?1, ?2, ?3)",
                    params![name, token_id, now()],
                )?;
                Ok(true)
            }
        }
    }

    /// Releases a name (operator action); `false` if it was not claimed.
    pub fn release_name(&self, name: &str) -> Result<bool, StoreError> {
        let db = self.db();
        let released = db.execute("DELETE FROM tunnel_names WHERE name = ?1", params![name])? > 0;
        // The next owner of the name must not see the previous owner's clients.
        db.execute("DELETE FROM oauth_trace WHERE tunnel = ?1", params![name])?;
        db.execute(
            "DELETE FROM oauth_client_use WHERE tunnel = ?1",
            params![name],
        )?;
        Ok(released)
    }

    /// Number of claimed names.
    pub fn name_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM tunnel_names", [], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }

    // ----- OAuth clients ---------------------------------------------------------------

    /// Stores (or replaces) a client.
    pub fn put_client(&self, c: &Client) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT OR REPLACE INTO oauth_clients
             (client_id, kind, name, redirect_uris, auth_method, secret_hash, metadata, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                c.client_id,
                c.kind,
                c.name,
                serde_json::to_string(&c.redirect_uris).expect("json"),
                c.auth_method,
                c.secret_hash.as_ref().map(|h| &h[..]),
                c.metadata,
                c.created
            ],
        )?;
        Ok(())
    }

    /// A client by id.
    pub fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, kind, name, redirect_uris, auth_method, secret_hash, metadata, created
                 FROM oauth_clients WHERE client_id = ?1",
                params![client_id],
                |r| {
                    let uris: String = r.get(3)?;
                    let secret: Option<Vec<u8>> = r.get(5)?;
                    Ok(Client {
                        client_id: r.get(0)?,
                        kind: r.get(1)?,
                        name: r.get(2)?,
                        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                        auth_method: r.get(4)?,
                        secret_hash: secret.and_then(|s| s.try_into().ok()),
                        metadata: r.get(6)?,
                        created: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// Number of dynamically registered clients.
    pub fn dcr_client_count(&self) -> Result<usize, StoreError> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM oauth_clients WHERE kind = 'dcr'",
            [],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }

    // ----- codes and tokens ------------------------------------------------------------

    /// Stores an authorization code (by the hash of its value).
    pub fn put_code(&self, code: &str, c: &CodeGrant) -> Result<(), StoreError> {
        let g = &c.grant;
        self.db().execute(
            "INSERT INTO auth_codes (hash, client_id, tunnel, resource, owner_token, scope,
             redirect_uri, challenge, expires, family) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
            params![
                &sha256(code.as_bytes())[..],
                g.client_id,
                g.tunnel,
                g.resource,
                g.owner_token,
                g.scope,
                c.redirect_uri,
                c.challenge,
                c.expires,
                new_secret("fam_")
            ],
        )?;
        Ok(())
    }

    /// Consumes a code: returns its grant and token family the first time. A second
    /// use returns `None` and revokes every token issued from the first.
    pub fn take_code(&self, code: &str) -> Result<Option<(CodeGrant, String)>, StoreError> {
        let hash = sha256(code.as_bytes());
        let mut db = self.db();
        let tx = db.transaction()?;
        let row = tx
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, redirect_uri, challenge,
                 expires, used, family FROM auth_codes WHERE hash = ?1",
                params![&hash[..]],
                |r| {
                    Ok((
                        code_grant(r)?,
                        r.get::<_, i64>(8)? != 0,
                        r.get::<_, String>(9)?,
                    ))
                },
            )
            .optional()?;
        let result = match row {
            None => None,
            Some((_, true, family)) => {
                tx.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
                None
            }
            Some((c, false, family)) => {
                tx.execute(
                    "UPDATE auth_codes SET used = 1 WHERE hash = ?1",
                    params![&hash[..]],
                )?;
                (c.expires > now()).then_some((c, family))
            }
        };
        tx.commit()?;
        Ok(result)
    }

    /// Stores an access (`kind` = "access") or refresh ("refresh") token.
    pub fn put_token(
        &self,
        kind: &str,
        token: &str,
        g: &Grant,
        expires: i64,
        family: &str,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO oauth_tokens (hash, kind, client_id, tunnel, resource, owner_token, scope,
             expires, family) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            params![
                &sha256(token.as_bytes())[..],
                kind,
                g.client_id,
                g.tunnel,
                g.resource,
                g.owner_token,
                g.scope,
                expires,
                family
            ],
        )?;
        Ok(())
    }

    /// A live access token's grant and expiry.
    pub fn access_token(&self, token: &str) -> Result<Option<AccessGrant>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, expires, family
                 FROM oauth_tokens
                 WHERE hash = ?1 AND kind = 'access' AND revoked = 0 AND expires > ?2",
                params![&sha256(token.as_bytes())[..], now()],
                |r| {
                    Ok(AccessGrant {
                        grant: Grant {
                            client_id: r.get(0)?,
                            tunnel: r.get(1)?,
                            resource: r.get(2)?,
                            owner_token: r.get(3)?,
                            scope: r.get(4)?,
                        },
                        expires: r.get(5)?,
                        family: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Uses a refresh token once: returns its grant and family. Reuse revokes the family.
    pub fn use_refresh(
        &self,
        token: &str,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        let hash = sha256(token.as_bytes());
        let mut db = self.db();
        let tx = db.transaction()?;
        let row = tx
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, expires, family, used, revoked
                 FROM oauth_tokens WHERE hash = ?1 AND kind = 'refresh'",
                params![&hash[..]],
                |r| {
                    Ok((
                        Grant {
                            client_id: r.get(0)?,
                            tunnel: r.get(1)?,
                            resource: r.get(2)?,
                            owner_token: r.get(3)?,
                            scope: r.get(4)?,
                        },
                        r.get::<_, i64>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)? != 0,
                        r.get::<_, i64>(8)? != 0,
                    ))
                },
            )
            .optional()?;
        let result = match row {
            None => Err(RefreshError::Invalid),
            Some((_, _, family, used, revoked)) if used || revoked => {
                tx.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
                Err(RefreshError::Reused)
            }
            Some((_, expires, _, _, _)) if expires <= now() => Err(RefreshError::Invalid),
            Some((g, _, family, _, _)) => {
                tx.execute(
                    "UPDATE oauth_tokens SET used = 1 WHERE hash = ?1",
                    params![&hash[..]],
                )?;
                Ok((g, family))
            }
        };
        tx.commit()?;
        Ok(result)
    }

    /// The grant of a live refresh token, without using it.
    pub fn peek_refresh(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope FROM oauth_tokens
                 WHERE hash = ?1 AND kind = 'refresh'",
                params![&sha256(token.as_bytes())[..]],
                |r| {
                    Ok(Grant {
                        client_id: r.get(0)?,
                        tunnel: r.get(1)?,
                        resource: r.get(2)?,
                        owner_token: r.get(3)?,
                        scope: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// The client a token (access or refresh) was issued to.
    pub fn token_client(&self, token: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id FROM oauth_tokens WHERE hash = ?1",
                params![&sha256(token.as_bytes())[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Revokes a token (RFC 7009): a refresh token takes its family with it.
    pub fn revoke(&self, token: &str) -> Result<(), StoreError> {
        let hash = sha256(token.as_bytes());
        let db = self.db();
        let family: Option<(String, String)> = db
            .query_row(
                "SELECT kind, family FROM oauth_tokens WHERE hash = ?1",
                params![&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match family {
            Some((kind, family)) if kind == "refresh" => {
                db.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
            }
            Some(_) => {
                db.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE hash = ?1",
                    params![&hash[..]],
                )?;
            }
            None => {}
        }
        Ok(())
    }

    /// Removes expired codes and tokens.
    pub fn sweep(&self) -> Result<(), StoreError> {
        let db = self.db();
        let t = now();
        db.execute(
            "DELETE FROM auth_codes WHERE expires < ?1 - 3600",
            params![t],
        )?;
        db.execute(
            "DELETE FROM oauth_tokens WHERE expires < ?1 - 86400",
            params![t],
        )?;
        db.execute(
            "DELETE FROM oauth_client_use WHERE last_used < ?1 - 90 * 86400",
            params![t],
        )?;
        Ok(())
    }

    // ----- OAuth trace and client use ------------------------------------------------

    /// Appends an event to the OAuth trace and keeps only the newest `keep` events of its
    /// tunnel (relay-wide events, without a tunnel, count as one more tunnel) that are,
    /// like it, verified or not: unverified events never evict the others. Returns the
    /// event's id.
    pub fn trace_add(&self, e: &TraceEvent, keep: usize) -> Result<i64, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO oauth_trace (time, tunnel, step, outcome, error, reason, client_id,
             client_name, ip, user_agent, unverified)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
            params![
                e.time_ms,
                e.tunnel,
                e.step,
                e.outcome,
                e.error,
                e.reason,
                e.client_id,
                e.client_name,
                e.ip,
                e.user_agent,
                e.unverified
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM oauth_trace WHERE tunnel IS ?1 AND unverified = ?3 AND id <= (
             SELECT id FROM oauth_trace WHERE tunnel IS ?1 AND unverified = ?3
             ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![e.tunnel, keep as i64, e.unverified],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The newest `limit` events of a tunnel's trace, newest first. They include the
    /// relay-wide events that belong to the tunnel's clients: those of a registered
    /// client (its own `client_id`) that appears in the tunnel's trace, and those without
    /// a client (metadata fetches) from an address that appears in the tunnel's trace
    /// within `link_ms` of them.
    pub fn trace_for_tunnel(
        &self,
        tunnel: &str,
        limit: usize,
        link_ms: i64,
    ) -> Result<Vec<TraceEvent>, StoreError> {
        let db = self.db();
        let sql = format!(
            "SELECT {TRACE_COLUMNS} FROM oauth_trace WHERE tunnel = ?1
             UNION ALL
             SELECT {TRACE_COLUMNS} FROM oauth_trace w WHERE w.tunnel IS NULL AND (
               (w.client_id IS NOT NULL AND w.client_id NOT LIKE 'https://%' AND w.client_id IN
                 (SELECT c.client_id FROM oauth_trace c
                  WHERE c.tunnel = ?1 AND c.client_id IS NOT NULL))
               OR (w.client_id IS NULL AND w.ip IS NOT NULL AND EXISTS
                 (SELECT 1 FROM oauth_trace t
                  WHERE t.tunnel = ?1 AND t.ip = w.ip AND ABS(t.time - w.time) <= ?3)))
             ORDER BY id DESC LIMIT ?2"
        );
        let mut st = db.prepare(&sql)?;
        let rows = st.query_map(params![tunnel, limit as i64, link_ms], trace_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` events of the whole trace (every tunnel and the relay-wide
    /// events), newest first; only the relay-wide ones with `relay_wide_only`.
    pub fn trace_all(
        &self,
        limit: usize,
        relay_wide_only: bool,
    ) -> Result<Vec<TraceEvent>, StoreError> {
        let db = self.db();
        let filter = if relay_wide_only {
            "WHERE tunnel IS NULL"
        } else {
            ""
        };
        let sql =
            format!("SELECT {TRACE_COLUMNS} FROM oauth_trace {filter} ORDER BY id DESC LIMIT ?1");
        let mut st = db.prepare(&sql)?;
        let rows = st.query_map(params![limit as i64], trace_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Notes that `client_id` got tokens for, or used, `tunnel` at `at` (epoch seconds).
    pub fn client_used(&self, tunnel: &str, client_id: &str, at: i64) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO oauth_client_use (tunnel, client_id, first_used, last_used)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (tunnel, client_id) DO UPDATE
             SET last_used = MAX(last_used, excluded.last_used)",
            params![tunnel, client_id, at],
        )?;
        Ok(())
    }

    /// The clients holding live tokens for `tunnel` granted under its current owner, most
    /// recently used first.
    pub fn authorized_clients(&self, tunnel: &str) -> Result<Vec<AuthorizedClient>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT t.client_id, MAX(c.name), MAX(c.kind), MAX(c.redirect_uris),
                    MAX(u.first_used), MAX(u.last_used)
             FROM oauth_tokens t
             LEFT JOIN oauth_clients c ON c.client_id = t.client_id
             LEFT JOIN oauth_client_use u ON u.tunnel = t.tunnel AND u.client_id = t.client_id
             WHERE t.tunnel = ?1 AND t.revoked = 0 AND t.expires > ?2
               AND NOT (t.kind = 'refresh' AND t.used = 1)
               AND t.owner_token = (SELECT token_id FROM tunnel_names WHERE name = ?1)
             GROUP BY t.client_id
             ORDER BY MAX(u.last_used) DESC, t.client_id",
        )?;
        let rows = st.query_map(params![tunnel, now()], |r| {
            let uris: Option<String> = r.get(3)?;
            Ok(AuthorizedClient {
                client_id: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                redirect_uris: uris
                    .and_then(|u| serde_json::from_str(&u).ok())
                    .unwrap_or_default(),
                first_used: r.get(4)?,
                last_used: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes every token `client_id` holds for `tunnel` (refresh token families with
    /// them) and burns its unused codes for it; returns how many tokens were live.
    pub fn revoke_client(&self, tunnel: &str, client_id: &str) -> Result<usize, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx.execute(
            "UPDATE oauth_tokens SET revoked = 1
             WHERE tunnel = ?1 AND client_id = ?2 AND revoked = 0",
            params![tunnel, client_id],
        )?;
        tx.execute(
            "UPDATE auth_codes SET used = 1 WHERE tunnel = ?1 AND client_id = ?2",
            params![tunnel, client_id],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// An authorization code's request and whether it was used, without using it (to
    /// explain a refusal).
    pub fn peek_code(&self, code: &str) -> Result<Option<(CodeGrant, bool)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, redirect_uri, challenge,
                 expires, used FROM auth_codes WHERE hash = ?1",
                params![&sha256(code.as_bytes())[..]],
                |r| Ok((code_grant(r)?, r.get::<_, i64>(8)? != 0)),
            )
            .optional()?)
    }

    /// What the store knows of a token, live or not.
    pub fn token_state(&self, token: &str) -> Result<Option<TokenState>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT kind, client_id, tunnel, resource, owner_token, scope, expires, revoked
                 FROM oauth_tokens WHERE hash = ?1",
                params![&sha256(token.as_bytes())[..]],
                |r| {
                    Ok(TokenState {
                        kind: r.get(0)?,
                        grant: Grant {
                            client_id: r.get(1)?,
                            tunnel: r.get(2)?,
                            resource: r.get(3)?,
                            owner_token: r.get(4)?,
                            scope: r.get(5)?,
                        },
                        expires: r.get(6)?,
                        revoked: r.get::<_, i64>(7)? != 0,
                    })
                },
            )
            .optional()?)
    }
}

/// Makes the database file and its WAL and shared-memory files readable by their owner
/// only (0600), creating the database file that way first if `create` and it is missing.
fn private_files(db: &Path, create: bool) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |p: &Path, e: std::io::Error| StoreError::Dir(p.display().to_string(), e);
        if create && !db.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(db)
                .map_err(|e| io(db, e))?;
        }
        let mut names = vec![db.to_path_buf()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            names.push(name.into());
        }
        for p in names {
            match std::fs::metadata(&p) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| io(&p, e))?;
                }
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (db, create);
    Ok(())
}

/// A code's grant from the first eight columns of an `auth_codes` row (client_id, tunnel,
/// resource, owner_token, scope, redirect_uri, challenge, expires).
fn code_grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<CodeGrant> {
    Ok(CodeGrant {
        grant: Grant {
            client_id: r.get(0)?,
            tunnel: r.get(1)?,
            resource: r.get(2)?,
            owner_token: r.get(3)?,
            scope: r.get(4)?,
        },
        redirect_uri: r.get(5)?,
        challenge: r.get(6)?,
        expires: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            client_id: "c".into(),
            tunnel: "t1".into(),
            resource: "https://r/t1/mcp".into(),
            owner_token: 1,
            scope: "mcp".into(),
        }
    }

    #[test]
    fn tokens_and_names() {
        let s = Store::in_memory().unwrap();
        let a = s.create_token("alice").unwrap();
        let b = s.create_token("bob").unwrap();
        assert!(matches!(
            s.create_token("alice"),
            Err(StoreError::DuplicateLabel(_))
        ));
        let ida = s.token_id(&a).unwrap().unwrap();
        let idb = s.token_id(&b).unwrap().unwrap();
        assert!(s.claim_name("files", ida).unwrap());
        assert!(s.claim_name("files", ida).unwrap());
        assert!(!s.claim_name("files", idb).unwrap());
        s.revoke_token("alice").unwrap();
        assert_eq!(s.token_id(&a).unwrap(), None);
        // A revoked token's name stays reserved until released.
        assert!(!s.claim_name("files", idb).unwrap());
        assert!(s.release_name("files").unwrap());
        assert!(s.claim_name("files", idb).unwrap());
        let list = s.list_tokens().unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].revoked.is_some());
        assert_eq!(list[1].names, vec!["files".to_string()]);
        assert_eq!(s.add_token("env", &b).unwrap(), idb);
    }

    #[test]
    fn revoking_a_bridge_token_revokes_its_grants() {
        let s = Store::in_memory().unwrap();
        let t = s.create_token("alice").unwrap();
        let id = s.token_id(&t).unwrap().unwrap();
        assert!(s.claim_name("t1", id).unwrap());
        let g = Grant {
            owner_token: id,
            ..grant()
        };
        s.put_token("access", "at", &g, now() + 60, "f").unwrap();
        s.put_token("refresh", "rt", &g, now() + 60, "f").unwrap();
        let code = CodeGrant {
            grant: g,
            redirect_uri: "https://x/cb".into(),
            challenge: "ch".into(),
            expires: now() + 60,
        };
        s.put_code("code", &code).unwrap();
        assert_eq!(s.live_owner("t1").unwrap(), Some(id));
        s.revoke_token("alice").unwrap();
        assert_eq!(
            s.name_owner("t1").unwrap(),
            Some(id),
            "the name stays reserved"
        );
        assert_eq!(s.live_owner("t1").unwrap(), None);
        assert!(s.access_token("at").unwrap().is_none());
        assert!(s.use_refresh("rt").unwrap().is_err());
        assert!(s.take_code("code").unwrap().is_none());
        assert!(matches!(
            s.revoke_token("alice"),
            Err(StoreError::NoSuchToken(_))
        ));
    }

    #[test]
    fn codes_are_single_use_and_reuse_revokes() {
        let s = Store::in_memory().unwrap();
        let c = CodeGrant {
            grant: grant(),
            redirect_uri: "https://x/cb".into(),
            challenge: "ch".into(),
            expires: now() + 60,
        };
        s.put_code("code1", &c).unwrap();
        let (got, family) = s.take_code("code1").unwrap().unwrap();
        assert_eq!(got, c);
        s.put_token("access", "at1", &got.grant, now() + 60, &family)
            .unwrap();
        assert!(s.access_token("at1").unwrap().is_some());
        assert!(s.take_code("code1").unwrap().is_none());
        assert!(s.access_token("at1").unwrap().is_none(), "reuse revokes");
        assert!(s.take_code("nope").unwrap().is_none());
    }

    #[test]
    fn refresh_rotation() {
        let s = Store::in_memory().unwrap();
        s.put_token("refresh", "rt1", &grant(), now() + 60, "f1")
            .unwrap();
        s.put_token("access", "at1", &grant(), now() + 60, "f1")
            .unwrap();
        let (g, fam) = s.use_refresh("rt1").unwrap().unwrap();
        assert_eq!(g, grant());
        s.put_token("refresh", "rt2", &g, now() + 60, &fam).unwrap();
        assert_eq!(s.use_refresh("rt1").unwrap(), Err(RefreshError::Reused));
        assert_eq!(
            s.use_refresh("rt2").unwrap(),
            Err(RefreshError::Reused),
            "family revoked"
        );
        assert!(s.access_token("at1").unwrap().is_none());
        assert_eq!(s.use_refresh("zz").unwrap(), Err(RefreshError::Invalid));
        s.put_token("access", "at9", &grant(), now() - 1, "f9")
            .unwrap();
        assert!(s.access_token("at9").unwrap().is_none(), "expired");
    }

    #[cfg(unix)]
    #[test]
    fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("relay-store-{}", new_secret("")));
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions()
                .mode()
                & 0o777
        };
        {
            let s = Store::open(&dir).unwrap();
            s.create_token("t").unwrap();
            for name in ["relay.db", "relay.db-wal", "relay.db-shm"] {
                assert_eq!(mode(name), 0o600, "{name}");
            }
            assert_eq!(mode(""), 0o700, "the directory");
        }
        // A database left readable by others (an older relay) is made private on open.
        for name in ["relay.db", "relay.db-wal", "relay.db-shm"] {
            if dir.join(name).exists() {
                std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
        }
        let s = Store::open(&dir).unwrap();
        s.create_token("u").unwrap();
        for name in ["relay.db", "relay.db-wal", "relay.db-shm"] {
            assert_eq!(mode(name), 0o600, "{name} after reopening");
        }
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!("relay-store-{}", new_secret("")));
        {
            let s = Store::open(&dir).unwrap();
            s.create_token("t").unwrap();
            s.put_token("access", "at", &grant(), now() + 60, "f")
                .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.list_tokens().unwrap().len(), 1);
        assert!(s.access_token("at").unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
