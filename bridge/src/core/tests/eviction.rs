//! Rule: sessions are bounded in all, per principal, and (under `isolate`) by the
//! children they own; the least recently used goes first, its stream ended.

use protocol::RequestKind;
use serde_json::json;

use super::super::testing::{Harness, all_caps, call};

/// The status a ping in `sid` by `who` gets.
fn ping(h: &mut Harness, exchange: u64, sid: &str, who: &str) -> u16 {
    h.post_as(who, exchange, Some(sid), call(1, "ping", json!({})));
    h.one_frame().status
}

#[test]
fn the_least_recently_used_session_is_evicted_at_max_sessions() {
    let mut h = Harness::ready(|c| c.max_sessions = 2);
    let first = h.session(1);
    let second = h.session(2);
    assert_eq!(
        ping(&mut h, 3, &first, "alice"),
        200,
        "first is now the most recent"
    );
    let third = h.session(4);
    assert_eq!(ping(&mut h, 5, &second, "alice"), 404);
    assert_eq!(ping(&mut h, 6, &first, "alice"), 200);
    assert_eq!(ping(&mut h, 7, &third, "alice"), 200);
    assert_eq!(h.core.status().sessions, 2);
}

#[test]
fn an_evicted_sessions_stream_is_ended() {
    let mut h = Harness::ready(|c| c.max_sessions = 1);
    let first = h.session(1);
    h.bodiless(10, RequestKind::Get, Some(&first), "alice");
    h.one_frame();
    h.post(
        2,
        None,
        call(0, "initialize", json!({ "capabilities": {} })),
    );
    let out = h.outbox();
    let ends: Vec<(u64, bool)> = out.iter().map(|r| (r.exchange, r.is_final())).collect();
    assert_eq!(
        ends,
        [(10, true), (2, true)],
        "the old stream ends, then the new session"
    );
}

#[test]
fn a_principal_keeps_at_most_its_share_of_sessions() {
    let mut h = Harness::ready(|c| c.max_sessions_per_principal = 1);
    let bobs = h.session_for("bob", 1, all_caps());
    let first = h.session(2);
    let second = h.session(3);
    assert_eq!(
        ping(&mut h, 4, &first, "alice"),
        404,
        "alice's older session made room"
    );
    assert_eq!(ping(&mut h, 5, &second, "alice"), 200);
    assert_eq!(ping(&mut h, 6, &bobs, "bob"), 200, "bob's is his own");
}

#[test]
fn under_isolate_the_oldest_sessions_server_is_stopped_to_make_room() {
    let mut h = Harness::new(|c| {
        c.isolate = true;
        c.max_children = 1;
    });
    let init = || call(0, "initialize", json!({ "capabilities": {} }));
    h.post(1, None, init());
    h.start(1);
    let first = h.one_frame().session.expect("a session");
    h.post(2, None, init());
    assert_eq!(
        h.children.borrow().killed,
        [1],
        "the first session's server"
    );
    h.start(2);
    let second = h.one_frame().session.expect("a session");
    assert_eq!(h.children.borrow().spawned, [1, 2]);
    assert_eq!(ping(&mut h, 3, &first, "alice"), 404);
    assert_eq!(ping(&mut h, 4, &second, "alice"), 200);
}

#[test]
fn requests_beyond_the_in_flight_limit_of_a_session_are_refused() {
    let mut h = Harness::ready(|c| c.max_in_flight_per_session = 2);
    let sid = h.session(1);
    for exchange in [10, 11, 12] {
        h.post(
            exchange,
            Some(&sid),
            call(exchange, "tools/call", json!({ "name": "echo" })),
        );
    }
    assert_eq!(h.lines(1).len(), 2);
    let refused = h.one_frame();
    assert_eq!(refused.exchange, 12);
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(text.contains("too many requests in flight"), "{text}");
}
