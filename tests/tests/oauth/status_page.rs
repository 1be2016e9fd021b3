//! The OAuth trace (`relay logs`) and the owner's status page (`GET /status`), end to end.
//!
//! Every test starts its own `relay serve` (public URL `http://localhost:<port>`, a data
//! directory whose bridge tokens `owner` and `other` are made with `relay token create`,
//! an operator password). The main test connects a bridge in `--auth oauth` mode serving
//! the fixture as tunnel `desk-notes`, and runs the Python SDK's OAuth client
//! (`tests/clients/py_oauth.py`) through it, approved with `bridge approve`, so there is a
//! client, calls and a trace. Then:
//!
//! - `relay logs --tunnel desk-notes` lists the metadata fetches, the registration, the
//!   authorization, the consent and the token events, and a deliberately refused token
//!   request (a refresh for another tunnel's resource) with its `error` and reason; its
//!   `--json` lines hold the same, and neither they nor the database hold a token;
//! - the status page in headless Chromium with JavaScript off
//!   (`tests/clients/status_browser.mjs`): signed in with the owner's bridge token it shows
//!   the tunnel (connected, OAuth, the bridge's version), the client, a recent
//!   `tools/call`, the trace; its Revoke button (a plain form) ends the client's access
//!   (its token gets 401 on the MCP endpoint at once, and the trace says why); Log out ends
//!   the session;
//! - the other bridge token sees no tunnel and cannot revoke the owner's clients; the
//!   operator sees every tunnel;
//! - a wrong password is refused with an error and no session cookie;
//! - a page of another origin cannot frame the status page, which carries its CSP.

use std::process::Command;
use std::time::Duration;

use e2e::bin;
use e2e::browser::{Browser, document, form_values, frame, header};
use e2e::fixture_truth::SIMPLE_TEXT;
use e2e::http::{BlockingHttp, between, form};
use e2e::raw_http::{HttpAnswer, request};
use e2e::relay::{OAuthRelay, OPERATOR_PASSWORD};
use e2e::text::assert_contains_all;
use serde_json::{Value, json};

use crate::grants::Grants;
use crate::py_oauth::PyOAuth;
use crate::site::Site;
use crate::{LOOPBACK_REDIRECT, initialize_with_token};

/// The tunnel name of the main test.
const TUNNEL: &str = "desk-notes";
/// The name the Python SDK client registers itself with.
const CLIENT_NAME: &str = "py-oauth-e2e";
/// Longest wait for a driver's next line.
const DRIVER_WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------
// Processes.

/// `relay serve` with a data directory holding the bridge tokens `owner` and `other`, and
/// an operator password.
struct Setup {
    relay: OAuthRelay,
    /// Public base URL (`http://localhost:<port>`).
    base: String,
    owner: String,
    other: String,
}

impl Setup {
    fn start() -> Self {
        let relay = OAuthRelay::start(&["owner", "other"], true, &[]);
        Self {
            base: relay.base.clone(),
            owner: relay.token("owner").to_owned(),
            other: relay.token("other").to_owned(),
            relay,
        }
    }

    fn url(&self, path: &str) -> String {
        self.relay.url(path)
    }

    fn mcp_url(&self) -> String {
        self.relay.mcp_url(TUNNEL)
    }

