//! HTTP+SSE sessions across a cut of the relay link: the stream is carried on for its own
//! principal, with what the session sent meanwhile, or the session ends.

use protocol::RequestKind;
use serde_json::json;

use super::super::http_sse::{MAX_BACKLOG_MESSAGES, REATTACH_WINDOW};
use super::super::testing::{Harness, notification};

/// An HTTP+SSE session of `who` opened on `exchange` (its stream's name); its id.
fn open_session(h: &mut Harness, exchange: u64, who: &str) -> String {
    h.bodiless(exchange, RequestKind::HttpSseOpen, None, who);
    let head = h.one_frame();
    assert!(head.wants_stream() && !head.is_final());
    head.session.expect("the session id comes with the stream")
}

/// A notification every session's stream gets.
fn broadcast(h: &mut Harness, n: u64) {
    h.child_says(
        1,
        notification("notifications/prompts/list_changed", json!({ "n": n })),
    );
}

#[test]
fn a_stream_is_carried_on_only_for_its_own_principal() {
    let mut h = Harness::ready(|_| {});
    let sid = open_session(&mut h, 7, "alice");
    h.link_down();
    assert!(
        h.core.sessions.get(&sid).is_some(),
        "the session survives the cut"
    );
    // Meanwhile the session's messages wait.
    broadcast(&mut h, 1);
    broadcast(&mut h, 2);
    assert!(h.outbox().is_empty());

    // Another principal naming the session gets 404; the stream still waits.
    h.bodiless(100, RequestKind::HttpSseOpen, Some(&sid), "mallory");
    let out = h.one_frame();
    assert_eq!((out.exchange, out.status, out.is_final()), (100, 404, true));
    // An unknown session too.
    h.bodiless(101, RequestKind::HttpSseOpen, Some("nope"), "alice");
    assert_eq!(h.one_frame().status, 404);

    // Its owner takes it over: a stream head, then the backlog in order.
    h.bodiless(102, RequestKind::HttpSseOpen, Some(&sid), "alice");
    let out = h.outbox();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out.iter().all(|r| r.exchange == 102 && !r.is_final()));
    assert!(out[0].wants_stream() && out[0].body.is_empty());
    assert_eq!(super::super::testing::body(&out[1])["params"]["n"], 1);
    assert_eq!(super::super::testing::body(&out[2])["params"]["n"], 2);
    assert_eq!(h.core.sessions.len(), 1, "no new session was made");
    assert_eq!(h.core.carried.total_bytes(), 0);

    // What the session sends next goes to the new exchange.
    broadcast(&mut h, 3);
    assert_eq!(h.one_frame().exchange, 102);

    // A request numbered like the carried stream (a restarted relay) gets none of it.
    h.bodiless(7, RequestKind::Get, None, "mallory");
    let out = h.one_frame();
    assert_eq!((out.exchange, out.status, out.is_final()), (7, 503, true));
    assert!(h.core.carried.contains(7));

    // The client closing its stream ends the session, as before.
    h.cancel(102);
    assert!(h.core.sessions.get(&sid).is_none());
    assert!(h.core.carried.is_empty() && h.core.exchanges.len() == 0);
}

#[test]
fn a_second_cut_and_the_end_of_the_session() {
    let mut h = Harness::ready(|_| {});
    let sid = open_session(&mut h, 7, "alice");
    h.link_down();
    h.bodiless(50, RequestKind::HttpSseOpen, Some(&sid), "alice");
    h.outbox();
    h.link_down();
    broadcast(&mut h, 1);
    h.bodiless(90, RequestKind::HttpSseOpen, Some(&sid), "alice");
    let out = h.outbox();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.exchange == 90));
    // Ending the session closes the stream that carries it.
    h.core.end_session(&sid, true);
    let out = h.one_frame();
    assert!(out.exchange == 90 && out.is_final());
    assert!(h.core.carried.is_empty() && h.core.exchanges.len() == 0);
}

#[test]
fn streams_not_carried_on_expire() {
    let mut h = Harness::ready(|_| {});
    let sid = open_session(&mut h, 7, "alice");
    h.link_down();
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
    h.bodiless(9, RequestKind::HttpSseOpen, Some(&sid), "alice");
    assert_eq!(h.one_frame().status, 404);
}

#[test]
fn an_overflowing_backlog_ends_the_session() {
    let mut h = Harness::ready(|_| {});
    let sid = open_session(&mut h, 7, "alice");
    h.link_down();
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
