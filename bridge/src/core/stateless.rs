//! MCP 2026-07-28 ("modern") requests, served statelessly next to the 2025 sessions and
//! against the same once-initialized child.
//!
//! Rules (see the README's "Protocol revisions"):
//! - a request is modern when its `params._meta` names a protocol version or the
//!   `MCP-Protocol-Version` header is a modern one; its `_meta` must carry the protocol
//!   version and the client capabilities (else 400 + -32602), the version must be one the
//!   bridge serves (else 400 + -32022 with the supported list); a bare `server/discover`
//!   (neither) is not modern and gets what a 2025-era server answers (200 + -32601);
//! - `server/discover` is answered from the child's cached initialize result (the same
//!   server info, capabilities and instructions an `initialize` gets, and every revision
//!   the URL serves); methods of the modern revision that the child has the capability for
//!   are forwarded without the envelope (`protocol::modern::ENVELOPE_KEYS`): the child was
//!   opened with `initialize`, so it speaks a handshake revision on its stdio, and the
//!   envelope is the bridge's to interpret (dual-era servers refuse it on a handshake
//!   connection); anything else is 404 + -32601;
//! - results get `resultType: "complete"`; lists, `server/discover` and `resources/read`
//!   also `ttlMs` and `cacheScope`; a 2025-era "resource not found" (-32002) becomes -32602
//!   with `data.uri`;
//! - the client closing its response stream cancels the request on the child;
//! - a server→client request (sampling, elicitation, and `roots/list` with
//!   `--client-roots`) the child sends while serving a modern `tools/call`, `prompts/get`
//!   or `resources/read` becomes an `InputRequiredResult`: the input key is the child's
//!   own request id (a string as is, a number as its decimal text); requests written in one
//!   burst travel together; the child's call stays suspended until the client retries with
//!   `inputResponses` and the opaque `requestState` (bound to the principal, the method and
//!   its name, single use, expiring), then continues; missing answers are asked again;
//!   `inputResponses` without `requestState` answer matching requests as they come;
//! - a server→client request the client declared no capability for ends the call with
//!   400 + -32021 (`requiredCapabilities`), and the child's call is cancelled;
//! - logging notifications reach a modern request only if it set a `logLevel`;
//! - `subscriptions/listen` opens a stream acknowledged first, then carrying the list
//!   changes and resource updates the client opted into, tagged with its subscription id.

use std::collections::HashMap;
use std::ops::Range;

use protocol::jsonrpc::{
    INVALID_PARAMS, MISSING_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION, result_response,
};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::*;

use protocol::modern::{
    LIST_TTL_MS, META_CLIENT_CAPABILITIES as META_CAPS, META_LOG_LEVEL,
    META_PROTOCOL_VERSION as META_VERSION, META_SUBSCRIPTION_ID as META_SUBSCRIPTION,
};

/// How long a suspended call waits for the client's retry with its inputs.
const INPUT_TTL: Duration = Duration::from_secs(600);
/// Most calls suspended for their inputs, per client and in all (the oldest is cancelled
/// to make room).
const MAX_SUSPENDED_PER_PRINCIPAL: usize = 64;
const MAX_SUSPENDED: usize = 1024;
/// Server→client requests written within this window go out in one InputRequiredResult.
const INPUT_GATHER: Duration = Duration::from_millis(20);

/// The severities of `notifications/message`, least severe first.
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

fn log_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

/// A modern request in flight on a child.
#[derive(Debug)]
pub(super) struct ModernCall {
    principal: String,
    method: String,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    name: Option<String>,
    caps: ClientCaps,
    /// Lowest severity of log messages the client asked for; `None`: no log messages.
    log_level: Option<usize>,
    /// Server→client requests awaiting the client's answers.
    inputs: Vec<InputRequest>,
    /// Answers the client sent before being asked (`inputResponses` without state).
    presupplied: HashMap<String, Value>,
    /// When the gathered inputs go to the client.
    flush_at: Option<Instant>,
    /// The `requestState` of the InputRequiredResult the client holds (call suspended).
    token: Option<String>,
}

