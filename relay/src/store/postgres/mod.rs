//! The PostgreSQL backend: one database that several relay nodes share, through a pool
//! of connections (tokio-postgres with deadpool).
//!
//! - **Migrations** (the numbered `NNN_*.sql` files beside this one) are applied in one
//!   transaction under an advisory lock, recording the schema version, so nodes starting
//!   together apply each one once. A node refuses a database whose schema is newer than
//!   it knows (a newer release migrated it), and one whose recorded public URL differs
//!   from its own: issuer and token audience must be the same on every node.
//! - **Single-use steps** are conditional statements (`UPDATE … WHERE NOT used
//!   RETURNING`, `INSERT … ON CONFLICT DO NOTHING`), whose row locks make concurrent
//!   attempts on other connections wait and then see the winner's write.
//! - Every read goes to the one database: a token issued through one node is used through
//!   another moments later.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

use super::StoreError;

mod consents;
mod listen;
mod nodes;
mod oauth;
pub mod tls;
mod trace;
mod tunnels;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("001_init.sql"),
    include_str!("002_presence.sql"),
    include_str!("003_consents.sql"),
    include_str!("004_status_sessions.sql"),
    include_str!("005_snapshots.sql"),
    include_str!("006_heartbeats.sql"),
];

/// The newest schema this relay knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock held while migrating (any constant; "mcp-relay").
const MIGRATION_LOCK: i64 = 0x6d63_702d_7265_6c61;

/// Key of the advisory lock of the hourly sweep: one node sweeps at a time.
const SWEEP_LOCK: i64 = MIGRATION_LOCK + 1;

/// Connections per node: OAuth steps, connecting bridges, tokens not checked lately, the
/// OAuth trace, presence and snapshot writes, consents and status-page sessions use them
/// (plus one connection of its own for the announcements).
const POOL_SIZE: usize = 8;

/// Longest wait for a connection (from the pool, or a new one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay's database in PostgreSQL.
pub struct PgStore {
    pool: Pool,
    /// What the listener connects with (its own connection, outside the pool).
    listen_with: (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
    /// The announcements heard, once something subscribed.
    events: std::sync::OnceLock<tokio::sync::broadcast::Sender<crate::store::events::Event>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, with libpq's
    /// `sslmode` and `sslrootcert`: see [`tls`]), applies the migrations and, given
    /// `public_url`, checks that the database belongs to a relay at that URL (recording it
    /// the first time).
    pub async fn connect(url: &str, public_url: Option<&str>) -> Result<Self, StoreError> {
        let (url, policy) = tls::split(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Refused(format!("the database URL is not valid: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("mcp-relay");
        }
        if policy.required && !policy.verify {
            tracing::warn!(
                "PostgreSQL connections are encrypted but the server's certificate is not \
                 checked (sslmode=require): use sslmode=verify-full, with sslrootcert=FILE for \
                 a private CA"
            );
        }
        let connector = tls::connector(&policy)?;
        let listen_with = (config.clone(), connector.clone());
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = Self {
            pool,
            listen_with,
            events: std::sync::OnceLock::new(),
        };
        store.migrate(public_url).await?;
        Ok(store)
    }

    /// A connection from the pool.
    pub(in crate::store) async fn conn(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(with_causes(&e)))
    }

    /// Applies the migrations the database lacks and checks its public URL, in one
    /// transaction under [`MIGRATION_LOCK`].
    async fn migrate(&self, public_url: Option<&str>) -> Result<(), StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS relay_schema (version INTEGER NOT NULL)")
            .await?;
        let current: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM relay_schema", &[])
            .await?
            .try_get(0)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::Refused(format!(
                "the database's schema is version {current}, newer than this relay knows \
                 ({SCHEMA_VERSION}): a newer release of the relay migrated it; upgrade this node"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = i as i32 + 1;
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO relay_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
            tracing::info!(version, "applied a database migration");
        }
        if let Some(url) = public_url {
            tx.execute(
                "INSERT INTO relay_meta (key, value) VALUES ('public_url', $1)
                 ON CONFLICT (key) DO NOTHING",
                &[&url],
            )
            .await?;
            let recorded: String = tx
                .query_one("SELECT value FROM relay_meta WHERE key = 'public_url'", &[])
                .await?
                .try_get(0)?;
            if recorded != url {
                return Err(StoreError::Refused(format!(
                    "this database belongs to the relay at {recorded}, not {url}: every node \
                     sharing a database must have the same --public-url (tokens name it as \
                     their issuer and audience)"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The announcements of the database ([`crate::store::events`]): the first call starts
    /// the listener (on the caller's runtime), which then runs as long as the process.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::store::events::Event> {
        let tx = self.events.get_or_init(|| {
            let (tx, _) = tokio::sync::broadcast::channel(256);
            let (config, tls) = self.listen_with.clone();
            tokio::spawn(listen::run(config, tls, tx.clone()));
            tx
        });
        tx.subscribe()
    }

    /// Announces `event` to every node now.
    pub async fn announce(&self, event: &crate::store::events::Event) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&crate::store::events::CHANNEL, &event.payload()],
            )
            .await?;
        Ok(())
    }
}

/// Announces `event` to every node when the transaction commits (nothing if it does not).
pub(super) async fn announce(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &crate::store::events::Event,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&crate::store::events::CHANNEL, &event.payload()],
    )
    .await?;
    Ok(())
}

/// An error's message followed by those of its causes (a pool's error hides why the
/// connection failed: refused, TLS, authentication).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// A readable message of a PostgreSQL error: the server's own message when it sent one.
pub(super) fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one() {
        assert_eq!(SCHEMA_VERSION, 6);
        assert!(MIGRATIONS[5].contains("CREATE TABLE relay_nodes"));
        assert!(MIGRATIONS[0].contains("CREATE TABLE oauth_tokens"));
        assert_ne!(MIGRATION_LOCK, SWEEP_LOCK);
    }
}
