//! A refused token request does not burn the code of the client it was issued to, and
//! every user of one client is a principal of their own.

use std::net::Ipv4Addr;

use serde_json::json;

use crate::attacker::{Setup, tokens_of};
use crate::{LOOPBACK_REDIRECT as REDIRECT, PKCE_VERIFIER};

/// Someone holding a client's authorization code (but not its PKCE verifier) presents it
/// as another client, with a wrong verifier and with a wrong redirect URI: each is refused,
/// and the client it was issued to still exchanges it, once.
#[test]
fn a_refused_code_exchange_does_not_burn_the_code() {
    const TUNNEL: &str = "code-desk";
    let (s, _bridge, rt) = Setup::owner_serving(TUNNEL);
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
    let (s, _bridge, rt) = Setup::owner_serving(TUNNEL);
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
