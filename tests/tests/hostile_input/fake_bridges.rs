//! The bridge side (`/<name>/connect`): fake bridges speaking the wire format by hand
//! (wrong token, garbage frames, a name held by another token, unauthenticated tunnels on
//! a public relay), and the real `bridge` binary with a wrong token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use e2e::bridge::{assert_refused_exit, run_until_exit};
use e2e::fake_bridge::{handshake, next_frame, ws_connect};
use e2e::{Bridge, BridgeOpts, Relay};
use futures_util::SinkExt;
use protocol::{ClientAuth, Frame, RefuseReason, Welcome};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::endpoint::{
    Endpoint, FAKE_CLIENT_TOKEN, bridge_on, connected, expect_closed, expect_refused,
    expect_welcome, fake_client_auth, hello, junk,
};

#[tokio::test]
async fn fake_bridge_with_a_wrong_token_is_refused() {
    let relay = Relay::start(&[]);
    let addr = relay.listen_addr();
    let what = "a wrong bridge token";
    expect_refused(
        &addr,
        "wrong-token",
        hello("not-the-token", "wrong-token", fake_client_auth()),
        RefuseReason::BadToken,
        what,
    )
    .await;
    // A name in the Hello that differs from the path is refused too.
    expect_refused(
        &addr,
        "path-name",
        hello(&relay.token, "other-name", fake_client_auth()),
        RefuseReason::BadName,
        "a Hello for another name than the path",
    )
    .await;
    // Nothing was registered, and the relay still serves real bridges.
    let bridge = bridge_on(&relay, "wrong-token");
    Endpoint::of(&bridge).still_serves(what).await;
}

#[tokio::test]
async fn bridge_binary_with_a_wrong_token_exits_2() {
    let relay = Relay::start(&[]);
    let out = run_until_exit(&relay.base, "not-the-token", "refused-bridge", &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("the relay refused this tunnel")
            && stderr.contains("does not know this bridge token"),
        "stderr does not name the refusal:\n{stderr}"
    );
    assert!(
        !stdout.contains("MCP endpoint:"),
        "a refused bridge printed endpoints:\n{stdout}"
    );
    assert!(
        !stderr.contains("not-the-token"),
        "the bridge token leaked into the log:\n{stderr}"
    );
    let bridge = bridge_on(&relay, "refused-bridge");
    Endpoint::of(&bridge)
        .still_serves("a refused bridge binary")
        .await;
}

/// What a garbage-sending fake bridge does, and whether it said `Hello` first.
struct Garbage {
    what: &'static str,
    message: Message,
    after_hello: bool,
    /// The relay answers `Refused(Malformed)` before closing.
    refused: bool,
}

fn garbage_cases(token: &str) -> Vec<Garbage> {
    let full = hello(token, "noisy", fake_client_auth());
    let truncated = full.slice(..full.len() / 2);
    let welcome = Frame::Welcome(Welcome {
        protocol: protocol::PROTOCOL_VERSION,
        relay_version: "x".into(),
        mcp_url: "http://x/noisy/mcp".into(),
        sse_url: "http://x/noisy/sse".into(),
    })
    .encode();
    let mut v = Vec::new();
    for after_hello in [false, true] {
        let refused = !after_hello;
        v.extend([
            Garbage {
                what: "random bytes",
                message: Message::Binary(junk(0xEE, 512)), // no such frame type
                after_hello,
                refused,
            },
            Garbage {
                what: "a Response-typed frame of junk",
                message: Message::Binary(junk(5, 300)),
                after_hello,
                refused,
            },
            Garbage {
                what: "a truncated Hello",
                message: Message::Binary(truncated.clone()),
                after_hello,
                refused,
            },
            Garbage {
                what: "an empty binary message",
                message: Message::Binary(Bytes::new()),
                after_hello,
                refused,
            },
            Garbage {
                what: "a relay-only frame (Welcome)",
                message: Message::Binary(welcome.clone()),
                after_hello,
                refused,
            },
            Garbage {
                what: "a text message",
                message: Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
                after_hello,
                // Not a binary frame: the relay just hangs up.
                refused: false,
            },
        ]);
    }
    v.push(Garbage {
        what: "a second Hello",
        message: Message::Binary(full),
        after_hello: true,
        refused: false,
    });
    v
}

