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
mod failover;
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
                redirect_uris: vec![REDIRECT.into()],
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
    let body = e2e::mcp::initialize(
        serde_json::json!(1),
        "2025-06-18",
        serde_json::json!({}),
        "store-tests",
    );
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

/// RFC 7636's example verifier, and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The redirect URI of `mcpcl_test` (see [`mint_grant`]).
const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// An authorization in progress, seen from the browser that started it.
struct Authorization {
    /// The code its consent page shows.
    code: String,
    /// Its consent's id (`/oauth/consent/<id>`).
    id: String,
    /// The cookie binding it to this browser (`name=value`).
    cookie: String,
}

/// `mcpcl_test` asks `base` (a node, or HAProxy) to authorize it for `resource`: the
/// consent page, which must be shown.
fn authorize(http: &e2e::http::BlockingHttp, base: &str, resource: &str) -> Authorization {
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
    let page = http.get(
        &format!(
            "{base}/oauth/authorize?response_type=code&client_id=mcpcl_test&redirect_uri={}\
             &code_challenge={CHALLENGE}&code_challenge_method=S256&state=s&resource={}",
            enc(REDIRECT),
            enc(resource)
        ),
        &[],
    );
    let body = String::from_utf8_lossy(&page.body).into_owned();
    assert_eq!(page.status, 200, "the consent page: {body}");
    let field = |start: &str, end: &str, what: &str| {
        e2e::http::between(&body, start, end)
            .unwrap_or_else(|| panic!("{what} on the page: {body}"))
            .to_owned()
    };
    Authorization {
        code: field("<p class=code id=code>", "</p>", "the code"),
        id: field("url=/oauth/consent/", "\"", "the refresh"),
        cookie: page
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned(),
    }
}

impl Authorization {
    /// The browser's next refreshes of the consent page at `base`, until it goes back to
    /// the client with a code: that code.
    fn finished_at(&self, http: &e2e::http::BlockingHttp, base: &str) -> String {
        let location = e2e::wait::eventually(std::time::Duration::from_secs(10), || {
            let r = http.get(
                &format!("{base}/oauth/consent/{}", self.id),
                &[("cookie", &self.cookie)],
            );
            Some(r.header("location").to_owned()).filter(|l| l.contains("code="))
        })
        .unwrap_or_else(|| panic!("the consent {} never finished at {base}", self.id));
        reqwest::Url::parse(&location)
            .expect("redirect URL")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code")
    }
}

/// Exchanges an authorization code at `base`'s token endpoint: the access token.
fn exchange(http: &e2e::http::BlockingHttp, base: &str, code: &str) -> String {
    let tokens = http.post_form(
        &format!("{base}/oauth/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("client_id", "mcpcl_test"),
            ("redirect_uri", REDIRECT),
        ],
        &[],
    );
    let json: serde_json::Value = serde_json::from_slice(&tokens.body).expect("JSON");
    assert_eq!(tokens.status, 200, "{json}");
    json["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}
