//! The last calls of each tunnel, for its owner's status page: when, which method (and
//! tool), which client, the HTTP status (and whether a JSON answer was a JSON-RPC error),
//! and how long the exchange took until its answer ended.
//!
//! [`Call::start`] is taken when the relay forwards an exchange to the bridge; the
//! request log's answer wrapper ([`crate::observe::reqlog`]) calls [`Call::finish`] when the
//! answer's body ends or the client goes away. Streams that only carry server messages (`GET`, the HTTP+SSE
//! stream) are not calls and are not recorded. Only names are kept (method, tool,
//! principal), never a body; each tunnel keeps its newest [`KEEP`] calls, in memory.

use protocol::sync::LockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol::{Request, RequestKind};

use crate::tunnels::tunnel::Tunnel;

/// Calls kept per tunnel.
pub const KEEP: usize = 50;
/// Longest method or tool name kept, in characters.
const MAX_NAME: usize = 100;
/// JSON answers up to this size are checked for a JSON-RPC error.
const CHECK_ERROR_MAX: usize = 64 * 1024;

/// One finished call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecentCall {
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The JSON-RPC method (`notification`/`response` labels for those), or `DELETE`.
    pub method: String,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// Who called (`oauth:<client id>`, `bearer:<digest prefix>`, `anonymous`).
    pub principal: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// Whether the (JSON) answer was a JSON-RPC error; `None` when not checked (streams,
    /// large answers).
    pub rpc_error: Option<bool>,
    /// Milliseconds from forwarding to the end of the answer.
    pub duration_ms: u64,
    /// Whether the answer was sent to its end (not cut by the client leaving).
    pub complete: bool,
    /// The bridge token that owned the tunnel (calls of a previous owner are not shown).
    pub owner: i64,
}

/// The newest calls of every tunnel.
#[derive(Default)]
pub struct RecentCalls {
    map: Mutex<HashMap<String, VecDeque<RecentCall>>>,
}