impl ModernCall {
    /// Whether the call is suspended under this `requestState`.
    pub(super) fn is_suspended_as(&self, token: &str) -> bool {
        self.token.as_deref() == Some(token)
    }

    /// The client retried with `responses` (and its current capabilities and log level,
    /// in `retry`): the answers to write to the child, and whether some requests are still
    /// unanswered (they go out again at once).
    fn continue_with(
        &mut self,
        responses: &serde_json::Map<String, Value>,
        retry: ModernCall,
        now: Instant,
    ) -> (Vec<Vec<u8>>, bool) {
        let mut lines = Vec::new();
        self.inputs.retain(|inp| match responses.get(&inp.key) {
            Some(r) => {
                lines.push(result_response(&inp.child_id, r.to_string().as_bytes()));
                false
            }
            None => true,
        });
        self.token = None;
        self.caps = retry.caps;
        self.log_level = retry.log_level;
        let missing = !self.inputs.is_empty();
        if missing {
            self.flush_at = Some(now);
        }
        (lines, missing)
    }
}

#[derive(Debug)]
struct InputRequest {
    key: String,
    child_id: Bytes,
    request: Value,
}

/// A call suspended until the client retries with its inputs.
pub(super) struct Suspension {
    cid: u64,
    principal: String,
    method: String,
    name: Option<String>,
    expires: Instant,
    /// The child's answer, when it came before the retry.
    done: Option<(Bytes, Range<usize>, ModernCall)>,
}

/// An open `subscriptions/listen` stream.
pub(super) struct Listen {
    /// The listen request's JSON-RPC id (raw JSON): the subscription id.
    sub_id: Bytes,
    child: ChildId,
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

/// Whether a request is of the modern era (see the module documentation).
pub(super) fn is_modern(env: &Envelope<'_>, header_version: Option<&str>) -> bool {
    env.meta_protocol_version.is_some()
        || header_version.is_some_and(|v| protocol::MODERN_MCP_VERSIONS.contains(&v))
}

/// The capability of the child a modern method needs.
fn capability_of(method: &str) -> Option<&'static str> {
    Some(match method {
        "tools/list" | "tools/call" => "tools",
        "prompts/list" | "prompts/get" => "prompts",
        "resources/list" | "resources/templates/list" | "resources/read" => "resources",
        "completion/complete" => "completions",
        _ => return None,
    })
}

/// Whether a method may be answered with an InputRequiredResult.
fn takes_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
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

/// The key of an input request: the child's request id, a string as is.
fn input_key(raw_id: &[u8]) -> String {
    match serde_json::from_slice::<Value>(raw_id) {
        Ok(Value::String(s)) => s,
        _ => String::from_utf8_lossy(raw_id).into_owned(),
    }
}

