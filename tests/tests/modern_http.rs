//! Header validation of modern (2026-07-28 era) requests at the relay.
//!
//! A modern request carries `params._meta["io.modelcontextprotocol/protocolVersion"]` and
//! mirrors its protocol version, method, tool/prompt name or resource URI, and annotated
//! tool parameters into HTTP headers. The relay refuses every disagreement with HTTP 400
//! and JSON-RPC error -32020 naming the request's id, lets well-formed modern requests
//! through (with any protocol version, which is the bridge's to judge), and treats
//! initialize-era requests exactly as before.
//!
//! The `Mcp-Param-{Name}` checks need the tool list the bridge reports to the relay; they
//! are exercised with a small stdio server whose tool annotates its parameters with
//! `x-mcp-header`, answered from the relay's copy of that list.

use std::time::Duration;

use e2e::{Bridge, BridgeOpts, Relay};
use protocol::jsonrpc::{HEADER_MISMATCH, INVALID_REQUEST};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// Longest wait for any one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The modern protocol revision.
const MODERN: &str = "2026-07-28";
/// An initialize-era revision.
const LEGACY: &str = "2025-06-18";
/// The `_meta` key of a modern request's protocol version.
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// A complete HTTP answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    session: Option<String>,
    text: String,
}

impl Answer {
    /// The JSON-RPC message answering the request (a JSON body or an SSE event), if any.
    fn message(&self) -> Option<Value> {
        if self
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            return self
                .text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|m| m.get("result").is_some() || m.get("error").is_some());
        }
        serde_json::from_str(&self.text).ok()
    }

    /// The JSON-RPC error code of the answer, if it is an error.
    fn code(&self) -> Option<i64> {
        self.message().and_then(|m| m["error"]["code"].as_i64())
    }

    /// Asserts a 400 with a JSON-RPC error -32020 answering `id`, naming `header`.
    fn assert_mismatch(&self, id: &Value, header: &str, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::BAD_REQUEST,
            "{what}: unexpected status; body: {}",
            self.text
        );
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: not application/json: {self:?}"
        );
        let v: Value = serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {}", self.text));
        assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
        assert_eq!(&v["id"], id, "{what}: the error answers another id: {v}");
        assert_eq!(v["error"]["code"], HEADER_MISMATCH, "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message
                .to_ascii_lowercase()
                .contains(&header.to_ascii_lowercase()),
            "{what}: the message does not name {header}: {v}"
        );
    }

    /// Asserts the relay let the request through: not a 400 with -32020.
    fn assert_passed(&self, what: &str) {
        assert!(
            !(self.status == StatusCode::BAD_REQUEST && self.code() == Some(HEADER_MISMATCH)),
            "{what}: refused as a header mismatch: {} {}",
            self.status,
            self.text
        );
    }
}

/// A tunnel's MCP endpoint and the bearer token its clients send.
struct Endpoint {
    client: reqwest::Client,
    mcp: String,
    bearer: Option<String>,
}

impl Endpoint {
    fn of(bridge: &Bridge) -> Self {
        Self {
            client: reqwest::Client::builder()
                .no_proxy()
                .http1_only()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("http client"),
            mcp: bridge.mcp_url.clone(),
            bearer: bridge.bearer.clone(),
        }
    }

    /// POSTs `body` with a JSON content type, both media types accepted, and `headers`
    /// (appended in order, so a name may repeat).
    async fn post_raw(
        &self,
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
        let mut rb = self
            .client
            .post(&self.mcp)
            .header("content-type", content_type)
            .header("accept", "application/json, text/event-stream")
            .headers(map)
            .body(body);
        if let Some(t) = &self.bearer {
            rb = rb.bearer_auth(t);
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let session = header("mcp-session-id");
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"));
        Answer {
            status,
            content_type,
            session,
            text,
        }
    }

    /// POSTs a JSON body with string headers.
    async fn post(&self, body: &Value, headers: &[(&str, &str)], what: &str) -> Answer {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.post_raw("application/json", body.to_string(), &raw, what)
            .await
    }
}

/// Headers of one request, in order.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// A request expected to be refused: what it shows, its body, its headers and the header
/// the refusal names.
type Refusal<'a> = (&'a str, Value, Headers<'a>, &'a str);

