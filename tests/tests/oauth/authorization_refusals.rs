//! Authorization requests and consents that must not produce a code.

use e2e::http::BlockingHttp;
use e2e::relay::{OAuthRelay, OPERATOR_PASSWORD};
use serde_json::json;

use crate::grants::{Consent, Grants, OAuthAnswer, redirect_params, tokens_of};
use crate::{CHATGPT_REDIRECT, CLAUDE_REDIRECT, LOOPBACK_REDIRECT, PKCE_CHALLENGE, PKCE_VERIFIER};

/// Query or form parameters.
type Params<'a> = Vec<(&'a str, &'a str)>;

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
    let http = BlockingHttp::new();

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
    let r = consent.approve_with(&http, OPERATOR_PASSWORD, false);
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
        let r = consent.approve_with(&http, "wrong", true);
        assert_eq!(r.status, 403, "wrong password #{i}: {}", r.text());
        assert!(r.text().contains("Wrong operator password"), "{}", r.text());
        assert_eq!(r.header("location"), "");
    }
    let r = consent.approve_with(&http, OPERATOR_PASSWORD, true);
    assert_eq!(r.status, 429, "rate limit: {}", r.text());
    assert!(
        r.text().contains("Too many wrong passwords"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("location"), "");
    consent.assert_pending(&http, "after the wrong passwords");

    // The owner can still approve; only then a code comes out.
    relay.approve("alice", &consent.code, TUNNEL);
    let polled = consent.poll(&http);
    let q = redirect_params(&polled, LOOPBACK_REDIRECT, &relay.base, "approved");
    assert_eq!(q["state"], ["s5"]);
    let r = relay.exchange(&http, &client, &q["code"][0], LOOPBACK_REDIRECT);
    tokens_of(&r);
    // The consent is used up.
    http.get(&consent.url, &[("cookie", &consent.cookie)])
        .assert_error_page(400, "expired or was already used", "a used consent");
}
