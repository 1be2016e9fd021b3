//! The bridge core: MCP session semantics between the relay's exchanges and the child(ren).
//!
//! It is a plain state machine driven by one task: requests and cancels from the relay,
//! lines and exits from children, and the clock, each event with its time. It never
//! blocks and does no I/O: it starts, feeds and stops children through [`Children`], and
//! what it wants sent to the relay is collected in an outbox the driver drains after each
//! event.
//!
//! Rules it implements (each with the file that does it, and its tests in `tests/`):
//! - every client request id is replaced by a child-unique id, and restored on the reply;
//!   `progressToken`s are replaced the same way, and progress is routed back by them
//!   (`from_client.rs`, `ids.rs`, `from_server.rs`; `tests/id_rewrite.rs`);
//! - the child is initialized once; every remote `initialize` is answered from the cache
//!   (`init.rs`, `from_client.rs`; `tests/initialize.rs`);
//! - `*/list_changed` go to every session's stream, `resources/updated` to subscribers
//!   (subscriptions are reference-counted on the child, `subscriptions.rs`); a client's
//!   `notifications/cancelled` reaches the child under the child's id, a dropped
//!   connection cancels nothing (`from_server.rs`, `from_client.rs`;
//!   `tests/notifications.rs`);
//! - a server→client request (sampling, elicitation) goes to the oldest in-flight request
//!   of a session that declared the capability and has no other such request pending; with
//!   none it is refused at once; `roots/list` is answered locally and never forwarded
//!   (`from_server.rs`; `tests/server_requests.rs`);
//! - notifications without a routing key (logging) go to the one session with requests in
//!   flight, or to sessions that asked for logs when none is busy; otherwise they stay
//!   local (`from_server.rs`; `tests/unkeyed.rs`);
//! - sessions are bounded in all, per principal, and under `isolate` by the children they
//!   own; the least recently used is evicted (`from_relay.rs`, `sessions.rs`;
//!   `tests/eviction.rs`);
//! - a tunnel publishing a local asset origin has that origin moved to its public address
//!   in every line a server sends, before anything else looks at it
//!   (`crate::assets::rewrite`, `from_server.rs`);
//! - under `isolate` (always for HTTP servers, whose children are upstream sessions),
//!   sessionless traffic is served by one child per principal, never a shared one; a
//!   request waits while that child starts; with `keep_shared` the bridge keeps a child of
//!   its own, restarted with backoff, for the snapshot and the server's health
//!   (`lifecycle.rs`, `supervisor.rs`; `tests/principal_children.rs`);
//! - a 2026-07-28 call whose server asks its client something is suspended behind an
//!   `InputRequiredResult` until the client retries with the `requestState`
//!   (`stateless.rs`, `stateless/suspensions.rs`; `tests/suspension.rs`,
//!   `tests/stateless.rs`), and `subscriptions/listen` streams carry what they opted into
//!   (`stateless/listens.rs`; `tests/listen.rs`);
//! - the relay keeps an offline snapshot (the shared child's initialize result and tools),
//!   sent when it changed (`snapshot.rs`; `tests/snapshot.rs`);
//! - requests time out; an exiting child's requests are answered; the shared child is
//!   restarted with a crash-loop backoff (`lifecycle.rs`, `supervisor.rs`;
//!   `tests/lifecycle.rs`);
//! - a session POST's stream can be resumed with `Last-Event-ID` (`resume.rs`;
//!   `tests/resumption.rs`), an HTTP+SSE stream outlives a cut of the relay link
//!   (`http_sse.rs`; `tests/http_sse.rs`), and the desktop policy hides, holds and audits
//!   tool calls (`gate.rs`; `tests/policy.rs`).
//!
//! # Layout
//!
//! `Core` (this file) composes sub-machines, each owning its state behind a narrow API:
//! - `children.rs`: the [`Children`] trait, the core's only way to server processes;
//! - `supervisor.rs`: `Supervisor`, the children, their start states, the `initialize`s
//!   waiting for them, the shared child and its restart backoff;
//! - `ids.rs`: `IdTable`, requests in flight by child-side id and server→client requests
//!   by bridge-side id;
//! - `exchanges.rs`: `Exchanges`, the open exchanges and what each is for;
//! - `sessions.rs`: `Sessions`, sessions with their owner, child, stream and LRU order;
//! - `subscriptions.rs`: `Subscriptions`, resource subscription counts per child;
//! - `resume.rs`: `ResumableStreams` and the per-session replay logs;
//! - `http_sse.rs`: `CarriedStreams`, HTTP+SSE streams across a cut of the link (and the
//!   core's handling of them);
//! - `stateless/call.rs`: `StatelessCall`, a 2026-07-28 call in flight and the input
//!   requests it gathers;
//! - `stateless/suspensions.rs`: `Suspensions`, calls suspended for their inputs;
//! - `stateless/listens.rs`: `Listens`, open `subscriptions/listen` streams;
//! - `snapshot.rs`: `OfflineSnapshot`, what the relay may answer offline;
//! - `gate.rs`: `Gate`, the desktop policy's state (held calls, audit log), and
//!   `note.rs`, what it attaches to a request in flight (the audit record of a call).
//!
//! The core's handling of each kind of event lives with its source:
//! - `from_relay.rs`: exchanges (POST, GET, DELETE, HTTP+SSE), cancels, the link going
//!   down, session creation and eviction;
//! - `from_client.rs`: JSON-RPC messages from clients (`message.rs`: their context, and a
//!   request that carries its id);
//! - `stateless.rs`: 2026-07-28 requests;
//! - `from_server.rs`: lines from children (answers, server requests, notifications);
//! - `lifecycle.rs`: starting children, their exits and restarts, the clock's tick;
//! - `delivery.rs`: where what the core sends goes (exchanges, resumable and carried
//!   streams);
//! - `init.rs`: the initialize handshake's messages and version negotiation;
//! - `reqlog.rs`: the per-request log lines.
//!
//! `testing.rs` (tests only) fakes the children and drives the core at a controlled time.