/// A modern request: `params` with the `_meta` protocol version added.
fn modern(id: Value, method: &str, mut params: Value, version: &str) -> Value {
    params["_meta"] = json!({
        META_VERSION: version,
        "io.modelcontextprotocol/clientInfo": {"name": "modern-http-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The standard headers of a well-formed modern request for `method` (and `name`).
fn standard<'a>(method: &'a str, name: Option<&'a str>) -> Headers<'a> {
    let mut h = vec![("MCP-Protocol-Version", MODERN), ("Mcp-Method", method)];
    if let Some(n) = name {
        h.push(("Mcp-Name", n));
    }
    h
}

#[tokio::test]
async fn standard_header_mismatches_are_refused_with_the_request_id() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = Endpoint::of(&bridge);
    let list = |id: Value| modern(id, "tools/list", json!({}), MODERN);
    let call = |id: Value| {
        modern(
            id,
            "tools/call",
            json!({"name": "test_simple_text", "arguments": {}}),
            MODERN,
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
            modern(json!(3), "server/discover", json!({}), "v999.0.0"),
            standard("server/discover", None),
            "MCP-Protocol-Version",
        ),
        (
            "Mcp-Method missing",
            list(json!(4)),
            vec![("MCP-Protocol-Version", MODERN)],
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
            modern(
                json!(9),
                "prompts/get",
                json!({"name": "test_simple_prompt"}),
                MODERN,
            ),
            standard("prompts/get", Some("another_prompt")),
            "Mcp-Name",
        ),
        (
            "Mcp-Name missing on resources/read",
            modern(
                json!(10),
                "resources/read",
                json!({"uri": "test://static-text"}),
                MODERN,
            ),
            standard("resources/read", None),
            "Mcp-Name",
        ),
        (
            "Mcp-Name differs from params.uri",
            modern(
                json!(11),
                "resources/read",
                json!({"uri": "test://static-text"}),
                MODERN,
            ),
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
        let a = ep.post(&body, &headers, what).await;
        a.assert_mismatch(&body["id"], header, what);
    }

    // Characters outside visible ASCII, and a header sent twice.
    let body = call(json!(15));
    let a = ep
        .post_raw(
            "application/json",
            body.to_string(),
            &[
                ("MCP-Protocol-Version", MODERN.as_bytes()),
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
    let a = ep.post(&body, &headers, "Mcp-Name twice").await;
    a.assert_mismatch(&json!(16), "Mcp-Name", "Mcp-Name twice");
}

#[tokio::test]
async fn well_formed_modern_requests_pass_the_relay() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = Endpoint::of(&bridge);

    let body = modern(json!(1), "tools/list", json!({}), MODERN);
    ep.post(&body, &standard("tools/list", None), "tools/list")
        .await
        .assert_passed("tools/list");

    // Header names in any case, optional whitespace around values.
    let body = modern(
        json!(2),
        "tools/call",
        json!({"name": "test_simple_text", "arguments": {}}),
        MODERN,
    );
    let headers = [
        ("mcp-protocol-version", MODERN),
        ("MCP-METHOD", "tools/call"),
        ("mcp-name", "  test_simple_text  "),
    ];
    ep.post(&body, &headers, "case and whitespace")
        .await
        .assert_passed("case and whitespace");

    // A Base64-encoded name ("test_simple_text").
    let headers = standard("tools/call", Some("=?base64?dGVzdF9zaW1wbGVfdGV4dA==?="));
    ep.post(&body, &headers, "Base64 name")
        .await
        .assert_passed("Base64 name");

    let body = modern(
        json!("p"),
        "prompts/get",
        json!({"name": "test_simple_prompt"}),
        MODERN,
    );
    ep.post(
        &body,
        &standard("prompts/get", Some("test_simple_prompt")),
        "prompts/get",
    )
    .await
    .assert_passed("prompts/get");

    let body = modern(
        json!("r"),
        "resources/read",
        json!({"uri": "test://static-text"}),
        MODERN,
    );
    ep.post(
        &body,
        &standard("resources/read", Some("test://static-text")),
        "resources/read",
    )
    .await
    .assert_passed("resources/read");

    // An unknown version, named alike in the header and in _meta, is the bridge's to
    // answer: the relay does not refuse the header.
    let body = modern(json!(301), "server/discover", json!({}), "v999.0.0");
    let headers = [
        ("MCP-Protocol-Version", "v999.0.0"),
        ("Mcp-Method", "server/discover"),
    ];
    let a = ep.post(&body, &headers, "unknown version").await;
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
    let ep = Endpoint::of(&bridge);

    // initialize without any MCP header, with a stray Mcp-Method.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": {"name": "modern-http-test", "version": "0"}}});
    let a = ep
        .post(&init, &[("Mcp-Method", "tools/list")], "initialize")
        .await;
    assert_eq!(a.status, StatusCode::OK, "initialize: {a:?}");
    let session = a.session.clone().expect("a session id");
    assert_eq!(
        a.message().expect("initialize answer")["result"]["protocolVersion"],
        LEGACY
    );
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let a = ep
        .post(
            &note,
            &[
                ("Mcp-Session-Id", &session),
                ("MCP-Protocol-Version", LEGACY),
            ],
            "initialized",
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "initialized: {a:?}");

    // Mismatched Mcp-* headers mean nothing to an initialize-era request.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "test_simple_text", "arguments": {}}});
    let a = ep
        .post(
            &call,
            &[
                ("Mcp-Session-Id", &session),
                ("MCP-Protocol-Version", LEGACY),
                ("Mcp-Method", "prompts/list"),
                ("Mcp-Name", "=?base64?bad?="),
            ],
            "legacy tools/call",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "legacy tools/call: {a:?}");
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
        let a = ep
            .post_raw(
                content_type,
                list.to_string(),
                &[
                    ("Mcp-Session-Id", session.as_bytes()),
                    ("MCP-Protocol-Version", b"1999-01-01"),
                ],
                what,
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {a:?}");
        let m = a.message().expect("an error body");
        assert_eq!(m["error"]["code"], INVALID_REQUEST, "{what}: {m}");
        assert!(m["id"].is_null(), "{what}: {m}");
    }

    // A modern-looking notification is not a request: not checked.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1, "_meta": {META_VERSION: MODERN}}});
    ep.post(&note, &[], "modern notification")
        .await
        .assert_passed("modern notification");
}

/// A stdio MCP server whose one tool mirrors parameters into headers.
const HEADER_SERVER: &str = r#"
import json, sys
TOOLS = [{
    "name": "execute_sql",
    "description": "Runs a query in a region",
    "inputSchema": {
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "limit": {"type": "integer", "x-mcp-header": "Limit"},
            "options": {"type": "object", "properties": {
                "dry_run": {"type": "boolean", "x-mcp-header": "Dry-Run"}
            }},
            "query": {"type": "string"}
        },
        "required": ["region", "query"]
    }
}]
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
        continue
    method = msg["method"]
    params = msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}},
                  "serverInfo": {"name": "header-server", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": json.dumps(params.get("arguments"))}]}
    elif method == "ping":
        result = {}
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                          "error": {"code": -32601, "message": "Method not found"}}), flush=True)
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"#;

