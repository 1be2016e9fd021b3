//! Rule: notifications without a routing key (logging) go to the one session with
//! requests in flight, or to sessions that asked for logs when none is busy; otherwise
//! they stay local.

use protocol::RequestKind;
use serde_json::{Value, json};

use super::super::testing::{Harness, body, call, notification, result_for};

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
    h.post(
        20,
        Some(&a),
        call(1, "tools/call", json!({ "name": "echo" })),
    );
    h.lines(1);
    h.child_says(1, log_line("working"));
    let out = h.one_frame();
    assert_eq!(
        (out.exchange, body(&out)["params"]["data"].clone()),
        (20, json!("working"))
    );
}

#[test]
fn a_log_message_stays_local_while_several_sessions_are_busy() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    let b = h.session(2);
    h.post(
        20,
        Some(&a),
        call(1, "tools/call", json!({ "name": "echo" })),
    );
    h.post(
        21,
        Some(&b),
        call(1, "tools/call", json!({ "name": "echo" })),
    );
    h.lines(1);
    h.child_says(1, log_line("whose?"));
    assert!(h.outbox().is_empty());
}

#[test]
fn with_no_session_busy_a_log_message_goes_to_the_sessions_that_asked_for_logs() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    let b = h.session(2);
    for (exchange, sid) in [(10, &a), (11, &b)] {
        h.bodiless(exchange, RequestKind::Get, Some(sid), "alice");
        h.one_frame();
    }
    h.post(
        20,
        Some(&a),
        call(1, "logging/setLevel", json!({ "level": "info" })),
    );
    let sent = h.take_request(1, "logging/setLevel");
    h.child_says(1, result_for(&sent, json!({})));
    h.one_frame();
    h.child_says(1, log_line("idle"));
    let out = h.one_frame();
    assert_eq!(
        out.exchange, 10,
        "only the stream of the session that asked"
    );
}
