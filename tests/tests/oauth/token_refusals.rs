//! Tokens are bound to their tunnel (audience), to their expiry and to their grant.

use e2e::http::BlockingHttp;
use e2e::relay::OAuthRelay;
use serde_json::json;

use crate::grants::{
    Grants, OAuthAnswer, assert_token_dies, assert_unauthorized, mcp_initialize, tokens_of,
};
use crate::{LOOPBACK_REDIRECT, PKCE_VERIFIER};

/// Tokens are bound to their tunnel (audience), to their expiry and to their grant: a token of
/// one tunnel on another, a reused code (and what it bought), a PKCE or redirect mismatch at
/// the token endpoint, a revoked refresh token; and MCP requests without a token.
#[test]
fn token_refusals() {
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let _a = relay.bridge("alice", "tunnel-a", false);
    let _b = relay.bridge("alice", "tunnel-b", false);
    let http = BlockingHttp::new();

    // Discovery documents.
    let prm = http.get(&relay.prm_url("tunnel-a"), &[]);
    assert_eq!(prm.status, 200, "{}", prm.text());
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
        &mcp_initialize(&http, &a_url, None),
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
    let bogus = mcp_initialize(&http, &a_url, Some("mcpat_made-up"));
    assert_unauthorized(&bogus, &relay, "tunnel-a", true, "made-up token");

    // A token for tunnel A works there, and nowhere else.
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let (access, refresh) = relay.tokens_for(&http, &client, "tunnel-a", "alice");
    let ok = mcp_initialize(&http, &a_url, Some(&access));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("protocolVersion"), "{}", ok.text());
    let on_b = mcp_initialize(&http, &relay.mcp_url("tunnel-b"), Some(&access));
    assert_unauthorized(
        &on_b,
        &relay,
        "tunnel-b",
        true,
        "tunnel A's token on tunnel B",
    );
    let elsewhere = relay.mcp_url("tunnel-b");
    relay
        .refresh_for(&http, &client, &refresh, Some(&elsewhere))
        .assert_oauth_error(400, "invalid_target", "refresh for another tunnel");

    // A code is used once; its second use is refused and kills what the first one bought.
    let code = relay.code_for(&http, &client, "tunnel-a", "alice");
    let (access1, refresh1) = tokens_of(&relay.exchange(&http, &client, &code, LOOPBACK_REDIRECT));
    assert_eq!(mcp_initialize(&http, &a_url, Some(&access1)).status, 200);
    let again = relay.exchange(&http, &client, &code, LOOPBACK_REDIRECT);
    again.assert_oauth_error(400, "invalid_grant", "a reused code");
    relay.refresh(&http, &client, &refresh1).assert_oauth_error(
        400,
        "invalid_grant",
        "refresh token of a reused code",
    );

    // PKCE: the verifier must match the challenge.
    let code = relay.code_for(&http, &client, "tunnel-a", "alice");
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
    let code = relay.code_for(&http, &two, "tunnel-a", "alice");
    let why = relay
        .exchange(&http, &two, &code, other)
        .assert_oauth_error(
            400,
            "invalid_grant",
            "redirect_uri mismatch at the token endpoint",
        );
    assert!(why.contains("redirect_uri"), "{why}");

    // A revoked refresh token is dead, and so is its family's access token.
    let (access2, refresh2) = relay.tokens_for(&http, &client, "tunnel-a", "alice");
    assert_eq!(mcp_initialize(&http, &a_url, Some(&access2)).status, 200);
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
    assert_eq!(mcp_initialize(&http, &a_url, Some(&access)).status, 200);
}
