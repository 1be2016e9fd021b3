//! Rule: `subscriptions/listen` opens a stream acknowledged first, then carrying the list
//! changes and resource updates the client opted into, tagged with its subscription id;
//! its resources are subscriptions on the child while it is open.

use protocol::stateless::META_SUBSCRIPTION_ID;
use serde_json::json;

use super::super::testing::{Harness, body, notification, stateless};

fn listen(h: &mut Harness, exchange: u64) {
    let params = json!({ "notifications": {
        "toolsListChanged": true,
        "promptsListChanged": false,
        "resourceSubscriptions": ["file:///a"]
    } });
    h.post(
        exchange,
        None,
        stateless(exchange, "subscriptions/listen", params, json!({})),
    );
}

/// A ready core with a listen stream open on exchange 10, its acknowledgement read.
fn listening() -> Harness {
    let mut h = Harness::ready(|_| {});
    listen(&mut h, 10);
    h.one_frame();
    h
}

/// The `uri` of the one request with `method` the shared child got.
fn uri_sent(h: &mut Harness, method: &str) -> String {
    let sent = h.take_request(1, method);
    sent["params"]["uri"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_listen_stream_is_acknowledged_with_what_was_agreed() {
    let mut h = Harness::ready(|_| {});
    listen(&mut h, 10);
    let ack = h.one_frame();
    assert!(ack.wants_stream() && !ack.is_final());
    let ack = body(&ack);
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["_meta"][META_SUBSCRIPTION_ID], 10);
    assert_eq!(
        ack["params"]["notifications"],
        json!({ "toolsListChanged": true, "resourceSubscriptions": ["file:///a"] })
    );
    assert_eq!(uri_sent(&mut h, "resources/subscribe"), "file:///a");
}

#[test]
fn a_listen_stream_carries_what_it_opted_into_tagged_with_its_id() {
    let mut h = listening();
    let cases = [
        (
            notification("notifications/tools/list_changed", json!({})),
            true,
        ),
        (
            notification("notifications/prompts/list_changed", json!({})),
            false,
        ),
        (
            notification(
                "notifications/resources/updated",
                json!({ "uri": "file:///a" }),
            ),
            true,
        ),
        (
            notification(
                "notifications/resources/updated",
                json!({ "uri": "file:///b" }),
            ),
            false,
        ),
    ];
    for (n, (message, delivered)) in cases.into_iter().enumerate() {
        h.child_says(1, message);
        let out = h.outbox();
        assert_eq!(out.len(), usize::from(delivered), "case {n}");
        if let Some(r) = out.first() {
            assert_eq!((r.exchange, r.is_final()), (10, false));
            assert_eq!(body(r)["params"]["_meta"][META_SUBSCRIPTION_ID], 10);
        }
    }
}

#[test]
fn a_closed_listen_stream_unsubscribes_the_child() {
    let mut h = Harness::ready(|_| {});
    listen(&mut h, 10);
    listen(&mut h, 11);
    h.outbox();
    assert_eq!(
        h.lines(1).len(),
        1,
        "one subscription on the child for both streams"
    );
    h.cancel(10);
    assert!(h.lines(1).is_empty());
    h.cancel(11);
    assert_eq!(uri_sent(&mut h, "resources/unsubscribe"), "file:///a");
}

#[test]
fn shutdown_completes_every_listen_stream() {
    let mut h = listening();
    h.core.drain(h.now);
    let end = h.one_frame();
    assert!(end.is_final());
    assert_eq!(body(&end)["id"], 10);
    assert_eq!(body(&end)["result"]["resultType"], "complete");
}
