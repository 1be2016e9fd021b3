//! The relay as an OAuth 2.1 authorization server, end to end: real `relay serve` processes
//! (public URL `http://localhost:<port>`, a data directory, bridge tokens made with
//! `relay token create`), bridges in `--auth oauth` mode serving the fixture, and real
//! clients.
//!
//! - The Python SDK (mcp 2.x, `tests/clients/py_oauth.py`) discovers everything from the 401
//!   (protected-resource metadata, then authorization-server metadata), registers itself,
//!   gets the owner's consent, exchanges the code and lists and calls tools through relay and
//!   bridge. Three runs at once: a loopback redirect URI approved with `bridge approve`,
//!   ChatGPT's approved by typing the code into the bridge's terminal, Claude's approved
//!   with the operator password in the page's form. The relay is then restarted on the same
//!   port and data directory: the stored grant is refreshed by the same client (the access
//!   token lives 2 s), and the rotated refresh token is refused (`invalid_grant`, and the
//!   reuse revokes its family).
//! - `conformance authorization` (0.2.0-alpha.12) against the relay's issuer, the test
//!   playing the browser and the owner.
//! - Every refusal: audience (a token of one tunnel on another), expiry, a reused code (and
//!   the tokens it bought), PKCE, redirect URIs at registration, authorization and token
//!   endpoints, unknown clients, client metadata documents on private addresses, revoked
//!   refresh tokens, wrong operator passwords and their rate limit, forged CSRF fields,
//!   consent polls from another browser, `bridge approve` by the wrong bridge token, and a
//!   tunnel name that changed owner. No refusal ever lets a code out.
//!
//! The last tests pin down bugs found while writing these tests (an approval surviving a
//! change of owner, revoking another client's token, a refused refresh consuming its token,
//! the private-address refusal, which must not name the address).
//!
//! Needs `tests/deps/install.sh` (Python SDK venv, Node 22, the conformance prerelease) and
//! `cargo build --workspace --bins` first.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{Bridge, BridgeOpts, Deps, Relay, bin, repo_root, unused_port};
use reqwest::Url;
use serde_json::{Value, json};

/// What the fixture's `test_simple_text` tool answers.
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
/// The relay operator's password (its Argon2 hash is given to `--operator-password-file`).
const OPERATOR_PASSWORD: &str = "correct horse battery staple";
/// A PKCE verifier and its S256 challenge (RFC 7636, appendix B).
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `BASE64URL(SHA256(PKCE_VERIFIER))`.
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A loopback redirect URI (RFC 8252); nothing listens there, the Location is read.
const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:39999/callback";
/// ChatGPT's connector callback.
const CHATGPT_REDIRECT: &str = "https://chatgpt.com/connector_platform_oauth_redirect";
/// Claude's connector callback.
const CLAUDE_REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";
/// How long the relay trusts a validated access token (or a name's owner) without its
/// database (`relay/src/oauth/token_cache.rs`), plus a margin.
const CACHE_WINDOW: Duration = Duration::from_secs(7);

/// Query or form parameters.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// The pinned helpers, read once.
fn deps() -> &'static Deps {
    static DEPS: OnceLock<Deps> = OnceLock::new();
    DEPS.get_or_init(Deps::get)
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text between `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

// ------------------------------------------------------------------------------------------
// Plain HTTP.

/// An HTTP answer, read in full.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.body))
    }

    /// Asserts an OAuth error answer (`{"error": …}`) with this status.
    fn assert_oauth_error(&self, status: u16, error: &str, what: &str) -> String {
        assert_eq!(
            (self.status, self.json()["error"].as_str()),
            (status, Some(error)),
            "{what}: {}",
            self.body
        );
        assert_eq!(self.header("cache-control"), "no-store", "{what}");
        self.json()["error_description"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Asserts an HTML error page (never a redirect) with this status and message.
    fn assert_error_page(&self, status: u16, message: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert!(
            self.header("content-type").starts_with("text/html"),
            "{what}: {:?}",
            self.headers
        );
        assert_eq!(
            self.header("location"),
            "",
            "{what}: an error page never redirects"
        );
        assert!(self.body.contains(message), "{what}: {}", self.body);
        assert!(!self.body.contains("mcpc_"), "{what}: a code on the page");
    }
}

/// A blocking HTTP client (no redirects followed, no cookie jar).
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Self {
        e2e::install_crypto_provider();
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        self.try_send(req).expect("HTTP request")
    }

    fn try_send(&self, req: reqwest::RequestBuilder) -> reqwest::Result<Resp> {
        self.rt.block_on(async {
            let r = req.send().await?;
            Ok(Resp {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                body: r.text().await.unwrap_or_default(),
            })
        })
    }

    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    fn post_form(&self, url: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        // `application/x-www-form-urlencoded`, the way a URL's query is serialised.
        let body = Url::parse_with_params("http://form.invalid/", form)
            .expect("form")
            .query()
            .unwrap_or("")
            .to_owned();
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    fn post_json(&self, url: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    /// An MCP `initialize` POST with this bearer token (or none).
    fn mcp_initialize(&self, mcp_url: &str, bearer: Option<&str>) -> Resp {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "oauth-e2e", "version": "0"}}});
        let mut req = self
            .client
            .post(mcp_url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }
}

// ------------------------------------------------------------------------------------------
// Relays with a data directory, their bridges, and `bridge approve`.

/// A `relay serve` on a fixed loopback port with public URL `http://localhost:<port>` and a
/// data directory that outlives it (so it can be restarted with its grants).
struct OAuthRelay {
    relay: Option<Relay>,
    /// Public base URL and OAuth issuer.
    base: String,
    port: u16,
    args: Vec<String>,
    /// Bridge tokens by label (made with `relay token create`).
    tokens: HashMap<String, String>,
    data: tempfile::TempDir,
}

