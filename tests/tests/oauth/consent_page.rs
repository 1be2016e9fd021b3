//! The relay's OAuth consent page in a real browser: headless Chromium (Debian's
//! `/usr/bin/chromium`) driven by playwright-core through `tests/clients/consent_browser.mjs`,
//! with JavaScript disabled in the page, the way a careful user (or a hostile client) sees it.
//!
//! Every test starts its own `relay serve` (public URL `http://localhost:<port>`, a data
//! directory with a bridge token made by `relay token create`), a bridge in `--auth oauth`
//! mode serving the fixture, and a small HTTP listener on another loopback port that is the
//! OAuth client's redirect URI, so the final redirect lands somewhere the test can read. The
//! client registers itself (RFC 7591) with a hostile `client_name`; the authorization URL
//! carries a PKCE S256 challenge, a `state` with characters that need encoding, and the
//! tunnel's MCP URL as `resource`.
//!
//! - the page names the tunnel and the redirect host, shows a code, has no script, loads
//!   nothing but itself, and shows the client's name only escaped and marked unverified;
//! - `bridge approve <code>` makes the page's own meta refresh land on the redirect URI with
//!   `code`, `state` and `iss` (and the code buys a token that opens an MCP session);
//! - Deny lands on the redirect URI with `error=access_denied`, `state` and `iss`;
//! - a page of another origin cannot frame it (`frame-ancestors 'none'`, `X-Frame-Options`);
//! - the relay operator's password, typed in the page's form, approves too.

use std::time::Duration;

use e2e::Bridge;
use e2e::browser::{Browser, document, form_values, frame, header};
use e2e::http::form;
use e2e::raw_http::request;
use e2e::relay::{OAuthRelay, OPERATOR_PASSWORD};
use reqwest::Url;
use serde_json::{Value, json};

use crate::site::Site;
use crate::{PKCE_CHALLENGE, PKCE_VERIFIER, initialize_with_token};

/// The client's self-chosen name: markup that would run script if the page did not escape it.
const EVIL_NAME: &str = "<img src=x onerror=alert(1)> Evil";
/// The tunnel name every test uses (each test has its own relay).
const TUNNEL: &str = "desk-notes";
/// Longest wait for the browser driver's next report.
const DRIVER_WAIT: Duration = Duration::from_secs(45);

/// `tests/clients/consent_browser.mjs` in `mode` on `url`.
fn browser(mode: &str, url: &str, args: &[&str]) -> Browser {
    Browser::start("consent_browser.mjs", mode, url, args, 30, DRIVER_WAIT)
}

// ------------------------------------------------------------------------------------------
// One OAuth client of one tunnel.

/// A relay, a bridge with an OAuth tunnel, the client's redirect listener and its
/// registration.
struct Flow {
    relay: OAuthRelay,
    bridge: Bridge,
    /// The redirect URI's listener (also serves `/control`, a page that may be framed).
    callback: Site,
    redirect_uri: String,
    client_id: String,
    /// The relay's issuer, from its authorization server metadata.
    issuer: String,
}

impl Flow {
    /// Starts everything; with `operator_password`, the relay has one
    /// ([`OPERATOR_PASSWORD`]).
    fn start(operator_password: bool) -> Self {
        Self::start_with(operator_password, &[])
    }

    /// [`Flow::start`], the bridge run with more `flags`.
    fn start_with(operator_password: bool, flags: &[&str]) -> Self {
        let relay = OAuthRelay::start(&["owner"], operator_password, &[]);
        let bridge = Bridge::start(
            e2e::BridgeOpts::default()
                .via_url(&relay.base, relay.token("owner"))
                .name(TUNNEL)
                .args(&[&["--auth", "oauth"], flags].concat()),
        );
        let callback = Site::start(vec![
            (
                "/callback",
                "<!doctype html><p id=done>client got the answer</p>".into(),
            ),
            (
                "/control",
                "<!doctype html><p>control frame rendered</p>".into(),
            ),
        ]);
        let redirect_uri = callback.url("/callback");
        let mut flow = Self {
            relay,
            bridge,
            callback,
            redirect_uri,
            client_id: String::new(),
            issuer: String::new(),
        };
        let (status, meta) = flow.get_json("/.well-known/oauth-authorization-server");
        assert_eq!(status, 200, "authorization server metadata: {meta}");
        flow.issuer = meta["issuer"].as_str().expect("issuer").to_owned();
        assert_eq!(flow.issuer, flow.relay.base, "the issuer is the public URL");
        let (status, reg) = flow.post(
            "/oauth/register",
            "application/json",
            json!({
                "redirect_uris": [flow.redirect_uri],
                "client_name": EVIL_NAME,
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            })
            .to_string(),
        );
        assert_eq!(status, 201, "registration: {reg}");
        flow.client_id = reg["client_id"].as_str().expect("client_id").to_owned();
        flow
    }

