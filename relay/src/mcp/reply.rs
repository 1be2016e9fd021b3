//! Turns the frames of one exchange into an HTTP answer.
//!
//! The relay holds the HTTP head until the bridge's first frame: a final frame becomes one
//! `application/json` body (or an empty body, e.g. 202); anything else, or silence longer
//! than the keep-alive interval, becomes an SSE stream with keep-alive comments until the
//! final frame. An HTTP+SSE session's stream outlives a cut of the bridge's connection when
//! the bridge comes back within the grace period (see [`crate::tunnels::http_sse`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use protocol::Response as Frame;
use protocol::jsonrpc::{UNAVAILABLE, error_response};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::tunnels::http_sse::Carry;
use crate::tunnels::tunnel::Exchange;

/// How SSE events are written.
#[derive(Debug, Clone)]
pub enum SseStyle {
    /// Streamable HTTP: `data:` lines, with `id:` when the bridge gives one.
    Streamable,
    /// Streamable HTTP whose stream can be resumed: as `Streamable`, starting with a
    /// priming event (`retry`, an id, empty data), and closed after `close_after` if set
    /// (the client then resumes it).
    Resumable {
        /// How long the stream stays open.
        close_after: Option<Duration>,
    },
    /// The HTTP+SSE transport: an `endpoint` event first (built from this base, ending in
    /// `?sessionId=`), then `event: message`.
    HttpSse {
        /// The messages URL up to and including `sessionId=`.
        endpoint_prefix: String,
        /// How the stream goes on over the bridge's next connection if this one drops
        /// (`None`: it ends with the connection).
        carry: Option<Arc<Carry>>,
    },
}

/// How long a client waits before resuming a stream that closed (the SSE `retry` field).
const RETRY_MS: u64 = 1000;

/// How long a resumable exchange may stay silent before its SSE stream opens (quicker
/// answers stay single JSON bodies).
const PRIME_AFTER: Duration = Duration::from_secs(1);

const GONE: &str = "the answer stream ended early (the desktop bridge disconnected, or this \
                    client fell behind reading it); the request may not have completed, retry it";

