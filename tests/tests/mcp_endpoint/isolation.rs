//! Isolation under concurrency: many sessions reusing the same JSON-RPC ids and progress
//! tokens on one shared server process, cancellation of one session's request, and
//! server→client requests (elicitation) routed to the session they belong to — with the
//! shared child and with `--isolate`.

use std::time::Duration;

use e2e::mcp::{HANDSHAKE, McpClient, Session, Stream, first_text as text_of, tool_call};
use e2e::{Bridge, BridgeOpts, Relay};
use serde_json::{Value, json};

/// How long one exchange may take.
const LIMIT: Duration = Duration::from_secs(60);

/// A session of the bridge's tunnel (2025-11-25) declaring `caps`.
async fn open(bridge: &Bridge, caps: Value) -> Session {
    McpClient::of(bridge)
        .with_limit(LIMIT)
        .session_with(HANDSHAKE, caps)
        .await
}

/// POSTs a request in the session (which must be answered 200); its open stream.
async fn request(s: &Session, body: Value) -> Stream {
    s.request(&body, "a request").await
}

/// A request's answer up to the response to `id`: it, and the messages before it.
async fn response(a: &mut Stream, id: &Value) -> (Value, Vec<Value>) {
    a.until_response(id, "a request's answer").await
}

/// The next message of an answer, `None` at its end.
async fn next(a: &mut Stream) -> Option<Value> {
    a.next_message_or_end(LIMIT, "an answer").await
}

/// POSTs a notification or a response in the session; the status.
async fn send(s: &Session, body: Value) -> u16 {
    s.post(&body, "a message").await.status
}

const SESSIONS: usize = 32;
const CALLS_PER_WORKER: usize = 35;

/// 32 sessions × 3 concurrent workers, each worker reusing one id (`1`, `"1"`, `0`) and
/// all of them the same progress token: every answer and every progress notification
/// reaches the session and request that made the call, and the server executed each
/// call exactly once.
async fn many_sessions_reusing_ids(bridge: &Bridge) {
    let ids = [json!(1), json!("1"), json!(0)];
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let session = open(bridge, json!({})).await;
        for (w, id) in ids.iter().enumerate() {
            let session = session.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..CALLS_PER_WORKER {
                    let payload = format!("s{s}-w{w}-n{n}");
                    let mut a = request(
                        &session,
                        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
                        "name":"echo","arguments":{"text":payload},
                        "_meta":{"progressToken":"shared-token"}}}),
                    )
                    .await;
                    let (resp, before) = response(&mut a, &id).await;
                    assert_eq!(resp["id"], id, "the id comes back with its JSON type");
                    assert_eq!(text_of(&resp), payload, "answer from another call");
                    assert_eq!(before.len(), 1, "exactly this call's progress: {before:?}");
                    assert_eq!(before[0]["method"], "notifications/progress");
                    assert_eq!(before[0]["params"]["progressToken"], "shared-token");
                    assert_eq!(
                        before[0]["params"]["message"], payload,
                        "progress of another call"
                    );
                    assert!(next(&mut a).await.is_none(), "nothing after the response");
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let total = SESSIONS * 3 * CALLS_PER_WORKER;
    assert_eq!(
        bridge.count("call echo"),
        total,
        "each call executed exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_child_keeps_sessions_apart() {
    let bridge = Bridge::start(BridgeOpts::default());
    many_sessions_reusing_ids(&bridge).await;
    assert_eq!(
        bridge.count("initialize"),
        1,
        "the child is initialized once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_relay_keeps_sessions_apart() {
    let relay = Relay::start(&[]);
    let bridge = BridgeOpts::default().via(&relay).start();
    many_sessions_reusing_ids(&bridge).await;
    assert_eq!(
        bridge.count("initialize"),
        1,
        "the child is initialized once"
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_children_keep_sessions_apart() {
    let bridge = Bridge::start(BridgeOpts {
        isolate: true,
        args: vec!["--max-children".into(), "40".into()],
        ..Default::default()
    });
    many_sessions_reusing_ids(&bridge).await;
    assert_eq!(
        bridge.count("initialize"),
        SESSIONS,
        "one child per session"
    );
}

/// Session A cancels its request `1`; session B's request `1` runs to completion.
async fn cancel_is_per_session(bridge: &Bridge) {
    let a = open(bridge, json!({})).await;
    let b = open(bridge, json!({})).await;
    let call = |tag: &str, ms: u64| {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"slow","arguments":{"ms":ms,"tag":tag}}})
    };
    let (a2, b2) = (a.clone(), b.clone());
    let call_a = call("A", 30_000);
    let call_b = call("B", 1_500);
    let ta =
        tokio::spawn(async move { response(&mut request(&a2, call_a).await, &json!(1)).await.0 });
    let tb =
        tokio::spawn(async move { response(&mut request(&b2, call_b).await, &json!(1)).await.0 });
    // Both calls reached the server before the cancel.
    for _ in 0..200 {
        if bridge.count("call slow") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bridge.count("call slow"), 2);
    let r = send(
        &a,
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"test"}}),
    )
    .await;
    assert_eq!(r, 202);
    let ra = tokio::time::timeout(Duration::from_secs(10), ta)
        .await
        .expect("A's stream ends after its cancel")
        .unwrap();
    assert_eq!(
        ra["error"]["code"], -32800,
        "A's request was cancelled: {ra}"
    );
    let rb = tokio::time::timeout(Duration::from_secs(20), tb)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        text_of(&rb),
        "done B",
        "B's request with the same id ran on"
    );
    for _ in 0..100 {
        if bridge.count("cancelled A") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        bridge.count("cancelled A"),
        1,
        "the server saw A's cancellation"
    );
    assert_eq!(bridge.count("cancelled B"), 0, "B was not cancelled");
}

