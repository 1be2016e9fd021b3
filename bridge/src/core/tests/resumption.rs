//! Rule (resumable streams): a session POST's stream that carried a message before its
//! answer, or whose client left while it ran, is kept; `GET` with `Last-Event-ID` replays
//! what followed that event, from that stream and session only.

use serde_json::{Value, json};

use super::super::testing::{Harness, body, notification};

/// A session with a request on exchange 20 whose stream carried one log message; the
/// request as the child got it, and that message's event id.
fn streamed(h: &mut Harness) -> (String, Value, String) {
    let sid = h.session(1);
    let sent = h.echo_in_flight(20, &sid, 1);
    h.child_says(
        1,
        notification(
            "notifications/message",
            json!({ "level": "info", "data": "half-way" }),
        ),
    );
    let first = h.frame_on(20);
    assert!(!first.is_final());
    let event = first
        .event_id
        .expect("a resumable stream's messages are numbered");
    (sid, sent, event)
}

#[test]
fn a_stream_whose_client_left_is_replayed_after_the_last_event_it_saw() {
    let mut h = Harness::ready(|_| {});
    let (sid, sent, event) = streamed(&mut h);
    h.cancel(20);
    h.child_answers(1, &sent, json!({ "content": [] }));
    assert!(h.outbox().is_empty(), "kept, nobody reads it now");
    h.resume(30, &sid, &event);
    let out = h.outbox();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].wants_stream() && out[0].body.is_empty());
    assert!(out[1].is_final() && out[1].exchange == 30);
    assert_eq!(body(&out[1])["id"], 1);
    assert_ne!(out[1].event_id.as_deref(), Some(event.as_str()));
}

#[test]
fn a_resumed_stream_continues_live() {
    let mut h = Harness::ready(|_| {});
    let (sid, sent, event) = streamed(&mut h);
    h.cancel(20);
    h.resume(30, &sid, &event);
    assert_eq!(h.outbox().len(), 1, "nothing after that event yet");
    h.child_answers(1, &sent, json!({ "content": [] }));
    assert!(h.frame_on(30).is_final());
}

#[test]
fn another_sessions_or_an_unknown_event_id_cannot_be_resumed() {
    let mut h = Harness::ready(|_| {});
    let (_, _, event) = streamed(&mut h);
    let other = h.session(2);
    h.resume(30, &other, &event);
    h.resume(31, &other, "not-an-event-id");
    let statuses: Vec<(u64, u16)> = h.outbox().iter().map(|r| (r.exchange, r.status)).collect();
    assert_eq!(statuses, [(30, 400), (31, 400)]);
}
