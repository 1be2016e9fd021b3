//! `echo-server --http [ADDR]`: the same server over Streamable HTTP, as small as that
//! transport allows, for the benchmark's HTTP-upstream figures.
//!
//! An axum server on a single-threaded (`current_thread`) runtime with `TCP_NODELAY` on
//! every accepted socket, like `null-http`, serving one endpoint, `/mcp`:
//!
//! * `POST` of `initialize` opens a session: the answer carries a new `Mcp-Session-Id`;
//! * every other `POST` must name a known session (`400` without one, `404` for an unknown
//!   one); a request is answered with one JSON body (never an SSE stream), a notification
//!   or a response with `202 Accepted`;
//! * `GET` is `405` (the server sends nothing on its own), `DELETE` ends the session.
//!
//! The requests are handled by the same code as on stdio ([`crate::handle`]), so the tools
//! and the answers are the same. Batches are refused (`400`). It prints
//! `Listening on ADDR` on stdout once ready and serves until killed.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;

use crate::{Message, handle, write_reply};

/// The session header.
const SESSION: &str = "mcp-session-id";

/// The open sessions.
struct Sessions {
    /// Makes session ids of this process distinct from another's.
    prefix: u64,
    next: AtomicU64,
    open: Mutex<HashSet<String>>,
}

impl Sessions {
    fn open(&self) -> String {
        let id = format!(
            "{:016x}{:08x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        if let Ok(mut open) = self.open.lock() {
            open.insert(id.clone());
        }
        id
    }

    fn known(&self, id: &str) -> bool {
        self.open.lock().is_ok_and(|open| open.contains(id))
    }

    fn close(&self, id: &str) -> bool {
        self.open.lock().is_ok_and(|mut open| open.remove(id))
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn on_post(State(s): State<Arc<Sessions>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(msg) = std::str::from_utf8(&body)
        .ok()
        .filter(|t| !t.trim_start().starts_with('['))
        .and_then(|t| serde_json::from_str::<Message<'_>>(t).ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error (batches are not supported)"}}"#,
        )
            .into_response();
    };
    let method = msg.method.as_deref();
    let mut new_session = None;
    if method == Some("initialize") {
        new_session = Some(s.open());
    } else {
        match headers.get(SESSION).and_then(|v| v.to_str().ok()) {
            None => return plain(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id"),
            Some(id) if !s.known(id) => return plain(StatusCode::NOT_FOUND, "unknown session"),
            Some(_) => {}
        }
    }
    // Notifications (no id) and responses (no method) need no answer.
    let (Some(id), Some(method)) = (msg.id, method) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let mut out = Vec::with_capacity(128);
    if write_reply(&mut out, id, handle(method, msg.params)).is_err() {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot write the answer");
    }
    let mut resp = json(out);
    if let Some(sid) = new_session.and_then(|sid| HeaderValue::from_str(&sid).ok()) {
        resp.headers_mut().insert(SESSION, sid);
    }
    resp
}

async fn on_delete(State(s): State<Arc<Sessions>>, headers: HeaderMap) -> StatusCode {
    match headers.get(SESSION).and_then(|v| v.to_str().ok()) {
        Some(id) if s.close(id) => StatusCode::OK,
        Some(_) => StatusCode::NOT_FOUND,
        None => StatusCode::BAD_REQUEST,
    }
}

/// Serves Streamable HTTP on `addr` until killed.
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let prefix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let sessions = Arc::new(Sessions {
        prefix,
        next: AtomicU64::new(1),
        open: Mutex::new(HashSet::new()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new()
            .route(
                "/mcp",
                post(on_post)
                    .delete(on_delete)
                    .get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
            )
            .with_state(sessions);
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "Listening on {local}")?;
            out.flush()?;
        }
        axum::serve(listener, app).await?;
        Ok(())
    })
}