use std::time::{Duration, Instant};

use protocol::jsonrpc::error_response;
use protocol::{BridgeStatus, Frame};

use crate::child::ChildSpec;
use exchanges::Exchanges;
use http_sse::CarriedStreams;
use ids::IdTable;
use resume::ResumableStreams;
use sessions::Sessions;
use snapshot::OfflineSnapshot;
use stateless::listens::Listens;
use stateless::suspensions::Suspensions;
use subscriptions::Subscriptions;
use supervisor::Supervisor;

mod children;
mod delivery;
mod exchanges;
mod from_client;
mod from_relay;
mod from_server;
mod gate;
mod http_sse;
mod ids;
mod init;
mod lifecycle;
mod message;
mod note;
mod reqlog;
mod resume;
mod sessions;
mod snapshot;
mod stateless;
mod subscriptions;
mod supervisor;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use crate::roots::Root;
pub use children::Children;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The tunnel's name (how the owner's dashboard names its calls).
    pub tunnel: String,
    /// The server to run.
    pub child: ChildSpec,
    /// One child per session, and one per principal for sessionless traffic.
    pub isolate: bool,
    /// Keep a shared child under `isolate` too: started at once and restarted when it
    /// exits, it serves no client but tells whether the server is up and fills the
    /// offline snapshot (HTTP servers, whose children are cheap sessions).
    pub keep_shared: bool,
    /// Most children at once under `isolate` (the least recently used session's child is
    /// stopped to make room).
    pub max_children: usize,
    /// Most sessions (the least recently used is evicted to make room).
    pub max_sessions: usize,
    /// Most sessions one principal keeps (its least recently used is evicted).
    pub max_sessions_per_principal: usize,
    /// Most requests in flight in one session; more are refused with an error.
    pub max_in_flight_per_session: usize,
    /// A request still unanswered after this long is cancelled on the server and answered
    /// with an error.
    pub call_timeout: Duration,
    /// Roots answered to `roots/list`.
    pub roots: Vec<Root>,
    /// Serve MCP 2026-07-28 requests (`--protocol auto`); `false` answers them like a
    /// handshake-revision server (method not found), so clients fall back to `initialize`.
    pub stateless: bool,
    /// Pass the server's `roots/list` to clients that declared roots, instead of
    /// answering it from `roots`.
    pub client_roots: bool,
    /// Mark lists and `server/discover` as `cacheScope: "public"` (tunnels without
    /// client authentication); otherwise `"private"`.
    pub public_cache: bool,
    /// The desktop policy: hidden tools, confirmations, annotation overrides, extra roots
    /// and the audit log (see `crate::policy`).
    pub policy: crate::policy::PolicyConfig,
    /// Where finished tool calls are counted for the owner's dashboard, if it runs.
    pub calls: Option<std::sync::Arc<crate::calls::CallStats>>,
}

