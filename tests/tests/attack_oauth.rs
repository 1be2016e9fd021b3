//! Attacks on the relay's OAuth server, consent page and status page, end to end: a real
//! `relay serve` (public URL `http://localhost:<port>`, a data directory whose bridge tokens
//! are made with `relay token create`, an operator password), bridges in `--auth oauth`
//! mode serving the fixture, and a plain HTTP client playing the attacker.
//!
//! - Concurrent wrong operator passwords (consent page) and sign-ins (status page) from
//!   one address: at most the limit is evaluated, the rest refused at once; a burst from a
//!   hundred addresses keeps the relay's memory bounded (Argon2 verifications run a few at
//!   a time).
//!
//! Needs `cargo build --workspace --bins` first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{Bridge, BridgeOpts, Relay, bin};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The relay operator's password.
const OPERATOR_PASSWORD: &str = "correct horse battery staple";
/// A PKCE verifier and its S256 challenge (RFC 7636, appendix B).
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `BASE64URL(SHA256(PKCE_VERIFIER))`.
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A loopback redirect URI (RFC 8252); nothing listens there.
const REDIRECT: &str = "http://127.0.0.1:39999/callback";
/// Failed password attempts the relay allows per address.
const PASSWORD_LIMIT: usize = 5;
/// Longest wait for an answer (a safety net against a hang, not a timing: an unbounded
/// relay takes minutes to check a burst of passwords in a debug build).
const REPLY_WAIT: Duration = Duration::from_secs(600);

// ------------------------------------------------------------------------------------------
// Plain HTTP, from any loopback address.

/// An HTTP answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request to the relay on 127.0.0.1:`port`, sent from the loopback address
/// `from` (any of 127.0.0.0/8), with `Host: localhost:<port>`.
async fn request(
    from: Ipv4Addr,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let mut conn = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect to the relay");
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    conn.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(REPLY_WAIT, conn.read_to_end(&mut raw))
        .await
        .expect("the relay answers")
        .expect("read the answer");
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let e2e::HttpAnswer {
        status,
        headers,
        body,
    } = e2e::parse_http_answer(raw);
    Answer {
        status,
        headers,
        body,
    }
}

/// `application/x-www-form-urlencoded` body of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("http://form.invalid/").expect("url");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or("").to_owned()
}

/// The text between `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The `name=value` part of the first `Set-Cookie` whose name starts with `prefix`.
fn cookie(a: &Answer, prefix: &str) -> String {
    a.header("set-cookie")
        .lines()
        .find(|c| c.starts_with(prefix))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {prefix} cookie: {:?}", a.headers))
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `n`-th loopback address after 127.0.0.1 (127.0.0.2, …).
fn loopback(n: usize) -> Ipv4Addr {
    let n = n + 2;
    Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250) as u8 + 1)
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

// ------------------------------------------------------------------------------------------
// A relay with a data directory, an operator password and bridge tokens.

