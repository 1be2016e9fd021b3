//! The SQLite backend: one file under the data directory (`relay.db`), or memory for the
//! bridge's embedded relay. Every operation is one short statement or transaction on a
//! local file, run inline by the caller (they are rare: connections, OAuth steps;
//! validated access tokens are cached by the OAuth access check).
//!
//! Single-use steps are single conditional statements (`UPDATE … WHERE used = 0
//! RETURNING`, `INSERT … ON CONFLICT DO NOTHING`), and write transactions take the write
//! lock first (`BEGIN IMMEDIATE`), so two handles on one file (two processes) never both
//! win one.

use protocol::sync::LockExt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

mod consents;
mod nodes;
mod oauth;
mod trace;
mod tunnels;

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
CREATE TABLE IF NOT EXISTS revoked_families (
    family TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_consents (
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
    created_ms INTEGER NOT NULL,
    decision INTEGER,
    approved_owner INTEGER
);
CREATE INDEX IF NOT EXISTS oauth_consents_code ON oauth_consents(code_norm);
CREATE TABLE IF NOT EXISTS status_sessions (
    id_hash BLOB PRIMARY KEY,
    token_id INTEGER,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tunnel_snapshots (
    name TEXT PRIMARY KEY,
    token_id INTEGER NOT NULL,
    initialize BLOB NOT NULL,
    tools BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tunnel_presence (
    name TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    conn INTEGER NOT NULL,
    auth TEXT NOT NULL,
    bridge_version TEXT NOT NULL,
    connected_at INTEGER NOT NULL,
    disconnected_at INTEGER,
    gauges TEXT,
    recent TEXT
);
CREATE TABLE IF NOT EXISTS relay_nodes (
    node TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_failures (
    kind TEXT NOT NULL,
    addr TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_failures_addr ON auth_failures(kind, addr, at_ms);
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

/// The relay's database in SQLite.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
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
        // Databases whose tunnel presence predates the heartbeats' gauges.
        if conn
            .prepare("SELECT gauges FROM tunnel_presence LIMIT 0")
            .is_err()
        {
            conn.execute_batch(
                "ALTER TABLE tunnel_presence ADD COLUMN gauges TEXT;
                 ALTER TABLE tunnel_presence ADD COLUMN recent TEXT;",
            )?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Every row of each `(table, columns)` (columns comma-separated, in that order), read
    /// in one transaction (one consistent state, even with a relay still writing), for
    /// copying the database elsewhere. Names come from the caller's own constants.
    pub fn rows(
        &self,
        tables: &[(&str, String)],
    ) -> Result<Vec<Vec<Vec<rusqlite::types::Value>>>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut out = Vec::new();
        for (table, columns) in tables {
            let n = columns.split(',').count();
            let mut st = tx.prepare(&format!("SELECT {columns} FROM {table}"))?;
            let rows = st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())?;
            out.push(rows.collect::<Result<_, _>>()?);
        }
        Ok(out)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.locked()
    }

    /// Runs `f` in a transaction that holds the write lock from its start, so that what it
    /// reads cannot change before it writes (another handle on the file waits, up to the
    /// busy timeout).
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::*;
    use crate::store::{new_secret, now};

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
        let s = SqliteStore::in_memory().unwrap();
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
        let s = SqliteStore::in_memory().unwrap();
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
        let s = SqliteStore::in_memory().unwrap();
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
        let s = SqliteStore::in_memory().unwrap();
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
            let s = SqliteStore::open(&dir).unwrap();
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
        let s = SqliteStore::open(&dir).unwrap();
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
            let s = SqliteStore::open(&dir).unwrap();
            s.create_token("t").unwrap();
            s.put_token("access", "at", &grant(), now() + 60, "f")
                .unwrap();
        }
        let s = SqliteStore::open(&dir).unwrap();
        assert_eq!(s.list_tokens().unwrap().len(), 1);
        assert!(s.access_token("at").unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
