//! One upstream session over HTTP+SSE (MCP 2024-11-05): a `GET` event stream whose first
//! `endpoint` event names the URL to `POST` messages to; every message of the server,
//! answers included, arrives on that stream.
//!
//! The endpoint must be on the same origin as the stream (a server cannot send the
//! bridge's messages, with the configured headers, elsewhere). When the stream ends the
//! session is over: the core is told as of a process that exited (the clients of that
//! session start a new one; the bridge's own session is reopened with backoff).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::jsonrpc::{INTERNAL_ERROR, Kind, UNAVAILABLE};
use reqwest::{Method, Response};
use tokio::task::JoinHandle;
use url::Url;

use super::link::{Link, error_chain, refusal};
use super::sse::{Decoder, Event};

/// Longest wait for the `endpoint` event.
const ENDPOINT_WAIT: Duration = Duration::from_secs(10);

/// An open HTTP+SSE session.
pub(super) struct Legacy {
    link: Arc<Link>,
    endpoint: Url,
    reader: JoinHandle<()>,
}

impl Legacy {
    /// Opens the stream, waits for its endpoint and sends the core's `initialize` there.
    /// On failure the core was told (`Err`).
    pub(super) async fn open(link: Arc<Link>, init: Bytes) -> Result<Legacy, ()> {
        let id = protocol::scan::parse_fast(&init)
            .ok()
            .and_then(|e| e.id)
            .map(|s| init[s].to_vec())
            .unwrap_or_default();
        let url = link.shared.cfg.server.url.clone();
        let resp = match link
            .request(Method::GET, &url)
            .header("accept", "text/event-stream")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                link.unreachable(error_chain(&e)).await;
                return Err(());
            }
        };
        link.shared.health.up();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        if !resp.status().is_success() || !is_sse {
            let why = if resp.status().is_success() {
                "it is neither a Streamable HTTP nor an HTTP+SSE MCP endpoint (GET did not open an event stream)".to_owned()
            } else {
                format!(
                    "it is not an MCP endpoint: GET answered {}",
                    refusal(resp).await
                )
            };
            fail(&link, &id, &why).await;
            return Err(());
        }
        let mut stream = Stream {
            resp,
            dec: Decoder::new(link.shared.cfg.max_message),
            queued: Vec::new(),
        };
        let endpoint = match tokio::time::timeout(ENDPOINT_WAIT, stream.endpoint(&url)).await {
            Ok(Ok(e)) => e,
            Ok(Err(why)) => {
                fail(&link, &id, &why).await;
                return Err(());
            }
            Err(_) => {
                fail(
                    &link,
                    &id,
                    "the event stream sent no endpoint event within 10 s",
                )
                .await;
                return Err(());
            }
        };
        let reader = tokio::spawn(read(link.clone(), stream));
        let mut s = Legacy {
            link,
            endpoint,
            reader,
        };
        s.send(init).await;
        Ok(s)
    }

    /// `POST`s one line of the core to the endpoint; a request the server refuses is
    /// answered with an error.
    pub(super) async fn send(&mut self, line: Bytes) {
        let id = protocol::scan::parse_fast(&line)
            .ok()
            .filter(|e| e.kind == Kind::Request)
            .and_then(|e| e.id)
            .map(|s| line[s].to_vec());
        let sent = self
            .link
            .request(Method::POST, &self.endpoint)
            .header("content-type", "application/json")
            .body(line)
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!(
                "the local MCP server refused the request: {}",
                refusal(r).await
            ),
            Err(e) => {
                self.link.shared.health.down(&error_chain(&e));
                "the local MCP server is not reachable; the bridge keeps trying, retry in a moment"
                    .into()
            }
        };
        match id {
            Some(id) => self.link.emit_error(&id, UNAVAILABLE, &why).await,
            None => self.link.note(why),
        }
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn fail(link: &Link, id: &[u8], why: &str) {
    link.note(why.to_owned());
    link.emit_error(id, INTERNAL_ERROR, why).await;
}

/// The server's event stream.
struct Stream {
    resp: Response,
    dec: Decoder,
    /// Events decoded but not yet handled.
    queued: Vec<Event>,
}

impl Stream {
    /// The next event; `Err` when the stream ended or broke.
    async fn next(&mut self) -> Result<Event, String> {
        loop {
            if !self.queued.is_empty() {
                return Ok(self.queued.remove(0));
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.queued = self.dec.feed(&c).map_err(|e| e.to_string())?,
                Ok(None) => return Err("the server closed its event stream".into()),
                Err(e) => return Err(format!("the event stream broke: {}", error_chain(&e))),
            }
        }
    }

    /// Waits for the `endpoint` event and resolves it against the stream's URL.
    async fn endpoint(&mut self, base: &Url) -> Result<Url, String> {
        loop {
            let ev = self.next().await?;
            if ev.event != "endpoint" {
                continue;
            }
            let url = base
                .join(ev.data.trim())
                .map_err(|e| format!("the endpoint event is not a URL ({e})"))?;
            if url.origin() != base.origin() {
                return Err(format!(
                    "the server named an endpoint on another origin ({}); refused",
                    url.origin().ascii_serialization()
                ));
            }
            return Ok(url);
        }
    }
}

/// Forwards the stream's messages to the core until it ends, which ends the session.
async fn read(link: Arc<Link>, mut stream: Stream) {
    let why = loop {
        match stream.next().await {
            Ok(ev) if ev.event == "message" && !ev.data.trim().is_empty() => {
                link.emit(Bytes::from(ev.data)).await;
            }
            Ok(_) => {}
            Err(why) => break why,
        }
    };
    link.ended(why).await;
}
