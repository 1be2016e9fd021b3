//! InputRequiredResult with the Python SDK 2.x: the child's elicitation and sampling
//! requests reach a stateless client as input requests, the SDK answers and retries, the
//! child's call (run once) gets the answer; without the capability the call fails at once;
//! a handshake-era client gets the same request as a server→client request.

use e2e::clients::{run_script_failing, strs};
use serde_json::{Value, json};

use crate::tap::Tap;
use crate::wire::{
    Round, assert_handshake_wire, assert_one_round, assert_stateless_wire,
    assert_stateless_wire_failing, methods, tool_calls,
};
use crate::{assert_handshake_client, assert_stateless_client, py2};

/// A stateless client answers the child's elicitation and sampling requests through
/// InputRequiredResult: the bridge turns the child's server→client request into
/// `inputRequests` (keyed by the child's request id), the SDK calls its callback and retries
/// with `inputResponses`, and the child's tool or prompt (run once) gets the answer. Without
/// the capability the call fails at once with -32021; a handshake-era client gets the same request
/// as a server→client request.
#[test]
fn python2_stateless_input_required() {
    let (bridge, mut tap) = Tap::with_bridge();
    let url = tap.url(&bridge.mcp_url);
    let skip = ["--resource", "", "--prompt", ""];

    // `py_client.py` in `mode` calling `tool` with `args`, answering with `answer` (the
    // option and its value), skipping the resource and the prompt.
    let answering = |mode: &str, tool: &str, args: &str, answer: [&str; 2]| {
        let mut argv = vec!["--mode", mode, "--tool", tool, "--args", args];
        argv.extend(answer);
        argv.extend(skip);
        py2(&bridge, &url, &argv)
    };

    // Elicitation.
    let payload = r#"{"payload":"p-stateless"}"#;
    let elicit = ["--elicit-answer", "yes-stateless"];
    let out = answering("auto", "elicit_echo", payload, elicit);
    assert_stateless_client(&out, "elicitation");
    assert_eq!(out["call"]["is_error"], false, "{out}");
    assert_eq!(
        strs(&out["call"]["texts"]),
        ["p-stateless|accept|yes-stateless"],
        "{out}"
    );
    assert_eq!(
        out["elicitations"],
        json!([{"message": "payload:p-stateless", "properties": ["answer"],
                "answered": {"answer": "yes-stateless"}}]),
        "{out}"
    );
    let wire = tap.take();
    assert_stateless_wire(&wire, true, "elicitation");
    let Round {
        result, response, ..
    } = assert_one_round(
        &wire,
        ("tools/call", "elicit_echo"),
        "elicitation/create",
        |p| assert_eq!(p["message"], "payload:p-stateless", "{p}"),
        "elicitation",
    );
    assert_eq!(
        response,
        json!({"action": "accept", "content": {"answer": "yes-stateless"}})
    );
    assert_eq!(
        result["content"],
        json!([{"type": "text", "text": "p-stateless|accept|yes-stateless"}])
    );
    assert_eq!(bridge.count("call elicit_echo"), 1, "the tool ran again");

    // Sampling.
    let prompt = r#"{"prompt":"What is 2+2?"}"#;
    let out = answering("auto", "test_sampling", prompt, ["--sampling-text", "four"]);
    assert_stateless_client(&out, "sampling");
    assert_eq!(strs(&out["call"]["texts"]), ["LLM response: four"], "{out}");
    assert_eq!(
        out["samplings"],
        json!([{"texts": ["What is 2+2?"], "answered": "four"}]),
        "{out}"
    );
    let wire = tap.take();
    assert_stateless_wire(&wire, true, "sampling");
    let Round { response, .. } = assert_one_round(
        &wire,
        ("tools/call", "test_sampling"),
        "sampling/createMessage",
        |p| assert_eq!(p["messages"][0]["content"]["text"], "What is 2+2?", "{p}"),
        "sampling",
    );
    assert_eq!(response["content"]["text"], "four", "{response}");
    assert_eq!(bridge.count("call test_sampling"), 1);

    // A prompt that needs input: `prompts/get` goes through the same rounds, and the input key
    // is the child's own request id (this fixture prompt asks with the id `user_context`).
    let out = py2(
        &bridge,
        &url,
        &[
            "--mode",
            "auto",
            "--tool",
            "",
            "--resource",
            "",
            "--prompt",
            "test_input_required_result_prompt",
            "--elicit-answer",
            "ctx-stateless",
        ],
    );
    assert_stateless_client(&out, "prompt input");
    assert_eq!(
        strs(&out["prompt"]),
        ["Use this context: ctx-stateless"],
        "{out}"
    );
    let wire = tap.take();
    assert_stateless_wire(&wire, true, "prompt input");
    let round = assert_one_round(
        &wire,
        ("prompts/get", "test_input_required_result_prompt"),
        "elicitation/create",
        |_| {},
        "prompt input",
    );
    assert_eq!(
        round.key, "user_context",
        "the key is the child's request id"
    );
    assert_eq!(
        round.response["content"]["context"], "ctx-stateless",
        "{}",
        round.response
    );
    assert_eq!(
        bridge.count("prompt test_input_required_result_prompt"),
        1,
        "the prompt ran again"
    );

    // No elicitation capability declared: the call fails at once with -32021 naming the
    // capability (nothing is asked, nothing hangs).
    let mut args = vec![url.as_str(), "--mode", "auto", "--tool", "elicit_echo"];
    args.extend(["--args", r#"{"payload":"p-none"}"#]);
    args.extend(skip);
    let out = run_script_failing(&bridge, "PY_SDK", "py_client.py", &args);
    assert_stateless_client(&out, "no capability");
    assert_eq!(out["failed_step"], "tools/call", "{out}");
    assert_eq!(out["elicitations"], Value::Null, "{out}");
    let wire = tap.take();
    assert_stateless_wire_failing(&wire, true, &["tools/call"], "no capability");
    let calls = tool_calls(&wire, "elicit_echo");
    assert_eq!(calls.len(), 1, "{:?}", methods(&wire));
    let (ex, _, refused) = calls[0];
    assert_eq!(ex["status"], 400, "{ex}");
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    assert!(
        refused["error"]["data"]["requiredCapabilities"]
            .get("elicitation")
            .is_some(),
        "{refused}"
    );

    // The same prompt for a handshake-era client: a server→client request on its POST stream.
    let payload = r#"{"payload":"p-handshake"}"#;
    let elicit = ["--elicit-answer", "yes-handshake"];
    let out = answering("legacy", "elicit_echo", payload, elicit);
    assert_handshake_client(&out, "handshake elicitation");
    assert_eq!(
        strs(&out["call"]["texts"]),
        ["p-handshake|accept|yes-handshake"],
        "{out}"
    );
    let wire = tap.take();
    assert_handshake_wire(&wire, false, true, "handshake elicitation");
    assert_eq!(tool_calls(&wire, "elicit_echo").len(), 1);

    assert_eq!(bridge.count("call elicit_echo"), 3);
    bridge.assert_one_child_initialize("input required");
}
