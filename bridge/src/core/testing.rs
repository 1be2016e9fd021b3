//! Support for the core's unit tests: [`FakeChildren`] records what the core starts,
//! writes and stops, and a [`Harness`] feeds the core events at a time it controls and
//! reads what came out (frames for the relay, lines for the children). The harness also
//! names the steps the tests share (open a session, put a call in flight, answer from the
//! child, expect one frame on an exchange), and the free functions build the messages.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::stateless::{META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION};
use protocol::{Frame, Request, RequestKind, Response};
use serde_json::{Value, json};

use super::children::Children;
use super::{Core, CoreConfig};
use crate::child::{ChildEvent, ChildId, ChildSpec};

/// What the fake children saw.
#[derive(Default)]
pub(super) struct ChildLog {
    /// Every child started, in order.
    pub(super) spawned: Vec<ChildId>,
    /// Children running now.
    pub(super) running: BTreeSet<ChildId>,
    /// Children stopped, in order.
    pub(super) killed: Vec<ChildId>,
    /// Lines written to each child and not yet read by the test.
    lines: BTreeMap<ChildId, Vec<Vec<u8>>>,
    /// Starting a child fails.
    pub(super) refuse_spawn: bool,
    /// Children take no input (stdin full).
    pub(super) stdin_full: bool,
}

/// A [`Children`] that starts nothing and records everything.
pub(super) struct FakeChildren(Rc<RefCell<ChildLog>>);

impl Children for FakeChildren {
    fn spawn(&mut self, id: ChildId, _: &ChildSpec) -> Result<(), String> {
        let mut log = self.0.borrow_mut();
        if log.refuse_spawn {
            return Err("cannot start \"fake-server\": not found".into());
        }
        log.spawned.push(id);
        log.running.insert(id);
        Ok(())
    }

    fn send_line(&mut self, id: ChildId, line: Vec<u8>) -> bool {
        let mut log = self.0.borrow_mut();
        if !log.running.contains(&id) || log.stdin_full {
            return false;
        }
        log.lines.entry(id).or_default().push(line);
        true
    }

    fn stdin_closed(&self, id: ChildId) -> bool {
        !self.0.borrow().running.contains(&id)
    }

    fn stderr_tail(&self, id: ChildId) -> Vec<String> {
        vec![format!("child {id} wrote this")]
    }

    fn kill(&mut self, id: ChildId) {
        let mut log = self.0.borrow_mut();
        if log.running.remove(&id) {
            log.killed.push(id);
        }
    }
}

/// The initialize result the fake server gives (every capability, subscriptions too).
pub(super) fn server_info() -> Value {
    json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {
            "tools": { "listChanged": true },
            "prompts": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "logging": {}
        },
        "serverInfo": { "name": "fake", "version": "1.0" }
    })
}

/// The client capabilities of a session that can answer every server request.
pub(super) fn all_caps() -> Value {
    json!({ "sampling": {}, "elicitation": {}, "roots": {} })
}

/// A core on fake children, driven at a controlled time.
pub(super) struct Harness {
    pub(super) core: Core,
    pub(super) children: Rc<RefCell<ChildLog>>,
    /// The time of the next event.
    pub(super) now: Instant,
}

impl Harness {
    /// A core with default settings, changed by `configure`; nothing started.
    pub(super) fn new(configure: impl FnOnce(&mut CoreConfig)) -> Self {
        let mut cfg = CoreConfig::new(ChildSpec {
            program: "fake-server".into(),
            args: Vec::new(),
            max_line: 1 << 20,
            env: Vec::new(),
            cwd: None,
        });
        configure(&mut cfg);
        let children = Rc::new(RefCell::new(ChildLog::default()));
        let now = Instant::now();
        let core = Core::with_children(cfg, Box::new(FakeChildren(children.clone())), now);
        Self {
            core,
            children,
            now,
        }
    }

    /// A core whose shared child (1) has started and is ready; nothing written or sent is
    /// left to read.
    pub(super) fn ready(configure: impl FnOnce(&mut CoreConfig)) -> Self {
        let mut h = Self::new(configure);
        h.core.start_default_child().expect("the fake child starts");
        h.start(1);
        h.outbox();
        h
    }

    /// Completes the start of `child`: answers the bridge's `initialize` with
    /// [`server_info`] and its `tools/list` with one tool, and drops the lines read.
    pub(super) fn start(&mut self, child: ChildId) {
        let init = self.take_request(child, "initialize");
        self.child_says(
            child,
            json!({ "jsonrpc": "2.0", "id": init["id"], "result": server_info() }),
        );
        let lines = self.lines(child);
        if let Some(list) = lines.iter().find(|l| l["method"] == "tools/list") {
            self.child_says(
                child,
                json!({ "jsonrpc": "2.0", "id": list["id"], "result": { "tools": [ { "name": "echo", "inputSchema": { "type": "object" } } ] } }),
            );
        }
    }

    /// Moves the clock on.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// An exchange from the relay.
    pub(super) fn request(&mut self, r: Request) {
        self.core.on_request(r, self.now);
    }

