//! Persistent state of a relay: bridge tokens and the tunnel names they own, OAuth
//! clients, authorization codes, access and refresh tokens, the OAuth trace. Secrets are
//! stored only as SHA-256 digests.
//!
//! One async API, [`Store`], over two backends:
//! - SQLite ([`sqlite`]): one file in the data directory, or memory for the bridge's
//!   embedded relay. Its steps are microseconds on a local file and run inline.
//! - PostgreSQL (`postgres`, the cargo feature of the same name): one database that several
//!   relay nodes share, through a connection pool.
//!
//! Every single-use step (a code redeemed, a refresh token rotated, a name claimed, a token
//! added) is atomic on both, so two handles (two processes, two nodes) never both win one.
//! The hot path touches neither: validated access tokens are cached by the OAuth access
//! check.

use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(feature = "postgres")]
pub mod copy;
pub mod events;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod records;
pub mod sqlite;
pub mod trace;

pub use records::{
    AccessGrant, AuthorizedClient, Beat, Client, CodeGrant, Consent, Grant, Issue, NODE_SILENT_MS,
    Presence, RefreshError, TokenInfo, TokenState,
};
use trace::TraceEvent;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {}", postgres::message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("PostgreSQL connection: {0}")]
    Pool(String),
    /// The database is not one this relay may use (a newer schema, another public URL).
    #[error("{0}")]
    Refused(String),
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
    let b = crate::util::random::bytes::<32>();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// Where a relay keeps its state. (Its `Debug` hides a database URL's password.)
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Storage {
    /// In memory, gone when the process ends (the bridge's embedded relay).
    #[default]
    Memory,
    /// `relay.db` in this data directory.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database (`postgres://…`), shared by every node given the same URL.
    Postgres(String),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Storage {
    /// What it is, for logs: the directory, or the database URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory".into(),
            Self::Sqlite(dir) => format!("SQLite in {}", dir.display()),
            Self::Postgres(url) => format!("PostgreSQL at {}", redact_url(url)),
        }
    }
}

/// A database URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// The relay's database: one of the backends, behind one async API.
pub enum Store {
    /// SQLite: a file, or memory.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (creating if needed) `relay.db` in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        Ok(Self::Sqlite(sqlite::SqliteStore::open(dir)?))
    }

    /// A store that lives in memory (the bridge's embedded relay).
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self::Sqlite(sqlite::SqliteStore::in_memory()?))
    }

    /// Opens the store `storage` names. For PostgreSQL this applies the migrations and,
    /// given `public_url`, checks (or records) that the database belongs to a relay at
    /// that URL: nodes sharing a database must share issuer and audience.
    pub async fn connect(storage: &Storage, public_url: Option<&str>) -> Result<Self, StoreError> {
        match storage {
            Storage::Memory => Self::in_memory(),
            Storage::Sqlite(dir) => Self::open(dir),
            #[cfg(feature = "postgres")]
            Storage::Postgres(url) => Ok(Self::Postgres(
                postgres::PgStore::connect(url, public_url).await?,
            )),
            #[cfg(not(feature = "postgres"))]
            Storage::Postgres(_) => {
                let _ = public_url;
                Err(StoreError::Refused(
                    "this build of the relay has no PostgreSQL support (cargo feature `postgres`)"
                        .into(),
                ))
            }
        }
    }

    /// The database's announcements of what other nodes (or commands) changed, for a
    /// backend that several nodes share; `None` for SQLite, whose other writers (the
    /// commands) are found by polling.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<events::Event>> {
        match self {
            Self::Sqlite(_) => None,
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => Some(p.subscribe()),
        }
    }

    /// Announces `event` to every node sharing the store (nothing for a store of one
    /// node's own).
    pub async fn announce(&self, event: &events::Event) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(_) => {
                let _ = event;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => p.announce(event).await,
        }
    }

    /// Whether the store announces changes to every node sharing it (see [`Self::subscribe`]).
    pub fn announces(&self) -> bool {
        !matches!(self, Self::Sqlite(_))
    }
}