#[tokio::test]
async fn cancel_affects_only_its_session_shared() {
    cancel_is_per_session(&Bridge::start(BridgeOpts::default())).await;
}

#[tokio::test]
async fn cancel_affects_only_its_session_separate_relay() {
    let relay = Relay::start(&[]);
    cancel_is_per_session(&BridgeOpts::default().via(&relay).start()).await;
}

#[tokio::test]
async fn cancel_affects_only_its_session_isolated() {
    cancel_is_per_session(&Bridge::start(BridgeOpts {
        isolate: true,
        ..Default::default()
    }))
    .await;
}

/// Starts `elicit_echo` in a session and reads up to the elicitation request it causes.
async fn start_elicitation(s: &Session, payload: &str) -> (Stream, Value) {
    let mut a = request(
        s,
        tool_call(json!(1), "elicit_echo", json!({"payload": payload})),
    )
    .await;
    let req = tokio::time::timeout(Duration::from_secs(20), next(&mut a))
        .await
        .expect("an elicitation request arrives")
        .expect("stream open");
    assert_eq!(req["method"], "elicitation/create", "got {req}");
    (a, req)
}

async fn finish_elicitation(s: &Session, mut a: Stream, req: &Value, payload: &str) {
    assert_eq!(
        req["params"]["message"],
        format!("payload:{payload}"),
        "the prompt belongs to this session's call"
    );
    let r = send(
        s,
        json!({"jsonrpc":"2.0","id":req["id"],"result":{
            "action":"accept","content":{"answer":format!("{payload}-answer")}}}),
    )
    .await;
    assert_eq!(r, 202);
    let (resp, _) = response(&mut a, &json!(1)).await;
    assert_eq!(text_of(&resp), format!("{payload}|accept|{payload}-answer"));
}

#[tokio::test]
async fn elicitations_reach_their_own_sessions_shared() {
    let bridge = Bridge::start(BridgeOpts::default());
    let caps = json!({"elicitation":{}});
    let a = open(&bridge, caps.clone()).await;
    let b = open(&bridge, caps).await;
    // On one shared stdio server a prompt carries no session: the bridge gives it to the
    // oldest in-flight request without an open prompt. Both calls are in flight together.
    let (ans_a, req_a) = start_elicitation(&a, "alpha").await;
    let (ans_b, req_b) = start_elicitation(&b, "beta").await;
    // Answer in reverse order.
    finish_elicitation(&b, ans_b, &req_b, "beta").await;
    finish_elicitation(&a, ans_a, &req_a, "alpha").await;
}

