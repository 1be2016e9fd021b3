//! [`HttpUpstreams`]: the core's children when the server speaks HTTP. Each child is one
//! upstream MCP session, run by a task that turns the lines the core writes into HTTP
//! requests and what the server sends back into lines (see the module documentation of
//! `upstream`). What all sessions of one server share: the HTTP client (connecting only
//! to the addresses checked at start), the transport found by the first session, and the
//! server's [`Health`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::legacy::Legacy;
use super::streamable::{Opened, Streamable};
use super::{Transport, UpstreamConfig};
use crate::child::{ChildEvent, ChildId, ChildSpec};
use crate::core::Children;

/// Lines queued to one upstream session before the core is told it is not keeping up.
const LINE_QUEUE: usize = 4096;
/// Notes kept per session for errors shown locally.
const NOTES: usize = 20;

/// Whether the server answers, as its sessions last saw it.
#[derive(Debug)]
pub struct Health {
    state: AtomicU8,
    detail: Mutex<(Instant, String)>,
    /// Wakes the prober when the server goes down.
    went_down: tokio::sync::Notify,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Default for Health {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
            detail: Mutex::new((Instant::now(), String::new())),
            went_down: tokio::sync::Notify::new(),
        }
    }
}

impl Health {
    /// The server answered.
    pub fn up(&self) {
        if self.state.swap(UP, Ordering::Relaxed) == DOWN {
            info!("the local MCP server answers again");
            self.set_detail(String::new());
        }
    }

    /// The server could not be reached, for this reason.
    pub fn down(&self, why: &str) {
        if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
            warn!("the local MCP server is not reachable: {why}");
            self.went_down.notify_one();
        }
        self.set_detail(why.to_owned());
    }

    fn set_detail(&self, why: String) {
        if let Ok(mut d) = self.detail.lock() {
            if d.1.is_empty() || why.is_empty() {
                d.0 = Instant::now();
            }
            d.1 = why;
        }
    }

    fn is_down(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DOWN
    }

    /// Why the server is not reachable and since when; `None` while it answers (or has
    /// not been tried).
    pub fn down_since(&self) -> Option<(Instant, String)> {
        if self.state.load(Ordering::Relaxed) != DOWN {
            return None;
        }
        self.detail.lock().ok().map(|d| d.clone())
    }
}

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
    events: mpsc::Sender<ChildEvent>,
    notes: Arc<Mutex<VecDeque<String>>>,
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

struct Running {
    lines: mpsc::Sender<Vec<u8>>,
    notes: Arc<Mutex<VecDeque<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a stopped session may take to close itself (its `DELETE` to the server)
/// before its task is aborted.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Running {
    fn drop(&mut self) {
        // Dropping the line queue ends the session's loop, which closes the session on
        // the server; a task stuck in a request is aborted after a while.
        let task = self.task.abort_handle();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(CLOSE_WAIT).await;
                task.abort();
            });
        } else {
            task.abort();
        }
    }
}

/// The core's children over HTTP: one upstream session each.
pub struct HttpUpstreams {
    shared: Arc<Shared>,
    events: mpsc::Sender<ChildEvent>,
    running: HashMap<ChildId, Running>,
    /// Tries the server while it is down (see [`probe`]).
    prober: tokio::task::JoinHandle<()>,
}

impl Drop for HttpUpstreams {
    fn drop(&mut self) {
        self.prober.abort();
    }
}

/// Longest wait between tries of a server that is down.
const MAX_PROBE_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

/// While the server is down, tries it with backoff (0.5 s doubling to 10 s): any HTTP
/// answer means it is back. Requests notice an outage; this notices the end of one, even
/// while no client sends anything (the relay answers them meanwhile).
async fn probe(shared: Arc<Shared>) {
    let url = shared.cfg.server.url.clone();
    loop {
        if !shared.health.is_down() {
            shared.health.went_down.notified().await;
            continue;
        }
        let mut delay = std::time::Duration::from_millis(500);
        while shared.health.is_down() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_PROBE_DELAY);
            let mut rb = shared
                .client
                .request(reqwest::Method::GET, url.clone())
                .header("accept", "application/json")
                .timeout(std::time::Duration::from_secs(5));
            for (k, v) in &shared.cfg.server.headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            if rb.send().await.is_ok() {
                shared.health.up();
            }
        }
    }
}