/// The async API: each method runs on whichever backend the store is (SQLite inline, as
/// its steps are a local file's; PostgreSQL awaited on the pool).
macro_rules! backends {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    match self {
                        Self::Sqlite(s) => s.$name($($arg),*),
                        #[cfg(feature = "postgres")]
                        Self::Postgres(p) => p.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

backends! {
    /// Creates a bridge token; returns it (shown once, stored hashed).
    fn create_token(&self, label: &str) -> String;
    /// Stores a bridge token chosen elsewhere (configured through the environment).
    /// Adding the same token again is a no-op.
    fn add_token(&self, label: &str, secret: &str) -> i64;
    /// Stores a bridge token given by its SHA-256 digest; a no-op if already present,
    /// [`StoreError::DuplicateLabel`] if another token has the label.
    fn add_token_hash(&self, label: &str, hash: [u8; 32]) -> i64;
    /// The live (not revoked) token with this secret.
    fn token_id(&self, secret: &str) -> Option<i64>;
    /// Whether a token id is live.
    fn token_live(&self, id: i64) -> bool;
    /// Those of `ids` whose bridge token is revoked (or gone), in one query.
    fn revoked_among(&self, ids: &[i64]) -> Vec<i64>;
    /// All tokens with the names they own.
    fn list_tokens(&self) -> Vec<TokenInfo>;
    /// Revokes a token by label. Its names stay reserved; the OAuth grants made on its
    /// authority (access and refresh tokens, unused codes) are revoked with it.
    fn revoke_token(&self, label: &str) -> ();
    /// The token owning a name.
    fn name_owner(&self, name: &str) -> Option<i64>;
    /// The token owning a name, if that token is live: the only owner on whose authority
    /// OAuth grants for the name are made and honoured.
    fn live_owner(&self, name: &str) -> Option<i64>;
    /// Claims a name for a token; `false` if another token owns it.
    fn claim_name(&self, name: &str, token_id: i64) -> bool;
    /// Releases a name (operator action) and forgets its trace and clients; `false` if
    /// it was not claimed.
    fn release_name(&self, name: &str) -> bool;
    /// Number of claimed names.
    fn name_count(&self) -> usize;
    /// Records that `node` holds tunnel `name`'s bridge (connection `conn`) since now.
    fn set_presence(&self, name: &str, node: &str, conn: i64, auth: &str, bridge_version: &str) -> ();
    /// Records that connection `conn` of tunnel `name` on `node` ended (if it is still the
    /// one recorded).
    fn clear_presence(&self, name: &str, node: &str, conn: i64) -> ();
    /// Where tunnel `name`'s bridge is (or last was) connected.
    fn presence(&self, name: &str) -> Option<Presence>;
    /// Says that `node` (started at `started_ms`, running `version`) is alive, and
    /// records its tunnels' gauges and newest calls, in one statement per table.
    fn heartbeat(&self, node: &str, started_ms: i64, version: &str, beats: &[Beat]) -> ();
    /// Records a failed sign-in (`kind`: which secret) from address key `addr`, so that
    /// every node counts it.
    fn add_auth_failure(&self, kind: &str, addr: &str, at_ms: i64) -> ();
    /// Failed sign-ins of `kind` from `addr` since `since_ms`, on every node.
    fn auth_failures(&self, kind: &str, addr: &str, since_ms: i64) -> usize;
    /// Stores a consent, forgetting those created before `live_after_ms`; `false` (and
    /// nothing stored) if `max` are live (on a shared store, nodes storing at once may
    /// pass it by a few). A shared store announces it to every node.
    fn put_consent(&self, c: &Consent, max: usize, live_after_ms: i64) -> bool;
    /// A consent created at or after `live_after_ms`.
    fn consent(&self, id: &str, live_after_ms: i64) -> Option<Consent>;
    /// Removes a live consent and returns it (it is used once).
    fn take_consent(&self, id: &str, live_after_ms: i64) -> Option<Consent>;
    /// Records the decision on a live, undecided consent of `tunnel`; an approval names
    /// the owner (bridge token id) on whose authority it was made. `false` if there was
    /// none to decide.
    fn decide_consent(&self, id: &str, tunnel: &str, approved_owner: Option<i64>, live_after_ms: i64) -> bool;
    /// The live consent showing this code (normalized: letters and digits, upper case).
    fn consent_by_code(&self, code_norm: &str, live_after_ms: i64) -> Option<Consent>;
    /// The undecided consents of `tunnel` created at or after `live_after_ms`, oldest
    /// first (at most 100): shown again to a bridge that (re)connects to a node of
    /// several, whose announcement it may have missed.
    fn pending_consents(&self, tunnel: &str, live_after_ms: i64) -> Vec<Consent>;
    /// Stores a status-page session (by the digest of its id): the bridge token it is
    /// for, or `None` for the operator; forgets those last seen before `seen_after_ms`.
    fn put_session(&self, id_hash: [u8; 32], token_id: Option<i64>, csrf: &str, now_ms: i64, seen_after_ms: i64) -> ();
    /// A live session (created at or after `created_after_ms`, seen at or after
    /// `seen_after_ms`), marked seen at `now_ms`: its bridge token (`None`: the operator)
    /// and CSRF token.
    fn touch_session(&self, id_hash: [u8; 32], now_ms: i64, created_after_ms: i64, seen_after_ms: i64) -> Option<(Option<i64>, String)>;
    /// Ends a session.
    fn close_session(&self, id_hash: [u8; 32]) -> ();
    /// Keeps the last snapshot (`initialize` and `tools/list` results) a bridge of
    /// `token_id` sent for `name`, for offline answers on any node.
    fn put_snapshot(&self, name: &str, token_id: i64, initialize: &[u8], tools: &[u8]) -> ();
    /// The last snapshot of `name`: the bridge token it came from, `initialize`, `tools`.
    fn snapshot(&self, name: &str) -> Option<(i64, Vec<u8>, Vec<u8>)>;
    /// Stores (or replaces) an OAuth client.
    fn put_client(&self, c: &Client) -> ();
    /// A client by id.
    fn client(&self, client_id: &str) -> Option<Client>;
    /// Number of dynamically registered clients.
    fn dcr_client_count(&self) -> usize;
    /// Stores an authorization code (by the hash of its value).
    fn put_code(&self, code: &str, c: &CodeGrant) -> ();
    /// Consumes a code: its grant and token family the first time. A second use gets
    /// `None` and revokes every token issued from the first, now or later.
    fn take_code(&self, code: &str) -> Option<(CodeGrant, String)>;
    /// [`Self::take_code`], storing `issue`'s tokens (of the code's grant and family) in
    /// the same transaction when it succeeds.
    fn redeem_code(&self, code: &str, issue: &Issue) -> Option<(CodeGrant, String)>;
    /// Stores an access (`kind` = "access") or refresh ("refresh") token; one of a
    /// revoked family is stored revoked.
    fn put_token(&self, kind: &str, token: &str, g: &Grant, expires: i64, family: &str) -> ();
    /// A live access token's grant and expiry.
    fn access_token(&self, token: &str) -> Option<AccessGrant>;
    /// Uses a refresh token once: its grant and family. Reuse revokes the family.
    fn use_refresh(&self, token: &str) -> Result<(Grant, String), RefreshError>;
    /// [`Self::use_refresh`], storing `issue`'s tokens (of the refresh token's grant and
    /// family) in the same transaction when it succeeds.
    fn rotate_refresh(&self, token: &str, issue: &Issue) -> Result<(Grant, String), RefreshError>;
    /// The grant of a refresh token, without using it.
    fn peek_refresh(&self, token: &str) -> Option<Grant>;
    /// The client a token (access or refresh) was issued to.
    fn token_client(&self, token: &str) -> Option<String>;
    /// Revokes a token (RFC 7009): a refresh token takes its family with it.
    fn revoke(&self, token: &str) -> ();
    /// Removes expired codes and tokens.
    fn sweep(&self) -> ();
    /// Notes that `client_id` got tokens for, or used, `tunnel` at `at` (epoch seconds).
    fn client_used(&self, tunnel: &str, client_id: &str, at: i64) -> ();
    /// The clients holding live tokens for `tunnel` granted under its current owner, most
    /// recently used first.
    fn authorized_clients(&self, tunnel: &str) -> Vec<AuthorizedClient>;
    /// Revokes every token `client_id` holds for `tunnel` and burns its unused codes for
    /// it; returns how many tokens were live.
    fn revoke_client(&self, tunnel: &str, client_id: &str) -> usize;
    /// An authorization code's request and whether it was used, without using it.
    fn peek_code(&self, code: &str) -> Option<(CodeGrant, bool)>;
    /// What the store knows of a token, live or not.
    fn token_state(&self, token: &str) -> Option<TokenState>;
    /// Appends an event to the OAuth trace, keeping the newest `keep` of its kind for its
    /// tunnel; returns its id.
    fn trace_add(&self, e: &TraceEvent, keep: usize) -> i64;
    /// The newest `limit` events of a tunnel's trace (with the relay-wide events of its
    /// clients), newest first.
    fn trace_for_tunnel(&self, tunnel: &str, limit: usize, link_ms: i64) -> Vec<TraceEvent>;
    /// The newest `limit` events of the whole trace, newest first; only the relay-wide
    /// ones with `relay_wide_only`.
    fn trace_all(&self, limit: usize, relay_wide_only: bool) -> Vec<TraceEvent>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_logged_without_their_password() {
        assert_eq!(
            redact_url("postgres://relay:s3cret@db.internal:5432/relay"),
            "postgres://relay:***@db.internal:5432/relay"
        );
        assert_eq!(
            redact_url("postgres://db/relay?sslmode=require"),
            "postgres://db/relay?sslmode=require"
        );
        assert!(!redact_url("not a url with s3cret").contains("s3cret"));
        let storage = Storage::Postgres("postgres://relay:s3cret@db/relay".into());
        assert!(!format!("{storage:?}").contains("s3cret"));
    }
}