impl OAuthRelay {
    /// Creates the bridge tokens `labels`, then starts the relay with `extra` flags
    /// (`operator_password`: also `--operator-password-file`).
    fn start(labels: &[&str], operator_password: bool, extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut tokens = HashMap::new();
        for label in labels {
            let out = Command::new(bin("relay"))
                .args(["token", "create", label, "--data-dir"])
                .arg(data.path().join("db"))
                .output()
                .expect("relay token create");
            assert!(out.status.success(), "relay token create: {out:?}");
            let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(!token.is_empty());
            tokens.insert(label.to_string(), token);
        }
        let port = unused_port();
        let base = format!("http://localhost:{port}");
        let mut args: Vec<String> = vec![
            "--public-url".into(),
            base.clone(),
            "--data-dir".into(),
            data.path().join("db").display().to_string(),
        ];
        if operator_password {
            let file = data.path().join("operator-password");
            std::fs::write(&file, hash_password(OPERATOR_PASSWORD)).expect("write hash");
            args.extend([
                "--operator-password-file".into(),
                file.display().to_string(),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut r = Self {
            relay: None,
            base,
            port,
            args,
            tokens,
            data,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let relay = Relay::start_on(&format!("127.0.0.1:{}", self.port), &args);
        assert_eq!(relay.base, self.base);
        self.relay = Some(relay);
    }

    /// Stops the relay (SIGTERM) and starts it again: same port, data directory and flags.
    fn restart(&mut self) {
        let mut old = self.relay.take().expect("running");
        old.proc.terminate();
        assert!(
            old.proc.wait_exit(Duration::from_secs(15)).is_some(),
            "the relay did not stop on SIGTERM"
        );
        drop(old);
        self.launch();
    }

    fn token(&self, label: &str) -> &str {
        &self.tokens[label]
    }

    /// A bridge of the token `label` serving the fixture as tunnel `name` with OAuth.
    fn bridge(&self, label: &str, name: &str, piped_stdin: bool) -> Bridge {
        let b = Bridge::start(BridgeOpts {
            relay: Some((self.base.clone(), self.token(label).to_owned())),
            name: Some(name.to_owned()),
            args: vec!["--auth".into(), "oauth".into()],
            piped_stdin,
            ..Default::default()
        });
        assert_eq!(b.mcp_url, self.mcp_url(name));
        b
    }

    fn mcp_url(&self, tunnel: &str) -> String {
        format!("{}/{tunnel}/mcp", self.base)
    }

    fn prm_url(&self, tunnel: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/{tunnel}/mcp",
            self.base
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `relay name release NAME` on the data directory (while the relay runs).
    fn release_name(&self, name: &str) {
        let out = Command::new(bin("relay"))
            .args(["name", "release", name, "--data-dir"])
            .arg(self.data.path().join("db"))
            .output()
            .expect("relay name release");
        assert!(out.status.success(), "relay name release: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("released {name}")
        );
    }

    /// `bridge approve CODE` with the bridge token `label`.
    fn bridge_approve(&self, label: &str, code: &str) -> Output {
        bridge_approve(&self.base, self.token(label), code)
    }

    /// `bridge approve` with the bridge token `label`, which must succeed for `tunnel`.
    fn approve(&self, label: &str, code: &str, tunnel: &str) {
        approve(&self.base, self.token(label), code, tunnel);
    }

    /// Registers a public client (RFC 7591) with these redirect URIs; its `client_id`.
    fn register(&self, http: &Http, redirect_uris: &[&str]) -> String {
        let r = http.post_json(
            &self.url("/oauth/register"),
            &json!({"client_name": "oauth-e2e", "redirect_uris": redirect_uris,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"]}),
        );
        assert_eq!(r.status, 201, "registration: {}", r.body);
        let doc = r.json();
        assert_eq!(doc["token_endpoint_auth_method"], "none");
        assert_eq!(doc["redirect_uris"], json!(redirect_uris));
        doc["client_id"].as_str().expect("client_id").to_owned()
    }

    /// The authorization URL of a standard request (PKCE S256 with [`PKCE_CHALLENGE`]).
    fn authorize_url(&self, client_id: &str, redirect: &str, tunnel: &str, state: &str) -> String {
        let resource = self.mcp_url(tunnel);
        self.authorize_url_with(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("state", state),
            ("code_challenge", PKCE_CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", &resource),
            ("scope", "mcp"),
        ])
    }

    fn authorize_url_with(&self, params: &[(&str, &str)]) -> String {
        Url::parse_with_params(&self.url("/oauth/authorize"), params)
            .expect("authorization URL")
            .to_string()
    }

    /// A whole authorization approved by the token `owner` with `bridge approve`: the code.
    fn code_for(
        &self,
        http: &Http,
        client_id: &str,
        redirect: &str,
        tunnel: &str,
        owner: &str,
    ) -> String {
        let state = format!("st-{}", unused_port());
        let consent = Consent::open(
            http,
            &self.authorize_url(client_id, redirect, tunnel, &state),
        );
        self.approve(owner, &consent.code, tunnel);
        let r = consent.poll(http);
        let q = redirect_params(&r, redirect, &self.base, "approved consent");
        assert_eq!(q["state"], [state.as_str()]);
        q["code"][0].clone()
    }

    /// Exchanges a code (verifier [`PKCE_VERIFIER`]).
    fn exchange(&self, http: &Http, client_id: &str, code: &str, redirect: &str) -> Resp {
        http.post_form(
            &self.url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
                ("client_id", client_id),
                ("code_verifier", PKCE_VERIFIER),
            ],
            &[],
        )
    }

    fn refresh(&self, http: &Http, client_id: &str, refresh_token: &str) -> Resp {
        http.post_form(
            &self.url("/oauth/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ],
            &[],
        )
    }

    /// A grant for `tunnel` approved by `owner`: (access token, refresh token).
    fn tokens_for(
        &self,
        http: &Http,
        client_id: &str,
        redirect: &str,
        tunnel: &str,
        owner: &str,
    ) -> (String, String) {
        let code = self.code_for(http, client_id, redirect, tunnel, owner);
        let r = self.exchange(http, client_id, &code, redirect);
        tokens_of(&r)
    }

    /// Waits until the tunnel's bridge is connected (its metadata is published).
    fn wait_tunnel(&self, http: &Http, tunnel: &str) {
        eventually(Duration::from_secs(30), || {
            let r = http.try_send(http.client.get(self.prm_url(tunnel))).ok()?;
            (r.status == 200).then_some(())
        })
        .unwrap_or_else(|| panic!("tunnel {tunnel} did not come back"));
    }
}

/// `bridge approve CODE --relay BASE` with this bridge token.
fn bridge_approve(base: &str, token: &str, code: &str) -> Output {
    Command::new(bin("bridge"))
        .args(["approve", code, "--relay", base])
        .env("BRIDGE_TOKEN", token)
        .env_remove("BRIDGE_RELAY")
        .output()
        .expect("bridge approve")
}

/// `bridge approve` that must succeed for `tunnel`.
fn approve(base: &str, token: &str, code: &str, tunnel: &str) {
    let out = bridge_approve(base, token, code);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("access to tunnel {tunnel} ")),
        "bridge approve {code}: {out:?}"
    );
}

/// Argon2 hash of a password, from `relay hash-password`.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(bin("relay"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("relay hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "relay hash-password: {out:?}");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2"), "{hash}");
    hash
}

/// The tokens of a successful token response.
fn tokens_of(r: &Resp) -> (String, String) {
    assert_eq!(r.status, 200, "token response: {}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let doc = r.json();
    assert!(
        doc["token_type"]
            .as_str()
            .unwrap_or("")
            .eq_ignore_ascii_case("bearer")
    );
    assert_eq!(doc["scope"], "mcp");
    (
        doc["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        doc["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    )
}

/// Asserts a 302 to `redirect` (with `iss` = the issuer, each parameter once); its query.
fn redirect_params(
    r: &Resp,
    redirect: &str,
    issuer: &str,
    what: &str,
) -> HashMap<String, Vec<String>> {
    assert_eq!(r.status, 302, "{what}: {}", r.body);
    let location = r.header("location");
    assert!(
        location.starts_with(&format!("{redirect}?")),
        "{what}: redirected to {location:?}"
    );
    let mut q: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in Url::parse(location).expect("Location URL").query_pairs() {
        q.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    assert!(q.values().all(|v| v.len() == 1), "{what}: {q:?}");
    assert_eq!(q["iss"], [issuer], "{what}");
    q
}

/// Asserts the 401 of an MCP endpoint: JSON-RPC error body, `WWW-Authenticate` pointing at
/// the tunnel's metadata, with `error="invalid_token"` when a token was sent.
fn assert_unauthorized(r: &Resp, relay: &OAuthRelay, tunnel: &str, with_token: bool, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    let challenge = r.header("www-authenticate");
    let mut expected = format!(
        "Bearer resource_metadata=\"{}\", scope=\"mcp\"",
        relay.prm_url(tunnel)
    );
    if with_token {
        expected.push_str(", error=\"invalid_token\"");
    }
    assert_eq!(challenge, expected, "{what}");
    let body = r.json();
    assert_eq!(body["jsonrpc"], "2.0", "{what}");
    assert!(body["error"]["code"].is_i64(), "{what}: {body}");
}

/// Waits until this access token is refused on `tunnel` (the relay caches a validated
/// token for up to 5 s); panics if it still works after [`CACHE_WINDOW`].
fn assert_token_dies(http: &Http, relay: &OAuthRelay, tunnel: &str, access: &str, what: &str) {
    let url = relay.mcp_url(tunnel);
    let r = eventually(CACHE_WINDOW, || {
        let r = http.mcp_initialize(&url, Some(access));
        (r.status != 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("{what}: the access token still works after {CACHE_WINDOW:?}"));
    assert_unauthorized(&r, relay, tunnel, true, what);
}

/// One authorization request in progress, seen from the browser that made it.
struct Consent {
    /// Absolute URL of its consent page (`/oauth/consent/<id>`).
    url: String,
    /// The code the page shows.
    code: String,
    /// The forms' CSRF field.
    csrf: String,
    /// `name=value` of the cookie binding it to this browser.
    cookie: String,
}

impl Consent {
    /// GETs the authorization URL: the consent page, its code, cookie and forms.
    fn open(http: &Http, authorize_url: &str) -> Self {
        let r = http.get(authorize_url, &[]);
        assert_eq!(r.status, 200, "consent page: {}", r.body);
        assert_eq!(r.header("location"), "");
        assert!(r.header("content-type").starts_with("text/html"));
        let code = between(&r.body, "<p class=code id=code>", "</p>").expect("code on the page");
        assert!(
            code.len() == 9 && code.as_bytes()[4] == b'-',
            "code {code:?}"
        );
        let id = between(&r.body, "url=/oauth/consent/", "\"").expect("meta refresh");
        let csrf = between(&r.body, "name=csrf value=\"", "\"").expect("csrf field");
        let set_cookie = r.header("set-cookie");
        assert!(
            set_cookie.contains(&format!("Path=/oauth/consent/{id};"))
                && set_cookie.contains("HttpOnly"),
            "{set_cookie}"
        );
        let cookie = set_cookie.split(';').next().unwrap_or("").to_owned();
        assert!(cookie.contains('='), "{set_cookie}");
        let base = Url::parse(authorize_url).expect("URL");
        Self {
            url: base
                .join(&format!("/oauth/consent/{id}"))
                .expect("consent URL")
                .to_string(),
            code: code.to_owned(),
            csrf: csrf.to_owned(),
            cookie,
        }
    }

    /// The page's self-refresh, from the browser that holds the cookie.
    fn poll(&self, http: &Http) -> Resp {
        http.get(&self.url, &[("cookie", &self.cookie)])
    }

    /// Asserts the consent is still undecided: the page again, no redirect, no code.
    fn assert_pending(&self, http: &Http, what: &str) {
        let r = self.poll(http);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(r.header("location"), "", "{what}");
        assert!(r.body.contains(&self.code), "{what}");
    }

    /// POSTs the page's form with these fields (and this browser's cookie, if `cookie`).
    fn submit(&self, http: &Http, fields: &[(&str, &str)], cookie: bool) -> Resp {
        let headers: Vec<(&str, &str)> = if cookie {
            vec![("cookie", self.cookie.as_str())]
        } else {
            vec![]
        };
        http.post_form(&self.url, fields, &headers)
    }
}

// ------------------------------------------------------------------------------------------
// The Python SDK client (`tests/clients/py_oauth.py`).

/// A running `py_oauth.py`: its events on stdout, the browser's instructions on stdin.
struct PyOAuth {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyOAuth {
    fn start(mcp_url: &str, redirect: &str, pause: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = dir.path().join("py_oauth.log");
        let mut cmd = Command::new(deps().var("PY_SDK"));
        cmd.arg(deps().client("py_oauth.py"))
            .arg(mcp_url)
            .args(["--redirect-uri", redirect])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"));
        if pause {
            cmd.arg("--pause");
        }
        let mut child = cmd.spawn().expect("start py_oauth.py");
        let stdin = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            stderr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next event (`{"event": …}`); panics on the final summary or a timeout.
    fn event(&mut self, name: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("py_oauth.py: no {name} event; stderr:\n{}", self.log()));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(
            v["event"],
            name,
            "py_oauth.py: {v}\nstderr:\n{}",
            self.log()
        );
        v
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to py_oauth.py");
    }

    /// Waits for the summary (the last line); asserts the run succeeded.
    fn finish(mut self) -> Value {
        let mut last = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(90)) {
            last = line;
        }
        let status = self.child.wait().expect("py_oauth.py exit");
        let v: Value = serde_json::from_str(&last)
            .unwrap_or_else(|_| panic!("py_oauth.py: {last}\nstderr:\n{}", self.log()));
        assert!(
            status.success() && v["ok"] == true,
            "py_oauth.py failed: {}\nstderr:\n{}",
            v["error"],
            self.log()
        );
        v
    }
}

impl Drop for PyOAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Types `code` into the bridge's terminal until the bridge has taken it (its prompt may
/// arrive a moment after the page was shown).
fn type_code_into_bridge(bridge: &mut Bridge, code: &str) {
    let approved = format!("Approved the request with code {code}.");
    let unknown = format!("No pending access request has the code {code:?}.");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let misses = bridge.proc.log_text().matches(&unknown).count();
        bridge.proc.write_line(code);
        let answered = eventually(Duration::from_secs(3), || {
            let log = bridge.proc.log_text();
            if log.contains(&approved) {
                Some(true)
            } else {
                (log.matches(&unknown).count() > misses).then_some(false)
            }
        });
        if answered == Some(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge never took the code {code}:\n{}",
            bridge.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How the owner approves a Python client's consent.
enum Approval<'a> {
    /// `bridge approve <code>` on this relay (base URL) with this bridge token.
    BridgeApprove(&'a str, &'a str),
    /// The code typed into the bridge's terminal.
    BridgeStdin(&'a mut Bridge),
    /// The operator password in the page's form.
    OperatorPassword,
}

/// Drives a Python client through its consent; the consent event.
fn consent_of_python(py: &mut PyOAuth, approval: Approval<'_>, tunnel: &str) -> Value {
    let ev = py.event("consent");
    let code = ev["code"].as_str().expect("code").to_owned();
    match approval {
        Approval::BridgeApprove(base, token) => {
            approve(base, token, &code, tunnel);
            py.send("poll");
        }
        Approval::BridgeStdin(bridge) => {
            type_code_into_bridge(bridge, &code);
            py.send("poll");
        }
        Approval::OperatorPassword => py.send(&format!("password {OPERATOR_PASSWORD}")),
    }
    ev
}

/// Asserts what a Python run did in its first phase: the discovery sequence, one consent
/// with the right request, the code redirect, the token, and the tool call.
fn assert_python_run(
    run: &Value,
    relay: &OAuthRelay,
    tunnel: &str,
    redirect: &str,
    approval: &str,
) {
    let what = format!("python client, redirect {redirect}, approval {approval}");
    assert_eq!(run["redirect_uri"], redirect, "{what}");
    let consents = run["consents"].as_array().expect("consents");
    assert_eq!(consents.len(), 1, "{what}: {consents:?}");
    let c = &consents[0];
    assert_eq!(c["page_status"], 200, "{what}");
    assert_eq!(c["approval"], approval, "{what}");
    let p = &c["params"];
    assert_eq!(p["response_type"], "code", "{what}");
    assert_eq!(p["code_challenge_method"], "S256", "{what}");
    assert_eq!(p["redirect_uri"], redirect, "{what}");
    assert_eq!(p["resource"], relay.mcp_url(tunnel), "{what}: RFC 8707");
    assert_eq!(p["scope"], "mcp", "{what}");
    assert_eq!(p["client_id"], run["client_id"], "{what}");
    assert!(
        c["location"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("{redirect}?code=")),
        "{what}: {}",
        c["location"]
    );
    assert_eq!(c["callback"]["state_matches"], true, "{what}");
    assert_eq!(c["callback"]["iss"], relay.base, "{what}");

    // The wire: 401 → PRM → AS metadata → DCR → consent → token → MCP.
    let consent_path = Url::parse(c["consent_url"].as_str().expect("consent_url"))
        .expect("URL")
        .path()
        .to_owned();
    let decide = if approval == "password" {
        "POST"
    } else {
        "GET"
    };
    let http: Vec<(String, String, String, u64)> = run["http"]
        .as_array()
        .expect("http")
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap_or("").to_owned(),
                e[1].as_str().unwrap_or("").to_owned(),
                e[2].as_str().unwrap_or("").to_owned(),
                e[3].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mcp_path = format!("/{tunnel}/mcp");
    let prm_path = format!("/.well-known/oauth-protected-resource/{tunnel}/mcp");
    let expected: Vec<(&str, &str, &str, u64)> = vec![
        ("client", "POST", &mcp_path, 401),
        ("client", "GET", &prm_path, 200),
        (
            "client",
            "GET",
            "/.well-known/oauth-authorization-server",
            200,
        ),
        ("client", "POST", "/oauth/register", 201),
        ("browser", "GET", "/oauth/authorize", 200),
    ];
    let head: Vec<(&str, &str, &str, u64)> = http
        .iter()
        .take(expected.len())
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), *d))
        .collect();
    assert_eq!(head, expected, "{what}: {http:?}");
    // The browser polls (200) until the decision, which answers 302.
    let rest: Vec<_> = http[expected.len()..]
        .iter()
        .skip_while(|(who, m, p, s)| {
            who == "browser" && m == "GET" && *p == consent_path && *s == 200
        })
        .collect();
    assert_eq!(
        (
            rest[0].0.as_str(),
            rest[0].1.as_str(),
            rest[0].2.as_str(),
            rest[0].3
        ),
        ("browser", decide, consent_path.as_str(), 302),
        "{what}: {http:?}"
    );
    assert_eq!(
        (
            rest[1].0.as_str(),
            rest[1].1.as_str(),
            rest[1].2.as_str(),
            rest[1].3
        ),
        ("client", "POST", "/oauth/token", 200),
        "{what}: {http:?}"
    );
    assert_eq!(
        (rest[2].1.as_str(), rest[2].2.as_str(), rest[2].3),
        ("POST", mcp_path.as_str(), 200),
        "{what}: the retried request carries the token: {http:?}"
    );

    let tokens = run["tokens"].as_array().expect("tokens");
    assert!(!tokens.is_empty(), "{what}");
    assert_eq!(tokens[0]["scope"], "mcp", "{what}");
    assert!(tokens[0]["refresh_token"].is_string(), "{what}");

    let phase = &run["phases"][0];
    assert!(
        phase["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .any(|t| t == "test_simple_text"),
        "{what}: {phase}"
    );
    assert_eq!(
        phase["call"],
        json!({"is_error": false, "texts": [SIMPLE_TEXT]}),
        "{what}"
    );
}

/// The Python SDK through relay and bridge: three redirect URIs, three ways to approve, then
/// a relay restart survived by the stored grant.
#[test]
fn python_sdk_oauth_flows_and_refresh_across_a_relay_restart() {
    const TUNNEL: &str = "py-desk";
    let mut relay = OAuthRelay::start(&["alice"], true, &["--access-token-ttl-secs", "2"]);
    let mut bridge = relay.bridge("alice", TUNNEL, true);
    let mcp_url = relay.mcp_url(TUNNEL);

    let (base, token) = (relay.base.clone(), relay.token("alice").to_owned());
    let (mut paused, chatgpt, claude) = std::thread::scope(|s| {
        let mcp_url = mcp_url.as_str();
        let (base, token) = (base.as_str(), token.as_str());
        let loopback = s.spawn(move || {
            let mut py = PyOAuth::start(mcp_url, LOOPBACK_REDIRECT, true);
            consent_of_python(&mut py, Approval::BridgeApprove(base, token), TUNNEL);
            let paused = py.event("paused");
            (py, paused)
        });
        let bridge = &mut bridge;
        let chatgpt = s.spawn(move || {
            let mut py = PyOAuth::start(mcp_url, CHATGPT_REDIRECT, false);
            consent_of_python(&mut py, Approval::BridgeStdin(bridge), TUNNEL);
            py.finish()
        });
        let claude = s.spawn(move || {
            let mut py = PyOAuth::start(mcp_url, CLAUDE_REDIRECT, false);
            consent_of_python(&mut py, Approval::OperatorPassword, TUNNEL);
            py.finish()
        });
        (
            loopback.join().expect("loopback run"),
            chatgpt.join().expect("ChatGPT run"),
            claude.join().expect("Claude run"),
        )
    });
    assert_python_run(&chatgpt, &relay, TUNNEL, CHATGPT_REDIRECT, "poll");
    assert_python_run(&claude, &relay, TUNNEL, CLAUDE_REDIRECT, "password");
    assert_ne!(chatgpt["client_id"], claude["client_id"]);
    assert!(
        bridge
            .proc
            .log_text()
            .contains("Access request for this tunnel"),
        "the bridge showed the consent prompts"
    );

    // The paused (loopback) client's access token expires after 2 s: refused as such.
    let (py, pause) = &mut paused;
    let phase1_tokens = pause["tokens"].as_array().expect("tokens").clone();
    let last = phase1_tokens.last().expect("a token").clone();
    let expiry = pause["token_expiry_time"].as_f64().expect("expiry");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64((expiry - now + 1.2).max(0.0)));
    let http = Http::new();
    let r = http.mcp_initialize(&mcp_url, last["access_token"].as_str());
    assert_unauthorized(&r, &relay, TUNNEL, true, "expired access token");

    // Restart the relay: the grant lives in its data directory.
    relay.restart();
    relay.wait_tunnel(&http, TUNNEL);
    py.send("resume");
    let (py, _) = paused;
    let run = py.finish();
    assert_python_run(&run, &relay, TUNNEL, LOOPBACK_REDIRECT, "poll");
    assert_eq!(run["expired_before_phase_2"], true);
    assert_eq!(
        run["phases"][1]["call"],
        json!({"is_error": false, "texts": [SIMPLE_TEXT]}),
        "after the restart: {run}"
    );
    let phase2: Vec<&Value> = run["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter(|t| t["phase"] == 2)
        .collect();
    assert!(
        !phase2.is_empty(),
        "the client refreshed after the restart: {run}"
    );
    assert_eq!(
        run["consents"].as_array().map(Vec::len),
        Some(1),
        "no second consent"
    );
    // Phase 2 starts with the refresh (no 401, no browser), then MCP with the new token.
    let phase2_http: Vec<&Value> = run["http"]
        .as_array()
        .expect("http")
        .iter()
        .filter(|e| e[4] == 2)
        .collect();
    assert_eq!(
        phase2_http.first(),
        Some(&&json!(["client", "POST", "/oauth/token", 200, 2])),
        "{run}"
    );
    assert!(
        phase2_http
            .iter()
            .all(|e| e[0] == "client" && e[3].as_u64().is_some_and(|s| s < 300)),
        "{phase2_http:?}"
    );

    // The refresh token used across the restart was rotated: reusing it is refused, and
    // the reuse revokes the whole family (the newest refresh token too).
    let client_id = run["client_id"].as_str().expect("client_id");
    let rotated = last["refresh_token"].as_str().expect("refresh token");
    let r = relay.refresh(&http, client_id, rotated);
    r.assert_oauth_error(400, "invalid_grant", "a rotated refresh token");
    let newest = phase2.last().expect("phase 2 token")["refresh_token"]
        .as_str()
        .expect("refresh token");
    let r = relay.refresh(&http, client_id, newest);
    r.assert_oauth_error(400, "invalid_grant", "a refresh token of a revoked family");
}

// ------------------------------------------------------------------------------------------
// The conformance suite's authorization-server scenarios.

/// Every `checks.json` under `dir`: (check id, status, error message).
fn conformance_checks(dir: &Path) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "checks.json") {
                let text = std::fs::read_to_string(&p).expect("checks.json");
                let checks: Value = serde_json::from_str(&text).expect("checks JSON");
                for c in checks.as_array().expect("array") {
                    found.push((
                        c["id"].as_str().unwrap_or("").to_owned(),
                        c["status"].as_str().unwrap_or("").to_owned(),
                        c["errorMessage"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

/// `conformance authorization` (0.2.0-alpha.12) against the relay's issuer: the metadata
/// scenario and the authorization-code grant, the test being the browser and the owner.
/// The suite sends `resource` (which the relay requires: the tunnel's MCP URL) only when
/// given `--resource`; without it the relay answers the authorization request with a
/// redirect carrying `error=invalid_target` and the grant scenario fails.
#[test]
fn conformance_authorization_server_scenarios_pass() {
    const TUNNEL: &str = "conf-desk";
    let alpha = deps().var("CONFORMANCE_ALPHA_JS");
    assert!(
        Path::new(&alpha).exists(),
        "{alpha} is missing: run tests/deps/install.sh"
    );
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let _bridge = relay.bridge("alice", TUNNEL, false);
    let http = Http::new();
    let port = unused_port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let client_id = relay.register(&http, &[&callback]);

    let out = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(deps().var("NODE22"))
        .arg(&alpha)
        .arg("authorization")
        .args(["--url", &relay.base, "--client-id", &client_id])
        .args(["--port", &port.to_string()])
        .args(["--resource", &relay.mcp_url(TUNNEL)])
        .arg("-o")
        .arg(out.path())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start conformance");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let authorize_url = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("conformance printed no authorization URL: {seen:#?}"));
        seen.push(line.clone());
        if line.starts_with(&relay.url("/oauth/authorize?")) {
            break line;
        }
    };
    let params: HashMap<String, String> = Url::parse(&authorize_url)
        .expect("URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(params.get("resource"), Some(&relay.mcp_url(TUNNEL)));
    assert_eq!(params.get("redirect_uri"), Some(&callback));
    assert_eq!(params["code_challenge_method"], "S256");

    // The browser: the consent page, the owner's approval, the redirect to the harness.
    let consent = Consent::open(&http, &authorize_url);
    relay.approve("alice", &consent.code, TUNNEL);
    let r = consent.poll(&http);
    let q = redirect_params(&r, &callback, &relay.base, "conformance consent");
    assert_eq!(q["state"][0], params["state"]);
    let landed = http.get(r.header("location"), &[]);
    assert_eq!(
        landed.status, 200,
        "the harness's callback: {}",
        landed.body
    );

    let status = eventually(Duration::from_secs(60), || child.try_wait().ok().flatten())
        .expect("conformance did not finish");
    seen.extend(lines.try_iter());
    let summary = seen.join("\n");
    let checks = conformance_checks(out.path());
    let ids: Vec<(&str, &str)> = checks
        .iter()
        .map(|(id, status, _)| (id.as_str(), status.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("authorization-code-grant", "SUCCESS"),
            ("authorization-server-metadata", "SUCCESS"),
            ("authorization-server-metadata-cimd", "SUCCESS"),
        ],
        "{checks:#?}\n{summary}"
    );
    assert!(status.success(), "conformance exit {status:?}:\n{summary}");
    assert!(summary.contains("Total: 3 passed, 0 failed"), "{summary}");
}

// ------------------------------------------------------------------------------------------
// Refusals.

/// Tokens are bound to their tunnel (audience), to their expiry and to their grant: a token of
/// one tunnel on another, a reused code (and what it bought), a PKCE or redirect mismatch at
/// the token endpoint, a revoked refresh token; and MCP requests without a token.
#[test]
fn token_refusals() {
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let _a = relay.bridge("alice", "tunnel-a", false);
    let _b = relay.bridge("alice", "tunnel-b", false);
    let http = Http::new();

    // Discovery documents.
    let prm = http.get(&relay.prm_url("tunnel-a"), &[]);
    assert_eq!(prm.status, 200, "{}", prm.body);
    assert_eq!(prm.json()["resource"], relay.mcp_url("tunnel-a"));
    assert_eq!(prm.json()["authorization_servers"], json!([relay.base]));
    let asm = http.get(&relay.url("/.well-known/oauth-authorization-server"), &[]);
    assert_eq!(asm.json()["issuer"], relay.base);
    assert_eq!(
        asm.json()["code_challenge_methods_supported"],
        json!(["S256"])
    );

    // Without a token, or with a made-up one: 401 pointing at the tunnel's metadata.
    let a_url = relay.mcp_url("tunnel-a");
    assert_unauthorized(
        &http.mcp_initialize(&a_url, None),
        &relay,
        "tunnel-a",
        false,
        "POST",
    );
    let get = http.get(&a_url, &[("accept", "text/event-stream")]);
    assert_unauthorized(&get, &relay, "tunnel-a", false, "GET");
    let sse = http.get(
        &relay.url("/tunnel-a/sse"),
        &[("accept", "text/event-stream")],
    );
    assert_unauthorized(&sse, &relay, "tunnel-a", false, "legacy SSE");
    let del = http.send(http.client.delete(&a_url));
    assert_unauthorized(&del, &relay, "tunnel-a", false, "DELETE");
    let bogus = http.mcp_initialize(&a_url, Some("mcpat_made-up"));
    assert_unauthorized(&bogus, &relay, "tunnel-a", true, "made-up token");

    // A token for tunnel A works there, and nowhere else.
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let (access, refresh) =
        relay.tokens_for(&http, &client, LOOPBACK_REDIRECT, "tunnel-a", "alice");
    let ok = http.mcp_initialize(&a_url, Some(&access));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("protocolVersion"), "{}", ok.body);
    let on_b = http.mcp_initialize(&relay.mcp_url("tunnel-b"), Some(&access));
    assert_unauthorized(
        &on_b,
        &relay,
        "tunnel-b",
        true,
        "tunnel A's token on tunnel B",
    );
    let r = http.post_form(
        &relay.url("/oauth/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
            ("resource", &relay.mcp_url("tunnel-b")),
        ],
        &[],
    );
    r.assert_oauth_error(400, "invalid_target", "refresh for another tunnel");

    // A code is used once; its second use is refused and kills what the first one bought.
    let code = relay.code_for(&http, &client, LOOPBACK_REDIRECT, "tunnel-a", "alice");
    let (access1, refresh1) = tokens_of(&relay.exchange(&http, &client, &code, LOOPBACK_REDIRECT));
    assert_eq!(http.mcp_initialize(&a_url, Some(&access1)).status, 200);
    let again = relay.exchange(&http, &client, &code, LOOPBACK_REDIRECT);
    again.assert_oauth_error(400, "invalid_grant", "a reused code");
    relay.refresh(&http, &client, &refresh1).assert_oauth_error(
        400,
        "invalid_grant",
        "refresh token of a reused code",
    );

    // PKCE: the verifier must match the challenge.
    let code = relay.code_for(&http, &client, LOOPBACK_REDIRECT, "tunnel-a", "alice");
    let r = http.post_form(
        &relay.url("/oauth/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", LOOPBACK_REDIRECT),
            ("client_id", &client),
            ("code_verifier", &PKCE_VERIFIER.replace('d', "e")),
        ],
        &[],
    );
    let why = r.assert_oauth_error(400, "invalid_grant", "PKCE verifier mismatch");
    assert!(why.contains("code_verifier"), "{why}");

    // The token request's redirect_uri must be the authorization request's.
    let other = "http://127.0.0.1:39998/other";
    let two = relay.register(&http, &[LOOPBACK_REDIRECT, other]);
    let code = relay.code_for(&http, &two, LOOPBACK_REDIRECT, "tunnel-a", "alice");
    let why = relay
        .exchange(&http, &two, &code, other)
        .assert_oauth_error(
            400,
            "invalid_grant",
            "redirect_uri mismatch at the token endpoint",
        );
    assert!(why.contains("redirect_uri"), "{why}");

    // A revoked refresh token is dead, and so is its family's access token.
    let (access2, refresh2) =
        relay.tokens_for(&http, &client, LOOPBACK_REDIRECT, "tunnel-a", "alice");
    assert_eq!(http.mcp_initialize(&a_url, Some(&access2)).status, 200);
    let r = http.post_form(
        &relay.url("/oauth/revoke"),
        &[("token", &refresh2), ("client_id", &client)],
        &[],
    );
    assert_eq!((r.status, r.json()), (200, json!({})), "revocation");
    relay.refresh(&http, &client, &refresh2).assert_oauth_error(
        400,
        "invalid_grant",
        "a revoked refresh token",
    );

    // The access tokens of the reused code and of the revoked family stop working (the
    // relay trusts a validated token for a few seconds).
    assert_token_dies(
        &http,
        &relay,
        "tunnel-a",
        &access1,
        "access token of a reused code",
    );
    assert_token_dies(
        &http,
        &relay,
        "tunnel-a",
        &access2,
        "access token of a revoked family",
    );
    // The first grant is untouched by all this.
    assert_eq!(http.mcp_initialize(&a_url, Some(&access)).status, 200);
}

/// Authorization requests and consents that must not produce a code: bad registrations,
/// unknown clients, mismatched or private redirect targets, missing `resource` or PKCE,
/// forged forms, foreign browsers, wrong operator passwords and their rate limit.
#[test]
fn authorization_and_consent_refusals() {
    const TUNNEL: &str = "guarded";
    let relay = OAuthRelay::start(
        &["alice"],
        true,
        &["--allow-redirect-host", "app.example.org"],
    );
    let _bridge = relay.bridge("alice", TUNNEL, false);
    let http = Http::new();

    // Registration: only allowed redirect hosts.
    for bad in [
        "https://evil.example/cb",
        "http://10.0.0.1/cb",
        "https://chatgpt.com/elsewhere",
    ] {
        let r = http.post_json(
            &relay.url("/oauth/register"),
            &json!({"redirect_uris": [LOOPBACK_REDIRECT, bad], "token_endpoint_auth_method": "none"}),
        );
        let why = r.assert_oauth_error(400, "invalid_redirect_uri", bad);
        assert!(why.contains(bad), "{why}");
    }
    relay.register(
        &http,
        &[
            "https://app.example.org/cb",
            CHATGPT_REDIRECT,
            CLAUDE_REDIRECT,
        ],
    );
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);

    // Unknown client, redirect URI not registered: an error page, never a redirect.
    let url = relay.authorize_url("mcpcl_unknown", LOOPBACK_REDIRECT, TUNNEL, "s1");
    http.get(&url, &[])
        .assert_error_page(400, "unknown client_id", "unknown client_id");
    let url = relay.authorize_url(&client, "http://127.0.0.1:39999/other", TUNNEL, "s2");
    http.get(&url, &[]).assert_error_page(
        400,
        "redirect_uri does not exactly match",
        "redirect_uri mismatch at the authorization endpoint",
    );

    // A client metadata document on a private or local address is never fetched.
    for id in [
        "https://localhost/client.json",
        "https://127.0.0.1/c.json",
        "https://10.1.2.3/c.json",
    ] {
        let url = relay.authorize_url(id, LOOPBACK_REDIRECT, TUNNEL, "s3");
        http.get(&url, &[])
            .assert_error_page(400, "a private or local address", id);
    }
    // (An IPv6 literal is refused too, though as a host that "does not resolve".)
    let url = relay.authorize_url("https://[::1]/c.json", LOOPBACK_REDIRECT, TUNNEL, "s3");
    http.get(&url, &[])
        .assert_error_page(400, "the client_id host", "CIMD on [::1]");

    // Once the redirect URI is trusted, errors go back to it, still without a code.
    let resource = relay.mcp_url(TUNNEL);
    let base: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &client),
        ("redirect_uri", LOOPBACK_REDIRECT),
        ("state", "s4"),
    ];
    let pkce = [
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let cases: Vec<(Params, &str, &str)> = vec![
        (pkce.to_vec(), "invalid_target", "no resource"),
        (
            [&pkce[..], &[("resource", "http://localhost:1/other/mcp")]].concat(),
            "invalid_target",
            "a resource of another server",
        ),
        (vec![("resource", &resource)], "invalid_request", "no PKCE"),
        (
            vec![
                ("resource", &resource),
                ("code_challenge", PKCE_VERIFIER),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
            "PKCE plain",
        ),
    ];
    for (extra, error, what) in cases {
        let url = relay.authorize_url_with(&[&base[..], &extra[..]].concat());
        let q = redirect_params(&http.get(&url, &[]), LOOPBACK_REDIRECT, &relay.base, what);
        assert_eq!(q["error"], [error], "{what}");
        assert_eq!(q["state"], ["s4"], "{what}");
        assert!(!q.contains_key("code"), "{what}");
    }

    // A consent page, attacked from every side while it waits for the owner.
    let consent = Consent::open(
        &http,
        &relay.authorize_url(&client, LOOPBACK_REDIRECT, TUNNEL, "s5"),
    );
    let r = consent.submit(&http, &[("csrf", "forged"), ("action", "deny")], true);
    r.assert_error_page(403, "CSRF check failed", "forged CSRF field");
    let r = consent.submit(
        &http,
        &[
            ("csrf", &consent.csrf),
            ("action", "approve"),
            ("password", OPERATOR_PASSWORD),
        ],
        false,
    );
    r.assert_error_page(
        403,
        "CSRF check failed",
        "the form without the browser's cookie",
    );
    http.get(&consent.url, &[]).assert_error_page(
        403,
        "belongs to another browser",
        "consent poll without the cookie",
    );
    let other_browser = format!("{}x", consent.cookie);
    http.get(&consent.url, &[("cookie", &other_browser)])
        .assert_error_page(
            403,
            "belongs to another browser",
            "consent poll with another cookie",
        );
    consent.assert_pending(&http, "after the forgeries");

    // Wrong operator passwords: 403 each, and after 5 failures even the right one is 429.
    for i in 0..5 {
        let r = consent.submit(
            &http,
            &[
                ("csrf", &consent.csrf),
                ("action", "approve"),
                ("password", "wrong"),
            ],
            true,
        );
        assert_eq!(r.status, 403, "wrong password #{i}: {}", r.body);
        assert!(r.body.contains("Wrong operator password"), "{}", r.body);
        assert_eq!(r.header("location"), "");
    }
    let r = consent.submit(
        &http,
        &[
            ("csrf", &consent.csrf),
            ("action", "approve"),
            ("password", OPERATOR_PASSWORD),
        ],
        true,
    );
    assert_eq!(r.status, 429, "rate limit: {}", r.body);
    assert!(r.body.contains("Too many wrong passwords"), "{}", r.body);
    assert_eq!(r.header("location"), "");
    consent.assert_pending(&http, "after the wrong passwords");

    // The owner can still approve; only then a code comes out.
    relay.approve("alice", &consent.code, TUNNEL);
    let q = redirect_params(
        &consent.poll(&http),
        LOOPBACK_REDIRECT,
        &relay.base,
        "approved",
    );
    assert_eq!(q["state"], ["s5"]);
    let r = relay.exchange(&http, &client, &q["code"][0], LOOPBACK_REDIRECT);
    tokens_of(&r);
    // The consent is used up.
    http.get(&consent.url, &[("cookie", &consent.cookie)])
        .assert_error_page(400, "expired or was already used", "a used consent");
}

/// `bridge approve` only works for the tunnel's owner, and a name that changes owner (released
/// by the operator, claimed by another bridge token) takes its old grants and pending
/// approvals with it.
#[test]
fn approvals_and_grants_belong_to_the_tunnel_owner() {
    const SHARED: &str = "shared-desk";
    let relay = OAuthRelay::start(&["alice", "bob"], false, &[]);
    let mut alice = relay.bridge("alice", SHARED, false);
    let _bob = relay.bridge("bob", "bob-desk", false);
    let http = Http::new();
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);

    // Bob cannot approve a request for Alice's tunnel, nor an unknown code.
    let consent = Consent::open(
        &http,
        &relay.authorize_url(&client, LOOPBACK_REDIRECT, SHARED, "p1"),
    );
    for (label, code, why) in [
        ("bob", consent.code.as_str(), "does not own the tunnel"),
        (
            "alice",
            "ZZZZ-ZZZZ",
            "no pending authorization shows this code",
        ),
    ] {
        let out = relay.bridge_approve(label, code);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{label} approving {code}: {out:?}"
        );
        assert!(stderr.contains(why), "{stderr}");
    }
    consent.assert_pending(&http, "after bob's refused approval");

    // A grant made while Alice owns the name.
    let (access, refresh) = relay.tokens_for(&http, &client, LOOPBACK_REDIRECT, SHARED, "alice");
    let url = relay.mcp_url(SHARED);
    assert_eq!(http.mcp_initialize(&url, Some(&access)).status, 200);

    // The operator releases the name and Bob's bridge claims it; Alice's bridge is refused.
    relay.release_name(SHARED);
    let _bob_shared = relay.bridge("bob", SHARED, false);
    assert_eq!(
        alice.proc.wait_exit(Duration::from_secs(30)),
        Some(2),
        "alice's bridge: {}",
        alice.proc.log_text()
    );
    assert!(
        alice
            .proc
            .log_text()
            .contains("belongs to another bridge token")
    );

    // Alice's grant is void, her pending request can no longer be approved by her.
    assert_token_dies(
        &http,
        &relay,
        SHARED,
        &access,
        "a grant of the previous owner",
    );
    let why = relay.refresh(&http, &client, &refresh).assert_oauth_error(
        400,
        "invalid_grant",
        "refresh across a change of owner",
    );
    assert!(why.contains("changed owner"), "{why}");
    let out = relay.bridge_approve("alice", &consent.code);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    consent.assert_pending(&http, "after the previous owner's approval");

    // The new owner decides: the code is issued now, and it works on Bob's tunnel.
    relay.approve("bob", &consent.code, SHARED);
    let q = redirect_params(
        &consent.poll(&http),
        LOOPBACK_REDIRECT,
        &relay.base,
        "bob's approval",
    );
    let (access, _) = tokens_of(&relay.exchange(&http, &client, &q["code"][0], LOOPBACK_REDIRECT));
    assert_eq!(http.mcp_initialize(&url, Some(&access)).status, 200);
}

/// An approval given by the previous owner must not turn into a grant for the new owner's
/// server when the browser collects the code after the name changed hands.
#[test]
fn an_approval_does_not_survive_a_change_of_owner() {
    const SHARED: &str = "moving-desk";
    let relay = OAuthRelay::start(&["alice", "bob"], false, &[]);
    let _alice = relay.bridge("alice", SHARED, false);
    let http = Http::new();
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let consent = Consent::open(
        &http,
        &relay.authorize_url(&client, LOOPBACK_REDIRECT, SHARED, "m1"),
    );
    relay.approve("alice", &consent.code, SHARED);
    relay.release_name(SHARED);
    let _bob = relay.bridge("bob", SHARED, false);
    // Alice approved; Bob, who now owns the name, did not. No code may come out.
    let r = consent.poll(&http);
    if r.status == 302 && r.header("location").contains("code=") {
        let q = redirect_params(&r, LOOPBACK_REDIRECT, &relay.base, "after the change");
        let (access, _) =
            tokens_of(&relay.exchange(&http, &client, &q["code"][0], LOOPBACK_REDIRECT));
        let used = http.mcp_initialize(&relay.mcp_url(SHARED), Some(&access));
        panic!(
            "a code approved by alice was issued after bob claimed the name; its token on \
             bob's tunnel: HTTP {}",
            used.status
        );
    }
}

/// Revocation (RFC 7009 §2.1) is refused for a token issued to another client.
#[test]
fn revoking_another_clients_token_is_refused() {
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let _bridge = relay.bridge("alice", "revoke-desk", false);
    let http = Http::new();
    let owner = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let stranger = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let (_, refresh) = relay.tokens_for(&http, &owner, LOOPBACK_REDIRECT, "revoke-desk", "alice");
    let r = http.post_form(
        &relay.url("/oauth/revoke"),
        &[("token", &refresh), ("client_id", &stranger)],
        &[],
    );
    assert_ne!(r.status, 200, "a stranger revoked the token: {}", r.body);
    tokens_of(&relay.refresh(&http, &owner, &refresh));
}

/// A refresh request refused for its `resource` does not use up the refresh token.
#[test]
fn a_refused_refresh_leaves_the_refresh_token_usable() {
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let _bridge = relay.bridge("alice", "refresh-desk", false);
    let http = Http::new();
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let (_, refresh) = relay.tokens_for(&http, &client, LOOPBACK_REDIRECT, "refresh-desk", "alice");
    let r = http.post_form(
        &relay.url("/oauth/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
            ("resource", &relay.mcp_url("elsewhere")),
        ],
        &[],
    );
    r.assert_oauth_error(400, "invalid_target", "refresh for another resource");
    tokens_of(&relay.refresh(&http, &client, &refresh));
}

/// The refusal page for a client metadata document on a private address does not name
/// that address (it would tell anyone what a name resolves to).
#[test]
fn cimd_refusal_does_not_name_the_private_address() {
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let _bridge = relay.bridge("alice", "cimd-desk", false);
    let http = Http::new();
    let url = relay.authorize_url(
        "https://localhost/client.json",
        LOOPBACK_REDIRECT,
        "cimd-desk",
        "c1",
    );
    let r = http.get(&url, &[]);
    r.assert_error_page(400, "a private or local address", "CIMD on localhost");
    assert!(!r.body.contains("127.0.0.1"), "{}", r.body);
}
