//! Header validation of stateless (2026-07-28) requests at the relay.
//!
//! A stateless request carries `params._meta["io.modelcontextprotocol/protocolVersion"]`
//! and mirrors its protocol version, method, and tool/prompt name or resource URI into HTTP
//! headers. The relay refuses every disagreement with HTTP 400 and JSON-RPC error -32020
//! naming the request's id, lets well-formed stateless requests through (with any protocol
//! version, which is the bridge's to judge), and treats handshake-era requests exactly as
//! before. (Annotated tool parameters: `param_headers`.)

use e2e::http::{Answer, send};
use e2e::mcp::{
    ACCEPT_BOTH, HANDSHAKE_2025_06, META_VERSION, McpClient, STATELESS, request, stateless,
};
use e2e::{Bridge, BridgeOpts};
use protocol::jsonrpc::{HEADER_MISMATCH, INVALID_REQUEST};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::HTTP_LIMIT;

/// Headers of one request, in order.
pub(crate) type Headers<'a> = Vec<(&'a str, &'a str)>;

/// A request expected to be refused: what it shows, its body, its headers and the header
/// the refusal names.
pub(crate) type Refusal<'a> = (&'a str, Value, Headers<'a>, &'a str);

/// A stateless request whose `_meta` names `version`.
pub(crate) fn stateless_with(id: Value, method: &str, params: Value, version: &str) -> Value {
    stateless(
        request(id, method, params),
        json!({}),
        &[(META_VERSION, json!(version))],
    )
}

/// The standard headers of a well-formed stateless request for `method` (and `name`).
pub(crate) fn standard<'a>(method: &'a str, name: Option<&'a str>) -> Headers<'a> {
    let mut h = vec![("MCP-Protocol-Version", STATELESS), ("Mcp-Method", method)];
    if let Some(n) = name {
        h.push(("Mcp-Name", n));
    }
    h
}

/// POSTs `body` with `content_type`, both media types accepted, and `headers` (appended in
/// order, so a name may repeat, and given as bytes).
pub(crate) async fn post_raw(
    ep: &McpClient,
    content_type: &str,
    body: String,
    headers: &[(&str, &[u8])],
    what: &str,
) -> Answer {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_bytes(v).expect("header value"),
        );
    }
    let rb = ep
        .http
        .post(&ep.url)
        .header("content-type", content_type)
        .header("accept", ACCEPT_BOTH)
        .headers(map)
        .timeout(HTTP_LIMIT)
        .body(body);
    send(ep.authed(rb), what).await
}

/// POSTs a JSON body with string headers.
pub(crate) async fn post(
    ep: &McpClient,
    body: &Value,
    headers: &[(&str, &str)],
    what: &str,
) -> Answer {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    post_raw(ep, "application/json", body.to_string(), &raw, what).await
}

/// What the relay made of a request's headers.
pub(crate) trait HeaderVerdict {
    /// The JSON-RPC message answering the request (a JSON body or an SSE event), if any.
    fn message(&self) -> Option<Value>;
    /// The JSON-RPC error code of the answer, if it is an error.
    fn code(&self) -> Option<i64>;
    /// Asserts a 400 with a JSON-RPC error -32020 answering `id`, naming `header`.
    fn assert_mismatch(&self, id: &Value, header: &str, what: &str);
    /// Asserts the relay let the request through: not a 400 with -32020.
    fn assert_passed(&self, what: &str);
}

impl HeaderVerdict for Answer {
    fn message(&self) -> Option<Value> {
        if self.is_sse() {
            return self.response();
        }
        serde_json::from_slice(&self.body).ok()
    }

    fn code(&self) -> Option<i64> {
        self.message().and_then(|m| m["error"]["code"].as_i64())
    }

    fn assert_mismatch(&self, id: &Value, header: &str, what: &str) {
        self.assert_jsonrpc_error(id, 400, HEADER_MISMATCH, what);
        let v = self.json();
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message
                .to_ascii_lowercase()
                .contains(&header.to_ascii_lowercase()),
            "{what}: the message does not name {header}: {v}"
        );
    }

    fn assert_passed(&self, what: &str) {
        assert!(
            !(self.status == 400 && self.code() == Some(HEADER_MISMATCH)),
            "{what}: refused as a header mismatch: {} {}",
            self.status,
            self.text()
        );
    }
}