impl CoreConfig {
    /// Defaults for everything but the server command.
    pub fn new(child: ChildSpec) -> Self {
        Self {
            tunnel: String::new(),
            child,
            isolate: false,
            keep_shared: false,
            max_children: 16,
            max_sessions: 10_000,
            max_sessions_per_principal: 1_000,
            max_in_flight_per_session: 256,
            call_timeout: Duration::from_secs(600),
            roots: Vec::new(),
            stateless: true,
            client_roots: false,
            public_cache: false,
            policy: crate::policy::PolicyConfig::default(),
            calls: None,
        }
    }
}

/// One client's sessions, for the owner's dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientView {
    /// The client (its authorization).
    pub principal: String,
    /// Its live sessions.
    pub sessions: usize,
    /// Its requests in flight in them.
    pub in_flight: usize,
    /// The protocol revisions they speak.
    pub versions: Vec<String>,
    /// What its sessions' clients called themselves (`clientInfo`).
    pub names: Vec<String>,
}

/// What the owner's dashboard shows of a core ([`Core::owner_view`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerView {
    /// The owner paused the tunnel's tool calls.
    pub paused: bool,
    /// Each client with sessions.
    pub clients: Vec<ClientView>,
    /// Server processes (or upstream sessions) running.
    pub children: u32,
    /// Restarts of the server since the bridge started.
    pub restarts: u32,
    /// The process ids of its local processes.
    pub pids: Vec<u32>,
    /// The server's last stderr lines.
    pub stderr_tail: Vec<String>,
}

/// What the owner asks of a tunnel from the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerCommand {
    /// Stop the server (every process or upstream session) and start it again.
    Restart,
    /// End every session of this client (it may open new ones).
    Disconnect(String),
    /// Refuse tool calls with "paused by the owner" (`true`), or take them again.
    Pause(bool),
}

/// The bridge's MCP state. See the module documentation.
pub struct Core {
    cfg: CoreConfig,
    /// The time of the event being handled.
    now: Instant,
    /// The server processes.
    children: Supervisor,
    /// Requests in flight, by the ids the bridge gave them.
    ids: IdTable,
    /// Resource subscriptions on the children, with their subscriber counts.
    subscriptions: Subscriptions,
    /// The exchanges open on the relay link.
    exchanges: Exchanges,
    sessions: Sessions,
    outbox: Vec<Frame>,
    /// The shared child's initialize result and tools list, for the relay's offline answers.
    snapshot: OfflineSnapshot,
    /// Shutting down: no new requests.
    draining: bool,
    /// 2026-07-28 calls suspended for their inputs.
    suspensions: Suspensions,
    /// Open `subscriptions/listen` streams.
    listens: Listens,
    /// Resumable streams, by the exchange number that opened them.
    resumable: ResumableStreams,
    /// HTTP+SSE streams that outlived a relay connection, by the exchange number that
    /// opened them.
    carried: CarriedStreams,
    /// Moves local asset origins to their public address in what servers send (a
    /// tunnel publishing assets, once the relay told its public URL).
    assets: Option<crate::assets::rewrite::Rewriter>,
    /// The desktop policy's state (last: requests in flight, dropped before it, are
    /// still recorded in the audit log).
    gate: gate::Gate,
}

/// Most streams open without a session at once (`GET` probes of hosted clients, and
/// 2026-07-28 `subscriptions/listen` streams); more are answered with an error.
pub const MAX_SESSIONLESS_STREAMS: usize = 1024;
/// Most exchanges open at once, whatever their kind (a relay caps them lower per tunnel;
/// this bounds what a misbehaving relay can make the bridge keep).
pub const MAX_OPEN_EXCHANGES: usize = 65_536;

fn ex_body(code: i64, message: &str) -> Vec<u8> {
    error_response(b"null", code, message)
}

