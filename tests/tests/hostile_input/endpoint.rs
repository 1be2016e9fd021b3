//! What the bad-input tests share: a tunnel's endpoint spoken to with requests built by
//! hand (any method, content type, accept, session, token), a raw HTTP/1.1 POST that reads
//! an early answer while the body is still being sent, and fake bridges' handshakes.

use std::time::Duration;

use bytes::Bytes;
use e2e::fake_bridge::{Ws, handshake, hello_from, next_frame, ws_connect};
use e2e::http::{Answer, client_with, send};
use e2e::mcp::{ACCEPT_BOTH, initialize, request};
use e2e::{Bridge, BridgeOpts, Relay};
use protocol::{ClientAuth, RefuseReason, Welcome};
use reqwest::header;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for any one HTTP request.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The protocol revision the tests speak.
pub(crate) const MCP_VERSION: &str = "2025-06-18";

/// A tunnel's public MCP endpoint and the bearer token its clients send.
pub(crate) struct Endpoint {
    client: reqwest::Client,
    /// `…/<name>/mcp`.
    pub(crate) mcp: String,
    /// The bearer token its clients send.
    pub(crate) bearer: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(mcp: &str, bearer: Option<&str>) -> Self {
        Self {
            client: client_with(HTTP_TIMEOUT),
            mcp: mcp.to_owned(),
            bearer: bearer.map(str::to_owned),
        }
    }

    pub(crate) fn of(bridge: &Bridge) -> Self {
        Self::new(&bridge.mcp_url, bridge.bearer.as_deref())
    }

    /// The tunnel's base URL (`…/<name>`).
    pub(crate) fn tunnel(&self) -> &str {
        self.mcp
            .strip_suffix("/mcp")
            .expect("an MCP URL ends in /mcp")
    }

    /// The relay's base URL (`scheme://host:port`).
    pub(crate) fn relay(&self) -> &str {
        let t = self.tunnel();
        &t[..t.rfind('/').expect("a tunnel URL has a path")]
    }

