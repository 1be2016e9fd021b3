//! What the policy tests share: a client that posts in either era (a handshake-era
//! session, none, or the stateless envelope with its headers), the tool list the hiding
//! policy leaves, and the audit log's records.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use e2e::mcp::{
    HANDSHAKE_2025_06, HttpSse, META_VERSION, McpClient, Reply, no_headers, session_headers,
    stateless_headers,
};
use e2e::{Bridge, BridgeOpts};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The JSON-RPC error code of a call of a hidden (or unknown) tool.
const UNKNOWN_TOOL: i64 = -32602;

/// Longest wait for one ordinary exchange.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// A client of a tunnel and its HTTP+SSE endpoint.
#[derive(Clone)]
pub(crate) struct PolicyClient {
    pub(crate) mcp: McpClient,
    sse: String,
}

impl PolicyClient {
    pub(crate) fn of(bridge: &Bridge) -> Self {
        Self {
            mcp: McpClient::of(bridge).with_limit(LIMIT),
            sse: bridge.sse_url.clone(),
        }
    }

    /// POSTs `body` in the handshake-era `session` (if any), with the headers a stateless
    /// request mirrors when it carries the envelope; the whole answer.
    pub(crate) async fn post(&self, body: &Value, session: Option<&str>) -> Reply {
        let what = body["method"].as_str().unwrap_or("?").to_owned();
        self.mcp
            .post(body, &headers_for(body, session), &what)
            .await
    }

    /// A 2025-06-18 session.
    pub(crate) async fn initialize(&self) -> String {
        self.mcp.initialize(HANDSHAKE_2025_06).await.0
    }

    /// A session of the HTTP+SSE transport.
    pub(crate) async fn http_sse(&self) -> HttpSse {
        HttpSse::open(&self.mcp, &self.sse).await
    }
}

/// The headers of `body` in `session` (if any), plus the mirrored ones of a stateless
/// request.
pub(crate) fn headers_for(body: &Value, session: Option<&str>) -> Vec<(String, String)> {
    let mut h = match session {
        Some(s) => session_headers(s, HANDSHAKE_2025_06),
        None => no_headers(),
    };
    if body["params"]["_meta"][META_VERSION] == e2e::mcp::STATELESS {
        h.extend(stateless_headers(body));
    }
    h
}

/// The same request in the 2026-07-28 revision (an envelope without client info).
pub(crate) fn stateless_envelope(mut body: Value) -> Value {
    if !body["params"].is_object() {
        body["params"] = json!({});
    }
    body["params"]["_meta"] = json!({
        META_VERSION: e2e::mcp::STATELESS,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    body
}

pub(crate) fn names(result: &Value) -> BTreeSet<String> {
    result["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {result}"))
        .iter()
        .map(|t| t["name"].as_str().expect("named").to_owned())
        .collect()
}

pub(crate) fn tool<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("{name} missing from {result}"))
}

pub(crate) fn text(result: &Value) -> String {
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
pub(crate) fn check_list(result: &Value, era: &str) {
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

pub(crate) fn assert_unknown_tool(answer: &Value, tool: &str, era: &str) {
    assert_eq!(answer["error"]["code"], UNKNOWN_TOOL, "{era}: {answer}");
    assert_eq!(
        answer["error"]["message"],
        format!("Unknown tool: {tool}"),
        "{era}: {answer}"
    );
}

/// The audit log's records (every line must be JSON).
pub(crate) fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: audit line {l:?}")))
        .collect()
}

/// Waits until the audit log has at least `n` records.
pub(crate) async fn audit_wait(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let lines = audit_lines(path);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn check_record(r: &Value) {
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

/// The hiding policy: tools allowed by name and by glob, one of them denied again, and
/// annotation overrides, with an audit log.
pub(crate) fn hiding(audit: &Path) -> BridgeOpts {
    BridgeOpts::default()
        .flags("--allow-tool echo --allow-tool sl?w --allow-tool test_simple_* --allow-tool exit")
        .flags("--deny-tool [e]xit --read-only-tool echo --destructive-tool slow")
        .args(&["--audit-log", audit.to_str().unwrap()])
}

pub(crate) fn hiding_bridge(audit: &Path) -> Bridge {
    hiding(audit).start()
}