fn incident_id() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl Core {
    /// A core with no children yet, starting them through `processes`; `now` is the time
    /// of its creation (every event brings its own).
    pub fn with_children(mut cfg: CoreConfig, processes: Box<dyn Children>, now: Instant) -> Self {
        gate::merge_roots(&mut cfg);
        let gate = gate::Gate::new(&cfg.policy, cfg.calls.clone());
        Self {
            children: Supervisor::new(processes, cfg.child.clone()),
            cfg,
            now,
            ids: IdTable::default(),
            subscriptions: Subscriptions::default(),
            exchanges: Exchanges::default(),
            sessions: Sessions::default(),
            outbox: Vec::new(),
            snapshot: OfflineSnapshot::default(),
            draining: false,
            suspensions: Suspensions::default(),
            listens: Listens::default(),
            resumable: ResumableStreams::default(),
            carried: CarriedStreams::default(),
            assets: None,
            gate,
        }
    }

    /// From now on, what servers send has its local asset origins moved to their public
    /// address by `rewriter` (the snapshot kept so far too).
    pub fn set_asset_rewriter(&mut self, rewriter: Option<crate::assets::rewrite::Rewriter>) {
        if let Some(r) = &rewriter {
            self.snapshot.rewrite(|json| r.rewrite(json));
        }
        self.assets = rewriter;
    }

    /// The bridge's gauges.
    pub fn status(&self) -> BridgeStatus {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        BridgeStatus {
            sessions: n(self.sessions.len()),
            pending: n(self.client_pending()),
            exchanges: n(self.exchanges.len()),
            children: n(self.children.len()),
            restarts: self.children.restarts(),
        }
    }

    /// Carries out the owner's command at `now`.
    pub fn on_owner_command(&mut self, cmd: OwnerCommand, now: Instant) {
        self.now = now;
        match cmd {
            OwnerCommand::Restart => {
                tracing::info!("the owner restarts the server");
                for child in self.children.ids() {
                    self.on_child_exit(child, "restarted by the owner", false);
                }
            }
            OwnerCommand::Disconnect(principal) => {
                let theirs: Vec<String> = self
                    .sessions
                    .iter()
                    .filter(|s| s.principal == principal)
                    .map(|s| s.id.clone())
                    .collect();
                tracing::info!(
                    sessions = theirs.len(),
                    "the owner ends a client's sessions"
                );
                for sid in theirs {
                    self.end_session(&sid, true);
                }
            }
            OwnerCommand::Pause(paused) => {
                tracing::info!(paused, "the owner pauses the tunnel's tool calls");
                self.gate.set_paused(paused);
            }
        }
    }

    /// What the owner's dashboard shows of this core: the sessions of each client, and the
    /// server's processes and its last stderr lines (which stay on this machine).
    pub fn owner_view(&self) -> OwnerView {
        let mut clients: std::collections::BTreeMap<&str, ClientView> = Default::default();
        for s in self.sessions.iter() {
            let c = clients.entry(&s.principal).or_insert_with(|| ClientView {
                principal: s.principal.clone(),
                ..ClientView::default()
            });
            c.sessions += 1;
            c.in_flight += s.in_flight.len();
            if let Some(n) = &s.client
                && !c.names.contains(n)
            {
                c.names.push(n.clone());
            }
            if !c.versions.contains(&s.protocol_version) {
                c.versions.push(s.protocol_version.clone());
            }
        }
        let status = self.status();
        OwnerView {
            pids: self.children.pids(),
            paused: self.gate.paused(),
            clients: clients.into_values().collect(),
            children: status.children,
            restarts: status.restarts,
            stderr_tail: self.default_child_stderr(),
        }
    }

    /// Client requests in flight on children.
    pub fn client_pending(&self) -> usize {
        self.ids.client_count()
    }

    /// Stops taking requests (graceful shutdown) at `now`; requests in flight run on.
    pub fn drain(&mut self, now: Instant) {
        self.now = now;
        self.draining = true;
        self.close_listens();
        self.drop_suspended();
        self.drop_held();
    }

    /// The offline snapshot for the relay: when it changed, or always with `force`.
    pub fn snapshot(&mut self, force: bool) -> Option<Frame> {
        self.snapshot.frame(force)
    }

    /// Frames produced since the last call, to send to the relay in order.
    pub fn take_outbox(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.outbox)
    }
}