#[tokio::test]
async fn garbage_frames_disconnect_only_the_fake_bridge() {
    let relay = Relay::start(&[]);
    let addr = relay.listen_addr();
    let good = bridge_on(&relay, "steady-tunnel");
    let ep = Endpoint::of(&good);
    ep.still_serves("starting").await;

    // The real bridge answers throughout, while the fake one misbehaves.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        let ep = Endpoint::of(&good);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                ep.still_serves("garbage on another tunnel").await;
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    for g in garbage_cases(&relay.token) {
        let what = format!(
            "{} {}",
            g.what,
            if g.after_hello {
                "after Hello"
            } else {
                "instead of Hello"
            }
        );
        let mut ws = ws_connect(&addr, "noisy").await;
        if g.after_hello {
            let w = handshake(
                &mut ws,
                hello(&relay.token, "noisy", fake_client_auth()),
                &what,
            )
            .await
            .unwrap_or_else(|r| panic!("{what}: refused: {r:?}"));
            assert!(w.mcp_url.ends_with("/noisy/mcp"), "{what}: {w:?}");
        }
        // Sending may fail if the relay hung up already; that is fine.
        let _ = ws.send(g.message).await;
        if g.refused {
            match next_frame(&mut ws, &what).await {
                Some(Frame::Refused(r)) => {
                    assert_eq!(r.reason, RefuseReason::Malformed, "{what}: {r:?}")
                }
                other => panic!("{what}: expected Refused(Malformed), got {other:?}"),
            }
        }
        expect_closed(&mut ws, &what).await;
        // The relay dropped the fake bridge (a name it never admitted stays unknown).
        let state = connected(&relay, "noisy", FAKE_CLIENT_TOKEN).await;
        if g.after_hello {
            assert_eq!(
                state,
                Some(false),
                "{what}: the fake bridge is still connected"
            );
        } else {
            assert_ne!(state, Some(true), "{what}: the fake bridge is connected");
        }
        ep.still_serves(&what).await;
    }

    stop.store(true, Ordering::Relaxed);
    load.await.expect("the real bridge kept answering");
    assert!(
        served.load(Ordering::Relaxed) > 0,
        "the load loop never ran"
    );
    let session = ep.initialize().await;
    assert_eq!(
        ep.tool_text(&session, 7, "echo", json!({"text": "after"}))
            .await,
        "after"
    );
}

#[tokio::test]
async fn a_second_token_cannot_take_a_held_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens");
    const SECOND: &str = "second-bridge-token-0123456789abcdef";
    std::fs::write(&file, format!("{SECOND}\n")).expect("token file");
    let relay = Relay::start(&["--bridge-token-file", file.to_str().expect("utf-8 path")]);
    let addr = relay.listen_addr();
    let holder = bridge_on(&relay, "held-name");
    let ep = Endpoint::of(&holder);
    let session = ep.initialize().await;

    let second = |name| hello(SECOND, name, fake_client_auth());
    let claim_held = |what| {
        expect_refused(
            &addr,
            "held-name",
            second("held-name"),
            RefuseReason::NameTaken,
            what,
        )
    };
    claim_held("a second token claiming a held name").await;
    // The holder was not displaced: its session still works.
    assert_eq!(
        ep.tool_text(&session, 4, "echo", json!({"text": "mine"}))
            .await,
        "mine"
    );
    ep.still_serves("a NameTaken refusal").await;

    // The second token itself is valid for another name.
    let (_ws, w) = expect_welcome(
        &addr,
        "other-name",
        second("other-name"),
        "the second token on a free name",
    )
    .await;
    assert!(w.mcp_url.ends_with("/other-name/mcp"), "{w:?}");

    // The name stays reserved to its first token even while its bridge is away.
    drop(holder);
    claim_held("a second token claiming a name whose bridge left").await;
}

#[tokio::test]
async fn public_relay_refuses_unauthenticated_tunnels() {
    const PUBLIC: &str = "https://relay.example.com";
    let strict = Relay::start(&["--public-url", PUBLIC]);
    let addr = strict.listen_addr();
    expect_refused(
        &addr,
        "open-tunnel",
        hello(&strict.token, "open-tunnel", ClientAuth::None),
        RefuseReason::AuthNotAllowed,
        "--auth none on a public relay",
    )
    .await;
    let (_ws, w) = expect_welcome(
        &addr,
        "guarded-tunnel",
        hello(&strict.token, "guarded-tunnel", fake_client_auth()),
        "bearer auth on a public relay",
    )
    .await;
    assert_eq!(w.mcp_url, format!("{PUBLIC}/guarded-tunnel/mcp"));
    // The real bridge with --auth none stops with the refusal.
    let out = run_until_exit(
        &format!("http://{addr}"),
        &strict.token,
        "open-tunnel",
        &["--auth", "none"],
    )
    .await;
    assert_refused_exit(
        &out,
        &["the relay refused this tunnel", "--allow-unauthenticated"],
    );
    // The strict relay still serves authenticated tunnels (its public URL is elsewhere, so
    // talk to its listen address; a non-loopback relay does not check Host).
    let guarded = BridgeOpts::default()
        .via_url(&format!("http://{addr}"), &strict.token)
        .name("real-guarded")
        .start();
    assert_eq!(guarded.mcp_url, format!("{PUBLIC}/real-guarded/mcp"));
    Endpoint::new(
        &format!("http://{addr}/real-guarded/mcp"),
        guarded.bearer.as_deref(),
    )
    .still_serves("an AuthNotAllowed refusal")
    .await;

    let lenient = Relay::start(&["--public-url", PUBLIC, "--allow-unauthenticated"]);
    let addr = lenient.listen_addr();
    let (_ws, w) = expect_welcome(
        &addr,
        "open-tunnel",
        hello(&lenient.token, "open-tunnel", ClientAuth::None),
        "--auth none with --allow-unauthenticated",
    )
    .await;
    assert_eq!(w.mcp_url, format!("{PUBLIC}/open-tunnel/mcp"));
    let open = Bridge::start(BridgeOpts {
        relay: Some((format!("http://{addr}"), lenient.token.clone())),
        name: Some("real-open".into()),
        no_auth: true,
        ..BridgeOpts::default()
    });
    assert!(open.bearer.is_none());
    Endpoint::new(&format!("http://{addr}/real-open/mcp"), None)
        .still_serves("an unauthenticated tunnel")
        .await;
}
