//! Rule: every client request id is replaced by a child-unique id, and restored on the
//! reply; `progressToken`s are replaced the same way, and progress is routed back by them.

use protocol::Response;
use serde_json::{Value, json};

use super::super::testing::{Harness, all_caps, body, call, initialize, notification};

#[test]
fn clients_ids_are_replaced_by_child_unique_ids_and_restored_on_the_answers() {
    let mut h = Harness::ready(|_| {});
    let alice = h.session(1);
    let bob = h.session_for("bob", 2, all_caps());
    h.call_echo(10, &alice, 1);
    h.call_echo_as("bob", 11, &bob, 1);
    let sent = h.lines(1);
    assert_eq!(sent.len(), 2);
    assert_ne!(
        sent[0]["id"], sent[1]["id"],
        "both said 1; the child sees two ids"
    );
    assert!(sent.iter().all(|l| l["id"].is_u64()));
    // Answered in the other order, each goes back to its own client under its own id.
    h.child_answers(1, &sent[1], json!({ "for": "bob" }));
    h.child_answers(1, &sent[0], json!({ "for": "alice" }));
    let out: Vec<(u64, Value, Value, bool)> = h
        .outbox()
        .iter()
        .map(|r| {
            (
                r.exchange,
                body(r)["id"].clone(),
                body(r)["result"]["for"].clone(),
                r.is_final(),
            )
        })
        .collect();
    assert_eq!(
        out,
        [
            (11, json!(1), json!("bob"), true),
            (10, json!(1), json!("alice"), true)
        ]
    );
}

#[test]
fn ids_of_every_shape_come_back_byte_for_byte() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    for (n, raw) in [
        r#""abc""#,
        "0",
        "-12",
        "7.5",
        r#""é \"q\" \u00e9""#,
        "18446744073709551615",
    ]
    .into_iter()
    .enumerate()
    {
        let exchange = 10 + n as u64;
        let text = format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"tools/list","params":{{}}}}"#);
        h.post_text("alice", exchange, Some(&sid), text);
        let sent = h.take_request(1, "tools/list");
        h.child_answers(1, &sent, json!({ "tools": [] }));
        let answer = h.frame_on(exchange);
        let expected = format!(r#""id":{raw}"#);
        assert!(
            String::from_utf8_lossy(&answer.body).contains(&expected),
            "{raw}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[test]
fn progress_tokens_are_replaced_and_progress_comes_back_under_the_clients_token() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let params = json!({ "name": "echo", "_meta": { "progressToken": "tok-1" } });
    h.post(10, Some(&sid), call("c1", "tools/call", params));
    let sent = h.take_request(1, "tools/call");
    let token = sent["params"]["_meta"]["progressToken"].clone();
    assert_eq!(token, sent["id"], "the token is the child-side id");
    h.child_says(
        1,
        notification(
            "notifications/progress",
            json!({ "progressToken": token, "progress": 1 }),
        ),
    );
    let progress = h.frame_on(10);
    assert!(!progress.is_final());
    assert_eq!(body(&progress)["params"]["progressToken"], "tok-1");
    assert_eq!(body(&progress)["params"]["progress"], 1);
    // Progress with a token the bridge never gave goes nowhere.
    h.child_says(
        1,
        notification(
            "notifications/progress",
            json!({ "progressToken": 999, "progress": 2 }),
        ),
    );
    assert!(h.outbox().is_empty());
}

#[test]
fn answers_to_unknown_ids_or_from_another_child_are_dropped() {
    let mut h = Harness::new(|c| c.isolate = true);
    h.post(1, None, initialize(Some("2025-06-18")));
    let alice = h.session_on_start(1);
    h.post(2, None, initialize(Some("2025-06-18")));
    h.start(2);
    h.one_frame();
    let sent = h.echo_in_flight(10, &alice, 1);
    for stray in [
        json!({ "jsonrpc": "2.0", "id": 999, "result": {} }),
        json!({ "jsonrpc": "2.0", "id": "not-ours", "result": {} }),
    ] {
        h.child_says(1, stray);
    }
    // Child 2 answering child 1's id is not an answer.
    h.child_answers(2, &sent, json!({ "from": 2 }));
    assert!(h.outbox().is_empty());
    h.child_answers(1, &sent, json!({ "from": 1 }));
    let answer = h.one_frame();
    assert_eq!(body(&answer)["result"]["from"], 1);
    assert!(Response::is_final(&answer));
}
