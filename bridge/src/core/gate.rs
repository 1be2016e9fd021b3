//! The desktop policy in the core (see `crate::policy`), for every era alike:
//! - a `tools/call` of a hidden tool is answered -32602 "Unknown tool: NAME" without
//!   reaching the server; `tools/list` answers (and the offline snapshot) lose hidden
//!   tools and get the annotation overrides;
//! - a call of a `confirm_tools` tool is held (never sent to the server) until the owner
//!   types `y CODE` or `n CODE` in the terminal; declined, unanswered in time, or without a
//!   terminal it gets a tool error; a held call ends when its client cancels it
//!   (`notifications/cancelled`), closes its 2026-07-28 stream, or the relay link drops;
//! - every call that passes the policy carries an audit note, written to the audit log
//!   when the call ends, however it ends (the note is dropped with the request).
//!
//! With no policy and no audit log, none of this runs: requests are not looked at beyond
//! one flag.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use protocol::jsonrpc::{
    self, INTERNAL_ERROR, REQUEST_CANCELLED, UNAVAILABLE, error_response, result_response,
};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::exchanges::Role;
use super::message::{ClientRequest, Ctx};
use super::note::{CallInfo, CallRecord, Note, Sinks};
use super::stateless::StatelessStart;
use super::{Core, CoreConfig};
use crate::audit::{self, AuditLog, Outcome};
use crate::calls::CallStats;
use crate::confirm::{self, Notice, Subscription, TerminalMsg};
use crate::policy::{self, Policy, PolicyConfig};
use std::sync::Arc;

/// Most calls waiting for the owner at once; more are declined.
const MAX_HELD: usize = 64;

/// What the core keeps for the policy.
pub(super) struct Gate {
    policy: Policy,
    /// Anything to do for requests at all.
    active: bool,
    /// Keeps the writer running (dropping it writes what is queued).
    _audit: Option<AuditLog>,
    /// Where finished calls are recorded (the audit log, the dashboard's figures).
    sinks: Sinks,
    /// An audit log was asked for but cannot be opened: calls are refused.
    audit_broken: bool,
    /// Calls waiting for the owner, by their bridge-side id.
    held: BTreeMap<u64, Held>,
    /// Where the owner's answers come from (when some calls need approval).
    terminal: Option<Subscription>,
    /// The answers, until the driver takes them.
    answers: Option<mpsc::UnboundedReceiver<TerminalMsg>>,
    /// Standard input ended.
    closed: bool,
    /// What to tell the owner (printed by the driver).
    notices: Vec<Notice>,
    /// (client, tool) the owner allowed for good (until the bridge restarts).
    always: std::collections::HashSet<(String, String)>,
    /// The owner paused the tunnel: tool calls are refused, discovery goes on.
    paused: bool,
}

impl Gate {
    /// The gate for `cfg`; finished calls are also counted in `stats` (the dashboard's).
    pub(super) fn new(cfg: &PolicyConfig, stats: Option<Arc<CallStats>>) -> Self {
        // Problems are reported once here; what can still be used is used (defaults for
        // numbers out of range, the roots that exist).
        if !cfg.is_empty()
            && let Err(e) = cfg.validate()
        {
            error!("the desktop policy: {e}");
        }
        let policy = Policy::new(cfg);
        let (log, audit_broken) = match &cfg.audit_log {
            None => (None, false),
            Some(path) => match AuditLog::open(path, cfg.audit_max_bytes()) {
                Ok(log) => (Some(log), false),
                Err(e) => {
                    error!(
                        "{e}: tool calls are refused until the bridge runs with a writable audit log"
                    );
                    (None, true)
                }
            },
        };
        let audit = log.as_ref().map(AuditLog::sender);
        let (terminal, answers) = if policy.confirms_calls() {
            let (sub, rx) = confirm::hub().subscribe();
            (Some(sub), Some(rx))
        } else {
            (None, None)
        };
        Self {
            active: policy.is_active() || log.is_some() || audit_broken || stats.is_some(),
            terminal,
            answers,
            closed: false,
            policy,
            _audit: log,
            sinks: Sinks { audit, stats },
            audit_broken,
            held: BTreeMap::new(),
            notices: Vec::new(),
            always: Default::default(),
            paused: false,
        }
    }

    /// Whether requests need looking at.
    pub(super) fn active(&self) -> bool {
        self.active || self.paused
    }

    /// Pauses the tunnel's tool calls, or lets them run again.
    pub(super) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether the owner paused the tunnel.
    pub(super) fn paused(&self) -> bool {
        self.paused
    }