#[tokio::test]
async fn standard_header_mismatches_are_refused_with_the_request_id() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = McpClient::of(&bridge);
    let list = |id: Value| stateless_with(id, "tools/list", json!({}), STATELESS);
    let call = |id: Value| {
        stateless_with(
            id,
            "tools/call",
            json!({"name": "test_simple_text", "arguments": {}}),
            STATELESS,
        )
    };

    let prompt = |id: Value| {
        stateless_with(
            id,
            "prompts/get",
            json!({"name": "test_simple_prompt"}),
            STATELESS,
        )
    };
    let read = |id: Value| {
        stateless_with(
            id,
            "resources/read",
            json!({"uri": "test://static-text"}),
            STATELESS,
        )
    };
    let cases: Vec<Refusal<'_>> = vec![
        (
            "MCP-Protocol-Version missing",
            list(json!(1)),
            vec![("Mcp-Method", "tools/list")],
            "MCP-Protocol-Version",
        ),
        (
            "MCP-Protocol-Version differs from _meta",
            list(json!("two")),
            vec![
                ("MCP-Protocol-Version", "2025-11-25"),
                ("Mcp-Method", "tools/list"),
            ],
            "MCP-Protocol-Version",
        ),
        (
            "_meta names an unknown version, the header a known one",
            stateless_with(json!(3), "server/discover", json!({}), "v999.0.0"),
            standard("server/discover", None),
            "MCP-Protocol-Version",
        ),
        (
            "Mcp-Method missing",
            list(json!(4)),
            vec![("MCP-Protocol-Version", STATELESS)],
            "Mcp-Method",
        ),
        (
            "Mcp-Method differs",
            list(json!(5)),
            standard("prompts/list", None),
            "Mcp-Method",
        ),
        (
            "Mcp-Method differs in case",
            list(json!(6)),
            standard("TOOLS/LIST", None),
            "Mcp-Method",
        ),
        (
            "Mcp-Name missing on tools/call",
            call(json!(7)),
            standard("tools/call", None),
            "Mcp-Name",
        ),
        (
            "Mcp-Name differs on tools/call",
            call(json!("eight")),
            standard("tools/call", Some("wrong_tool_name")),
            "Mcp-Name",
        ),
        (
            "Mcp-Name differs on prompts/get",
            prompt(json!(9)),
            standard("prompts/get", Some("another_prompt")),
            "Mcp-Name",
        ),
        (
            "Mcp-Name missing on resources/read",
            read(json!(10)),
            standard("resources/read", None),
            "Mcp-Name",
        ),
        (
            "Mcp-Name differs from params.uri",
            read(json!(11)),
            standard("resources/read", Some("test://static-binary")),
            "Mcp-Name",
        ),
        (
            "Mcp-Name with invalid Base64 padding",
            call(json!(12)),
            standard("tools/call", Some("=?base64?dGVzdF9zaW1wbGVfdGV4dA?=")),
            "Mcp-Name",
        ),
        (
            "Mcp-Name with non-alphabet Base64 characters",
            call(json!(13)),
            standard("tools/call", Some("=?base64?dGVz!!!dA==?=")),
            "Mcp-Name",
        ),
        (
            "Mcp-Name Base64 of another name",
            call(json!(14)),
            // "test_simple_textX"
            standard("tools/call", Some("=?base64?dGVzdF9zaW1wbGVfdGV4dFg=?=")),
            "Mcp-Name",
        ),
    ];
    for (what, body, headers, header) in cases {
        let a = post(&ep, &body, &headers, what).await;
        a.assert_mismatch(&body["id"], header, what);
    }

    // Characters outside visible ASCII, and a header sent twice.
    let body = call(json!(15));
    let a = post_raw(
        &ep,
        "application/json",
        body.to_string(),
        &[
            ("MCP-Protocol-Version", STATELESS.as_bytes()),
            ("Mcp-Method", b"tools/call"),
            ("Mcp-Name", b"test_simple_text\xc3\xa9"),
        ],
        "Mcp-Name with non-ASCII bytes",
    )
    .await;
    a.assert_mismatch(&json!(15), "Mcp-Name", "Mcp-Name with non-ASCII bytes");
    let body = call(json!(16));
    let mut headers = standard("tools/call", Some("test_simple_text"));
    headers.push(("Mcp-Name", "test_simple_text"));
    let a = post(&ep, &body, &headers, "Mcp-Name twice").await;
    a.assert_mismatch(&json!(16), "Mcp-Name", "Mcp-Name twice");
}