/// The `Mcp-Param-{Name}` checks, from the tool list the bridge reported, exercised while
/// the desktop is offline and the relay answers from that list.
#[tokio::test]
async fn param_headers_follow_the_reported_tool_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("header_server.py");
    std::fs::write(&script, HEADER_SERVER).expect("write the server");
    let relay = Relay::start(&["--grace-secs", "0.2"]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("header-params".into()),
        command: vec!["python3".into(), script.display().to_string()],
        ..BridgeOpts::default()
    });
    let ep = Endpoint::of(&bridge);

    // While live, a well-formed call passes.
    let call = |id: Value, args: Value| {
        modern(
            id,
            "tools/call",
            json!({"name": "execute_sql", "arguments": args}),
            MODERN,
        )
    };
    let base = standard("tools/call", Some("execute_sql"));
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = base.clone();
        h.extend_from_slice(extra);
        h
    };
    let args = json!({"region": "us-west1", "limit": 42, "query": "SELECT 1"});
    ep.post(
        &call(json!(1), args.clone()),
        &with(&[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Limit", "42")]),
        "live call",
    )
    .await
    .assert_passed("live call");

    // Give the bridge time to report its tool list, then take the desktop away.
    let listed = |a: &Answer| {
        a.message().is_some_and(|m| {
            m["result"]["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == "execute_sql"))
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(bridge);
    let list = json!({"jsonrpc": "2.0", "id": "l", "method": "tools/list"});
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let a = ep.post(&list, &[], "offline tools/list").await;
        if listed(&a) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never answered from the reported tool list: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let passes: Vec<(&str, Value, Headers<'_>)> = vec![
        (
            "all headers",
            args.clone(),
            with(&[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Limit", "42")]),
        ),
        (
            "header names in other cases, integer as 42.0",
            args.clone(),
            with(&[
                ("mcp-param-region", "us-west1"),
                ("MCP-PARAM-LIMIT", "42.0"),
            ]),
        ),
        (
            "absent and null values need no header",
            json!({"region": "us-west1", "limit": null, "query": "q"}),
            with(&[("Mcp-Param-Region", "us-west1")]),
        ),
        (
            "Base64 value",
            json!({"region": "Hello, 世界", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVsbG8sIOS4lueVjA==?=")]),
        ),
        (
            "value without the Base64 markers is literal",
            json!({"region": "=?base64?SGVsbG8=", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVsbG8=")]),
        ),
        (
            "nested boolean",
            json!({"region": "r", "query": "q", "options": {"dry_run": false}}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Dry-Run", "false")]),
        ),
        (
            "unannotated headers are ignored",
            json!({"region": "r", "query": "q"}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Query", "other")]),
        ),
    ];
    for (i, (what, args, headers)) in passes.into_iter().enumerate() {
        let a = ep.post(&call(json!(100 + i), args), &headers, what).await;
        a.assert_passed(what);
        assert_eq!(a.status, StatusCode::OK, "{what}: {a:?}");
    }

    let refusals: Vec<Refusal<'_>> = vec![
        (
            "header missing for a value in the body",
            args.clone(),
            with(&[("Mcp-Param-Region", "us-west1")]),
            "Mcp-Param-Limit",
        ),
        (
            "different string",
            args.clone(),
            with(&[("Mcp-Param-Region", "eu-west1"), ("Mcp-Param-Limit", "42")]),
            "Mcp-Param-Region",
        ),
        (
            "different integer",
            args.clone(),
            with(&[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Limit", "43")]),
            "Mcp-Param-Limit",
        ),
        (
            "header for an absent value",
            json!({"region": "r", "query": "q"}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Limit", "1")]),
            "Mcp-Param-Limit",
        ),
        (
            "invalid Base64 padding",
            json!({"region": "Hello", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVsbG8?=")]),
            "Mcp-Param-Region",
        ),
        (
            "invalid Base64 characters",
            json!({"region": "Hello", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?=")]),
            "Mcp-Param-Region",
        ),
        (
            "boolean spelled otherwise",
            json!({"region": "r", "query": "q", "options": {"dry_run": true}}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Dry-Run", "True")]),
            "Mcp-Param-Dry-Run",
        ),
    ];
    for (i, (what, args, headers, header)) in refusals.into_iter().enumerate() {
        let id = json!(format!("param-{i}"));
        let a = ep.post(&call(id.clone(), args), &headers, what).await;
        a.assert_mismatch(&id, header, what);
    }
}

#[tokio::test]
async fn a_client_accepting_only_sse_gets_sse() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = Endpoint::of(&bridge);
    let discover = modern(
        json!("openai-mcp-discover"),
        "server/discover",
        json!({}),
        MODERN,
    );
    let mut headers = standard("server/discover", None);

    let both = ep.post(&discover, &headers, "both media types").await;
    assert_eq!(both.status, StatusCode::OK, "{both:?}");
    assert_eq!(
        both.content_type.as_deref(),
        Some("application/json"),
        "{both:?}"
    );

    headers.push(("Accept", "text/event-stream"));
    let sse = ep.post(&discover, &headers, "text/event-stream only").await;
    assert_eq!(sse.status, StatusCode::OK, "{sse:?}");
    assert!(
        sse.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{sse:?}"
    );
    let m = sse.message().expect("an answer event");
    assert_eq!(m["id"], "openai-mcp-discover", "{m}");
    // The same answer whichever way it travels.
    assert_eq!(m["result"], both.message().expect("json")["result"], "{m}");
}

#[tokio::test]
async fn malformed_modern_fields_get_clear_errors() {
    let bridge = Bridge::start(BridgeOpts::default());
    let ep = Endpoint::of(&bridge);
    let caps = "io.modelcontextprotocol/clientCapabilities";
    let call = |id: u32, extra: Value| {
        let mut params = json!({"name": "test_simple_text", "arguments": {}});
        for (k, v) in extra.as_object().expect("object") {
            params[k] = v.clone();
        }
        modern(json!(id), "tools/call", params, MODERN)
    };
    let name = Some("test_simple_text");
    // (what, body, expected HTTP status, expected JSON-RPC code)
    let mut cases: Vec<(&str, Value, StatusCode, i64)> = vec![
        (
            "requestState not a string",
            call(1, json!({"requestState": 5})),
            StatusCode::BAD_REQUEST,
            -32602,
        ),
        (
            "requestState unknown",
            call(2, json!({"requestState": "rs1.00"})),
            StatusCode::BAD_REQUEST,
            -32602,
        ),
        (
            "inputResponses an array",
            call(3, json!({"inputResponses": [1, 2]})),
            StatusCode::BAD_REQUEST,
            -32602,
        ),
        (
            "inputResponses null",
            call(4, json!({"inputResponses": null})),
            StatusCode::BAD_REQUEST,
            -32602,
        ),
        (
            "an input response not an object",
            call(5, json!({"inputResponses": {"k": "v"}})),
            StatusCode::BAD_REQUEST,
            -32602,
        ),
    ];
    let mut bad_caps = call(6, json!({}));
    bad_caps["params"]["_meta"][caps] = json!("all");
    cases.push((
        "clientCapabilities not an object",
        bad_caps,
        StatusCode::BAD_REQUEST,
        -32602,
    ));
    for (what, body, status, code) in cases {
        let a = ep.post(&body, &standard("tools/call", name), what).await;
        assert_eq!(a.status, status, "{what}: {a:?}");
        let m = a
            .message()
            .unwrap_or_else(|| panic!("{what}: no JSON-RPC answer: {a:?}"));
        assert_eq!(m["error"]["code"], code, "{what}: {m}");
        assert_eq!(m["id"], body["id"], "{what}: {m}");
    }

    // A protocol version that is not a string cannot be compared with the header: refused
    // before it reaches the bridge, or by the bridge, never served.
    let mut numeric = modern(json!(7), "tools/list", json!({}), MODERN);
    numeric["params"]["_meta"][META_VERSION] = json!(20260728);
    let a = ep
        .post(&numeric, &standard("tools/list", None), "numeric version")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
    assert!(
        matches!(a.code(), Some(-32602) | Some(-32020)),
        "numeric version: {a:?}"
    );

    // A listen filter of the wrong shape subscribes to nothing, and says so.
    let listen = modern(
        json!(8),
        "subscriptions/listen",
        json!({"notifications": "everything"}),
        MODERN,
    );
    let client = &ep.client;
    let mut rb = client
        .post(&ep.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", MODERN)
        .header("Mcp-Method", "subscriptions/listen")
        .body(listen.to_string());
    if let Some(t) = &ep.bearer {
        rb = rb.bearer_auth(t);
    }
    let mut resp = rb.send().await.expect("listen");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(HTTP_TIMEOUT, resp.chunk())
            .await
            .expect("the acknowledgment in time")
            .expect("stream")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ack: Value = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .and_then(|d| serde_json::from_str(d.trim()).ok())
        .unwrap_or_else(|| panic!("no acknowledgment: {text}"));
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
