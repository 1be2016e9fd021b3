//! Isolation under concurrency: many sessions reusing the same JSON-RPC ids and progress
//! tokens on one shared server process, cancellation of one session's request, and
//! server→client requests (elicitation) routed to the session they belong to — with the
//! shared child and with `--isolate`.

use std::time::Duration;

use e2e::{Bridge, BridgeOpts, Relay};
use serde_json::{Value, json};

/// A minimal Streamable HTTP client session speaking raw HTTP.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    id: String,
}

/// A POST's answer, read message by message (JSON body or SSE stream).
struct Answer {
    resp: Option<reqwest::Response>,
    buf: Vec<u8>,
    queue: std::collections::VecDeque<Value>,
}

impl Answer {
    async fn new(resp: reqwest::Response) -> Self {
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut a = Self {
            resp: None,
            buf: Vec::new(),
            queue: Default::default(),
        };
        if is_sse {
            a.resp = Some(resp);
        } else {
            let status = resp.status();
            let bytes = resp.bytes().await.expect("body");
            if !bytes.is_empty() {
                let v: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("non-JSON body ({status}): {e}"));
                a.queue.push_back(v);
            }
        }
        a
    }

    /// The next message, or `None` at the end of the answer.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(v) = self.queue.pop_front() {
                return Some(v);
            }
            let resp = self.resp.as_mut()?;
            match resp.chunk().await.expect("stream") {
                None => {
                    self.resp = None;
                }
                Some(chunk) => {
                    self.buf.extend_from_slice(&chunk);
                    while let Some(pos) = find(&self.buf, b"\n\n") {
                        let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
                        let text = String::from_utf8_lossy(&event);
                        let data: Vec<&str> = text
                            .lines()
                            .filter_map(|l| l.strip_prefix("data:"))
                            .map(str::trim_start)
                            .collect();
                        // A priming event (an id, empty data) carries no message.
                        if data.iter().any(|d| !d.trim().is_empty()) {
                            let v: Value =
                                serde_json::from_str(&data.join("\n")).expect("SSE JSON");
                            self.queue.push_back(v);
                        }
                    }
                }
            }
        }
    }

    /// Reads until the response to `id`, returning it and the messages before it.
    async fn until_response(&mut self, id: &Value) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        while let Some(m) = self.next().await {
            if m.get("method").is_none() && m.get("id") == Some(id) {
                return (m, before);
            }
            before.push(m);
        }
        panic!("the answer ended without a response to {id}; got {before:?}");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Session {
    async fn open(bridge: &Bridge, caps: Value) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let mut s = Self {
            http,
            url: bridge.mcp_url.clone(),
            bearer: bridge.bearer.clone(),
            id: String::new(),
        };
        let resp = s
            .send(
                json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":caps,
                "clientInfo":{"name":"isolation-test","version":"1"}}}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        s.id = resp
            .headers()
            .get("mcp-session-id")
            .expect("session id")
            .to_str()
            .unwrap()
            .to_owned();
        let mut a = Answer::new(resp).await;
        let (init, _) = a.until_response(&json!(1)).await;
        assert_eq!(init["result"]["serverInfo"]["name"], "mcp-fixture");
        let r = s
            .send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        s
    }

    async fn send(&self, body: Value) -> reqwest::Response {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if !self.id.is_empty() {
            req = req.header("mcp-session-id", &self.id);
        }
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.expect("POST")
    }

    async fn request(&self, body: Value) -> Answer {
        let resp = self.send(body).await;
        assert_eq!(resp.status(), 200, "request failed");
        Answer::new(resp).await
    }
}

fn text_of(resp: &Value) -> String {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {resp}"))
        .to_owned()
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
        let session = Session::open(bridge, json!({})).await;
        for (w, id) in ids.iter().enumerate() {
            let session = session.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..CALLS_PER_WORKER {
                    let payload = format!("s{s}-w{w}-n{n}");
                    let mut a = session
                        .request(
                            json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
                            "name":"echo","arguments":{"text":payload},
                            "_meta":{"progressToken":"shared-token"}}}),
                        )
                        .await;
                    let (resp, before) = a.until_response(&id).await;
                    assert_eq!(resp["id"], id, "the id comes back with its JSON type");
                    assert_eq!(text_of(&resp), payload, "answer from another call");
                    assert_eq!(before.len(), 1, "exactly this call's progress: {before:?}");
                    assert_eq!(before[0]["method"], "notifications/progress");
                    assert_eq!(before[0]["params"]["progressToken"], "shared-token");
                    assert_eq!(
                        before[0]["params"]["message"], payload,
                        "progress of another call"
                    );
                    assert!(a.next().await.is_none(), "nothing after the response");
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
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        ..Default::default()
    });
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
    let a = Session::open(bridge, json!({})).await;
    let b = Session::open(bridge, json!({})).await;
    let call = |tag: &str, ms: u64| {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"slow","arguments":{"ms":ms,"tag":tag}}})
    };
    let (a2, b2) = (a.clone(), b.clone());
    let call_a = call("A", 30_000);
    let call_b = call("B", 1_500);
    let ta =
        tokio::spawn(async move { a2.request(call_a).await.until_response(&json!(1)).await.0 });
    let tb =
        tokio::spawn(async move { b2.request(call_b).await.until_response(&json!(1)).await.0 });
    // Both calls reached the server before the cancel.
    for _ in 0..200 {
        if bridge.count("call slow") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bridge.count("call slow"), 2);
    let r = a
        .send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"test"}}))
        .await;
    assert_eq!(r.status(), 202);
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
    cancel_is_per_session(&Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        ..Default::default()
    }))
    .await;
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
async fn start_elicitation(s: &Session, payload: &str) -> (Answer, Value) {
    let mut a = s
        .request(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"elicit_echo","arguments":{"payload":payload}}}),
        )
        .await;
    let req = tokio::time::timeout(Duration::from_secs(20), a.next())
        .await
        .expect("an elicitation request arrives")
        .expect("stream open");
    assert_eq!(req["method"], "elicitation/create", "got {req}");
    (a, req)
}

