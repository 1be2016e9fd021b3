//! An MCP client over HTTP for the tests: JSON-RPC messages of both protocol eras (the
//! handshake revisions with `initialize` and `Mcp-Session-Id`, and the stateless
//! 2026-07-28 revision with its `_meta` envelope and mirrored headers), POSTed to a
//! tunnel's MCP endpoint and read whole ([`Reply`]) or event by event ([`Stream`]).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::Bridge;
use crate::sse::{Event, next_block, parse_block};

/// Both media types a Streamable HTTP client must accept.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// The stateless protocol revision.
pub const STATELESS: &str = "2026-07-28";
/// The newest handshake revision (resumable streams).
pub const HANDSHAKE: &str = "2025-11-25";
/// A handshake revision without priming events.
pub const HANDSHAKE_2025_06: &str = "2025-06-18";
/// `_meta` key of a stateless request's protocol version.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of a stateless request's client identity.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of a stateless request's client capabilities.
pub const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the log level a stateless request asks for.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the server identity in a discover result.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of a `subscriptions/listen` stream's subscription id.
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// How long one ordinary exchange may take by default.
const LIMIT: Duration = Duration::from_secs(15);

/// Headers of one request, in order (a name may repeat).
pub type Headers = Vec<(String, String)>;

/// No extra headers.
pub fn no_headers() -> Headers {
    Vec::new()
}

/// A JSON-RPC request.
pub fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A JSON-RPC notification without params.
pub fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

/// A `tools/call` request.
pub fn tool_call(id: Value, name: &str, args: Value) -> Value {
    request(id, "tools/call", json!({"name": name, "arguments": args}))
}

/// An `initialize` request of a handshake revision, by `client` (its `clientInfo` name).
pub fn initialize(id: Value, version: &str, caps: Value, client: &str) -> Value {
    request(
        id,
        "initialize",
        json!({"protocolVersion": version, "capabilities": caps,
               "clientInfo": {"name": client, "version": "0"}}),
    )
}

/// Makes `body` a stateless request declaring `caps`, with more `_meta` entries.
pub fn stateless(mut body: Value, caps: Value, more_meta: &[(&str, Value)]) -> Value {
    if !body["params"].is_object() {
        body["params"] = json!({});
    }
    let mut meta = json!({
        META_VERSION: STATELESS,
        META_CLIENT_INFO: {"name": "e2e-test", "version": "0"},
        META_CAPS: caps,
    });
    for (k, v) in more_meta {
        meta[*k] = v.clone();
    }
    body["params"]["_meta"] = meta;
    body
}