    /// `GET base + path` as JSON.
    fn get_json(&self, path: &str) -> (u16, Value) {
        let a = request("GET", &self.relay.url(path), &[], "");
        (
            a.status,
            serde_json::from_str(&a.body).unwrap_or(Value::Null),
        )
    }

    /// `POST base + path` with a body; status and JSON answer.
    fn post(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let a = request(
            "POST",
            &self.relay.url(path),
            &[("Content-Type", content_type)],
            &body,
        );
        (
            a.status,
            serde_json::from_str(&a.body).unwrap_or(Value::Null),
        )
    }

    /// The tunnel's MCP URL (the `resource`).
    fn resource(&self) -> String {
        self.relay.mcp_url(TUNNEL)
    }

    /// The authorization URL a client would open, with this `state`.
    /// The browser driver in `mode` on an authorization URL with the state
    /// [`state_for`]`(mode)`, told the redirect URI and `args`, once it shows the consent
    /// page: the driver, the state, and its `page` event.
    fn browse_consent(&self, mode: &str, args: &[&str]) -> (Browser, String, Value) {
        self.browse_consent_as(mode, mode, args)
    }

    /// [`Flow::browse_consent`] with the state [`state_for`]`(tag)`.
    fn browse_consent_as(&self, mode: &str, tag: &str, args: &[&str]) -> (Browser, String, Value) {
        let state = state_for(tag);
        let args = [&["--redirect", self.redirect_uri.as_str()][..], args].concat();
        let mut driver = browser(mode, &self.authorize_url(&state), &args);
        let page = driver.event("page");
        (driver, state, page)
    }

    fn authorize_url(&self, state: &str) -> String {
        Url::parse_with_params(
            &self.relay.url("/oauth/authorize"),
            [
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("state", state),
                ("code_challenge", PKCE_CHALLENGE),
                ("code_challenge_method", "S256"),
                ("resource", self.resource().as_str()),
            ],
        )
        .expect("authorization URL")
        .to_string()
    }

    /// `host:port` of the redirect URI, as the page shows it.
    fn redirect_host(&self) -> String {
        self.callback.addr.to_string()
    }

    /// Runs `bridge approve <code>` against the relay with the owner's token.
    fn bridge_approve(&self, code: &str) -> std::process::Output {
        self.relay.bridge_approve("owner", code)
    }

    /// Exchanges an authorization code (with the PKCE verifier) and opens an MCP session
    /// with the access token: the code the browser delivered is a real one.
    fn redeem(&self, code: &str) -> String {
        let resource = self.resource();
        let (status, tok) = self.post(
            "/oauth/token",
            "application/x-www-form-urlencoded",
            form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", PKCE_VERIFIER),
                ("redirect_uri", &self.redirect_uri),
                ("client_id", &self.client_id),
                ("resource", &resource),
            ]),
        );
        assert_eq!(status, 200, "token exchange: {tok}");
        let access = tok["access_token"].as_str().expect("access_token");
        assert!(
            tok["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
            "{tok}"
        );
        let a = initialize_with_token(&resource, access);
        assert_eq!(
            a.status, 200,
            "initialize with the access token: {}",
            a.body
        );
        assert!(a.body.contains("\"protocolVersion\""), "{}", a.body);
        access.to_owned()
    }
}

/// A `state` with characters that must survive URL encoding both ways.
fn state_for(tag: &str) -> String {
    format!("st {tag}&x=1/é+")
}

/// Whether `code` looks like the page's short code (`XXXX-XXXX`, unambiguous alphabet).
fn is_user_code(code: &str) -> bool {
    const ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let parts: Vec<&str> = code.split('-').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| p.len() == 4 && p.chars().all(|c| ALPHABET.contains(c)))
}

/// The anti-framing headers every page of the flow carries.
fn assert_hardened(doc: &Value) {
    let csp = header(doc, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "CSP {csp:?}: {doc}");
    assert!(csp.contains("default-src 'none'"), "CSP {csp:?}");
    assert!(
        header(doc, "x-frame-options").eq_ignore_ascii_case("deny"),
        "X-Frame-Options: {doc}"
    );
}

