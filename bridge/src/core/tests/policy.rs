//! Rule (desktop policy, see `gate.rs`): a hidden tool is refused without reaching the
//! server, and `tools/list` answers lose it.

use protocol::jsonrpc::INVALID_PARAMS;
use serde_json::json;

use super::super::testing::{Harness, all_caps, body, call};

fn hiding_secret() -> Harness {
    Harness::ready(|c| c.policy.deny_tools = vec!["secret".into()])
}

#[test]
fn a_call_of_a_hidden_tool_is_refused_without_reaching_the_server() {
    let mut h = hiding_secret();
    let sid = h.session(1);
    h.post(
        10,
        Some(&sid),
        call(1, "tools/call", json!({ "name": "secret" })),
    );
    let refused = h.one_frame();
    assert_eq!(body(&refused)["error"]["code"], INVALID_PARAMS);
    assert_eq!(body(&refused)["error"]["message"], "Unknown tool: secret");
    assert!(h.lines(1).is_empty());
    h.echo_in_flight(11, &sid, 2);
}

#[test]
fn tools_list_answers_lose_hidden_tools() {
    let mut h = hiding_secret();
    let sid = h.session(1);
    let tools = json!({ "tools": [ { "name": "echo" }, { "name": "secret" } ] });
    let answer = h.round_trip(10, &sid, call(1, "tools/list", json!({})), tools);
    assert_eq!(body(&answer)["id"], 1);
    assert_eq!(
        body(&answer)["result"]["tools"],
        json!([ { "name": "echo" } ])
    );
}

/// Rule (the owner's dashboard, `confirm.rs`): a held call is listed with its whole
/// arguments; "always" lets the next call of the same tool by the same client through, and
/// holds another client's.
#[test]
fn allowed_always_lets_that_client_call_that_tool_and_no_other_client() {
    use crate::confirm::hub;
    hub().open_desk();
    let tunnel = "always-for-alice";
    let mut h = Harness::ready(|c| {
        c.tunnel = tunnel.into();
        c.policy.confirm_tools = vec!["write".into()];
    });
    let mut answers = h.core.take_terminal().expect("a tool needs approval");
    let alice = h.session_for("alice", 1, all_caps());
    let bob = h.session_for("bob", 2, all_caps());
    let write = |id: u64| {
        call(
            id,
            "tools/call",
            json!({ "name": "write", "arguments": { "path": "/tmp/x" } }),
        )
    };
    let waiting = || {
        hub()
            .waiting()
            .into_iter()
            .filter(|w| w.tunnel == tunnel)
            .collect::<Vec<_>>()
    };

    h.post_as("alice", 10, Some(&alice), write(1));
    assert!(h.lines(1).is_empty(), "held");
    let held = waiting();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].principal, "alice");
    assert_eq!(held[0].tool, "write");
    assert_eq!(held[0].args, r#"{"path":"/tmp/x"}"#);
    assert!(hub().answer(&held[0].code, true, true));
    let msg = answers.try_recv().expect("the answer reaches the core");
    let now = h.now;
    h.core.on_terminal(msg, now);
    h.take_request(1, "tools/call");

    // Alice's next call of the tool goes straight through.
    h.post_as("alice", 11, Some(&alice), write(2));
    h.take_request(1, "tools/call");
    assert!(waiting().is_empty());

    // Bob's waits.
    h.post_as("bob", 12, Some(&bob), write(3));
    assert!(h.lines(1).is_empty(), "held");
    let held = waiting();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].principal, "bob");
    assert!(hub().answer(&held[0].code, false, false));
    let msg = answers.try_recv().expect("the answer reaches the core");
    h.core.on_terminal(msg, now);
    assert!(h.lines(1).is_empty(), "declined");
}
