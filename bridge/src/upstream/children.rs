//! [`HttpUpstreams`]: the core's children when the server speaks HTTP. Each child is one
//! upstream MCP session, run by a task that turns the lines the core writes into HTTP
//! requests and what the server sends back into lines (see the module documentation of
//! `upstream`). What all sessions of one server share: the HTTP client (connecting only
//! to the addresses checked at start), the transport found by the first session, and the
//! server's [`Health`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::info;

use super::health::Health;
use super::legacy::Legacy;
use super::link::{Link, Shared};
use super::streamable::{Opened, Streamable};
use super::{Transport, UpstreamConfig};
use crate::child::{ChildEvent, ChildId, ChildSpec};
use crate::core::Children;

/// Lines queued to one upstream session before the core is told it is not keeping up.
const LINE_QUEUE: usize = 4096;

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
        let client = super::address::pinned_client(&cfg.server.url, addrs, cfg.connect_timeout)?;
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