/// Checks the consent page as first shown; returns its code.
fn assert_consent_page(flow: &Flow, page: &Value) -> String {
    assert_eq!(page["status"], 200, "{page:#}");
    assert_hardened(page);
    let text = page["body_text"].as_str().expect("body_text");
    let code = page["code"].as_str().expect("#code").trim().to_owned();
    assert!(is_user_code(&code), "code {code:?}");
    assert!(text.contains(&code), "the code is visible: {text}");
    assert_eq!(page["tunnel"], json!(TUNNEL));
    assert!(text.contains(TUNNEL), "the tunnel is named: {text}");
    assert_eq!(page["redirect_host"], json!(flow.redirect_host()));
    assert!(
        text.contains(&flow.redirect_host()),
        "the redirect host is shown: {text}"
    );
    // The client's self-chosen name is text, never markup, and marked unverified.
    let client = page["client"].as_str().expect("#client");
    assert!(
        client.contains(&format!("\u{201c}{EVIL_NAME}\u{201d}")),
        "#client shows the name literally: {client:?}"
    );
    assert!(client.contains("(unverified)"), "{client:?}");
    assert_eq!(page["client_children"], 0, "#client holds no elements");
    let raw = page["raw_html"].as_str().expect("raw_html");
    assert!(
        raw.contains("&lt;img src=x onerror=alert(1)&gt; Evil"),
        "escaped in the HTML"
    );
    assert!(!raw.to_ascii_lowercase().contains("<img"), "{raw}");
    // No script, no event handlers, nothing embedded or loaded.
    assert_eq!(page["scripts"], 0);
    assert!(!raw.to_ascii_lowercase().contains("<script"), "{raw}");
    assert_eq!(page["handler_attrs"], json!([]));
    assert_eq!(page["images"], 0);
    assert_eq!(page["embedded"], 0);
    let refresh = page["meta_refresh"].as_str().expect("meta refresh");
    let (delay, target) = refresh.split_once(";url=").expect("N;url=…");
    assert!(delay.parse::<u32>().is_ok_and(|d| (1..=10).contains(&d)));
    assert!(target.starts_with("/oauth/consent/"), "{refresh}");
    for r in page["requests"].as_array().expect("requests") {
        let url = r["url"].as_str().unwrap_or("");
        assert!(
            url.starts_with(&format!("{}/oauth/", flow.relay.base)),
            "only the relay's OAuth pages are requested: {r}"
        );
        assert_eq!(r["type"], "document", "no subresource is loaded: {r}");
    }
    let forms = page["forms"].as_array().expect("forms");
    let buttons = form_values(forms, "buttons", "text");
    assert!(buttons.contains(&"Deny"), "{buttons:?}");
    code
}

/// The final report landed on the redirect URI and the whole run stayed on the relay's
/// pages and that URI, loading no subresource.
fn assert_landed(flow: &Flow, done: &Value) {
    let final_url = done["final_url"].as_str().expect("final_url");
    assert!(
        final_url.starts_with(&format!("{}?", flow.redirect_uri)),
        "{final_url}"
    );
    assert!(
        done["final_text"]
            .as_str()
            .is_some_and(|t| t.contains("client got the answer")),
        "{done}"
    );
    for r in done["requests"].as_array().expect("requests") {
        let url = r["url"].as_str().unwrap_or("");
        assert!(
            url.starts_with(&format!("{}/oauth/", flow.relay.base))
                || url.starts_with(&flow.redirect_uri),
            "unexpected request: {r}"
        );
        assert_eq!(r["type"], "document", "no subresource is loaded: {r}");
    }
    for d in done["documents"].as_array().expect("documents") {
        if d["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&flow.relay.base))
        {
            assert_hardened(d);
        }
    }
}

// ------------------------------------------------------------------------------------------
// The tests.

/// The page as shown, then the owner's `bridge approve <code>`: the page's own meta refresh
/// (JavaScript is off) takes the browser to the redirect URI with `code`, `state`, `iss`.
#[test]
fn owner_approval_by_bridge_redirects_with_code_state_and_iss() {
    let flow = Flow::start(false);
    let (browser, state, page) = flow.browse_consent("approve", &[]);
    let code = assert_consent_page(&flow, &page);
    // Without an operator password, the page offers no password form.
    assert!(
        !page["raw_html"]
            .as_str()
            .unwrap_or("")
            .contains("type=password"),
        "no operator form without --operator-password-file"
    );

    let out = flow.bridge_approve(&code);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bridge approve failed: {stdout}{}\nrelay log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        flow.relay.relay().proc.log_text()
    );
    assert!(
        stdout.starts_with("Approved:") && stdout.contains(TUNNEL),
        "{stdout}"
    );

    let done = browser.finish();
    assert_landed(&flow, &done);
    let polled = done["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .any(|r| {
            r["method"] == "GET"
                && r["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&format!("{}/oauth/consent/", flow.relay.base)))
        });
    assert!(polled, "the page's meta refresh polled /oauth/consent/<id>");
    let q = flow.callback.wait_for_callback("/callback", &state);
    assert_eq!(q.get("iss"), Some(&flow.issuer), "{q:?}");
    assert_eq!(q.get("error"), None, "{q:?}");
    let code = q.get("code").expect("code in the redirect");
    flow.redeem(code);
    // The consent is used up: approving its code again finds nothing.
    let again = flow.bridge_approve(page["code"].as_str().unwrap_or(""));
    assert_eq!(again.status.code(), Some(2), "{again:?}");
}

