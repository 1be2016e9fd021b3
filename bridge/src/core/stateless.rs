//! MCP 2026-07-28 (the stateless revision) requests, served next to the handshake
//! revisions' sessions and against the same once-initialized child.
//!
//! Rules:
//! - a request is stateless when its `params._meta` names a protocol version or the
//!   `MCP-Protocol-Version` header is a 2026-07-28 one; its `_meta` must carry the
//!   protocol version and the client capabilities (else 400 + -32602), the version must
//!   be one the bridge serves (else 400 + -32022 with the supported list); a bare
//!   `server/discover` (neither) is not stateless and gets what a handshake-revision
//!   server answers (200 + -32601);
//! - `server/discover` is answered from the child's cached initialize result (the same
//!   server info, capabilities and instructions an `initialize` gets, and every revision
//!   the URL serves); methods of the stateless revision that the child has the capability
//!   for are forwarded without the envelope (`protocol::stateless::ENVELOPE_KEYS`): the child
//!   was opened with `initialize`, so it speaks a handshake revision on its stdio, and the
//!   envelope is the bridge's to interpret (dual-revision servers refuse it on a handshake
//!   connection); anything else is 404 + -32601;
//! - results get `resultType: "complete"`; lists, `server/discover` and `resources/read`
//!   also `ttlMs` and `cacheScope`; a handshake-revision "resource not found" (-32002)
//!   becomes -32602 with `data.uri`;
//! - the client closing its response stream cancels the request on the child;
//! - a server→client request (sampling, elicitation, and `roots/list` with
//!   `--client-roots`) the child sends while serving a stateless `tools/call`,
//!   `prompts/get` or `resources/read` becomes an `InputRequiredResult`: the input key is
//!   the child's own request id (a string as is, a number as its decimal text); requests
//!   written in one burst travel together; the child's call stays suspended
//!   ([`suspensions`]) until the client retries with `inputResponses` and the opaque
//!   `requestState` (bound to the principal, the method and its name, single use,
//!   expiring), then continues; missing answers are asked again; `inputResponses` without
//!   `requestState` answer matching requests as they come;
//! - a server→client request the client declared no capability for ends the call with
//!   400 + -32021 (`requiredCapabilities`), and the child's call is cancelled;
//! - logging notifications reach a stateless request only if it set a `logLevel`;
//! - `subscriptions/listen` opens a stream ([`listens`]) acknowledged first, then carrying
//!   the list changes and resource updates the client opted into, tagged with its
//!   subscription id.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use protocol::frame::{FLAG_FINAL, FLAG_STREAM};
use protocol::jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY, UNAVAILABLE,
    UNSUPPORTED_PROTOCOL_VERSION, error_response, result_response, splice,
};
use protocol::stateless::{
    LIST_TTL_MS, META_CLIENT_CAPABILITIES as META_CAPS, META_LOG_LEVEL,
    META_PROTOCOL_VERSION as META_VERSION,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tracing::debug;

use super::exchanges::Role;
use super::ids::Pending;
use super::message::{ClientRequest, Ctx};
use super::sessions::ClientCaps;
use super::subscriptions::Release;
use super::supervisor::ChildState;
use super::{Core, MAX_SESSIONLESS_STREAMS};
use crate::audit::Outcome as AuditOutcome;
use crate::child::ChildId;

pub(super) mod call;
pub(super) mod listens;
pub(super) mod suspensions;

use call::{Input, StatelessCall, log_rank, takes_input};
use listens::Listen;
use suspensions::EarlyAnswer;

/// A stateless call ready to start: its state, and the input responses it brought.
pub(super) struct StatelessStart {
    call: StatelessCall,
    responses: Option<serde_json::Map<String, Value>>,
}

/// Whether a request is of the stateless revision (see the module documentation).
pub(super) fn is_stateless(req: &ClientRequest, header_version: Option<&str>) -> bool {
    req.meta_protocol_version().is_some()
        || header_version.is_some_and(|v| protocol::MODERN_MCP_VERSIONS.contains(&v))
}

/// The capability of the child a stateless method needs.
fn capability_of(method: &str) -> Option<&'static str> {
    Some(match method {
        "tools/list" | "tools/call" => "tools",
        "prompts/list" | "prompts/get" => "prompts",
        "resources/list" | "resources/templates/list" | "resources/read" => "resources",
        "completion/complete" => "completions",
        _ => return None,
    })
}

