//! Rule: an HTTP+SSE session's stream outlives a cut of the relay link; it is carried on
//! for its own principal, with what the session sent meanwhile, or the session ends.

use protocol::RequestKind;
use serde_json::json;

use super::super::http_sse::{MAX_BACKLOG_MESSAGES, REATTACH_WINDOW};
use super::super::testing::{Harness, body, notification};

/// An HTTP+SSE session of `who` opened on `exchange` (its stream's name); its id.
fn open_session(h: &mut Harness, exchange: u64, who: &str) -> String {
    h.bodiless(exchange, RequestKind::HttpSseOpen, None, who);
    let head = h.one_frame();
    assert!(head.wants_stream() && !head.is_final());
    head.session.expect("the session id comes with the stream")
}

/// A ready core with an HTTP+SSE session of "alice" opened on exchange 7, then a cut of
/// the relay link; the session's id.
fn cut() -> (Harness, String) {
    let mut h = Harness::ready(|_| {});
    let sid = open_session(&mut h, 7, "alice");
    h.link_down();
    (h, sid)
}

/// `who` asks for the HTTP+SSE session `sid`'s stream again, on `exchange`.
fn reattach(h: &mut Harness, exchange: u64, sid: &str, who: &str) {
    h.bodiless(exchange, RequestKind::HttpSseOpen, Some(sid), who);
}

/// A notification every session's stream gets.
fn broadcast(h: &mut Harness, n: u64) {
    h.child_says(
        1,
        notification("notifications/prompts/list_changed", json!({ "n": n })),
    );
}

/// Nothing is carried on and no exchange is open.
fn all_closed(h: &Harness) -> bool {
    h.core.carried.is_empty() && h.core.exchanges.len() == 0
}

#[test]
fn a_stream_is_carried_on_only_for_its_own_principal() {
    let (mut h, sid) = cut();
    assert!(
        h.core.sessions.get(&sid).is_some(),
        "the session survives the cut"
    );
    // Meanwhile the session's messages wait.
    broadcast(&mut h, 1);
    broadcast(&mut h, 2);
    assert!(h.outbox().is_empty());

    // Another principal naming the session gets 404; the stream still waits.
    reattach(&mut h, 100, &sid, "mallory");
    let out = h.frame_on(100);
    assert_eq!((out.status, out.is_final()), (404, true));
    // An unknown session too.
    reattach(&mut h, 101, "nope", "alice");
    assert_eq!(h.one_frame().status, 404);

    // Its owner takes it over: a stream head, then the backlog in order.
    reattach(&mut h, 102, &sid, "alice");
    let out = h.outbox();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out.iter().all(|r| r.exchange == 102 && !r.is_final()));
    assert!(out[0].wants_stream() && out[0].body.is_empty());
    assert_eq!(body(&out[1])["params"]["n"], 1);
    assert_eq!(body(&out[2])["params"]["n"], 2);
    assert_eq!(h.core.sessions.len(), 1, "no new session was made");
    assert_eq!(h.core.carried.total_bytes(), 0);

    // What the session sends next goes to the new exchange.
    broadcast(&mut h, 3);
    h.frame_on(102);

    // A request numbered like the carried stream (a restarted relay) gets none of it.
    h.bodiless(7, RequestKind::Get, None, "mallory");
    let out = h.frame_on(7);
    assert_eq!((out.status, out.is_final()), (503, true));
    assert!(h.core.carried.contains(7));

    // The client closing its stream ends the session, as before.
    h.cancel(102);
    assert!(h.core.sessions.get(&sid).is_none());
    assert!(all_closed(&h));
}

#[test]
fn a_second_cut_and_the_end_of_the_session() {
    let (mut h, sid) = cut();
    reattach(&mut h, 50, &sid, "alice");
    h.outbox();
    h.link_down();
    broadcast(&mut h, 1);
    reattach(&mut h, 90, &sid, "alice");
    let out = h.outbox();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.exchange == 90));
    // Ending the session closes the stream that carries it.
    h.core.end_session(&sid, true);
    assert!(h.frame_on(90).is_final());
    assert!(all_closed(&h));
}

#[test]
fn streams_not_carried_on_expire() {
    let (mut h, sid) = cut();
    broadcast(&mut h, 1);
    h.advance(REATTACH_WINDOW / 2);
    h.tick();
    assert!(h.core.sessions.get(&sid).is_some());
    h.advance(REATTACH_WINDOW / 2);
    h.tick();
    assert!(h.core.sessions.get(&sid).is_none());
    assert!(h.core.carried.is_empty());
    assert_eq!(h.core.carried.total_bytes(), 0);
    // Too late: the relay ends the client's stream.
    reattach(&mut h, 9, &sid, "alice");
    assert_eq!(h.one_frame().status, 404);
}

#[test]
fn an_overflowing_backlog_ends_the_session() {
    let (mut h, sid) = cut();
    for n in 0..MAX_BACKLOG_MESSAGES as u64 {
        broadcast(&mut h, n);
    }
    assert!(h.core.sessions.get(&sid).is_some());
    broadcast(&mut h, 0);
    assert!(
        h.core.sessions.get(&sid).is_none(),
        "ended rather than lossy"
    );
    assert_eq!(h.core.carried.total_bytes(), 0);
}
