//! A 2025-11-25 session's stream is primed and resumable with `GET` + `Last-Event-ID`
//! (only that stream's messages), unknown ids are refused with 400, and a call running
//! while the relay restarts is answered on resumption after the bridge reconnects.

use std::time::Duration;

use e2e::mcp::{HANDSHAKE, McpClient, Stream, session_headers, texts, tool_call};
use e2e::process::tail;
use e2e::sse::Event;
use e2e::{Bridge, BridgeOpts, Relay};
use protocol::jsonrpc::INVALID_REQUEST;
use serde_json::{Value, json};

use crate::HTTP_LIMIT;

/// The stream part of an event id `<stream>.<seq>`.
fn stream_of(id: &str) -> &str {
    id.rsplit_once('.').map(|(s, _)| s).unwrap_or("")
}

/// Opens a `test_tool_with_progress` call and reads its priming event and first progress
/// notification; returns the priming id, the first progress id and the open stream.
async fn progress_call(
    c: &McpClient,
    session: &str,
    id: &str,
    token: &str,
) -> (String, String, Stream) {
    let mut body = tool_call(json!(id), "test_tool_with_progress", json!({}));
    body["params"]["_meta"] = json!({"progressToken": token});
    let mut s = c
        .open(&body, &session_headers(session, HANDSHAKE), id)
        .await;
    assert_eq!(s.status, 200, "{id}");
    assert!(s.is_sse(), "{id}: {}", s.content_type);
    let priming = s.next(HTTP_LIMIT, id).await.expect("a priming event");
    assert!(
        priming.retry.is_some(),
        "{id}: priming event without retry: {priming:?}"
    );
    assert!(
        priming.data.is_empty(),
        "{id}: priming event with data: {priming:?}"
    );
    let primed = priming.id.clone().expect("the priming event has an id");
    assert!(primed.ends_with(".0"), "{id}: priming id {primed}");
    let first = s.next(HTTP_LIMIT, id).await.expect("a progress event");
    let m = first.message().expect("a message");
    assert_eq!(m["method"], "notifications/progress", "{id}: {m}");
    assert_eq!(m["params"]["progressToken"], token, "{id}: {m}");
    assert_eq!(m["params"]["progress"], 0, "{id}: {m}");
    let first_id = first.id.clone().expect("the progress event has an id");
    assert_eq!(first_id, format!("{}.1", stream_of(&primed)), "{id}");
    (primed, first_id, s)
}

