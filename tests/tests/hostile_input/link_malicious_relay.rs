//! A malicious relay cannot grow the bridge's memory with sessionless `GET` streams: past a
//! cap they are answered with an error (a fake relay opens 300,000 of them).

use std::time::Duration;

use e2e::fake_bridge::{
    WS_TIMEOUT, Ws, anonymous_request, fake_relay, next_binary, next_frame, send_frame, welcome,
};
use e2e::process::proc_kib;
use e2e::{Bridge, BridgeOpts};
use futures_util::{SinkExt, StreamExt};
use protocol::{Frame, Limits};
use tokio_tungstenite::tungstenite::Message;

/// A relay that welcomes one bridge and hands its socket to the test.
async fn malicious_relay() -> (String, tokio::sync::oneshot::Receiver<Ws>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let url = fake_relay(|tcp, addr| async move {
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let Some(Frame::Hello(h)) = next_frame(&mut ws, "malicious relay").await else {
            panic!("the bridge sent no Hello");
        };
        let welcome = welcome("evil", &format!("http://{addr}"), &h.tunnel);
        send_frame(&mut ws, welcome, "malicious relay").await;
        let _ = tx.send(ws);
    })
    .await;
    (url, rx)
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
    while !matches!(
        Frame::decode(
            next_binary(&mut stream, WS_TIMEOUT, "settled").await,
            &Limits::default()
        ),
        Ok(Frame::Status(_))
    ) {}
    let pid = bridge.proc.pid();
    let before = proc_kib(pid, "VmRSS");

    // Answers are read while requests go out (the bridge pushes back when nobody reads).
    let reader = tokio::spawn(async move {
        let (mut opened, mut refused) = (0u64, 0u64);
        while opened + refused < N {
            let b = next_binary(&mut stream, Duration::from_secs(60), "GETs").await;
            match Frame::decode(b, &Limits::default()).expect("frame") {
                Frame::Response(r) if r.status == 200 && !r.is_final() => opened += 1,
                Frame::Response(r) if r.status == 503 && r.is_final() => refused += 1,
                _ => {}
            }
        }
        (opened, refused, stream)
    });
    for e in 1..=N {
        sink.feed(Message::Binary(anonymous_request(e, None).encode()))
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
    let ping = anonymous_request(N + 1, Some(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#));
    sink.send(Message::Binary(ping.encode()))
        .await
        .expect("send");
    loop {
        let b = next_binary(&mut stream, WS_TIMEOUT, "the answer to the ping").await;
        if let Ok(Frame::Response(r)) = Frame::decode(b, &Limits::default())
            && r.exchange == N + 1
        {
            assert!(r.is_final() && r.status == 200, "{r:?}");
            break;
        }
    }
}
