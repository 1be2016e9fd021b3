//! Rule: notifications without a routing key (logging) go to the one session with
//! requests in flight, or to sessions that asked for logs when none is busy; otherwise
//! they stay local.

use serde_json::{Value, json};

use super::super::testing::{Harness, body, call, notification};

fn log_line(text: &str) -> Value {
    notification(
        "notifications/message",
        json!({ "level": "info", "data": text }),
    )
}

#[test]
fn a_log_message_goes_to_the_one_session_with_requests_in_flight() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    h.session(2);
    h.call_echo(20, &a, 1);
    h.lines(1);
    h.child_says(1, log_line("working"));
    assert_eq!(body(&h.frame_on(20))["params"]["data"], "working");
}

#[test]
fn a_log_message_stays_local_while_several_sessions_are_busy() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    let b = h.session(2);
    h.call_echo(20, &a, 1);
    h.call_echo(21, &b, 1);
    h.lines(1);
    h.child_says(1, log_line("whose?"));
    assert!(h.outbox().is_empty());
}

#[test]
fn with_no_session_busy_a_log_message_goes_to_the_sessions_that_asked_for_logs() {
    let mut h = Harness::ready(|_| {});
    let (a, _) = h.two_sessions_with_streams();
    let set_level = call(1, "logging/setLevel", json!({ "level": "info" }));
    h.round_trip(20, &a, set_level, json!({}));
    h.child_says(1, log_line("idle"));
    // Only the stream of the session that asked.
    h.frame_on(10);
}
