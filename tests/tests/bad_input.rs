//! Bad input at every edge of a tunnel, and what the relay and the bridge answer.
//!
//! The HTTP side (`/<name>/mcp`, `/<name>/sse`, `/<name>/messages`): malformed, non-JSON-RPC,
//! mistyped and oversized bodies, unknown and deleted sessions, unsupported protocol
//! versions, foreign `Host`/`Origin`, missing or wrong bearer tokens, unknown and invalid
//! tunnel names, and a tunnel whose bridge was killed (answered once the relay's grace
//! period for a returning bridge is over). Every refusal is checked for its exact HTTP
//! status and for a JSON-RPC error body with the expected `error.code`; after each one, a
//! valid `initialize` proves the relay still serves.
//!
//! The bridge side (`/<name>/connect`): fake bridges speaking the wire format by hand
//! (wrong token, garbage frames, a name held by another token, unauthenticated tunnels on
//! a public relay), the real `bridge` binary with a wrong token, and a stdio server that
//! prints a line that is not JSON.
//!
//! Every HTTP request has a short timeout, so a hang fails fast instead of stalling the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use e2e::{Bridge, BridgeOpts, Relay, bin};
use futures_util::{SinkExt, StreamExt};
use protocol::jsonrpc::{INVALID_REQUEST, PARSE_ERROR, SESSION_NOT_FOUND, UNAVAILABLE};
use protocol::{ClientAuth, Frame, Hello, Limits, Refusal, RefuseReason, Welcome};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Longest wait for any one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a WebSocket message or for the relay to close a socket.
const WS_TIMEOUT: Duration = Duration::from_secs(5);
/// The protocol revision the tests speak.
const MCP_VERSION: &str = "2025-06-18";
/// Both media types a Streamable HTTP client must accept.
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

// ----- HTTP helpers --------------------------------------------------------------------

/// A complete HTTP answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and a JSON-RPC error body (`id: null`) with this code.
    fn assert_error(&self, status: u16, code: i64, what: &str) {
        self.assert_error_for(&Value::Null, status, code, what);
    }

    /// Asserts the status and a JSON-RPC error body answering request `id`, with this code.
    fn assert_error_for(&self, id: &Value, status: u16, code: i64, what: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{what}: unexpected status; body: {}",
            self.text()
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: the error is not application/json: {:?}; body: {}",
            self.headers,
            self.text()
        );
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {}", self.text()));
        assert_eq!(v["jsonrpc"], "2.0", "{what}: not a JSON-RPC message: {v}");
        assert_eq!(&v["id"], id, "{what}: the error answers another id: {v}");
        assert!(
            v.get("result").is_none(),
            "{what}: an error with a result: {v}"
        );
        assert_eq!(v["error"]["code"], code, "{what}: wrong error code: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: the error has no message: {v}"
        );
    }

    /// The JSON-RPC messages of the body: one JSON object, or the `data:` of SSE events.
    fn messages(&self) -> Vec<Value> {
        let sse = self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if !sse {
            let v = serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()));
            return vec![v];
        }
        self.text()
            .split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                // A priming event (an id, empty data) carries no message.
                data.iter()
                    .any(|d| !d.trim().is_empty())
                    .then(|| data.join("\n"))
            })
            .map(|d| serde_json::from_str(&d).unwrap_or_else(|e| panic!("bad SSE data ({e}): {d}")))
            .collect()
    }
}

/// A reqwest client with a short timeout and no proxy.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("http client")
}

/// Sends a request and reads the whole answer; a transport error or timeout panics.
async fn send(rb: RequestBuilder, what: &str) -> Answer {
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// A tunnel's public MCP endpoint and the bearer token its clients send.
struct Endpoint {
    client: reqwest::Client,
    /// `…/<name>/mcp`.
    mcp: String,
    bearer: Option<String>,
}

impl Endpoint {
    fn new(mcp: &str, bearer: Option<&str>) -> Self {
        Self {
            client: http(),
            mcp: mcp.to_owned(),
            bearer: bearer.map(str::to_owned),
        }
    }

    fn of(bridge: &Bridge) -> Self {
        Self::new(&bridge.mcp_url, bridge.bearer.as_deref())
    }

    /// The tunnel's base URL (`…/<name>`).
    fn tunnel(&self) -> &str {
        self.mcp
            .strip_suffix("/mcp")
            .expect("an MCP URL ends in /mcp")
    }

    /// The relay's base URL (`scheme://host:port`).
    fn relay(&self) -> &str {
        let t = self.tunnel();
        &t[..t.rfind('/').expect("a tunnel URL has a path")]
    }

    /// A request with the bearer token (if any).
    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let rb = self.client.request(method, url);
        match &self.bearer {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// A well-formed JSON POST to the MCP endpoint.
    fn post(&self, body: impl Into<reqwest::Body>) -> RequestBuilder {
        self.post_as(Some("application/json"), ACCEPT_BOTH, body)
    }

    /// A POST to the MCP endpoint with this `Content-Type` (if any) and `Accept`.
    fn post_as(
        &self,
        content_type: Option<&str>,
        accept: &str,
        body: impl Into<reqwest::Body>,
    ) -> RequestBuilder {
        let rb = self
            .request(Method::POST, &self.mcp)
            .header(header::ACCEPT, accept)
            .body(body);
        match content_type {
            Some(ct) => rb.header(header::CONTENT_TYPE, ct),
            None => rb,
        }
    }

    /// A POST on an established session.
    fn post_in(&self, session: &str, body: &Value) -> RequestBuilder {
        self.post(body.to_string())
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", MCP_VERSION)
    }

    /// `initialize` (plus `notifications/initialized`); the new session's id.
    async fn initialize(&self) -> String {
        let body = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": MCP_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "bad-input-test", "version": "0"}
            }
        });
        let a = send(self.post(body.to_string()), "initialize").await;
        assert_eq!(a.status, StatusCode::OK, "initialize failed: {}", a.text());
        let session = a
            .header("mcp-session-id")
            .unwrap_or_else(|| panic!("initialize returned no Mcp-Session-Id: {:?}", a.headers))
            .to_owned();
        let msgs = a.messages();
        let reply = msgs
            .iter()
            .find(|m| m["id"] == 1)
            .expect("initialize reply");
        assert_eq!(reply["result"]["protocolVersion"], MCP_VERSION, "{reply}");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let a = send(self.post_in(&session, &note), "notifications/initialized").await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "initialized: {}", a.text());
        session
    }

    /// Proves the tunnel still serves: a fresh `initialize` succeeds.
    async fn still_serves(&self, after: &str) {
        let body = json!({
            "jsonrpc": "2.0",
            "id": "alive",
            "method": "initialize",
            "params": {
                "protocolVersion": MCP_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "bad-input-test", "version": "0"}
            }
        });
        let a = send(self.post(body.to_string()), after).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "after {after}: initialize failed: {}",
            a.text()
        );
        assert!(
            a.header("mcp-session-id").is_some(),
            "after {after}: no session"
        );
        let msgs = a.messages();
        assert!(
            msgs.iter()
                .any(|m| m["id"] == "alive" && m["result"]["serverInfo"].is_object()),
            "after {after}: unexpected initialize answer: {msgs:?}"
        );
    }

    /// A request on a session; its JSON-RPC answer.
    async fn call(&self, session: &str, id: u64, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let a = send(self.post_in(session, &body), method).await;
        assert_eq!(a.status, StatusCode::OK, "{method}: {}", a.text());
        a.messages()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{method}: no answer with id {id}: {}", a.text()))
    }

    /// Calls a tool; the text of its first content item.
    async fn tool_text(&self, session: &str, id: u64, tool: &str, args: Value) -> String {
        let reply = self
            .call(
                session,
                id,
                "tools/call",
                json!({"name": tool, "arguments": args}),
            )
            .await;
        assert!(reply.get("error").is_none(), "{tool} failed: {reply}");
        assert_ne!(reply["result"]["isError"], true, "{tool} failed: {reply}");
        reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{tool}: no text content: {reply}"))
            .to_owned()
    }
}