#[tokio::test]
async fn well_formed_stateless_requests_pass_the_relay() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = McpClient::of(&bridge);

    let stateless_request =
        |id: Value, method: &str, params: Value| stateless_with(id, method, params, STATELESS);
    let call = stateless_request(
        json!(2),
        "tools/call",
        json!({"name": "test_simple_text", "arguments": {}}),
    );
    let cases: Vec<(&str, Value, Headers<'_>)> = vec![
        (
            "tools/list",
            stateless_request(json!(1), "tools/list", json!({})),
            standard("tools/list", None),
        ),
        // Header names in any case, optional whitespace around values.
        (
            "case and whitespace",
            call.clone(),
            vec![
                ("mcp-protocol-version", STATELESS),
                ("MCP-METHOD", "tools/call"),
                ("mcp-name", "  test_simple_text  "),
            ],
        ),
        // A Base64-encoded name ("test_simple_text").
        (
            "Base64 name",
            call,
            standard("tools/call", Some("=?base64?dGVzdF9zaW1wbGVfdGV4dA==?=")),
        ),
        (
            "prompts/get",
            stateless_request(
                json!("p"),
                "prompts/get",
                json!({"name": "test_simple_prompt"}),
            ),
            standard("prompts/get", Some("test_simple_prompt")),
        ),
        (
            "resources/read",
            stateless_request(
                json!("r"),
                "resources/read",
                json!({"uri": "test://static-text"}),
            ),
            standard("resources/read", Some("test://static-text")),
        ),
    ];
    for (what, body, headers) in cases {
        post(&ep, &body, &headers, what).await.assert_passed(what);
    }

    // An unknown version, named alike in the header and in _meta, is the bridge's to
    // answer: the relay does not refuse the header.
    let body = stateless_with(json!(301), "server/discover", json!({}), "v999.0.0");
    let headers = [
        ("MCP-Protocol-Version", "v999.0.0"),
        ("Mcp-Method", "server/discover"),
    ];
    let a = post(&ep, &body, &headers, "unknown version").await;
    a.assert_passed("unknown version");
    assert_ne!(
        a.code(),
        Some(INVALID_REQUEST),
        "the relay refused the unknown version itself: {a:?}"
    );
    if let Some(m) = a.message() {
        assert_eq!(m["id"], 301, "the answer names another request: {m}");
    }
}

#[tokio::test]
async fn initialize_era_requests_are_unaffected() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = McpClient::of(&bridge);

    // initialize without any MCP header, with a stray Mcp-Method.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": HANDSHAKE_2025_06, "capabilities": {},
        "clientInfo": {"name": "headers-test", "version": "0"}}});
    let a = post(&ep, &init, &[("Mcp-Method", "tools/list")], "initialize").await;
    assert_eq!(a.status, 200, "initialize: {a:?}");
    let session = a.header("mcp-session-id").to_owned();
    assert!(!session.is_empty(), "a session id");
    assert_eq!(
        a.message().expect("initialize answer")["result"]["protocolVersion"],
        HANDSHAKE_2025_06
    );
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let a = post(
        &ep,
        &note,
        &[
            ("Mcp-Session-Id", &session),
            ("MCP-Protocol-Version", HANDSHAKE_2025_06),
        ],
        "initialized",
    )
    .await;
    assert_eq!(a.status, 202, "initialized: {a:?}");

    // Mismatched Mcp-* headers mean nothing to an initialize-era request.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "test_simple_text", "arguments": {}}});
    let a = post(
        &ep,
        &call,
        &[
            ("Mcp-Session-Id", &session),
            ("MCP-Protocol-Version", HANDSHAKE_2025_06),
            ("Mcp-Method", "prompts/list"),
            ("Mcp-Name", "=?base64?bad?="),
        ],
        "handshake tools/call",
    )
    .await;
    assert_eq!(a.status, 200, "handshake tools/call: {a:?}");
    let m = a.message().expect("tools/call answer");
    assert_eq!(m["id"], 2, "{m}");
    assert!(m["result"]["content"].is_array(), "{m}");

    // An unknown MCP-Protocol-Version is still refused for them, with id null, even when
    // the body is refused too.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    for (what, content_type) in [
        ("unknown version", "application/json"),
        ("unknown version and content type", "text/plain"),
    ] {
        let a = post_raw(
            &ep,
            content_type,
            list.to_string(),
            &[
                ("Mcp-Session-Id", session.as_bytes()),
                ("MCP-Protocol-Version", b"1999-01-01"),
            ],
            what,
        )
        .await;
        assert_eq!(a.status, 400, "{what}: {a:?}");
        let m = a.message().expect("an error body");
        assert_eq!(m["error"]["code"], INVALID_REQUEST, "{what}: {m}");
        assert!(m["id"].is_null(), "{what}: {m}");
    }

    // A stateless-looking notification is not a request: not checked.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1, "_meta": {META_VERSION: STATELESS}}});
    post(&ep, &note, &[], "stateless notification")
        .await
        .assert_passed("stateless notification");
}

