//! A revoked bridge token takes its OAuth grants with it; bridge tokens cannot be guessed
//! at full speed (on `/oauth/approve` and on bridge connections), nor told apart, and are
//! long.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use e2e::fake_bridge::{handshake, hello_from, open_link};
use e2e::wait::eventually;
use e2e::{Proc, bin};
use protocol::{ClientAuth, Refusal, RefuseReason};
use serde_json::json;

use crate::attacker::{Setup, burst, loopback, runtime, tally, tokens_of};

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
    let offline = eventually(Duration::from_secs(30), || {
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
    let refused = eventually(Duration::from_secs(10), || {
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
    let answers = burst(&rt, s.port, 30, "/oauth/approve", |i| {
        let headers = vec![
            ("Content-Type".into(), "application/json".into()),
            ("Authorization".into(), format!("Bearer brt_guess-{i:0>40}")),
        ];
        (attacker, headers, json!({ "code": page.code }).to_string())
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
        let mut relay = Proc::start(cmd, "relay");
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
async fn bridge_hello(from: Ipv4Addr, port: u16, token: &str, tunnel: &str) -> Option<Refusal> {
    let relay = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut ws, _) = open_link(relay, IpAddr::V4(from), tunnel, None).await;
    let hello = hello_from("attack-0", token, tunnel, ClientAuth::OAuth);
    handshake(&mut ws, hello, "the bridge's hello").await.err()
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
        if r.reason == RefuseReason::BadToken {
            bad += 1;
        } else {
            throttled = Some(r);
            break;
        }
    }
    assert_eq!(bad, LIMIT, "wrong tokens checked before the limit");
    let r = throttled.expect("throttled after the limit");
    assert_eq!(r.reason, RefuseReason::Busy, "{r:?}");
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
    assert_eq!(r.map(|r| r.reason), Some(RefuseReason::Busy));
    let r = rt.block_on(bridge_hello(
        loopback(41),
        s.port,
        s.token("owner"),
        "hello-desk",
    ));
    assert!(r.is_none(), "the owner's bridge was refused: {r:?}");
}
