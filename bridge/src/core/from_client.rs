//! Messages from clients: requests forwarded with rewritten ids, `initialize` answered
//! from the cache, subscriptions, cancellations and answers to server requests.

use std::ops::Range;

use bytes::Bytes;
use protocol::jsonrpc::{
    self, Envelope, INTERNAL_ERROR, INVALID_REQUEST, Kind, METHOD_NOT_FOUND, REQUEST_CANCELLED,
    UNAVAILABLE, error_response, result_response, splice,
};
use serde_json::Value;
use tracing::{debug, warn};

use super::exchanges::Role;
use super::ids::{Pending, Purpose, Unmatched};
use super::init::{self, WaitingInit};
use super::message::{ClientRequest, Ctx, Transport};
use super::sessions::ClientCaps;
use super::stateless;
use super::subscriptions::Release;
use super::supervisor::ChildState;
use super::{Core, ex_body};
use crate::child::ChildId;

/// What the bridge does with a notification from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientNotification {
    /// Handled by the bridge alone: the child was initialized by the bridge, and remote
    /// roots are never forwarded.
    Absorbed,
    /// `notifications/cancelled`: mapped to the child-side id of the request.
    Cancelled,
    /// `notifications/progress`: a client reporting progress on a server→client request it
    /// is answering; forwarded unchanged.
    Progress,
    /// Anything else. No other notification is defined for clients, and forwarding one (a
    /// `tools/call` without an `id`, say) would reach a server that dispatches on `method`
    /// past the desktop policy and the audit log: dropped and logged.
    Refused,
}

impl ClientNotification {
    /// The rule for a notification's method (exact match: the envelope decoded escapes).
    pub(super) fn of(method: &str) -> Self {
        match method {
            "notifications/initialized" | "notifications/roots/list_changed" => Self::Absorbed,
            "notifications/cancelled" => Self::Cancelled,
            "notifications/progress" => Self::Progress,
            _ => Self::Refused,
        }
    }
}

