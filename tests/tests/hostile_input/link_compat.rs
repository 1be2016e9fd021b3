//! The link's handshake with the previous release in both directions: a bridge of the
//! previous release (no token header, token in its `Hello`) is served by this relay; this
//! bridge is served by a relay of the previous release (a fake one: it accepts any upgrade,
//! reads the `Hello` and answers `Welcome`). And the bridge token is never in a log, even
//! at `RUST_LOG=trace`.

use bytes::Bytes;
use e2e::fake_bridge::{
    WS_TIMEOUT, anonymous_request, fake_relay, next_frame, open_link, ping, previous_release_hello,
    send_frame, until_frame, welcome,
};
use e2e::{Bridge, BridgeOpts, Relay, addr_of};
use futures_util::SinkExt;
use protocol::{Frame, Refusal};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{connected, ip};

#[tokio::test]
async fn previous_bridge_is_served_by_this_relay() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    // No token header: the previous release sends the token in its Hello only.
    let (mut ws, features) = open_link(addr, ip("127.0.0.1"), "old-bridge", None).await;
    assert!(
        !protocol::has_feature(&features, protocol::FEATURE_TOKEN_HEADER),
        "{features:?}"
    );
    let w = previous_release_hello(&mut ws, &relay.token, "old-bridge", "old bridge")
        .await
        .expect("the previous release's handshake is welcomed");
    assert!(w.mcp_url.ends_with("/old-bridge/mcp"), "{w:?}");
    assert!(connected(&relay, "old-bridge").await);
    // Past the Hello, the whole frame limit applies again: a 1 MiB answer (to an exchange
    // the relay does not know, so it is dropped) keeps the link up.
    let big = Frame::Response(protocol::Response {
        exchange: 12345,
        status: 200,
        session: None,
        flags: protocol::frame::FLAG_FINAL,
        event_id: None,
        body: Bytes::from(vec![b' '; 1 << 20]),
    });
    ws.send(Message::Binary(big.encode())).await.expect("send");
    let pong = ping(&mut ws, 7, "after a large frame").await;
    assert_eq!(
        pong,
        Some(7),
        "the relay dropped the previous release's bridge after a 1 MiB frame"
    );
    assert!(connected(&relay, "old-bridge").await);
}

/// A relay of the previous release: accepts any upgrade, ignores its headers, reads the
/// `Hello` and checks its token, answers `Welcome`, then sends one request and reports the
/// bridge's answer.
struct PreviousRelay {
    url: String,
    /// The upgrade's `Authorization` header, the Hello's token, and the body of the answer
    /// to a `ping` request.
    seen: tokio::sync::oneshot::Receiver<(Option<String>, String, Bytes)>,
}

impl PreviousRelay {
    async fn start(token: String) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let url = fake_relay(move |tcp, addr| async move {
            let mut auth = None;
            // The callback's error type is tungstenite's own (an HTTP response).
            #[allow(clippy::result_large_err)]
            let callback =
                |req: &tungstenite::handshake::server::Request,
                 resp: tungstenite::handshake::server::Response| {
                    auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    Ok(resp)
                };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
                .await
                .expect("upgrade");
            let Some(Frame::Hello(h)) = next_frame(&mut ws, "previous relay").await else {
                panic!("the bridge sent no Hello");
            };
            if h.token != token {
                let refused = Frame::Refused(Refusal {
                    reason: protocol::RefuseReason::BadToken,
                    message: "unknown token".into(),
                });
                let _ = ws.send(Message::Binary(refused.encode())).await;
                let _ = tx.send((auth, h.token, Bytes::new()));
                return;
            }
            let welcome = welcome("0.0.9-previous", &format!("http://{addr}"), &h.tunnel);
            send_frame(&mut ws, welcome, "previous relay").await;
            let ping = anonymous_request(1, Some(br#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#));
            send_frame(&mut ws, ping, "previous relay").await;
            let body = until_frame(&mut ws, "previous relay", |f| match f {
                Frame::Response(r) if r.exchange == 1 && r.is_final() => Some(r.body),
                _ => None,
            })
            .await
            .expect("the bridge left before answering");
            let _ = tx.send((auth, h.token, body));
            // Stay up (answering pings) until the test ends.
            while let Some(f) = next_frame(&mut ws, "previous relay").await {
                if let Frame::Ping(v) = f {
                    let _ = ws.send(Message::Binary(Frame::Pong(v).encode())).await;
                }
            }
        })
        .await;
        Self { url, seen: rx }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_bridge_is_served_by_previous_relay() {
    let token = "previous-relay-token-0123456789".to_owned();
    let fake = PreviousRelay::start(token.clone()).await;
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((fake.url.clone(), token.clone())),
        name: Some("compat".into()),
        no_auth: true,
        ..Default::default()
    });
    assert_eq!(bridge.mcp_url, format!("{}/compat/mcp", fake.url));
    let (auth, hello_token, body) = tokio::time::timeout(WS_TIMEOUT, fake.seen)
        .await
        .expect("the previous relay saw the exchange")
        .expect("report");
    assert_eq!(auth.as_deref(), Some(format!("Bearer {token}").as_str()));
    assert_eq!(
        hello_token, token,
        "without the relay's token-header feature, the Hello carries the token"
    );
    let v: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(v["id"], json!(42), "{v}");
    assert!(v.get("result").is_some(), "{v}");
}

// ----- no token in the logs -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_not_logged_at_trace() {
    let relay = Relay::start(&[]);
    let bridge = BridgeOpts::default()
        .via(&relay)
        .name("traced")
        .env(&[("RUST_LOG", "trace")])
        .start();
    assert!(bridge.mcp_url.ends_with("/traced/mcp"));
    let log = bridge.proc.log_text();
    // The WebSocket library does log (its handshake), only not its frames and headers.
    assert!(
        log.contains("tungstenite"),
        "the bridge logs verbosely: {}",
        &log[..log.len().min(2000)]
    );
    let hex: String = relay.token.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !log.contains(&relay.token),
        "the bridge log holds the token"
    );
    assert!(!log.contains(&hex), "the bridge log holds the token in hex");
}
