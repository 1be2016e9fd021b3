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
//! - `nodes`: two relay nodes on one database: each knows the tunnels the other holds
//!   (OAuth metadata, authorization), and what one revokes, the other forgets at once.
//! - `cluster`: three nodes behind HAProxy with the shipped `deploy/cluster/haproxy.cfg`.
//! - `commands`: the `relay` binary on PostgreSQL: `serve --database-url`, the token,
//!   name and logs commands, `db copy`.

mod cluster;
mod commands;
mod conformance;
mod nodes;
mod outage;
mod postgres_only;
mod postgres_tls;
mod races;

use relay::store::{Client, Grant, Storage, Store, now};

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

/// `relay token create LABEL --database-url URL`: the token.
fn create_token(url: &str, label: &str) -> String {
    let out = std::process::Command::new(e2e::bin("relay"))
        .args(["token", "create", label, "--database-url", url])
        .output()
        .expect("relay token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Stores, straight into the database at `url`, an OAuth client `mcpcl_test` (a public
/// one) and these tokens (`(kind, value)`, of one family, an hour to live) granting it
/// `tunnel` (at `resource`) on the authority of the bridge token `bridge_token`.
fn mint_grant(
    url: &str,
    bridge_token: &str,
    tunnel: &str,
    resource: &str,
    tokens: &[(&str, &str)],
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = Store::connect(&Storage::Postgres(url.to_owned()), None)
            .await
            .expect("store");
        let owner = store
            .token_id(bridge_token)
            .await
            .unwrap()
            .expect("a live bridge token");
        store
            .put_client(&Client {
                client_id: "mcpcl_test".into(),
                kind: "dcr".into(),
                name: None,
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                auth_method: "none".into(),
                secret_hash: None,
                metadata: "{}".into(),
                created: now(),
            })
            .await
            .unwrap();
        let grant = Grant {
            client_id: "mcpcl_test".into(),
            tunnel: tunnel.into(),
            resource: resource.into(),
            owner_token: owner,
            scope: "mcp".into(),
        };
        for (kind, value) in tokens {
            store
                .put_token(kind, value, &grant, now() + 3600, "fam")
                .await
                .unwrap();
        }
    });
}

/// An MCP `initialize` POSTed to `url` with this bearer token: the status.
fn initialize(http: &e2e::http::BlockingHttp, url: &str, bearer: &str) -> u16 {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "store-tests", "version": "1"}}});
    http.post(
        url,
        "application/json",
        body.to_string(),
        &[
            ("accept", "application/json, text/event-stream"),
            ("authorization", &format!("Bearer {bearer}")),
        ],
    )
    .status
}
