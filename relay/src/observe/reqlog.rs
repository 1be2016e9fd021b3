//! One log line per public MCP request, and the request metrics.
//!
//! [`middleware`] wraps every route. For the MCP routes (`/<name>/mcp`, `/<name>/sse`,
//! `/<name>/messages`) it measures the time to the answer's head, counts the body bytes,
//! and when the answer's body ends (or the client goes away) logs one line at `info`
//! under the target `relay::request`:
//!
//! ```text
//! request request_id=1a2b0000002f tunnel=my-files principal=oauth:abc http_method=POST
//!         mcp_method=tools/call tool=search status=200 duration_ms=12.5 bytes_in=180 bytes_out=912
//! ```
//!
//! The handlers tell the middleware what it cannot see from the outside (the JSON-RPC
//! method, the principal, the exchange number, the OAuth step) through a task-local
//! [`Note`]; outside the middleware those calls do nothing. `request_id` is the exchange
//! number in hex ([`RequestId`]), the same number the bridge logs for that request.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode, Uri, header};
use protocol::jsonrpc::{Envelope, Kind};

use crate::observe::metrics::{self, Metrics, OAuthStep};

/// Target of the per-request log lines.
pub const TARGET: &str = "relay::request";

pub use protocol::calls::{CallKind, RequestId, peek, tool_name};

/// What the handler of the current request learnt about it.
#[derive(Default)]
pub struct Note {
    kind: Option<CallKind>,
    /// An unlisted method's name, for the log only.
    method: Option<String>,
    tool: Option<String>,
    principal: Option<String>,
    exchange: Option<u64>,
    bytes_in: u64,
    oauth: Option<OAuthStep>,
    /// The call to record for the tunnel owner's status page when the answer ends.
    recent: Option<crate::observe::recent::Call>,
}

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.borrow_mut()));
}

/// Whether request lines are logged (so worth collecting names for).
pub fn log_enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// Notes a JSON-RPC body the relay read and parsed: its kind, size, and (for the log
/// only) an unlisted method's name and a `tools/call`'s tool name, found by scanning only
/// the `params` object's top level.
pub fn note_body(body: &[u8], env: &Envelope<'_>) {
    note(|n| {
        n.bytes_in = body.len() as u64;
        let kind = match env.kind {
            Kind::Request => CallKind::of_method(env.method.as_deref().unwrap_or("")),
            Kind::Notification => CallKind::Notification,
            Kind::Response => CallKind::Response,
        };
        n.kind = Some(kind);
        if !log_enabled() {
            return;
        }
        match kind {
            CallKind::Other => n.method = env.method.as_deref().map(printable),
            CallKind::ToolsCall => {
                n.tool = env
                    .params
                    .clone()
                    .and_then(|r| body.get(r))
                    .and_then(tool_name)
                    .map(printable);
            }
            _ => {}
        }
    });
}

/// Notes who the client is (a principal name such as `oauth:<client id>`, never a token).
pub fn note_principal(principal: &str) {
    if log_enabled() {
        note(|n| n.principal = Some(principal.to_owned()));
    }
}

/// Notes the exchange the request was forwarded on.
pub fn note_exchange(exchange: u64) {
    note(|n| n.exchange = Some(exchange));
}

/// Notes the call the status page records when the answer ends.
pub fn note_recent(call: crate::observe::recent::Call) {
    note(|n| n.recent = Some(call));
}

/// Notes that the request is this OAuth step (counted with its outcome when it ends).
pub fn note_oauth(step: OAuthStep) {
    note(|n| n.oauth = Some(step));
}

/// Which family of routes a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Mcp,
    Sse,
    Messages,
    Connect,
    Other,
}

impl Route {
    /// `/<name>/<last>` paths; anything else is [`Route::Other`].
    fn of(path: &str) -> Route {
        let Some(rest) = path.strip_prefix('/') else {
            return Route::Other;
        };
        let Some((name, last)) = rest.split_once('/') else {
            return Route::Other;
        };
        // `/status/<name>` is the status route, not a tunnel called "status".
        if name.is_empty() || name == "status" {
            return Route::Other;
        }
        match last {
            "mcp" => Route::Mcp,
            "sse" => Route::Sse,
            "messages" => Route::Messages,
            "connect" => Route::Connect,
            _ => Route::Other,
        }
    }
}

