//! The relay side of HTTP+SSE sessions across a cut, with hand-made bridges: a bridge of
//! an earlier release (no `sse-reattach` feature) has its clients' streams ended at the
//! cut, and is never asked to carry a session on (it would take that for a new session); a
//! bridge announcing the feature is asked, for the stream's session and principal, and what
//! it sends then reaches the same client stream, which got keep-alive comments meanwhile.

use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::fake_bridge::{Ws, handshake, hello_from, next_frame, send_frame, upgrade};
use e2e::{Relay, addr_of};
use protocol::frame::{FLAG_FINAL, FLAG_STREAM};
use protocol::{ClientAuth, Frame, Request, RequestKind, Response};

/// Longest wait for an SSE chunk or the end of a stream.
const WAIT: Duration = Duration::from_secs(10);

/// A hand-made bridge for tunnel `name`: announcing `features` (with the token in the
/// upgrade's header, as this release does), or none at all (the previous release: token
/// in the `Hello`).
async fn fake_bridge(relay: &Relay, name: &str, features: Option<&str>) -> Ws {
    let addr = addr_of(&relay.base);
    let (header_token, hello_token) = match features {
        Some(_) => (Some(relay.token.as_str()), ""),
        None => (None, relay.token.as_str()),
    };
    let (mut ws, _) = upgrade(addr, addr.ip(), name, header_token, features)
        .await
        .opened();
    let hello = hello_from("hand-made", hello_token, name, ClientAuth::None);
    match handshake(&mut ws, hello, "a hand-made bridge").await {
        Ok(_) => ws,
        Err(r) => panic!("expected a Welcome, got {r:?}"),
    }
}

/// The next frame from the relay (its pings skipped); `None` when the socket ended.
async fn next(ws: &mut Ws) -> Option<Frame> {
    next_frame(ws, "the relay").await
}

async fn next_request(ws: &mut Ws) -> Request {
    loop {
        match next(ws).await {
            Some(Frame::Request(r)) => return r,
            Some(_) => {}
            None => panic!("the relay closed the link"),
        }
    }
}

async fn respond(ws: &mut Ws, r: Response) {
    send_frame(ws, Frame::Response(r), "a response").await;
}

fn frame(exchange: u64, session: Option<&str>, flags: u8, body: &[u8]) -> Response {
    Response {
        exchange,
        status: 200,
        session: session.map(str::to_owned),
        flags,
        event_id: None,
        body: Bytes::copy_from_slice(body),
    }
}

/// A client's `GET /<name>/sse` answered by the hand-made bridge as a new session `sid`:
/// the response (its endpoint event read) and the principal the relay named.
async fn open_sse(
    relay: &Relay,
    ws: &mut Ws,
    name: &str,
    sid: &str,
) -> (reqwest::Response, String) {
    let url = format!("{}/{name}/sse", relay.base);
    let get = tokio::spawn(async move { e2e::http::client().get(url).send().await });
    let r = next_request(ws).await;
    assert_eq!(
        (r.kind, r.session.as_deref()),
        (RequestKind::HttpSseOpen, None)
    );
    respond(ws, frame(r.exchange, Some(sid), FLAG_STREAM, b"")).await;
    let mut resp = get.await.expect("task").expect("the SSE answer");
    assert_eq!(resp.status(), 200);
    let head = chunk(&mut resp).await.expect("the endpoint event");
    assert!(
        head.contains("event: endpoint") && head.contains(&format!("sessionId={sid}")),
        "{head}"
    );
    (resp, r.principal)
}

/// The next chunk of an SSE stream; `None` when it ended.
async fn chunk(resp: &mut reqwest::Response) -> Option<String> {
    let c = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .expect("the stream went silent")
        .ok()
        .flatten()?;
    Some(String::from_utf8_lossy(&c).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_carries_streams_on_only_for_bridges_that_say_so() {
    let relay = Relay::start(&["--keepalive-secs", "1"]);

    // A bridge of an earlier release: the stream ends with the link, and the bridge, back
    // at once, is never asked to carry the session on.
    let mut old = fake_bridge(&relay, "old-bridge", None).await;
    let (mut sse, _) = open_sse(&relay, &mut old, "old-bridge", "sess-old").await;
    drop(old);
    let cut = Instant::now();
    let mut old = fake_bridge(&relay, "old-bridge", None).await;
    while let Some(c) = chunk(&mut sse).await {
        assert!(c.starts_with(':'), "only keep-alives: {c}");
    }
    assert!(
        cut.elapsed() < Duration::from_secs(5),
        "ended with the link"
    );
    let asked = tokio::time::timeout(Duration::from_millis(500), next(&mut old)).await;
    assert!(
        !matches!(asked, Ok(Some(Frame::Request(_)))),
        "the earlier release got {asked:?}"
    );

    // A bridge that carries HTTP+SSE sessions across a reconnect.
    let features = "in-use, sse-reattach";
    let mut first = fake_bridge(&relay, "new-bridge", Some(features)).await;
    let (mut sse, principal) = open_sse(&relay, &mut first, "new-bridge", "sess-new").await;
    drop(first);
    // Away for a while: the client's stream stays open with keep-alive comments.
    let away = Instant::now();
    let mut kept_alive = 0;
    while away.elapsed() < Duration::from_millis(2500) {
        let c = chunk(&mut sse).await.expect("the stream stays open");
        assert!(c.starts_with(": keepalive"), "{c}");
        kept_alive += 1;
    }
    assert!(kept_alive >= 1);
    let mut second = fake_bridge(&relay, "new-bridge", Some(features)).await;
    let r = next_request(&mut second).await;
    assert_eq!(r.kind, RequestKind::HttpSseOpen);
    assert_eq!(
        r.session.as_deref(),
        Some("sess-new"),
        "the stream's session"
    );
    assert_eq!(r.principal, principal, "for the principal that opened it");
    respond(&mut second, frame(r.exchange, None, FLAG_STREAM, b"")).await;
    let note = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"carried"}}"#;
    respond(&mut second, frame(r.exchange, None, 0, note)).await;
    let got = loop {
        let c = chunk(&mut sse).await.expect("the stream goes on");
        if !c.starts_with(':') {
            break c;
        }
    };
    assert!(
        got.contains("event: message") && got.contains("carried"),
        "{got}"
    );
    assert!(!got.contains("endpoint"), "no second endpoint event: {got}");
    // The session's end ends the stream.
    respond(&mut second, frame(r.exchange, None, FLAG_FINAL, b"")).await;
    while let Some(c) = chunk(&mut sse).await {
        assert!(c.starts_with(':'), "{c}");
    }

    // A bridge that refuses (the session ended, or is another principal's): the stream
    // ends.
    let (mut sse, _) = open_sse(&relay, &mut second, "new-bridge", "sess-gone").await;
    drop(second);
    let mut third = fake_bridge(&relay, "new-bridge", Some(features)).await;
    let r = next_request(&mut third).await;
    assert_eq!(r.session.as_deref(), Some("sess-gone"));
    let mut refusal = frame(
        r.exchange,
        None,
        FLAG_FINAL,
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#,
    );
    refusal.status = 404;
    respond(&mut third, refusal).await;
    while let Some(c) = chunk(&mut sse).await {
        assert!(c.starts_with(':'), "{c}");
    }
}