async fn finish_elicitation(s: &Session, mut a: Answer, req: &Value, payload: &str) {
    assert_eq!(
        req["params"]["message"],
        format!("payload:{payload}"),
        "the prompt belongs to this session's call"
    );
    let r = s
        .send(json!({"jsonrpc":"2.0","id":req["id"],"result":{
            "action":"accept","content":{"answer":format!("{payload}-answer")}}}))
        .await;
    assert_eq!(r.status(), 202);
    let (resp, _) = a.until_response(&json!(1)).await;
    assert_eq!(text_of(&resp), format!("{payload}|accept|{payload}-answer"));
}

#[tokio::test]
async fn elicitations_reach_their_own_sessions_shared() {
    let bridge = Bridge::start(BridgeOpts::default());
    let caps = json!({"elicitation":{}});
    let a = Session::open(&bridge, caps.clone()).await;
    let b = Session::open(&bridge, caps).await;
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
    let a = Session::open(&bridge, caps.clone()).await;
    let b = Session::open(&bridge, caps).await;
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
    let a = Session::open(&bridge, json!({"elicitation":{}})).await;
    let b = Session::open(&bridge, json!({"elicitation":{}})).await;
    let (ans_a, req_a) = start_elicitation(&a, "alpha").await;
    // B forges an answer to A's prompt: ignored.
    let r = b
        .send(json!({"jsonrpc":"2.0","id":req_a["id"],"result":{"action":"accept","content":{"answer":"forged"}}}))
        .await;
    assert_eq!(r.status(), 202);
    finish_elicitation(&a, ans_a, &req_a, "alpha").await;
}

#[tokio::test]
async fn no_capable_client_means_a_prompt_is_refused_not_hung() {
    let bridge = Bridge::start(BridgeOpts::default());
    let s = Session::open(&bridge, json!({})).await;
    let mut a = s
        .request(
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
            "name":"elicit_echo","arguments":{"payload":"x"}}}),
        )
        .await;
    let (resp, _) = tokio::time::timeout(Duration::from_secs(20), a.until_response(&json!(7)))
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
    let a = Session::open(&bridge, json!({})).await;
    let b = Session::open(&bridge, json!({})).await;
    let open_stream = |s: &Session| {
        let mut req = s
            .http
            .get(&s.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &s.id);
        if let Some(t) = &s.bearer {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let mut sa = Answer::new(open_stream(&a).await.unwrap()).await;
    let mut sb = Answer::new(open_stream(&b).await.unwrap()).await;
    // A subscribes twice-over (A then B), the server sees one subscribe.
    for s in [&a, &b] {
        let (r, _) = s
            .request(json!({"jsonrpc":"2.0","id":"sub","method":"resources/subscribe","params":{"uri":"test://watched-resource"}}))
            .await
            .until_response(&json!("sub"))
            .await;
        assert!(r.get("result").is_some(), "{r}");
    }
    let (r, _) = b
        .request(json!({"jsonrpc":"2.0","id":2,"method":"resources/unsubscribe","params":{"uri":"test://watched-resource"}}))
        .await
        .until_response(&json!(2))
        .await;
    assert!(r.get("result").is_some());
    let (r, _) = a
        .request(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"touch_resource","arguments":{"uri":"test://watched-resource"}}}))
        .await
        .until_response(&json!(3))
        .await;
    assert_eq!(text_of(&r), "ok");
    let (r, _) = a
        .request(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"trigger_list_changed","arguments":{}}}))
        .await
        .until_response(&json!(4))
        .await;
    assert_eq!(text_of(&r), "ok");
    let first_a = tokio::time::timeout(Duration::from_secs(10), sa.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_a["method"], "notifications/resources/updated");
    let second_a = tokio::time::timeout(Duration::from_secs(10), sa.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second_a["method"], "notifications/tools/list_changed");
    // B unsubscribed: it only gets the list change.
    let first_b = tokio::time::timeout(Duration::from_secs(10), sb.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_b["method"], "notifications/tools/list_changed");
}
