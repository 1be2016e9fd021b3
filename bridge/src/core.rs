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
use std::sync::Arc;
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

use crate::child::{ChildEvent, ChildHandle, ChildId, ChildSpec};
use crate::guard::Guard;
use crate::init;
use crate::session::{ClientCaps, Sessions};

/// A root the bridge reports to the child when it asks for `roots/list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Root {
    /// `file://` URI.
    pub uri: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

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
        }
    }
}

enum ChildState {
    Starting,
    Ready { result: Value, version: String },
    Failed(String),
}

/// A remote `initialize` waiting for its child to finish starting.
struct WaitingInit {
    exchange: u64,
    id: Bytes,
    requested: Option<String>,
    caps: ClientCaps,
    principal: String,
    /// For a legacy session: the session (already created) and its stream.
    legacy_session: Option<String>,
}

struct ChildSlot {
    handle: ChildHandle,
    state: ChildState,
    waiting: Vec<WaitingInit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A client's request: its answer goes back to the client.
    Client,
    /// The bridge's own `initialize` of the child.
    ChildInit,
    /// A bridge-internal request whose answer is ignored.
    Internal,
    /// The bridge's own `tools/list`, kept as the offline snapshot.
    ToolsSnapshot,
}

/// A request in flight on a child, by child-side id.
struct Pending {
    child: ChildId,
    purpose: Purpose,
    /// Where the answer goes (a POST exchange, or a legacy session's stream).
    exchange: Option<u64>,
    /// Whether the answer ends the exchange (Streamable POST) or is one message on a
    /// stream (legacy).
    reply_final: bool,
    session: Option<String>,
    original_id: Bytes,
    original_token: Option<Bytes>,
    cancelled: bool,
    /// A server→client request routed through this request awaits its answer.
    awaiting_client: bool,
    /// When a client request times out.
    deadline: Option<Instant>,
}

impl Pending {
    fn internal(child: ChildId, purpose: Purpose) -> Self {
        Self {
            child,
            purpose,
            exchange: None,
            reply_final: false,
            session: None,
            original_id: Bytes::new(),
            original_token: None,
            cancelled: false,
            awaiting_client: false,
            deadline: None,
        }
    }
}

/// A server→client request, by bridge-assigned id.
struct ServerRequest {
    child: ChildId,
    child_id: Bytes,
    session: Option<String>,
    pending: u64,
}

/// What an open exchange is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Post,
    Stream(String),
    LegacyStream(String),
    Probe,
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
}

/// The bridge's MCP state. See the module documentation.
pub struct Core {
    cfg: CoreConfig,
    events: mpsc::Sender<ChildEvent>,
    children: HashMap<ChildId, ChildSlot>,
    default_child: Option<ChildId>,
    next_child: ChildId,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    server_requests: HashMap<u64, ServerRequest>,
    subscriptions: HashMap<(ChildId, String), usize>,
    exchanges: HashMap<u64, Role>,
    sessions: Sessions,
    outbox: Vec<Frame>,
    guard: Arc<Guard>,
    /// When to restart the shared child after it exited.
    restart_at: Option<Instant>,
    /// Recent exits of the shared child (crash-loop guard).
    crashes: VecDeque<Instant>,
    restarts: u32,
    /// The shared child's initialize result and tools list, for the relay's offline answers.
    snapshot_init: Option<Bytes>,
    snapshot_tools: Option<Bytes>,
    snapshot_dirty: bool,
    /// Shutting down: no new requests.
    draining: bool,
}

/// Longest delay between restarts of a crashing server.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// Exits within this window count towards the crash-loop backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(60);

fn ex_body(code: i64, message: &str) -> Vec<u8> {
    error_response(b"null", code, message)
}