impl Core {
    /// A message a client POSTed, in its context.
    pub(super) fn on_message(&mut self, ctx: Ctx, body: Bytes) {
        // The relay validated the body already; the scan only finds the envelope.
        let env = match protocol::scan::parse_fast(&body) {
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
        let request = ClientRequest::new(body.clone(), &env);
        // 2026-07-28 has no sessions: a stateless request ignores any session id.
        let stateless = !ctx.is_http_sse()
            && request
                .as_ref()
                .is_some_and(|r| stateless::is_stateless(r, ctx.header_version.as_deref()));
        // Under `isolate`, a sessionless request waits while its principal's child starts.
        if self.cfg.isolate
            && env.kind == Kind::Request
            && !ctx.is_http_sse()
            && (stateless || ctx.session().is_none())
            && request.as_ref().is_some_and(|r| r.method() != "initialize")
            && let Ok(child) = self.sessionless_child(&ctx.principal)
            && self
                .children
                .park_if_starting(child, ctx.clone(), body.clone())
                .is_none()
        {
            return;
        }
        if let Transport::Streamable { session: Some(sid) } = &ctx.transport
            && !stateless
        {
            if self.sessions.touch(sid, &ctx.principal).is_none() {
                self.session_not_found(ctx.exchange);
                return;
            }
            self.exchanges
                .open(ctx.exchange, Role::SessionPost(sid.clone()));
        }
        match (env.kind, request) {
            (Kind::Request, Some(req)) if stateless => {
                self.on_stateless_request(&ctx.without_session(), &req)
            }
            (Kind::Request, Some(req)) => self.on_client_request(&ctx, &req),
            (Kind::Request, None) => {
                let msg = "Bad Request: a request needs an id";
                self.reply(ctx.exchange, 400, None, ex_body(INVALID_REQUEST, msg));
            }
            (Kind::Notification, _) => {
                self.on_client_notification(&ctx, &body, &env);
                self.reply(ctx.exchange, 202, None, Vec::new());
            }
            (Kind::Response, _) => {
                self.on_client_response(&ctx, &body, &env);
                self.reply(ctx.exchange, 202, None, Vec::new());
            }
        }
        if ctx.is_http_sse() && self.exchanges.contains(ctx.exchange) {
            self.reply(ctx.exchange, 202, None, Vec::new());
        }
    }

    /// A client's request of the handshake revisions (or without a revision).
    pub(super) fn on_client_request(&mut self, ctx: &Ctx, req: &ClientRequest) {
        let method = req.method();
        match method {
            "initialize" => self.on_initialize(ctx, req),
            "ping" => self.answer(ctx, result_response(&req.id(), b"{}")),
            // A probe without the 2026-07-28 envelope (stateless ones go to
            // `on_stateless_request`): answered as a handshake-revision server answers an
            // unknown method, so the client falls back to `initialize` (a 4xx here made
            // hosted clients give up).
            "server/discover" => {
                let msg = "Method not found: server/discover needs the 2026-07-28 request \
                           envelope (params._meta); this endpoint also serves initialize";
                self.answer(ctx, error_response(&req.id(), METHOD_NOT_FOUND, msg));
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                self.on_subscription(ctx, req, method == "resources/subscribe")
            }
            _ => {
                if method == "logging/setLevel"
                    && let Some(s) = ctx.session().and_then(|s| self.sessions.get_mut(s))
                {
                    s.wants_logs = true;
                }
                if self.gate.active() {
                    return self.forward_checked(ctx, req);
                }
                let _ = self.forward(ctx, req);
            }
        }
    }

    /// The child serving a client message: its session's, or the shared one.
    pub(super) fn child_of(&mut self, ctx: &Ctx) -> Result<ChildId, String> {
        match ctx.session().and_then(|s| self.sessions.get(s)) {
            Some(s) => Ok(s.child),
            None => self.sessionless_child(&ctx.principal),
        }
    }

    fn cannot_start(&mut self, ctx: &Ctx, id: &[u8], why: &str) {
        let msg = format!("the local MCP server cannot start: {why}");
        self.answer(ctx, error_response(id, UNAVAILABLE, &msg));
    }

    /// Sends a client request to its child under a child-unique id (its progress token
    /// too); returns that id (`None` when the request was answered with an error instead).
    pub(super) fn forward(&mut self, ctx: &Ctx, req: &ClientRequest) -> Option<u64> {
        let id = req.id();
        let child = match self.child_of(ctx) {
            Ok(c) => c,
            Err(e) => {
                self.cannot_start(ctx, &id, &e);
                return None;
            }
        };
        if !self.children.is_ready(child) {
            self.answer(
                ctx,
                error_response(
                    &id,
                    UNAVAILABLE,
                    "the local MCP server is starting; retry in a moment",
                ),
            );
            return None;
        }
        if let Some(s) = ctx.session().and_then(|s| self.sessions.get(s))
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
            return None;
        }
        let cid = self.ids.fresh();
        let cid_text = cid.to_string();
        let body = req.body();
        let mut edits: Vec<(Range<usize>, &[u8])> = vec![(req.id_span(), cid_text.as_bytes())];
        let original_token = req.progress_token_span().map(|span| {
            let tok = Bytes::copy_from_slice(&body[span.clone()]);
            edits.push((span, cid_text.as_bytes()));
            tok
        });
        let line = splice(body, &mut edits);
        if !self.children.send_line(child, line) {
            let exited = self.children.stdin_closed(child);
            let why = if exited {
                "the local MCP server just exited and is being restarted; retry in a moment"
            } else {
                "the local MCP server is not reading its input; retry later"
            };
            self.answer(ctx, error_response(&id, UNAVAILABLE, why));
            return None;
        }
        let (exchange, reply_final) = match &ctx.transport {
            Transport::HttpSse { session } => {
                (self.sessions.get(session).and_then(|s| s.stream), false)
            }
            Transport::Streamable { .. } => (Some(ctx.exchange), true),
        };
        if let Some(s) = ctx.session().and_then(|s| self.sessions.get_mut(s)) {
            s.in_flight.insert(id.clone(), cid);
        }
        self.ids.insert(
            cid,
            Pending {
                child,
                purpose: Purpose::Client,
                exchange,
                reply_final,
                session: ctx.session().map(str::to_owned),
                original_id: id,
                original_token,
                awaiting_client: false,
                deadline: Some(self.now + self.cfg.call_timeout),
                stateless: None,
                note: None,
            },
        );
        Some(cid)
    }

