//! Rule: a server→client request of a 2026-07-28 call becomes an `InputRequiredResult`;
//! the call stays suspended until the client retries with `inputResponses` and the
//! `requestState` (single use, bound to the principal, the method and its name,
//! expiring); a request the client declared no capability for ends the call.

use std::time::Duration;

use protocol::jsonrpc::{INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY};
use serde_json::{Value, json};

use super::super::testing::{Harness, body, call, stateless, stateless_echo};

const GATHER: Duration = Duration::from_millis(20);

fn elicit(id: &str) -> Value {
    call(id, "elicitation/create", json!({ "message": "which?" }))
}

/// A `tools/call` of "alice" (able to elicit) on exchange 10.
fn start_call(h: &mut Harness) {
    h.post(10, None, stateless_echo(1, json!({ "elicitation": {} })));
}

/// A `tools/call` of "alice" (able to elicit) on exchange 10, whose server asked `ids`;
/// the call as the child got it, and the `requestState` the client got.
fn suspended(h: &mut Harness, ids: &[&str]) -> (Value, String) {
    let sent = h.stateless_echo_in_flight(10, 1, json!({ "elicitation": {} }));
    for id in ids {
        h.child_says(1, elicit(id));
    }
    h.advance(GATHER);
    h.core.flush_inputs(h.now);
    let asked = h.frame_on(10);
    assert_eq!((asked.status, asked.is_final()), (200, true));
    let result = body(&asked)["result"].clone();
    assert_eq!(result["resultType"], "input_required");
    let token = result["requestState"]
        .as_str()
        .expect("a requestState")
        .to_owned();
    (sent, token)
}

/// The retry of the call on `exchange`, by `who` calling the tool `name`, answering with
/// `responses`.
fn retry_as(h: &mut Harness, who: &str, name: &str, exchange: u64, token: &str, responses: Value) {
    let params = json!({ "name": name, "requestState": token, "inputResponses": responses });
    let request = stateless(exchange, "tools/call", params, json!({ "elicitation": {} }));
    h.post_as(who, exchange, None, request);
}

/// The retry of the call by "alice" on `exchange`, answering with `responses`.
fn retry(h: &mut Harness, exchange: u64, token: &str, responses: Value) {
    retry_as(h, "alice", "echo", exchange, token, responses);
}

/// The answer of `e1` accepting what the server asked.
fn accept_e1() -> Value {
    json!({ "e1": { "action": "accept" } })
}

#[test]
fn server_requests_written_in_one_burst_become_one_input_required_result() {
    let mut h = Harness::ready(|_| {});
    start_call(&mut h);
    h.lines(1);
    h.child_says(1, elicit("e1"));
    h.child_says(1, elicit("e2"));
    assert!(h.outbox().is_empty(), "gathered first");
    assert_eq!(h.core.next_flush(), Some(h.now + GATHER));
    h.core
        .flush_inputs(h.now + GATHER - Duration::from_millis(1));
    assert!(h.outbox().is_empty());
    h.core.flush_inputs(h.now + GATHER);
    let result = body(&h.one_frame())["result"].clone();
    let mut keys: Vec<&String> = result["inputRequests"]
        .as_object()
        .expect("requests")
        .keys()
        .collect();
    keys.sort();
    assert_eq!(keys, ["e1", "e2"]);
    assert_eq!(
        result["inputRequests"]["e1"]["method"],
        "elicitation/create"
    );
    assert!(h.lines(1).is_empty(), "the server waits for the answers");
}

#[test]
fn a_retry_with_the_request_state_continues_the_call() {
    let mut h = Harness::ready(|_| {});
    let (sent, token) = suspended(&mut h, &["e1"]);
    retry(&mut h, 11, &token, accept_e1());
    assert_eq!(
        h.lines(1),
        [json!({ "jsonrpc": "2.0", "id": "e1", "result": { "action": "accept" } })]
    );
    assert!(h.outbox().is_empty());
    h.child_answers(1, &sent, json!({ "content": [] }));
    let answer = h.frame_on(11);
    assert_eq!(body(&answer)["id"], 11);
    assert_eq!(body(&answer)["result"]["resultType"], "complete");
}

