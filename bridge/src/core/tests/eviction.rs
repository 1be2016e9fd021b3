//! Rule: sessions are bounded in all, per principal, and (under `isolate`) by the
//! children they own; the least recently used goes first, its stream ended.

use super::super::testing::{Harness, all_caps, bare_initialize};

/// The statuses of pings by `who` in `sessions`, in order, on exchanges from `first` on.
fn pings(h: &mut Harness, who: &str, first: u64, sessions: &[&str]) -> Vec<u16> {
    (first..)
        .zip(sessions)
        .map(|(exchange, sid)| h.ping_status(who, exchange, sid))
        .collect()
}

#[test]
fn the_least_recently_used_session_is_evicted_at_max_sessions() {
    let mut h = Harness::ready(|c| c.max_sessions = 2);
    let first = h.session(1);
    let second = h.session(2);
    assert_eq!(
        h.ping_status("alice", 3, &first),
        200,
        "first is now the most recent"
    );
    let third = h.session(4);
    let after = pings(&mut h, "alice", 5, &[&second, &first, &third]);
    assert_eq!(after, [404, 200, 200]);
    assert_eq!(h.core.status().sessions, 2);
}

#[test]
fn an_evicted_sessions_stream_is_ended() {
    let mut h = Harness::ready(|c| c.max_sessions = 1);
    let first = h.session(1);
    h.open_stream(10, &first);
    h.post(2, None, bare_initialize());
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
        pings(&mut h, "alice", 4, &[&first, &second]),
        [404, 200],
        "alice's older session made room"
    );
    assert_eq!(h.ping_status("bob", 6, &bobs), 200, "bob's is his own");
}

#[test]
fn under_isolate_the_oldest_sessions_server_is_stopped_to_make_room() {
    let mut h = Harness::new(|c| {
        c.isolate = true;
        c.max_children = 1;
    });
    h.post(1, None, bare_initialize());
    let first = h.session_on_start(1);
    h.post(2, None, bare_initialize());
    assert_eq!(
        h.children.borrow().killed,
        [1],
        "the first session's server"
    );
    let second = h.session_on_start(2);
    assert_eq!(h.children.borrow().spawned, [1, 2]);
    assert_eq!(pings(&mut h, "alice", 3, &[&first, &second]), [404, 200]);
}

#[test]
fn requests_beyond_the_in_flight_limit_of_a_session_are_refused() {
    let mut h = Harness::ready(|c| c.max_in_flight_per_session = 2);
    let sid = h.session(1);
    for exchange in [10, 11, 12] {
        h.call_echo(exchange, &sid, exchange);
    }
    assert_eq!(h.lines(1).len(), 2);
    let refused = h.frame_on(12);
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(text.contains("too many requests in flight"), "{text}");
}