struct Setup {
    relay: Relay,
    port: u16,
    base: String,
    tokens: HashMap<String, String>,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Argon2 hash of a password, from `relay hash-password`.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin("relay"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("relay hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "relay hash-password: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Setup {
    /// A relay whose data directory holds the bridge tokens `labels`.
    fn start(labels: &[&str]) -> Self {
        Self::start_with(labels, &[])
    }

    /// The same, with more flags for `relay serve`.
    fn start_with(labels: &[&str], extra: &[&str]) -> Self {
        Self::start_with_env(labels, extra, &[])
    }

    /// The same, with environment variables for `relay serve`.
    fn start_with_env(labels: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut tokens = HashMap::new();
        for label in labels {
            let out = Command::new(bin("relay"))
                .args(["token", "create", label, "--data-dir"])
                .arg(&data)
                .env_remove("RELAY_DATA_DIR")
                .output()
                .expect("relay token create");
            assert!(out.status.success(), "relay token create: {out:?}");
            let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            tokens.insert(label.to_string(), t);
        }
        let hash_file = dir.path().join("operator.hash");
        std::fs::write(&hash_file, hash_password(OPERATOR_PASSWORD)).expect("write the hash");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let base = format!("http://localhost:{port}");
        let data_arg = data.display().to_string();
        let hash_arg = hash_file.display().to_string();
        let mut args = vec![
            "--public-url",
            &base,
            "--data-dir",
            &data_arg,
            "--operator-password-file",
            &hash_arg,
        ];
        args.extend_from_slice(extra);
        let relay = Relay::start_with_env(&format!("127.0.0.1:{port}"), &args, env);
        assert_eq!(relay.base, base);
        Self {
            relay,
            port,
            base,
            tokens,
            data,
            _dir: dir,
        }
    }

    fn token(&self, label: &str) -> &str {
        &self.tokens[label]
    }

    /// A bridge of the token `label` serving the fixture as tunnel `name` with OAuth.
    fn bridge(&self, label: &str, name: &str) -> Bridge {
        Bridge::start(BridgeOpts {
            relay: Some((self.base.clone(), self.token(label).to_owned())),
            name: Some(name.to_owned()),
            args: vec!["--auth".into(), "oauth".into()],
            ..Default::default()
        })
    }

    fn mcp_url(&self, tunnel: &str) -> String {
        format!("{}/{tunnel}/mcp", self.base)
    }

    /// One request from 127.0.0.1.
    fn get(&self, rt: &tokio::runtime::Runtime, target: &str, headers: &[(&str, &str)]) -> Answer {
        rt.block_on(request(
            Ipv4Addr::LOCALHOST,
            self.port,
            "GET",
            target,
            headers,
            "",
        ))
    }

    fn post(
        &self,
        rt: &tokio::runtime::Runtime,
        from: Ipv4Addr,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        rt.block_on(request(from, self.port, "POST", target, headers, body))
    }

    /// Registers a public client named `name`; its `client_id`.
    fn register(&self, rt: &tokio::runtime::Runtime, name: &str) -> String {
        let body = json!({"client_name": name, "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none"})
        .to_string();
        let r = self.post(
            rt,
            Ipv4Addr::LOCALHOST,
            "/oauth/register",
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(r.status, 201, "registration: {}", r.body);
        r.json()["client_id"]
            .as_str()
            .expect("client_id")
            .to_owned()
    }

    /// Opens a consent page for `client` on `tunnel`.
    fn consent(&self, rt: &tokio::runtime::Runtime, client: &str, tunnel: &str) -> ConsentPage {
        let resource = self.mcp_url(tunnel);
        let q = form(&[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("state", "st"),
            ("code_challenge", PKCE_CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", &resource),
            ("scope", "mcp"),
        ]);
        let r = self.get(rt, &format!("/oauth/authorize?{q}"), &[]);
        assert_eq!(r.status, 200, "consent page: {}", r.body);
        let id = between(&r.body, "url=/oauth/consent/", "\"")
            .expect("meta refresh")
            .to_owned();
        ConsentPage {
            path: format!("/oauth/consent/{id}"),
            code: between(&r.body, "<p class=code id=code>", "</p>")
                .expect("code")
                .to_owned(),
            csrf: between(&r.body, "name=csrf value=\"", "\"")
                .expect("csrf")
                .to_owned(),
            cookie: cookie(&r, "mcp_consent_"),
            html: r.body,
        }
    }

    /// `relay token <args…> --data-dir DIR` while the relay runs; its stdout.
    fn relay_cli(&self, args: &[&str]) -> String {
        let out = Command::new(bin("relay"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .env_remove("RELAY_DATA_DIR")
            .output()
            .expect("relay");
        assert!(out.status.success(), "relay {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `POST /oauth/approve` with this bearer token, from `from`.
    fn approve(
        &self,
        rt: &tokio::runtime::Runtime,
        from: Ipv4Addr,
        token: &str,
        code: &str,
    ) -> Answer {
        let auth = format!("Bearer {token}");
        self.post(
            rt,
            from,
            "/oauth/approve",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &json!({ "code": code }).to_string(),
        )
    }

    /// A code for `client` on `tunnel`, approved by the bridge token `owner`.
    fn code_for(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &str,
        tunnel: &str,
        owner: &str,
    ) -> String {
        let page = self.consent(rt, client, tunnel);
        let r = self.approve(rt, Ipv4Addr::LOCALHOST, self.token(owner), &page.code);
        assert_eq!(r.status, 200, "approval: {}", r.body);
        let r = self.get(rt, &page.path, &[("Cookie", &page.cookie)]);
        assert_eq!(r.status, 302, "{}", r.body);
        let location = reqwest::Url::parse(r.header("location")).expect("Location");
        location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"))
    }

    /// `POST /oauth/token` with these form fields.
    fn token_request(&self, rt: &tokio::runtime::Runtime, fields: &[(&str, &str)]) -> Answer {
        self.post(
            rt,
            Ipv4Addr::LOCALHOST,
            "/oauth/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form(fields),
        )
    }

    /// Exchanges a code (verifier [`PKCE_VERIFIER`]).
    fn exchange(&self, rt: &tokio::runtime::Runtime, client: &str, code: &str) -> Answer {
        self.token_request(
            rt,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("client_id", client),
                ("code_verifier", PKCE_VERIFIER),
            ],
        )
    }

    /// An MCP request (`initialize`, `tools/list`, or `tools/call` of `test_simple_text`)
    /// with this access token.
    fn mcp(
        &self,
        rt: &tokio::runtime::Runtime,
        tunnel: &str,
        access: &str,
        method: &str,
    ) -> Answer {
        let params = match method {
            "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {},
                                   "clientInfo": {"name": "attack", "version": "0"}}),
            "tools/call" => json!({"name": "test_simple_text", "arguments": {}}),
            _ => json!({}),
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let auth = format!("Bearer {access}");
        self.post(
            rt,
            Ipv4Addr::LOCALHOST,
            &format!("/{tunnel}/mcp"),
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("Authorization", &auth),
                ("MCP-Protocol-Version", "2025-06-18"),
            ],
            &body.to_string(),
        )
    }

    /// The status page's sign-in form: its cookie and CSRF field.
    fn login_form(&self, rt: &tokio::runtime::Runtime) -> (String, String) {
        let r = self.get(rt, "/status", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let csrf = between(&r.body, "name=csrf value=\"", "\"")
            .expect("csrf")
            .to_owned();
        (cookie(&r, "relay_login="), csrf)
    }
}

/// A consent page as its browser sees it.
struct ConsentPage {
    path: String,
    code: String,
    csrf: String,
    cookie: String,
    html: String,
}

/// Statuses of answers, counted.
fn tally(answers: &[Answer]) -> HashMap<u16, usize> {
    let mut t = HashMap::new();
    for a in answers {
        *t.entry(a.status).or_default() += 1;
    }
    t
}

// ------------------------------------------------------------------------------------------
// Item: password attempts are reserved before they are checked, and bounded in concurrency.

/// Thirty wrong operator passwords sent at once from one address on a consent page, and
/// thirty wrong sign-ins at once on the status page: at most the limit is evaluated (403),
/// every other attempt is refused at once (429), and the right password is refused too
/// once the limit is used up, while another address still signs in.
#[test]
fn concurrent_wrong_passwords_are_not_all_evaluated() {
    let s = Setup::start(&["owner"]);
    let _bridge = s.bridge("owner", "pw-desk");
    let rt = runtime();
    let client = s.register(&rt, "pw-client");
    let page = s.consent(&rt, &client, "pw-desk");

    let answers: Vec<Answer> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..30 {
            let body = form(&[
                ("csrf", &page.csrf),
                ("action", "approve"),
                ("password", &format!("wrong-{i}")),
            ]);
            let (port, path, cookie) = (s.port, page.path.clone(), page.cookie.clone());
            tasks.push(tokio::spawn(async move {
                request(
                    Ipv4Addr::LOCALHOST,
                    port,
                    "POST",
                    &path,
                    &[
                        ("Content-Type", "application/x-www-form-urlencoded"),
                        ("Cookie", &cookie),
                    ],
                    &body,
                )
                .await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    let t = tally(&answers);
    let evaluated = t.get(&403).copied().unwrap_or(0);
    eprintln!("consent page, 30 concurrent wrong passwords: {t:?}");
    assert!(
        evaluated <= PASSWORD_LIMIT,
        "{evaluated} of 30 concurrent wrong passwords were evaluated: {t:?}"
    );
    assert!(evaluated >= 1, "{t:?}");
    assert_eq!(
        evaluated + t.get(&429).copied().unwrap_or(0) + t.get(&503).copied().unwrap_or(0),
        30,
        "{t:?}"
    );
    // More wrong passwords, one at a time, until the limit: five evaluated in all.
    let wrong = form(&[
        ("csrf", &page.csrf),
        ("action", "approve"),
        ("password", "wrong-again"),
    ]);
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", page.cookie.as_str()),
    ];
    let mut total = evaluated;
    for _ in 0..2 * PASSWORD_LIMIT {
        let r = s.post(&rt, Ipv4Addr::LOCALHOST, &page.path, &headers, &wrong);
        match r.status {
            403 => total += 1,
            429 if r.body.contains("Too many wrong passwords") => break,
            other => panic!("HTTP {other}: {}", r.body),
        }
    }
    assert_eq!(total, PASSWORD_LIMIT, "wrong passwords evaluated in all");
    // The limit holds for the right password too, from that address.
    let right = form(&[
        ("csrf", &page.csrf),
        ("action", "approve"),
        ("password", OPERATOR_PASSWORD),
    ]);
    let r = s.post(&rt, Ipv4Addr::LOCALHOST, &page.path, &headers, &right);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many wrong passwords"), "{}", r.body);

    // The status page's sign-in, from another address.
    let (login_cookie, csrf) = s.login_form(&rt);
    let from = loopback(0);
    let answers: Vec<Answer> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..30 {
            let body = form(&[
                ("op", "login"),
                ("csrf", &csrf),
                ("secret", &format!("wrong-{i}")),
            ]);
            let (port, cookie) = (s.port, login_cookie.clone());
            tasks.push(tokio::spawn(async move {
                request(
                    from,
                    port,
                    "POST",
                    "/status",
                    &[
                        ("Content-Type", "application/x-www-form-urlencoded"),
                        ("Cookie", &cookie),
                    ],
                    &body,
                )
                .await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    let t = tally(&answers);
    eprintln!("status page, 30 concurrent wrong sign-ins: {t:?}");
    let evaluated = t.get(&403).copied().unwrap_or(0);
    assert!(
        evaluated <= PASSWORD_LIMIT,
        "{evaluated} of 30 concurrent wrong sign-ins were evaluated: {t:?}"
    );
    assert_eq!(
        evaluated + t.get(&429).copied().unwrap_or(0) + t.get(&503).copied().unwrap_or(0),
        30,
        "{t:?}"
    );
    // Another address signs in with the password.
    let body = form(&[
        ("op", "login"),
        ("csrf", &csrf),
        ("secret", OPERATOR_PASSWORD),
    ]);
    let r = s.post(
        &rt,
        loopback(1),
        "/status",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &login_cookie),
        ],
        &body,
    );
    assert_eq!(r.status, 303, "{}", r.body);
}

/// A hundred sign-ins at once, each from its own address: the relay checks a few passwords
/// at a time (the others are told to retry), so its memory stays bounded.
#[test]
fn a_burst_of_password_checks_keeps_memory_bounded() {
    let s = Setup::start(&["owner"]);
    let rt = runtime();
    let pid = s.relay.proc.pid();
    let (login_cookie, csrf) = s.login_form(&rt);
    let attempt = |from: Ipv4Addr, secret: String| {
        let body = form(&[("op", "login"), ("csrf", &csrf), ("secret", &secret)]);
        let (port, cookie) = (s.port, login_cookie.clone());
        async move {
            request(
                from,
                port,
                "POST",
                "/status",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Cookie", &cookie),
                ],
                &body,
            )
            .await
        }
    };
    // One check first, so the baseline includes what a single verification leaves.
    let warm = rt.block_on(attempt(loopback(200), "warm-up".into()));
    assert_eq!(warm.status, 403, "{}", warm.body);
    let rss_before = proc_kib(pid, "VmRSS");
    let peak_before = proc_kib(pid, "VmHWM");
    let answers: Vec<Answer> = rt.block_on(async {
        let tasks: Vec<_> = (0..100)
            .map(|i| tokio::spawn(attempt(loopback(i), format!("wrong-{i}"))))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    let t = tally(&answers);
    let rss_after = proc_kib(pid, "VmRSS");
    let peak_after = proc_kib(pid, "VmHWM");
    eprintln!(
        "burst of 100 sign-ins: {t:?}; VmRSS {rss_before} → {rss_after} KiB, VmHWM \
         {peak_before} → {peak_after} KiB"
    );
    assert!(t.get(&403).copied().unwrap_or(0) >= 1, "{t:?}");
    assert_eq!(
        t.get(&403).copied().unwrap_or(0) + t.get(&503).copied().unwrap_or(0),
        100,
        "every attempt is checked or told to retry: {t:?}"
    );
    let growth_mib = peak_after.saturating_sub(peak_before) / 1024;
    assert!(
        growth_mib < 150,
        "the relay's peak memory grew by {growth_mib} MiB during the burst"
    );
    assert!(
        rss_after.saturating_sub(rss_before) / 1024 < 150,
        "the relay kept {} MiB after the burst",
        rss_after.saturating_sub(rss_before) / 1024
    );
}

// ------------------------------------------------------------------------------------------
// Item: a revoked bridge token takes its OAuth grants with it.

/// The access and refresh tokens of a successful token response.
fn tokens_of(r: &Answer) -> (String, String) {
    assert_eq!(r.status, 200, "token response: {}", r.body);
    let doc = r.json();
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

/// Polls `f` every 100 ms until it returns `Some`, at most `tries` times.
fn eventually<T>(tries: usize, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..tries {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// After `relay token revoke`, the grants made on the owner's authority are void: the
/// refresh token and a code issued before are refused (`invalid_grant`), the access token
/// is refused, and the tunnel's offline answers (from its last snapshot) are not served.
#[test]
fn revoking_the_owners_bridge_token_ends_its_grants() {
    const TUNNEL: &str = "revoked-desk";
    let s = Setup::start_with(&["owner"], &["--grace-secs", "0"]);
    let bridge = s.bridge("owner", TUNNEL);
    let rt = runtime();
    let client = s.register(&rt, "revoke-client");
    let code = s.code_for(&rt, &client, TUNNEL, "owner");
    let (access, refresh) = tokens_of(&s.exchange(&rt, &client, &code));
    let spare_code = s.code_for(&rt, &client, TUNNEL, "owner");
    assert_eq!(s.mcp(&rt, TUNNEL, &access, "initialize").status, 200);
    assert_eq!(s.mcp(&rt, TUNNEL, &access, "tools/list").status, 200);

    // The desktop goes away: the relay answers this client for it (a call is told the
    // desktop is offline).
    drop(bridge);
    let offline = eventually(300, || {
        let r = s.mcp(&rt, TUNNEL, &access, "tools/call");
        (r.status == 200 && r.body.contains("offline since")).then_some(r)
    });
    if offline.is_none() {
        let r = s.mcp(&rt, TUNNEL, &access, "tools/call");
        panic!("no offline answer: HTTP {} {}", r.status, r.body);
    }

    // The operator revokes the owner's bridge token.
    s.relay_cli(&["token", "revoke", "owner"]);
    let r = s.token_request(
        &rt,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
        ],
    );
    assert_eq!(r.status, 400, "refresh after the revocation: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
    let r = s.exchange(&rt, &client, &spare_code);
    assert_eq!(
        r.status, 400,
        "a code issued before the revocation: {}",
        r.body
    );
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
    // (A validated access token is trusted for up to 5 s without the database.)
    let refused = eventually(100, || {
        let r = s.mcp(&rt, TUNNEL, &access, "initialize");
        (r.status == 401).then_some(r)
    });
    let refused = refused.unwrap_or_else(|| {
        let r = s.mcp(&rt, TUNNEL, &access, "initialize");
        panic!("the access token still works: HTTP {} {}", r.status, r.body)
    });
    assert!(
        refused.header("www-authenticate").contains("invalid_token"),
        "{:?}",
        refused.headers
    );
    for method in ["tools/list", "tools/call"] {
        let r = s.mcp(&rt, TUNNEL, &access, method);
        assert_eq!(r.status, 401, "{method} after the revocation: {}", r.body);
        assert!(!r.body.contains("\"tools\""), "{}", r.body);
    }
}

// ------------------------------------------------------------------------------------------
// Item: bridge tokens cannot be guessed at full speed, nor told apart, and are long.

/// A burst of wrong bridge tokens on `/oauth/approve` is throttled (429 after the limit,
/// even for the right token from that address) while the owner approves from another
/// address; an unknown token, an unknown code and another owner's token get one answer.
#[test]
fn bridge_token_guessing_is_throttled() {
    const TUNNEL: &str = "guess-desk";
    const LIMIT: usize = 10;
    let s = Setup::start(&["owner", "other"]);
    let _bridge = s.bridge("owner", TUNNEL);
    let rt = runtime();
    assert!(
        s.token("owner").len() >= 32,
        "relay token create: {:?}",
        s.token("owner")
    );
    let client = s.register(&rt, "guess-client");
    let page = s.consent(&rt, &client, TUNNEL);

    // No oracle: the same answer whatever was wrong.
    let unknown_token = s.approve(
        &rt,
        loopback(10),
        &format!("brt_{}", "x".repeat(43)),
        &page.code,
    );
    let unknown_code = s.approve(&rt, loopback(11), s.token("owner"), "ZZZZ-ZZZZ");
    let not_owner = s.approve(&rt, loopback(12), s.token("other"), &page.code);
    for (what, r) in [
        ("unknown code", &unknown_code),
        ("not the owner", &not_owner),
    ] {
        assert_eq!(
            (r.status, &r.body),
            (unknown_token.status, &unknown_token.body),
            "{what} vs unknown token"
        );
    }
    assert_eq!(unknown_token.status, 403, "{}", unknown_token.body);

    // Thirty guesses at once from one address.
    let attacker = loopback(20);
    let answers: Vec<Answer> = rt.block_on(async {
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let auth = format!("Bearer brt_guess-{i:0>40}");
                let body = json!({ "code": page.code }).to_string();
                let port = s.port;
                tokio::spawn(async move {
                    request(
                        attacker,
                        port,
                        "POST",
                        "/oauth/approve",
                        &[
                            ("Content-Type", "application/json"),
                            ("Authorization", &auth),
                        ],
                        &body,
                    )
                    .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    let t = tally(&answers);
    eprintln!("/oauth/approve, 30 wrong bridge tokens at once: {t:?}");
    let checked = t.get(&403).copied().unwrap_or(0);
    assert!(checked <= LIMIT, "{checked} guesses were checked: {t:?}");
    assert_eq!(checked + t.get(&429).copied().unwrap_or(0), 30, "{t:?}");
    // The right token from that address is throttled too (or it would tell it is right).
    let r = s.approve(&rt, attacker, s.token("owner"), &page.code);
    assert_eq!(r.status, 429, "{}", r.body);
    // The owner, elsewhere, is not locked out.
    let r = s.approve(&rt, loopback(21), s.token("owner"), &page.code);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.get(&rt, &page.path, &[("Cookie", &page.cookie)]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(r.header("location").contains("code="), "{:?}", r.headers);
}

/// A configured bridge token shorter than 32 characters stops the relay at start, with an
/// error saying why.
#[test]
fn short_configured_bridge_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("{}\nshort-token\n", "k".repeat(40))).expect("token file");
    let file_arg = file.display().to_string();
    let cases = [
        (
            "RELAY_BRIDGE_TOKENS",
            vec![],
            Some(("RELAY_BRIDGE_TOKENS", "short-token")),
        ),
        (
            "--bridge-token-file",
            vec!["--bridge-token-file", file_arg.as_str()],
            None,
        ),
    ];
    for (what, args, env) in cases {
        let mut cmd = Command::new(bin("relay"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("RELAY_BRIDGE_TOKENS")
            .env_remove("RELAY_BRIDGE_TOKEN_FILE")
            .env_remove("RELAY_DATA_DIR")
            .env_remove("RELAY_CONFIG");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let mut relay = e2e::Proc::start(cmd, "relay");
        let code = relay.wait_exit(Duration::from_secs(60));
        let log = relay.log_text();
        assert!(
            code.is_some_and(|c| c != 0),
            "{what}: the relay started with an 11-character bridge token: {log}"
        );
        assert!(
            log.contains("11 characters") && log.contains("at least 32"),
            "{what}: {log}"
        );
    }
}

/// What the relay answers a bridge connection from `from` presenting `token` for `tunnel`:
/// its refusal, or `None` when it is welcomed.
async fn bridge_hello(
    from: Ipv4Addr,
    port: u16,
    token: &str,
    tunnel: &str,
) -> Option<protocol::Refusal> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind");
    let tcp = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let url = format!("ws://localhost:{port}/{tunnel}/connect");
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("WebSocket upgrade");
    let hello = protocol::Frame::Hello(protocol::Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: "attack-0".into(),
        token: token.into(),
        tunnel: tunnel.into(),
        client_auth: protocol::ClientAuth::OAuth,
    });
    ws.send(Message::Binary(hello.encode()))
        .await
        .expect("send");
    loop {
        let msg = tokio::time::timeout(REPLY_WAIT, ws.next())
            .await
            .expect("the relay answers the hello");
        match msg {
            Some(Ok(Message::Binary(b))) => {
                match protocol::Frame::decode(b, &protocol::Limits::default()).expect("frame") {
                    protocol::Frame::Refused(r) => return Some(r),
                    protocol::Frame::Welcome(_) => return None,
                    _ => continue,
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("the relay closed without an answer: {other:?}"),
        }
    }
}

/// Wrong bridge tokens on bridge connections from one address are refused as such up to a
/// limit, then that address is told to retry later; a bridge elsewhere still connects.
#[test]
fn bridge_connections_with_wrong_tokens_are_throttled() {
    const LIMIT: usize = 30;
    let s = Setup::start(&["owner"]);
    let rt = runtime();
    let attacker = loopback(40);
    let mut bad = 0;
    let mut throttled = None;
    for i in 0..LIMIT + 5 {
        let token = format!("brt_guess-{i:0>40}");
        let r = rt
            .block_on(bridge_hello(attacker, s.port, &token, "hello-desk"))
            .expect("a wrong token is refused");
        if r.reason == protocol::RefuseReason::BadToken {
            bad += 1;
        } else {
            throttled = Some(r);
            break;
        }
    }
    assert_eq!(bad, LIMIT, "wrong tokens checked before the limit");
    let r = throttled.expect("throttled after the limit");
    assert_eq!(r.reason, protocol::RefuseReason::Busy, "{r:?}");
    assert!(
        r.message.contains("too many refused bridge tokens"),
        "{r:?}"
    );
    // The right token from that address is throttled too; from another address it works.
    let r = rt.block_on(bridge_hello(
        attacker,
        s.port,
        s.token("owner"),
        "hello-desk",
    ));
    assert_eq!(r.map(|r| r.reason), Some(protocol::RefuseReason::Busy));
    let r = rt.block_on(bridge_hello(
        loopback(41),
        s.port,
        s.token("owner"),
        "hello-desk",
    ));
    assert!(r.is_none(), "the owner's bridge was refused: {r:?}");
}

// ------------------------------------------------------------------------------------------
// Item: client metadata documents are fetched from the checked address only, and the
// refusal tells nothing about what a name resolves to.

/// The error page's message (`<p>…</p>` after the heading).
fn error_message(a: &Answer) -> &str {
    between(&a.body, "<h1>Authorization failed</h1><p>", "</p>").unwrap_or(&a.body)
}

/// With `HTTPS_PROXY` set in the relay's environment, a client metadata document is not
/// fetched through the proxy (which would connect wherever it likes, past the address
/// check): nothing reaches the proxy.
#[test]
fn client_metadata_documents_are_not_fetched_through_a_proxy() {
    let proxy = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
    proxy.set_nonblocking(true).expect("nonblocking");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let s = Setup::start_with_env(
        &["owner"],
        &[],
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("https_proxy", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("NO_PROXY", ""),
        ],
    );
    let _bridge = s.bridge("owner", "proxy-desk");
    let rt = runtime();
    // A public address literal: it passes the address check; the fetch itself may fail
    // (no network here), but never through the proxy.
    let resource = s.mcp_url("proxy-desk");
    let q = form(&[
        ("response_type", "code"),
        ("client_id", "https://1.1.1.1/client.json"),
        ("redirect_uri", REDIRECT),
        ("state", "st"),
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", &resource),
    ]);
    let r = s.get(&rt, &format!("/oauth/authorize?{q}"), &[]);
    eprintln!(
        "CIMD fetch with a proxy set: HTTP {} {}",
        r.status,
        error_message(&r)
    );
    match proxy.accept() {
        Ok((_, from)) => panic!("the relay fetched the document through the proxy (from {from})"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }
}

/// The refusal of a client metadata document on a private or local address does not say
/// which address the name resolves to, and reads the same as for a name that does not
/// resolve at all.
#[test]
fn client_metadata_refusals_do_not_tell_what_a_name_resolves_to() {
    let s = Setup::start(&["owner"]);
    let _bridge = s.bridge("owner", "cimd-desk");
    let rt = runtime();
    let resource = s.mcp_url("cimd-desk");
    let page = |client_id: &str| {
        let q = form(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("state", "st"),
            ("code_challenge", PKCE_CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", &resource),
        ]);
        s.get(&rt, &format!("/oauth/authorize?{q}"), &[])
    };
    let local = page("https://localhost/client.json");
    let nowhere = page("https://no-such-host.invalid/client.json");
    let literal = page("https://[::1]/client.json");
    for (what, r) in [
        ("localhost", &local),
        ("unresolvable", &nowhere),
        ("[::1]", &literal),
    ] {
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        for address in ["127.0.0.1", "::1"] {
            assert!(
                !error_message(r).contains(address),
                "{what}: the page names {address}: {}",
                error_message(r)
            );
        }
    }
    assert_eq!(error_message(&local), error_message(&nowhere));
    assert_eq!(error_message(&local), error_message(&literal));
}

// ------------------------------------------------------------------------------------------
// Item: a client's chosen name cannot reorder or hide what the pages show.

/// Bidirectional controls, zero-width and other invisible characters, all in a client's
/// chosen name.
const TRICKY: [char; 22] = [
    '\u{202A}',
    '\u{202B}',
    '\u{202C}',
    '\u{202D}',
    '\u{202E}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{200B}',
    '\u{200C}',
    '\u{200D}',
    '\u{200E}',
    '\u{200F}',
    '\u{2028}',
    '\u{2029}',
    '\u{FEFF}',
    '\u{00AD}',
    '\u{061C}',
    '\u{2060}',
    '\u{E0041}',
    '\u{180E}',
];

fn assert_no_tricky(what: &str, html: &str) {
    for c in TRICKY {
        assert!(!html.contains(c), "{what} holds U+{:04X}: {html}", c as u32);
    }
}

/// A client registers with a name full of bidirectional overrides and invisible
/// characters: neither the consent page nor the owner's status page carries them.
#[test]
fn a_clients_name_cannot_reorder_or_hide_page_text() {
    const TUNNEL: &str = "bidi-desk";
    let s = Setup::start(&["owner"]);
    let _bridge = s.bridge("owner", TUNNEL);
    let rt = runtime();
    let mut name = String::from("Claude");
    for c in TRICKY {
        name.push(c);
        name.push('x');
    }
    let client = s.register(&rt, &name);
    let page = s.consent(&rt, &client, TUNNEL);
    assert!(page.html.contains("Claude"), "{}", page.html);
    assert_no_tricky("the consent page", &page.html);

    // Once the client holds tokens, the owner's status page names it.
    let code = s.code_for(&rt, &client, TUNNEL, "owner");
    tokens_of(&s.exchange(&rt, &client, &code));
    let (login_cookie, csrf) = s.login_form(&rt);
    let r = s.post(
        &rt,
        Ipv4Addr::LOCALHOST,
        "/status",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &login_cookie),
        ],
        &form(&[
            ("op", "login"),
            ("csrf", &csrf),
            ("secret", s.token("owner")),
        ]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let session = cookie(&r, "relay_status=");
    let dashboard = s.get(&rt, "/status", &[("Cookie", &session)]);
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(
        dashboard.body.contains("tr class=client") && dashboard.body.contains("Claude"),
        "{}",
        dashboard.body
    );
    assert_no_tricky("the status page", &dashboard.body);
}

// ------------------------------------------------------------------------------------------
// Noted: a refused token request does not burn the code of the client it was issued to.

/// Someone holding a client's authorization code (but not its PKCE verifier) presents it
/// as another client, with a wrong verifier and with a wrong redirect URI: each is refused,
/// and the client it was issued to still exchanges it, once.
#[test]
fn a_refused_code_exchange_does_not_burn_the_code() {
    const TUNNEL: &str = "code-desk";
    let s = Setup::start(&["owner"]);
    let _bridge = s.bridge("owner", TUNNEL);
    let rt = runtime();
    let client = s.register(&rt, "code-client");
    let thief = s.register(&rt, "code-thief");
    let code = s.code_for(&rt, &client, TUNNEL, "owner");
    let wrong_verifier = PKCE_VERIFIER.replace('d', "e");
    let attempts: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "another client",
            vec![
                ("client_id", thief.as_str()),
                ("code_verifier", PKCE_VERIFIER),
                ("redirect_uri", REDIRECT),
            ],
        ),
        (
            "a wrong verifier",
            vec![
                ("client_id", client.as_str()),
                ("code_verifier", wrong_verifier.as_str()),
                ("redirect_uri", REDIRECT),
            ],
        ),
        (
            "a wrong redirect URI",
            vec![
                ("client_id", client.as_str()),
                ("code_verifier", PKCE_VERIFIER),
                ("redirect_uri", "http://127.0.0.1:39998/elsewhere"),
            ],
        ),
    ];
    for (what, extra) in attempts {
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        fields.extend(extra);
        let r = s.token_request(&rt, &fields);
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant", "{what}: {}", r.body);
    }
    let (access, _) = tokens_of(&s.exchange(&rt, &client, &code));
    assert_eq!(s.mcp(&rt, TUNNEL, &access, "initialize").status, 200);
    // Used once: a second exchange is refused.
    let r = s.exchange(&rt, &client, &code);
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
}

// ------------------------------------------------------------------------------------------
// Item: every user of one client is a principal of their own.

/// Every user of ChatGPT reaches a tunnel as the same OAuth client (one client-metadata
/// document), but each authorizes separately. Two authorizations of one client are two
/// principals: a session one of them opened does not exist for the other.
#[test]
fn two_authorizations_of_one_client_do_not_share_sessions() {
    const TUNNEL: &str = "shared-client";
    let s = Setup::start(&["owner"]);
    let _bridge = s.bridge("owner", TUNNEL);
    let rt = runtime();
    let client = s.register(&rt, "one-client-many-users");
    let code = s.code_for(&rt, &client, TUNNEL, "owner");
    let (alice, _) = tokens_of(&s.exchange(&rt, &client, &code));
    let code = s.code_for(&rt, &client, TUNNEL, "owner");
    let (bob, _) = tokens_of(&s.exchange(&rt, &client, &code));
    let init = s.mcp(&rt, TUNNEL, &alice, "initialize");
    assert_eq!(init.status, 200, "{}", init.body);
    let sid = init.header("mcp-session-id").to_owned();
    assert!(!sid.is_empty(), "{:?}", init.headers);
    let list_in_session = |access: &str| {
        let auth = format!("Bearer {access}");
        s.post(
            &rt,
            Ipv4Addr::LOCALHOST,
            &format!("/{TUNNEL}/mcp"),
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("Authorization", &auth),
                ("MCP-Protocol-Version", "2025-06-18"),
                ("Mcp-Session-Id", &sid),
            ],
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
        )
    };
    let own = list_in_session(&alice);
    assert_eq!(own.status, 200, "{}", own.body);
    let other = list_in_session(&bob);
    assert_eq!(
        other.status, 404,
        "another user of the same client reached the session: {}",
        other.body
    );
}