    /// A Streamable `POST` of `body` by `principal`, in `session` if any.
    pub(super) fn post_as(
        &mut self,
        principal: &str,
        exchange: u64,
        session: Option<&str>,
        body: Value,
    ) {
        self.post_text(principal, exchange, session, body.to_string());
    }

    /// A Streamable `POST` of `text`, as it is, by `principal`, in `session` if any.
    pub(super) fn post_text(
        &mut self,
        principal: &str,
        exchange: u64,
        session: Option<&str>,
        text: String,
    ) {
        let mut r = exchange_of(exchange, RequestKind::Post, session, principal);
        r.body = Bytes::from(text);
        self.request(r);
    }

    /// A Streamable `POST` of `body` by "alice", in `session` if any.
    pub(super) fn post(&mut self, exchange: u64, session: Option<&str>, body: Value) {
        self.post_as("alice", exchange, session, body);
    }

    /// A body-less exchange (`GET`, `DELETE`, HTTP+SSE open) by `principal`.
    pub(super) fn bodiless(
        &mut self,
        exchange: u64,
        kind: RequestKind,
        session: Option<&str>,
        principal: &str,
    ) {
        self.request(exchange_of(exchange, kind, session, principal));
    }

    /// "alice" resumes a stream of `session` after the event `last` (`GET` with
    /// `Last-Event-ID`) on `exchange`.
    pub(super) fn resume(&mut self, exchange: u64, session: &str, last: &str) {
        let mut r = exchange_of(exchange, RequestKind::Get, Some(session), "alice");
        r.last_event_id = Some(last.into());
        self.request(r);
    }

    /// The relay abandoned an exchange.
    pub(super) fn cancel(&mut self, exchange: u64) {
        self.core.on_cancel(exchange, self.now);
    }

    /// The relay link went down.
    pub(super) fn link_down(&mut self) {
        self.core.on_link_down(self.now);
    }

    /// The driver's periodic tick.
    pub(super) fn tick(&mut self) {
        self.core.on_tick(self.now);
    }

    /// A line on a child's stdout.
    pub(super) fn child_says(&mut self, child: ChildId, msg: Value) {
        let line = Bytes::from(msg.to_string());
        self.core
            .on_child_event(ChildEvent::Line(child, line), self.now);
    }

    /// A child exited (the core still holds it until it stops it).
    pub(super) fn child_exits(&mut self, child: ChildId) {
        self.core
            .on_child_event(ChildEvent::Exited(child, "exit status: 1".into()), self.now);
    }

    /// The lines written to `child` since the last look, as JSON.
    pub(super) fn lines(&mut self, child: ChildId) -> Vec<Value> {
        let lines = self
            .children
            .borrow_mut()
            .lines
            .remove(&child)
            .unwrap_or_default();
        lines
            .iter()
            .map(|l| serde_json::from_slice(l).expect("the core writes JSON lines"))
            .collect()
    }

    /// The one request with `method` among the lines written to `child` since the last
    /// look (the others are dropped).
    pub(super) fn take_request(&mut self, child: ChildId, method: &str) -> Value {
        let lines = self.lines(child);
        let mut found = lines.into_iter().filter(|l| l["method"] == method);
        let one = found
            .next()
            .unwrap_or_else(|| panic!("no {method} was written"));
        assert!(found.next().is_none(), "more than one {method} was written");
        one
    }

    /// The response frames sent since the last look.
    pub(super) fn outbox(&mut self) -> Vec<Response> {
        self.core
            .take_outbox()
            .into_iter()
            .filter_map(|f| match f {
                Frame::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The one response frame sent since the last look.
    pub(super) fn one_frame(&mut self) -> Response {
        let mut out = self.outbox();
        assert_eq!(out.len(), 1, "expected one frame, got {out:?}");
        out.remove(0)
    }

    /// Opens a Streamable session for `principal` (its client declares `caps`) on
    /// exchange `exchange`; its id.
    pub(super) fn session_for(&mut self, principal: &str, exchange: u64, caps: Value) -> String {
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": caps,
                        "clientInfo": { "name": "test", "version": "1" } }
        });
        self.post_as(principal, exchange, None, init);
        let r = self.one_frame();
        assert_eq!(r.status, 200, "{r:?}");
        r.session.expect("initialize creates a session")
    }

    /// Opens a session for "alice" on exchange `exchange`, able to answer every server
    /// request; its id.
    pub(super) fn session(&mut self, exchange: u64) -> String {
        self.session_for("alice", exchange, all_caps())
    }

    /// Completes the start of `child` for the `initialize` posted last (under `isolate`);
    /// the session its answer opened.
    pub(super) fn session_on_start(&mut self, child: ChildId) -> String {
        self.start(child);
        self.one_frame().session.expect("a session")
    }

    /// "alice" opens `session`'s standalone stream (`GET`) on `exchange`; the stream's head.
    pub(super) fn open_stream(&mut self, exchange: u64, session: &str) -> Response {
        self.bodiless(exchange, RequestKind::Get, Some(session), "alice");
        self.one_frame()
    }

