//! The 2026-07-28 ("modern") era and the 2025 resumability rules, end to end: the real
//! `bridge` (and, for the reconnect case, a separate `relay serve`) with the fixture server,
//! spoken to over raw HTTP.
//!
//! * closing a modern request's response stream cancels the call on the server, while a
//!   2025-era client that disconnects leaves its call running;
//! * `--protocol legacy` answers modern requests -32601 (HTTP 200) and still initializes;
//!   without it, `server/discover` mirrors the `initialize` result and a modern `tools/list`
//!   lists the same tools with the caching hints;
//! * `subscriptions/listen` is acknowledged first, carries only what it opted into, tagged
//!   with its subscription id, and unsubscribes on the server when it closes;
//! * log messages reach a modern call only at or above the level it asked for;
//! * input-required results: answers given up front, a `requestState` of another tool,
//!   altered or used twice, and a call needing a capability the client did not declare;
//! * a 2025-11-25 session's stream is primed and resumable with `GET` + `Last-Event-ID`
//!   (only that stream's messages), unknown ids are refused with 400, and a call running
//!   while the relay restarts is answered on resumption after the bridge reconnects.
//!
//! Needs `cargo build --workspace --bins` first.

use std::path::Path;
use std::time::Duration;

use e2e::{Bridge, BridgeOpts, Relay, bin, teed};
use protocol::jsonrpc::{
    INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY,
};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The stateless protocol revision.
const MODERN: &str = "2026-07-28";
/// The newest handshake-era revision (resumable streams).
const V2025_11: &str = "2025-11-25";
/// A handshake-era revision without priming events.
const V2025_06: &str = "2025-06-18";

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// The fixture's resource meant for subscriptions.
const WATCHED: &str = "test://watched-resource";

/// Longest wait for one ordinary exchange.
const HTTP_LIMIT: Duration = Duration::from_secs(15);

// ----- SSE ------------------------------------------------------------------------------

/// One server-sent event (comments dropped).
#[derive(Debug, Default, Clone)]
struct Event {
    id: Option<String>,
    retry: Option<String>,
    data: String,
}

impl Event {
    /// The JSON-RPC message it carries (none for a priming event).
    fn message(&self) -> Option<Value> {
        if self.data.trim().is_empty() {
            return None;
        }
        Some(
            serde_json::from_str(&self.data)
                .unwrap_or_else(|e| panic!("an event whose data is not JSON ({e}): {self:?}")),
        )
    }
}

/// Cuts the next complete event block off `buf`.
fn next_block(buf: &mut Vec<u8>) -> Option<String> {
    let pos = buf.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buf.drain(..pos + 2).collect();
    Some(String::from_utf8_lossy(&block[..pos]).replace('\r', ""))
}

/// Parses an event block; `None` when it holds only comments (keep-alives).
fn parse_block(block: &str) -> Option<Event> {
    let mut ev = Event::default();
    let mut data = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        any = true;
        match field {
            "id" => ev.id = Some(value.to_owned()),
            "retry" => ev.retry = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    ev.data = data.join("\n");
    any.then_some(ev)
}

/// An HTTP response read incrementally.
struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    status: u16,
    content_type: String,
    session: Option<String>,
}

impl Stream {
    fn is_sse(&self) -> bool {
        self.content_type.starts_with("text/event-stream")
    }

    /// The next event, or `None` when the stream ended; panics after `within`.
    async fn next(&mut self, within: Duration, what: &str) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(block) = next_block(&mut self.buf) {
                if let Some(ev) = parse_block(&block) {
                    return Some(ev);
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => panic!("{what}: no event within {within:?}"),
                Ok(Ok(Some(c))) => self.buf.extend_from_slice(&c),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
            }
        }
    }

    /// The next event carrying a message (priming events skipped).
    async fn next_message(&mut self, within: Duration, what: &str) -> Value {
        loop {
            let ev = self
                .next(within, what)
                .await
                .unwrap_or_else(|| panic!("{what}: the stream ended"));
            if let Some(m) = ev.message() {
                return m;
            }
        }
    }

    /// Every event until the end of the stream.
    async fn rest(mut self, within: Duration, what: &str) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(within, what).await {
            out.push(ev);
        }
        out
    }

    /// The whole body as text.
    async fn text(self, what: &str) -> String {
        tokio::time::timeout(HTTP_LIMIT, self.resp.text())
            .await
            .unwrap_or_else(|_| panic!("{what}: no body within {HTTP_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"))
    }

    /// The complete answer.
    async fn reply(self, what: &str) -> Reply {
        let (status, session, sse) = (self.status, self.session.clone(), self.is_sse());
        let events = if sse {
            self.rest(HTTP_LIMIT, what).await
        } else {
            let text = self.text(what).await;
            if text.is_empty() {
                Vec::new()
            } else {
                vec![Event {
                    data: text,
                    ..Event::default()
                }]
            }
        };
        Reply {
            status,
            session,
            sse,
            events,
        }
    }
}

