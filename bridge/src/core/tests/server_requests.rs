//! Rule: a server→client request (sampling, elicitation) goes to the oldest in-flight
//! request of a session that declared the capability and has no other such request
//! pending; with none it is refused at once; `roots/list` is answered locally and never
//! forwarded (unless clients answer it, `--client-roots`).

use protocol::jsonrpc::METHOD_NOT_FOUND;
use serde_json::{Value, json};

use super::super::Root;
use super::super::testing::{Harness, all_caps, body, call, notification};

/// A session of "alice" (able to answer everything) with a `tools/call` in flight on
/// `exchange`.
fn busy(h: &mut Harness, init: u64, exchange: u64) -> String {
    let sid = h.session(init);
    h.echo_in_flight(exchange, &sid, exchange);
    sid
}

fn server_request(id: &str, method: &str) -> Value {
    call(id, method, json!({ "message": "?" }))
}

#[test]
fn a_server_request_goes_to_a_capable_session_and_its_answer_back_to_the_child() {
    let mut h = Harness::ready(|_| {});
    let sid = busy(&mut h, 1, 20);
    h.child_says(1, server_request("s1", "sampling/createMessage"));
    let asked = h.frame_on(20);
    assert!(!asked.is_final());
    let bridge_id = body(&asked)["id"].clone();
    assert!(
        bridge_id.is_u64(),
        "the client sees the bridge's id, not the server's"
    );
    assert_eq!(body(&asked)["method"], "sampling/createMessage");
    assert!(h.lines(1).is_empty());

    h.post(
        21,
        Some(&sid),
        json!({ "jsonrpc": "2.0", "id": bridge_id, "result": { "role": "assistant" } }),
    );
    assert_eq!(h.one_frame().status, 202);
    let answer = h.lines(1);
    assert_eq!(
        answer,
        [json!({ "jsonrpc": "2.0", "id": "s1", "result": { "role": "assistant" } })]
    );
}

#[test]
fn a_server_request_no_client_can_answer_is_refused_at_once() {
    let cases = [
        ("sampling/createMessage", json!({})),
        ("elicitation/create", json!({ "sampling": {} })),
    ];
    for (method, caps) in cases {
        let mut h = Harness::ready(|_| {});
        let sid = h.session_for("alice", 1, caps);
        h.call_echo(20, &sid, 1);
        h.lines(1);
        h.child_says(1, server_request("s1", method));
        assert!(h.outbox().is_empty(), "{method}");
        let refusal = h.lines(1);
        assert_eq!(refusal.len(), 1);
        assert_eq!(refusal[0]["id"], "s1");
        assert_eq!(refusal[0]["error"]["code"], METHOD_NOT_FOUND, "{method}");
    }
    // Nothing in flight: nobody to ask either.
    let mut h = Harness::ready(|_| {});
    h.session(1);
    h.child_says(1, server_request("s2", "sampling/createMessage"));
    assert_eq!(h.lines(1)[0]["error"]["code"], METHOD_NOT_FOUND);
}

#[test]
fn roots_list_and_ping_are_answered_locally() {
    let mut h = Harness::ready(|c| {
        c.roots = vec![Root {
            uri: "file:///work".into(),
            name: Some("work".into()),
        }]
    });
    busy(&mut h, 1, 20);
    let cases = [
        (
            "roots/list",
            json!({ "roots": [ { "uri": "file:///work", "name": "work" } ] }),
        ),
        ("ping", json!({})),
    ];
    for (method, result) in cases {
        h.child_says(1, call("q", method, json!({})));
        assert!(h.outbox().is_empty(), "{method} is never forwarded");
        assert_eq!(
            h.lines(1),
            [json!({ "jsonrpc": "2.0", "id": "q", "result": result })]
        );
    }
}

#[test]
fn with_client_roots_roots_list_goes_to_a_client_that_declared_roots() {
    let mut h = Harness::ready(|c| c.client_roots = true);
    busy(&mut h, 1, 20);
    h.child_says(1, call("q", "roots/list", json!({})));
    assert_eq!(body(&h.frame_on(20))["method"], "roots/list");
}

#[test]
fn the_oldest_request_without_a_pending_server_request_is_chosen() {
    let mut h = Harness::ready(|_| {});
    let sid = busy(&mut h, 1, 20);
    h.call_echo(21, &sid, 21);
    h.lines(1);
    h.child_says(1, server_request("s1", "elicitation/create"));
    h.child_says(1, server_request("s2", "elicitation/create"));
    let to: Vec<u64> = h.outbox().iter().map(|r| r.exchange).collect();
    assert_eq!(
        to,
        [20, 21],
        "the second goes to the request not already asked"
    );
}

#[test]
fn an_answer_from_another_session_is_ignored() {
    let mut h = Harness::ready(|_| {});
    busy(&mut h, 1, 20);
    let bob = h.session_for("bob", 2, all_caps());
    h.child_says(1, server_request("s1", "sampling/createMessage"));
    let bridge_id = body(&h.one_frame())["id"].clone();
    h.post_as(
        "bob",
        21,
        Some(&bob),
        json!({ "jsonrpc": "2.0", "id": bridge_id, "result": {} }),
    );
    assert_eq!(h.one_frame().status, 202);
    assert!(
        h.lines(1).is_empty(),
        "Bob cannot answer what Alice was asked"
    );
}

#[test]
fn a_server_request_withdrawn_by_the_server_is_withdrawn_from_the_client() {
    let mut h = Harness::ready(|_| {});
    busy(&mut h, 1, 20);
    h.child_says(1, server_request("s1", "sampling/createMessage"));
    let bridge_id = body(&h.one_frame())["id"].clone();
    h.child_says(
        1,
        notification("notifications/cancelled", json!({ "requestId": "s1" })),
    );
    let withdrawn = h.frame_on(20);
    assert_eq!(body(&withdrawn)["method"], "notifications/cancelled");
    assert_eq!(body(&withdrawn)["params"]["requestId"], bridge_id);
}
