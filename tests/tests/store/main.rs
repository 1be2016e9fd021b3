//! The relay's store, the same suite on both backends: SQLite (a file, two handles on it)
//! and PostgreSQL (a real server the suite starts itself, see `e2e::postgres`).
//!
//! - `conformance`: every operation behaves the same on both (tokens and names, OAuth
//!   clients, codes, tokens, refresh rotation, the reuse rules, the trace).
//! - `races`: single-use steps attempted 100 times at once from two handles have
//!   exactly one winner.
//! - `postgres_only`: what only a shared database needs (migrations under a lock, the
//!   schema version and public URL checks), and `relay db copy`.
//! - `postgres_tls`: TLS to PostgreSQL as libpq's `sslmode` asks, against a server with a
//!   certificate of a CA made for the test.
//! - `outage`: the database gone under a running node.
//! - `commands`: the `relay` binary on PostgreSQL: `serve --database-url`, the token,
//!   name and logs commands, `db copy`.

mod commands;
mod conformance;
mod outage;
mod postgres_only;
mod postgres_tls;
mod races;

use relay::store::{Storage, Store};

/// The public URL the PostgreSQL stores of the suite are opened for.
const PUBLIC_URL: &str = "https://relay.test/";

/// A backend under test.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of `backend`, and what keeps it alive.
struct Fresh {
    storage: Storage,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                Self {
                    storage: Storage::Sqlite(dir.path().to_path_buf()),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                storage: Storage::Postgres(e2e::postgres::Postgres::shared().new_database()),
                _dir: None,
            },
        }
    }

    /// A handle on it (each call another connection, or pool of them).
    async fn open(&self) -> Store {
        let url = matches!(self.storage, Storage::Postgres(_)).then_some(PUBLIC_URL);
        Store::connect(&self.storage, url)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.storage.describe()))
    }
}

/// One `#[tokio::test]` per backend for each scenario (an `async fn(Backend)` of the
/// calling module), on a runtime with several workers so that handles really race.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(crate::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