/// Whether a method's result carries caching hints.
fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// Validates `inputResponses`: absent, or an object of result objects.
fn input_responses(params: &Value) -> Result<Option<&serde_json::Map<String, Value>>, String> {
    match params.get("inputResponses") {
        None => Ok(None),
        Some(Value::Object(m)) => match m.iter().find(|(_, v)| !v.is_object()) {
            Some((k, _)) => Err(format!(
                "Invalid params: inputResponses[{k:?}] must be a result object"
            )),
            None => Ok(Some(m)),
        },
        Some(_) => Err("Invalid params: inputResponses must be an object".into()),
    }
}

/// Error body with optional `data`.
fn error_with_data(id: &[u8], code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let id: Value = serde_json::from_slice(id).unwrap_or(Value::Null);
    let mut err = json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": err })
        .to_string()
        .into_bytes()
}

/// The fields of a result object the bridge may add.
#[derive(Deserialize)]
struct ResultKeys {
    #[serde(rename = "resultType")]
    result_type: Option<serde::de::IgnoredAny>,
    #[serde(rename = "ttlMs")]
    ttl: Option<serde::de::IgnoredAny>,
    #[serde(rename = "cacheScope")]
    scope: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Outcome<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

impl Core {
    fn cache_scope(&self) -> &'static str {
        if self.cfg.public_cache {
            "public"
        } else {
            "private"
        }
    }

    fn stateless_reply(&mut self, ctx: &Ctx, status: u16, body: Vec<u8>) {
        if self.exchanges.contains(ctx.exchange) {
            self.reply(ctx.exchange, status, None, body);
        }
    }

    fn stateless_error(&mut self, ctx: &Ctx, id: &[u8], status: u16, code: i64, msg: &str) {
        self.stateless_reply(ctx, status, error_response(id, code, msg));
    }

