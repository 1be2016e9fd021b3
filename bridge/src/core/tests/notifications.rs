//! Rule: `*/list_changed` go to every session's stream, `resources/updated` to the
//! subscribers (subscriptions are reference-counted on the child); a client's
//! `notifications/cancelled` reaches the child under the child's id.

use protocol::RequestKind;
use protocol::jsonrpc::REQUEST_CANCELLED;
use serde_json::json;

use super::super::testing::{Harness, all_caps, body, call, notification};

/// Opens `sid`'s standalone stream on `exchange`.
fn open_stream(h: &mut Harness, exchange: u64, sid: &str) {
    assert!(h.open_stream(exchange, sid).wants_stream());
}

/// `sid` (un)subscribes to `uri` on `exchange`; what the child was sent, answered.
fn subscription(h: &mut Harness, exchange: u64, sid: &str, method: &str, uri: &str) -> Vec<String> {
    h.post(
        exchange,
        Some(sid),
        call(exchange, method, json!({ "uri": uri })),
    );
    let sent = h.lines(1);
    for line in &sent {
        h.child_answers(1, line, json!({}));
    }
    assert_eq!(body(&h.frame_on(exchange))["result"], json!({}));
    sent.iter()
        .map(|l| l["method"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn list_changes_go_to_every_sessions_stream() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    let b = h.session(2);
    let _without_stream = h.session(3);
    open_stream(&mut h, 10, &a);
    open_stream(&mut h, 11, &b);
    for method in [
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    ] {
        h.child_says(1, notification(method, json!({})));
        let mut to: Vec<u64> = h.outbox().iter().map(|r| r.exchange).collect();
        to.sort_unstable();
        assert_eq!(to, [10, 11], "{method}");
    }
}

#[test]
fn resource_updates_go_only_to_the_sessions_subscribed() {
    let mut h = Harness::ready(|_| {});
    let (a, _) = h.two_sessions_with_streams();
    subscription(&mut h, 20, &a, "resources/subscribe", "file:///x");
    let updated =
        |uri: &str| notification("notifications/resources/updated", json!({ "uri": uri }));
    h.child_says(1, updated("file:///x"));
    assert_eq!(body(&h.frame_on(10))["params"]["uri"], "file:///x");
    h.child_says(1, updated("file:///y"));
    assert!(h.outbox().is_empty());
}

#[test]
fn subscriptions_are_counted_on_the_child() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    let b = h.session(2);
    let steps = [
        (&a, "resources/subscribe", &["resources/subscribe"][..]),
        (&b, "resources/subscribe", &[]),
        (&a, "resources/subscribe", &[]),
        (&a, "resources/unsubscribe", &[]),
        (&a, "resources/unsubscribe", &[]),
        (&b, "resources/unsubscribe", &["resources/unsubscribe"]),
    ];
    for (n, (sid, method, reaches_child)) in steps.into_iter().enumerate() {
        let sent = subscription(&mut h, 20 + n as u64, sid, method, "file:///x");
        assert_eq!(sent, reaches_child, "step {n}: {method}");
    }
}

#[test]
fn an_ended_session_releases_its_subscriptions() {
    let mut h = Harness::ready(|_| {});
    let a = h.session(1);
    subscription(&mut h, 20, &a, "resources/subscribe", "file:///x");
    h.bodiless(21, RequestKind::Delete, Some(&a), "alice");
    let sent = h.take_request(1, "resources/unsubscribe");
    assert_eq!(sent["params"]["uri"], "file:///x");
}

#[test]
fn a_cancellation_reaches_the_child_under_its_id_and_ends_the_request() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let sent = h.echo_in_flight(20, &sid, "r1");
    let cancel = json!({ "requestId": "r1", "reason": "changed my mind" });
    h.post(
        21,
        Some(&sid),
        notification("notifications/cancelled", cancel),
    );
    let out = h.outbox();
    assert_eq!(
        out.iter()
            .map(|r| (r.exchange, r.status))
            .collect::<Vec<_>>(),
        [(20, 200), (21, 202)]
    );
    assert_eq!(body(&out[0])["error"]["code"], REQUEST_CANCELLED);
    assert_eq!(body(&out[0])["id"], "r1");
    let told = h.take_request(1, "notifications/cancelled");
    assert_eq!(
        told["params"],
        json!({ "requestId": sent["id"], "reason": "changed my mind" })
    );
    // The server's late answer finds nothing.
    h.child_answers(1, &sent, json!({}));
    assert!(h.outbox().is_empty());
    assert_eq!(h.core.client_pending(), 0);
}

#[test]
fn a_cancellation_of_an_unknown_request_changes_nothing() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let other = h.session_for("bob", 2, all_caps());
    h.call_echo_as("bob", 20, &other, "r1");
    h.lines(1);
    // Alice cannot cancel Bob's request by naming its id.
    h.post(
        21,
        Some(&sid),
        notification("notifications/cancelled", json!({ "requestId": "r1" })),
    );
    assert_eq!(h.one_frame().status, 202);
    assert!(h.lines(1).is_empty());
    assert_eq!(h.core.client_pending(), 1);
}

#[test]
fn a_dropped_connection_is_not_a_cancellation_in_the_handshake_revisions() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let sent = h.echo_in_flight(20, &sid, 1);
    h.cancel(20);
    assert!(h.lines(1).is_empty(), "the server is not told");
    assert_eq!(h.core.client_pending(), 1, "the request runs on");
    h.child_answers(1, &sent, json!({}));
    assert!(h.outbox().is_empty(), "its answer has nowhere to go");
    assert_eq!(h.core.client_pending(), 0);
}
