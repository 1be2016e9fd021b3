//! The desktop policy, end to end: the real `bridge` with the fixture server, spoken to over
//! raw HTTP in every protocol era.
//!
//! * hidden tools (allow and deny globs) are missing from `tools/list` in a 2025 session, a
//!   2026-07-28 request, the legacy SSE transport and the relay's offline snapshot, and
//!   calling one is refused with -32602 "Unknown tool" without reaching the server;
//! * annotation overrides show in every list;
//! * calls of `--confirm-tool` tools wait for `y CODE` / `n CODE` typed into the bridge's
//!   terminal: allowed they run, declined or unanswered they get a tool error and never
//!   run, concurrent prompts are told apart by their codes, a client that cancels or
//!   closes its stream withdraws its call, and without a terminal they are declined;
//! * the audit log has one JSON line per call with its outcome and no argument values,
//!   and is rotated at its size limit;
//! * the policy's roots join those of the `root` option, each reported once.
//!
//! Needs `cargo build --workspace --bins` first.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use e2e::{Bridge, BridgeOpts, Relay};
use serde_json::{Value, json};
use tokio::time::Instant;

const MODERN: &str = "2026-07-28";
const V2025: &str = "2025-06-18";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const UNKNOWN_TOOL: i64 = -32602;

/// Longest wait for one ordinary exchange.
const LIMIT: Duration = Duration::from_secs(20);

// ----- a small MCP client over HTTP ------------------------------------------------------

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    mcp: String,
    sse: String,
    bearer: Option<String>,
}

/// A finished POST: status, session header and the JSON-RPC messages it carried.
#[derive(Debug)]
struct Reply {
    status: u16,
    session: Option<String>,
    messages: Vec<Value>,
}

impl Reply {
    fn answer(&self) -> &Value {
        self.messages
            .iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in {self:?}"))
    }
}

/// The JSON-RPC messages of an SSE body (or the one JSON body).
fn messages_of(content_type: &str, body: &str) -> Vec<Value> {
    if !content_type.starts_with("text/event-stream") {
        return if body.trim().is_empty() {
            Vec::new()
        } else {
            vec![serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))]
        };
    }
    let mut out = Vec::new();
    for block in body.replace('\r', "").split("\n\n") {
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let data = data.join("\n");
        if !data.trim().is_empty()
            && let Ok(v) = serde_json::from_str::<Value>(&data)
        {
            out.push(v);
        }
    }
    out
}

impl Client {
    fn of(bridge: &Bridge) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .http1_only()
                .build()
                .expect("HTTP client"),
            mcp: bridge.mcp_url.clone(),
            sse: bridge.sse_url.clone(),
            bearer: bridge.bearer.clone(),
        }
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bearer {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    fn request(&self, body: &Value, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .post(&self.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = session {
            rb = rb
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", V2025);
        }
        if body["params"]["_meta"][META_VERSION] == MODERN {
            rb = rb
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", body["method"].as_str().unwrap_or(""));
            if let Some(n) = body["params"]["name"].as_str() {
                rb = rb.header("mcp-name", n);
            }
        }
        self.auth(rb)
    }

    async fn post_within(&self, body: &Value, session: Option<&str>, within: Duration) -> Reply {
        let what = body["method"].as_str().unwrap_or("?").to_owned();
        let resp = tokio::time::timeout(within, self.request(body, session).send())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {within:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let session = header("mcp-session-id");
        let ct = header("content-type").unwrap_or_default();
        let body = tokio::time::timeout(within, resp.text())
            .await
            .unwrap_or_else(|_| panic!("{what}: body not complete within {within:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        Reply {
            status,
            session,
            messages: messages_of(&ct, &body),
        }
    }

    async fn post(&self, body: &Value, session: Option<&str>) -> Reply {
        self.post_within(body, session, LIMIT).await
    }

    /// A 2025-era session.
    async fn initialize(&self) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": V2025, "capabilities": {},
            "clientInfo": {"name": "policy-test", "version": "0"}}});
        let r = self.post(&init, None).await;
        assert_eq!(r.status, 200, "initialize: {r:?}");
        let sid = r.session.clone().expect("a session id");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = self.post(&note, Some(&sid)).await;
        assert_eq!(r.status, 202, "{r:?}");
        sid
    }
}

fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn call(id: Value, tool: &str, args: Value) -> Value {
    request(id, "tools/call", json!({"name": tool, "arguments": args}))
}

/// The same request in the 2026-07-28 revision.
fn modern(mut body: Value) -> Value {
    if !body["params"].is_object() {
        body["params"] = json!({});
    }
    body["params"]["_meta"] = json!({ META_VERSION: MODERN, META_CAPS: {} });
    body
}

fn names(result: &Value) -> BTreeSet<String> {
    result["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {result}"))
        .iter()
        .map(|t| t["name"].as_str().expect("named").to_owned())
        .collect()
}

fn tool<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("{name} missing from {result}"))
}

fn text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|i| i["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

/// Checks the tools the policy of [`hiding_bridge`] leaves, with their overrides.
fn check_list(result: &Value, era: &str) {
    let want: BTreeSet<String> = ["echo", "slow", "test_simple_text"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names(result), want, "{era}: {result}");
    let echo = &tool(result, "echo")["annotations"];
    assert_eq!(echo["readOnlyHint"], true, "{era}: {result}");
    assert_eq!(echo["destructiveHint"], false, "{era}: {result}");
    let slow = &tool(result, "slow")["annotations"];
    assert_eq!(slow["destructiveHint"], true, "{era}: {result}");
    assert_eq!(slow["readOnlyHint"], false, "{era}: {result}");
    assert!(
        tool(result, "test_simple_text")
            .get("annotations")
            .is_none(),
        "{era}: untouched: {result}"
    );
}

fn assert_unknown_tool(answer: &Value, tool: &str, era: &str) {
    assert_eq!(answer["error"]["code"], UNKNOWN_TOOL, "{era}: {answer}");
    assert_eq!(
        answer["error"]["message"],
        format!("Unknown tool: {tool}"),
        "{era}: {answer}"
    );
}

/// The audit log's records (every line must be JSON).
fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: audit line {l:?}")))
        .collect()
}

/// Waits until the audit log has at least `n` records.
async fn audit_wait(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let lines = audit_lines(path);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_record(r: &Value) {
    for k in [
        "time",
        "principal",
        "tool",
        "args_sha256",
        "outcome",
        "duration_ms",
        "era",
    ] {
        assert!(r.get(k).is_some(), "{k} missing: {r}");
    }
    let time = r["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {r}"
    );
    let digest = r["args_sha256"].as_str().unwrap();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{r}"
    );
    assert!(r["duration_ms"].is_u64(), "{r}");
}

// ----- hidden tools and overrides ----------------------------------------------------------