    /// Serves a stateless request (module documentation).
    pub(super) fn on_stateless_request(&mut self, ctx: &Ctx, req: &ClientRequest) {
        let id = req.id();
        if !self.cfg.stateless {
            // `--protocol legacy`: answered like a handshake-revision server answers an
            // unknown method, so 2026-07-28 clients fall back to initialize.
            let msg =
                "Method not found: this endpoint serves MCP 2025-11-25 and earlier; use initialize";
            self.stateless_reply(ctx, 200, error_response(&id, METHOD_NOT_FOUND, msg));
            return;
        }
        let v: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let method = req.method();
        let no_params = Value::Null;
        let params = v.get("params").unwrap_or(&no_params);
        let meta = params.get("_meta").and_then(Value::as_object);
        let Some(version) = meta
            .and_then(|m| m.get(META_VERSION))
            .and_then(Value::as_str)
        else {
            let msg = format!("Invalid params: params._meta[{META_VERSION:?}] is required");
            return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, &msg);
        };
        let Some(caps) = meta
            .and_then(|m| m.get(META_CAPS))
            .filter(|c| c.is_object())
        else {
            let msg =
                format!("Invalid params: params._meta[{META_CAPS:?}] (an object) is required");
            return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, &msg);
        };
        if !protocol::MODERN_MCP_VERSIONS.contains(&version) {
            let msg = format!("Unsupported protocol version {version:?}");
            let data = json!({ "supported": protocol::MODERN_MCP_VERSIONS, "requested": version });
            let body = error_with_data(&id, UNSUPPORTED_PROTOCOL_VERSION, &msg, Some(data));
            return self.stateless_reply(ctx, 400, body);
        }
        let caps = ClientCaps::from_capabilities(caps);
        let log_level = meta
            .and_then(|m| m.get(META_LOG_LEVEL))
            .and_then(Value::as_str)
            .and_then(log_rank);
        let child = match self.child_of(ctx) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("the local MCP server cannot start: {e}");
                return self.stateless_error(ctx, &id, 503, UNAVAILABLE, &msg);
            }
        };
        let Some(ChildState::Ready { result: init, .. }) = self.children.state(child) else {
            let msg = "the local MCP server is starting; retry in a moment";
            return self.stateless_error(ctx, &id, 503, UNAVAILABLE, msg);
        };
        if method == "server/discover" {
            let result = protocol::stateless::discover_result(init, self.cache_scope());
            let body = result_response(&id, result.to_string().as_bytes());
            return self.stateless_reply(ctx, 200, body);
        }
        let server_caps = init.get("capabilities");
        if method == "subscriptions/listen" {
            if self.sessionless_streams() >= MAX_SESSIONLESS_STREAMS {
                let msg = "too many streams without a session are open on this bridge; retry later";
                return self.stateless_error(ctx, &id, 503, UNAVAILABLE, msg);
            }
            let server_caps = server_caps.cloned().unwrap_or(Value::Null);
            return self.listen(ctx, id, child, params, &server_caps);
        }
        let Some(cap) = capability_of(method) else {
            let msg = format!("Method not found: {method}");
            return self.stateless_error(ctx, &id, 404, METHOD_NOT_FOUND, &msg);
        };
        if server_caps
            .and_then(|c| c.get(cap))
            .is_none_or(Value::is_null)
        {
            let msg = format!("Method not found: {method} (the server has no {cap})");
            return self.stateless_error(ctx, &id, 404, METHOD_NOT_FOUND, &msg);
        }
        let responses = match input_responses(params) {
            Ok(r) => r.cloned(),
            Err(msg) => return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, &msg),
        };
        let name = params
            .get(if method == "resources/read" {
                "uri"
            } else {
                "name"
            })
            .and_then(Value::as_str)
            .map(str::to_owned);
        let call = StatelessCall::new(
            ctx.principal.clone(),
            method.to_owned(),
            name,
            caps,
            log_level,
        );
        match params.get("requestState") {
            None => {}
            Some(Value::String(token)) if takes_input(method) => {
                let progress = req
                    .progress_token_span()
                    .map(|span| Bytes::copy_from_slice(&req.body()[span]));
                return self.resume(ctx, id, token, call, responses, progress);
            }
            Some(_) => {
                let msg = "Invalid params: requestState is not valid for this request";
                return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, msg);
            }
        }
        let start = StatelessStart { call, responses };
        if self.gate.active() {
            return self.start_stateless_checked(ctx, req, v, start);
        }
        self.start_stateless(ctx, req, v, start);
    }

    /// Sends a stateless request (parsed as `v`) to its child.
    pub(super) fn start_stateless(
        &mut self,
        ctx: &Ctx,
        req: &ClientRequest,
        mut v: Value,
        start: StatelessStart,
    ) {
        let StatelessStart {
            mut call,
            responses,
        } = start;
        // The child speaks the handshake revision it was opened in: the request goes to it
        // without the envelope, and without answers given up front (kept for the requests
        // they answer; a server would not know them).
        let mut changed = false;
        if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut) {
            changed |= protocol::stateless::strip_envelope(p);
            if let Some(responses) = responses {
                call.presupply(responses);
                changed |= p.remove("inputResponses").is_some();
            }
        }
        let cid = if changed {
            // The same request with fewer members: it still has its id and method.
            match ClientRequest::parse(Bytes::from(v.to_string())) {
                Some(stripped) => self.forward(ctx, &stripped),
                None => {
                    let msg = "the request could not be passed on without its envelope";
                    return self.stateless_error(ctx, &req.id(), 500, INTERNAL_ERROR, msg);
                }
            }
        } else {
            self.forward(ctx, req)
        };
        let Some(cid) = cid else { return };
        if let Some(p) = self.ids.get_mut(cid) {
            p.stateless = Some(Box::new(call));
            self.exchanges.open(ctx.exchange, Role::Stateless(cid));
        }
    }

    /// A retry carrying `requestState`: hands the answers to the suspended call.
    fn resume(
        &mut self,
        ctx: &Ctx,
        id: Bytes,
        token: &str,
        call: StatelessCall,
        responses: Option<serde_json::Map<String, Value>>,
        progress: Option<Bytes>,
    ) {
        let now = self.now;
        let Some(s) = self.suspensions.take_for_retry(token, &call, now) else {
            let msg = "Invalid params: requestState is not valid (altered, expired, already used, \
                       or from another request)";
            return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, msg);
        };
        if let Some(done) = s.done {
            let body = self.stateless_result(&done.call, &done.line, done.span, &id);
            return self.stateless_reply(ctx, 200, body);
        }
        let ended = "Invalid params: the request this requestState belongs to has ended";
        let Some(p) = self.ids.get_mut(s.cid) else {
            return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, ended);
        };
        let child = p.child;
        let Some(m) = p.stateless.as_deref_mut() else {
            return self.stateless_error(ctx, &id, 400, INVALID_PARAMS, ended);
        };
        let (lines, missing) = m.continue_with(&responses.unwrap_or_default(), call, now);
        p.exchange = Some(ctx.exchange);
        p.original_id = id;
        if progress.is_some() {
            // Progress of the continued call goes to the retry's token.
            p.original_token = progress;
        }
        p.awaiting_client = missing;
        p.deadline = Some(now + self.cfg.call_timeout);
        self.exchanges.open(ctx.exchange, Role::Stateless(s.cid));
        for line in lines {
            self.children.send_line(child, line);
        }
        if missing {
            // Asked again for what the retry did not answer.
            self.flush_inputs(now);
        }
    }

    /// The answer to a stateless request from the child's answer line (`span` is its id).
    fn stateless_result(
        &self,
        m: &StatelessCall,
        line: &[u8],
        span: Range<usize>,
        id: &[u8],
    ) -> Vec<u8> {
        let Ok(out) = serde_json::from_slice::<Outcome<'_>>(line) else {
            return splice(line, &mut [(span, id)]);
        };
        if let Some(err) = out.error {
            let code = serde_json::from_str::<Value>(err.get())
                .ok()
                .and_then(|e| e["code"].as_i64());
            if m.method == "resources/read" && code == Some(UNAVAILABLE) {
                // 2026-07-28 names a missing resource with -32602 and its uri.
                let mut e: Value = serde_json::from_str(err.get()).unwrap_or(Value::Null);
                e["code"] = json!(INVALID_PARAMS);
                if e.get("data").is_none_or(|d| !d.is_object()) {
                    e["data"] = json!({});
                }
                if e["data"].get("uri").is_none() {
                    e["data"]["uri"] = json!(m.name);
                }
                let id: Value = serde_json::from_slice(id).unwrap_or(Value::Null);
                let body = json!({ "jsonrpc": "2.0", "id": id, "error": e });
                return body.to_string().into_bytes();
            }
            return splice(line, &mut [(span, id)]);
        }
        let Some(result) = out.result.filter(|r| r.get().starts_with('{')) else {
            return splice(line, &mut [(span, id)]);
        };
        let keys: Option<ResultKeys> = serde_json::from_str(result.get()).ok();
        let mut add = String::new();
        if keys.as_ref().is_none_or(|k| k.result_type.is_none()) {
            add.push_str(r#""resultType":"complete","#);
        }
        if cacheable(&m.method) {
            if keys.as_ref().is_none_or(|k| k.ttl.is_none()) {
                let ttl = if m.method == "resources/read" {
                    0
                } else {
                    LIST_TTL_MS
                };
                add.push_str(&format!(r#""ttlMs":{ttl},"#));
            }
            if keys.as_ref().is_none_or(|k| k.scope.is_none()) {
                let scope = if m.method == "resources/read" {
                    "private"
                } else {
                    self.cache_scope()
                };
                add.push_str(&format!(r#""cacheScope":"{scope}","#));
            }
        }
        if add.is_empty() {
            return splice(line, &mut [(span, id)]);
        }
        let empty = result.get()[1..].trim_start().starts_with('}');
        if empty {
            add.pop();
        }
        let start = result.get().as_ptr() as usize - line.as_ptr() as usize + 1;
        splice(line, &mut [(span, id), (start..start, add.as_bytes())])
    }

    /// The child answered the stateless request `p` (its call `m`).
    pub(super) fn finish_stateless(
        &mut self,
        p: Pending,
        m: StatelessCall,
        line: &Bytes,
        span: Range<usize>,
    ) {
        if let Some(token) = m.token.clone() {
            // Suspended: the client's retry gets the answer.
            let answer = EarlyAnswer {
                line: line.clone(),
                span,
                call: m,
            };
            self.suspensions.keep_answer(&token, answer);
            return;
        }
        let Some(ex) = p.exchange.filter(|e| self.exchanges.contains(*e)) else {
            return;
        };
        let body = self.stateless_result(&m, line, span, &p.original_id);
        self.reply(ex, 200, None, body);
    }

    /// A server→client request (`child_id`, `line`) for the request `target`: when that
    /// is a stateless call, gathered into its next InputRequiredResult or answered at once
    /// from what the client sent up front. Whether it was (else it is routed as for a
    /// session).
    pub(super) fn stateless_input(
        &mut self,
        target: u64,
        child: ChildId,
        child_id: &Bytes,
        line: &Bytes,
    ) -> bool {
        let now = self.now;
        let Some(p) = self.ids.get_mut(target) else {
            return false;
        };
        let attached = p.exchange.is_some();
        let Some(m) = p.stateless.as_deref_mut() else {
            return false;
        };
        match m.take_input(child_id.clone(), line, attached, now) {
            Input::Answered(body) => {
                self.children.send_line(child, body);
            }
            Input::Gathered(flush_at) => {
                p.awaiting_client = true;
                if let Some(at) = flush_at {
                    self.suspensions.flush_by(at);
                }
            }
        }
        true
    }

    /// When [`Core::flush_inputs`] should next run.
    pub fn next_flush(&self) -> Option<Instant> {
        self.suspensions.next_flush()
    }

    /// Sends the InputRequiredResults whose gathering window has passed by `now`.
    pub fn flush_inputs(&mut self, now: Instant) {
        self.now = now;
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (cid, p) in self.ids.iter() {
            let Some(at) = p.stateless.as_ref().and_then(|m| m.flush_at) else {
                continue;
            };
            if at <= now {
                due.push(cid);
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.suspensions.set_next_flush(next);
        for cid in due {
            self.send_input_required(cid, now);
        }
    }

    /// Answers the stateless call `cid` with its gathered input requests, which suspends
    /// it until the client's retry.
    fn send_input_required(&mut self, cid: u64, now: Instant) {
        let Some(p) = self.ids.get_mut(cid) else {
            return;
        };
        let ex = p.exchange.filter(|e| self.exchanges.contains(*e));
        let Some(m) = p.stateless.as_deref_mut() else {
            return;
        };
        let Some(ex) = ex else {
            // No client waits: the requests go out with the next round.
            m.flush_at = None;
            return;
        };
        let Some((token, result)) = m.input_required() else {
            return;
        };
        self.suspensions.suspend(token, cid, m, now);
        let principal = m.principal.clone();
        p.exchange = None;
        let body = result_response(&p.original_id, result.to_string().as_bytes());
        self.reply(ex, 200, None, body);
        // Cancels the oldest suspended calls beyond the limits.
        while let Some(s) = self.suspensions.take_excess(&principal) {
            if let Some(p) = self.ids.remove(s.cid) {
                self.cancel_on_child(&p, s.cid, "too many requests wait for input");
            }
        }
    }

    /// A server→client request no client can answer: when a stateless call without the
    /// capability is what the child is serving, that call ends with -32021. Returns
    /// whether it did.
    pub(super) fn stateless_missing_capability(&mut self, child: ChildId, method: &str) -> bool {
        let capability = match method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            "roots/list" => "roots",
            _ => return false,
        };
        // Only when the call is unambiguous: with several stateless calls running, the one
        // that asked cannot be told apart, and the server gets an error instead.
        let exchanges = &self.exchanges;
        let sole = self.ids.take_sole(|p| {
            p.child == child
                && p.stateless.as_ref().is_some_and(|m| m.takes_input())
                && p.exchange.is_some_and(|e| exchanges.contains(e))
        });
        let Some((cid, p)) = sole else {
            return false;
        };
        p.set_outcome(AuditOutcome::Error(MISSING_CLIENT_CAPABILITY));
        self.cancel_on_child(&p, cid, "the client lacks a capability the request needs");
        let msg = format!(
            "Missing required client capability: serving this request needs {capability}, \
             which the client did not declare"
        );
        let data = json!({ "requiredCapabilities": { capability: {} } });
        let body = error_with_data(&p.original_id, MISSING_CLIENT_CAPABILITY, &msg, Some(data));
        if let Some(ex) = p.exchange {
            self.reply(ex, 400, None, body);
        }
        true
    }

    /// Tells the child a request is cancelled.
    pub(super) fn cancel_on_child(&mut self, p: &Pending, cid: u64, reason: &str) {
        let msg = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": cid, "reason": reason }
        });
        self.children
            .send_line(p.child, msg.to_string().into_bytes());
        if let Some(token) = p.stateless.as_ref().and_then(|m| m.token.as_ref()) {
            self.suspensions.remove(token);
        }
    }

    /// The client closed a stateless request's stream: that cancels the request.
    pub(super) fn cancel_stateless(&mut self, cid: u64, exchange: u64) {
        if self.cancel_held(cid, "the client closed the request's stream", false) {
            return;
        }
        let Some(p) = self.ids.take_if(cid, |p| p.exchange == Some(exchange)) else {
            return;
        };
        debug!(
            cid,
            "a stateless request's stream closed: cancelled on the server"
        );
        self.cancel_on_child(&p, cid, "the client closed the request's stream");
    }

    /// The link went down: stateless requests with a client attached are cancelled; calls
    /// suspended for their inputs wait on; listen streams end.
    pub(super) fn stateless_link_down(&mut self) {
        let attached = self
            .ids
            .take_all(|p| p.stateless.is_some() && p.exchange.is_some());
        for (cid, p) in attached {
            self.cancel_on_child(&p, cid, "the client's connection was lost");
        }
        for ex in self.listens.exchanges() {
            self.end_listen(ex);
        }
    }

    /// Cancels every call suspended for its inputs (shutdown: no client is waiting on it).
    pub(super) fn drop_suspended(&mut self) {
        for (token, s) in self.suspensions.take_all() {
            if let Some(p) = self.ids.take_if(s.cid, |p| p.is_suspended_as(&token)) {
                self.cancel_on_child(&p, s.cid, "the bridge is shutting down");
            }
        }
    }

    /// Drops suspended calls whose client never came back.
    pub(super) fn expire_suspensions(&mut self, now: Instant) {
        for (token, s) in self.suspensions.take_expired(now) {
            if let Some(p) = self.ids.take_if(s.cid, |p| p.is_suspended_as(&token)) {
                self.cancel_on_child(&p, s.cid, "the client did not answer the input requests");
            }
        }
    }

    // ----- subscriptions/listen ----------------------------------------------------------

    fn listen(&mut self, ctx: &Ctx, id: Bytes, child: ChildId, params: &Value, caps: &Value) {
        let (listen, ack) = Listen::agree(id, child, params, caps);
        for uri in listen.uris() {
            if self.subscriptions.add(child, uri) {
                self.internal_request(child, "resources/subscribe", json!({ "uri": uri }));
            }
        }
        self.listens.open(ctx.exchange, listen);
        self.exchanges.open(ctx.exchange, Role::Listen);
        self.push(
            ctx.exchange,
            200,
            None,
            FLAG_STREAM,
            ack.to_string().into_bytes(),
        );
    }

    /// A listen stream ended (client gone, link down, shutdown).
    pub(super) fn end_listen(&mut self, exchange: u64) {
        let Some(l) = self.listens.close(exchange) else {
            return;
        };
        self.exchanges.close(exchange);
        for uri in l.uris() {
            if self.subscriptions.release(l.child(), uri) == Release::Last {
                self.internal_request(l.child(), "resources/unsubscribe", json!({ "uri": uri }));
            }
        }
    }

    /// Passes a change notification of the child to the listen streams that asked for it.
    pub(super) fn notify_listens(&mut self, child: ChildId, method: &str, line: &Bytes) {
        for (ex, body) in self.listens.tagged(child, method, line) {
            self.message(ex, body);
        }
    }

    /// Ends every listen stream with the graceful completion result (shutdown).
    pub(super) fn close_listens(&mut self) {
        for ex in self.listens.exchanges() {
            if let Some(body) = self.listens.completion(ex)
                && self.exchanges.contains(ex)
            {
                self.push(ex, 200, None, FLAG_FINAL, body);
            }
            self.end_listen(ex);
        }
    }
}