    /// Applies the policy to a `tools/list` result (the offline snapshot's).
    pub(super) fn rewrite_tools(&self, result: &mut Value) -> bool {
        self.policy.rewrite_tools(result)
    }

    fn record(&self, call: &CallInfo, outcome: Outcome) {
        self.sinks.record(&call.entry(outcome));
    }

    /// The bridge-side ids of the held calls `pick` chooses.
    fn held_ids(&self, pick: impl Fn(&Held) -> bool) -> Vec<u64> {
        self.held
            .iter()
            .filter(|(_, h)| pick(h))
            .map(|(hid, _)| *hid)
            .collect()
    }
}

/// Adds the policy's roots to the configured ones (not twice); a root that cannot be
/// resolved is left out (and reported by [`Gate::new`]).
pub(super) fn merge_roots(cfg: &mut CoreConfig) {
    let extra = cfg
        .policy
        .roots
        .iter()
        .filter_map(|p| policy::root_of(p).ok())
        .collect();
    policy::merge_roots(&mut cfg.roots, extra);
}

/// A call waiting for the owner.
struct Held {
    code: String,
    ctx: Ctx,
    request: ClientRequest,
    /// A 2026-07-28 call: its state, and the input responses it brought.
    stateless: Option<StatelessStart>,
    call: CallInfo,
    deadline: Instant,
}

impl Held {
    fn id(&self) -> Bytes {
        self.request.id()
    }
}

/// A held call's arguments as the owner sees them: a preview for the terminal, and (at
/// most [`confirm::MAX_SHOWN_ARGS`] bytes of) the whole JSON for the dashboard.
pub(super) struct Shown {
    preview: String,
    args: String,
    cut: bool,
}

impl Shown {
    fn of(args: &[u8]) -> Self {
        let cut = args.len() > confirm::MAX_SHOWN_ARGS;
        let kept = &args[..args.len().min(confirm::MAX_SHOWN_ARGS)];
        Self {
            preview: confirm::preview(args),
            args: String::from_utf8_lossy(kept).into_owned(),
            cut,
        }
    }
}

/// The policy's verdict on a request.
enum Verdict {
    /// Forward it (with this note).
    Pass(Option<Box<Note>>),
    /// Answered already.
    Done,
    /// Hold it for the owner (with a preview of its arguments).
    Hold(CallInfo, Shown),
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// A tool error result (`isError: true`) with one text item.
fn tool_error(id: &[u8], stateless: bool, text: &str) -> Vec<u8> {
    let mut r = serde_json::json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
    });
    if stateless {
        r["resultType"] = Value::from("complete");
    }
    result_response(id, r.to_string().as_bytes())
}

const DECLINED: &str = "the owner declined this call";
const PAUSED: &str =
    "paused by the owner: this tunnel takes no tool calls for now; try again later";
const NO_TERMINAL: &str = "the owner declined this call: it needs the owner's approval in the terminal where the bridge runs or on its dashboard, and the bridge runs with neither (run `bridge run` in a terminal to approve calls, or without --no-dashboard)";

impl Core {
    /// A handshake-revision request (in a session, sessionless, or HTTP+SSE), checked and
    /// forwarded.
    pub(super) fn forward_checked(&mut self, ctx: &Ctx, req: &ClientRequest) {
        match self.check(ctx, req) {
            Verdict::Pass(note) => {
                let cid = self.forward(ctx, req);
                self.attach(cid, note);
            }
            Verdict::Done => {}
            Verdict::Hold(call, shown) => self.hold(ctx, req.clone(), None, call, shown),
        }
    }

    /// A 2026-07-28 request (parsed as `v`), checked and started.
    pub(super) fn start_stateless_checked(
        &mut self,
        ctx: &Ctx,
        req: &ClientRequest,
        v: Value,
        start: StatelessStart,
    ) {
        match self.check(ctx, req) {
            Verdict::Pass(note) => {
                self.start_stateless(ctx, req, v, start);
                let cid = self.stateless_cid(ctx.exchange);
                self.attach(cid, note);
            }
            Verdict::Done => {}
            Verdict::Hold(info, shown) => self.hold(ctx, req.clone(), Some(start), info, shown),
        }
    }

    /// The request a stateless exchange runs, once started.
    fn stateless_cid(&self, exchange: u64) -> Option<u64> {
        match self.exchanges.role(exchange) {
            Some(Role::Stateless(cid)) if self.ids.contains(*cid) => Some(*cid),
            _ => None,
        }
    }

