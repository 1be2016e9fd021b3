//! The Python SDK (mcp 2.x, `tests/clients/py_oauth.py`) through relay and bridge: it
//! discovers everything from the 401 (protected-resource metadata, then
//! authorization-server metadata), registers itself, gets the owner's consent, exchanges
//! the code and lists and calls tools. Three runs at once: a loopback redirect URI approved
//! with `bridge approve`, ChatGPT's approved by typing the code into the bridge's terminal,
//! Claude's approved with the operator password in the page's form. The relay is then
//! restarted on the same port and data directory: the stored grant is refreshed by the same
//! client (the access token lives 2 s), and the rotated refresh token is refused
//! (`invalid_grant`, and the reuse revokes its family).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::Bridge;
use e2e::fixture_truth::SIMPLE_TEXT;
use e2e::http::BlockingHttp;
use e2e::relay::{OAuthRelay, OPERATOR_PASSWORD, approve};
use e2e::wait::eventually;
use reqwest::Url;
use serde_json::{Value, json};

use crate::grants::{Grants, OAuthAnswer, assert_unauthorized, mcp_initialize};
use crate::py_oauth::PyOAuth;
use crate::{CHATGPT_REDIRECT, CLAUDE_REDIRECT, LOOPBACK_REDIRECT};

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
    let http = BlockingHttp::new();
    let r = mcp_initialize(&http, &mcp_url, last["access_token"].as_str());
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