/// The kind of an MCP request from its route, HTTP method and note.
fn kind_of(route: Route, method: &Method, noted: Option<CallKind>) -> CallKind {
    match (route, method) {
        (Route::Mcp, &Method::GET) => CallKind::Stream,
        (Route::Mcp, &Method::DELETE) => CallKind::Delete,
        (Route::Sse, &Method::GET) => CallKind::SseOpen,
        (Route::Mcp | Route::Messages, &Method::POST) => noted.unwrap_or(CallKind::Unknown),
        _ => CallKind::Unknown,
    }
}

/// Why the relay refused a bridge's WebSocket before its handshake, from the answer's
/// status.
fn connect_refusal(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::SWITCHING_PROTOCOLS => None,
        StatusCode::FORBIDDEN => Some("origin"),
        StatusCode::UNAUTHORIZED => Some("bad_token"),
        StatusCode::NOT_FOUND => Some("bad_name"),
        StatusCode::SERVICE_UNAVAILABLE => Some("busy"),
        _ => Some("malformed"),
    }
}

/// Outcome label of an OAuth answer: `ok`, `refused` (4xx, or a redirect carrying an
/// OAuth `error`), or `error` (5xx).
pub fn oauth_outcome(resp: &Response) -> &'static str {
    let status = resp.status();
    if status.is_server_error() {
        return "error";
    }
    if status.is_client_error() {
        return "refused";
    }
    if status.is_redirection() {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        let has_error = location
            .split(|&b| b == b'?' || b == b'&')
            .skip(1)
            .any(|p| p.starts_with(b"error="));
        if has_error {
            return "refused";
        }
    }
    "ok"
}

/// Measures, counts and logs the relay's public requests (module documentation).
pub async fn middleware(req: Request, next: Next) -> Response {
    let route = Route::of(req.uri().path());
    if route == Route::Other
        && !req.uri().path().starts_with("/oauth/")
        && !req.uri().path().starts_with("/.well-known/")
    {
        return next.run(req).await;
    }
    let start = Instant::now();
    let http_method = req.method().clone();
    let uri = req.uri().clone();
    let (resp, mut note) = NOTE
        .scope(RefCell::new(Note::default()), async move {
            let resp = next.run(req).await;
            (resp, NOTE.with(|n| n.take()))
        })
        .await;
    let metrics = metrics::get();
    match route {
        Route::Other => {
            if let (Some(m), Some(step)) = (metrics, note.oauth) {
                m.oauth_step(step, oauth_outcome(&resp));
            }
            return resp;
        }
        Route::Connect => {
            if let (Some(m), Some(reason)) = (metrics, connect_refusal(resp.status())) {
                m.bridge_refused(reason);
            }
            return resp;
        }
        Route::Mcp | Route::Sse | Route::Messages => {}
    }
    let kind = kind_of(route, &http_method, note.kind);
    let status = resp.status();
    if let Some(m) = metrics {
        m.request(kind, status, start.elapsed(), note.bytes_in);
    }
    let log = log_enabled();
    let recent = note.recent.take();
    if !log && metrics.is_none() && recent.is_none() {
        return resp;
    }
    // A small JSON answer is looked at for the status page (was it a JSON-RPC error?).
    let check_json = recent.is_some()
        && resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let (parts, body) = resp.into_parts();
    let ending = Ending {
        start,
        status,
        kind,
        http_method,
        uri,
        note,
        bytes_out: 0,
        ended: false,
        log,
        metrics,
        recent,
        check_json,
        rpc_error: None,
    };
    Response::from_parts(
        parts,
        Body::new(Counted {
            inner: body,
            ending,
        }),
    )
}

/// What is logged and counted when an answer's body ends.
struct Ending {
    start: Instant,
    status: StatusCode,
    kind: CallKind,
    http_method: Method,
    uri: Uri,
    note: Note,
    bytes_out: u64,
    ended: bool,
    log: bool,
    metrics: Option<&'static Metrics>,
    /// The call the status page records.
    recent: Option<crate::observe::recent::Call>,
    /// Whether the answer's first piece is still to be checked for a JSON-RPC error.
    check_json: bool,
    rpc_error: Option<bool>,
}