    /// Gives a request in flight its note; a request that was answered at once (the
    /// server is starting, too many in flight…) is recorded as such.
    fn attach(&mut self, cid: Option<u64>, note: Option<Box<Note>>) {
        let Some(note) = note else { return };
        match cid.and_then(|c| self.ids.get_mut(c)) {
            Some(p) => p.note = Some(note),
            None => note.set_outcome(Outcome::Error(UNAVAILABLE)),
        }
    }

    /// Answers a request the policy decided on itself.
    fn policy_answer(&mut self, ctx: &Ctx, body: Vec<u8>) {
        if ctx.is_http_sse() {
            self.answer(ctx, body);
        } else if self.exchanges.contains(ctx.exchange) {
            self.reply(ctx.exchange, 200, None, body);
        }
    }

    /// The protocol revision a request speaks.
    fn era_of(&self, ctx: &Ctx, req: &ClientRequest) -> String {
        if let Some(v) = req.meta_protocol_version() {
            return v.to_owned();
        }
        if let Some(s) = ctx.session().and_then(|s| self.sessions.get(s)) {
            return s.protocol_version.clone();
        }
        ctx.header_version.clone().unwrap_or_else(|| "2025".into())
    }

    fn check(&mut self, ctx: &Ctx, req: &ClientRequest) -> Verdict {
        let method = req.method();
        let id = &req.id();
        if method == "tools/list" {
            let note = self
                .gate
                .policy
                .rewrites_lists()
                .then(|| Box::new(Note::ToolsList));
            return Verdict::Pass(note);
        }
        let audited = self.gate.sinks.audit.is_some() || self.gate.audit_broken;
        let recorded = audited || self.gate.sinks.any();
        if method != "tools/call"
            || !(recorded || self.gate.paused || self.gate.policy.checks_calls())
        {
            return Verdict::Pass(None);
        }
        let started = self.now;
        let params = req
            .params()
            .and_then(|p| serde_json::from_slice::<CallParams<'_>>(p).ok());
        let Some(params) = params else {
            let msg = "Invalid params: tools/call needs params with a string name";
            self.policy_answer(ctx, error_response(id, jsonrpc::INVALID_PARAMS, msg));
            return Verdict::Done;
        };
        let args = params
            .arguments
            .map_or(&b"null"[..], |a| a.get().as_bytes());
        let call = CallInfo {
            tool: params.name.into_owned(),
            principal: ctx.principal.clone(),
            // Only the audit log keeps it.
            args_sha256: if audited {
                audit::sha256_hex(args)
            } else {
                String::new()
            },
            era: self.era_of(ctx, req),
            started,
        };
        if self.gate.audit_broken {
            let msg = "the bridge's audit log cannot be written, so tool calls are refused; \
                       the owner must fix it and restart the bridge";
            self.policy_answer(ctx, error_response(id, INTERNAL_ERROR, msg));
            return Verdict::Done;
        }
        if self.gate.paused {
            info!("refused a tool call: the owner paused the tunnel");
            let stateless = req.meta_protocol_version().is_some();
            self.policy_answer(ctx, tool_error(id, stateless, PAUSED));
            self.gate.record(&call, Outcome::Declined);
            return Verdict::Done;
        }
        if !self.gate.policy.is_visible(&call.tool) {
            info!(
                tool = %confirm::printable(&call.tool, 120),
                principal = %confirm::printable(&call.principal, 120),
                "refused a call of a tool the policy hides"
            );
            let msg = format!("Unknown tool: {}", call.tool);
            self.policy_answer(ctx, error_response(id, jsonrpc::INVALID_PARAMS, &msg));
            self.gate.record(&call, Outcome::Refused);
            return Verdict::Done;
        }
        if self.gate.policy.needs_confirmation(&call.tool)
            && !self
                .gate
                .always
                .contains(&(call.principal.clone(), call.tool.clone()))
        {
            return Verdict::Hold(call, Shown::of(args));
        }
        let note = self
            .gate
            .sinks
            .any()
            .then(|| Box::new(Note::Call(CallRecord::new(call, self.gate.sinks.clone()))));
        Verdict::Pass(note)
    }

    /// Holds a call for the owner's approval (or declines it at once without a terminal).
    fn hold(
        &mut self,
        ctx: &Ctx,
        request: ClientRequest,
        stateless: Option<StatelessStart>,
        call: CallInfo,
        shown: Shown,
    ) {
        let is_stateless = stateless.is_some();
        let id = request.id();
        let can_ask = !self.gate.closed && confirm::hub().can_answer();
        let code = match &self.gate.terminal {
            Some(t) if can_ask && self.gate.held.len() < MAX_HELD => {
                Some(t.claim_code_for(confirm::Waiting {
                    code: String::new(),
                    tunnel: self.cfg.tunnel.clone(),
                    tool: call.tool.clone(),
                    principal: call.principal.clone(),
                    args: shown.args,
                    args_cut: shown.cut,
                    since: std::time::SystemTime::now(),
                    timeout: self.gate.policy.confirm_timeout(),
                }))
            }
            _ => None,
        };
        let Some(code) = code else {
            let text = if can_ask {
                warn!("too many tool calls wait for approval; declined one");
                "the owner declined this call: too many calls wait for the owner's approval"
            } else {
                self.gate.notices.push(Notice::NoTerminal {
                    tool: call.tool.clone(),
                });
                NO_TERMINAL
            };
            self.policy_answer(ctx, tool_error(&id, is_stateless, text));
            self.gate.record(&call, Outcome::Declined);
            return;
        };
        let hid = self.ids.fresh();
        if is_stateless {
            // Closing the stream cancels it, as it would a running call.
            self.exchanges.open(ctx.exchange, Role::Stateless(hid));
        } else if let Some(s) = ctx.session().and_then(|s| self.sessions.get_mut(s)) {
            // So that `notifications/cancelled` finds it.
            s.in_flight.insert(id, hid);
        }
        let timeout = self.gate.policy.confirm_timeout();
        info!(
            tool = %confirm::printable(&call.tool, 120),
            "a tool call waits for the owner's approval"
        );
        self.gate.notices.push(Notice::Ask {
            code: code.clone(),
            tool: call.tool.clone(),
            principal: call.principal.clone(),
            preview: shown.preview,
            digest: call.args_sha256.clone(),
            timeout,
        });
        self.gate.held.insert(
            hid,
            Held {
                code,
                ctx: ctx.clone(),
                request,
                stateless,
                call,
                deadline: self.now + timeout,
            },
        );
    }

    /// Takes a held call out of the maps that lead to it.
    fn unhold(&mut self, hid: u64) -> Option<Held> {
        let h = self.gate.held.remove(&hid)?;
        if let Some(t) = &self.gate.terminal {
            t.release(&h.code);
        }
        if h.stateless.is_some() {
            self.exchanges
                .change(h.ctx.exchange, &Role::Stateless(hid), Role::Post);
        } else if let Some(s) = h.ctx.session().and_then(|s| self.sessions.get_mut(s))
            && s.in_flight.get(&h.id()) == Some(&hid)
        {
            s.in_flight.remove(&h.id());
        }
        Some(h)
    }

    /// Takes a held call out because of `why`, and tells the owner.
    fn withdraw(&mut self, hid: u64, why: &'static str) -> Option<Held> {
        let h = self.unhold(hid)?;
        self.gate.notices.push(Notice::Withdrawn {
            code: h.code.clone(),
            tool: h.call.tool.clone(),
            why,
        });
        Some(h)
    }

    /// Ends a held call with a tool error.
    fn decline_held(&mut self, h: Held, text: &str, outcome: Outcome) {
        let body = tool_error(&h.id(), h.stateless.is_some(), text);
        self.policy_answer(&h.ctx, body);
        self.gate.record(&h.call, outcome);
    }

    /// Sends an approved call on its way.
    fn release(&mut self, h: Held) {
        let Held {
            ctx,
            request,
            stateless,
            call,
            ..
        } = h;
        let gone = match &stateless {
            Some(_) => !self.exchanges.contains(ctx.exchange),
            None => ctx
                .session()
                .is_some_and(|s| self.sessions.get(s).is_none()),
        };
        if gone {
            self.gate.record(&call, Outcome::Cancelled);
            return;
        }
        let note = self
            .gate
            .sinks
            .any()
            .then(|| Box::new(Note::Call(CallRecord::new(call, self.gate.sinks.clone()))));
        match stateless {
            None => {
                let cid = self.forward(&ctx, &request);
                self.attach(cid, note);
            }
            Some(start) => {
                let v: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
                self.start_stateless(&ctx, &request, v, start);
                let cid = self.stateless_cid(ctx.exchange);
                self.attach(cid, note);
            }
        }
    }

    /// A held call's client cancelled it or went away; whether `hid` was one. With
    /// `reply`, a handshake-revision POST still open gets the cancellation error.
    pub(super) fn cancel_held(&mut self, hid: u64, why: &'static str, reply: bool) -> bool {
        let Some(h) = self.withdraw(hid, why) else {
            return false;
        };
        if reply && !h.ctx.is_http_sse() && self.exchanges.contains(h.ctx.exchange) {
            let body = error_response(&h.id(), REQUEST_CANCELLED, "Request cancelled");
            self.reply(h.ctx.exchange, 200, None, body);
        }
        self.gate.record(&h.call, Outcome::Cancelled);
        true
    }

    /// The relay link dropped: held calls cannot be answered any more, but those of HTTP+SSE
    /// sessions, whose answers go to the session's stream (carried on after the reconnect,
    /// see `http_sse`).
    pub(super) fn held_link_down(&mut self) {
        for hid in self.gate.held_ids(|h| !h.ctx.is_http_sse()) {
            self.cancel_held(hid, "the relay link dropped", false);
        }
    }

    /// Shutdown: held calls are answered as unavailable.
    pub(super) fn drop_held(&mut self) {
        for hid in self.gate.held_ids(|_| true) {
            let Some(h) = self.withdraw(hid, "the bridge is shutting down") else {
                continue;
            };
            let body = error_response(
                &h.id(),
                UNAVAILABLE,
                "the bridge is shutting down; retry in a moment",
            );
            self.policy_answer(&h.ctx, body);
            self.gate.record(&h.call, Outcome::Cancelled);
        }
    }

    /// Declines held calls nobody answered in time.
    pub(super) fn expire_held(&mut self, now: Instant) {
        if self.gate.held.is_empty() {
            return;
        }
        let due = self.gate.held_ids(|h| h.deadline <= now);
        let secs = self.gate.policy.confirm_timeout().as_secs_f64().round();
        for hid in due {
            let Some(h) = self.unhold(hid) else { continue };
            self.gate.notices.push(Notice::Expired {
                code: h.code.clone(),
                tool: h.call.tool.clone(),
            });
            let text = format!("{DECLINED} (no answer from the owner within {secs} s)");
            self.decline_held(h, &text, Outcome::Timeout);
        }
    }

    /// Rewrites the answer to a request with a note (a `tools/list` result), or records
    /// how an audited call went. The rewritten line and the span of its id, if rewritten.
    pub(super) fn noted_answer(&self, note: &Note, line: &[u8]) -> Option<(Bytes, Range<usize>)> {
        match note {
            Note::Call(_) => {
                note.answered(line);
                None
            }
            Note::ToolsList => {
                let mut v: Value = serde_json::from_slice(line).ok()?;
                if !self.gate.policy.rewrite_tools(v.get_mut("result")?) {
                    return None;
                }
                let out = Bytes::from(serde_json::to_vec(&v).ok()?);
                let span = protocol::scan::parse_fast(&out).ok()?.id?;
                Some((out, span))
            }
        }
    }

    /// The owner's answers for this core's held calls, for the driver to pass to
    /// [`Core::on_terminal`] (once; `None` when no tool needs approval).
    pub fn take_terminal(&mut self) -> Option<mpsc::UnboundedReceiver<TerminalMsg>> {
        self.gate.answers.take()
    }

    /// An answer from the terminal, or its end, at `now`.
    pub fn on_terminal(&mut self, msg: TerminalMsg, now: Instant) {
        self.now = now;
        match msg {
            TerminalMsg::Answer {
                code,
                approve,
                always,
            } => {
                let found = self
                    .gate
                    .held
                    .iter()
                    .find(|(_, h)| h.code == code)
                    .map(|(k, _)| *k);
                let Some(h) = found.and_then(|hid| self.unhold(hid)) else {
                    self.gate.notices.push(Notice::Unknown { code });
                    return;
                };
                let (code, tool) = (h.code.clone(), h.call.tool.clone());
                if always {
                    info!(
                        tool = %confirm::printable(&tool, 120),
                        principal = %confirm::printable(&h.call.principal, 120),
                        "the owner allowed this tool for this client until the bridge restarts"
                    );
                    self.gate
                        .always
                        .insert((h.call.principal.clone(), tool.clone()));
                }
                if approve {
                    info!(tool = %confirm::printable(&tool, 120), "the owner allowed a tool call");
                    self.gate.notices.push(Notice::Approved { code, tool });
                    self.release(h);
                } else {
                    info!(tool = %confirm::printable(&tool, 120), "the owner declined a tool call");
                    self.gate.notices.push(Notice::Declined { code, tool });
                    self.decline_held(h, DECLINED, Outcome::Declined);
                }
            }
            TerminalMsg::Closed => {
                // Nobody can answer any more: waiting calls and later ones are declined.
                self.gate.closed = true;
                for hid in self.gate.held_ids(|_| true) {
                    let why = "the terminal closed, so it was declined";
                    let Some(h) = self.withdraw(hid, why) else {
                        continue;
                    };
                    self.decline_held(h, NO_TERMINAL, Outcome::Declined);
                }
            }
        }
    }

    /// What to tell the owner in the terminal since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.gate.notices)
    }
}