#[tokio::test]
async fn elicitations_reach_their_own_sessions_isolated() {
    let bridge = Bridge::start(BridgeOpts {
        isolate: true,
        ..Default::default()
    });
    let caps = json!({"elicitation":{}});
    let a = open(&bridge, caps.clone()).await;
    let b = open(&bridge, caps).await;
    // With one child per session, both prompts may be raised at the same moment.
    let ((ans_a, req_a), (ans_b, req_b)) = tokio::join!(
        start_elicitation(&a, "alpha"),
        start_elicitation(&b, "beta")
    );
    finish_elicitation(&b, ans_b, &req_b, "beta").await;
    finish_elicitation(&a, ans_a, &req_a, "alpha").await;
}

#[tokio::test]
async fn a_session_cannot_answer_another_sessions_prompt() {
    let bridge = Bridge::start(BridgeOpts::default());
    let a = open(&bridge, json!({"elicitation":{}})).await;
    let b = open(&bridge, json!({"elicitation":{}})).await;
    let (ans_a, req_a) = start_elicitation(&a, "alpha").await;
    // B forges an answer to A's prompt: ignored.
    let r = send(
        &b,
        json!({"jsonrpc":"2.0","id":req_a["id"],"result":{"action":"accept","content":{"answer":"forged"}}}),
    )
    .await;
    assert_eq!(r, 202);
    finish_elicitation(&a, ans_a, &req_a, "alpha").await;
}

#[tokio::test]
async fn no_capable_client_means_a_prompt_is_refused_not_hung() {
    let bridge = Bridge::start(BridgeOpts::default());
    let s = open(&bridge, json!({})).await;
    let mut a = request(
        &s,
        tool_call(json!(7), "elicit_echo", json!({"payload": "x"})),
    )
    .await;
    let (resp, _) = tokio::time::timeout(Duration::from_secs(20), response(&mut a, &json!(7)))
        .await
        .expect("answered");
    assert_eq!(
        resp["result"]["isError"], true,
        "the tool reports the refusal: {resp}"
    );
}

#[tokio::test]
async fn list_changed_reaches_every_session_and_updates_only_subscribers() {
    let bridge = Bridge::start(BridgeOpts::default());
    let a = open(&bridge, json!({})).await;
    let b = open(&bridge, json!({})).await;
    let mut sa = a.get_stream("A's stream").await;
    let mut sb = b.get_stream("B's stream").await;
    // A subscribes twice-over (A then B), the server sees one subscribe.
    let call = |s: &Session, id: Value, method: &'static str, params: Value| {
        let s = s.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            response(&mut request(&s, body).await, &id).await.0
        }
    };
    let watched = json!({"uri": "test://watched-resource"});
    for s in [&a, &b] {
        let r = call(s, json!("sub"), "resources/subscribe", watched.clone()).await;
        assert!(r.get("result").is_some(), "{r}");
    }
    let r = call(&b, json!(2), "resources/unsubscribe", watched.clone()).await;
    assert!(r.get("result").is_some());
    let r = call(
        &a,
        json!(3),
        "tools/call",
        json!({"name": "touch_resource", "arguments": watched}),
    )
    .await;
    assert_eq!(text_of(&r), "ok");
    let r = call(
        &a,
        json!(4),
        "tools/call",
        json!({"name": "trigger_list_changed", "arguments": {}}),
    )
    .await;
    assert_eq!(text_of(&r), "ok");
    let within = Duration::from_secs(10);
    let first_a = sa.next_message(within, "A's stream").await;
    assert_eq!(first_a["method"], "notifications/resources/updated");
    let second_a = sa.next_message(within, "A's stream").await;
    assert_eq!(second_a["method"], "notifications/tools/list_changed");
    // B unsubscribed: it only gets the list change.
    let first_b = sb.next_message(within, "B's stream").await;
    assert_eq!(first_b["method"], "notifications/tools/list_changed");
}