impl Ending {
    fn finish(&mut self, complete: bool) {
        if let Some(call) = self.recent.take() {
            call.finish(self.status.as_u16(), self.rpc_error, complete);
        }
        if let Some(m) = self.metrics {
            m.bytes_out(self.bytes_out);
        }
        if !self.log {
            return;
        }
        let tunnel = self
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        let n = &self.note;
        let mcp_method = n.method.as_deref().unwrap_or(self.kind.as_str());
        let duration_ms = self.start.elapsed().as_micros() as f64 / 1000.0;
        tracing::info!(
            target: TARGET,
            request_id = n.exchange.map(|e| tracing::field::display(RequestId(e))),
            tunnel,
            principal = n.principal.as_deref(),
            http_method = %self.http_method,
            mcp_method,
            tool = n.tool.as_deref(),
            status = self.status.as_u16(),
            duration_ms,
            bytes_in = n.bytes_in,
            bytes_out = self.bytes_out,
            complete,
            "request"
        );
    }
}

/// An answer body that counts its bytes and reports when it ends or is dropped.
struct Counted {
    inner: Body,
    ending: Ending,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.ending.bytes_out += data.len() as u64;
                    // A whole JSON answer in one piece.
                    if std::mem::take(&mut this.ending.check_json) && this.inner.is_end_stream() {
                        this.ending.rpc_error = crate::observe::recent::answer_is_error(data);
                    }
                }
            }
            Poll::Ready(None) => this.ending.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let complete = self.ending.ended || self.inner.is_end_stream();
        self.ending.finish(complete);
    }
}

/// A client-supplied name made safe for the log.
fn printable(s: &str) -> String {
    protocol::text::printable(s, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_labels() {
        assert_eq!(Route::of("/abc/mcp"), Route::Mcp);
        assert_eq!(Route::of("/abc/sse"), Route::Sse);
        assert_eq!(Route::of("/abc/messages"), Route::Messages);
        assert_eq!(Route::of("/abc/connect"), Route::Connect);
        for other in [
            "/healthz",
            "/metrics",
            "//mcp",
            "/oauth/token",
            "/a/b/mcp",
            "/status/mcp",
            "",
        ] {
            assert_eq!(Route::of(other), Route::Other, "{other}");
        }
        assert_eq!(
            kind_of(Route::Mcp, &Method::POST, Some(CallKind::ToolsCall)),
            CallKind::ToolsCall
        );
        assert_eq!(kind_of(Route::Mcp, &Method::POST, None), CallKind::Unknown);
        assert_eq!(kind_of(Route::Mcp, &Method::GET, None), CallKind::Stream);
        assert_eq!(kind_of(Route::Sse, &Method::GET, None), CallKind::SseOpen);
        assert_eq!(kind_of(Route::Mcp, &Method::PUT, None), CallKind::Unknown);
        assert_eq!(printable("a\u{7}b"), "a\u{FFFD}b");
        assert_eq!(printable(&"x".repeat(300)).chars().count(), 101);
    }

    #[test]
    fn oauth_outcomes() {
        let with = |status: u16, location: Option<&str>| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(l) = location {
                r.headers_mut().insert(header::LOCATION, l.parse().unwrap());
            }
            oauth_outcome(&r)
        };
        assert_eq!(with(200, None), "ok");
        assert_eq!(with(302, Some("https://claude.ai/cb?code=x&state=y")), "ok");
        assert_eq!(
            with(
                302,
                Some("https://claude.ai/cb?error=access_denied&state=y")
            ),
            "refused"
        );
        assert_eq!(
            with(302, Some("https://c.example/cb?state=error%3Dx")),
            "ok"
        );
        assert_eq!(with(400, None), "refused");
        assert_eq!(with(503, None), "error");
        assert_eq!(connect_refusal(StatusCode::SWITCHING_PROTOCOLS), None);
        assert_eq!(connect_refusal(StatusCode::FORBIDDEN), Some("origin"));
    }
}
