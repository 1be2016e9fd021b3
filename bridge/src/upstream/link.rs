//! What the upstream sessions of one server share ([`Shared`]: the HTTP client, the
//! settings, the transport found, the server's health), one session's way back to the
//! core ([`Link`]), and how a failed request is described.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Response;
use tokio::sync::mpsc;
use tracing::warn;

use super::health::Health;
use super::{Transport, UpstreamConfig};
use crate::child::{ChildEvent, ChildId};

/// Notes kept per session for errors shown locally.
const NOTES: usize = 20;

/// What the sessions of one server share.
pub(super) struct Shared {
    pub(super) client: reqwest::Client,
    pub(super) cfg: UpstreamConfig,
    /// The transport the first session found (with `Transport::Auto`).
    pub(super) detected: Mutex<Option<Transport>>,
    pub(super) health: Arc<Health>,
}

/// One session's way back to the core, and its notes for local errors.
pub(super) struct Link {
    pub(super) id: ChildId,
    pub(super) shared: Arc<Shared>,
    pub(super) events: mpsc::Sender<ChildEvent>,
    pub(super) notes: Arc<Mutex<VecDeque<String>>>,
}

impl Link {
    /// Sends one message from the server to the core.
    pub(super) async fn emit(&self, line: Bytes) {
        let _ = self.events.send(ChildEvent::Line(self.id, line)).await;
    }

    /// Answers the request `id` (raw JSON) with an error, as the server would.
    pub(super) async fn emit_error(&self, id: &[u8], code: i64, message: &str) {
        let body = protocol::jsonrpc::error_response(id, code, message);
        self.emit(Bytes::from(body)).await;
    }

    /// Keeps a note for the local log and the errors shown in the terminal.
    pub(super) fn note(&self, what: String) {
        warn!(child = self.id, "{what}");
        if let Ok(mut n) = self.notes.lock() {
            if n.len() == NOTES {
                n.pop_front();
            }
            n.push_back(what);
        }
    }

    /// The server could not be reached: the session ends as a process that could not
    /// start would.
    pub(super) async fn unreachable(&self, why: String) {
        self.shared.health.down(&why);
        self.note(format!(
            "cannot reach {}: {why}",
            self.shared.cfg.server.url
        ));
        let _ = self
            .events
            .send(ChildEvent::Unreachable(self.id, why))
            .await;
    }

    /// The session is over (the server closed it for good).
    pub(super) async fn ended(&self, why: String) {
        self.note(why.clone());
        let _ = self.events.send(ChildEvent::Exited(self.id, why)).await;
    }

    /// A request to the server with the configured headers.
    pub(super) fn request(
        &self,
        method: reqwest::Method,
        url: &url::Url,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.shared.client.request(method, url.clone());
        for (k, v) in &self.shared.cfg.server.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb
    }
}

/// The cause of a failed request, as one line.
pub(super) fn error_chain(e: &reqwest::Error) -> String {
    crate::error_text::error_chain(e)
}

/// A short description of a refusal: the status and the start of the body.
pub(super) async fn refusal(resp: Response) -> String {
    let status = resp.status();
    let body = match tokio::time::timeout(Duration::from_secs(2), resp.bytes()).await {
        Ok(Ok(b)) => {
            protocol::text::printable(&String::from_utf8_lossy(&b[..b.len().min(300)]), 300)
        }
        _ => String::new(),
    };
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    }
}