/// A complete HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    session: Option<String>,
    sse: bool,
    events: Vec<Event>,
}

impl Reply {
    fn messages(&self) -> Vec<Value> {
        self.events.iter().filter_map(Event::message).collect()
    }

    /// The response (result or error) among the messages.
    fn answer(&self) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in {self:?}"))
    }

    /// The notifications of `method`.
    fn notifications(&self, method: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["method"] == method)
            .collect()
    }
}

// ----- HTTP client ----------------------------------------------------------------------

type Headers = Vec<(String, String)>;

/// A tunnel's MCP endpoint.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    mcp: String,
    bearer: Option<String>,
}

impl Client {
    fn of(bridge: &Bridge) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .http1_only()
                .tcp_nodelay(true)
                .build()
                .expect("HTTP client"),
            mcp: bridge.mcp_url.clone(),
            bearer: bridge.bearer.clone(),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder, what: &str) -> Stream {
        let rb = match &self.bearer {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let resp = tokio::time::timeout(HTTP_LIMIT, rb.send())
            .await
            .unwrap_or_else(|_| panic!("{what}: no response head within {HTTP_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Stream {
            status: resp.status().as_u16(),
            content_type: header("content-type").unwrap_or_default(),
            session: header("mcp-session-id"),
            buf: Vec::new(),
            resp,
        }
    }

    /// POSTs `body` and returns as soon as the response head is in.
    async fn open(&self, body: &Value, headers: &Headers, what: &str) -> Stream {
        let mut rb = self
            .http
            .post(&self.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        self.send(rb, what).await
    }

    /// POSTs `body` and reads the whole answer.
    async fn post(&self, body: &Value, headers: &Headers, what: &str) -> Reply {
        self.open(body, headers, what).await.reply(what).await
    }

    /// `GET` with `Mcp-Session-Id` and `Last-Event-ID`.
    async fn resume(&self, session: &str, version: &str, last: &str, what: &str) -> Stream {
        let rb = self
            .http
            .get(&self.mcp)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", version)
            .header("last-event-id", last);
        self.send(rb, what).await
    }

    /// Sends a request and gives up on it after `after`, closing the connection (the
    /// request must not have been answered by then).
    async fn abandon(&self, body: &Value, headers: &Headers, after: Duration, what: &str) {
        let attempt = tokio::time::timeout(after, async {
            let s = self.open(body, headers, what).await;
            s.reply(what).await
        })
        .await;
        if let Ok(r) = attempt {
            panic!("{what}: answered before the client gave up: {r:?}");
        }
    }

    /// A 2025-era session: `initialize` and `notifications/initialized`; the session id
    /// and the initialize result.
    async fn initialize(&self, version: &str) -> (String, Value) {
        let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "modern-era-test", "version": "0"}}});
        let r = self.post(&init, &Vec::new(), "initialize").await;
        assert_eq!(r.status, 200, "initialize: {r:?}");
        let session = r.session.clone().expect("initialize answers a session id");
        let answer = r.answer();
        assert_eq!(answer["id"], "init", "{answer}");
        let result = answer["result"].clone();
        assert_eq!(result["protocolVersion"], version, "{answer}");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = self
            .post(&note, &session_headers(&session, version), "initialized")
            .await;
        assert_eq!(r.status, 202, "notifications/initialized: {r:?}");
        (session, result)
    }
}

/// The headers of a request in a 2025-era session.
fn session_headers(session: &str, version: &str) -> Headers {
    vec![
        ("mcp-session-id".into(), session.into()),
        ("mcp-protocol-version".into(), version.into()),
    ]
}

/// A plain JSON-RPC request.
fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A `tools/call` request.
fn tool_call(id: Value, name: &str, args: Value) -> Value {
    request(id, "tools/call", json!({"name": name, "arguments": args}))
}

/// Makes `body` a modern request declaring `caps`, with more `_meta` entries.
fn modern(mut body: Value, caps: Value, more_meta: &[(&str, Value)]) -> Value {
    if !body["params"].is_object() {
        body["params"] = json!({});
    }
    let mut meta = json!({
        META_VERSION: MODERN,
        META_CLIENT_INFO: {"name": "modern-era-test", "version": "0"},
        META_CAPS: caps,
    });
    for (k, v) in more_meta {
        meta[*k] = v.clone();
    }
    body["params"]["_meta"] = meta;
    body
}