    /// `resources/subscribe` and `resources/unsubscribe`, counted per session and per
    /// child.
    fn on_subscription(&mut self, ctx: &Ctx, req: &ClientRequest, subscribe: bool) {
        let params: Value = req
            .params()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or(Value::Null);
        let Some(uri) = params["uri"].as_str().map(str::to_owned) else {
            self.answer(
                ctx,
                error_response(&req.id(), jsonrpc::INVALID_PARAMS, "params.uri is required"),
            );
            return;
        };
        let Some(sid) = ctx.session() else {
            // No session to deliver updates to: let the server answer, without tracking.
            let _ = self.forward(ctx, req);
            return;
        };
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        let child = s.child;
        // The session's own set first: a repeated (un)subscribe changes nothing.
        let changed = if subscribe {
            s.subscriptions.insert(uri.clone())
        } else {
            s.subscriptions.remove(&uri)
        };
        // The child hears of the first subscriber and of the last one leaving.
        let child_too = changed
            && if subscribe {
                self.subscriptions.add(child, &uri)
            } else {
                self.subscriptions.release(child, &uri) != Release::Held
            };
        if child_too {
            let _ = self.forward(ctx, req);
        } else {
            self.answer(ctx, result_response(&req.id(), b"{}"));
        }
    }

    /// A remote `initialize`: answered from the child's cached result once it is ready; a
    /// Streamable one creates the session then.
    fn on_initialize(&mut self, ctx: &Ctx, req: &ClientRequest) {
        let id = req.id();
        let v: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let params = &v["params"];
        let requested = params["protocolVersion"].as_str().map(str::to_owned);
        let caps = ClientCaps::from_initialize(params);
        let client = client_name(&params["clientInfo"]);
        let (child, exchange, http_sse_session) = match &ctx.transport {
            Transport::HttpSse { session } => {
                // The session exists (the relay's POST was checked against it) and its
                // answers go to its stream.
                let Some(s) = self.sessions.get(session) else {
                    return;
                };
                let Some(stream) = s.stream else {
                    return;
                };
                (s.child, stream, Some(session.clone()))
            }
            Transport::Streamable { .. } => match self.child_for_new_session() {
                Ok(c) => (c, ctx.exchange, None),
                Err(e) => return self.cannot_start(ctx, &id, &e),
            },
        };
        let w = WaitingInit {
            exchange: Some(exchange),
            id,
            requested,
            caps,
            principal: ctx.principal.clone(),
            client,
            http_sse_session,
        };
        if let Some(w) = self.children.wait_if_starting(child, w) {
            self.complete_initialize(child, w);
        }
    }