#[test]
fn a_request_state_is_single_use_and_bound_to_its_principal_method_and_name() {
    let mut h = Harness::ready(|_| {});
    let (_, token) = suspended(&mut h, &["e1"]);
    let answers = accept_e1();
    retry_as(&mut h, "bob", "echo", 11, &token, answers.clone());
    retry_as(&mut h, "alice", "other-tool", 12, &token, answers.clone());
    let as_prompt = json!({ "name": "echo", "requestState": token, "inputResponses": answers });
    h.post(
        13,
        None,
        stateless(13, "prompts/get", as_prompt, json!({ "elicitation": {} })),
    );
    let refused = h.outbox();
    assert_eq!(refused.len(), 3);
    for refused in refused {
        assert_eq!(
            (refused.status, body(&refused)["error"]["code"].clone()),
            (400, json!(INVALID_PARAMS))
        );
    }
    assert!(h.lines(1).is_empty());
    retry(&mut h, 14, &token, answers.clone());
    assert_eq!(h.lines(1).len(), 1, "its own client continues it");
    retry(&mut h, 15, &token, answers);
    assert_eq!(h.one_frame().status, 400, "but only once");
}

#[test]
fn requests_a_retry_left_unanswered_are_asked_again() {
    let mut h = Harness::ready(|_| {});
    let (_, token) = suspended(&mut h, &["e1", "e2"]);
    retry(&mut h, 11, &token, accept_e1());
    assert_eq!(h.lines(1)[0]["id"], "e1");
    let again = h.frame_on(11);
    let result = body(&again)["result"].clone();
    assert_eq!(result["resultType"], "input_required");
    assert_eq!(
        result["inputRequests"].as_object().map(|m| m.len()),
        Some(1)
    );
    assert!(result["inputRequests"].get("e2").is_some());
    assert_ne!(
        result["requestState"],
        json!(token),
        "a new state for the new round"
    );
}

#[test]
fn an_answer_that_comes_before_the_retry_waits_for_it() {
    let mut h = Harness::ready(|_| {});
    let (sent, token) = suspended(&mut h, &["e1"]);
    let done = json!({ "content": [ { "type": "text", "text": "done" } ] });
    h.child_answers(1, &sent, done);
    assert!(h.outbox().is_empty());
    retry(&mut h, 11, &token, json!({}));
    let answer = h.frame_on(11);
    assert_eq!(body(&answer)["id"], 11);
    assert_eq!(body(&answer)["result"]["content"][0]["text"], "done");
}

#[test]
fn a_suspended_call_expires_and_is_cancelled_on_the_child() {
    let mut h = Harness::ready(|c| c.call_timeout = Duration::from_secs(3600));
    let (sent, token) = suspended(&mut h, &["e1"]);
    h.advance(Duration::from_secs(599));
    h.tick();
    assert!(h.lines(1).is_empty());
    h.advance(Duration::from_secs(1));
    h.tick();
    let told = h.take_request(1, "notifications/cancelled");
    assert_eq!(told["params"]["requestId"], sent["id"]);
    retry(&mut h, 11, &token, json!({ "e1": {} }));
    assert_eq!(h.one_frame().status, 400);
}

#[test]
fn answers_sent_up_front_answer_the_requests_they_name_as_they_come() {
    let mut h = Harness::ready(|_| {});
    let params = json!({ "name": "echo", "inputResponses": { "e1": { "action": "decline" } } });
    h.post(
        10,
        None,
        stateless(1, "tools/call", params, json!({ "elicitation": {} })),
    );
    let sent = h.take_request(1, "tools/call");
    assert!(
        sent["params"].get("inputResponses").is_none(),
        "the server never sees them"
    );
    h.child_says(1, elicit("e1"));
    assert_eq!(
        h.lines(1),
        [json!({ "jsonrpc": "2.0", "id": "e1", "result": { "action": "decline" } })]
    );
    assert!(h.outbox().is_empty() && h.core.next_flush().is_none());
}

#[test]
fn a_server_request_the_client_cannot_answer_ends_the_call_with_required_capabilities() {
    let mut h = Harness::ready(|_| {});
    let sent = h.stateless_echo_in_flight(10, 1, json!({}));
    h.child_says(1, call("s1", "sampling/createMessage", json!({})));
    let ended = h.frame_on(10);
    assert_eq!(ended.status, 400);
    let error = body(&ended)["error"].clone();
    assert_eq!(error["code"], MISSING_CLIENT_CAPABILITY);
    assert_eq!(
        error["data"]["requiredCapabilities"],
        json!({ "sampling": {} })
    );
    let lines = h.lines(1);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["method"], "notifications/cancelled");
    assert_eq!(lines[0]["params"]["requestId"], sent["id"]);
    assert_eq!(
        (lines[1]["id"].clone(), lines[1]["error"]["code"].clone()),
        (json!("s1"), json!(METHOD_NOT_FOUND))
    );
}
