//! Approvals and grants belong to the tunnel's owner: `bridge approve` by another bridge
//! token is refused, and a name that changes owner takes its grants and pending approvals
//! with it.

use std::time::Duration;

use e2e::http::BlockingHttp;
use e2e::relay::OAuthRelay;

use crate::LOOPBACK_REDIRECT;
use crate::grants::{
    Consent, Grants, OAuthAnswer, assert_token_dies, mcp_initialize, redirect_params, tokens_of,
};

/// `bridge approve` only works for the tunnel's owner, and a name that changes owner (released
/// by the operator, claimed by another bridge token) takes its old grants and pending
/// approvals with it.
#[test]
fn approvals_and_grants_belong_to_the_tunnel_owner() {
    const SHARED: &str = "shared-desk";
    let relay = OAuthRelay::start(&["alice", "bob"], false, &[]);
    let mut alice = relay.bridge("alice", SHARED, false);
    let _bob = relay.bridge("bob", "bob-desk", false);
    let http = BlockingHttp::new();
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
    let (access, refresh) = relay.tokens_for(&http, &client, SHARED, "alice");
    let url = relay.mcp_url(SHARED);
    assert_eq!(mcp_initialize(&http, &url, Some(&access)).status, 200);

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
    let polled = consent.poll(&http);
    let q = redirect_params(&polled, LOOPBACK_REDIRECT, &relay.base, "bob's approval");
    let (access, _) = tokens_of(&relay.exchange(&http, &client, &q["code"][0], LOOPBACK_REDIRECT));
    assert_eq!(mcp_initialize(&http, &url, Some(&access)).status, 200);
}

/// An approval given by the previous owner must not turn into a grant for the new owner's
/// server when the browser collects the code after the name changed hands.
#[test]
fn an_approval_does_not_survive_a_change_of_owner() {
    const SHARED: &str = "moving-desk";
    let relay = OAuthRelay::start(&["alice", "bob"], false, &[]);
    let _alice = relay.bridge("alice", SHARED, false);
    let http = BlockingHttp::new();
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
        let used = mcp_initialize(&http, &relay.mcp_url(SHARED), Some(&access));
        panic!(
            "a code approved by alice was issued after bob claimed the name; its token on \
             bob's tunnel: HTTP {}",
            used.status
        );
    }
}