#[tokio::test]
async fn a_client_accepting_only_sse_gets_sse() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = McpClient::of(&bridge);
    let discover = stateless_with(
        json!("openai-mcp-discover"),
        "server/discover",
        json!({}),
        STATELESS,
    );
    let mut headers = standard("server/discover", None);

    let both = post(&ep, &discover, &headers, "both media types").await;
    assert_eq!(both.status, 200, "{both:?}");
    assert_eq!(both.header("content-type"), "application/json", "{both:?}");

    headers.push(("Accept", "text/event-stream"));
    let sse = post(&ep, &discover, &headers, "text/event-stream only").await;
    assert_eq!(sse.status, 200, "{sse:?}");
    assert!(sse.is_sse(), "{sse:?}");
    let m = sse.message().expect("an answer event");
    assert_eq!(m["id"], "openai-mcp-discover", "{m}");
    // The same answer whichever way it travels.
    assert_eq!(m["result"], both.message().expect("json")["result"], "{m}");
}

#[tokio::test]
async fn malformed_stateless_fields_get_clear_errors() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = McpClient::of(&bridge);
    let caps = "io.modelcontextprotocol/clientCapabilities";
    let call = |id: u32, extra: Value| {
        let mut params = json!({"name": "test_simple_text", "arguments": {}});
        for (k, v) in extra.as_object().expect("object") {
            params[k] = v.clone();
        }
        stateless_with(json!(id), "tools/call", params, STATELESS)
    };
    let name = Some("test_simple_text");
    // (what, body, expected HTTP status, expected JSON-RPC code)
    let mut cases: Vec<(&str, Value, u16, i64)> = vec![
        (
            "requestState not a string",
            call(1, json!({"requestState": 5})),
            400,
            -32602,
        ),
        (
            "requestState unknown",
            call(2, json!({"requestState": "rs1.00"})),
            400,
            -32602,
        ),
        (
            "inputResponses an array",
            call(3, json!({"inputResponses": [1, 2]})),
            400,
            -32602,
        ),
        (
            "inputResponses null",
            call(4, json!({"inputResponses": null})),
            400,
            -32602,
        ),
        (
            "an input response not an object",
            call(5, json!({"inputResponses": {"k": "v"}})),
            400,
            -32602,
        ),
    ];
    let mut bad_caps = call(6, json!({}));
    bad_caps["params"]["_meta"][caps] = json!("all");
    cases.push(("clientCapabilities not an object", bad_caps, 400, -32602));
    for (what, body, status, code) in cases {
        let a = post(&ep, &body, &standard("tools/call", name), what).await;
        assert_eq!(a.status, status, "{what}: {a:?}");
        let m = a
            .message()
            .unwrap_or_else(|| panic!("{what}: no JSON-RPC answer: {a:?}"));
        assert_eq!(m["error"]["code"], code, "{what}: {m}");
        assert_eq!(m["id"], body["id"], "{what}: {m}");
    }

    // A protocol version that is not a string cannot be compared with the header: refused
    // before it reaches the bridge, or by the bridge, never served.
    let mut numeric = stateless_with(json!(7), "tools/list", json!({}), STATELESS);
    numeric["params"]["_meta"][META_VERSION] = json!(20260728);
    let a = post(
        &ep,
        &numeric,
        &standard("tools/list", None),
        "numeric version",
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        matches!(a.code(), Some(-32602) | Some(-32020)),
        "numeric version: {a:?}"
    );

    // A listen filter of the wrong shape subscribes to nothing, and says so.
    let listen = stateless_with(
        json!(8),
        "subscriptions/listen",
        json!({"notifications": "everything"}),
        STATELESS,
    );
    let mut s = ep
        .open(&listen, &e2e::mcp::stateless_headers(&listen), "listen")
        .await;
    assert_eq!(s.status, 200);
    let ack = s.next_message(HTTP_LIMIT, "the acknowledgment").await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(ack["params"]["notifications"], json!({}), "{ack}");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 8,
        "{ack}"
    );
}