fn hiding_args(audit: &Path) -> Vec<String> {
    [
        "--allow-tool",
        "echo",
        "--allow-tool",
        "sl?w",
        "--allow-tool",
        "test_simple_*",
        "--allow-tool",
        "exit",
        "--deny-tool",
        "[e]xit",
        "--read-only-tool",
        "echo",
        "--destructive-tool",
        "slow",
        "--audit-log",
        audit.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn hiding_bridge(audit: &Path) -> Bridge {
    Bridge::start(BridgeOpts {
        args: hiding_args(audit),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_tools_and_overrides_in_every_era() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = hiding_bridge(&audit);
    let c = Client::of(&bridge);

    // 2025 session.
    let sid = c.initialize().await;
    let r = c
        .post(&request(json!(1), "tools/list", json!({})), Some(&sid))
        .await;
    check_list(&r.answer()["result"], "2025 session");
    for (i, hidden) in ["exit", "test_error_handling", "big"].iter().enumerate() {
        let r = c
            .post(&call(json!(10 + i), hidden, json!({})), Some(&sid))
            .await;
        assert_unknown_tool(r.answer(), hidden, "2025 session");
        assert_eq!(r.answer()["id"], json!(10 + i));
    }
    // A request without a session (hosted clients drop the header).
    let r = c
        .post(&call(json!("x"), "exit", json!({"code": 3})), None)
        .await;
    assert_unknown_tool(r.answer(), "exit", "2025 sessionless");
    let r = c
        .post(
            &call(json!(2), "echo", json!({"text": "visible-2025"})),
            Some(&sid),
        )
        .await;
    assert_eq!(text(&r.answer()["result"]), "visible-2025", "{r:?}");

    // 2026-07-28.
    let r = c
        .post(&modern(request(json!(20), "tools/list", json!({}))), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let result = &r.answer()["result"];
    check_list(result, "2026-07-28");
    assert_eq!(result["resultType"], "complete", "{result}");
    assert!(result["ttlMs"].is_u64(), "caching hints kept: {result}");
    let r = c
        .post(&modern(call(json!(21), "exit", json!({}))), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_unknown_tool(r.answer(), "exit", "2026-07-28");
    let r = c
        .post(
            &modern(call(json!(22), "test_error_handling", json!({}))),
            None,
        )
        .await;
    assert_unknown_tool(r.answer(), "test_error_handling", "2026-07-28");
    let r = c
        .post(
            &modern(call(json!(23), "echo", json!({"text": "visible-modern"}))),
            None,
        )
        .await;
    assert_eq!(text(&r.answer()["result"]), "visible-modern", "{r:?}");

    // Legacy HTTP+SSE.
    legacy_round(&c).await;

    // The server never saw a hidden call; the server still exists (exit never ran).
    assert_eq!(bridge.count("call exit"), 0, "{:?}", bridge.counts());
    assert_eq!(bridge.count("call test_error_handling"), 0);
    assert_eq!(bridge.count("call big"), 0);
    assert_eq!(bridge.count("call echo"), 3);
    assert_eq!(bridge.count("initialize"), 1, "{:?}", bridge.counts());

    // The audit log: one line per call, refused ones included, never the arguments.
    let lines = audit_wait(&audit, 10).await;
    assert_eq!(lines.len(), 10, "{lines:#?}");
    for l in &lines {
        check_record(l);
    }
    let outcome = |tool: &str, era: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["tool"] == tool && l["era"] == era)
            .map(|l| l["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(outcome("exit", V2025), ["refused"]);
    assert_eq!(outcome("exit", MODERN), ["refused"]);
    assert_eq!(outcome("exit", "2024-11-05"), ["refused"]);
    assert_eq!(outcome("echo", V2025), ["ok"]);
    assert_eq!(outcome("echo", MODERN), ["ok"]);
    assert_eq!(outcome("echo", "2024-11-05"), ["ok"]);
    let raw = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        "visible-2025",
        "visible-modern",
        "visible-legacy",
        "\"code\"",
    ] {
        assert!(
            !raw.contains(secret),
            "argument values in the audit log: {raw}"
        );
    }
    let digest = |text: &str| {
        lines
            .iter()
            .find(|l| l["tool"] == "echo" && l["era"] == text)
            .unwrap()["args_sha256"]
            .clone()
    };
    assert_ne!(digest(V2025), digest(MODERN), "different arguments");
    assert_eq!(
        lines.iter().find(|l| l["tool"] == "big").unwrap()["args_sha256"],
        // SHA-256 of `{}`, the arguments as sent.
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

/// The legacy transport: list and call over `/sse` + `/messages`.
async fn legacy_round(c: &Client) {
    let resp = c
        .auth(c.http.get(&c.sse).header("accept", "text/event-stream"))
        .send()
        .await
        .expect("GET /sse");
    assert_eq!(resp.status().as_u16(), 200);
    let mut sse = SseReader {
        resp,
        buf: String::new(),
    };
    let (event, data) = sse.next().await;
    assert_eq!(event, "endpoint", "{data}");
    let base = reqwest::Url::parse(&c.sse).unwrap();
    let post_url = base.join(&data).unwrap();
    let post = |body: Value| {
        let c = c.clone();
        let url = post_url.clone();
        async move {
            let r = c
                .auth(
                    c.http
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.to_string()),
                )
                .send()
                .await
                .expect("POST /messages");
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    let mut answer = async |id: i64| -> Value {
        loop {
            let (_, data) = sse.next().await;
            let v: Value = serde_json::from_str(&data).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "policy-test", "version": "0"}}}),
    )
    .await;
    answer(1).await;
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    post(request(json!(2), "tools/list", json!({}))).await;
    check_list(&answer(2).await["result"], "legacy SSE");
    post(call(json!(3), "exit", json!({}))).await;
    assert_unknown_tool(&answer(3).await, "exit", "legacy SSE");
    post(call(json!(4), "echo", json!({"text": "visible-legacy"}))).await;
    assert_eq!(text(&answer(4).await["result"]), "visible-legacy");
}

struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    /// The next event with data: (event name, data).
    async fn next(&mut self) -> (String, String) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut event = "message".to_owned();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
                    }
                }
                if !data.is_empty() {
                    return (event, data.join("\n"));
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self
                    .buf
                    .push_str(&String::from_utf8_lossy(&c).replace('\r', "")),
                other => panic!("SSE stream: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_snapshot_is_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let relay = Relay::start(&["--grace-secs", "1"]);
    let mut bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        args: {
            let mut a = hiding_args(&audit);
            a.extend(["--auth".into(), "bearer".into()]);
            a
        },
        ..Default::default()
    });
    let c = Client::of(&bridge);
    // Online first, and let the snapshot reach the relay.
    let r = c
        .post(&request(json!(1), "tools/list", json!({})), None)
        .await;
    check_list(&r.answer()["result"], "online");
    tokio::time::sleep(Duration::from_secs(1)).await;
    bridge.proc.terminate();
    assert!(
        bridge.proc.wait_exit(Duration::from_secs(15)).is_some(),
        "the bridge stops"
    );
    // Past the grace period the relay answers from the snapshot.
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = c
            .post(&request(json!(2), "tools/list", json!({})), None)
            .await;
        if r.status == 200
            && let Some(result) = r.answer().get("result")
        {
            check_list(result, "offline snapshot");
            break;
        }
        assert!(Instant::now() < deadline, "no offline answer: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// ----- confirmation in the terminal --------------------------------------------------------

/// Waits for a new approval prompt in the bridge's log (beyond the `seen` first ones) and
/// returns its code and the prompt's text.
async fn next_prompt(bridge: &Bridge, seen: &mut usize) -> (String, String) {
    let marker = "Tool call waiting for your approval [code ";
    let deadline = Instant::now() + LIMIT;
    loop {
        let log = bridge.proc.log_text();
        let prompts: Vec<&str> = log.split(marker).skip(1).collect();
        if prompts.len() > *seen {
            let p = prompts[*seen];
            *seen += 1;
            let code = p[..p.find(']').expect("code ends")].to_owned();
            let text = p.split("\n\n").next().unwrap_or(p).to_owned();
            return (code, text);
        }
        assert!(Instant::now() < deadline, "no approval prompt; log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_log(bridge: &Bridge, needle: &str) {
    let deadline = Instant::now() + LIMIT;
    while !bridge.proc.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in the log:\n{}",
            bridge.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn confirming_bridge(audit: &Path, piped_stdin: bool) -> Bridge {
    Bridge::start(BridgeOpts {
        args: [
            "--confirm-tool",
            "ech*",
            "--confirm-tool",
            "slow",
            "--confirm-timeout-secs",
            "3",
            "--audit-log",
            audit.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        piped_stdin,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_allow_decline_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut bridge = confirming_bridge(&audit, true);
    let c = Client::of(&bridge);
    let sid = c.initialize().await;
    let mut seen = 0;

    // Allowed: the call runs, with the arguments shown (escape sequences neutralized).
    let pending = {
        let c = c.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            c.post(
                &call(json!(1), "echo", json!({"text": "allowed-arg\u{1b}[2J"})),
                Some(&sid),
            )
            .await
        })
    };
    let (code, prompt) = next_prompt(&bridge, &mut seen).await;
    assert!(prompt.contains("tool:      echo"), "{prompt}");
    assert!(
        prompt.contains("allowed"),
        "a preview of the arguments: {prompt}"
    );
    assert!(!prompt.contains('\u{1b}'), "{prompt}");
    assert_eq!(bridge.count("call echo"), 0, "held, not sent");
    bridge
        .proc
        .write_line(&format!("y {}", code.to_lowercase()));
    let r = pending.await.unwrap();
    assert_eq!(text(&r.answer()["result"]), "allowed-arg\u{1b}[2J", "{r:?}");
    assert_eq!(bridge.count("call echo"), 1);

    // Declined: a tool error, and the server never sees it.
    let pending = {
        let c = c.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            c.post(
                &call(json!(2), "echo", json!({"text": "declined-arg"})),
                Some(&sid),
            )
            .await
        })
    };
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    bridge.proc.write_line(&format!("n {code}"));
    let r = pending.await.unwrap();
    let result = &r.answer()["result"];
    assert_eq!(result["isError"], true, "{r:?}");
    assert!(
        text(result).contains("the owner declined this call"),
        "{r:?}"
    );
    assert_eq!(bridge.count("call echo"), 1);

    // Unanswered: declined after the timeout (3 s).
    let started = Instant::now();
    let r = c
        .post(
            &call(json!(3), "echo", json!({"text": "ignored-arg"})),
            Some(&sid),
        )
        .await;
    let waited = started.elapsed();
    let result = &r.answer()["result"];
    assert_eq!(result["isError"], true, "{r:?}");
    assert!(text(result).contains("declined"), "{r:?}");
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    assert_eq!(bridge.count("call echo"), 1);
    // A late answer finds nothing.
    bridge.proc.write_line(&format!("y {code}"));
    wait_log(
        &bridge,
        &format!("No tool call waits with the code \"{code}\""),
    )
    .await;

    // Two at once, in the 2026-07-28 revision: each code answers its own call.
    let spawn_modern = |id: i64, text: &'static str| {
        let c = c.clone();
        tokio::spawn(async move {
            c.post(
                &modern(call(json!(id), "echo", json!({"text": text}))),
                None,
            )
            .await
        })
    };
    let first = spawn_modern(4, "first-arg");
    let (code_a, prompt_a) = next_prompt(&bridge, &mut seen).await;
    let second = spawn_modern(5, "second-arg");
    let (code_b, prompt_b) = next_prompt(&bridge, &mut seen).await;
    assert!(prompt_a.contains("first-arg") && prompt_b.contains("second-arg"));
    assert_ne!(code_a, code_b);
    bridge.proc.write_line(&format!("n {code_b}"));
    bridge.proc.write_line(&format!("y {code_a}"));
    let a = first.await.unwrap();
    let b = second.await.unwrap();
    assert_eq!(text(&a.answer()["result"]), "first-arg", "{a:?}");
    assert_eq!(a.answer()["result"]["resultType"], "complete");
    assert_eq!(b.answer()["result"]["isError"], true, "{b:?}");
    assert_eq!(b.answer()["result"]["resultType"], "complete");
    assert_eq!(bridge.count("call echo"), 2);

    // A held 2026-07-28 call whose client closes the stream is withdrawn.
    let gone = spawn_modern(6, "gone-arg");
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    gone.abort();
    let _ = gone.await;
    wait_log(&bridge, &format!("[code {code}] no longer waits")).await;
    bridge.proc.write_line(&format!("y {code}"));
    wait_log(
        &bridge,
        &format!("No tool call waits with the code \"{code}\""),
    )
    .await;

    // A held 2025 call cancelled by its client is withdrawn too.
    let cancelled = {
        let c = c.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            c.post(
                &call(json!(7), "slow", json!({"ms": 1, "tag": "t"})),
                Some(&sid),
            )
            .await
        })
    };
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "changed my mind"}});
    assert_eq!(c.post(&cancel, Some(&sid)).await.status, 202);
    let r = cancelled.await.unwrap();
    assert_eq!(r.answer()["error"]["code"], -32800, "{r:?}");
    wait_log(&bridge, &format!("[code {code}] no longer waits")).await;
    assert_eq!(bridge.count("call echo"), 2);
    assert_eq!(bridge.count("call slow"), 0);

    // Calls of other tools are not held.
    let r = c
        .post(&call(json!(8), "test_simple_text", json!({})), Some(&sid))
        .await;
    assert!(r.answer()["result"].is_object(), "{r:?}");

    let lines = audit_wait(&audit, 8).await;
    for l in &lines {
        check_record(l);
    }
    let outcomes: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["tool"].as_str().unwrap(), l["outcome"].as_str().unwrap()))
        .collect();
    for want in [
        ("echo", "ok"),
        ("echo", "declined"),
        ("echo", "timeout"),
        ("echo", "cancelled"),
        ("slow", "cancelled"),
        ("test_simple_text", "ok"),
    ] {
        assert!(outcomes.contains(&want), "{want:?} missing: {outcomes:?}");
    }
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    let allowed = lines
        .iter()
        .find(|l| l["outcome"] == "ok" && l["tool"] == "echo")
        .unwrap();
    assert!(
        allowed["duration_ms"].as_u64().unwrap() > 0,
        "the wait for approval counts: {allowed}"
    );
    let raw = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !raw.contains("-arg"),
        "argument values in the audit log: {raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_without_a_terminal_declines() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = confirming_bridge(&audit, false);
    let c = Client::of(&bridge);
    for (id, body) in [
        (1, call(json!(1), "echo", json!({"text": "no terminal"}))),
        (
            2,
            modern(call(json!(2), "echo", json!({"text": "no terminal"}))),
        ),
    ] {
        let r = c.post(&body, None).await;
        let result = &r.answer()["result"];
        assert_eq!(result["isError"], true, "{id}: {r:?}");
        assert!(
            text(result).contains("run `bridge run` in a terminal"),
            "{id}: {r:?}"
        );
    }
    wait_log(&bridge, "the bridge has no terminal to ask in").await;
    assert_eq!(bridge.count("call echo"), 0);
    let lines = audit_wait(&audit, 2).await;
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l["outcome"] == "declined"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = Bridge::start(BridgeOpts {
        args: vec![
            "--audit-log".into(),
            audit.to_str().unwrap().into(),
            "--audit-max-bytes".into(),
            "1024".into(),
        ],
        ..Default::default()
    });
    let c = Client::of(&bridge);
    let sid = c.initialize().await;
    let n = 40;
    for i in 0..n {
        let r = c
            .post(
                &call(json!(i), "echo", json!({"text": format!("r{i}")})),
                Some(&sid),
            )
            .await;
        assert!(r.answer()["result"].is_object(), "{r:?}");
    }
    // Lists are not audited, and no policy means no rewriting.
    let r = c
        .post(&request(json!("l"), "tools/list", json!({})), Some(&sid))
        .await;
    assert!(names(&r.answer()["result"]).contains("exit"));
    let files = [
        audit.clone(),
        e2e_rotated(&audit, 1),
        e2e_rotated(&audit, 2),
        e2e_rotated(&audit, 3),
    ];
    let deadline = Instant::now() + LIMIT;
    loop {
        let total: usize = files.iter().map(|f| audit_lines(f).len()).sum();
        if total >= 12 && e2e_rotated(&audit, 3).exists() {
            break;
        }
        assert!(Instant::now() < deadline, "{total} lines");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in &files {
        if !f.exists() {
            continue;
        }
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size <= 1024, "{} has {size} bytes", f.display());
        for l in audit_lines(f) {
            check_record(&l);
            assert_eq!(l["tool"], "echo");
            assert_eq!(l["outcome"], "ok");
        }
    }
    assert!(!e2e_rotated(&audit, 4).exists());
    drop(bridge);
}

