//! The bridge core: MCP session semantics between the relay's exchanges and the child(ren).
//!
//! It is a plain state machine driven by one task: requests and cancels from the relay,
//! lines and exits from children. It never blocks; what it wants sent to the relay is
//! collected in an outbox the driver drains after each event.
//!
//! Rules it implements (see the README's "How sessions work"):
//! - every client request id is replaced by a child-unique id, and restored on the reply;
//!   `progressToken`s are replaced the same way, and progress is routed back by them;
//! - the child is initialized once; every remote `initialize` is answered from the cache;
//! - `*/list_changed` go to every session's stream, `resources/updated` to subscribers
//!   (subscriptions are reference-counted on the child);
//! - a server→client request (sampling, elicitation) goes to the oldest in-flight request
//!   of a session that declared the capability and has no other such request pending; with
//!   none it is refused at once; `roots/list` is answered locally and never forwarded;
//! - notifications without a routing key (logging) go to the one session with requests in
//!   flight, or to sessions that asked for logs when none is busy; otherwise they stay local.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::frame::{FLAG_FINAL, FLAG_STREAM};
use protocol::jsonrpc::{
    self, Envelope, INTERNAL_ERROR, INVALID_REQUEST, Kind, METHOD_NOT_FOUND, REQUEST_CANCELLED,
    REQUEST_TIMEOUT, SESSION_NOT_FOUND, UNAVAILABLE, error_response, result_response, splice,
};
use protocol::{BridgeStatus, Frame, Request, RequestKind, Response, Snapshot};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::child::{ChildEvent, ChildId, ChildSpec};
use exchanges::{Exchanges, Role};
use ids::{IdTable, Pending, Purpose, Unmatched};
use init::WaitingInit;
use sessions::{ClientCaps, Sessions};
use stateless::listens::Listens;
use stateless::suspensions::Suspensions;
use subscriptions::{Release, Subscriptions};
use supervisor::{ChildState, Supervisor};

mod children;
mod exchanges;
mod from_client;
mod from_server;
mod gate;
mod http_sse;
mod ids;
mod init;
mod lifecycle;
mod relay_side;
mod resume;
mod sessions;
mod stateless;
mod subscriptions;
mod supervisor;

pub use crate::roots::Root;
pub use children::Children;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The server to run.
    pub child: ChildSpec,
    /// One child per session.
    pub isolate: bool,
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
    /// 2025-era server (method not found), so clients fall back to `initialize`.
    pub modern: bool,
    /// Pass the server's `roots/list` to clients that declared roots, instead of
    /// answering it from `roots`.
    pub client_roots: bool,
    /// Mark lists and `server/discover` as `cacheScope: "public"` (tunnels without
    /// client authentication); otherwise `"private"`.
    pub public_cache: bool,
    /// The desktop policy: hidden tools, confirmations, annotation overrides, extra roots
    /// and the audit log (see `crate::policy`).
    pub policy: crate::policy::PolicyConfig,
}

impl CoreConfig {
    /// Defaults for everything but the server command.
    pub fn new(child: ChildSpec) -> Self {
        Self {
            child,
            isolate: false,
            max_children: 16,
            max_sessions: 10_000,
            max_sessions_per_principal: 1_000,
            max_in_flight_per_session: 256,
            call_timeout: Duration::from_secs(600),
            roots: Vec::new(),
            modern: true,
            client_roots: false,
            public_cache: false,
            policy: crate::policy::PolicyConfig::default(),
        }
    }
}

/// A resumable stream (see `resume`), by the exchange number that opened it.
struct Resumable {
    session: String,
    /// The exchange its messages currently go to (the POST, or a resuming GET).
    attached: Option<u64>,
}

