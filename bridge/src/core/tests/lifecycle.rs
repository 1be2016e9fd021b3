//! Rules of a server's life: a request past its deadline is answered and cancelled on the
//! server; an exit answers what was in flight; the shared server is restarted (at once if
//! it was serving, with a growing delay if it never started) and its subscriptions
//! renewed; under `isolate` a session whose server exited ends.

use std::time::Duration;

use protocol::jsonrpc::{INTERNAL_ERROR, REQUEST_TIMEOUT, UNAVAILABLE};
use serde_json::json;

use super::super::testing::{Harness, bare_initialize, body, call, server_info};

#[test]
fn a_request_past_its_deadline_is_answered_and_cancelled_on_the_server() {
    let mut h = Harness::ready(|c| c.call_timeout = Duration::from_secs(5));
    let sid = h.session(1);
    let sent = h.echo_in_flight(10, &sid, "slow");
    h.advance(Duration::from_secs(4));
    h.tick();
    assert!(h.outbox().is_empty());
    h.advance(Duration::from_secs(1));
    h.tick();
    let answer = h.frame_on(10);
    assert!(answer.is_final());
    assert_eq!(body(&answer)["error"]["code"], REQUEST_TIMEOUT);
    assert_eq!(body(&answer)["id"], "slow");
    let told = h.take_request(1, "notifications/cancelled");
    assert_eq!(
        told["params"],
        json!({ "requestId": sent["id"], "reason": "timed out" })
    );
    assert_eq!(h.core.client_pending(), 0);
}

#[test]
fn an_exit_answers_what_was_in_flight_and_the_serving_server_restarts_at_once() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    h.call_echo(10, &sid, 1);
    h.lines(1);
    h.child_exits(1);
    let answer = h.one_frame();
    assert_eq!(body(&answer)["error"]["code"], INTERNAL_ERROR);
    let message = body(&answer)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("exited (incident "), "{message}");
    assert_eq!(
        h.children.borrow().killed,
        [1],
        "its process group is taken down"
    );
    h.tick();
    assert_eq!(h.children.borrow().spawned, [1, 2]);
    h.take_request(2, "initialize");
    assert_eq!(h.core.status().restarts, 1);
}

#[test]
fn a_server_that_never_starts_is_restarted_with_a_growing_delay() {
    let mut h = Harness::new(|_| {});
    h.core.start_default_child().expect("starts");
    let delays = [250, 500, 1000, 2000];
    for (n, ms) in delays.into_iter().enumerate() {
        let child = n as u64 + 1;
        h.child_exits(child);
        h.advance(Duration::from_millis(ms - 1));
        h.tick();
        assert_eq!(
            h.children.borrow().spawned.len(),
            n + 1,
            "not yet after {}ms",
            ms - 1
        );
        h.advance(Duration::from_millis(1));
        h.tick();
        assert_eq!(
            h.children.borrow().spawned.len(),
            n + 2,
            "restarted after {ms}ms"
        );
    }
}

#[test]
fn a_request_while_the_server_waits_for_its_restart_is_refused() {
    let mut h = Harness::new(|_| {});
    h.core.start_default_child().expect("starts");
    h.child_exits(1);
    h.post(10, None, call(1, "tools/list", json!({})));
    let refused = h.one_frame();
    assert_eq!(body(&refused)["error"]["code"], UNAVAILABLE);
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(text.contains("being restarted"), "{text}");
}

#[test]
fn a_restarted_server_is_subscribed_again_and_serves_the_sessions() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let subscribe = call(1, "resources/subscribe", json!({ "uri": "file:///x" }));
    h.round_trip(10, &sid, subscribe, json!({}));
    h.child_exits(1);
    h.tick();
    let lines = h.lines(2);
    let methods: Vec<&str> = lines.iter().filter_map(|l| l["method"].as_str()).collect();
    assert_eq!(methods, ["initialize", "resources/subscribe"]);
    assert_eq!(lines[1]["params"]["uri"], "file:///x");
    h.child_answers(2, &lines[0], server_info());
    h.lines(2);
    h.call_echo(11, &sid, 2);
    h.take_request(2, "tools/call");
}

#[test]
fn under_isolate_a_session_whose_server_exited_ends() {
    let mut h = Harness::new(|c| c.isolate = true);
    h.post(1, None, bare_initialize());
    let sid = h.session_on_start(1);
    h.child_exits(1);
    h.tick();
    assert_eq!(
        h.children.borrow().spawned,
        [1],
        "no restart for a session's own server"
    );
    assert_eq!(h.ping_status("alice", 2, &sid), 404);
}
