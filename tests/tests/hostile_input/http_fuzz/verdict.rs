//! What is acceptable for each framing, the violations found, and their explanations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::HEAD_LIMIT;
use super::exchange::{Outcome, Resp, find};
use super::generator::{Case, Framing};

// ----- checking ----------------------------------------------------------------------------

/// What the workers collect.
#[derive(Default)]
pub(super) struct Results {
    /// Outcomes by framing and status.
    pub(super) stats: BTreeMap<String, usize>,
    pub(super) violations: Vec<Violation>,
    /// The slowest response head and its request.
    pub(super) slowest: (Duration, usize),
    /// One line per request, when `HTTP_FUZZ_TRACE` names a file.
    pub(super) trace: Vec<String>,
}

/// What went wrong with one request.
pub(super) struct Violation {
    pub(super) kind: &'static str,
    /// The answer's status and body start, to group identical findings.
    pub(super) signature: String,
    pub(super) request: String,
    pub(super) observed: String,
}

/// A readable excerpt of bytes.
pub(super) fn excerpt(b: &[u8], max: usize) -> String {
    let shown = &b[..b.len().min(max)];
    let mut s = shown.escape_ascii().to_string();
    if b.len() > max {
        let _ = write!(s, "… ({} bytes in all)", b.len());
    }
    s
}

/// The request as reported: the head in full (long lines cut) and the body's start.
pub(super) fn describe_request(case: &Case) -> String {
    let head_end = find(&case.bytes, b"\r\n\r\n").map_or(case.bytes.len(), |e| e + 4);
    let (head, body) = case.bytes.split_at(head_end);
    let mut s = format!("{:?} request #{}:\n", case.framing, case.index);
    for line in head.split(|&b| b == b'\n') {
        let _ = writeln!(s, "    {}", excerpt(line, 300));
    }
    if !body.is_empty() {
        let _ = writeln!(s, "    body: {}", excerpt(body, 300));
    }
    s
}

pub(super) fn describe_response(r: &Resp) -> String {
    let mut s = format!("{} after {:?}", r.status, r.elapsed);
    for (k, v) in &r.headers {
        let _ = write!(s, "; {k}: {}", excerpt(v.as_bytes(), 100));
    }
    let _ = write!(s, "; body: {}", excerpt(&r.body, 400));
    s
}

/// What a violation kind means and what is expected instead.
pub(super) fn explain(kind: &str) -> &'static str {
    match kind {
        KIND_5XX => {
            "    expected: no 5xx but 502/503 (tunnel unavailable); a 500 means a handler \
             failed or panicked"
        }
        KIND_SLOW => "    expected: every response head within HEAD_LIMIT",
        KIND_NOT_JSONRPC => {
            "    expected: every refusal on /<name>/mcp is a JSON-RPC error object (as \
             relay/src/util/http_error.rs builds), so MCP clients can show why; this answer comes from \
             the framework (e.g. axum's Path extractor rejecting the tunnel name), not the relay"
        }
        KIND_CLOSED => "    expected: a response (any status) to a well-formed request",
        KIND_SILENT => "    expected: a response, or at least a close, within HEAD_LIMIT",
        _ => "    expected: a parseable HTTP/1.x response",
    }
}

/// Violation kinds.
pub(super) const KIND_5XX: &str = "5xx other than 502/503";
pub(super) const KIND_SLOW: &str = "slow response head";
pub(super) const KIND_NOT_JSONRPC: &str = "4xx on /<name>/mcp without a JSON-RPC error body";
pub(super) const KIND_CLOSED: &str = "well-formed request closed without a response";
pub(super) const KIND_SILENT: &str = "no response (nor close) within the limit";
pub(super) const KIND_GARBLED: &str = "unparseable response";

/// Whether a body is a JSON-RPC error object.
pub(super) fn is_jsonrpc_error(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    v["jsonrpc"] == "2.0"
        && v["error"]["code"].is_i64()
        && v["error"]["message"].is_string()
        && v.get("id").is_some()
}

/// Checks one outcome, returning the violations and a label for the statistics.
pub(super) fn check(case: &Case, outcome: &Outcome) -> (String, Vec<Violation>) {
    let mut found = Vec::new();
    let signature = match outcome {
        Outcome::Response(r) => format!("{} {}", r.status, excerpt(&r.body, 80)),
        Outcome::Closed { error, .. } => format!("closed ({error})"),
        Outcome::Silent { .. } => "nothing".to_owned(),
        Outcome::Garbled { why, .. } => format!("garbled ({why})"),
    };
    let mut violation = |kind: &'static str, observed: String| {
        found.push(Violation {
            kind,
            signature: signature.clone(),
            request: describe_request(case),
            observed,
        });
    };
    let label = match outcome {
        Outcome::Response(r) => {
            if r.status >= 500 && r.status != 502 && r.status != 503 {
                violation(KIND_5XX, describe_response(r));
            }
            if r.elapsed > HEAD_LIMIT {
                violation(KIND_SLOW, describe_response(r));
            }
            if case.mcp_route
                && (400..500).contains(&r.status)
                && !r.body.is_empty()
                && !is_jsonrpc_error(&r.body)
            {
                violation(KIND_NOT_JSONRPC, describe_response(r));
            }
            let sse = r
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream"));
            format!(
                "{:?} {}{}",
                case.framing,
                r.status,
                if sse { " (SSE)" } else { "" }
            )
        }
        Outcome::Closed { partial, error } => {
            if case.framing == Framing::WellFormed {
                violation(
                    KIND_CLOSED,
                    format!("{error}; bytes received: {}", excerpt(partial, 300)),
                );
            }
            format!("{:?} closed", case.framing)
        }
        Outcome::Silent { partial } => {
            if case.framing != Framing::Incomplete {
                violation(
                    KIND_SILENT,
                    format!(
                        "nothing complete within {HEAD_LIMIT:?}; bytes received: {}",
                        excerpt(partial, 300)
                    ),
                );
            }
            format!("{:?} silent", case.framing)
        }
        Outcome::Garbled { data, why } => {
            if !(case.upgrade || case.framing == Framing::Incomplete) {
                violation(KIND_GARBLED, format!("{why}: {}", excerpt(data, 300)));
            }
            format!("{:?} garbled", case.framing)
        }
    };
    (label, found)
}
