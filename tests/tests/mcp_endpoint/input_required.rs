//! Input-required results: answers given up front, a `requestState` of another tool,
//! altered or used twice, and a call needing a capability the client did not declare.

use std::time::Duration;

use e2e::mcp::{McpClient, Reply, stateless, texts, tool_call};
use e2e::process::tail;
use e2e::wait::wait_until;
use e2e::{Bridge, BridgeOpts};
use protocol::jsonrpc::{INVALID_PARAMS, MISSING_CLIENT_CAPABILITY};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_results_and_their_request_state() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = McpClient::of(&bridge);
    let caps = json!({"elicitation": {}});
    const ASKS_NAME: &str = "test_input_required_result_elicitation";
    let accept = |name: &str| json!({"action": "accept", "content": {"name": name}});

    // Answers given up front answer the server's request as it comes.
    let mut body = stateless(
        tool_call(json!("pre"), ASKS_NAME, json!({})),
        caps.clone(),
        &[],
    );
    body["params"]["inputResponses"] = json!({"user_name": accept("Ann")});
    let r = c.post_stateless(&body, "pre-supplied").await;
    assert_eq!(r.status, 200, "pre-supplied: {r:?}");
    let a = r.answer();
    assert_eq!(a["result"]["resultType"], "complete", "pre-supplied: {a}");
    assert!(texts(&a["result"]).iter().any(|t| t.contains("Ann")), "{a}");

    // Without them: an InputRequiredResult.
    let body = stateless(tool_call(json!(1), ASKS_NAME, json!({})), caps.clone(), &[]);
    let r = c.post_stateless(&body, "first round").await;
    assert_eq!(r.status, 200, "first round: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 1, "{a}");
    let result = &a["result"];
    assert_eq!(result["resultType"], "input_required", "{a}");
    let asks = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(asks.keys().collect::<Vec<_>>(), ["user_name"], "{a}");
    assert_eq!(asks["user_name"]["method"], "elicitation/create", "{a}");
    let state = result["requestState"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no requestState: {a}"))
        .to_owned();

    let retry = |id: Value, tool: &str, state: &str| {
        let mut body = stateless(tool_call(id, tool, json!({})), caps.clone(), &[]);
        body["params"]["requestState"] = json!(state);
        body["params"]["inputResponses"] = json!({"user_name": accept("Zed")});
        body
    };
    let refused = |r: &Reply, id: Value, what: &str| {
        assert_eq!(r.status, 400, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], id, "{what}: {a}");
        assert_eq!(a["error"]["code"], INVALID_PARAMS, "{what}: {a}");
    };

    // The state of another tool's call, and an altered state, are refused.
    let body = retry(json!(2), "test_input_required_result_sampling", &state);
    let r = c.post_stateless(&body, "another tool").await;
    refused(&r, json!(2), "requestState used for another tool");
    let body = retry(json!(3), ASKS_NAME, &format!("{state}0"));
    let r = c.post_stateless(&body, "altered").await;
    refused(&r, json!(3), "altered requestState");

    // The right retry completes the suspended call.
    let body = retry(json!(4), ASKS_NAME, &state);
    let r = c.post_stateless(&body, "retry").await;
    assert_eq!(r.status, 200, "retry: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 4, "{a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");
    assert!(texts(&a["result"]).iter().any(|t| t.contains("Zed")), "{a}");

    // Single use, once the call has ended.
    let body = retry(json!(5), ASKS_NAME, &state);
    let r = c.post_stateless(&body, "reused").await;
    refused(&r, json!(5), "requestState used twice");

    // Single use while the call goes on: two rounds, the first state replayed in the
    // second.
    const TWO_ROUNDS: &str = "test_input_required_result_multi_round";
    let round = |id: Value, state: Option<&str>, key: &str, answer: Value| {
        let mut body = stateless(tool_call(id, TWO_ROUNDS, json!({})), caps.clone(), &[]);
        if let Some(state) = state {
            body["params"]["requestState"] = json!(state);
            body["params"]["inputResponses"] =
                json!({ key: {"action": "accept", "content": answer} });
        }
        body
    };
    let asked = |r: &Reply, key: &str, what: &str| -> String {
        assert_eq!(r.status, 200, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["result"]["resultType"], "input_required", "{what}: {a}");
        let keys: Vec<&String> = a["result"]["inputRequests"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, [key], "{what}: {a}");
        a["result"]["requestState"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no requestState: {a}"))
            .to_owned()
    };
    let body = round(json!(10), None, "", json!(null));
    let r = c.post_stateless(&body, "round 0").await;
    let first = asked(&r, "step1", "round 0");
    let step1 = json!({"name": "Ann"});
    let body = round(json!(11), Some(&first), "step1", step1.clone());
    let r = c.post_stateless(&body, "round 1").await;
    let second = asked(&r, "step2", "round 1");
    assert_ne!(first, second, "each round has its own requestState");
    let body = round(json!(12), Some(&first), "step1", step1);
    let r = c.post_stateless(&body, "round 1 again").await;
    refused(&r, json!(12), "the first round's requestState used again");
    let body = round(json!(13), Some(&second), "step2", json!({"color": "blue"}));
    let r = c.post_stateless(&body, "round 2").await;
    assert_eq!(r.status, 200, "round 2: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 13, "{a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");
    assert_eq!(
        texts(&a["result"]),
        ["Thanks, Ann: your favorite color is blue."],
        "{a}"
    );
    assert_eq!(
        bridge.count(&format!("call {TWO_ROUNDS}")),
        1,
        "{:?}",
        bridge.counts()
    );

    // Only the two first calls ran on the server: retries resumed the suspended one.
    assert_eq!(
        bridge.count(&format!("call {ASKS_NAME}")),
        2,
        "{:?}",
        bridge.counts()
    );
    assert_eq!(
        bridge.count("call test_input_required_result_sampling"),
        0,
        "{:?}",
        bridge.counts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_client_capability_ends_and_cancels_the_call() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = McpClient::of(&bridge);
    let call = tool_call(json!("mc"), "test_missing_capability", json!({}));
    let a = c.stateless_answer(call, 400, "missing capability").await;
    assert_eq!(a["error"]["code"], MISSING_CLIENT_CAPABILITY, "{a}");
    assert!(
        a["error"]["data"]["requiredCapabilities"]["sampling"].is_object(),
        "{a}"
    );
    // The fixture's stderr (logged by the bridge) tells its call was cancelled.
    let cancelled = |log: &str| {
        log.lines().any(|l| {
            l.contains("tools/call test_missing_capability (id ")
                && l.contains("was cancelled; not responding")
        })
    };
    wait_until(
        Duration::from_secs(5),
        || cancelled(&bridge.proc.log_text()),
        || {
            format!(
                "the server's call was not cancelled; log:\n{}",
                tail(&bridge.proc.log_text())
            )
        },
    )
    .await;
    assert_eq!(bridge.count("call test_missing_capability"), 1);
}