/// The headers a stateless request mirrors from its body: the protocol version, the method,
/// and the tool or prompt name or the resource URI.
pub fn stateless_headers(body: &Value) -> Headers {
    let method = body["method"].as_str().expect("a request");
    let mut h: Headers = vec![
        ("mcp-protocol-version".into(), STATELESS.into()),
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

/// The headers of a request in a handshake-era session.
pub fn session_headers(session: &str, version: &str) -> Headers {
    vec![
        ("mcp-session-id".into(), session.into()),
        ("mcp-protocol-version".into(), version.into()),
    ]
}

/// The text items of a tool result.
pub fn texts(result: &Value) -> Vec<String> {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|i| i["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The text of the first content item of a tool result response; panics when there is
/// none.
pub fn first_text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {response}"))
        .to_owned()
}

/// A tunnel's MCP endpoint and the bearer token its clients send.
#[derive(Clone)]
pub struct McpClient {
    /// The client requests are built with.
    pub http: reqwest::Client,
    /// `…/<name>/mcp`.
    pub url: String,
    /// The bearer token sent with every request, if any.
    pub bearer: Option<String>,
    limit: Duration,
}

impl McpClient {
    /// A client of `url` sending `bearer`.
    pub fn new(url: &str, bearer: Option<&str>) -> Self {
        Self {
            http: crate::http::client_with(Duration::from_secs(600)),
            url: url.to_owned(),
            bearer: bearer.map(str::to_owned),
            limit: LIMIT,
        }
    }

    /// A client of `url` sending `bearer` through `http` (a client with its own TLS roots,
    /// say).
    pub fn with_http(http: reqwest::Client, url: &str, bearer: Option<&str>) -> Self {
        Self {
            http,
            ..Self::new(url, bearer)
        }
    }

    /// A client of the tunnel a bridge printed.
    pub fn of(bridge: &Bridge) -> Self {
        Self::new(&bridge.mcp_url, bridge.bearer.as_deref())
    }

    /// How long an exchange may take before the test fails (15 s unless changed).
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The tunnel's base URL (`…/<name>`).
    pub fn tunnel(&self) -> &str {
        self.url
            .strip_suffix("/mcp")
            .expect("an MCP URL ends in /mcp")
    }

    /// The relay's base URL (`scheme://host:port`).
    pub fn relay(&self) -> &str {
        let t = self.tunnel();
        &t[..t.rfind('/').expect("a tunnel URL has a path")]
    }

    /// The tunnel's name.
    pub fn name(&self) -> &str {
        let t = self.tunnel();
        &t[t.rfind('/').expect("a tunnel URL has a path") + 1..]
    }

    /// `rb` with the bearer token (if any).
    pub fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bearer {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// A JSON POST of `body` to the MCP endpoint accepting both answer types, with the
    /// bearer token and `headers`.
    pub fn post_builder(&self, body: &Value, headers: &Headers) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
            .body(body.to_string());
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        self.authed(rb)
    }

    /// Sends `rb`; the response head as a [`Stream`], or the transport error or timeout.
    pub async fn try_send(&self, rb: reqwest::RequestBuilder) -> Result<Stream, String> {
        let resp = tokio::time::timeout(self.limit, rb.send())
            .await
            .map_err(|_| format!("no response head within {:?} (hang)", self.limit))?
            .map_err(|e| format!("transport: {e:?}"))?;
        Ok(Stream::new(resp, self.limit))
    }

    /// [`McpClient::try_send`], panicking (naming `what`) on failure.
    pub async fn send(&self, rb: reqwest::RequestBuilder, what: &str) -> Stream {
        self.try_send(rb)
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}"))
    }

    /// POSTs `body` and returns as soon as the response head is in.
    pub async fn open(&self, body: &Value, headers: &Headers, what: &str) -> Stream {
        self.send(self.post_builder(body, headers), what).await
    }

    /// POSTs `body` and reads the whole answer.
    pub async fn post(&self, body: &Value, headers: &Headers, what: &str) -> Reply {
        self.open(body, headers, what).await.reply(what).await
    }

    /// POSTs `body` and reads the whole answer; a transport error or a hang past the limit
    /// is an error.
    pub async fn try_post(&self, body: &Value, headers: &Headers) -> Result<Reply, String> {
        self.try_send(self.post_builder(body, headers))
            .await?
            .try_reply()
            .await
    }

    /// POSTs a stateless request (`body` with its `_meta` envelope) with the headers it
    /// mirrors; the whole answer.
    pub async fn post_stateless(&self, body: &Value, what: &str) -> Reply {
        self.post(body, &stateless_headers(body), what).await
    }

    /// POSTs `request` as a stateless request without client capabilities, which must be
    /// answered with HTTP `status`: the JSON-RPC answer, whose id is checked.
    pub async fn stateless_answer(&self, request: Value, status: u16, what: &str) -> Value {
        let body = stateless(request, json!({}), &[]);
        let r = self.post_stateless(&body, what).await;
        assert_eq!(r.status, status, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], body["id"], "{what}: {a}");
        a
    }

    /// `GET` with `Mcp-Session-Id` and `Last-Event-ID`.
    pub async fn resume(&self, session: &str, version: &str, last: &str, what: &str) -> Stream {
        let rb = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", version)
            .header("last-event-id", last);
        self.send(self.authed(rb), what).await
    }

    /// `DELETE` of a session; the status (0 when the request failed).
    pub async fn delete(&self, session: &str, version: &str) -> u16 {
        let rb = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", version)
            .timeout(Duration::from_secs(10));
        self.authed(rb)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Sends a request and gives up on it after `after`, closing the connection (the
    /// request must not have been answered by then).
    pub async fn abandon(&self, body: &Value, headers: &Headers, after: Duration, what: &str) {
        let attempt = tokio::time::timeout(after, async {
            let s = self.open(body, headers, what).await;
            s.reply(what).await
        })
        .await;
        if let Ok(r) = attempt {
            panic!("{what}: answered before the client gave up: {r:?}");
        }
    }

    /// A handshake-era session declaring `caps`: `initialize` and
    /// `notifications/initialized`; the session id and the initialize result.
    pub async fn initialize_with(&self, version: &str, caps: Value) -> (String, Value) {
        let r = self
            .post(
                &initialize(json!("init"), version, caps, "e2e-test"),
                &no_headers(),
                "initialize",
            )
            .await;
        assert_eq!(r.status, 200, "initialize: {r:?}");
        let session = r.session.clone().expect("initialize answers a session id");
        let answer = r.answer();
        assert_eq!(answer["id"], "init", "{answer}");
        let result = answer["result"].clone();
        assert_eq!(result["protocolVersion"], version, "{answer}");
        let r = self
            .post(
                &notification("notifications/initialized"),
                &session_headers(&session, version),
                "initialized",
            )
            .await;
        assert_eq!(r.status, 202, "notifications/initialized: {r:?}");
        (session, result)
    }

    /// [`McpClient::initialize_with`] without client capabilities.
    pub async fn initialize(&self, version: &str) -> (String, Value) {
        self.initialize_with(version, json!({})).await
    }

    /// A new handshake-era session on this endpoint.
    pub async fn session(&self, version: &str) -> Session {
        self.session_with(version, json!({})).await
    }

    /// A new handshake-era session on this endpoint, declaring `caps`.
    pub async fn session_with(&self, version: &str, caps: Value) -> Session {
        let (id, _) = self.initialize_with(version, caps).await;
        Session {
            client: self.clone(),
            id,
            version: version.to_owned(),
        }
    }
}

impl McpClient {
    /// `GET <relay>/status/<name>` (with the bearer token), when the relay knows the
    /// tunnel and answers 2xx within 3 s.
    pub async fn status(&self) -> Option<Value> {
        self.get_json(&format!("{}/status/{}", self.relay(), self.name()))
            .await
    }

    /// `GET <relay>/healthz`, when it answers 2xx within 3 s.
    pub async fn health(&self) -> Option<Value> {
        self.get_json(&format!("{}/healthz", self.relay())).await
    }

    async fn get_json(&self, url: &str) -> Option<Value> {
        let rb = self.http.get(url).timeout(Duration::from_secs(3));
        let resp = self.authed(rb).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Whether the relay reports the tunnel's bridge connected.
    pub async fn connected(&self) -> bool {
        self.status()
            .await
            .is_some_and(|s| s["connected"] == json!(true))
    }

    /// Waits until the relay reports the bridge connected (`want`) or not; how long it
    /// took. Panics, naming `what`, after `within`.
    pub async fn wait_connected(&self, want: bool, within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.connected().await == want {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: the relay did not report connected={want} within {within:?}");
    }
}

/// A session of the older HTTP+SSE transport: the `GET /sse` stream and the `/messages`
/// URL its `endpoint` event named.
pub struct HttpSse {
    client: McpClient,
    stream: Stream,
    /// Where requests are POSTed.
    pub post_url: String,
}

impl HttpSse {
    /// Opens `sse_url` (with `client`'s bearer token) and reads the `endpoint` event.
    pub async fn open(client: &McpClient, sse_url: &str) -> Self {
        let rb = client
            .http
            .get(sse_url)
            .header("accept", "text/event-stream");
        let mut stream = client.send(client.authed(rb), "GET /sse").await;
        assert_eq!(stream.status, 200, "GET {sse_url}");
        let endpoint = stream
            .next(client.limit, "the endpoint event")
            .await
            .expect("an endpoint event");
        assert_eq!(endpoint.event.as_deref(), Some("endpoint"), "{endpoint:?}");
        let post_url = reqwest::Url::parse(sse_url)
            .and_then(|u| u.join(&endpoint.data))
            .expect("the endpoint URL")
            .to_string();
        Self {
            client: client.clone(),
            stream,
            post_url,
        }
    }

    /// POSTs `body` to the session's `/messages` URL; the status.
    pub async fn post(&self, body: &Value) -> u16 {
        let rb = self
            .client
            .http
            .post(&self.post_url)
            .header("content-type", "application/json")
            .body(body.to_string());
        self.client
            .authed(rb)
            .send()
            .await
            .expect("POST /messages")
            .status()
            .as_u16()
    }

    /// POSTs `body`, which must be accepted.
    pub async fn send(&self, body: &Value) {
        let status = self.post(body).await;
        assert!((200..300).contains(&status), "POST /messages: {status}");
    }

    /// Reads the stream until the message answering `id`.
    pub async fn answer(&mut self, id: &Value) -> Value {
        loop {
            let m = self
                .stream
                .next_message(self.client.limit, "the SSE stream")
                .await;
            if m["id"] == *id {
                return m;
            }
        }
    }

    /// `initialize` (2024-11-05) and `notifications/initialized`.
    pub async fn initialize(&mut self) -> Value {
        self.send(&initialize(json!(1), "2024-11-05", json!({}), "e2e-test"))
            .await;
        let answer = self.answer(&json!(1)).await;
        self.send(&notification("notifications/initialized")).await;
        answer
    }
}

/// A handshake-era session: the client, its session id and protocol version.
#[derive(Clone)]
pub struct Session {
    /// The endpoint.
    pub client: McpClient,
    /// Its `Mcp-Session-Id`.
    pub id: String,
    /// The revision it speaks.
    pub version: String,
}

impl Session {
    /// The headers of its requests.
    pub fn headers(&self) -> Headers {
        session_headers(&self.id, &self.version)
    }

    /// POSTs `body` in the session and reads the whole answer.
    pub async fn post(&self, body: &Value, what: &str) -> Reply {
        self.client.post(body, &self.headers(), what).await
    }

    /// POSTs `body` in the session; the response head.
    pub async fn open(&self, body: &Value, what: &str) -> Stream {
        self.client.open(body, &self.headers(), what).await
    }

    /// POSTs `body` in the session; the response head, which must be a 200.
    pub async fn request(&self, body: &Value, what: &str) -> Stream {
        let s = self.open(body, what).await;
        assert_eq!(s.status, 200, "{what}: request failed");
        s
    }

    /// Opens the session's standalone `GET` event stream.
    pub async fn get_stream(&self, what: &str) -> Stream {
        let rb = self
            .client
            .http
            .get(&self.client.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.version);
        self.client.send(self.client.authed(rb), what).await
    }

    /// A request in the session; its JSON-RPC response (the status must be 200).
    pub async fn call(&self, id: Value, method: &str, params: Value) -> Value {
        let r = self.post(&request(id, method, params), method).await;
        assert_eq!(r.status, 200, "{method}: {r:?}");
        r.answer()
    }

    /// Calls a tool; the text of its first content item (an error panics).
    pub async fn tool_text(&self, id: Value, tool: &str, args: Value) -> String {
        let reply = self
            .call(id, "tools/call", json!({"name": tool, "arguments": args}))
            .await;
        assert!(reply.get("error").is_none(), "{tool} failed: {reply}");
        assert_ne!(reply["result"]["isError"], true, "{tool} failed: {reply}");
        first_text(&reply)
    }

    /// `DELETE` of the session; the status.
    pub async fn delete(&self) -> u16 {
        self.client.delete(&self.id, &self.version).await
    }
}

/// An HTTP response read incrementally.
pub struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Whether a JSON body has been read (and handed out as one event).
    read_whole: bool,
    limit: Duration,
    /// The status code.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its `Mcp-Session-Id`.
    pub session: Option<String>,
    /// All its headers.
    pub headers: reqwest::header::HeaderMap,
}

impl Stream {
    fn new(resp: reqwest::Response, limit: Duration) -> Self {
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            status: resp.status().as_u16(),
            content_type: header("content-type").unwrap_or_default(),
            session: header("mcp-session-id"),
            headers: resp.headers().clone(),
            buf: Vec::new(),
            read_whole: false,
            limit,
            resp,
        }
    }

    /// Whether the body is an event stream.
    pub fn is_sse(&self) -> bool {
        self.content_type.starts_with("text/event-stream")
    }

    /// The next chunk of the body as it comes off the connection (comments and all), or
    /// `None` at its end; for tests of how an answer is delivered, not what it says.
    pub async fn chunk(&mut self) -> Option<bytes::Bytes> {
        self.resp.chunk().await.ok().flatten()
    }

    /// The next event, `Ok(None)` when the stream ended, an error after `within`. A JSON
    /// body is one event holding it.
    pub async fn try_next(&mut self, within: Duration) -> Result<Option<Event>, String> {
        let deadline = Instant::now() + within;
        if !self.is_sse() {
            if self.read_whole {
                return Ok(None);
            }
            loop {
                match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                    Err(_) => return Err(format!("no complete body within {within:?} (hang)")),
                    Ok(Ok(Some(c))) => self.buf.extend_from_slice(&c),
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
            }
            self.read_whole = true;
            let data = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            return Ok((!data.is_empty()).then(|| Event {
                data,
                ..Event::default()
            }));
        }
        loop {
            while let Some(block) = next_block(&mut self.buf) {
                if let Some(ev) = parse_block(&block) {
                    return Ok(Some(ev));
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Err(format!("no event within {within:?} (hang)")),
                Ok(Ok(Some(c))) => self.buf.extend_from_slice(&c),
                Ok(Ok(None)) | Ok(Err(_)) => return Ok(None),
            }
        }
    }

    /// The next event, or `None` when the stream ended; panics after `within`.
    pub async fn next(&mut self, within: Duration, what: &str) -> Option<Event> {
        self.try_next(within)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// The next event carrying a message (priming events skipped).
    pub async fn next_message(&mut self, within: Duration, what: &str) -> Value {
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

    /// The next message (priming events skipped), or `None` when the stream ended.
    pub async fn next_message_or_end(&mut self, within: Duration, what: &str) -> Option<Value> {
        while let Some(ev) = self.next(within, what).await {
            if let Some(m) = ev.message() {
                return Some(m);
            }
        }
        None
    }

    /// Reads messages until the response to `id`; it and the messages before it.
    pub async fn until_response(&mut self, id: &Value, what: &str) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let m = self.next_message(self.limit, what).await;
            if m.get("method").is_none() && m.get("id") == Some(id) {
                return (m, before);
            }
            before.push(m);
        }
    }

    /// Every event until the end of the stream.
    pub async fn rest(mut self, within: Duration, what: &str) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(within, what).await {
            out.push(ev);
        }
        out
    }

    /// The whole body as text.
    pub async fn text(self, what: &str) -> String {
        tokio::time::timeout(self.limit, self.resp.text())
            .await
            .unwrap_or_else(|_| panic!("{what}: no body within {:?}", self.limit))
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"))
    }

    /// The complete answer; a hang past the limit or a broken connection is an error (a
    /// body that is not JSON-RPC is kept, see [`Reply::unreadable`]).
    pub async fn try_reply(self) -> Result<Reply, String> {
        let limit = self.limit;
        let (status, session, sse) = (self.status, self.session.clone(), self.is_sse());
        let headers = self.headers.clone();
        let body = tokio::time::timeout(limit, self.resp.bytes())
            .await
            .map_err(|_| format!("no complete answer within {limit:?} (hang)"))?
            .map_err(|e| format!("transport (body): {e:?}"))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let events = if sse {
            crate::sse::events(&body)
        } else if body.is_empty() {
            Vec::new()
        } else {
            vec![Event {
                data: text.clone(),
                ..Event::default()
            }]
        };
        let mut messages = Vec::new();
        let mut unreadable = None;
        for ev in &events {
            match ev.try_message() {
                Ok(m) => messages.extend(m),
                Err(e) => unreadable = Some(format!("HTTP {status}: {e}")),
            }
        }
        Ok(Reply {
            status,
            session,
            sse,
            headers,
            events,
            messages,
            text,
            unreadable,
        })
    }

    /// [`Stream::try_reply`], panicking (naming `what`) on failure.
    pub async fn reply(self, what: &str) -> Reply {
        self.try_reply()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// A complete HTTP answer of the MCP endpoint.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Its `Mcp-Session-Id`.
    pub session: Option<String>,
    /// Whether it was an event stream.
    pub sse: bool,
    /// All its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its events (one event holding the body when it was JSON).
    pub events: Vec<Event>,
    /// The JSON-RPC messages of its events.
    pub messages: Vec<Value>,
    /// The body as text.
    pub text: String,
    /// Why a part of the body was not a JSON-RPC message, if one was not.
    pub unreadable: Option<String>,
}

impl Reply {
    /// The JSON-RPC messages it carried.
    pub fn messages(&self) -> Vec<Value> {
        self.messages.clone()
    }

    /// The header `name`, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The response (result or error) among the messages.
    pub fn answer(&self) -> Value {
        self.messages
            .iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .cloned()
            .unwrap_or_else(|| panic!("no JSON-RPC response in {self:?}"))
    }

    /// The notifications of `method`.
    pub fn notifications(&self, method: &str) -> Vec<Value> {
        self.messages
            .iter()
            .filter(|m| m["method"] == method)
            .cloned()
            .collect()
    }

    /// The one response of this answer, which must answer `id` and come last.
    pub fn response_to(&self, id: &Value) -> Result<&Value, String> {
        response_to(&self.messages, id)
    }
}

/// The one response among `messages`, which must answer `id` and come last; an error
/// saying what is wrong otherwise (none, several, another request's, messages after it).
pub fn response_to<'a>(messages: &'a [Value], id: &Value) -> Result<&'a Value, String> {
    let responses: Vec<&Value> = messages
        .iter()
        .filter(|m| m.get("method").is_none())
        .collect();
    if let Some(other) = responses.iter().find(|r| r["id"] != *id) {
        return Err(format!(
            "the answer to {id} carries a response to another request: {other}"
        ));
    }
    match responses.as_slice() {
        [r] if messages.last() == Some(*r) => Ok(r),
        [_] => Err(format!("messages after the response to {id}")),
        [] => Err(format!("no response to {id} in {messages:?}")),
        _ => Err(format!("{} responses to {id}", responses.len())),
    }
}