    /// Opens two sessions of "alice" (on exchanges 1 and 2), then their standalone
    /// streams (on 10 and 11); the sessions' ids.
    pub(super) fn two_sessions_with_streams(&mut self) -> (String, String) {
        let a = self.session(1);
        let b = self.session(2);
        for (exchange, sid) in [(10, &a), (11, &b)] {
            assert!(self.open_stream(exchange, sid).wants_stream());
        }
        (a, b)
    }

    /// `principal` calls the tool "echo" (request id `id`) in `session` on `exchange`.
    pub(super) fn call_echo_as(
        &mut self,
        principal: &str,
        exchange: u64,
        session: &str,
        id: impl Into<Value>,
    ) {
        self.post_as(principal, exchange, Some(session), echo(id));
    }

    /// "alice" calls the tool "echo" (request id `id`) in `session` on `exchange`.
    pub(super) fn call_echo(&mut self, exchange: u64, session: &str, id: impl Into<Value>) {
        self.call_echo_as("alice", exchange, session, id);
    }

    /// "alice" calls the tool "echo" in `session` on `exchange`, and the shared child (1)
    /// gets it: the call as the child got it, now in flight.
    pub(super) fn echo_in_flight(
        &mut self,
        exchange: u64,
        session: &str,
        id: impl Into<Value>,
    ) -> Value {
        self.call_echo(exchange, session, id);
        self.take_request(1, "tools/call")
    }

    /// "alice" makes a 2026-07-28 call of the tool "echo" (request id `id`, her client
    /// declaring `caps`) on `exchange`, and the shared child (1) gets it: the call as the
    /// child got it, now in flight.
    pub(super) fn stateless_echo_in_flight(
        &mut self,
        exchange: u64,
        id: u64,
        caps: Value,
    ) -> Value {
        self.post(exchange, None, stateless_echo(id, caps));
        self.take_request(1, "tools/call")
    }

    /// `child` answers `request` (a line the core wrote) with `result`.
    pub(super) fn child_answers(&mut self, child: ChildId, request: &Value, result: Value) {
        self.child_says(child, result_for(request, result));
    }

    /// "alice" sends `request` in `session` on `exchange`, the shared child (1) gets it and
    /// answers it with `result`; the one frame that came of it.
    pub(super) fn round_trip(
        &mut self,
        exchange: u64,
        session: &str,
        request: Value,
        result: Value,
    ) -> Response {
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        self.post(exchange, Some(session), request);
        let sent = self.take_request(1, &method);
        self.child_answers(1, &sent, result);
        self.one_frame()
    }

    /// The status `principal` gets for a `ping` in `session` on `exchange`.
    pub(super) fn ping_status(&mut self, principal: &str, exchange: u64, session: &str) -> u16 {
        self.post_as(
            principal,
            exchange,
            Some(session),
            call(1, "ping", json!({})),
        );
        self.one_frame().status
    }

    /// The one response frame sent since the last look, checked to be on `exchange`.
    pub(super) fn frame_on(&mut self, exchange: u64) -> Response {
        let r = self.one_frame();
        assert_eq!(r.exchange, exchange, "{r:?}");
        r
    }
}

/// An exchange of `kind` by `principal`, in `session` if any, without a body.
fn exchange_of(
    exchange: u64,
    kind: RequestKind,
    session: Option<&str>,
    principal: &str,
) -> Request {
    Request {
        exchange,
        kind,
        session: session.map(str::to_owned),
        protocol_version: None,
        last_event_id: None,
        principal: principal.into(),
        body: Bytes::new(),
    }
}

/// A frame's JSON-RPC message.
pub(super) fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

/// A JSON-RPC request.
pub(super) fn call(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.into(), "method": method, "params": params })
}

/// A `tools/call` of the fake server's tool, "echo".
pub(super) fn echo(id: impl Into<Value>) -> Value {
    call(id, "tools/call", json!({ "name": "echo" }))
}

/// An `initialize` whose client gives its name and asks for `version`, if any.
pub(super) fn initialize(version: Option<&str>) -> Value {
    let mut params = json!({ "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } });
    if let Some(v) = version {
        params["protocolVersion"] = json!(v);
    }
    call(0, "initialize", params)
}

/// An `initialize` with nothing but (no) client capabilities.
pub(super) fn bare_initialize() -> Value {
    call(0, "initialize", json!({ "capabilities": {} }))
}

/// A 2026-07-28 request whose client declares `caps`.
pub(super) fn stateless(id: u64, method: &str, mut params: Value, caps: Value) -> Value {
    params["_meta"] =
        json!({ META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: caps });
    call(id, method, params)
}

/// A 2026-07-28 call of the tool "echo" whose client declares `caps`.
pub(super) fn stateless_echo(id: u64, caps: Value) -> Value {
    stateless(id, "tools/call", json!({ "name": "echo" }), caps)
}

/// A JSON-RPC notification.
pub(super) fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// A child's result for `request` (a line the core wrote).
pub(super) fn result_for(request: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": request["id"], "result": result })
}