fn e2e_rotated(path: &Path, n: usize) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_roots_join_the_root_option() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["a", "b"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        "root = [\"a\"]\n\n[policy]\nroots = [\"a\", \"b\"]\n",
    )
    .unwrap();
    let bridge = Bridge::start(BridgeOpts {
        args: vec!["--config".into(), file.to_str().unwrap().into()],
        ..Default::default()
    });
    let c = Client::of(&bridge);
    // The fixture's `test_roots` asks for its roots: the bridge answers them.
    let r = c.post(&call(json!(1), "test_roots", json!({})), None).await;
    let answer: Value = serde_json::from_str(&text(&r.answer()["result"])).expect("roots JSON");
    let uris: Vec<&str> = answer["roots"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 2, "each root once: {answer}");
    assert!(
        uris[0].starts_with("file:///") && uris[0].ends_with("/a"),
        "{answer}"
    );
    assert!(uris[1].ends_with("/b"), "{answer}");
}

/// The attack: `tools/call` sent as a notification (no `id`) to a server that dispatches on
/// `method` alone. In no era and on no transport may it reach the server: it would skip
/// `deny_tools`, `confirm_tools` and the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sent_as_notifications_never_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = Bridge::start(BridgeOpts {
        args: [
            "--deny-tool",
            "echo",
            "--confirm-tool",
            "slow",
            "--audit-log",
            audit.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: vec![("FIXTURE_RUN_NOTIFICATIONS".into(), "1".into())],
        ..Default::default()
    });
    let c = Client::of(&bridge);
    let smuggled = |tool: &str| {
        json!({"jsonrpc": "2.0", "method": "tools/call",
               "params": {"name": tool, "arguments": {"text": "smuggled"}}})
    };
    let escaped_method = r#"{"jsonrpc":"2.0","method":"tools\/call","params":{"name":"echo","arguments":{"text":"smuggled"}}}"#;
    let null_id = json!({"jsonrpc": "2.0", "id": null, "method": "tools/call",
                         "params": {"name": "slow", "arguments": {}}});

    // A 2025 session, and no session at all.
    let sid = c.initialize().await;
    for (body, session) in [
        (smuggled("echo"), Some(sid.as_str())),
        (smuggled("slow"), Some(sid.as_str())),
        (null_id.clone(), Some(sid.as_str())),
        (smuggled("echo"), None),
        (
            json!({"jsonrpc": "2.0", "method": "resources/read",
                "params": {"uri": "test://static-text"}}),
            None,
        ),
    ] {
        let r = c.post(&body, session).await;
        assert_eq!(r.status, 202, "{body}: {r:?}");
    }
    let raw = c
        .request(&json!({}), Some(&sid))
        .body(escaped_method)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 202);
    // The 2026-07-28 shape.
    let r = c.post(&modern(smuggled("echo")), None).await;
    assert!(
        r.status == 202 || r.status == 400,
        "modern notification: {r:?}"
    );

    // The legacy transport.
    let resp = c
        .auth(c.http.get(&c.sse).header("accept", "text/event-stream"))
        .send()
        .await
        .expect("GET /sse");
    let mut sse = SseReader {
        resp,
        buf: String::new(),
    };
    let (event, data) = sse.next().await;
    assert_eq!(event, "endpoint");
    let post_url = reqwest::Url::parse(&c.sse).unwrap().join(&data).unwrap();
    for body in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": "attack", "version": "0"}}}),
        smuggled("echo"),
    ] {
        let r = c
            .auth(
                c.http
                    .post(post_url.clone())
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    // A request after all of them: the server reads its input in order, so once this is
    // answered it has seen (and would have run) everything above.
    let r = c
        .post(&call(json!(9), "test_simple_text", json!({})), Some(&sid))
        .await;
    assert!(r.answer().get("result").is_some(), "{r:?}");
    assert_eq!(bridge.count("call test_simple_text"), 1);
    let ran: Vec<String> = bridge
        .counts()
        .into_iter()
        .filter(|l| l.starts_with("notification ") || l == "call echo" || l == "call slow")
        .collect();
    assert!(ran.is_empty(), "smuggled calls reached the server: {ran:?}");
    wait_log(&bridge, "dropped a client notification").await;
    // The real call was audited; nothing else was (the smuggled ones never ran).
    let lines = audit_wait(&audit, 1).await;
    assert!(
        lines.iter().all(|l| l["tool"] == "test_simple_text"),
        "{lines:?}"
    );
}