/// A bridge serving the fixture through its embedded relay, with bearer auth.
fn embedded() -> (Bridge, Endpoint) {
    let bridge = Bridge::start(BridgeOpts::default());
    assert!(
        bridge.bearer.is_some(),
        "the default bridge uses bearer auth"
    );
    let ep = Endpoint::of(&bridge);
    (bridge, ep)
}

/// A bridge serving the fixture through `relay` under `name`.
fn bridge_on(relay: &Relay, name: &str) -> Bridge {
    Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some(name.to_owned()),
        ..BridgeOpts::default()
    })
}

/// A valid JSON-RPC request padded to at least `size` bytes.
fn padded_request(size: usize) -> Vec<u8> {
    let pad = "x".repeat(size);
    json!({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"pad": pad}})
        .to_string()
        .into_bytes()
}

/// `bytes` as a body without a Content-Length (sent chunked, 64 KiB at a time).
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = Bytes::from(bytes)
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// POSTs `body` to the MCP endpoint over a raw HTTP/1.1 connection, reading the answer
/// while the body is still being written (as curl and browsers do), so an early answer is
/// seen even when the server stops reading the body.
async fn raw_post(ep: &Endpoint, body: Vec<u8>, chunked: bool, what: &str) -> Answer {
    let rest = ep.mcp.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let tcp = TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot connect: {e}"));
    let (mut rd, mut wr) = tcp.into_split();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: {ACCEPT_BOTH}\r\nConnection: close\r\n"
    );
    if let Some(t) = &ep.bearer {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        if chunked {
            for c in body.chunks(64 << 10) {
                wr.write_all(format!("{:x}\r\n", c.len()).as_bytes())
                    .await?;
                wr.write_all(c).await?;
                wr.write_all(b"\r\n").await?;
            }
            wr.write_all(b"0\r\n\r\n").await?;
        } else {
            wr.write_all(&body).await?;
        }
        wr.flush().await?;
        // Keep the write half open (returned, not dropped): a half-closed request
        // makes the HTTP server close without answering, which no real client does.
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut chunk = vec![0u8; 16 << 10];
        loop {
            if let Some(a) = parse_http_answer(&buf) {
                return Some(a);
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no answer within {HTTP_TIMEOUT:?}"));
    writer.abort();
    answer.unwrap_or_else(|| {
        panic!(
            "{what}: the connection ended without a complete answer; got {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// A complete HTTP/1.1 answer with a Content-Length body, once `buf` holds all of it.
fn parse_http_answer(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').expect("a header line");
        headers.append(
            header::HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
            header::HeaderValue::from_str(v.trim()).expect("header value"),
        );
    }
    let len: usize = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("the error answer has a Content-Length");
    let body = buf.get(end + 4..end + 4 + len)?;
    Some(Answer {
        status: StatusCode::from_u16(code).expect("status"),
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

// ----- WebSocket helpers (fake bridges) ------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

/// `host:port` a relay listens on (also when its public URL is elsewhere).
fn listen_addr(relay: &Relay) -> String {
    if let Some(a) = relay.base.strip_prefix("http://127.0.0.1:") {
        return format!("127.0.0.1:{a}");
    }
    // The tracing line `relay listening addr=127.0.0.1:PORT …` (with ANSI colours).
    let log = relay.proc.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("relay listening"))
        .unwrap_or_else(|| panic!("no listen line in the relay log:\n{log}"));
    let at = line.find("127.0.0.1:").expect("a loopback listen address");
    let port: String = line[at + "127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("127.0.0.1:{port}")
}

/// Opens `/<name>/connect` on the relay at `addr`.
async fn ws_connect(addr: &str, name: &str) -> Ws {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the relay at {addr}: {e}"));
    let url = format!("ws://{addr}/{name}/connect");
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap_or_else(|e| panic!("WebSocket upgrade of {url} failed: {e}"));
    ws
}

/// The client token of fake bridges' tunnels.
const FAKE_CLIENT_TOKEN: &str = "fake-client-token";

/// Client auth for fake bridges: a bearer token, by its SHA-256 (of [`FAKE_CLIENT_TOKEN`]).
fn fake_client_auth() -> ClientAuth {
    const SHA256_HEX: &str = "048e72c011507dfd3624c097bd79f06c304b1dbcdf4ccdbe10e4c846d02fbe0d";
    let mut sha256 = [0u8; 32];
    for (i, b) in sha256.iter_mut().enumerate() {
        *b = u8::from_str_radix(&SHA256_HEX[2 * i..2 * i + 2], 16).expect("hex");
    }
    ClientAuth::Bearer { sha256 }
}

/// Whether a bridge is connected for `name`, from the relay's status route (`None` when
/// the relay never had a bridge under that name).
async fn connected(relay: &Relay, name: &str, bearer: &str) -> Option<bool> {
    let url = format!("{}/status/{name}", relay.base);
    let a = send(http().get(&url).bearer_auth(bearer), "tunnel status").await;
    if a.status == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(a.status, StatusCode::OK, "tunnel status: {}", a.text());
    let v: Value = serde_json::from_slice(&a.body).expect("status JSON");
    Some(v["connected"].as_bool().expect("`connected` in the status"))
}

/// An encoded `Hello` for the current wire protocol.
fn hello(token: &str, name: &str, client_auth: ClientAuth) -> Bytes {
    Frame::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: "fake-0".into(),
        token: token.into(),
        tunnel: name.into(),
        client_auth,
    })
    .encode()
}

/// The next frame from the relay (pings skipped); `None` when the socket ended.
async fn next_frame(ws: &mut Ws, what: &str) -> Option<Frame> {
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: the relay said nothing for {WS_TIMEOUT:?}"));
        match msg {
            Some(Ok(Message::Binary(b))) => {
                let f = Frame::decode(b, &Limits::default())
                    .unwrap_or_else(|e| panic!("{what}: undecodable frame from the relay: {e}"));
                match f {
                    Frame::Ping(_) | Frame::Pong(_) => continue,
                    f => return Some(f),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(t))) => panic!("{what}: text message from the relay: {t}"),
            Some(Ok(Message::Close(_) | Message::Frame(_))) | Some(Err(_)) | None => return None,
        }
    }
}

/// Asserts that the relay closes the socket (possibly after pings) without another frame.
async fn expect_closed(ws: &mut Ws, what: &str) {
    if let Some(f) = next_frame(ws, what).await {
        panic!("{what}: expected the relay to close the socket, got {f:?}");
    }
}

/// Sends a `Hello`; the relay's `Welcome` or `Refused`.
async fn handshake(ws: &mut Ws, hello: Bytes, what: &str) -> Result<Welcome, Refusal> {
    ws.send(Message::Binary(hello))
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot send the Hello: {e}"));
    match next_frame(ws, what).await {
        Some(Frame::Welcome(w)) => Ok(w),
        Some(Frame::Refused(r)) => Err(r),
        other => panic!("{what}: expected Welcome or Refused, got {other:?}"),
    }
}

/// Connects and asserts the relay refuses the `Hello` for `reason`, then closes.
async fn expect_refused(addr: &str, name: &str, hello: Bytes, reason: RefuseReason, what: &str) {
    let mut ws = ws_connect(addr, name).await;
    match handshake(&mut ws, hello, what).await {
        Err(r) => {
            assert_eq!(r.reason, reason, "{what}: wrong refusal: {r:?}");
            assert!(!r.message.is_empty(), "{what}: refusal without a message");
        }
        Ok(w) => panic!("{what}: expected a refusal ({reason:?}), got {w:?}"),
    }
    expect_closed(&mut ws, what).await;
}

/// Connects and asserts the relay welcomes the `Hello`; the open socket and the welcome.
async fn expect_welcome(addr: &str, name: &str, hello: Bytes, what: &str) -> (Ws, Welcome) {
    let mut ws = ws_connect(addr, name).await;
    match handshake(&mut ws, hello, what).await {
        Ok(w) => (ws, w),
        Err(r) => panic!("{what}: refused: {r:?}"),
    }
}

/// Deterministic junk: `len` bytes starting with `first` (the frame type byte).
fn junk(first: u8, len: usize) -> Bytes {
    let mut x: u32 = 0x9E37_79B9 ^ u32::from(first);
    let mut out = vec![first];
    out.extend((1..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    Bytes::from(out)
}

// ----- malformed requests --------------------------------------------------------------

#[tokio::test]
async fn malformed_and_non_jsonrpc_bodies_get_400() {
    let (_bridge, ep) = embedded();
    let cases: &[(&str, &str, i64)] = &[
        (
            "truncated JSON",
            r#"{"jsonrpc":"2.0","id":1,"method":"#,
            PARSE_ERROR,
        ),
        ("not JSON at all", "hello there", PARSE_ERROR),
        (
            "garbage after an object",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#,
            PARSE_ERROR,
        ),
        (
            "a batch",
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            INVALID_REQUEST,
        ),
        ("an empty batch", "[]", INVALID_REQUEST),
        (
            "no jsonrpc member",
            r#"{"id":1,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "jsonrpc 1.0",
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "an object id",
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "an array id",
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "neither request nor response",
            r#"{"jsonrpc":"2.0","id":1}"#,
            INVALID_REQUEST,
        ),
        ("a JSON string", r#""ping""#, INVALID_REQUEST),
        ("a JSON number", "42", INVALID_REQUEST),
        (
            "params that are a string",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
            INVALID_REQUEST,
        ),
        ("an empty body", "", PARSE_ERROR),
        ("a blank body", " \r\n\t", PARSE_ERROR),
    ];
    for (what, body, code) in cases {
        let a = send(ep.post(*body), what).await;
        a.assert_error(400, *code, what);
        ep.still_serves(what).await;
    }
    // The same checks apply on an established session.
    let session = ep.initialize().await;
    let a = send(
        ep.post("{nope").header("mcp-session-id", &session),
        "malformed JSON on a session",
    )
    .await;
    a.assert_error(400, PARSE_ERROR, "malformed JSON on a session");
    let pong = ep.call(&session, 5, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
}

/// Valid JSON whose envelope fields have the wrong type is an invalid request, not a
/// parse error (JSON-RPC 2.0: -32700 is for invalid JSON only).
#[tokio::test]
async fn wrongly_typed_envelope_fields_are_invalid_requests() {
    let (_bridge, ep) = embedded();
    let cases = [
        (
            "a numeric jsonrpc",
            r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
        ),
        ("a numeric method", r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
        (
            "an object method",
            r#"{"jsonrpc":"2.0","id":1,"method":{"a":1}}"#,
        ),
    ];
    for (what, body) in cases {
        send(ep.post(body), what)
            .await
            .assert_error(400, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
    // A well-formed envelope with a `_meta` of the wrong type: invalid params, answered
    // with the request's id.
    let what = "a numeric _meta";
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":5}}"#;
    send(ep.post(body), what)
        .await
        .assert_error_for(&serde_json::json!(1), 400, -32602, what);
    ep.still_serves(what).await;
}

#[tokio::test]
async fn wrong_content_type_gets_415_and_unacceptable_accept_gets_406() {
    let (_bridge, ep) = embedded();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let cases = [
        (
            "Content-Type: text/plain",
            Some("text/plain"),
            ACCEPT_BOTH,
            415,
        ),
        (
            "Content-Type: application/x-www-form-urlencoded",
            Some("application/x-www-form-urlencoded"),
            ACCEPT_BOTH,
            415,
        ),
        (
            "Content-Type: application/jsonx",
            Some("application/jsonx"),
            ACCEPT_BOTH,
            415,
        ),
        ("no Content-Type", None, ACCEPT_BOTH, 415),
        (
            "Accept: text/html",
            Some("application/json"),
            "text/html",
            406,
        ),
        (
            "Accept: image/png, text/plain",
            Some("application/json"),
            "image/png, text/plain",
            406,
        ),
    ];
    for (what, content_type, accept, status) in cases {
        send(ep.post_as(content_type, accept, body), what)
            .await
            .assert_error(status, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
    // Media-type parameters and case do not matter.
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        let a = send(ep.post_as(Some(ct), ACCEPT_BOTH, body), ct).await;
        assert_eq!(a.status, StatusCode::OK, "{ct}: {}", a.text());
    }
}

// ----- oversized bodies ----------------------------------------------------------------

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let relay = Relay::start(&["--max-body", "1000"]);
    let bridge = bridge_on(&relay, "small-bodies");
    let ep = Endpoint::of(&bridge);

    let big = padded_request(2000);
    let a = send(ep.post(big.clone()), "2000 bytes with Content-Length").await;
    a.assert_error(413, INVALID_REQUEST, "2000 bytes with Content-Length");
    ep.still_serves("2000 bytes with Content-Length").await;

    let a = send(ep.post(chunked(big.clone())), "2000 bytes chunked").await;
    a.assert_error(413, INVALID_REQUEST, "2000 bytes chunked");
    ep.still_serves("2000 bytes chunked").await;

    // Legacy messages have the same limit (checked before the session is looked up).
    let url = format!("{}/messages?sessionId=whatever", ep.tunnel());
    let a = send(
        ep.request(Method::POST, &url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(big),
        "2000 bytes on /messages",
    )
    .await;
    a.assert_error(413, INVALID_REQUEST, "2000 bytes on /messages");

    // Just under the limit is fine.
    let fits = padded_request(900);
    assert!(fits.len() <= 1000);
    let a = send(ep.post(fits), "a body under the limit").await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "a body under the limit: {}",
        a.text()
    );
    ep.still_serves("a body under the limit").await;
}

#[tokio::test]
async fn embedded_relay_answers_413_to_17_mib() {
    let (_bridge, ep) = embedded();
    let big = padded_request(17 << 20);
    for (what, chunked) in [
        ("17 MiB with Content-Length", false),
        ("17 MiB chunked", true),
    ] {
        let a = raw_post(&ep, big.clone(), chunked, what).await;
        a.assert_error(413, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
}

/// The same 413 as seen by an ordinary client (hyper, via reqwest), which only reads the
/// answer once it has sent the body or the connection fails.
#[tokio::test]
async fn embedded_relay_413_reaches_an_ordinary_client() {
    let (_bridge, ep) = embedded();
    let big = padded_request(17 << 20);
    let a = send(ep.post(big.clone()), "17 MiB with Content-Length").await;
    a.assert_error(413, INVALID_REQUEST, "17 MiB with Content-Length");
    ep.still_serves("17 MiB with Content-Length").await;
    let a = send(ep.post(chunked(big)), "17 MiB chunked").await;
    a.assert_error(413, INVALID_REQUEST, "17 MiB chunked");
    ep.still_serves("17 MiB chunked").await;
}

// ----- sessions and versions -----------------------------------------------------------

#[tokio::test]
async fn unknown_and_deleted_sessions_get_404() {
    let (_bridge, ep) = embedded();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let unknown = "no-such-session-0123456789";

    let a = send(ep.post_in(unknown, &list), "POST, unknown session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "POST, unknown session");
    ep.still_serves("POST, unknown session").await;

    let get = |sid: &str| {
        ep.request(Method::GET, &ep.mcp)
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", MCP_VERSION)
    };
    let delete = |sid: &str| {
        ep.request(Method::DELETE, &ep.mcp)
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", MCP_VERSION)
    };

    let a = send(get(unknown), "GET, unknown session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "GET, unknown session");
    ep.still_serves("GET, unknown session").await;

    let a = send(delete(unknown), "DELETE, unknown session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "DELETE, unknown session");
    ep.still_serves("DELETE, unknown session").await;

    let a = send(
        ep.request(Method::DELETE, &ep.mcp),
        "DELETE without a session",
    )
    .await;
    a.assert_error(400, INVALID_REQUEST, "DELETE without a session");
    ep.still_serves("DELETE without a session").await;

    // A deleted session is gone for every method.
    let session = ep.initialize().await;
    let tools = ep.call(&session, 3, "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    let a = send(delete(&session), "DELETE").await;
    assert_eq!(a.status, StatusCode::OK, "DELETE: {}", a.text());
    let a = send(ep.post_in(&session, &list), "POST, deleted session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "POST, deleted session");
    let a = send(get(&session), "GET, deleted session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "GET, deleted session");
    let a = send(delete(&session), "DELETE, deleted session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "DELETE, deleted session");
    ep.still_serves("requests on a deleted session").await;
}

#[tokio::test]
async fn unsupported_protocol_version_gets_400() {
    let (_bridge, ep) = embedded();
    let session = ep.initialize().await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let a = send(
        ep.post(list.to_string())
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "1999-01-01"),
        "MCP-Protocol-Version 1999-01-01",
    )
    .await;
    a.assert_error(400, INVALID_REQUEST, "MCP-Protocol-Version 1999-01-01");
    let a = send(
        ep.request(Method::GET, &ep.mcp)
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "1999-01-01"),
        "GET with MCP-Protocol-Version 1999-01-01",
    )
    .await;
    a.assert_error(
        400,
        INVALID_REQUEST,
        "GET with MCP-Protocol-Version 1999-01-01",
    );
    // The session is unharmed.
    let tools = ep.call(&session, 3, "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    ep.still_serves("an unsupported protocol version").await;
}

#[tokio::test]
async fn legacy_messages_need_a_known_session() {
    let (_bridge, ep) = embedded();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let messages = |query: &str| {
        ep.request(Method::POST, &format!("{}/messages{query}", ep.tunnel()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
    };
    let cases = [
        ("no query", "", 400, INVALID_REQUEST),
        ("no sessionId", "?other=1", 400, INVALID_REQUEST),
        ("an empty sessionId", "?sessionId=", 400, INVALID_REQUEST),
        (
            "an unknown sessionId",
            "?sessionId=no-such-session",
            404,
            SESSION_NOT_FOUND,
        ),
    ];
    for (what, query, status, code) in cases {
        send(messages(query), what)
            .await
            .assert_error(status, code, what);
        ep.still_serves(what).await;
    }
}

// ----- DNS rebinding, authentication, tunnel names -------------------------------------

#[tokio::test]
async fn foreign_host_and_origin_get_403() {
    let (_bridge, ep) = embedded();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let cases = [
        ("Host: evil.example.com", header::HOST, "evil.example.com"),
        (
            "Host: evil.example.com:80",
            header::HOST,
            "evil.example.com:80",
        ),
        (
            "Origin: http://evil.example.com",
            header::ORIGIN,
            "http://evil.example.com",
        ),
        ("Origin: null", header::ORIGIN, "null"),
    ];
    for (what, name, value) in cases {
        let a = send(ep.post(body).header(name.clone(), value), what).await;
        a.assert_error(403, INVALID_REQUEST, what);
        let sse = ep
            .request(Method::GET, &format!("{}/sse", ep.tunnel()))
            .header(header::ACCEPT, "text/event-stream")
            .header(name, value);
        send(sse, what)
            .await
            .assert_error(403, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
    // A loopback browser origin is allowed on a loopback relay.
    let a = send(
        ep.post(body)
            .header(header::ORIGIN, "http://localhost:3000"),
        "Origin: http://localhost:3000",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "loopback origin: {}", a.text());
}

#[tokio::test]
async fn bearer_token_is_required() {
    let (bridge, ep) = embedded();
    let token = bridge.bearer.clone().expect("bearer");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let anonymous = Endpoint::new(&ep.mcp, None);
    let wrong = Endpoint::new(&ep.mcp, Some("not-the-token"));
    // Without a token: 401 and a plain Bearer challenge (no OAuth metadata to look for).
    let missing: Vec<(&str, RequestBuilder)> = vec![
        ("no token", anonymous.post(body)),
        (
            "Basic instead of Bearer",
            anonymous
                .post(body)
                .header(header::AUTHORIZATION, format!("Basic {token}")),
        ),
        (
            "a bare token",
            anonymous
                .post(body)
                .header(header::AUTHORIZATION, token.as_str()),
        ),
        (
            "GET /sse without a token",
            anonymous
                .request(Method::GET, &format!("{}/sse", ep.tunnel()))
                .header(header::ACCEPT, "text/event-stream"),
        ),
        (
            "DELETE without a token",
            anonymous
                .request(Method::DELETE, &ep.mcp)
                .header("mcp-session-id", "whatever"),
        ),
    ];
    for (what, rb) in missing {
        let a = send(rb, what).await;
        a.assert_error(401, INVALID_REQUEST, what);
        assert_eq!(
            a.header("www-authenticate"),
            Some("Bearer realm=\"mcp\""),
            "{what}"
        );
        assert!(
            a.text()
                .contains("needs the bearer token that `bridge run` printed"),
            "{what}: {}",
            a.text()
        );
        ep.still_serves(what).await;
    }
    // With another token: 403 (signing in again cannot help), and the message says so.
    let wrong_token: Vec<(&str, RequestBuilder)> = vec![
        ("a wrong token", wrong.post(body)),
        (
            "the token with a suffix",
            Endpoint::new(&ep.mcp, Some(&format!("{token}x"))).post(body),
        ),
        (
            "GET /sse with a wrong token",
            wrong
                .request(Method::GET, &format!("{}/sse", ep.tunnel()))
                .header(header::ACCEPT, "text/event-stream"),
        ),
        (
            "POST /messages with a wrong token",
            wrong
                .request(
                    Method::POST,
                    &format!("{}/messages?sessionId=whatever", ep.tunnel()),
                )
                .header(header::CONTENT_TYPE, "application/json")
                .body(body),
        ),
        (
            "DELETE with a wrong token",
            wrong
                .request(Method::DELETE, &ep.mcp)
                .header("mcp-session-id", "whatever"),
        ),
    ];
    for (what, rb) in wrong_token {
        let a = send(rb, what).await;
        a.assert_error(403, INVALID_REQUEST, what);
        assert_eq!(a.header("www-authenticate"), None, "{what}");
        assert!(
            a.text().contains("wrong bearer token"),
            "{what}: {}",
            a.text()
        );
        ep.still_serves(what).await;
    }
    let a = send(ep.post(body), "the right token").await;
    assert_eq!(a.status, StatusCode::OK, "the right token: {}", a.text());
}

#[tokio::test]
async fn unknown_tunnels_get_503_and_invalid_names_404() {
    let (_bridge, ep) = embedded();
    let relay = ep.relay().to_owned();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let post = |path: &str| {
        ep.request(Method::POST, &format!("{relay}{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, ACCEPT_BOTH)
            .body(body)
    };
    let cases: Vec<(&str, RequestBuilder, u16, i64)> = vec![
        (
            "POST to an unknown tunnel",
            post("/nobody-here/mcp"),
            503,
            UNAVAILABLE,
        ),
        (
            "GET /sse of an unknown tunnel",
            ep.request(Method::GET, &format!("{relay}/nobody-here/sse")),
            503,
            UNAVAILABLE,
        ),
        (
            "POST /messages of an unknown tunnel",
            post("/nobody-here/messages?sessionId=x"),
            503,
            UNAVAILABLE,
        ),
        ("an upper-case name", post("/A_B/mcp"), 404, INVALID_REQUEST),
        ("a two-letter name", post("/ab/mcp"), 404, INVALID_REQUEST),
        (
            "a name ending in '-'",
            post("/abc-/mcp"),
            404,
            INVALID_REQUEST,
        ),
        (
            "a reserved name",
            post("/healthz/mcp"),
            404,
            INVALID_REQUEST,
        ),
        (
            "an unknown route",
            post("/nobody-here/other"),
            404,
            INVALID_REQUEST,
        ),
    ];
    for (what, rb, status, code) in cases {
        send(rb, what).await.assert_error(status, code, what);
        ep.still_serves(what).await;
    }
}

// ----- fake bridges --------------------------------------------------------------------

#[tokio::test]
async fn fake_bridge_with_a_wrong_token_is_refused() {
    let relay = Relay::start(&[]);
    let addr = listen_addr(&relay);
    let what = "a wrong bridge token";
    expect_refused(
        &addr,
        "wrong-token",
        hello("not-the-token", "wrong-token", fake_client_auth()),
        RefuseReason::BadToken,
        what,
    )
    .await;
    // A name in the Hello that differs from the path is refused too.
    expect_refused(
        &addr,
        "path-name",
        hello(&relay.token, "other-name", fake_client_auth()),
        RefuseReason::BadName,
        "a Hello for another name than the path",
    )
    .await;
    // Nothing was registered, and the relay still serves real bridges.
    let bridge = bridge_on(&relay, "wrong-token");
    Endpoint::of(&bridge).still_serves(what).await;
}

#[tokio::test]
async fn bridge_binary_with_a_wrong_token_exits_2() {
    let relay = Relay::start(&[]);
    let out = run_refused_bridge(&relay.base, "not-the-token", "refused-bridge", &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("the relay refused this tunnel")
            && stderr.contains("does not know this bridge token"),
        "stderr does not name the refusal:\n{stderr}"
    );
    assert!(
        !stdout.contains("MCP endpoint:"),
        "a refused bridge printed endpoints:\n{stdout}"
    );
    assert!(
        !stderr.contains("not-the-token"),
        "the bridge token leaked into the log:\n{stderr}"
    );
    let bridge = bridge_on(&relay, "refused-bridge");
    Endpoint::of(&bridge)
        .still_serves("a refused bridge binary")
        .await;
}

/// Runs the `bridge` binary against a relay that should refuse it; its output once it
/// exits (within a minute).
async fn run_refused_bridge(
    relay_url: &str,
    token: &str,
    name: &str,
    flags: &[&str],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin("bridge"));
    cmd.args(["run", "--relay", relay_url, "--name", name])
        .args(flags)
        .arg("--")
        .arg(bin("mcp-fixture"))
        .env("BRIDGE_TOKEN", token)
        .env("RUST_LOG", "info")
        .env_remove("BRIDGE_CLIENT_TOKEN")
        .env_remove("BRIDGE_RELAY")
        .env_remove("BRIDGE_NAME")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the refused bridge did not exit within 60 s")
        .expect("cannot run bridge")
}

/// What a garbage-sending fake bridge does, and whether it said `Hello` first.
struct Garbage {
    what: &'static str,
    message: Message,
    after_hello: bool,
    /// The relay answers `Refused(Malformed)` before closing.
    refused: bool,
}

fn garbage_cases(token: &str) -> Vec<Garbage> {
    let full = hello(token, "noisy", fake_client_auth());
    let truncated = full.slice(..full.len() / 2);
    let welcome = Frame::Welcome(Welcome {
        protocol: protocol::PROTOCOL_VERSION,
        relay_version: "x".into(),
        mcp_url: "http://x/noisy/mcp".into(),
        sse_url: "http://x/noisy/sse".into(),
    })
    .encode();
    let mut v = Vec::new();
    for after_hello in [false, true] {
        let refused = !after_hello;
        v.extend([
            Garbage {
                what: "random bytes",
                message: Message::Binary(junk(0xEE, 512)), // no such frame type
                after_hello,
                refused,
            },
            Garbage {
                what: "a Response-typed frame of junk",
                message: Message::Binary(junk(5, 300)),
                after_hello,
                refused,
            },
            Garbage {
                what: "a truncated Hello",
                message: Message::Binary(truncated.clone()),
                after_hello,
                refused,
            },
            Garbage {
                what: "an empty binary message",
                message: Message::Binary(Bytes::new()),
                after_hello,
                refused,
            },
            Garbage {
                what: "a relay-only frame (Welcome)",
                message: Message::Binary(welcome.clone()),
                after_hello,
                refused,
            },
            Garbage {
                what: "a text message",
                message: Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
                after_hello,
                // Not a binary frame: the relay just hangs up.
                refused: false,
            },
        ]);
    }
    v.push(Garbage {
        what: "a second Hello",
        message: Message::Binary(full),
        after_hello: true,
        refused: false,
    });
    v
}

#[tokio::test]
async fn garbage_frames_disconnect_only_the_fake_bridge() {
    let relay = Relay::start(&[]);
    let addr = listen_addr(&relay);
    let good = bridge_on(&relay, "steady-tunnel");
    let ep = Endpoint::of(&good);
    ep.still_serves("starting").await;

    // The real bridge answers throughout, while the fake one misbehaves.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        let ep = Endpoint::of(&good);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                ep.still_serves("garbage on another tunnel").await;
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    for g in garbage_cases(&relay.token) {
        let what = format!(
            "{} {}",
            g.what,
            if g.after_hello {
                "after Hello"
            } else {
                "instead of Hello"
            }
        );
        let mut ws = ws_connect(&addr, "noisy").await;
        if g.after_hello {
            let w = handshake(
                &mut ws,
                hello(&relay.token, "noisy", fake_client_auth()),
                &what,
            )
            .await
            .unwrap_or_else(|r| panic!("{what}: refused: {r:?}"));
            assert!(w.mcp_url.ends_with("/noisy/mcp"), "{what}: {w:?}");
        }
        // Sending may fail if the relay hung up already; that is fine.
        let _ = ws.send(g.message).await;
        if g.refused {
            match next_frame(&mut ws, &what).await {
                Some(Frame::Refused(r)) => {
                    assert_eq!(r.reason, RefuseReason::Malformed, "{what}: {r:?}")
                }
                other => panic!("{what}: expected Refused(Malformed), got {other:?}"),
            }
        }
        expect_closed(&mut ws, &what).await;
        // The relay dropped the fake bridge (a name it never admitted stays unknown).
        let state = connected(&relay, "noisy", FAKE_CLIENT_TOKEN).await;
        if g.after_hello {
            assert_eq!(
                state,
                Some(false),
                "{what}: the fake bridge is still connected"
            );
        } else {
            assert_ne!(state, Some(true), "{what}: the fake bridge is connected");
        }
        ep.still_serves(&what).await;
    }

    stop.store(true, Ordering::Relaxed);
    load.await.expect("the real bridge kept answering");
    assert!(
        served.load(Ordering::Relaxed) > 0,
        "the load loop never ran"
    );
    let session = ep.initialize().await;
    assert_eq!(
        ep.tool_text(&session, 7, "echo", json!({"text": "after"}))
            .await,
        "after"
    );
}

#[tokio::test]
async fn a_second_token_cannot_take_a_held_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens");
    std::fs::write(&file, "second-bridge-token-0123456789abcdef\n").expect("token file");
    let relay = Relay::start(&["--bridge-token-file", file.to_str().expect("utf-8 path")]);
    let addr = listen_addr(&relay);
    let holder = bridge_on(&relay, "held-name");
    let ep = Endpoint::of(&holder);
    let session = ep.initialize().await;

    expect_refused(
        &addr,
        "held-name",
        hello(
            "second-bridge-token-0123456789abcdef",
            "held-name",
            fake_client_auth(),
        ),
        RefuseReason::NameTaken,
        "a second token claiming a held name",
    )
    .await;
    // The holder was not displaced: its session still works.
    assert_eq!(
        ep.tool_text(&session, 4, "echo", json!({"text": "mine"}))
            .await,
        "mine"
    );
    ep.still_serves("a NameTaken refusal").await;

    // The second token itself is valid for another name.
    let (_ws, w) = expect_welcome(
        &addr,
        "other-name",
        hello(
            "second-bridge-token-0123456789abcdef",
            "other-name",
            fake_client_auth(),
        ),
        "the second token on a free name",
    )
    .await;
    assert!(w.mcp_url.ends_with("/other-name/mcp"), "{w:?}");

    // The name stays reserved to its first token even while its bridge is away.
    drop(holder);
    expect_refused(
        &addr,
        "held-name",
        hello(
            "second-bridge-token-0123456789abcdef",
            "held-name",
            fake_client_auth(),
        ),
        RefuseReason::NameTaken,
        "a second token claiming a name whose bridge left",
    )
    .await;
}

#[tokio::test]
async fn public_relay_refuses_unauthenticated_tunnels() {
    const PUBLIC: &str = "https://relay.example.com";
    let strict = Relay::start(&["--public-url", PUBLIC]);
    let addr = listen_addr(&strict);
    expect_refused(
        &addr,
        "open-tunnel",
        hello(&strict.token, "open-tunnel", ClientAuth::None),
        RefuseReason::AuthNotAllowed,
        "--auth none on a public relay",
    )
    .await;
    let (_ws, w) = expect_welcome(
        &addr,
        "guarded-tunnel",
        hello(&strict.token, "guarded-tunnel", fake_client_auth()),
        "bearer auth on a public relay",
    )
    .await;
    assert_eq!(w.mcp_url, format!("{PUBLIC}/guarded-tunnel/mcp"));
    // The real bridge with --auth none stops with the refusal.
    let out = run_refused_bridge(
        &format!("http://{addr}"),
        &strict.token,
        "open-tunnel",
        &["--auth", "none"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("the relay refused this tunnel")
            && stderr.contains("--allow-unauthenticated"),
        "stderr does not name the refusal:\n{stderr}"
    );
    // The strict relay still serves authenticated tunnels (its public URL is elsewhere, so
    // talk to its listen address; a non-loopback relay does not check Host).
    let guarded = Bridge::start(BridgeOpts {
        relay: Some((format!("http://{addr}"), strict.token.clone())),
        name: Some("real-guarded".into()),
        ..BridgeOpts::default()
    });
    assert_eq!(guarded.mcp_url, format!("{PUBLIC}/real-guarded/mcp"));
    Endpoint::new(
        &format!("http://{addr}/real-guarded/mcp"),
        guarded.bearer.as_deref(),
    )
    .still_serves("an AuthNotAllowed refusal")
    .await;

    let lenient = Relay::start(&["--public-url", PUBLIC, "--allow-unauthenticated"]);
    let addr = listen_addr(&lenient);
    let (_ws, w) = expect_welcome(
        &addr,
        "open-tunnel",
        hello(&lenient.token, "open-tunnel", ClientAuth::None),
        "--auth none with --allow-unauthenticated",
    )
    .await;
    assert_eq!(w.mcp_url, format!("{PUBLIC}/open-tunnel/mcp"));
    let open = Bridge::start(BridgeOpts {
        relay: Some((format!("http://{addr}"), lenient.token.clone())),
        name: Some("real-open".into()),
        no_auth: true,
        ..BridgeOpts::default()
    });
    assert!(open.bearer.is_none());
    Endpoint::new(&format!("http://{addr}/real-open/mcp"), None)
        .still_serves("an unauthenticated tunnel")
        .await;
}

// ----- the server and the bridge misbehave ---------------------------------------------

#[tokio::test]
async fn non_json_server_output_is_skipped() {
    let (bridge, ep) = embedded();
    let session = ep.initialize().await;
    let text = ep
        .tool_text(
            &session,
            10,
            "garbage_then_echo",
            json!({"text": "through the noise"}),
        )
        .await;
    assert_eq!(text, "through the noise");
    assert_eq!(
        ep.tool_text(&session, 11, "echo", json!({"text": "again"}))
            .await,
        "again"
    );
    let text = ep
        .tool_text(&session, 12, "garbage_then_echo", json!({"text": "twice"}))
        .await;
    assert_eq!(text, "twice");
    ep.still_serves("non-JSON server output").await;
    assert_eq!(
        bridge.count("call garbage_then_echo"),
        2,
        "{:?}",
        bridge.counts()
    );
    assert_eq!(
        bridge.count("initialize"),
        1,
        "the server was restarted: {:?}",
        bridge.counts()
    );
}

/// How long the relay holds requests for a bridge that just left before answering for it
/// as offline (`RelayConfig::grace`, which `relay serve` does not let us shorten).
const GRACE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn killed_bridge_gets_503_not_a_hang() {
    let relay = Relay::start(&[]);
    let bridge = bridge_on(&relay, "doomed-tunnel");
    let ep = Endpoint::of(&bridge);
    let session = ep.initialize().await;

    // A slow call in flight when the bridge dies is answered at once, naming the request.
    let in_flight = {
        let call = json!({
            "jsonrpc": "2.0", "id": 20, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 60000}}
        });
        let rb = ep.post_in(&session, &call);
        tokio::spawn(async move { send(rb, "a call in flight when the bridge died").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(bridge); // SIGKILL to the bridge and its server.
    let a = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the call in flight hung after the bridge died")
        .expect("task");
    a.assert_error_for(
        &json!(20),
        503,
        UNAVAILABLE,
        "a call in flight when the bridge died",
    );

    // Later requests wait out the grace period for the bridge to come back, then get 503
    // (for a method the relay cannot answer offline), never a hang.
    let list = json!({"jsonrpc": "2.0", "id": 21, "method": "resources/list"});
    let fresh = Endpoint::new(&ep.mcp, ep.bearer.as_deref());
    let patience = GRACE + Duration::from_secs(5);
    let (on_session, new_client) = tokio::join!(
        send(
            ep.post_in(&session, &list).timeout(patience),
            "a request on a session of the killed bridge",
        ),
        send(
            fresh.post(list.to_string()).timeout(patience),
            "a new client of the killed bridge",
        ),
    );
    on_session.assert_error_for(
        &json!(21),
        503,
        UNAVAILABLE,
        "a request on a session of the killed bridge",
    );
    new_client.assert_error_for(
        &json!(21),
        503,
        UNAVAILABLE,
        "a new client of the killed bridge",
    );

    // The relay still serves: the same token reclaims the name.
    let again = bridge_on(&relay, "doomed-tunnel");
    Endpoint::of(&again).still_serves("a killed bridge").await;
}

/// A request refused before its body is read (401 without a token) leaves the connection
/// usable for the client's next request: clients (the OAuth ones first of all) reuse it.
#[tokio::test]
async fn an_early_refusal_keeps_the_connection_usable() {
    let (_bridge, ep) = embedded();
    let rest = ep.mcp.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut tcp = TcpStream::connect(authority).await.expect("connect");
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let refused = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: {ACCEPT_BOTH}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The body follows the head a moment later, as it does from a real network.
    tcp.write_all(refused.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(body).await.expect("write");
    let mut buf = Vec::new();
    let first = read_answer(&mut tcp, &mut buf).await;
    assert_eq!(
        first.status.as_u16(),
        401,
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        !first
            .headers
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")),
        "a small unread body is read off, not a reason to close: {:?}",
        first.headers
    );
    // The same connection serves the next request.
    let again = format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(again.as_bytes()).await.expect("write again");
    buf.clear();
    let second = read_answer(&mut tcp, &mut buf).await;
    assert_eq!(
        second.status.as_u16(),
        200,
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// Reads one complete answer from `tcp`.
async fn read_answer(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut chunk = vec![0u8; 16 << 10];
        loop {
            if let Some(a) = parse_http_answer(buf) {
                return a;
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!(
                    "the connection ended without a complete answer; got {:?}",
                    String::from_utf8_lossy(buf)
                ),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("an answer in time")
}
