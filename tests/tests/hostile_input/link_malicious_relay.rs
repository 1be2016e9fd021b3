//! A malicious relay cannot grow the bridge's memory with sessionless `GET` streams: past a
//! cap they are answered with an error (a fake relay opens 300,000 of them).

use std::time::Duration;

use bytes::Bytes;
use e2e::fake_bridge::{WS_TIMEOUT, Ws, next_frame};
use e2e::process::proc_kib;
use e2e::{Bridge, BridgeOpts};
use futures_util::{SinkExt, StreamExt};
use protocol::{Frame, Limits, Request, RequestKind, Welcome};
use tokio_tungstenite::tungstenite::Message;

/// A relay that welcomes one bridge and hands its socket to the test.
async fn malicious_relay() -> (String, tokio::sync::oneshot::Receiver<Ws>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let Some(Frame::Hello(h)) = next_frame(&mut ws, "malicious relay").await else {
            panic!("the bridge sent no Hello");
        };
        let welcome = Frame::Welcome(Welcome {
            protocol: protocol::PROTOCOL_VERSION,
            relay_version: "evil".into(),
            mcp_url: format!("http://{addr}/{}/mcp", h.tunnel),
            sse_url: format!("http://{addr}/{}/sse", h.tunnel),
        });
        ws.send(Message::Binary(welcome.encode()))
            .await
            .expect("welcome");
        let _ = tx.send(ws);
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_relay_cannot_grow_the_bridge_with_sessionless_streams() {
    const N: u64 = 300_000;
    let (url, socket) = malicious_relay().await;
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((url, "any-token".into())),
        name: Some("target".into()),
        no_auth: true,
        ..Default::default()
    });
    let ws = tokio::time::timeout(WS_TIMEOUT, socket)
        .await
        .expect("the bridge connected")
        .expect("socket");
    let (mut sink, mut stream) = ws.split();
    // The bridge's first Status frame: it is settled.
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, stream.next())
            .await
            .expect("the bridge said nothing")
            .expect("socket ended")
            .expect("socket error");
        if let Message::Binary(b) = msg
            && let Ok(Frame::Status(_)) = Frame::decode(b, &Limits::default())
        {
            break;
        }
    }
    let pid = bridge.proc.pid();
    let before = proc_kib(pid, "VmRSS");

    // Answers are read while requests go out (the bridge pushes back when nobody reads).
    let reader = tokio::spawn(async move {
        let (mut opened, mut refused) = (0u64, 0u64);
        while opened + refused < N {
            let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .expect("the bridge stopped answering")
                .expect("socket ended")
                .expect("socket error");
            let Message::Binary(b) = msg else { continue };
            match Frame::decode(b, &Limits::default()).expect("frame") {
                Frame::Response(r) if r.status == 200 && !r.is_final() => opened += 1,
                Frame::Response(r) if r.status == 503 && r.is_final() => refused += 1,
                _ => {}
            }
        }
        (opened, refused, stream)
    });
    for e in 1..=N {
        let get = Frame::Request(Request {
            exchange: e,
            kind: RequestKind::Get,
            session: None,
            protocol_version: None,
            last_event_id: None,
            principal: "anonymous".into(),
            body: Bytes::new(),
        });
        sink.feed(Message::Binary(get.encode()))
            .await
            .expect("send");
        if e % 1024 == 0 {
            sink.flush().await.expect("flush");
        }
    }
    sink.flush().await.expect("flush");
    let (opened, refused, mut stream) = reader.await.expect("reader");
    let after = proc_kib(pid, "VmRSS");
    eprintln!(
        "bridge RSS {before} KiB before, {after} KiB after {N} sessionless GETs \
         ({opened} streams opened, {refused} refused)"
    );
    assert!(opened <= 1024, "{opened} sessionless streams kept open");
    assert_eq!(opened + refused, N);
    assert!(
        after.saturating_sub(before) < 12 * 1024,
        "the bridge grew from {before} KiB to {after} KiB"
    );
    // It still serves.
    let ping = Frame::Request(Request {
        exchange: N + 1,
        kind: RequestKind::Post,
        session: None,
        protocol_version: None,
        last_event_id: None,
        principal: "anonymous".into(),
        body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
    });
    sink.send(Message::Binary(ping.encode()))
        .await
        .expect("send");
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, stream.next())
            .await
            .expect("no answer to the ping")
            .expect("socket ended")
            .expect("socket error");
        let Message::Binary(b) = msg else { continue };
        if let Ok(Frame::Response(r)) = Frame::decode(b, &Limits::default())
            && r.exchange == N + 1
        {
            assert!(r.is_final() && r.status == 200, "{r:?}");
            break;
        }
    }
}