    /// A request with the bearer token (if any).
    pub(crate) fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let rb = self.client.request(method, url);
        match &self.bearer {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// A well-formed JSON POST to the MCP endpoint.
    pub(crate) fn post(&self, body: impl Into<reqwest::Body>) -> RequestBuilder {
        self.post_as(Some("application/json"), ACCEPT_BOTH, body)
    }

    /// A POST to the MCP endpoint with this `Content-Type` (if any) and `Accept`.
    pub(crate) fn post_as(
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
    pub(crate) fn post_in(&self, session: &str, body: &Value) -> RequestBuilder {
        self.post(body.to_string())
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", MCP_VERSION)
    }

    /// `initialize` (plus `notifications/initialized`); the new session's id.
    pub(crate) async fn initialize(&self) -> String {
        let body = initialize(json!(1), MCP_VERSION, json!({}), "bad-input-test");
        let a = send(self.post(body.to_string()), "initialize").await;
        assert_eq!(a.status, 200, "initialize failed: {}", a.text());
        let session = a.header("mcp-session-id").to_owned();
        assert!(
            !session.is_empty(),
            "initialize returned no Mcp-Session-Id: {:?}",
            a.headers
        );
        let msgs = a.messages();
        let reply = msgs
            .iter()
            .find(|m| m["id"] == 1)
            .expect("initialize reply");
        assert_eq!(reply["result"]["protocolVersion"], MCP_VERSION, "{reply}");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let a = send(self.post_in(&session, &note), "notifications/initialized").await;
        assert_eq!(a.status, 202, "initialized: {}", a.text());
        session
    }

    /// Proves the tunnel still serves: a fresh `initialize` succeeds.
    pub(crate) async fn still_serves(&self, after: &str) {
        let body = initialize(json!("alive"), MCP_VERSION, json!({}), "bad-input-test");
        let a = send(self.post(body.to_string()), after).await;
        assert_eq!(
            a.status,
            200,
            "after {after}: initialize failed: {}",
            a.text()
        );
        assert!(
            !a.header("mcp-session-id").is_empty(),
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
    pub(crate) async fn call(&self, session: &str, id: u64, method: &str, params: Value) -> Value {
        let body = request(json!(id), method, params);
        let a = send(self.post_in(session, &body), method).await;
        assert_eq!(a.status, 200, "{method}: {}", a.text());
        a.messages()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{method}: no answer with id {id}: {}", a.text()))
    }

    /// Calls a tool; the text of its first content item.
    pub(crate) async fn tool_text(
        &self,
        session: &str,
        id: u64,
        tool: &str,
        args: Value,
    ) -> String {
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
pub(crate) fn embedded() -> (Bridge, Endpoint) {
    let bridge = Bridge::start(BridgeOpts::default());
    assert!(
        bridge.bearer.is_some(),
        "the default bridge uses bearer auth"
    );
    let ep = Endpoint::of(&bridge);
    (bridge, ep)
}

/// A bridge serving the fixture through `relay` under `name`.
pub(crate) fn bridge_on(relay: &Relay, name: &str) -> Bridge {
    relay.bridge(BridgeOpts::default().name(name))
}

/// A valid JSON-RPC request padded to at least `size` bytes.
pub(crate) fn padded_request(size: usize) -> Vec<u8> {
    let pad = "x".repeat(size);
    json!({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"pad": pad}})
        .to_string()
        .into_bytes()
}

/// `bytes` as a body without a Content-Length (sent chunked, 64 KiB at a time).
pub(crate) fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = Bytes::from(bytes)
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// POSTs `body` to the MCP endpoint over a raw HTTP/1.1 connection, reading the answer
/// while the body is still being written (as curl and browsers do), so an early answer is
/// seen even when the server stops reading the body.
pub(crate) async fn raw_post(ep: &Endpoint, body: Vec<u8>, chunked: bool, what: &str) -> Answer {
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
            if let Some(a) = Answer::from_raw(&buf) {
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

/// The client token of fake bridges' tunnels.
pub(crate) const FAKE_CLIENT_TOKEN: &str = "fake-client-token";

/// Client auth for fake bridges: a bearer token, by its SHA-256 (of [`FAKE_CLIENT_TOKEN`]).
pub(crate) fn fake_client_auth() -> ClientAuth {
    const SHA256_HEX: &str = "048e72c011507dfd3624c097bd79f06c304b1dbcdf4ccdbe10e4c846d02fbe0d";
    let mut sha256 = [0u8; 32];
    for (i, b) in sha256.iter_mut().enumerate() {
        *b = u8::from_str_radix(&SHA256_HEX[2 * i..2 * i + 2], 16).expect("hex");
    }
    ClientAuth::Bearer { sha256 }
}

/// Whether a bridge is connected for `name`, from the relay's status route (`None` when
/// the relay never had a bridge under that name).
pub(crate) async fn connected(relay: &Relay, name: &str, bearer: &str) -> Option<bool> {
    let url = format!("{}/status/{name}", relay.base);
    let rb = client_with(HTTP_TIMEOUT).get(&url).bearer_auth(bearer);
    let a = send(rb, "tunnel status").await;
    if a.status == 404 {
        return None;
    }
    assert_eq!(a.status, 200, "tunnel status: {}", a.text());
    Some(
        a.json()["connected"]
            .as_bool()
            .expect("`connected` in the status"),
    )
}

/// An encoded `Hello` for the current wire protocol, from a fake bridge.
pub(crate) fn hello(token: &str, name: &str, client_auth: ClientAuth) -> Bytes {
    hello_from("fake-0", token, name, client_auth)
}

/// Asserts that the relay closes the socket (possibly after pings) without another frame.
pub(crate) async fn expect_closed(ws: &mut Ws, what: &str) {
    if let Some(f) = next_frame(ws, what).await {
        panic!("{what}: expected the relay to close the socket, got {f:?}");
    }
}

/// Connects and asserts the relay refuses the `Hello` for `reason`, then closes.
pub(crate) async fn expect_refused(
    addr: &str,
    name: &str,
    hello: Bytes,
    reason: RefuseReason,
    what: &str,
) {
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
pub(crate) async fn expect_welcome(
    addr: &str,
    name: &str,
    hello: Bytes,
    what: &str,
) -> (Ws, Welcome) {
    let mut ws = ws_connect(addr, name).await;
    match handshake(&mut ws, hello, what).await {
        Ok(w) => (ws, w),
        Err(r) => panic!("{what}: refused: {r:?}"),
    }
}

/// Deterministic junk: `len` bytes starting with `first` (the frame type byte).
pub(crate) fn junk(first: u8, len: usize) -> Bytes {
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