impl RecentCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<RecentCall>>> {
        self.map.locked()
    }

    /// Adds a call of `tunnel`, dropping its oldest beyond [`KEEP`].
    pub fn push(&self, tunnel: &str, call: RecentCall) {
        let mut map = self.lock();
        let calls = match map.get_mut(tunnel) {
            Some(c) => c,
            None => map.entry(tunnel.to_owned()).or_default(),
        };
        if calls.len() == KEEP {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The calls of `tunnel` made while `owner` owned it, newest first.
    pub fn list(&self, tunnel: &str, owner: i64) -> Vec<RecentCall> {
        self.lock()
            .get(tunnel)
            .map(|c| {
                c.iter()
                    .rev()
                    .filter(|c| c.owner == owner)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A call being forwarded.
pub struct Call {
    calls: Arc<RecentCalls>,
    tunnel: String,
    owner: i64,
    method: String,
    tool: Option<String>,
    principal: String,
    at_ms: i64,
    start: Instant,
}

impl Call {
    /// Notes a request about to be forwarded on `tunnel`; `None` for server streams.
    pub fn start(calls: &Arc<RecentCalls>, tunnel: &Tunnel, request: &Request) -> Option<Call> {
        let (method, tool) = match request.kind {
            RequestKind::Get | RequestKind::HttpSseOpen => return None,
            RequestKind::Delete => ("DELETE (end of session)".to_owned(), None),
            RequestKind::Post | RequestKind::HttpSsePost => names(&request.body),
        };
        Some(Call {
            calls: calls.clone(),
            tunnel: tunnel.name.clone(),
            owner: tunnel.token_id,
            method,
            tool,
            principal: printable(&request.principal),
            at_ms: protocol::time::now_ms(),
            start: Instant::now(),
        })
    }
}

/// The method and tool of a JSON-RPC body, found without parsing it whole.
fn names(body: &[u8]) -> (String, Option<String>) {
    let p = protocol::calls::peek(body);
    let method = match (p.method, p.has_id) {
        (Some(m), _) => printable(m),
        (None, true) => "response".to_owned(),
        (None, false) => "(unknown)".to_owned(),
    };
    let tool = match p.method {
        Some("tools/call") => p.params.and_then(protocol::calls::tool_name).map(printable),
        _ => None,
    };
    (method, tool)
}

/// A name made safe to show, cut at [`MAX_NAME`] characters.
fn printable(s: &str) -> String {
    protocol::text::printable(s, MAX_NAME)
}

impl Call {
    /// Records the call: its answer had this HTTP `status`, was (or not, or unknown) a
    /// JSON-RPC error, and was sent to its end or not.
    pub fn finish(self, status: u16, rpc_error: Option<bool>, complete: bool) {
        let Call {
            calls,
            tunnel,
            owner,
            method,
            tool,
            principal,
            at_ms,
            start,
        } = self;
        calls.push(
            &tunnel,
            RecentCall {
                at_ms,
                method,
                tool,
                principal,
                status,
                rpc_error,
                duration_ms: start.elapsed().as_millis() as u64,
                complete,
                owner,
            },
        );
    }
}

/// Whether a whole JSON answer of at most [`CHECK_ERROR_MAX`] bytes is a JSON-RPC error (a
/// scan of its top-level members; the answer is the bridge's, already valid JSON). `None`
/// for larger answers.
pub fn answer_is_error(data: &[u8]) -> Option<bool> {
    if data.len() > CHECK_ERROR_MAX {
        return None;
    }
    let mut error = None;
    protocol::scan::for_each_member(data, |key, _| {
        match key {
            b"error" => error = Some(true),
            b"result" => error = Some(false),
            _ => return true,
        }
        false
    });
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(i: usize, owner: i64) -> RecentCall {
        RecentCall {
            at_ms: i as i64,
            method: "tools/call".into(),
            tool: Some(format!("t{i}")),
            principal: "anonymous".into(),
            status: 200,
            rpc_error: Some(false),
            duration_ms: 1,
            complete: true,
            owner,
        }
    }

    #[test]
    fn ring_buffer_keeps_the_newest_calls_per_tunnel() {
        let r = RecentCalls::default();
        for i in 0..(KEEP + 13) {
            r.push("alpha", call(i, 1));
        }
        r.push("beta", call(0, 1));
        let alpha = r.list("alpha", 1);
        assert_eq!(alpha.len(), KEEP);
        assert_eq!(alpha[0].tool.as_deref(), Some(&*format!("t{}", KEEP + 12)));
        assert_eq!(alpha[KEEP - 1].tool.as_deref(), Some("t13"));
        assert_eq!(r.list("beta", 1).len(), 1);
        assert!(r.list("gamma", 1).is_empty());
        // A new owner of the name does not see the previous owner's calls.
        r.push("alpha", call(999, 2));
        assert_eq!(r.list("alpha", 2).len(), 1);
        assert_eq!(r.list("alpha", 1).len(), KEEP - 1);
    }

    #[test]
    fn names_without_bodies() {
        let (m, t) = names(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search","arguments":{"q":"secret text"}}}"#,
        );
        assert_eq!((m.as_str(), t.as_deref()), ("tools/call", Some("search")));
        let (m, t) = names(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
        assert_eq!((m.as_str(), t), ("response", None));
        let (m, _) = names(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(m, "notifications/initialized");
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "x".repeat(300)
        );
        assert_eq!(names(long.as_bytes()).0.chars().count(), MAX_NAME + 1);
        assert_eq!(printable("a\u{7}b"), "a\u{FFFD}b");
    }

    #[test]
    fn a_finished_call_is_recorded() {
        let calls = Arc::new(RecentCalls::default());
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let tunnel = Tunnel::new("files".into(), 1, protocol::ClientAuth::None, 7, tx, 16);
        let request = Request {
            exchange: 0,
            kind: RequestKind::Post,
            session: None,
            protocol_version: None,
            last_event_id: None,
            principal: "oauth:mcpcl_x".into(),
            body: bytes::Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            ),
        };
        let call = Call::start(&calls, &tunnel, &request).expect("a call");
        assert!(calls.list("files", 7).is_empty(), "not before it finishes");
        let answer = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        call.finish(200, answer_is_error(answer), true);
        let got = calls.list("files", 7);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tool.as_deref(), Some("echo"));
        assert_eq!(got[0].principal, "oauth:mcpcl_x");
        assert_eq!(got[0].rpc_error, Some(true));
        assert!(got[0].complete);
        assert_eq!(answer_is_error(br#"{"id":1,"result":{}}"#), Some(false));
        assert_eq!(answer_is_error(&vec![b' '; CHECK_ERROR_MAX + 1]), None);
        let get = Request {
            kind: RequestKind::Get,
            ..request
        };
        assert!(
            Call::start(&calls, &tunnel, &get).is_none(),
            "streams are not calls"
        );
    }
}
