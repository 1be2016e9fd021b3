//! Rules of the relay's exchanges (`from_relay.rs`): sessionless streams and open
//! exchanges are capped, a draining core refuses new requests and lets running ones
//! finish, a session answers only its owner (others get 404), and `DELETE` ends it and
//! closes its stream.

use protocol::RequestKind;
use serde_json::json;

use super::super::exchanges::Role;
use super::super::testing::{Harness, body, call};
use super::super::{MAX_OPEN_EXCHANGES, MAX_SESSIONLESS_STREAMS};
use protocol::Response;

/// (streams opened, exchanges refused with 503) among frames.
fn tally(out: &[Response]) -> (usize, usize) {
    let opened = out
        .iter()
        .filter(|r| r.status == 200 && !r.is_final())
        .count();
    let refused = out
        .iter()
        .filter(|r| r.status == 503 && r.is_final())
        .count();
    (opened, refused)
}

#[test]
fn sessionless_probes_are_capped() {
    let mut h = Harness::new(|_| {});
    let extra = 5_000;
    let n = (MAX_SESSIONLESS_STREAMS + extra) as u64;
    for e in 1..=n {
        h.bodiless(e, RequestKind::Get, None, "client");
    }
    let (opened, refused) = tally(&h.outbox());
    assert_eq!(opened, MAX_SESSIONLESS_STREAMS);
    assert_eq!(refused, extra);
    assert_eq!(h.core.exchanges.len(), MAX_SESSIONLESS_STREAMS);
    assert_eq!(h.core.exchanges.probes(), MAX_SESSIONLESS_STREAMS);

    // A probe whose client left makes room for another.
    h.cancel(1);
    h.bodiless(n + 1, RequestKind::Get, None, "client");
    assert_eq!(tally(&h.outbox()), (1, 0));
    h.bodiless(n + 2, RequestKind::Get, None, "client");
    assert_eq!(tally(&h.outbox()), (0, 1));

    // A new link starts from none.
    h.link_down();
    assert_eq!((h.core.exchanges.probes(), h.core.exchanges.len()), (0, 0));
    h.bodiless(n + 3, RequestKind::Get, None, "client");
    assert_eq!(tally(&h.outbox()), (1, 0));
}

#[test]
fn open_exchanges_are_capped() {
    let mut h = Harness::new(|_| {});
    for e in 0..MAX_OPEN_EXCHANGES as u64 {
        h.core.exchanges.open(1_000_000 + e, Role::Post);
    }
    h.bodiless(1, RequestKind::Get, None, "client");
    assert_eq!(tally(&h.outbox()), (0, 1));
    assert_eq!(h.core.exchanges.len(), MAX_OPEN_EXCHANGES);
}

#[test]
fn a_draining_core_refuses_new_requests_and_lets_running_ones_finish() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let sent = h.echo_in_flight(2, &sid, 1);
    h.core.drain(h.now);
    h.post(3, Some(&sid), call(2, "tools/list", json!({})));
    let refused = h.one_frame();
    assert_eq!((refused.exchange, refused.status), (3, 503));
    assert!(h.lines(1).is_empty(), "nothing new reaches the server");
    h.child_answers(1, &sent, json!({}));
    assert_eq!(body(&h.frame_on(2))["id"], 1);
    assert_eq!(h.core.client_pending(), 0);
}

#[test]
fn requests_naming_an_unknown_or_foreign_session_get_404() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    h.post(2, Some("no-such-session"), call(1, "tools/list", json!({})));
    h.post_as("mallory", 3, Some(&sid), call(1, "tools/list", json!({})));
    h.bodiless(4, RequestKind::Get, Some(&sid), "mallory");
    h.bodiless(5, RequestKind::Delete, Some(&sid), "mallory");
    let statuses: Vec<(u64, u16)> = h.outbox().iter().map(|r| (r.exchange, r.status)).collect();
    assert_eq!(statuses, [(2, 404), (3, 404), (4, 404), (5, 404)]);
    assert!(h.lines(1).is_empty());
    assert_eq!(
        h.ping_status("alice", 6, &sid),
        200,
        "its owner still uses it"
    );
}

#[test]
fn delete_ends_the_session_and_closes_its_stream() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    assert!(h.open_stream(2, &sid).wants_stream());
    h.bodiless(3, RequestKind::Delete, Some(&sid), "alice");
    let out: Vec<(u64, u16, bool)> = h
        .outbox()
        .iter()
        .map(|r| (r.exchange, r.status, r.is_final()))
        .collect();
    assert_eq!(out, [(2, 200, true), (3, 200, true)]);
    assert_eq!(h.ping_status("alice", 4, &sid), 404);
}