/// The owner approves (and denies) on the bridge's dashboard: it shows the client's name as
/// text, the redirect host and the page's code, and its buttons decide.
#[test]
fn the_owner_decides_on_the_bridges_dashboard() {
    let flow = Flow::start(false);
    let dashboard = flow.bridge.dashboard_url();
    let press = |op: &str| {
        let shot = e2e::browser::artifact(&format!("dashboard-{op}.png"))
            .display()
            .to_string();
        let mut b = Browser::start(
            "desk_browser.mjs",
            "press",
            &dashboard,
            &["--op", op, "--screenshot", &shot],
            40,
            DRIVER_WAIT,
        );
        let page = b.event("pressed");
        b.finish();
        page
    };

    let (browser, state, page) = flow.browse_consent("approve", &[]);
    let code = assert_consent_page(&flow, &page);
    // What the dashboard showed before the owner pressed Approve.
    let shot = e2e::browser::artifact("dashboard-consent-waiting.png")
        .display()
        .to_string();
    let mut show = Browser::start(
        "desk_browser.mjs",
        "show",
        &dashboard,
        &["--screenshot", &shot],
        40,
        DRIVER_WAIT,
    );
    let shown = show.event("page");
    show.finish();
    let consent = &shown["consents"][0];
    assert!(
        consent["client"]
            .as_str()
            .is_some_and(|c| c.contains(EVIL_NAME) && c.contains("(unverified)")),
        "the client's own name, as text and marked unverified: {shown:#}"
    );
    assert_eq!(consent["redirect"], flow.redirect_host());
    assert_eq!(consent["code"], code.as_str());
    assert_eq!(shown["handler_attrs"], json!([]), "{shown:#}");
    let pressed = press("consent-approve");
    assert_eq!(pressed["notice"], "Approved the client.", "{pressed:#}");
    let done = browser.finish();
    assert_landed(&flow, &done);
    let q = flow.callback.wait_for_callback("/callback", &state);
    flow.redeem(q.get("code").expect("code in the redirect"));

    let (browser, state, _) = flow.browse_consent_as("approve", "dashboard deny", &[]);
    let pressed = press("consent-deny");
    assert_eq!(pressed["notice"], "Denied the client.", "{pressed:#}");
    let done = browser.finish();
    assert_landed(&flow, &done);
    let q = flow.callback.wait_for_callback("/callback", &state);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{q:?}"
    );
}

/// Deny sends the browser to the redirect URI with `error=access_denied`, `state`, `iss`.
#[test]
fn deny_redirects_with_access_denied() {
    let flow = Flow::start(false);
    let (browser, state, page) = flow.browse_consent("deny", &[]);
    let code = assert_consent_page(&flow, &page);
    let done = browser.finish();
    assert_landed(&flow, &done);
    let q = flow.callback.wait_for_callback("/callback", &state);
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("iss"), Some(&flow.issuer), "{q:?}");
    assert_eq!(q.get("code"), None, "no code after Deny: {q:?}");
    // The denied request is gone: the owner can no longer approve it.
    let out = flow.bridge_approve(&code);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A page of another origin cannot show the consent page in a frame: the browser blocks it