fn incident_id() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl Core {
    /// A core with no children yet; children report to `events`.
    pub fn new(cfg: CoreConfig, events: mpsc::Sender<ChildEvent>, guard: Arc<Guard>) -> Self {
        Self {
            cfg,
            events,
            children: HashMap::new(),
            default_child: None,
            next_child: 1,
            next_id: 1,
            pending: BTreeMap::new(),
            server_requests: HashMap::new(),
            subscriptions: HashMap::new(),
            exchanges: HashMap::new(),
            sessions: Sessions::default(),
            outbox: Vec::new(),
            guard,
            restart_at: None,
            crashes: VecDeque::new(),
            restarts: 0,
            snapshot_init: None,
            snapshot_tools: None,
            snapshot_dirty: false,
            draining: false,
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
            restarts: self.restarts,
        }
    }

    /// Client requests in flight on children.
    pub fn client_pending(&self) -> usize {
        self.pending
            .values()
            .filter(|p| p.purpose == Purpose::Client)
            .count()
    }

    /// Stops taking requests (graceful shutdown); requests in flight run on.
    pub fn drain(&mut self) {
        self.draining = true;
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

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    // ----- children -------------------------------------------------------------

    /// Starts the shared child (not under `isolate`). Its readiness is reported by
    /// [`Core::default_child_state`].
    pub fn start_default_child(&mut self) -> Result<(), String> {
        if self.default_child.is_none() {
            let id = self.spawn_child()?;
            self.default_child = Some(id);
        }
        Ok(())
    }

    /// `None` while the shared child starts, then `Ok(())` or the failure.
    pub fn default_child_state(&self) -> Option<Result<(), String>> {
        let slot = self.children.get(&self.default_child?)?;
        match &slot.state {
            ChildState::Starting => None,
            ChildState::Ready { .. } => Some(Ok(())),
            ChildState::Failed(e) => Some(Err(e.clone())),
        }
    }

    fn spawn_child(&mut self) -> Result<ChildId, String> {
        let id = self.next_child;
        self.next_child += 1;
        let handle =
            ChildHandle::spawn(id, &self.cfg.child, self.events.clone(), self.guard.clone())
                .map_err(|e| e.to_string())?;
        let req_id = self.fresh_id();
        if !handle.send_line(init::child_initialize_request(req_id)) {
            return Err("the server's stdin closed at once".into());
        }
        self.pending
            .insert(req_id, Pending::internal(id, Purpose::ChildInit));
        self.children.insert(
            id,
            ChildSlot {
                handle,
                state: ChildState::Starting,
                waiting: Vec::new(),
            },
        );
        Ok(id)
    }

    /// The child for sessionless traffic, started on demand.
    fn shared_child(&mut self) -> Result<ChildId, String> {
        if let Some(id) = self.default_child
            && self.children.contains_key(&id)
        {
            return Ok(id);
        }
        if self.restart_at.is_some() {
            return Err("it exited and is being restarted; retry in a moment".into());
        }
        let id = self.spawn_child()?;
        self.default_child = Some(id);
        Ok(id)
    }

    /// Handles a child event.
    pub fn on_child_event(&mut self, ev: ChildEvent) {
        match ev {
            ChildEvent::Line(child, line) => self.on_child_line(child, line),
            ChildEvent::Exited(child, status) => self.on_child_exit(child, &status),
        }
    }

    /// Periodic housekeeping: restarts the shared child after a crash (with backoff) and
    /// times out requests.
    pub fn on_tick(&mut self) {
        let now = Instant::now();
        self.expire_calls(now);
        if self.restart_at.is_some_and(|at| at <= now) {
            self.restart_at = None;
            self.restarts = self.restarts.saturating_add(1);
            match self.spawn_child() {
                Ok(new) => {
                    let old = self.default_child.replace(new);
                    for s in self.sessions.iter_mut() {
                        if Some(s.child) == old {
                            s.child = new;
                        }
                    }
                    // Move subscriptions to the new child and renew them there.
                    let moved: Vec<(String, usize)> = self
                        .subscriptions
                        .iter()
                        .filter(|((c, _), _)| Some(*c) == old)
                        .map(|((_, u), n)| (u.clone(), *n))
                        .collect();
                    for (uri, n) in moved {
                        if let Some(o) = old {
                            self.subscriptions.remove(&(o, uri.clone()));
                        }
                        self.subscriptions.insert((new, uri.clone()), n);
                        self.internal_request(
                            new,
                            "resources/subscribe",
                            serde_json::json!({"uri": uri}),
                        );
                    }
                    info!("restarted the MCP server");
                }
                Err(e) => {
                    error!("cannot restart the MCP server: {e}");
                    self.schedule_restart();
                }
            }
        }
    }

    fn on_child_exit(&mut self, child: ChildId, status: &str) {
        let Some(slot) = self.children.remove(&child) else {
            return;
        };
        let incident = incident_id();
        let tail = slot.handle.stderr_tail();
        error!(
            incident = %incident,
            child,
            "the MCP server exited ({status}); last stderr lines: {}",
            tail.join(" | ")
        );
        let message = format!(
            "the local MCP server exited (incident {incident}); the bridge is restarting it, retry the request"
        );
        for w in slot.waiting {
            self.answer_to(
                w.exchange,
                true,
                &error_response(&w.id, INTERNAL_ERROR, &message),
            );
        }
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.child == child)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let p = self.pending.remove(&id).expect("listed");
            if p.purpose == Purpose::Client && !p.cancelled {
                let body = error_response(&p.original_id, INTERNAL_ERROR, &message);
                self.deliver(&p, body, true);
            }
            self.forget_in_flight(&p, id);
        }
        self.server_requests.retain(|_, r| r.child != child);
        let orphaned: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.child == child && s.owns_child)
            .map(|s| s.id.clone())
            .collect();
        for sid in orphaned {
            self.end_session(&sid, true);
        }
        if Some(child) == self.default_child && !self.cfg.isolate {
            self.schedule_restart();
        } else if Some(child) == self.default_child {
            self.default_child = None;
        }
    }

    /// Plans the shared child's restart: at once after a first exit, then doubling up to
    /// 30 s while it keeps exiting within a minute (crash-loop guard).
    fn schedule_restart(&mut self) {
        let now = Instant::now();
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        let n = self.crashes.len().saturating_sub(1).min(16) as u32;
        let delay = if n == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(250)
                .saturating_mul(1 << n.min(8))
                .min(MAX_RESTART_DELAY)
        };
        if n >= 5 {
            warn!(
                "the MCP server keeps exiting ({} times in a minute); next restart in {delay:?}",
                n + 1
            );
        }
        self.restart_at = Some(now + delay);
    }

    /// Answers requests past their deadline with an error and cancels them on the server.
    fn expire_calls(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now) && !p.cancelled)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            p.cancelled = true;
            let child = p.child;
            let msg = serde_json::json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": { "requestId": id, "reason": "timed out" }
            });
            if let Some(slot) = self.children.get(&child) {
                slot.handle
                    .send_line(serde_json::to_vec(&msg).expect("json"));
            }
            let p = self.pending.remove(&id).expect("present");
            let secs = self.cfg.call_timeout.as_secs();
            let body = error_response(
                &p.original_id,
                REQUEST_TIMEOUT,
                &format!(
                    "the local MCP server did not answer within {secs} s; the request was cancelled"
                ),
            );
            self.deliver(&p, body, true);
            self.forget_in_flight(&p, id);
        }
    }

    fn on_child_line(&mut self, child: ChildId, line: Bytes) {
        let env = match jsonrpc::parse(&line) {
            Ok(e) => e,
            Err(e) => {
                warn!(child, "ignoring a stdout line that is not JSON-RPC ({e})");
                return;
            }
        };
        match env.kind {
            Kind::Response => self.on_child_response(child, &line, &env),
            Kind::Request => self.on_child_request(child, &line, &env),
            Kind::Notification => self.on_child_notification(child, &line, &env),
        }
    }

    fn on_child_response(&mut self, child: ChildId, line: &Bytes, env: &Envelope<'_>) {
        let Some(span) = env.id.clone() else {
            warn!(child, "the server answered with a null id");
            return;
        };
        let Some(id) = std::str::from_utf8(&line[span.clone()])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            debug!(child, "answer to an id the bridge never sent");
            return;
        };
        match self.pending.get(&id) {
            Some(p) if p.child == child => {}
            _ => {
                debug!(child, id, "answer to an unknown or finished request");
                return;
            }
        }
        let p = self.pending.remove(&id).expect("checked");
        match p.purpose {
            Purpose::ChildInit => self.on_child_initialized(child, line),
            Purpose::Internal => {}
            Purpose::ToolsSnapshot => {
                let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                if let Some(r) = v.get("result").filter(|r| r.is_object()) {
                    self.snapshot_tools = Some(Bytes::from(serde_json::to_vec(r).expect("json")));
                    self.snapshot_dirty = true;
                }
            }
            Purpose::Client => {
                self.forget_in_flight(&p, id);
                if p.cancelled {
                    return;
                }
                let body = splice(line, &mut [(span, &p.original_id[..])]);
                self.deliver(&p, body, true);
            }
        }
    }

    fn forget_in_flight(&mut self, p: &Pending, id: u64) {
        if let Some(sid) = &p.session
            && let Some(s) = self.sessions.get_mut(sid)
            && s.in_flight.get(&p.original_id) == Some(&id)
        {
            s.in_flight.remove(&p.original_id);
        }
    }

    fn on_child_initialized(&mut self, child: ChildId, line: &Bytes) {
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let Some(slot) = self.children.get_mut(&child) else {
            return;
        };
        let state = match v.get("result") {
            Some(result) if result.is_object() => {
                let version = result["protocolVersion"]
                    .as_str()
                    .unwrap_or(protocol::LATEST_LEGACY_MCP_VERSION)
                    .to_owned();
                slot.handle
                    .send_line(init::INITIALIZED_NOTIFICATION.to_vec());
                info!(
                    child,
                    server = %result["serverInfo"]["name"].as_str().unwrap_or("?"),
                    version = %version,
                    "the MCP server is initialized"
                );
                ChildState::Ready {
                    result: result.clone(),
                    version,
                }
            }
            _ => {
                let why = v["error"]["message"]
                    .as_str()
                    .unwrap_or("invalid initialize result")
                    .to_owned();
                error!(child, "the MCP server refused initialize: {why}");
                ChildState::Failed(why)
            }
        };
        let ready_result = match &state {
            ChildState::Ready { result, .. } => Some(result.clone()),
            _ => None,
        };
        slot.state = state;
        let waiting = std::mem::take(&mut slot.waiting);
        if let Some(result) = ready_result
            && (Some(child) == self.default_child || self.snapshot_init.is_none())
        {
            self.snapshot_init = Some(Bytes::from(serde_json::to_vec(&result).expect("json")));
            self.snapshot_dirty = true;
            self.refresh_tools_snapshot(child);
        }
        for w in waiting {
            self.complete_initialize(child, w);
        }
    }

    fn on_child_request(&mut self, child: ChildId, line: &Bytes, env: &Envelope<'_>) {
        let Some(span) = env.id.clone() else { return };
        let id = Bytes::copy_from_slice(&line[span.clone()]);
        let method = env.method.as_deref().unwrap_or("");
        let reply = |core: &mut Self, body: Vec<u8>| {
            if let Some(slot) = core.children.get(&child) {
                slot.handle.send_line(body);
            }
        };
        match method {
            "roots/list" => {
                let roots = serde_json::json!({ "roots": self.cfg.roots });
                let result = serde_json::to_vec(&roots).expect("json");
                reply(self, result_response(&id, &result));
            }
            "ping" => reply(self, result_response(&id, b"{}")),
            _ => {
                let Some(target) = self.pick_for_server_request(child, method) else {
                    debug!(child, method, "no client can answer this server request");
                    reply(
                        self,
                        error_response(
                            &id,
                            METHOD_NOT_FOUND,
                            &format!("no connected client can answer {method}"),
                        ),
                    );
                    return;
                };
                let sid = self.fresh_id();
                let sid_text = sid.to_string();
                let body = splice(line, &mut [(span, sid_text.as_bytes())]);
                let p = self.pending.get_mut(&target).expect("picked");
                p.awaiting_client = true;
                let session = p.session.clone();
                self.server_requests.insert(
                    sid,
                    ServerRequest {
                        child,
                        child_id: id,
                        session,
                        pending: target,
                    },
                );
                let p = self.pending.get(&target).expect("picked");
                let (exchange, _) = (p.exchange, ());
                if let Some(ex) = exchange {
                    self.message(ex, body);
                }
            }
        }
    }

    /// Chooses the in-flight request a server→client request belongs to (module docs).
    fn pick_for_server_request(&self, child: ChildId, method: &str) -> Option<u64> {
        let mut fallback = None;
        for (id, p) in &self.pending {
            if p.child != child || p.purpose != Purpose::Client || p.cancelled {
                continue;
            }
            let Some(ex) = p.exchange else { continue };
            if !self.exchanges.contains_key(&ex) {
                continue;
            }
            let capable = p
                .session
                .as_deref()
                .and_then(|s| self.sessions.get(s))
                .is_some_and(|s| s.caps.can_answer(method));
            if !capable {
                continue;
            }
            if !p.awaiting_client {
                return Some(*id);
            }
            fallback.get_or_insert(*id);
        }
        fallback
    }

    fn on_child_notification(&mut self, child: ChildId, line: &Bytes, env: &Envelope<'_>) {
        let method = env.method.as_deref().unwrap_or("");
        match method {
            "notifications/progress" => {
                let Some(span) = env
                    .progress_token
                    .clone()
                    .or_else(|| progress_span(line, env))
                else {
                    return;
                };
                let Some(id) = std::str::from_utf8(&line[span.clone()])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    return;
                };
                let Some(p) = self.pending.get(&id) else {
                    return;
                };
                if p.child != child || p.cancelled {
                    return;
                }
                let Some(tok) = p.original_token.clone() else {
                    return;
                };
                let body = splice(line, &mut [(span, &tok[..])]);
                let (ex, _) = (p.exchange, ());
                if let Some(ex) = ex {
                    self.message(ex, body);
                }
            }
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed" => {
                if method == "notifications/tools/list_changed"
                    && (Some(child) == self.default_child || self.cfg.isolate)
                {
                    self.refresh_tools_snapshot(child);
                }
                let streams: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|s| s.child == child)
                    .filter_map(|s| s.stream)
                    .collect();
                for ex in streams {
                    self.message(ex, line.to_vec());
                }
            }
            "notifications/resources/updated" => {
                let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                let Some(uri) = v["params"]["uri"].as_str() else {
                    return;
                };
                let streams: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|s| s.child == child && s.subscriptions.contains(uri))
                    .filter_map(|s| s.stream)
                    .collect();
                for ex in streams {
                    self.message(ex, line.to_vec());
                }
            }
            "notifications/cancelled" => {
                // The server withdraws one of its requests to a client.
                let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                let child_req = serde_json::to_vec(&v["params"]["requestId"]).unwrap_or_default();
                let found = self
                    .server_requests
                    .iter()
                    .find(|(_, r)| r.child == child && r.child_id[..] == child_req[..])
                    .map(|(k, r)| (*k, r.pending));
                if let Some((sid, pending)) = found {
                    self.server_requests.remove(&sid);
                    let mut msg = v.clone();
                    msg["params"]["requestId"] = Value::from(sid);
                    let body = serde_json::to_vec(&msg).expect("json");
                    if let Some(ex) = self.pending.get(&pending).and_then(|p| p.exchange) {
                        self.message(ex, body);
                    }
                }
            }
            _ => self.route_unkeyed(child, line),
        }
    }

    /// Notifications with no routing key (module docs).
    fn route_unkeyed(&mut self, child: ChildId, line: &Bytes) {
        let mut owner: Option<Option<&str>> = None;
        let mut target = None;
        let mut ambiguous = false;
        for p in self.pending.values() {
            if p.child != child || p.purpose != Purpose::Client || p.cancelled {
                continue;
            }
            let Some(ex) = p.exchange else { continue };
            if !self.exchanges.contains_key(&ex) {
                continue;
            }
            let who = p.session.as_deref();
            match owner {
                None => owner = Some(who),
                Some(o) if o == who && who.is_some() => {}
                Some(_) => {
                    ambiguous = true;
                    break;
                }
            }
            target = Some(ex);
        }
        if ambiguous {
            debug!(
                child,
                "notification with no routing key while several clients are busy; kept local"
            );
            return;
        }
        if let Some(ex) = target {
            self.message(ex, line.to_vec());
            return;
        }
        let streams: Vec<u64> = self
            .sessions
            .iter()
            .filter(|s| s.child == child && s.wants_logs)
            .filter_map(|s| s.stream)
            .collect();
        for ex in streams {
            self.message(ex, line.to_vec());
        }
    }

    /// Asks a child for its tools list, kept for the relay's offline answers.
    fn refresh_tools_snapshot(&mut self, child: ChildId) {
        self.internal_request_for(
            child,
            "tools/list",
            serde_json::json!({}),
            Purpose::ToolsSnapshot,
        );
    }

    fn internal_request(&mut self, child: ChildId, method: &str, params: Value) {
        self.internal_request_for(child, method, params, Purpose::Internal);
    }

    fn internal_request_for(
        &mut self,
        child: ChildId,
        method: &str,
        params: Value,
        purpose: Purpose,
    ) {
        let id = self.fresh_id();
        let msg =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let Some(slot) = self.children.get(&child) else {
            return;
        };
        if slot
            .handle
            .send_line(serde_json::to_vec(&msg).expect("json"))
        {
            self.pending.insert(id, Pending::internal(child, purpose));
        }
    }

    // ----- output ----------------------------------------------------------------

    fn push(
        &mut self,
        exchange: u64,
        status: u16,
        session: Option<String>,
        flags: u8,
        body: Vec<u8>,
    ) {
        if flags & FLAG_FINAL != 0 {
            self.exchanges.remove(&exchange);
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

    /// Ends an exchange with one answer.
    fn reply(&mut self, exchange: u64, status: u16, session: Option<String>, body: Vec<u8>) {
        self.push(exchange, status, session, FLAG_FINAL, body);
    }

    /// Adds one message to an exchange's stream (if it is still open).
    fn message(&mut self, exchange: u64, body: Vec<u8>) {
        if self.exchanges.contains_key(&exchange) {
            self.push(exchange, 200, None, 0, body);
        }
    }

    /// Answers on an exchange: finally (Streamable POST) or as a stream message (legacy).
    fn answer_to(&mut self, exchange: u64, is_final: bool, body: &[u8]) {
        if !self.exchanges.contains_key(&exchange) {
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
        if !self.exchanges.contains_key(&ex) {
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

    // ----- relay side --------------------------------------------------------------

    /// The relay link went down: every exchange is gone (sessions stay).
    pub fn on_link_down(&mut self) {
        self.exchanges.clear();
        self.outbox.clear();
        let legacy: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.legacy)
            .map(|s| s.id.clone())
            .collect();
        for sid in legacy {
            self.end_session(&sid, false);
        }
        for s in self.sessions.iter_mut() {
            s.stream = None;
        }
    }

    /// The relay abandoned an exchange (its client went away).
    pub fn on_cancel(&mut self, exchange: u64) {
        match self.exchanges.remove(&exchange) {
            Some(Role::Stream(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid)
                    && s.stream == Some(exchange)
                {
                    s.stream = None;
                }
            }
            Some(Role::LegacyStream(sid)) => {
                // Closing a legacy SSE stream ends its session.
                self.end_session(&sid, false);
            }
            // A disconnect is not a cancellation in the 2025 revisions: the request runs
            // on; its answer is dropped.
            Some(Role::Post) | Some(Role::Probe) | None => {}
        }
    }

    /// Handles one exchange from the relay.
    pub fn on_request(&mut self, r: Request) {
        let exchange = r.exchange;
        if self.draining {
            self.exchanges.insert(exchange, Role::Post);
            self.reply(
                exchange,
                503,
                None,
                ex_body(
                    UNAVAILABLE,
                    "the bridge is shutting down; retry in a moment",
                ),
            );
            return;
        }
        match r.kind {
            RequestKind::Post => {
                self.exchanges.insert(exchange, Role::Post);
                let ctx = Ctx {
                    principal: r.principal,
                    session: r.session,
                    exchange,
                    legacy: false,
                };
                self.on_message(ctx, r.body);
            }
            RequestKind::LegacyPost => {
                self.exchanges.insert(exchange, Role::Post);
                let sid = r.session.unwrap_or_default();
                let ok = self
                    .sessions
                    .touch(&sid, &r.principal)
                    .is_some_and(|s| s.legacy);
                if !ok {
                    self.reply(
                        exchange,
                        404,
                        None,
                        ex_body(SESSION_NOT_FOUND, "Session not found"),
                    );
                    return;
                }
                let ctx = Ctx {
                    principal: r.principal,
                    session: Some(sid),
                    exchange,
                    legacy: true,
                };
                self.on_message(ctx, r.body);
            }
            RequestKind::Get => self.on_get(exchange, r.session, &r.principal),
            RequestKind::Delete => self.on_delete(exchange, r.session, &r.principal),
            RequestKind::LegacyOpen => self.on_legacy_open(exchange, &r.principal),
        }
    }

    fn on_get(&mut self, exchange: u64, session: Option<String>, principal: &str) {
        let Some(sid) = session else {
            // No session: the connector probe of hosted clients. An open stream with
            // keep-alives is the answer they need.
            self.exchanges.insert(exchange, Role::Probe);
            self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
            return;
        };
        let old = match self.sessions.touch(&sid, principal) {
            Some(s) if !s.legacy => s.stream.replace(exchange),
            _ => {
                self.exchanges.insert(exchange, Role::Post);
                self.reply(
                    exchange,
                    404,
                    None,
                    ex_body(SESSION_NOT_FOUND, "Session not found"),
                );
                return;
            }
        };
        if let Some(old) = old {
            // One standalone stream per session: the newest replaces the previous.
            if self.exchanges.contains_key(&old) {
                self.push(old, 200, None, FLAG_FINAL, Vec::new());
            }
        }
        self.exchanges.insert(exchange, Role::Stream(sid));
        self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
    }

    fn on_delete(&mut self, exchange: u64, session: Option<String>, principal: &str) {
        self.exchanges.insert(exchange, Role::Post);
        let Some(sid) = session else {
            self.reply(
                exchange,
                400,
                None,
                ex_body(
                    INVALID_REQUEST,
                    "Bad Request: Mcp-Session-Id header is required",
                ),
            );
            return;
        };
        if self.sessions.touch(&sid, principal).is_none() {
            self.reply(
                exchange,
                404,
                None,
                ex_body(SESSION_NOT_FOUND, "Session not found"),
            );
            return;
        }
        self.end_session(&sid, true);
        self.reply(exchange, 200, None, Vec::new());
    }

    fn on_legacy_open(&mut self, exchange: u64, principal: &str) {
        let child = match self.child_for_new_session() {
            Ok(c) => c,
            Err(e) => {
                self.exchanges.insert(exchange, Role::Post);
                self.reply(exchange, 503, None, ex_body(UNAVAILABLE, &e));
                return;
            }
        };
        self.make_room_for_session(principal);
        let sid = self.sessions.create(
            principal,
            child,
            protocol::LEGACY_MCP_VERSIONS[3].to_owned(),
            ClientCaps::default(),
            true,
            self.cfg.isolate,
        );
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.stream = Some(exchange);
        }
        self.exchanges
            .insert(exchange, Role::LegacyStream(sid.clone()));
        self.push(exchange, 200, Some(sid), FLAG_STREAM, Vec::new());
    }

    fn make_room_for_session(&mut self, principal: &str) {
        while self.sessions.len() >= self.cfg.max_sessions.max(1) {
            let Some(oldest) = self.sessions.oldest() else {
                break;
            };
            info!("evicting the least recently used session to make room");
            self.end_session(&oldest, true);
        }
        while self.sessions.count_of(principal) >= self.cfg.max_sessions_per_principal.max(1) {
            let Some(oldest) = self.sessions.oldest_of(principal) else {
                break;
            };
            info!("evicting this client's least recently used session to make room");
            self.end_session(&oldest, true);
        }
    }

    /// A child for a session about to be created: its own under `isolate`.
    fn child_for_new_session(&mut self) -> Result<ChildId, String> {
        if !self.cfg.isolate {
            return self.shared_child();
        }
        let owned = self.sessions.iter().filter(|s| s.owns_child).count();
        if owned >= self.cfg.max_children.max(1)
            && let Some(oldest) = self.sessions.oldest_owning_child()
        {
            info!("stopping the least recently used session's server to make room");
            self.end_session(&oldest, true);
        }
        self.spawn_child()
    }

    fn end_session(&mut self, sid: &str, close_stream: bool) {
        let Some(s) = self.sessions.remove(sid) else {
            return;
        };
        for uri in &s.subscriptions {
            let key = (s.child, uri.clone());
            if let Some(n) = self.subscriptions.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.subscriptions.remove(&key);
                    self.internal_request(
                        s.child,
                        "resources/unsubscribe",
                        serde_json::json!({"uri": uri}),
                    );
                }
            }
        }
        if let Some(stream) = s.stream {
            if close_stream && self.exchanges.contains_key(&stream) {
                self.push(stream, 200, None, FLAG_FINAL, Vec::new());
            } else {
                self.exchanges.remove(&stream);
            }
        }
        if s.owns_child
            && let Some(slot) = self.children.remove(&s.child)
        {
            drop(slot); // kills the process group
            let ids: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| p.child == s.child)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(p) = self.pending.remove(&id)
                    && p.purpose == Purpose::Client
                    && !p.cancelled
                {
                    let body = error_response(&p.original_id, INTERNAL_ERROR, "the session ended");
                    self.deliver(&p, body, true);
                }
            }
            self.server_requests.retain(|_, r| r.child != s.child);
        }
    }

    // ----- client messages -------------------------------------------------------

    fn on_message(&mut self, ctx: Ctx, body: Bytes) {
        let env = match jsonrpc::parse(&body) {
            Ok(e) => e,
            Err(e) => {
                self.reply(
                    ctx.exchange,
                    400,
                    None,
                    ex_body(e.code(), &format!("Bad Request: {e}")),
                );
                return;
            }
        };
        if let Some(sid) = &ctx.session
            && !ctx.legacy
            && self.sessions.touch(sid, &ctx.principal).is_none()
        {
            self.reply(
                ctx.exchange,
                404,
                None,
                ex_body(SESSION_NOT_FOUND, "Session not found"),
            );
            return;
        }
        match env.kind {
            Kind::Request => self.on_client_request(&ctx, &body, &env),
            Kind::Notification => {
                self.on_client_notification(&ctx, &body, &env);
                self.reply(ctx.exchange, 202, None, Vec::new());
            }
            Kind::Response => {
                self.on_client_response(&ctx, &body, &env);
                self.reply(ctx.exchange, 202, None, Vec::new());
            }
        }
        if ctx.legacy && self.exchanges.contains_key(&ctx.exchange) {
            self.reply(ctx.exchange, 202, None, Vec::new());
        }
    }

    fn on_client_request(&mut self, ctx: &Ctx, body: &Bytes, env: &Envelope<'_>) {
        let id = Bytes::copy_from_slice(&body[env.id.clone().expect("requests have ids")]);
        let method = env.method.as_deref().unwrap_or("");
        if method == "server/discover" || env.meta_protocol_version.is_some() {
            // A 2026-07-28-era request: answered like a 2025-era server answers an unknown
            // method, so modern clients fall back to initialize.
            let msg =
                "Method not found: this endpoint serves MCP 2025-11-25 and earlier; use initialize";
            self.answer(ctx, error_response(&id, METHOD_NOT_FOUND, msg));
            return;
        }
        match method {
            "initialize" => self.on_initialize(ctx, id, body),
            "ping" => self.answer(ctx, result_response(&id, b"{}")),
            "resources/subscribe" | "resources/unsubscribe" => {
                self.on_subscription(ctx, id, body, env, method == "resources/subscribe")
            }
            _ => {
                if method == "logging/setLevel"
                    && let Some(s) = ctx
                        .session
                        .as_deref()
                        .and_then(|s| self.sessions.get_mut(s))
                {
                    s.wants_logs = true;
                }
                self.forward(ctx, id, body, env);
            }
        }
    }

    fn child_of(&mut self, ctx: &Ctx) -> Result<ChildId, String> {
        match ctx.session.as_deref().and_then(|s| self.sessions.get(s)) {
            Some(s) => Ok(s.child),
            None => self.shared_child(),
        }
    }

    fn forward(&mut self, ctx: &Ctx, id: Bytes, body: &Bytes, env: &Envelope<'_>) {
        let child = match self.child_of(ctx) {
            Ok(c) => c,
            Err(e) => {
                self.answer(
                    ctx,
                    error_response(
                        &id,
                        UNAVAILABLE,
                        &format!("the local MCP server cannot start: {e}"),
                    ),
                );
                return;
            }
        };
        let ready = matches!(
            self.children.get(&child).map(|s| &s.state),
            Some(ChildState::Ready { .. })
        );
        if !ready {
            self.answer(
                ctx,
                error_response(
                    &id,
                    UNAVAILABLE,
                    "the local MCP server is starting; retry in a moment",
                ),
            );
            return;
        }
        if let Some(s) = ctx.session.as_deref().and_then(|s| self.sessions.get(s))
            && s.in_flight.len() >= self.cfg.max_in_flight_per_session
        {
            self.answer(
                ctx,
                error_response(
                    &id,
                    UNAVAILABLE,
                    "too many requests in flight in this session; retry when some finish",
                ),
            );
            return;
        }
        let cid = self.fresh_id();
        let cid_text = cid.to_string();
        let mut edits: Vec<(std::ops::Range<usize>, &[u8])> =
            vec![(env.id.clone().expect("request"), cid_text.as_bytes())];
        let original_token = env.progress_token.clone().map(|span| {
            let tok = Bytes::copy_from_slice(&body[span.clone()]);
            edits.push((span, cid_text.as_bytes()));
            tok
        });
        let line = splice(body, &mut edits);
        let sent = self
            .children
            .get(&child)
            .is_some_and(|s| s.handle.send_line(line));
        if !sent {
            self.answer(
                ctx,
                error_response(
                    &id,
                    UNAVAILABLE,
                    "the local MCP server is not reading its input; retry later",
                ),
            );
            return;
        }
        let (exchange, reply_final) = if ctx.legacy {
            (
                ctx.session
                    .as_deref()
                    .and_then(|s| self.sessions.get(s))
                    .and_then(|s| s.stream),
                false,
            )
        } else {
            (Some(ctx.exchange), true)
        };
        if let Some(s) = ctx
            .session
            .as_deref()
            .and_then(|s| self.sessions.get_mut(s))
        {
            s.in_flight.insert(id.clone(), cid);
        }
        self.pending.insert(
            cid,
            Pending {
                child,
                purpose: Purpose::Client,
                exchange,
                reply_final,
                session: ctx.session.clone(),
                original_id: id,
                original_token,
                cancelled: false,
                awaiting_client: false,
                deadline: Some(Instant::now() + self.cfg.call_timeout),
            },
        );
    }

    fn on_subscription(
        &mut self,
        ctx: &Ctx,
        id: Bytes,
        body: &Bytes,
        env: &Envelope<'_>,
        subscribe: bool,
    ) {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let Some(uri) = v["params"]["uri"].as_str().map(str::to_owned) else {
            self.answer(
                ctx,
                error_response(&id, jsonrpc::INVALID_PARAMS, "params.uri is required"),
            );
            return;
        };
        let Some(sid) = ctx.session.clone() else {
            // No session to deliver updates to: let the server answer, without tracking.
            self.forward(ctx, id, body, env);
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let child = s.child;
        let key = (child, uri.clone());
        if subscribe {
            if !s.subscriptions.insert(uri) {
                self.answer(ctx, result_response(&id, b"{}"));
                return;
            }
            let n = self.subscriptions.entry(key).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.forward(ctx, id, body, env);
            } else {
                self.answer(ctx, result_response(&id, b"{}"));
            }
        } else {
            if !s.subscriptions.remove(&uri) {
                self.answer(ctx, result_response(&id, b"{}"));
                return;
            }
            let last = match self.subscriptions.get_mut(&key) {
                Some(n) => {
                    *n -= 1;
                    *n == 0
                }
                None => true,
            };
            if last {
                self.subscriptions.remove(&key);
                self.forward(ctx, id, body, env);
            } else {
                self.answer(ctx, result_response(&id, b"{}"));
            }
        }
    }

    fn on_initialize(&mut self, ctx: &Ctx, id: Bytes, body: &Bytes) {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let params = &v["params"];
        let requested = params["protocolVersion"].as_str().map(str::to_owned);
        let caps = ClientCaps::from_initialize(params);
        let (child, legacy_session) = if ctx.legacy {
            let sid = ctx.session.clone().expect("legacy messages have a session");
            let child = self.sessions.get(&sid).map(|s| s.child);
            match child {
                Some(c) => (c, Some(sid)),
                None => return,
            }
        } else {
            match self.child_for_new_session() {
                Ok(c) => (c, None),
                Err(e) => {
                    self.answer(
                        ctx,
                        error_response(
                            &id,
                            UNAVAILABLE,
                            &format!("the local MCP server cannot start: {e}"),
                        ),
                    );
                    return;
                }
            }
        };
        let exchange = if ctx.legacy {
            match legacy_session
                .as_deref()
                .and_then(|s| self.sessions.get(s))
                .and_then(|s| s.stream)
            {
                Some(ex) => ex,
                None => return,
            }
        } else {
            ctx.exchange
        };
        let w = WaitingInit {
            exchange,
            id,
            requested,
            caps,
            principal: ctx.principal.clone(),
            legacy_session,
        };
        let ready = !matches!(
            self.children.get(&child).map(|s| &s.state),
            Some(ChildState::Starting)
        );
        if ready {
            self.complete_initialize(child, w);
        } else if let Some(slot) = self.children.get_mut(&child) {
            slot.waiting.push(w);
        }
    }

    fn complete_initialize(&mut self, child: ChildId, w: WaitingInit) {
        let is_final = w.legacy_session.is_none();
        let (result, child_version) = match self.children.get(&child).map(|s| &s.state) {
            Some(ChildState::Ready { result, version }) => (result.clone(), version.clone()),
            Some(ChildState::Failed(e)) => {
                let msg = format!("the local MCP server failed to initialize: {e}");
                self.answer_to(
                    w.exchange,
                    is_final,
                    &error_response(&w.id, INTERNAL_ERROR, &msg),
                );
                return;
            }
            _ => {
                self.answer_to(
                    w.exchange,
                    is_final,
                    &error_response(&w.id, INTERNAL_ERROR, "the local MCP server is not running"),
                );
                return;
            }
        };
        let version = init::negotiate(w.requested.as_deref(), &child_version);
        let body = result_response(&w.id, &init::result_for(&result, &version));
        match w.legacy_session {
            Some(sid) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.protocol_version = version;
                    s.caps = w.caps;
                }
                self.message(w.exchange, body);
            }
            None => {
                if !self.exchanges.contains_key(&w.exchange) {
                    if self.cfg.isolate {
                        // Nobody will use this child.
                        self.children.remove(&child);
                    }
                    return;
                }
                self.make_room_for_session(&w.principal);
                let sid = self.sessions.create(
                    &w.principal,
                    child,
                    version,
                    w.caps,
                    false,
                    self.cfg.isolate,
                );
                self.reply(w.exchange, 200, Some(sid), body);
            }
        }
    }

    fn on_client_notification(&mut self, ctx: &Ctx, body: &Bytes, env: &Envelope<'_>) {
        let method = env.method.as_deref().unwrap_or("");
        match method {
            // The child was initialized by the bridge; remote roots are never forwarded.
            "notifications/initialized" | "notifications/roots/list_changed" => {}
            "notifications/cancelled" => {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let Ok(rid) = serde_json::to_vec(&v["params"]["requestId"]) else {
                    return;
                };
                let Some(sid) = ctx.session.as_deref() else {
                    debug!("cancellation without a session cannot be matched; ignored");
                    return;
                };
                let Some(cid) = self
                    .sessions
                    .get(sid)
                    .and_then(|s| s.in_flight.get(&Bytes::from(rid)).copied())
                else {
                    return;
                };
                let Some(p) = self.pending.get_mut(&cid) else {
                    return;
                };
                p.cancelled = true;
                let child = p.child;
                let mut msg = serde_json::json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": { "requestId": cid }
                });
                if let Some(reason) = v["params"].get("reason") {
                    msg["params"]["reason"] = reason.clone();
                }
                if let Some(slot) = self.children.get(&child) {
                    slot.handle
                        .send_line(serde_json::to_vec(&msg).expect("json"));
                }
                // The request will get no answer from the server: end its stream.
                let p = self.pending.get(&cid).expect("present");
                let (ex, fin, oid) = (p.exchange, p.reply_final, p.original_id.clone());
                if let (Some(ex), true) = (ex, fin)
                    && self.exchanges.contains_key(&ex)
                {
                    self.reply(
                        ex,
                        200,
                        None,
                        error_response(&oid, REQUEST_CANCELLED, "Request cancelled"),
                    );
                }
            }
            _ => {
                let child = match self.child_of(ctx) {
                    Ok(c) => c,
                    Err(_) => return,
                };
                if let Some(slot) = self.children.get(&child) {
                    slot.handle.send_line(splice(body, &mut []));
                }
            }
        }
    }

    fn on_client_response(&mut self, ctx: &Ctx, body: &Bytes, env: &Envelope<'_>) {
        let Some(span) = env.id.clone() else { return };
        let Some(sid) = std::str::from_utf8(&body[span.clone()])
            .ok()
            .and_then(|s| s.trim_matches('"').parse::<u64>().ok())
        else {
            return;
        };
        let Some(req) = self.server_requests.get(&sid) else {
            debug!("answer to an unknown server request; ignored");
            return;
        };
        if req.session.is_some() && req.session != ctx.session {
            debug!("answer to another session's server request; ignored");
            return;
        }
        let req = self.server_requests.remove(&sid).expect("present");
        if let Some(p) = self.pending.get_mut(&req.pending) {
            p.awaiting_client = false;
        }
        let line = splice(body, &mut [(span, &req.child_id[..])]);
        if let Some(slot) = self.children.get(&req.child) {
            slot.handle.send_line(line);
        }
    }
}

/// Locates `params.progressToken` of a progress notification (it sits in `params`, not
/// in `params._meta`).
fn progress_span(line: &[u8], env: &Envelope<'_>) -> Option<std::ops::Range<usize>> {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a serde_json::value::RawValue>,
    }
    let params = env.params.clone()?;
    let text = std::str::from_utf8(&line[params.clone()]).ok()?;
    let p: P<'_> = serde_json::from_str(text).ok()?;
    let tok = p.token?.get();
    let start = tok.as_ptr() as usize - line.as_ptr() as usize;
    Some(start..start + tok.len())
}