impl HttpUpstreams {
    /// Sessions of `cfg.server`, connecting only to `addrs` (the addresses of its host
    /// checked at start, see `address.rs`); their events go to `events`.
    pub fn new(
        cfg: UpstreamConfig,
        addrs: &[SocketAddr],
        events: mpsc::Sender<ChildEvent>,
        health: Arc<Health>,
    ) -> Result<Self, String> {
        let host = cfg.server.url.host_str().unwrap_or_default().to_owned();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("mcp-tunnel-bridge/", env!("CARGO_PKG_VERSION")));
        if bare.parse::<std::net::IpAddr>().is_err() {
            builder = builder.resolve_to_addrs(bare, addrs);
        }
        // The web PKI roots for an https server (the TLS setup reqwest is given must be
        // set for http ones too).
        let tls = crate::link::tls_config(None).map_err(|e| e.to_string())?;
        builder = builder.tls_backend_preconfigured(tls.as_ref().clone());
        let client = builder.build().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            client,
            cfg,
            detected: Mutex::new(None),
            health,
        });
        Ok(Self {
            prober: tokio::spawn(probe(shared.clone())),
            shared,
            events,
            running: HashMap::new(),
        })
    }
}

impl Children for HttpUpstreams {
    fn spawn(&mut self, id: ChildId, _spec: &ChildSpec) -> Result<(), String> {
        let (tx, rx) = mpsc::channel(LINE_QUEUE);
        let notes = Arc::new(Mutex::new(VecDeque::new()));
        let link = Arc::new(Link {
            id,
            shared: self.shared.clone(),
            events: self.events.clone(),
            notes: notes.clone(),
        });
        let task = tokio::spawn(session(link, rx));
        self.running.insert(
            id,
            Running {
                lines: tx,
                notes,
                task,
            },
        );
        Ok(())
    }

    fn send_line(&mut self, id: ChildId, line: Vec<u8>) -> bool {
        self.running
            .get(&id)
            .is_some_and(|r| r.lines.try_send(line).is_ok())
    }

    fn stdin_closed(&self, id: ChildId) -> bool {
        self.running.get(&id).is_none_or(|r| r.lines.is_closed())
    }

    fn stderr_tail(&self, id: ChildId) -> Vec<String> {
        self.running
            .get(&id)
            .and_then(|r| r.notes.lock().ok().map(|n| n.iter().cloned().collect()))
            .unwrap_or_default()
    }

    fn kill(&mut self, id: ChildId) {
        // Dropping it ends its task, which closes the session on the server.
        self.running.remove(&id);
    }
}

/// One upstream session: opened by the core's `initialize` (its first line), then fed.
async fn session(link: Arc<Link>, mut lines: mpsc::Receiver<Vec<u8>>) {
    let Some(first) = lines.recv().await else {
        return;
    };
    let first = Bytes::from(first);
    let detected = link.shared.detected.lock().ok().and_then(|d| *d);
    let transport = detected.unwrap_or(link.shared.cfg.server.transport);
    let opened = match transport {
        Transport::Sse => Opened::NotStreamable(String::new()),
        Transport::Auto | Transport::Http => {
            Streamable::open(link.clone(), first.clone(), transport == Transport::Auto).await
        }
    };
    match opened {
        Opened::Session(mut s) => {
            remember(&link, Transport::Http);
            while let Some(line) = lines.recv().await {
                s.send(Bytes::from(line)).await;
            }
            s.close();
        }
        Opened::NotStreamable(why) => {
            if let Ok(mut s) = Legacy::open(link.clone(), first).await {
                remember(&link, Transport::Sse);
                if !why.is_empty() {
                    info!("{why}: the server speaks HTTP+SSE");
                }
                while let Some(line) = lines.recv().await {
                    s.send(Bytes::from(line)).await;
                }
            }
        }
        Opened::Failed => {}
    }
}

fn remember(link: &Link, t: Transport) {
    if let Ok(mut d) = link.shared.detected.lock()
        && d.is_none()
    {
        *d = Some(t);
    }
}