/// (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), while a frameable control page in
/// a second frame of the same page renders.
#[test]
fn consent_page_refuses_to_be_framed() {
    let flow = Flow::start(false);
    let authorize = flow.authorize_url(&state_for("frame"));
    let framer = Site::start(vec![(
        "/embed",
        format!(
            "<!doctype html><title>framer</title><p>another origin</p>\
             <iframe name=consent width=600 height=400 src=\"{}\"></iframe>\
             <iframe name=control width=300 height=100 src=\"{}\"></iframe>",
            authorize.replace('&', "&amp;"),
            flow.callback.url("/control"),
        ),
    )]);
    let done = browser("frame", &framer.url("/embed"), &[]).finish();
    let consent = frame(&done, "consent");
    assert_eq!(consent["consent_markup"], false, "{consent}");
    let text = consent["text"].as_str().unwrap_or("");
    assert!(
        !text.contains(TUNNEL) && !text.contains("Allow access"),
        "the framed consent page rendered: {consent}"
    );
    assert!(
        !consent["url"]
            .as_str()
            .unwrap_or("")
            .starts_with(&flow.relay.base),
        "the frame does not hold the relay's document: {consent}"
    );
    // The browser did fetch it and saw the headers that refuse framing.
    let doc = document(&done, &authorize);
    assert_eq!(doc["status"], 200);
    assert_hardened(doc);
}

/// The relay operator approves by typing the operator password in the page's form: a
/// wrong one is refused on the page, the right one redirects with a code.
#[test]
fn operator_password_in_the_form_approves() {
    let flow = Flow::start(true);
    let wrong = "not the password";
    let password = ["--password", OPERATOR_PASSWORD, "--wrong-password", wrong];
    let (mut browser, state, page) = flow.browse_consent("operator", &password);
    assert_consent_page(&flow, &page);
    let inputs = form_values(page["forms"].as_array().expect("forms"), "inputs", "type");
    assert!(inputs.contains(&"password"), "{inputs:?}");
    let wrong = browser.event("wrong_password");
    assert_eq!(wrong["status"], 403, "{wrong}");
    assert_eq!(wrong["notice"], "Wrong operator password.", "{wrong}");
    let done = browser.finish();
    assert_landed(&flow, &done);
    let q = flow.callback.wait_for_callback("/callback", &state);
    assert_eq!(q.get("iss"), Some(&flow.issuer), "{q:?}");
    flow.redeem(q.get("code").expect("code in the redirect"));
}

/// "Allow this tool for this client until the bridge restarts", pressed on the dashboard,
/// lets that OAuth client's next call of the tool through and still holds another
/// client's (each authorization is its own client).
#[test]
fn allowed_always_on_the_dashboard_holds_for_one_client_only() {
    let flow = Flow::start_with(
        false,
        &[
            "--confirm-tool",
            "test_simple_text",
            "--confirm-timeout-secs",
            "30",
        ],
    );
    let dashboard = flow.bridge.dashboard_url();
    let desk = |mode: &str, op: &str| {
        let mut b = Browser::start(
            "desk_browser.mjs",
            mode,
            &dashboard,
            &["--op", op],
            40,
            DRIVER_WAIT,
        );
        let page = b.event(if mode == "press" {
            "pressed"
        } else {
            "waiting"
        });
        if mode == "decide" {
            b.event("decided");
        }
        b.finish();
        page
    };
    // Two authorizations, approved on the dashboard: two clients.
    let mut tokens = Vec::new();
    for tag in ["client one", "client two"] {
        let (browser, state, _) = flow.browse_consent_as("approve", tag, &[]);
        desk("press", "consent-approve");
        assert_landed(&flow, &browser.finish());
        let q = flow.callback.wait_for_callback("/callback", &state);
        tokens.push(flow.redeem(q.get("code").expect("code in the redirect")));
    }
    let resource = flow.resource();
    let call = move |token: String, id: u64| {
        let url = resource.clone();
        std::thread::spawn(move || {
            e2e::http::BlockingHttp::new()
                .post(
                    &url,
                    "application/json",
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                           "params": {"name": "test_simple_text", "arguments": {}}})
                    .to_string(),
                    &[
                        ("authorization", &format!("Bearer {token}")),
                        ("accept", "application/json, text/event-stream"),
                    ],
                )
                .response_to(&json!(id))
        })
    };
    let text = |v: &Value| {
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    const ANSWER: &str = "This is a simple text response for testing.";

    // Client one: held, allowed always; its next call runs at once.
    let held = call(tokens[0].clone(), 1);
    let waiting = desk("decide", "allow-always");
    let first_client = waiting["calls"][0]["client"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert_eq!(text(&held.join().expect("call")), ANSWER);
    assert_eq!(
        text(&call(tokens[0].clone(), 2).join().expect("call")),
        ANSWER
    );

    // Client two: still held; denied on the dashboard.
    let held = call(tokens[1].clone(), 3);
    let waiting = desk("decide", "deny");
    let second_client = waiting["calls"][0]["client"].as_str().unwrap_or("");
    assert_ne!(second_client, first_client, "another client: {waiting:#}");
    let denied = held.join().expect("call");
    assert_eq!(denied["result"]["isError"], true, "{denied}");
}