    /// `relay logs` on the data directory with these flags; its stdout.
    fn logs(&self, flags: &[&str]) -> String {
        let out = Command::new(bin("relay"))
            .arg("logs")
            .args(flags)
            .arg("--data-dir")
            .arg(self.relay.data_dir())
            .env_remove("RELAY_DATA_DIR")
            .output()
            .expect("relay logs");
        assert!(
            out.status.success(),
            "relay logs {flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `relay logs --tunnel desk-notes --json`, parsed.
    fn log_events(&self) -> Vec<Value> {
        self.logs(&["--tunnel", TUNNEL, "--json", "--limit", "500"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// Runs `py_oauth.py` against the tunnel, approving its consent with `bridge approve` and
/// the owner's token; its final summary.
///
/// The relay answers the client's first request (401) without reading its body, and then
/// hyper may close that connection while the client pools it for its next request
/// ("Server disconnected without sending a response"). A run that failed so, before any
/// consent (so before registering anything that the checks would see twice), is run once
/// more.
fn python_oauth_client(s: &Setup) -> Value {
    for attempt in 1..=2 {
        let mut py = PyOAuth::start(&s.mcp_url(), LOOPBACK_REDIRECT, false);
        let consent = py.next_event();
        if consent["event"] != "consent" {
            let e = format!("py_oauth.py: {consent}\nstderr:\n{}", py.log());
            if attempt == 1 && e.contains("Server disconnected") {
                eprintln!("py_oauth.py lost a pooled connection before its consent; again: {e}");
                continue;
            }
            panic!("{e}");
        }
        s.relay
            .approve("owner", consent["code"].as_str().expect("code"), TUNNEL);
        py.send("poll");
        return py.finish();
    }
    unreachable!()
}

/// One HTTP/1.1 request to the relay (`http://localhost:<port>…`, reached on 127.0.0.1).
fn http(method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> HttpAnswer {
    request(method, url, headers, body.unwrap_or(""))
}

/// A signed-in status-page session over plain HTTP (a browser without JavaScript does the
/// same): its cookie and CSRF token.
struct PageSession {
    base: String,
    cookie: String,
    csrf: String,
}

impl PageSession {
    /// Signs in with `secret`; the dashboard's HTML too.
    fn sign_in(base: &str, secret: &str) -> (Self, String) {
        let login = http("GET", &format!("{base}/status"), None, &[]);
        assert_eq!(login.status, 200, "{}", login.body);
        let login_cookie = login
            .header("set-cookie")
            .split(';')
            .next()
            .expect("login cookie")
            .to_owned();
        let csrf = between(&login.body, "name=csrf value=\"", "\"").expect("csrf field");
        let r = http(
            "POST",
            &format!("{base}/status"),
            Some(&form(&[
                ("op", "login"),
                ("csrf", csrf),
                ("secret", secret),
            ])),
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &login_cookie),
            ],
        );
        assert_eq!(r.status, 303, "sign-in: {}", r.body);
        let cookie = r
            .header("set-cookie")
            .lines()
            .find(|c| c.starts_with("relay_status="))
            .and_then(|c| c.split(';').next())
            .expect("session cookie")
            .to_owned();
        let page = http(
            "GET",
            &format!("{base}/status"),
            None,
            &[("Cookie", &cookie)],
        );
        assert_eq!(page.status, 200);
        let csrf = between(&page.body, "name=csrf value=\"", "\"")
            .expect("csrf on the dashboard")
            .to_owned();
        let s = Self {
            base: base.to_owned(),
            cookie,
            csrf,
        };
        (s, page.body)
    }

    /// Posts the page's form with `action` and more fields.
    fn post(&self, fields: &[(&str, &str)]) -> HttpAnswer {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        http(
            "POST",
            &format!("{}/status", self.base),
            Some(&form(&all)),
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &self.cookie),
            ],
        )
    }
}

// ------------------------------------------------------------------------------------------
// The browser driver.

/// `tests/clients/status_browser.mjs` in `mode` on `url`.
fn browser(mode: &str, url: &str, args: &[&str]) -> Browser {
    Browser::start("status_browser.mjs", mode, url, args, 40, DRIVER_WAIT)
}

/// The protective headers every status page carries.
fn assert_hardened(doc: &Value) {
    let csp = header(doc, "content-security-policy");
    let parts = [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ];
    assert_contains_all(csp, &parts, &format!("CSP {csp:?} of {doc}"));
    assert!(!csp.contains("unsafe"), "CSP {csp:?}");
    assert!(
        header(doc, "x-frame-options").eq_ignore_ascii_case("deny"),
        "X-Frame-Options: {doc}"
    );
    assert_eq!(header(doc, "cache-control"), "no-store", "{doc}");
}

/// A page without script, handlers or anything loaded, whose forms all post to the page
/// with a CSRF field.
fn assert_plain(doc: &Value) {
    assert_eq!(doc["scripts"], 0, "{doc}");
    assert_eq!(doc["handler_attrs"], json!([]), "{doc}");
    assert_eq!(doc["embedded"], 0, "{doc}");
    let raw = doc["raw_html"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(!raw.contains("<script"), "{raw}");
    for f in doc["forms"].as_array().expect("forms") {
        assert_eq!(f["method"], "post", "{f}");
        assert!(
            f["action"].as_str().is_some_and(|a| a.ends_with("/status")),
            "{f}"
        );
        let inputs = form_values([f], "inputs", "name");
        assert!(inputs.contains(&"csrf"), "a form without CSRF field: {f}");
    }
}

fn rows<'a>(doc: &'a Value, kind: &str) -> Vec<&'a str> {
    doc["rows"][kind]
        .as_array()
        .unwrap_or_else(|| panic!("rows.{kind}: {doc}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn cookie_names(doc: &Value) -> Vec<&str> {
    doc["cookies"]
        .as_array()
        .expect("cookies")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

// ------------------------------------------------------------------------------------------
// The tests.

/// The whole story: a client through OAuth, its trace in `relay logs`, the status page
/// signed in with the bridge token, Revoke, and the client's token refused afterwards.
#[test]
fn trace_logs_and_the_owners_status_page() {
    let s = Setup::start();
    let _bridge = s.relay.bridge("owner", TUNNEL, false);

    // A real OAuth client: 401, metadata, registration, consent, tokens, calls.
    let summary = python_oauth_client(&s);
    let call = &summary["phases"][0]["call"];
    assert_eq!(call["texts"], json!([SIMPLE_TEXT]), "{summary}");
    let client_id = summary["client_id"].as_str().expect("client_id").to_owned();
    let tokens = summary["tokens"].as_array().expect("tokens");
    let access = tokens[0]["access_token"].as_str().expect("access token");
    let refresh = tokens[0]["refresh_token"].as_str().expect("refresh token");
    assert_eq!(initialize_with_token(&s.mcp_url(), access).status, 200);

    // A token request for another tunnel's resource is refused (and consumes nothing).
    let elsewhere = s.url("/elsewhere/mcp");
    let token_http = BlockingHttp::new();
    let r = (s.relay).refresh_for(&token_http, &client_id, refresh, Some(&elsewhere));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid_target"), "{}", r.text());

    // `relay logs`: the table.
    let table = s.logs(&["--tunnel", TUNNEL]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME (UTC)"), "{table}");
    let line_of = |step: &str, outcome: &str| {
        lines
            .iter()
            .find(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(2) == Some(&step) && cols.get(3) == Some(&outcome)
            })
            .copied()
            .unwrap_or_else(|| panic!("no {step} {outcome} line in:\n{table}"))
    };
    assert!(
        line_of("mcp_401", "refused").contains("no access token"),
        "{table}"
    );
    assert!(
        line_of("resource_metadata", "ok").contains(&s.url(&format!(
            "/.well-known/oauth-protected-resource/{TUNNEL}/mcp"
        ))),
        "{table}"
    );
    assert!(
        line_of("server_metadata", "ok").contains("relay-wide"),
        "{table}"
    );
    let register = line_of("register", "ok");
    assert!(
        register.contains(CLIENT_NAME) && register.contains("127.0.0.1:39999"),
        "{table}"
    );
    assert!(line_of("authorize", "ok").contains(CLIENT_NAME), "{table}");
    assert!(
        line_of("consent", "pending").contains("consent page shown"),
        "{table}"
    );
    let approved = lines
        .iter()
        .find(|l| l.contains("the authorization code went to 127.0.0.1:39999"))
        .unwrap_or_else(|| panic!("no completed consent:\n{table}"));
    assert!(
        approved.contains("approved by the owner with `bridge approve`"),
        "{approved}"
    );
    assert!(line_of("token", "ok").contains("code exchanged"), "{table}");
    let refused = line_of("refresh", "refused");
    assert!(
        refused.contains(&format!(
            "{CLIENT_NAME}'s token refresh was refused (invalid_target): the resource \
             {elsewhere} does not match this tunnel ({})",
            s.mcp_url()
        )),
        "{refused}"
    );
    // Oldest first: the 401 that started it all comes before the tokens.
    let pos = |needle: &str| lines.iter().position(|l| l.contains(needle)).expect(needle);
    assert!(pos("mcp_401") < pos("code exchanged"), "{table}");

    // `relay logs --json`: the same events, as objects; never a token or a code.
    let events = s.log_events();
    let steps: Vec<&str> = events.iter().filter_map(|e| e["step"].as_str()).collect();
    for step in [
        "mcp_401",
        "resource_metadata",
        "server_metadata",
        "register",
        "authorize",
        "consent",
        "token",
        "refresh",
    ] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    let refused = events
        .iter()
        .find(|e| e["step"] == "refresh" && e["outcome"] == "refused")
        .expect("the refused refresh");
    assert_eq!(refused["error"], "invalid_target");
    assert_eq!(refused["tunnel"], TUNNEL);
    assert_eq!(refused["client_id"], client_id.as_str());
    assert_eq!(refused["client_name"], CLIENT_NAME);
    assert_eq!(refused["ip"], "127.0.0.1");
    assert!(refused["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let everything = s.logs(&["--json", "--limit", "1000"]);
    for secret in [access, refresh, s.owner.as_str()] {
        assert!(!everything.contains(secret), "a secret in relay logs");
    }
    for file in ["relay.db", "relay.db-wal"] {
        let bytes = std::fs::read(s.relay.data_dir().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(access) && !text.contains(refresh),
            "a token in {file}"
        );
    }

    // The status page, signed in with the owner's bridge token.
    let mut b = browser(
        "session",
        &s.url("/status"),
        &["--secret", &s.owner, "--revoke", CLIENT_NAME],
    );
    let login = b.event("login");
    assert_eq!(login["status"], 200, "{login}");
    assert_hardened(&login);
    assert_plain(&login);
    let inputs = form_values([&login["forms"][0]], "inputs", "type");
    assert!(inputs.contains(&"password"), "{inputs:?}");

    let dash = b.event("dashboard");
    assert_eq!(dash["status"], 200, "{dash}");
    assert_hardened(&dash);
    assert_plain(&dash);
    let who = dash["who"].as_str().unwrap_or("");
    assert!(who.contains("\u{201c}owner\u{201d}"), "{who}");
    let session_cookie = dash["cookies"]
        .as_array()
        .expect("cookies")
        .iter()
        .find(|c| c["name"] == "relay_status")
        .unwrap_or_else(|| panic!("no session cookie: {}", dash["cookies"]));
    assert_eq!(session_cookie["httpOnly"], true);
    assert_eq!(session_cookie["sameSite"], "Strict");
    let tunnels = rows(&dash, "tunnels");
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    let row = tunnels[0];
    for part in [
        TUNNEL,
        "connected since",
        "OAuth",
        &format!("bridge {}", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(row.contains(part), "tunnel row {row:?} lacks {part:?}");
    }
    let clients = rows(&dash, "clients");
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert!(
        clients[0].contains(CLIENT_NAME)
            && clients[0].contains("127.0.0.1:39999")
            && clients[0].contains("Revoke"),
        "{clients:?}"
    );
    let calls = rows(&dash, "calls");
    assert!(
        calls
            .iter()
            .any(|c| c.contains("tools/call test_simple_text")
                && c.contains("200")
                && c.contains(CLIENT_NAME)),
        "no recent tools/call row: {calls:?}"
    );
    let trace = rows(&dash, "events");
    assert!(
        trace.iter().any(|e| e.contains("refused")
            && e.contains("invalid_target")
            && e.contains(&elsewhere)),
        "{trace:?}"
    );
    assert!(
        trace.iter().any(|e| e.contains("registered as")),
        "the registration (relay-wide) is shown with the tunnel's trace: {trace:?}"
    );

    // Revoke, a plain form submit: the client's row is gone, its token is refused.
    let revoked = b.event("revoked");
    assert_eq!(revoked["status"], 200, "{revoked}");
    assert!(
        revoked["notice"]
            .as_str()
            .is_some_and(|n| n.starts_with("Access revoked")),
        "{}",
        revoked["notice"]
    );
    assert_eq!(rows(&revoked, "clients"), Vec::<&str>::new());
    let r = initialize_with_token(&s.mcp_url(), access);
    assert_eq!(r.status, 401, "the revoked token still works: {}", r.body);
    assert!(
        r.header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
    let r = s.relay.refresh(&token_http, &client_id, refresh);
    assert_eq!(
        r.status,
        400,
        "the revoked refresh token still works: {}",
        r.text()
    );

    let out = b.event("logged_out");
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["notice"], "Signed out.", "{out}");
    assert!(
        !cookie_names(&out).contains(&"relay_status"),
        "the session cookie is cleared: {}",
        out["cookies"]
    );
    assert!(
        rows(&out, "tunnels").is_empty() && out["forms"][0]["buttons"] == json!(["Sign in"]),
        "{out}"
    );
    b.finish();

    // The trace says what happened, and why the token stopped working.
    let events = s.log_events();
    let revoke = events
        .iter()
        .find(|e| e["step"] == "revoke" && e["outcome"] == "ok")
        .expect("the revocation is traced");
    assert!(
        revoke["reason"]
            .as_str()
            .is_some_and(|r| r.contains("on the status page by the tunnel's owner")),
        "{revoke}"
    );
    assert!(
        events.iter().any(|e| e["step"] == "mcp_401"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("the access token was revoked"))),
        "{events:#?}"
    );

    // Another bridge token sees no tunnel, and cannot revoke the owner's clients.
    let (other, page) = PageSession::sign_in(&s.base, &s.other);
    assert!(!page.contains(TUNNEL), "{page}");
    assert!(page.contains("No tunnel yet"), "{page}");
    let r = other.post(&[
        ("op", "revoke"),
        ("tunnel", TUNNEL),
        ("client_id", &client_id),
    ]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("not yours"), "{}", r.body);
    // A form without the session's CSRF token is refused.
    let r = http(
        "POST",
        &s.url("/status"),
        Some(&form(&[("op", "logout"), ("csrf", "forged-value")])),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &other.cookie),
        ],
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // The operator sees every tunnel, and the relay-wide events.
    let (_op, page) = PageSession::sign_in(&s.base, OPERATOR_PASSWORD);
    assert!(page.contains("Signed in as the relay operator"), "{page}");
    assert!(page.contains(&format!("id=\"t-{TUNNEL}\"")), "{page}");
    assert!(page.contains("Relay-wide OAuth events"), "{page}");
}

/// A wrong password or token: an error on the page, and no session cookie.
#[test]
fn wrong_secret_is_refused_without_a_session() {
    let s = Setup::start();
    let mut b = browser(
        "wrong",
        &s.url("/status"),
        &["--secret", "not the password"],
    );
    let login = b.event("login");
    assert_eq!(login["status"], 200);
    let refused = b.event("refused");
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(
        refused["notice"], "Wrong password or bridge token.",
        "{refused}"
    );
    assert!(
        !cookie_names(&refused).contains(&"relay_status"),
        "{}",
        refused["cookies"]
    );
    assert_hardened(&refused);
    assert_plain(&refused);
    let done = b.finish();
    let post = done["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["method"] == "POST")
        .unwrap_or_else(|| panic!("the form was not posted: {done:#}"));
    assert_eq!(post["status"], 403);
    assert_eq!(header(post, "set-cookie"), "", "no cookie is set: {post}");
    // The sign-in form is bound to its own cookie: a post without it is refused too.
    let r = http(
        "POST",
        &s.url("/status"),
        Some(&form(&[
            ("op", "login"),
            ("csrf", "x".repeat(43).as_str()),
            ("secret", &s.owner),
        ])),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        !r.header("set-cookie").contains("relay_status="),
        "{:?}",
        r.headers
    );
}

/// A page of another origin cannot show the status page in a frame; a control frame on the
/// same page renders.
#[test]
fn status_page_refuses_to_be_framed() {
    let s = Setup::start();
    let status_url = s.url("/status");
    let framer = Site::start(vec![
        (
            "/embed",
            format!(
                "<!doctype html><title>framer</title><p>another origin</p>\
                 <iframe name=status width=600 height=400 src=\"{status_url}\"></iframe>\
                 <iframe name=control width=300 height=100 src=\"/control\"></iframe>"
            ),
        ),
        (
            "/control",
            "<!doctype html><p>control frame rendered</p>".into(),
        ),
    ]);
    let done = browser("frame", &framer.url("/embed"), &[]).finish();
    let status = frame(&done, "status");
    assert_eq!(status["status_markup"], false, "{status}");
    assert!(
        !status["text"]
            .as_str()
            .unwrap_or("")
            .contains("Relay status"),
        "the framed status page rendered: {status}"
    );
    let doc = document(&done, &status_url);
    assert_eq!(doc["status"], 200);
    assert_hardened(doc);
}
