//! Rule (desktop policy, see `gate.rs`): a hidden tool is refused without reaching the
//! server, and `tools/list` answers lose it.

use protocol::jsonrpc::INVALID_PARAMS;
use serde_json::json;

use super::super::testing::{Harness, body, call};

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