/// Where the answer to a client message goes.
#[derive(Debug, Clone)]
struct Ctx {
    principal: String,
    session: Option<String>,
    /// The exchange the message came on.
    exchange: u64,
    /// Legacy: answers go to the session's stream, the POST gets 202.
    legacy: bool,
    /// The `MCP-Protocol-Version` header, if any.
    header_version: Option<String>,
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
    snapshot_init: Option<Bytes>,
    snapshot_tools: Option<Bytes>,
    snapshot_dirty: bool,
    /// Shutting down: no new requests.
    draining: bool,
    /// 2026-07-28 calls suspended for their inputs.
    suspensions: Suspensions,
    /// Open `subscriptions/listen` streams.
    listens: Listens,
    /// Resumable streams, by the exchange number that opened them.
    resumable: HashMap<u64, Resumable>,
    /// Legacy SSE streams that outlived a relay connection, by the exchange number that
    /// opened them (see `http_sse`).
    carried: HashMap<u64, http_sse::Carried>,
    /// Bytes held in their backlogs, all streams together.
    carried_bytes: usize,
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
        let gate = gate::Gate::new(&cfg.policy);
        Self {
            children: Supervisor::new(processes, cfg.child.clone()),
            cfg,
            now,
            ids: IdTable::default(),
            subscriptions: Subscriptions::default(),
            exchanges: Exchanges::default(),
            sessions: Sessions::default(),
            outbox: Vec::new(),
            snapshot_init: None,
            snapshot_tools: None,
            snapshot_dirty: false,
            draining: false,
            suspensions: Suspensions::default(),
            listens: Listens::default(),
            resumable: HashMap::new(),
            carried: HashMap::new(),
            carried_bytes: 0,
            gate,
        }
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
        if !(self.snapshot_dirty || force) {
            return None;
        }
        let init = self.snapshot_init.clone()?;
        self.snapshot_dirty = false;
        Some(Frame::Snapshot(Snapshot {
            initialize: init,
            tools: self.snapshot_tools.clone().unwrap_or_default(),
        }))
    }

    /// Frames produced since the last call, to send to the relay in order.
    pub fn take_outbox(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.outbox)
    }

    // ----- output to the relay ------------------------------------------------------

    fn push(
        &mut self,
        exchange: u64,
        status: u16,
        session: Option<String>,
        flags: u8,
        body: Vec<u8>,
    ) {
        if !self.resumable.is_empty() && self.resumable.contains_key(&exchange) {
            return self.push_resumable(exchange, flags, Bytes::from(body));
        }
        if !self.carried.is_empty() && self.carried.contains_key(&exchange) {
            return self.push_carried(exchange, flags, Bytes::from(body));
        }
        if flags & FLAG_FINAL != 0 {
            self.exchanges.close(exchange);
        }
        self.outbox.push(Frame::Response(Response {
            exchange,
            status,
            session,
            flags,
            event_id: None,
            body: Bytes::from(body),
        }));
    }

    /// A message of a resumable stream: numbered, kept for replay, and sent to wherever
    /// the stream is attached now.
    fn push_resumable(&mut self, stream: u64, flags: u8, body: Bytes) {
        let is_final = flags & FLAG_FINAL != 0;
        let Some(r) = self.resumable.get(&stream) else {
            return;
        };
        let attached = r.attached.filter(|a| self.exchanges.contains(*a));
        let seq = match self.sessions.get_mut(&r.session) {
            Some(s) => s
                .logs
                .get_or_create(stream)
                .append(body.clone(), is_final, self.now),
            None => 0,
        };
        if is_final {
            self.resumable.remove(&stream);
            self.exchanges.close(stream);
        }
        let Some(to) = attached else { return };
        if is_final {
            self.exchanges.close(to);
        }
        self.outbox.push(Frame::Response(Response {
            exchange: to,
            status: 200,
            session: None,
            flags: if is_final { FLAG_FINAL } else { 0 },
            event_id: (seq > 0).then(|| protocol::event_id(stream, seq)),
            body,
        }));
    }

    /// Makes a session POST's stream resumable (attached to `attached`).
    fn make_resumable(&mut self, stream: u64, session: String, attached: Option<u64>) {
        match self.resumable.get_mut(&stream) {
            Some(r) => r.attached = attached,
            None => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.logs.get_or_create(stream);
                }
                self.resumable
                    .insert(stream, Resumable { session, attached });
            }
        }
    }

    /// Forgets resumable streams whose request ended without an answer (cancelled by
    /// the client); a resuming client then finds the stream finished or unknown.
    pub(super) fn prune_resumable(&mut self) {
        if self.resumable.is_empty() {
            return;
        }
        let running: std::collections::HashSet<u64> =
            self.ids.iter().filter_map(|(_, p)| p.exchange).collect();
        self.resumable.retain(|stream, _| running.contains(stream));
    }

    /// Whether messages for this exchange still go somewhere (open, resumable, or a legacy
    /// stream carried across a reconnect).
    fn is_live(&self, exchange: u64) -> bool {
        self.exchanges.contains(exchange)
            || self.resumable.contains_key(&exchange)
            || self.carried.contains_key(&exchange)
    }

    /// Ends an exchange with one answer.
    fn reply(&mut self, exchange: u64, status: u16, session: Option<String>, body: Vec<u8>) {
        self.push(exchange, status, session, FLAG_FINAL, body);
    }

    /// Adds one message to an exchange's stream (if it is still open).
    fn message(&mut self, exchange: u64, body: Vec<u8>) {
        match self.exchanges.role(exchange) {
            Some(Role::SessionPost(sid)) if !self.resumable.contains_key(&exchange) => {
                // The answer becomes a stream: from now on it can be resumed.
                let sid = sid.clone();
                self.make_resumable(exchange, sid, Some(exchange));
                self.push(exchange, 200, None, 0, body);
            }
            Some(_) => self.push(exchange, 200, None, 0, body),
            None if self.resumable.contains_key(&exchange)
                || self.carried.contains_key(&exchange) =>
            {
                self.push(exchange, 200, None, 0, body)
            }
            None => {}
        }
    }

    /// Answers on an exchange: finally (Streamable POST) or as a stream message (legacy).
    fn answer_to(&mut self, exchange: u64, is_final: bool, body: &[u8]) {
        if !self.exchanges.contains(exchange) && !self.carried.contains_key(&exchange) {
            return;
        }
        if is_final {
            self.reply(exchange, 200, None, body.to_vec());
        } else {
            self.message(exchange, body.to_vec());
        }
    }

    /// Sends a child's answer (or a message related to it) to where the request came from.
    fn deliver(&mut self, p: &Pending, body: Vec<u8>, is_answer: bool) {
        let Some(ex) = p.exchange else { return };
        if !self.is_live(ex) {
            return;
        }
        if is_answer && p.reply_final {
            self.reply(ex, 200, None, body);
        } else {
            self.message(ex, body);
        }
    }

    /// Answers a client message in its context.
    fn answer(&mut self, ctx: &Ctx, body: Vec<u8>) {
        if ctx.legacy {
            if let Some(stream) = ctx
                .session
                .as_deref()
                .and_then(|s| self.sessions.get(s))
                .and_then(|s| s.stream)
            {
                self.message(stream, body);
            }
        } else {
            self.reply(ctx.exchange, 200, None, body);
        }
    }
}

/// A core for unit tests whose server command is never started.
#[cfg(test)]
fn idle_core() -> Core {
    struct NoChildren;
    impl Children for NoChildren {
        fn spawn(&mut self, _: ChildId, _: &ChildSpec) -> Result<(), String> {
            Err("not started in this test".into())
        }
        fn send_line(&mut self, _: ChildId, _: Vec<u8>) -> bool {
            false
        }
        fn stdin_closed(&self, _: ChildId) -> bool {
            true
        }
        fn stderr_tail(&self, _: ChildId) -> Vec<String> {
            Vec::new()
        }
        fn kill(&mut self, _: ChildId) {}
    }
    let spec = ChildSpec {
        program: "never-started".into(),
        args: Vec::new(),
        max_line: 1 << 20,
        env: Vec::new(),
        cwd: None,
    };
    Core::with_children(CoreConfig::new(spec), Box::new(NoChildren), Instant::now())
}