    pub(super) fn complete_initialize(&mut self, child: ChildId, w: WaitingInit) {
        let is_final = w.http_sse_session.is_none();
        let Some(exchange) = w
            .exchange
            .filter(|e| self.exchanges.contains(*e) || self.carried.contains(*e))
        else {
            // The client is gone: under `isolate`, nobody will use this child.
            if self.cfg.isolate && w.http_sse_session.is_none() {
                self.children.forget(child);
            }
            return;
        };
        let (result, child_version) = match self.children.state(child) {
            Some(ChildState::Ready { result, version }) => (result.clone(), version.clone()),
            Some(ChildState::Failed(e)) => {
                let msg = format!("the local MCP server failed to initialize: {e}");
                self.answer_to(
                    exchange,
                    is_final,
                    &error_response(&w.id, INTERNAL_ERROR, &msg),
                );
                return;
            }
            _ => {
                self.answer_to(
                    exchange,
                    is_final,
                    &error_response(&w.id, INTERNAL_ERROR, "the local MCP server is not running"),
                );
                return;
            }
        };
        let version = init::negotiate(w.requested.as_deref(), &child_version);
        let body = result_response(&w.id, &init::result_for(&result, &version));
        match w.http_sse_session {
            Some(sid) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.protocol_version = version;
                    s.caps = w.caps;
                    s.client = w.client;
                }
                self.message(exchange, body);
            }
            None => {
                self.make_room_for_session(&w.principal);
                let sid = self.sessions.create(
                    &w.principal,
                    child,
                    version,
                    w.caps,
                    false,
                    self.cfg.isolate,
                );
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.client = w.client;
                }
                self.reply(exchange, 200, Some(sid), body);
            }
        }
    }

    pub(super) fn on_client_notification(&mut self, ctx: &Ctx, body: &Bytes, env: &Envelope<'_>) {
        let method = env.method.as_deref().unwrap_or("");
        match ClientNotification::of(method) {
            ClientNotification::Absorbed => {}
            ClientNotification::Cancelled => {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let Ok(rid) = serde_json::to_vec(&v["params"]["requestId"]) else {
                    return;
                };
                let Some(sid) = ctx.session() else {
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
                if self.cancel_held(cid, "the client cancelled it", true) {
                    return;
                }
                // The request is over for the client (the server will not answer it; a late
                // answer finds no pending entry and is dropped): end its stream, free it.
                let Some(p) = self.ids.remove(cid) else {
                    return;
                };
                let mut msg = serde_json::json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": { "requestId": cid }
                });
                if let Some(reason) = v["params"].get("reason") {
                    msg["params"]["reason"] = reason.clone();
                }
                self.children
                    .send_line(p.child, msg.to_string().into_bytes());
                self.forget_in_flight(&p, cid);
                self.ids.forget_server_requests_through(cid);
                if let (Some(ex), true) = (p.exchange, p.reply_final)
                    && self.exchanges.contains(ex)
                {
                    self.reply(
                        ex,
                        200,
                        None,
                        error_response(&p.original_id, REQUEST_CANCELLED, "Request cancelled"),
                    );
                }
            }
            ClientNotification::Progress => {
                let child = match self.child_of(ctx) {
                    Ok(c) => c,
                    Err(_) => return,
                };
                self.children.send_line(child, splice(body, &mut []));
            }
            ClientNotification::Refused => {
                warn!(
                    principal = %protocol::text::printable(&ctx.principal, 80),
                    method = %protocol::text::printable(method, 80),
                    "dropped a client notification the protocol does not define for clients"
                );
            }
        }
    }

    pub(super) fn on_client_response(&mut self, ctx: &Ctx, body: &Bytes, env: &Envelope<'_>) {
        let Some(span) = env.id.clone() else { return };
        let Some(sid) = std::str::from_utf8(&body[span.clone()])
            .ok()
            .and_then(|s| s.trim_matches('"').parse::<u64>().ok())
        else {
            return;
        };
        let req = match self.ids.take_server_request(sid, ctx.session()) {
            Ok(req) => req,
            Err(Unmatched::Unknown) => {
                debug!("answer to an unknown server request; ignored");
                return;
            }
            Err(Unmatched::OtherSession) => {
                debug!("answer to another session's server request; ignored");
                return;
            }
        };
        let line = splice(body, &mut [(span, &req.child_id[..])]);
        self.children.send_line(req.child, line);
    }
}

/// Most characters of a client's name kept for the owner.
const MAX_CLIENT_NAME: usize = 80;

/// What a client called itself in `initialize` (`clientInfo`): "name version", bounded.
fn client_name(info: &Value) -> Option<String> {
    let name = info["name"].as_str().filter(|n| !n.is_empty())?;
    let full = match info["version"].as_str() {
        Some(v) if !v.is_empty() => format!("{name} {v}"),
        _ => name.to_owned(),
    };
    Some(full.chars().take(MAX_CLIENT_NAME).collect())
}

#[cfg(test)]
mod tests {
    use super::ClientNotification;

    #[test]
    fn only_notifications_defined_for_clients_pass() {
        use ClientNotification::*;
        assert_eq!(
            ClientNotification::of("notifications/initialized"),
            Absorbed
        );
        assert_eq!(
            ClientNotification::of("notifications/roots/list_changed"),
            Absorbed
        );
        assert_eq!(ClientNotification::of("notifications/cancelled"), Cancelled);
        assert_eq!(ClientNotification::of("notifications/progress"), Progress);
        for smuggled in [
            "tools/call",
            "resources/read",
            "prompts/get",
            "initialize",
            "notifications/tools/list_changed",
            "notifications/message",
            "notifications/tasks/status",
            "Notifications/Progress",
            "notifications/progress ",
            "",
        ] {
            assert_eq!(ClientNotification::of(smuggled), Refused, "{smuggled:?}");
        }
    }
}