/// Asserts `events` are the progress notifications `progress` of `token` then the answer
/// to `id`, numbered on from `after` in its stream.
fn assert_rest(events: &[Event], after: &str, id: &str, token: &str, progress: &[u64]) {
    let (stream, seq) = after.rsplit_once('.').expect("an event id");
    let seq: u32 = seq.parse().expect("a sequence number");
    assert_eq!(
        events.len(),
        progress.len() + 1,
        "{id} after {after}: {events:?}"
    );
    for (i, ev) in events.iter().enumerate() {
        let want = format!("{stream}.{}", seq + 1 + i as u32);
        assert_eq!(ev.id.as_deref(), Some(want.as_str()), "{id}: {events:?}");
        let m = ev.message().expect("a message");
        if i < progress.len() {
            assert_eq!(m["method"], "notifications/progress", "{id}: {m}");
            assert_eq!(m["params"]["progressToken"], token, "{id}: {m}");
            assert_eq!(m["params"]["progress"], progress[i], "{id}: {m}");
        } else {
            assert_eq!(m["id"], id, "{id}: {m}");
            // (Its text is the progress token the server saw: the bridge's own.)
            assert_eq!(texts(&m["result"]).len(), 1, "{id}: {m}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_streams_resume_with_last_event_id() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = McpClient::of(&bridge);
    let (session, _) = c.initialize(HANDSHAKE).await;

    // Two calls at once in the session; each client drops its stream after the first
    // progress notification.
    let ((a_primed, a_first, a), (b_primed, _, b)) = tokio::join!(
        progress_call(&c, &session, "a", "tok-a"),
        progress_call(&c, &session, "b", "tok-b"),
    );
    assert_ne!(
        stream_of(&a_primed),
        stream_of(&b_primed),
        "one stream per POST"
    );
    drop(a);
    drop(b);

    // Resuming after A's first progress: the rest of A's stream, nothing of B's; from B's
    // priming event: all of B's stream, nothing of A's.
    for (last, id, token, progress) in [
        (&a_first, "a", "tok-a", &[50, 100][..]),
        (&b_primed, "b", "tok-b", &[0, 50, 100][..]),
    ] {
        let what = format!("resume {id}");
        let s = c.resume(&session, HANDSHAKE, last, &what).await;
        assert_eq!(s.status, 200, "{what}");
        let events: Vec<Event> = s
            .rest(HTTP_LIMIT, &what)
            .await
            .into_iter()
            .filter(|e| e.message().is_some())
            .collect();
        assert_rest(&events, last, id, token, progress);
    }
    assert_eq!(bridge.count("call test_tool_with_progress"), 2);

    // Ids that name no stream of this session: 400, never 404 (which would make the
    // client start a new session).
    let (other, _) = c.initialize(HANDSHAKE).await;
    let a_stream = u64::from_str_radix(stream_of(&a_first), 16).expect("hex stream");
    let unknown = format!("{:x}.1", a_stream ^ 0x5a5a_0000_0000);
    let cases = [
        (
            session.as_str(),
            "not-an-event-id".to_owned(),
            "malformed id",
        ),
        (session.as_str(), unknown, "unknown stream"),
        (other.as_str(), a_first.clone(), "another session's stream"),
    ];
    for (sid, last, what) in cases {
        let s = c.resume(sid, HANDSHAKE, &last, what).await;
        let status = s.status;
        let text = s.text(what).await;
        assert_eq!(status, 400, "{what} ({last}): {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
        assert_eq!(v["error"]["code"], INVALID_REQUEST, "{what}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_relay_restart_and_is_answered_on_resumption() {
    let relay = Relay::start(&[]);
    let addr = relay
        .base
        .strip_prefix("http://")
        .expect("an http relay")
        .trim_end_matches('/')
        .to_owned();
    let bridge = BridgeOpts::default().via(&relay).start();
    let c = McpClient::of(&bridge);
    c.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    let (session, _) = c.initialize(HANDSHAKE).await;

    // A silent call: the relay opens its stream (primed) after a second.
    let body = tool_call(json!(9), "slow", json!({"ms": 4000, "tag": "r"}));
    let mut s = c
        .open(&body, &session_headers(&session, HANDSHAKE), "slow call")
        .await;
    assert_eq!(s.status, 200, "slow call");
    assert!(s.is_sse(), "slow call: {}", s.content_type);
    let priming = s
        .next(HTTP_LIMIT, "priming")
        .await
        .expect("a priming event");
    assert!(
        priming.retry.is_some() && priming.data.is_empty(),
        "{priming:?}"
    );
    let primed = priming.id.expect("the priming event has an id");
    assert!(primed.ends_with(".0"), "{primed}");

    // The relay restarts on the same address while the call runs.
    drop(relay);
    let relay = Relay::start_on(&addr, &[]);
    c.wait_connected(true, Duration::from_secs(15), "after the relay restart")
        .await;
    drop(s);

    let s = c.resume(&session, HANDSHAKE, &primed, "resume").await;
    if s.status != 200 {
        let status = s.status;
        panic!(
            "resuming {primed} after the relay restart: {status} {}; bridge log:\n{}",
            s.text("resume").await,
            tail(&bridge.proc.log_text())
        );
    }
    let events = s.rest(HTTP_LIMIT, "resume").await;
    let messages: Vec<(Option<String>, Value)> = events
        .iter()
        .filter_map(|e| e.message().map(|m| (e.id.clone(), m)))
        .collect();
    assert_eq!(
        messages.len(),
        1,
        "{messages:?}; relay log:\n{}\nbridge log:\n{}",
        tail(&relay.proc.log_text()),
        tail(&bridge.proc.log_text())
    );
    let (id, m) = &messages[0];
    assert_eq!(m["id"], 9, "{m}");
    assert_eq!(texts(&m["result"]), ["done r"], "{m}");
    assert_eq!(
        id.as_deref(),
        Some(format!("{}.1", stream_of(&primed)).as_str()),
        "{m}"
    );
    assert_eq!(bridge.count("call slow"), 1, "{:?}", bridge.counts());
    assert_eq!(bridge.count("cancelled r"), 0, "{:?}", bridge.counts());
}