/// Waits for the bridge's answer and builds the HTTP response. `request_id` is the raw
/// JSON-RPC id of the request, used to answer it with an error if the bridge goes away;
/// `accepts_json` is false for a client that accepts only `text/event-stream` (its answers
/// are always SSE streams).
pub async fn answer_exchange(
    mut ex: Exchange,
    keepalive: Duration,
    style: SseStyle,
    request_id: Option<Bytes>,
    accepts_json: bool,
) -> Response {
    // A resumable stream opens early (primed), so a slow call is resumable soon.
    let wait = match style {
        SseStyle::Resumable { .. } => keepalive.min(PRIME_AFTER),
        _ => keepalive,
    };
    let first = tokio::select! {
        f = ex.next() => f,
        _ = tokio::time::sleep(wait) => {
            return sse(ex, None, keepalive, style, request_id);
        }
    };
    match first {
        None => {
            let body = error_response(request_id.as_deref().unwrap_or(b"null"), UNAVAILABLE, GONE);
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Some(f) if f.is_final() && !f.wants_stream() && (accepts_json || f.body.is_empty()) => {
            single(f)
        }
        Some(f) => sse(ex, Some(f), keepalive, style, request_id),
    }
}

/// An SSE stream that only carries keep-alive comments (a GET while the desktop is away).
pub fn keepalive_only(keepalive: Duration) -> Response {
    let ticker = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    let stream = futures_util::stream::unfold(ticker, |mut t| async move {
        t.tick().await;
        Some((
            Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(b": keepalive\n\n")),
            t,
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    sse_headers(&mut resp);
    resp
}

fn sse_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

fn status_of(f: &Frame) -> StatusCode {
    StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY)
}

fn session_header(resp: &mut Response, f: &Frame) {
    if let Some(s) = &f.session
        && let Ok(v) = HeaderValue::from_str(s)
    {
        resp.headers_mut().insert("mcp-session-id", v);
    }
}

/// A complete answer in one body.
fn single(f: Frame) -> Response {
    let status = status_of(&f);
    let mut resp = if f.body.is_empty() {
        Response::new(Body::empty())
    } else {
        let mut r = Response::new(Body::from(f.body.clone()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    *resp.status_mut() = status;
    session_header(&mut resp, &f);
    resp
}

/// An HTTP+SSE stream waiting for the bridge's next connection to carry it on.
type Reattaching = Pin<Box<dyn Future<Output = Option<(Exchange, Frame)>> + Send>>;

struct SseState {
    ex: Exchange,
    queue: VecDeque<Bytes>,
    ticker: Interval,
    finished: bool,
    style: SseStyle,
    /// The request's id, to close its stream with an error if the bridge goes away.
    request_id: Option<Bytes>,
    /// When the stream is closed early (SSE polling); the client resumes it.
    close_at: Option<Instant>,
    /// An HTTP+SSE stream's session (named by the bridge's first frame).
    session: Option<String>,
    /// The bridge's connection dropped: waiting for the next one to carry the HTTP+SSE
    /// stream on.
    reattaching: Option<Reattaching>,
}

fn sse(
    ex: Exchange,
    first: Option<Frame>,
    keepalive: Duration,
    style: SseStyle,
    request_id: Option<Bytes>,
) -> Response {
    let status = first.as_ref().map(status_of).unwrap_or(StatusCode::OK);
    let mut queue = VecDeque::new();
    let mut finished = false;
    let mut http_sse_session = None;
    if let SseStyle::HttpSse {
        endpoint_prefix, ..
    } = &style
    {
        let session = first
            .as_ref()
            .and_then(|f| f.session.as_deref())
            .unwrap_or("");
        http_sse_session = (!session.is_empty()).then(|| session.to_owned());
        let mut ev = BytesMut::new();
        ev.put_slice(b"event: endpoint\ndata: ");
        ev.put_slice(endpoint_prefix.as_bytes());
        ev.put_slice(session.as_bytes());
        ev.put_slice(b"\n\n");
        queue.push_back(ev.freeze());
    }
    let mut close_at = None;
    if let SseStyle::Resumable { close_after } = &style {
        close_at = close_after.map(|d| Instant::now() + d);
        let id = protocol::event_id(ex.id(), 0);
        let ev = format!("retry: {RETRY_MS}\nid: {id}\ndata: \n\n");
        queue.push_back(Bytes::from(ev));
    }
    if let Some(f) = &first {
        if !f.body.is_empty() {
            queue.push_back(event(&style, f));
        }
        finished = f.is_final();
    }
    let mut ticker = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = SseState {
        ex,
        queue,
        ticker,
        finished,
        style,
        request_id,
        close_at,
        session: http_sse_session,
        reattaching: None,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.queue.pop_front() {
                return Some((Ok::<Bytes, std::convert::Infallible>(b), st));
            }
            if st.finished {
                return None;
            }
            if let Some(reattaching) = st.reattaching.as_mut() {
                // The client's stream stays open (keep-alives) while the bridge is away.
                tokio::select! {
                    carried = reattaching => {
                        st.reattaching = None;
                        match carried {
                            Some((ex, first)) => {
                                // The old exchange ended with its connection: nothing to
                                // cancel.
                                st.ex = ex;
                                st.finished = first.is_final();
                                if !first.body.is_empty() {
                                    let ev = event(&st.style, &first);
                                    st.queue.push_back(ev);
                                }
                            }
                            None => st.finished = true,
                        }
                    }
                    _ = st.ticker.tick() => {
                        st.queue.push_back(Bytes::from_static(b": keepalive\n\n"));
                    }
                }
                continue;
            }
            tokio::select! {
                f = st.ex.next() => match f {
                    Some(f) => {
                        st.finished = f.is_final();
                        if !f.body.is_empty() {
                            let ev = event(&st.style, &f);
                            st.queue.push_back(ev);
                        }
                    }
                    None => match reattach(&st) {
                        Some(r) => st.reattaching = Some(r),
                        None => {
                            st.finished = true;
                            if let Some(id) = st.request_id.take() {
                                let body = error_response(&id, UNAVAILABLE, GONE);
                                let ev = format!("data: {}\n\n", String::from_utf8_lossy(&body));
                                st.queue.push_back(Bytes::from(ev));
                            }
                        }
                    },
                },
                _ = st.ticker.tick() => {
                    st.queue.push_back(Bytes::from_static(b": keepalive\n\n"));
                }
                _ = sleep_until_opt(st.close_at), if st.close_at.is_some() => {
                    // Ends the response; the exchange's drop tells the bridge, which keeps
                    // the stream's messages for the client's resumption.
                    return None;
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    sse_headers(&mut resp);
    if let Some(f) = &first {
        session_header(&mut resp, f);
    }
    resp
}

/// How an HTTP+SSE stream whose exchange ended without a final frame goes on: when the
/// bridge's connection dropped (not this exchange alone: a client that fell behind is
/// dropped for good), over its next connection.
fn reattach(st: &SseState) -> Option<Reattaching> {
    let SseStyle::HttpSse {
        carry: Some(carry), ..
    } = &st.style
    else {
        return None;
    };
    let old = st.ex.tunnel();
    let session = st.session.clone()?;
    if !old.closed.is_cancelled() || !old.sse_reattach {
        return None;
    }
    let (carry, old) = (carry.clone(), old.clone());
    Some(Box::pin(async move { carry.reattach(old, &session).await }))
}

/// Formats one message as an SSE event.
fn event(style: &SseStyle, f: &Frame) -> Bytes {
    let mut ev = BytesMut::with_capacity(f.body.len() + 32);
    if let Some(id) = &f.event_id {
        ev.put_slice(b"id: ");
        ev.put_slice(id.as_bytes());
        ev.put_u8(b'\n');
    }
    if matches!(style, SseStyle::HttpSse { .. }) {
        ev.put_slice(b"event: message\n");
    }
    for line in f.body.split(|&b| b == b'\n') {
        ev.put_slice(b"data: ");
        ev.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        ev.put_u8(b'\n');
    }
    ev.put_u8(b'\n');
    ev.freeze()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
