//! Edges of grants found while writing these tests: revoking another client's token, a
//! refused refresh consuming its token, and the private-address refusal, which must not
//! name the address.

use crate::LOOPBACK_REDIRECT;
use crate::grants::{Grants, OAuthAnswer, alice_serving, tokens_of};

/// Revocation (RFC 7009 §2.1) is refused for a token issued to another client.
#[test]
fn revoking_another_clients_token_is_refused() {
    let (relay, _bridge, http) = alice_serving("revoke-desk");
    let owner = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let stranger = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let (_, refresh) = relay.tokens_for(&http, &owner, "revoke-desk", "alice");
    let r = http.post_form(
        &relay.url("/oauth/revoke"),
        &[("token", &refresh), ("client_id", &stranger)],
        &[],
    );
    assert_ne!(r.status, 200, "a stranger revoked the token: {}", r.text());
    tokens_of(&relay.refresh(&http, &owner, &refresh));
}

/// A refresh request refused for its `resource` does not use up the refresh token.
#[test]
fn a_refused_refresh_leaves_the_refresh_token_usable() {
    let (relay, _bridge, http) = alice_serving("refresh-desk");
    let client = relay.register(&http, &[LOOPBACK_REDIRECT]);
    let (_, refresh) = relay.tokens_for(&http, &client, "refresh-desk", "alice");
    let elsewhere = relay.mcp_url("elsewhere");
    relay
        .refresh_for(&http, &client, &refresh, Some(&elsewhere))
        .assert_oauth_error(400, "invalid_target", "refresh for another resource");
    tokens_of(&relay.refresh(&http, &client, &refresh));
}

/// The refusal page for a client metadata document on a private address does not name
/// that address (it would tell anyone what a name resolves to).
#[test]
fn cimd_refusal_does_not_name_the_private_address() {
    let (relay, _bridge, http) = alice_serving("cimd-desk");
    let url = relay.authorize_url(
        "https://localhost/client.json",
        LOOPBACK_REDIRECT,
        "cimd-desk",
        "c1",
    );
    let r = http.get(&url, &[]);
    r.assert_error_page(400, "a private or local address", "CIMD on localhost");
    assert!(!r.text().contains("127.0.0.1"), "{}", r.text());
}