fn new_token() -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("the OS random source works");
    format!("rs1.{}", hex::encode(b))
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
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "error": err })).expect("json")
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

    fn modern_reply(&mut self, ctx: &Ctx, status: u16, body: Vec<u8>) {
        if self.exchanges.contains(ctx.exchange) {
            self.reply(ctx.exchange, status, None, body);
        }
    }

    fn modern_error(&mut self, ctx: &Ctx, id: &[u8], status: u16, code: i64, msg: &str) {
        self.modern_reply(ctx, status, error_response(id, code, msg));
    }

    /// Serves a modern request (module documentation).
    pub(super) fn on_modern_request(
        &mut self,
        ctx: &Ctx,
        id: Bytes,
        body: &Bytes,
        env: &Envelope<'_>,
    ) {
        if !self.cfg.modern {
            // `--protocol legacy`: answered like a 2025-era server answers an unknown
            // method, so modern clients fall back to initialize.
            let msg =
                "Method not found: this endpoint serves MCP 2025-11-25 and earlier; use initialize";
            self.modern_reply(ctx, 200, error_response(&id, METHOD_NOT_FOUND, msg));
            return;
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let method = env.method.as_deref().unwrap_or("");
        let no_params = Value::Null;
        let params = v.get("params").unwrap_or(&no_params);
        let meta = params.get("_meta").and_then(Value::as_object);
        let Some(version) = meta
            .and_then(|m| m.get(META_VERSION))
            .and_then(Value::as_str)
        else {
            let msg = format!("Invalid params: params._meta[{META_VERSION:?}] is required");
            return self.modern_error(ctx, &id, 400, INVALID_PARAMS, &msg);
        };
        let Some(caps) = meta
            .and_then(|m| m.get(META_CAPS))
            .filter(|c| c.is_object())
        else {
            let msg =
                format!("Invalid params: params._meta[{META_CAPS:?}] (an object) is required");
            return self.modern_error(ctx, &id, 400, INVALID_PARAMS, &msg);
        };
        if !protocol::MODERN_MCP_VERSIONS.contains(&version) {
            let msg = format!("Unsupported protocol version {version:?}");
            let data = json!({ "supported": protocol::MODERN_MCP_VERSIONS, "requested": version });
            let body = error_with_data(&id, UNSUPPORTED_PROTOCOL_VERSION, &msg, Some(data));
            return self.modern_reply(ctx, 400, body);
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
                return self.modern_error(ctx, &id, 503, UNAVAILABLE, &msg);
            }
        };
        let Some(ChildState::Ready { result: init, .. }) = self.children.state(child) else {
            let msg = "the local MCP server is starting; retry in a moment";
            return self.modern_error(ctx, &id, 503, UNAVAILABLE, msg);
        };
        if method == "server/discover" {
            let result = protocol::modern::discover_result(init, self.cache_scope());
            let body = result_response(&id, &serde_json::to_vec(&result).expect("json"));
            return self.modern_reply(ctx, 200, body);
        }
        let server_caps = init.get("capabilities");
        if method == "subscriptions/listen" {
            if self.sessionless_streams() >= super::MAX_SESSIONLESS_STREAMS {
                let msg = "too many streams without a session are open on this bridge; retry later";
                return self.modern_error(ctx, &id, 503, UNAVAILABLE, msg);
            }
            let server_caps = server_caps.cloned().unwrap_or(Value::Null);
            return self.listen(ctx, id, child, params, &server_caps);
        }
        let Some(cap) = capability_of(method) else {
            let msg = format!("Method not found: {method}");
            return self.modern_error(ctx, &id, 404, METHOD_NOT_FOUND, &msg);
        };
        if server_caps
            .and_then(|c| c.get(cap))
            .is_none_or(Value::is_null)
        {
            let msg = format!("Method not found: {method} (the server has no {cap})");
            return self.modern_error(ctx, &id, 404, METHOD_NOT_FOUND, &msg);
        }
        let responses = match input_responses(params) {
            Ok(r) => r.cloned(),
            Err(msg) => return self.modern_error(ctx, &id, 400, INVALID_PARAMS, &msg),
        };
        let name = params
            .get(if method == "resources/read" {
                "uri"
            } else {
                "name"
            })
            .and_then(Value::as_str)
            .map(str::to_owned);
        let call = ModernCall {
            principal: ctx.principal.clone(),
            method: method.to_owned(),
            name,
            caps,
            log_level,
            inputs: Vec::new(),
            presupplied: HashMap::new(),
            flush_at: None,
            token: None,
        };
        match params.get("requestState") {
            None => {}
            Some(Value::String(token)) if takes_input(method) => {
                let progress = env
                    .progress_token
                    .clone()
                    .map(|span| Bytes::copy_from_slice(&body[span]));
                return self.resume(ctx, id, token, call, responses, progress);
            }
            Some(_) => {
                let msg = "Invalid params: requestState is not valid for this request";
                return self.modern_error(ctx, &id, 400, INVALID_PARAMS, msg);
            }
        }
        if self.gate.active() {
            return self.start_modern_checked(ctx, id, body, env, v, call, responses);
        }
        self.start_modern(ctx, id, body, env, v, call, responses);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_modern(
        &mut self,
        ctx: &Ctx,
        id: Bytes,
        body: &Bytes,
        env: &Envelope<'_>,
        mut v: Value,
        mut call: ModernCall,
        responses: Option<serde_json::Map<String, Value>>,
    ) {
        // The child speaks the handshake era it was opened in: the request goes to it
        // without the envelope, and without answers given up front (kept for the requests
        // they answer; a server would not know them).
        let mut changed = false;
        if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut) {
            changed |= protocol::modern::strip_envelope(p);
            if let Some(responses) = responses {
                call.presupplied = responses.into_iter().collect();
                changed |= p.remove("inputResponses").is_some();
            }
        }
        let cid = if changed {
            let stripped = Bytes::from(serde_json::to_vec(&v).expect("json"));
            let Ok(env) = protocol::scan::parse_fast(&stripped) else {
                return;
            };
            self.forward(ctx, id, &stripped, &env)
        } else {
            self.forward(ctx, id, body, env)
        };
        let Some(cid) = cid else { return };
        if let Some(p) = self.ids.get_mut(cid) {
            p.modern = Some(Box::new(call));
            self.exchanges.open(ctx.exchange, Role::Stateless(cid));
        }
    }

    /// A retry carrying `requestState`: hands the answers to the suspended call.
    fn resume(
        &mut self,
        ctx: &Ctx,
        id: Bytes,
        token: &str,
        call: ModernCall,
        responses: Option<serde_json::Map<String, Value>>,
        progress: Option<Bytes>,
    ) {
        let now = self.now;
        let valid = self.suspended.get(token).is_some_and(|s| {
            s.principal == call.principal
                && s.method == call.method
                && s.name == call.name
                && s.expires > now
        });
        if !valid {
            let msg = "Invalid params: requestState is not valid (altered, expired, already used, \
                       or from another request)";
            return self.modern_error(ctx, &id, 400, INVALID_PARAMS, msg);
        }
        let s = self.suspended.remove(token).expect("checked");
        if let Some((line, span, done)) = s.done {
            let body = self.modern_result(&done, &line, span, &id);
            return self.modern_reply(ctx, 200, body);
        }
        let Some(p) = self.ids.get_mut(s.cid) else {
            let msg = "Invalid params: the request this requestState belongs to has ended";
            return self.modern_error(ctx, &id, 400, INVALID_PARAMS, msg);
        };
        let child = p.child;
        let Some(m) = p.modern.as_deref_mut() else {
            let msg = "Invalid params: the request this requestState belongs to has ended";
            return self.modern_error(ctx, &id, 400, INVALID_PARAMS, msg);
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

    /// The answer to a modern request from the child's answer line (`span` is its id).
    fn modern_result(&self, m: &ModernCall, line: &[u8], span: Range<usize>, id: &[u8]) -> Vec<u8> {
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
                return serde_json::to_vec(&body).expect("json");
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

    /// The child answered a modern request.
    pub(super) fn finish_modern(&mut self, mut p: Pending, line: &Bytes, span: Range<usize>) {
        let m = p.modern.take().expect("modern");
        if let Some(token) = &m.token {
            // Suspended: the client's retry gets the answer.
            if let Some(s) = self.suspended.get_mut(token) {
                s.done = Some((line.clone(), span, *m));
            }
            return;
        }
        let Some(ex) = p.exchange.filter(|e| self.exchanges.contains(*e)) else {
            return;
        };
        let body = self.modern_result(&m, line, span, &p.original_id);
        self.reply(ex, 200, None, body);
    }

    /// Whether a server→client request may be routed to this modern call.
    pub(super) fn modern_can_take(m: &ModernCall, method: &str) -> bool {
        takes_input(&m.method) && m.caps.can_answer(method)
    }

    /// A server→client request for a modern call: gathered into its next
    /// InputRequiredResult, or answered at once from what the client sent up front.
    pub(super) fn modern_input(
        &mut self,
        target: u64,
        child: ChildId,
        child_id: Bytes,
        line: &Bytes,
    ) {
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let key = input_key(&child_id);
        let now = self.now;
        let Some(p) = self.ids.get_mut(target) else {
            return;
        };
        let attached = p.exchange.is_some();
        let m = p.modern.as_mut().expect("modern");
        if let Some(answer) = m.presupplied.remove(&key) {
            let body = result_response(&child_id, &serde_json::to_vec(&answer).expect("json"));
            self.children.send_line(child, body);
            return;
        }
        let mut request = json!({ "method": v["method"] });
        if let Some(params) = v.get("params").filter(|p| !p.is_null()) {
            request["params"] = params.clone();
        }
        m.inputs.retain(|i| i.key != key);
        m.inputs.push(InputRequest {
            key,
            child_id,
            request,
        });
        p.awaiting_client = true;
        if attached && m.flush_at.is_none() {
            let at = now + INPUT_GATHER;
            m.flush_at = Some(at);
            self.next_flush = Some(self.next_flush.map_or(at, |n| n.min(at)));
        }
    }

    /// When [`Core::flush_inputs`] should next run.
    pub fn next_flush(&self) -> Option<Instant> {
        self.next_flush
    }

    /// Sends the InputRequiredResults whose gathering window has passed by `now`.
    pub fn flush_inputs(&mut self, now: Instant) {
        self.now = now;
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (cid, p) in self.ids.iter() {
            let Some(at) = p.modern.as_ref().and_then(|m| m.flush_at) else {
                continue;
            };
            if at <= now {
                due.push(cid);
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.next_flush = next;
        for cid in due {
            self.send_input_required(cid, now);
        }
    }

    fn send_input_required(&mut self, cid: u64, now: Instant) {
        let Some(p) = self.ids.get_mut(cid) else {
            return;
        };
        let m = p.modern.as_mut().expect("modern");
        m.flush_at = None;
        let Some(ex) = p.exchange.filter(|e| self.exchanges.contains(*e)) else {
            return;
        };
        if m.inputs.is_empty() {
            return;
        }
        let token = new_token();
        let mut requests = serde_json::Map::new();
        for i in &m.inputs {
            requests.insert(i.key.clone(), i.request.clone());
        }
        let result = json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": token,
        });
        m.token = Some(token.clone());
        self.suspended.insert(
            token,
            Suspension {
                cid,
                principal: m.principal.clone(),
                method: m.method.clone(),
                name: m.name.clone(),
                expires: now + INPUT_TTL,
                done: None,
            },
        );
        p.exchange = None;
        let principal = m.principal.clone();
        let body = result_response(&p.original_id, &serde_json::to_vec(&result).expect("json"));
        self.reply(ex, 200, None, body);
        self.bound_suspended(&principal);
    }

    /// Cancels the oldest suspended calls beyond the limits.
    fn bound_suspended(&mut self, principal: &str) {
        loop {
            let mine = self
                .suspended
                .values()
                .filter(|s| s.principal == principal)
                .count();
            if mine <= MAX_SUSPENDED_PER_PRINCIPAL && self.suspended.len() <= MAX_SUSPENDED {
                return;
            }
            let over_mine = mine > MAX_SUSPENDED_PER_PRINCIPAL;
            let Some(oldest) = self
                .suspended
                .iter()
                .filter(|(_, s)| !over_mine || s.principal == principal)
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone())
            else {
                return;
            };
            let s = self.suspended.remove(&oldest).expect("found");
            if let Some(p) = self.ids.remove(s.cid) {
                self.cancel_on_child(&p, s.cid, "too many requests wait for input");
            }
        }
    }

    /// A server→client request no client can answer: when a modern call without the
    /// capability is what the child is serving, that call ends with -32021. Returns
    /// whether it did.
    pub(super) fn modern_missing_capability(&mut self, child: ChildId, method: &str) -> bool {
        let capability = match method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            "roots/list" => "roots",
            _ => return false,
        };
        // Only when the call is unambiguous: with several modern calls running, the one
        // that asked cannot be told apart, and the server gets an error instead.
        let exchanges = &self.exchanges;
        let sole = self.ids.take_sole(|p| {
            p.child == child
                && p.modern.as_ref().is_some_and(|m| takes_input(&m.method))
                && p.exchange.is_some_and(|e| exchanges.contains(e))
        });
        let Some((cid, p)) = sole else {
            return false;
        };
        p.set_outcome(crate::audit::Outcome::Error(MISSING_CLIENT_CAPABILITY));
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
            .send_line(p.child, serde_json::to_vec(&msg).expect("json"));
        if let Some(token) = p.modern.as_ref().and_then(|m| m.token.as_ref()) {
            self.suspended.remove(token);
        }
    }

    /// The client closed a modern request's stream: that cancels the request.
    pub(super) fn cancel_modern(&mut self, cid: u64, exchange: u64) {
        if self.cancel_held(cid, "the client closed the request's stream", false) {
            return;
        }
        let Some(p) = self.ids.take_if(cid, |p| p.exchange == Some(exchange)) else {
            return;
        };
        debug!(
            cid,
            "a modern request's stream closed: cancelled on the server"
        );
        self.cancel_on_child(&p, cid, "the client closed the request's stream");
    }

    /// The link went down: modern requests with a client attached are cancelled; calls
    /// suspended for their inputs wait on; listen streams end.
    pub(super) fn modern_link_down(&mut self) {
        let attached = self
            .ids
            .take_all(|p| p.modern.is_some() && p.exchange.is_some());
        for (cid, p) in attached {
            self.cancel_on_child(&p, cid, "the client's connection was lost");
        }
        let listens: Vec<u64> = self.listens.keys().copied().collect();
        for ex in listens {
            self.end_listen(ex);
        }
    }

    /// Cancels every call suspended for its inputs (shutdown: no client is waiting on it).
    pub(super) fn drop_suspended(&mut self) {
        let tokens: Vec<String> = self.suspended.keys().cloned().collect();
        for token in tokens {
            let s = self.suspended.remove(&token).expect("listed");
            if let Some(p) = self.ids.take_if(s.cid, |p| p.is_suspended_as(&token)) {
                self.cancel_on_child(&p, s.cid, "the bridge is shutting down");
            }
        }
    }

    /// Drops suspended calls whose client never came back.
    pub(super) fn expire_suspensions(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .suspended
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for token in expired {
            let s = self.suspended.remove(&token).expect("listed");
            if let Some(p) = self.ids.take_if(s.cid, |p| p.is_suspended_as(&token)) {
                self.cancel_on_child(&p, s.cid, "the client did not answer the input requests");
            }
        }
    }

    /// Whether a logging notification may go to this modern call.
    pub(super) fn modern_wants_log(p: &Pending, line: &[u8]) -> bool {
        let Some(m) = &p.modern else { return true };
        let Some(min) = m.log_level else { return false };
        #[derive(Deserialize)]
        struct Msg<'a> {
            #[serde(borrow)]
            params: Option<Level<'a>>,
        }
        #[derive(Deserialize)]
        struct Level<'a> {
            #[serde(borrow)]
            level: Option<std::borrow::Cow<'a, str>>,
        }
        let level = serde_json::from_slice::<Msg<'_>>(line)
            .ok()
            .and_then(|m| m.params)
            .and_then(|p| p.level)
            .and_then(|l| log_rank(&l))
            .unwrap_or(0);
        level >= min
    }

    // ----- subscriptions/listen ----------------------------------------------------------

    fn listen(&mut self, ctx: &Ctx, id: Bytes, child: ChildId, params: &Value, caps: &Value) {
        let filter = &params["notifications"];
        let wants = |k: &str| filter[k].as_bool() == Some(true);
        let has = |cap: &str, flag: &str| caps[cap][flag].as_bool() == Some(true);
        let tools = wants("toolsListChanged") && has("tools", "listChanged");
        let prompts = wants("promptsListChanged") && has("prompts", "listChanged");
        let resources = wants("resourcesListChanged") && has("resources", "listChanged");
        let uris: Vec<String> = if has("resources", "subscribe") {
            filter["resourceSubscriptions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .take(256)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let sub_id: Value = serde_json::from_slice(&id).unwrap_or(Value::Null);
        let mut agreed = serde_json::Map::new();
        for (k, on) in [
            ("toolsListChanged", tools),
            ("promptsListChanged", prompts),
            ("resourcesListChanged", resources),
        ] {
            if on {
                agreed.insert(k.into(), Value::Bool(true));
            }
        }
        if !uris.is_empty() {
            agreed.insert("resourceSubscriptions".into(), json!(uris));
        }
        for uri in &uris {
            let n = self.subscriptions.entry((child, uri.clone())).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.internal_request(child, "resources/subscribe", json!({ "uri": uri }));
            }
        }
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": { "_meta": { META_SUBSCRIPTION: sub_id }, "notifications": agreed }
        });
        self.listens.insert(
            ctx.exchange,
            Listen {
                sub_id: id,
                child,
                tools,
                prompts,
                resources,
                uris,
            },
        );
        self.exchanges.open(ctx.exchange, Role::Listen);
        let body = serde_json::to_vec(&ack).expect("json");
        self.push(ctx.exchange, 200, None, FLAG_STREAM, body);
    }

    /// A listen stream ended (client gone, link down, shutdown).
    pub(super) fn end_listen(&mut self, exchange: u64) {
        let Some(l) = self.listens.remove(&exchange) else {
            return;
        };
        self.exchanges.close(exchange);
        for uri in l.uris {
            let key = (l.child, uri.clone());
            if let Some(n) = self.subscriptions.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.subscriptions.remove(&key);
                    self.internal_request(l.child, "resources/unsubscribe", json!({ "uri": uri }));
                }
            }
        }
    }

    /// Passes a change notification of the child to the listen streams that asked for it.
    pub(super) fn notify_listens(&mut self, child: ChildId, method: &str, line: &Bytes) {
        if self.listens.is_empty() {
            return;
        }
        let uri = if method == "notifications/resources/updated" {
            let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
            v["params"]["uri"].as_str().map(str::to_owned)
        } else {
            None
        };
        let targets: Vec<(u64, Bytes)> = self
            .listens
            .iter()
            .filter(|(_, l)| l.child == child)
            .filter(|(_, l)| match method {
                "notifications/tools/list_changed" => l.tools,
                "notifications/prompts/list_changed" => l.prompts,
                "notifications/resources/list_changed" => l.resources,
                "notifications/resources/updated" => {
                    uri.as_ref().is_some_and(|u| l.uris.iter().any(|x| x == u))
                }
                _ => false,
            })
            .map(|(ex, l)| (*ex, l.sub_id.clone()))
            .collect();
        if targets.is_empty() {
            return;
        }
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        for (ex, sub_id) in targets {
            let mut msg = v.clone();
            if !msg["params"].is_object() {
                msg["params"] = json!({});
            }
            if !msg["params"]["_meta"].is_object() {
                msg["params"]["_meta"] = json!({});
            }
            msg["params"]["_meta"][META_SUBSCRIPTION] =
                serde_json::from_slice(&sub_id).unwrap_or(Value::Null);
            self.message(ex, serde_json::to_vec(&msg).expect("json"));
        }
    }

    /// Ends every listen stream with the graceful completion result (shutdown).
    pub(super) fn close_listens(&mut self) {
        let all: Vec<u64> = self.listens.keys().copied().collect();
        for ex in all {
            if let Some(l) = self.listens.get(&ex) {
                let sub: Value = serde_json::from_slice(&l.sub_id).unwrap_or(Value::Null);
                let result =
                    json!({ "resultType": "complete", "_meta": { META_SUBSCRIPTION: sub } });
                let body = result_response(&l.sub_id, &serde_json::to_vec(&result).expect("json"));
                if self.exchanges.contains(ex) {
                    self.push(ex, 200, None, FLAG_FINAL, body);
                }
            }
            self.end_listen(ex);
        }
    }
}