/// The headers a modern request mirrors from its body.
fn modern_headers(body: &Value) -> Headers {
    let method = body["method"].as_str().expect("a request");
    let mut h: Headers = vec![
        ("mcp-protocol-version".into(), MODERN.into()),
        ("mcp-method".into(), method.into()),
    ];
    let name = match method {
        "tools/call" | "prompts/get" => body["params"]["name"].as_str(),
        "resources/read" => body["params"]["uri"].as_str(),
        _ => None,
    };
    if let Some(n) = name {
        h.push(("mcp-name".into(), n.into()));
    }
    h
}

/// The text items of a tool result.
fn texts(result: &Value) -> Vec<String> {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|i| i["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `cond` every 25 ms until it holds; panics with `what()` after `within`.
async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

// ----- 1. closing a modern request's stream cancels it ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_modern_stream_cancels_the_call_but_a_2025_disconnect_does_not() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = Client::of(&bridge);

    // A 2025-era call whose client disconnects runs on (the 2025 rules).
    const KEPT_MS: u64 = 2500;
    let (session, _) = c.initialize(V2025_06).await;
    let legacy = tool_call(json!(2), "slow", json!({"ms": KEPT_MS, "tag": "kept"}));
    let started = Instant::now();
    c.abandon(
        &legacy,
        &session_headers(&session, V2025_06),
        Duration::from_millis(300),
        "2025-era slow call",
    )
    .await;

    // A modern call whose client goes away is cancelled on the server.
    let body = modern(
        tool_call(json!("m-1"), "slow", json!({"ms": 60000, "tag": "t"})),
        json!({}),
        &[],
    );
    c.abandon(
        &body,
        &modern_headers(&body),
        Duration::from_millis(300),
        "modern slow call",
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        || bridge.count("cancelled t") == 1,
        || {
            format!(
                "the modern call was not cancelled on the server; counts: {:?}; log:\n{}",
                bridge.counts(),
                tail(&bridge.proc.log_text())
            )
        },
    )
    .await;

    // The 2025-era call outlived its client and the modern call's cancellation: it ran to
    // its end without being cancelled.
    tokio::time::sleep_until(started + Duration::from_millis(KEPT_MS + 1500)).await;
    assert_eq!(
        bridge.count("cancelled kept"),
        0,
        "the 2025-era call was cancelled when its client disconnected: {:?}",
        bridge.counts()
    );
    assert_eq!(bridge.count("call slow"), 2, "{:?}", bridge.counts());
    assert_eq!(bridge.count("cancelled t"), 1, "{:?}", bridge.counts());
}

// ----- 2. --protocol legacy, server/discover, modern tools/list ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_legacy_refuses_modern_requests_and_discover_mirrors_initialize() {
    // --protocol legacy: modern requests are unknown methods, initialize works.
    let legacy = Bridge::start(BridgeOpts {
        args: vec!["--protocol".into(), "legacy".into()],
        ..BridgeOpts::default()
    });
    let c = Client::of(&legacy);
    for (id, method) in [(json!("d-1"), "server/discover"), (json!(7), "tools/list")] {
        let body = modern(request(id.clone(), method, json!({})), json!({}), &[]);
        let r = c.post(&body, &modern_headers(&body), method).await;
        assert_eq!(r.status, 200, "{method} with --protocol legacy: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], id, "{method}: {a}");
        assert_eq!(a["error"]["code"], METHOD_NOT_FOUND, "{method}: {a}");
        assert!(a.get("result").is_none(), "{method}: {a}");
    }
    let (_, init) = c.initialize(V2025_11).await;
    assert_eq!(init["serverInfo"]["name"], "mcp-fixture", "{init}");
    drop(legacy);

    // Without the flag: server/discover answers what initialize answers. The fixture runs
    // behind a `tee` of its standard input, to see what the bridge writes to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let stdin_log = dir.path().join("stdin.jsonl");
    let bridge = Bridge::start(BridgeOpts {
        command: teed(&stdin_log, &[bin("mcp-fixture").display().to_string()]),
        ..BridgeOpts::default()
    });
    let c = Client::of(&bridge);
    let (session, init) = c.initialize(V2025_11).await;

    // A bare server/discover (no envelope, no 2026-07-28 header, as a connector's first
    // probe may be) is not a 2026-07-28 request: what a 2025-era server answers to an
    // unknown method, HTTP 200 and -32601, with or without a session.
    let bare = request(json!("openai-mcp-discover"), "server/discover", json!({}));
    for (headers, what) in [
        (Headers::new(), "bare server/discover"),
        (
            session_headers(&session, V2025_11),
            "bare server/discover in a session",
        ),
    ] {
        let r = c.post(&bare, &headers, what).await;
        assert_eq!(r.status, 200, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], "openai-mcp-discover", "{what}: {a}");
        assert_eq!(a["error"]["code"], METHOD_NOT_FOUND, "{what}: {a}");
    }
    let body = modern(
        request(json!("d-2"), "server/discover", json!({})),
        json!({}),
        &[],
    );
    let r = c
        .post(&body, &modern_headers(&body), "server/discover")
        .await;
    assert_eq!(r.status, 200, "server/discover: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], "d-2", "{a}");
    let d = &a["result"];
    // Every revision the URL serves, newest first (as dual-era servers list them).
    assert_eq!(
        d["supportedVersions"],
        json!([
            MODERN,
            "2025-11-25",
            "2025-06-18",
            "2025-03-26",
            "2024-11-05"
        ]),
        "{a}"
    );
    assert_eq!(d["resultType"], "complete", "{a}");
    assert!(init["capabilities"].is_object(), "{init}");
    assert_eq!(
        d["capabilities"], init["capabilities"],
        "discover: {a}; init: {init}"
    );
    assert_eq!(
        d.get("instructions"),
        init.get("instructions"),
        "discover: {a}; init: {init}"
    );
    assert!(init["serverInfo"].is_object(), "{init}");
    assert_eq!(
        d["_meta"][META_SERVER_INFO], init["serverInfo"],
        "discover: {a}; init: {init}"
    );

    // A modern tools/list lists what the session's tools/list does, with caching hints.
    let list = request(json!(3), "tools/list", json!({}));
    let r = c
        .post(
            &list,
            &session_headers(&session, V2025_11),
            "2025 tools/list",
        )
        .await;
    assert_eq!(r.status, 200, "2025 tools/list: {r:?}");
    let old = r.answer()["result"].clone();
    assert!(
        old["tools"].as_array().is_some_and(|t| t.len() > 5),
        "2025 tools/list: {old}"
    );
    let body = modern(request(json!(4), "tools/list", json!({})), json!({}), &[]);
    let r = c
        .post(&body, &modern_headers(&body), "modern tools/list")
        .await;
    assert_eq!(r.status, 200, "modern tools/list: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 4, "{a}");
    let new = &a["result"];
    assert_eq!(new["tools"], old["tools"], "modern tools/list differs: {a}");
    assert_eq!(new["resultType"], "complete", "{a}");
    assert!(new["ttlMs"].as_u64().is_some(), "ttlMs: {a}");
    assert!(
        matches!(new["cacheScope"].as_str(), Some("private" | "public")),
        "cacheScope: {a}"
    );
    assert!(
        old.get("resultType").is_none(),
        "2025 answer changed: {old}"
    );

    // The server was opened with initialize: it got the modern tools/list without the
    // envelope, and no server/discover at all.
    let written = written_to_server(&stdin_log);
    let lists: Vec<&Value> = written
        .iter()
        .filter(|m| m["method"] == "tools/list")
        .collect();
    // (the session's, the modern one, and the bridge's own for its offline snapshot)
    assert!(lists.len() >= 2, "{:?}", requests_to_server(&stdin_log));
    for m in &lists {
        let meta = m["params"]["_meta"].as_object();
        assert!(
            meta.is_none_or(|meta| !meta
                .keys()
                .any(|k| k.starts_with("io.modelcontextprotocol/"))),
            "the envelope reached the server: {m}"
        );
    }
    assert!(
        !written.iter().any(|m| m["method"] == "server/discover"),
        "{:?}",
        requests_to_server(&stdin_log)
    );
}

// ----- 3. subscriptions/listen ---------------------------------------------------------------

/// The JSON-RPC messages the bridge wrote to the server (recorded by `tee`).
fn written_to_server(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `method uri` of each request the bridge wrote to the server, for failure messages.
fn requests_to_server(path: &Path) -> Vec<String> {
    written_to_server(path)
        .iter()
        .filter_map(|m| {
            let method = m["method"].as_str()?;
            Some(match m["params"]["uri"].as_str() {
                Some(uri) => format!("{method} {uri}"),
                None => method.to_owned(),
            })
        })
        .collect()
}

/// How many `method` requests for `uri` the bridge wrote to the server.
fn wrote(path: &Path, method: &str, uri: &str) -> usize {
    written_to_server(path)
        .iter()
        .filter(|m| m["method"] == method && m["params"]["uri"] == uri)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_carries_what_it_opted_into_and_unsubscribes_on_close() {
    // The fixture behind a `tee` of its standard input, to see the bridge's requests.
    let dir = tempfile::tempdir().expect("tempdir");
    let stdin_log = dir.path().join("stdin.jsonl");
    let bridge = Bridge::start(BridgeOpts {
        command: teed(&stdin_log, &[bin("mcp-fixture").display().to_string()]),
        ..BridgeOpts::default()
    });
    let c = Client::of(&bridge);

    let body = modern(
        request(
            json!("listen-7"),
            "subscriptions/listen",
            json!({"notifications": {
                "resourceSubscriptions": [WATCHED],
                "toolsListChanged": true,
            }}),
        ),
        json!({}),
        &[],
    );
    let mut listen = c.open(&body, &modern_headers(&body), "listen").await;
    assert_eq!(listen.status, 200, "listen status");
    assert!(listen.is_sse(), "listen: {}", listen.content_type);
    let ack = listen.next_message(HTTP_LIMIT, "listen ack").await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert!(
        ack.get("id").is_none(),
        "the acknowledgement is a notification: {ack}"
    );
    assert_eq!(
        ack["params"]["_meta"][META_SUBSCRIPTION], "listen-7",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["toolsListChanged"], true,
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!([WATCHED]),
        "{ack}"
    );
    wait_until(
        Duration::from_secs(5),
        || wrote(&stdin_log, "resources/subscribe", WATCHED) == 1,
        || {
            format!(
                "no resources/subscribe reached the server: {:?}",
                requests_to_server(&stdin_log)
            )
        },
    )
    .await;

    // Changes, in this order: a prompt list change (not asked for), an update of another
    // resource (not subscribed), the watched resource, the tool list.
    let calls = [
        ("test_trigger_prompt_change", json!({})),
        ("touch_resource", json!({"uri": "test://static-text"})),
        ("touch_resource", json!({"uri": WATCHED})),
        ("trigger_list_changed", json!({})),
    ];
    for (i, (tool, args)) in calls.into_iter().enumerate() {
        let body = modern(tool_call(json!(100 + i), tool, args), json!({}), &[]);
        let r = c.post(&body, &modern_headers(&body), tool).await;
        assert_eq!(r.status, 200, "{tool}: {r:?}");
        assert!(r.answer().get("result").is_some(), "{tool}: {r:?}");
    }

    // The server's notifications come in order: once the tool list change is in, anything
    // delivered for the earlier changes is in too.
    let mut got = Vec::new();
    loop {
        let m = listen
            .next_message(HTTP_LIMIT, "listen notifications")
            .await;
        let done = m["method"] == "notifications/tools/list_changed";
        got.push(m);
        if done {
            break;
        }
    }
    let methods: Vec<&str> = got
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/resources/updated",
            "notifications/tools/list_changed"
        ],
        "{got:?}"
    );
    assert_eq!(got[0]["params"]["uri"], WATCHED, "{got:?}");
    for m in &got {
        assert_eq!(m["params"]["_meta"][META_SUBSCRIPTION], "listen-7", "{m}");
    }

    // Closing the stream unsubscribes on the server.
    assert_eq!(wrote(&stdin_log, "resources/unsubscribe", WATCHED), 0);
    drop(listen);
    wait_until(
        Duration::from_secs(5),
        || wrote(&stdin_log, "resources/unsubscribe", WATCHED) == 1,
        || {
            format!(
                "closing the listen stream did not unsubscribe: {:?}",
                requests_to_server(&stdin_log)
            )
        },
    )
    .await;
    assert_eq!(wrote(&stdin_log, "resources/subscribe", WATCHED), 1);
}

// ----- 4. log level of modern requests --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_calls_get_log_messages_only_at_the_level_they_asked() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = Client::of(&bridge);
    let cases: [(Option<&str>, &[&str]); 3] = [
        (Some("info"), &["info", "warning"]),
        (Some("warning"), &["warning"]),
        (None, &[]),
    ];
    for (i, (level, want)) in cases.into_iter().enumerate() {
        let meta: Vec<(&str, Value)> = level
            .map(|l| vec![(META_LOG_LEVEL, json!(l))])
            .unwrap_or_default();
        let body = modern(
            tool_call(json!(i + 1), "test_logging_tool", json!({})),
            json!({}),
            &meta,
        );
        let what = format!("logLevel {level:?}");
        let r = c.post(&body, &modern_headers(&body), &what).await;
        assert_eq!(r.status, 200, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], i + 1, "{what}: {a}");
        assert_eq!(a["result"]["resultType"], "complete", "{what}: {a}");
        assert_eq!(
            texts(&a["result"]),
            ["Logging tool sent 3 log messages"],
            "{what}: {a}"
        );
        let levels: Vec<String> = r
            .notifications("notifications/message")
            .iter()
            .map(|m| m["params"]["level"].as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(levels, want, "{what}: {r:?}");
        if !want.is_empty() {
            assert!(r.sse, "{what}: log messages need a stream: {r:?}");
        }
    }
    assert_eq!(
        bridge.count("call test_logging_tool"),
        3,
        "{:?}",
        bridge.counts()
    );
}

// ----- 5. input-required results ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_results_and_their_request_state() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = Client::of(&bridge);
    let caps = json!({"elicitation": {}});
    const ASKS_NAME: &str = "test_input_required_result_elicitation";
    let accept = |name: &str| json!({"action": "accept", "content": {"name": name}});

    // Answers given up front answer the server's request as it comes.
    let mut body = modern(
        tool_call(json!("pre"), ASKS_NAME, json!({})),
        caps.clone(),
        &[],
    );
    body["params"]["inputResponses"] = json!({"user_name": accept("Ann")});
    let r = c.post(&body, &modern_headers(&body), "pre-supplied").await;
    assert_eq!(r.status, 200, "pre-supplied: {r:?}");
    let a = r.answer();
    assert_eq!(a["result"]["resultType"], "complete", "pre-supplied: {a}");
    assert!(texts(&a["result"]).iter().any(|t| t.contains("Ann")), "{a}");

    // Without them: an InputRequiredResult.
    let body = modern(tool_call(json!(1), ASKS_NAME, json!({})), caps.clone(), &[]);
    let r = c.post(&body, &modern_headers(&body), "first round").await;
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
        let mut body = modern(tool_call(id, tool, json!({})), caps.clone(), &[]);
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
    let r = c.post(&body, &modern_headers(&body), "another tool").await;
    refused(&r, json!(2), "requestState used for another tool");
    let body = retry(json!(3), ASKS_NAME, &format!("{state}0"));
    let r = c.post(&body, &modern_headers(&body), "altered").await;
    refused(&r, json!(3), "altered requestState");

    // The right retry completes the suspended call.
    let body = retry(json!(4), ASKS_NAME, &state);
    let r = c.post(&body, &modern_headers(&body), "retry").await;
    assert_eq!(r.status, 200, "retry: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 4, "{a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");
    assert!(texts(&a["result"]).iter().any(|t| t.contains("Zed")), "{a}");

    // Single use, once the call has ended.
    let body = retry(json!(5), ASKS_NAME, &state);
    let r = c.post(&body, &modern_headers(&body), "reused").await;
    refused(&r, json!(5), "requestState used twice");

    // Single use while the call goes on: two rounds, the first state replayed in the
    // second.
    const TWO_ROUNDS: &str = "test_input_required_result_multi_round";
    let round = |id: Value, state: Option<&str>, key: &str, answer: Value| {
        let mut body = modern(tool_call(id, TWO_ROUNDS, json!({})), caps.clone(), &[]);
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
    let r = c.post(&body, &modern_headers(&body), "round 0").await;
    let first = asked(&r, "step1", "round 0");
    let step1 = json!({"name": "Ann"});
    let body = round(json!(11), Some(&first), "step1", step1.clone());
    let r = c.post(&body, &modern_headers(&body), "round 1").await;
    let second = asked(&r, "step2", "round 1");
    assert_ne!(first, second, "each round has its own requestState");
    let body = round(json!(12), Some(&first), "step1", step1);
    let r = c.post(&body, &modern_headers(&body), "round 1 again").await;
    refused(&r, json!(12), "the first round's requestState used again");
    let body = round(json!(13), Some(&second), "step2", json!({"color": "blue"}));
    let r = c.post(&body, &modern_headers(&body), "round 2").await;
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
    let c = Client::of(&bridge);
    let body = modern(
        tool_call(json!("mc"), "test_missing_capability", json!({})),
        json!({}),
        &[],
    );
    let r = c
        .post(&body, &modern_headers(&body), "missing capability")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let a = r.answer();
    assert_eq!(a["id"], "mc", "{a}");
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

// ----- 6. resumable 2025-11-25 streams ------------------------------------------------------------

/// The stream part of an event id `<stream>.<seq>`.
fn stream_of(id: &str) -> &str {
    id.rsplit_once('.').map(|(s, _)| s).unwrap_or("")
}

/// Opens a `test_tool_with_progress` call and reads its priming event and first progress
/// notification; returns the priming id, the first progress id and the open stream.
async fn progress_call(
    c: &Client,
    session: &str,
    id: &str,
    token: &str,
) -> (String, String, Stream) {
    let mut body = tool_call(json!(id), "test_tool_with_progress", json!({}));
    body["params"]["_meta"] = json!({"progressToken": token});
    let mut s = c.open(&body, &session_headers(session, V2025_11), id).await;
    assert_eq!(s.status, 200, "{id}");
    assert!(s.is_sse(), "{id}: {}", s.content_type);
    let priming = s.next(HTTP_LIMIT, id).await.expect("a priming event");
    assert!(
        priming.retry.is_some(),
        "{id}: priming event without retry: {priming:?}"
    );
    assert!(
        priming.data.is_empty(),
        "{id}: priming event with data: {priming:?}"
    );
    let primed = priming.id.clone().expect("the priming event has an id");
    assert!(primed.ends_with(".0"), "{id}: priming id {primed}");
    let first = s.next(HTTP_LIMIT, id).await.expect("a progress event");
    let m = first.message().expect("a message");
    assert_eq!(m["method"], "notifications/progress", "{id}: {m}");
    assert_eq!(m["params"]["progressToken"], token, "{id}: {m}");
    assert_eq!(m["params"]["progress"], 0, "{id}: {m}");
    let first_id = first.id.clone().expect("the progress event has an id");
    assert_eq!(first_id, format!("{}.1", stream_of(&primed)), "{id}");
    (primed, first_id, s)
}

/// Asserts `events` are the progress notifications `progress` of `token` then the answer
/// to `id`, numbered on from `after` in its stream.
fn assert_rest(events: &[Event], after: &str, id: &str, token: &str, progress: &[u64]) {
    let (stream, seq) = after.rsplit_once('.').expect("an event id");
    let seq: u32 = seq.parse().expect("a sequence number");
    assert_eq!(
        events.len(),
        progress.len() + 1,
        "{id} after {after}: {events:?}"
    );
    for (i, ev) in events.iter().enumerate() {
        let want = format!("{stream}.{}", seq + 1 + i as u32);
        assert_eq!(ev.id.as_deref(), Some(want.as_str()), "{id}: {events:?}");
        let m = ev.message().expect("a message");
        if i < progress.len() {
            assert_eq!(m["method"], "notifications/progress", "{id}: {m}");
            assert_eq!(m["params"]["progressToken"], token, "{id}: {m}");
            assert_eq!(m["params"]["progress"], progress[i], "{id}: {m}");
        } else {
            assert_eq!(m["id"], id, "{id}: {m}");
            // (Its text is the progress token the server saw: the bridge's own.)
            assert_eq!(texts(&m["result"]).len(), 1, "{id}: {m}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_streams_resume_with_last_event_id() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = Client::of(&bridge);
    let (session, _) = c.initialize(V2025_11).await;

    // Two calls at once in the session; each client drops its stream after the first
    // progress notification.
    let ((a_primed, a_first, a), (b_primed, _, b)) = tokio::join!(
        progress_call(&c, &session, "a", "tok-a"),
        progress_call(&c, &session, "b", "tok-b"),
    );
    assert_ne!(
        stream_of(&a_primed),
        stream_of(&b_primed),
        "one stream per POST"
    );
    drop(a);
    drop(b);

    // Resuming after A's first progress: the rest of A's stream, nothing of B's.
    let s = c.resume(&session, V2025_11, &a_first, "resume a").await;
    assert_eq!(s.status, 200, "resume a");
    let events = s.rest(HTTP_LIMIT, "resume a").await;
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| e.message().is_some())
        .collect();
    assert_rest(&events, &a_first, "a", "tok-a", &[50, 100]);

    // Resuming from B's priming event: all of B's stream, nothing of A's.
    let s = c.resume(&session, V2025_11, &b_primed, "resume b").await;
    assert_eq!(s.status, 200, "resume b");
    let events = s.rest(HTTP_LIMIT, "resume b").await;
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| e.message().is_some())
        .collect();
    assert_rest(&events, &b_primed, "b", "tok-b", &[0, 50, 100]);
    assert_eq!(bridge.count("call test_tool_with_progress"), 2);

    // Ids that name no stream of this session: 400, never 404 (which would make the
    // client start a new session).
    let (other, _) = c.initialize(V2025_11).await;
    let a_stream = u64::from_str_radix(stream_of(&a_first), 16).expect("hex stream");
    let unknown = format!("{:x}.1", a_stream ^ 0x5a5a_0000_0000);
    let cases = [
        (
            session.as_str(),
            "not-an-event-id".to_owned(),
            "malformed id",
        ),
        (session.as_str(), unknown, "unknown stream"),
        (other.as_str(), a_first.clone(), "another session's stream"),
    ];
    for (sid, last, what) in cases {
        let s = c.resume(sid, V2025_11, &last, what).await;
        let status = s.status;
        let text = s.text(what).await;
        assert_eq!(status, 400, "{what} ({last}): {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
        assert_eq!(v["error"]["code"], INVALID_REQUEST, "{what}: {v}");
    }
}

/// Whether the relay reports the tunnel's bridge connected.
async fn connected(http: &reqwest::Client, status_url: &str, bearer: Option<&str>) -> bool {
    let mut rb = http.get(status_url).timeout(Duration::from_secs(2));
    if let Some(t) = bearer {
        rb = rb.bearer_auth(t);
    }
    let Ok(resp) = rb.send().await else {
        return false;
    };
    if !resp.status().is_success() {
        return false;
    }
    resp.json::<Value>()
        .await
        .is_ok_and(|v| v["connected"] == json!(true))
}

async fn wait_connected(c: &Client, within: Duration, what: &str) {
    let url = c.mcp.strip_suffix("/mcp").expect("…/<name>/mcp");
    let (base, name) = url.rsplit_once('/').expect("…/<name>");
    let status_url = format!("{base}/status/{name}");
    let deadline = Instant::now() + within;
    while !connected(&c.http, &status_url, c.bearer.as_deref()).await {
        assert!(
            Instant::now() < deadline,
            "{what}: the bridge is not connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_relay_restart_and_is_answered_on_resumption() {
    let relay = Relay::start(&[]);
    let addr = relay
        .base
        .strip_prefix("http://")
        .expect("an http relay")
        .trim_end_matches('/')
        .to_owned();
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        ..BridgeOpts::default()
    });
    let c = Client::of(&bridge);
    wait_connected(&c, Duration::from_secs(10), "start").await;
    let (session, _) = c.initialize(V2025_11).await;

    // A silent call: the relay opens its stream (primed) after a second.
    let body = tool_call(json!(9), "slow", json!({"ms": 4000, "tag": "r"}));
    let mut s = c
        .open(&body, &session_headers(&session, V2025_11), "slow call")
        .await;
    assert_eq!(s.status, 200, "slow call");
    assert!(s.is_sse(), "slow call: {}", s.content_type);
    let priming = s
        .next(HTTP_LIMIT, "priming")
        .await
        .expect("a priming event");
    assert!(
        priming.retry.is_some() && priming.data.is_empty(),
        "{priming:?}"
    );
    let primed = priming.id.expect("the priming event has an id");
    assert!(primed.ends_with(".0"), "{primed}");

    // The relay restarts on the same address while the call runs.
    drop(relay);
    let relay = Relay::start_on(&addr, &[]);
    wait_connected(&c, Duration::from_secs(15), "after the relay restart").await;
    drop(s);

    let s = c.resume(&session, V2025_11, &primed, "resume").await;
    if s.status != 200 {
        let status = s.status;
        panic!(
            "resuming {primed} after the relay restart: {status} {}; bridge log:\n{}",
            s.text("resume").await,
            tail(&bridge.proc.log_text())
        );
    }
    let events = s.rest(HTTP_LIMIT, "resume").await;
    let messages: Vec<(Option<String>, Value)> = events
        .iter()
        .filter_map(|e| e.message().map(|m| (e.id.clone(), m)))
        .collect();
    assert_eq!(
        messages.len(),
        1,
        "{messages:?}; relay log:\n{}\nbridge log:\n{}",
        tail(&relay.proc.log_text()),
        tail(&bridge.proc.log_text())
    );
    let (id, m) = &messages[0];
    assert_eq!(m["id"], 9, "{m}");
    assert_eq!(texts(&m["result"]), ["done r"], "{m}");
    assert_eq!(
        id.as_deref(),
        Some(format!("{}.1", stream_of(&primed)).as_str()),
        "{m}"
    );
    assert_eq!(bridge.count("call slow"), 1, "{:?}", bridge.counts());
    assert_eq!(bridge.count("cancelled r"), 0, "{:?}", bridge.counts());
}
