//! Messages from a server process: answers (ids restored), its requests to clients
//! (routed to the session they belong to, or answered locally), and notifications.

use bytes::Bytes;
use protocol::jsonrpc::{
    Envelope, Kind, METHOD_NOT_FOUND, error_response, result_response, splice,
};
use serde_json::Value;
use tracing::{debug, error, info, warn};

use super::Core;
use super::ids::{Pending, Purpose};
use super::init;
use super::sessions::Session;
use super::supervisor::ChildState;
use crate::child::ChildId;

impl Core {
    pub(super) fn on_child_line(&mut self, child: ChildId, line: Bytes) {
        // Local asset origins become public ones before anything looks at the line.
        let line = match self.assets.as_ref().and_then(|a| a.rewrite(&line)) {
            Some(rewritten) => rewritten,
            None => line,
        };
        // The server's own output: the fast scan skips over large results.
        let env = match protocol::scan::parse_fast(&line) {
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

    pub(super) fn on_child_response(&mut self, child: ChildId, line: &Bytes, env: &Envelope<'_>) {
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
        let Some(mut p) = self.ids.take_if(id, |p| p.child == child) else {
            debug!(child, id, "answer to an unknown or finished request");
            return;
        };
        self.log_answered(id, &p, env.is_error);
        // The policy's rewrite of a tools/list answer (and the outcome of an audited call).
        let noted = p.note.as_deref().and_then(|n| self.noted_answer(n, line));
        let (line, span) = match &noted {
            Some((l, s)) => (l, s.clone()),
            None => (line, span),
        };
        match p.purpose {
            Purpose::ChildInit => self.on_child_initialized(child, line),
            Purpose::Internal => {}
            Purpose::ToolsSnapshot => {
                let mut v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                if let Some(r) = v.get_mut("result").filter(|r| r.is_object()) {
                    self.gate.rewrite_tools(r);
                    self.snapshot.set_tools(Bytes::from(r.to_string()));
                }
            }
            Purpose::Client => {
                if let Some(call) = p.stateless.take() {
                    return self.finish_stateless(p, *call, line, span);
                }
                self.forget_in_flight(&p, id);
                let body = splice(line, &mut [(span, &p.original_id[..])]);
                self.deliver_answer(&p, body);
            }
        }
    }

    pub(super) fn forget_in_flight(&mut self, p: &Pending, id: u64) {
        if let Some(sid) = &p.session
            && let Some(s) = self.sessions.get_mut(sid)
            && s.in_flight.get(&p.original_id) == Some(&id)
        {
            s.in_flight.remove(&p.original_id);
        }
    }

    pub(super) fn on_child_initialized(&mut self, child: ChildId, line: &Bytes) {
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        if !self.children.contains(child) {
            return;
        }
        let state = match v.get("result") {
            Some(result) if result.is_object() => {
                let version = result["protocolVersion"]
                    .as_str()
                    .unwrap_or(protocol::LATEST_LEGACY_MCP_VERSION)
                    .to_owned();
                self.children
                    .send_line(child, init::INITIALIZED_NOTIFICATION.to_vec());
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
        let waiting = self.children.settle(child, state);
        self.log_inits_answered(&waiting, ready_result.is_some());
        if let Some(result) = ready_result
            && (Some(child) == self.children.shared() || !self.snapshot.has_initialize())
        {
            self.snapshot
                .set_initialize(Bytes::from(result.to_string()));
            self.refresh_tools_snapshot(child);
        }
        for w in waiting {
            self.complete_initialize(child, w);
        }
        for (ctx, body) in self.children.take_parked(child) {
            self.on_message(ctx, body);
        }
    }

    pub(super) fn on_child_request(&mut self, child: ChildId, line: &Bytes, env: &Envelope<'_>) {
        let Some(span) = env.id.clone() else { return };
        let id = Bytes::copy_from_slice(&line[span.clone()]);
        let method = env.method.as_deref().unwrap_or("");
        let reply = |core: &mut Self, body: Vec<u8>| {
            core.children.send_line(child, body);
        };
        match method {
            "roots/list" if !self.cfg.client_roots => {
                let roots = serde_json::json!({ "roots": self.cfg.roots });
                let result = roots.to_string().into_bytes();
                reply(self, result_response(&id, &result));
            }
            "ping" => reply(self, result_response(&id, b"{}")),
            _ => {
                let target = self.pick_for_server_request(child, method);
                if let Some(t) = target
                    && self.stateless_input(t, child, &id, line)
                {
                    return;
                }
                let routed =
                    target.and_then(|t| self.ids.route_server_request(t, child, id.clone()));
                let Some((sid, exchange)) = routed else {
                    if self.stateless_missing_capability(child, method) {
                        reply(
                            self,
                            error_response(
                                &id,
                                METHOD_NOT_FOUND,
                                &format!("the client did not declare support for {method}"),
                            ),
                        );
                        return;
                    }
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
                let sid_text = sid.to_string();
                let body = splice(line, &mut [(span, sid_text.as_bytes())]);
                if let Some(ex) = exchange {
                    self.message(ex, body);
                }
            }
        }
    }

    /// Chooses the in-flight request a server→client request belongs to (module docs).
    pub(super) fn pick_for_server_request(&self, child: ChildId, method: &str) -> Option<u64> {
        let mut fallback = None;
        for (id, p) in self.ids.iter() {
            if p.child != child || p.purpose != Purpose::Client {
                continue;
            }
            if let Some(m) = &p.stateless {
                // A stateless call takes input requests even while suspended (they join
                // its next round).
                if !m.can_take(method) {
                    continue;
                }
                if !p.awaiting_client {
                    return Some(id);
                }
                fallback.get_or_insert(id);
                continue;
            }
            let Some(ex) = p.exchange else { continue };
            if !self.is_live(ex) {
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
                return Some(id);
            }
            fallback.get_or_insert(id);
        }
        fallback
    }

    pub(super) fn on_child_notification(
        &mut self,
        child: ChildId,
        line: &Bytes,
        env: &Envelope<'_>,
    ) {
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
                let Some(p) = self.ids.get(id).filter(|p| p.child == child) else {
                    return;
                };
                let Some(tok) = p.original_token.clone() else {
                    return;
                };
                let body = splice(line, &mut [(span, &tok[..])]);
                if let Some(ex) = p.exchange {
                    self.message(ex, body);
                }
            }
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed" => {
                if method == "notifications/tools/list_changed"
                    && (Some(child) == self.children.shared() || self.cfg.isolate)
                {
                    self.refresh_tools_snapshot(child);
                }
                self.notify_listens(child, method, line);
                self.send_to_session_streams(line, |s| s.child == child);
            }
            "notifications/resources/updated" => {
                let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                let Some(uri) = v["params"]["uri"].as_str() else {
                    return;
                };
                self.notify_listens(child, method, line);
                self.send_to_session_streams(line, |s| {
                    s.child == child && s.subscriptions.contains(uri)
                });
            }
            "notifications/cancelled" => {
                // The server withdraws one of its requests to a client.
                let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                let child_req = serde_json::to_vec(&v["params"]["requestId"]).unwrap_or_default();
                if let Some((sid, pending)) = self.ids.withdraw_server_request(child, &child_req) {
                    let mut msg = v.clone();
                    msg["params"]["requestId"] = Value::from(sid);
                    let body = msg.to_string().into_bytes();
                    if let Some(ex) = self.ids.get(pending).and_then(|p| p.exchange) {
                        self.message(ex, body);
                    }
                }
            }
            _ => self.route_unkeyed(child, line),
        }
    }

    /// Sends a server's message on the streams of the sessions `pick` chooses.
    fn send_to_session_streams(&mut self, line: &[u8], pick: impl Fn(&Session) -> bool) {
        let streams: Vec<u64> = self
            .sessions
            .iter()
            .filter(|s| pick(s))
            .filter_map(|s| s.stream)
            .collect();
        for ex in streams {
            self.message(ex, line.to_vec());
        }
    }

    /// Notifications with no routing key (module docs).
    pub(super) fn route_unkeyed(&mut self, child: ChildId, line: &Bytes) {
        let mut owner: Option<Option<&str>> = None;
        let mut target = None;
        let mut ambiguous = false;
        let mut muted = false;
        for (_, p) in self.ids.iter() {
            if p.child != child || p.purpose != Purpose::Client {
                continue;
            }
            let Some(ex) = p.exchange else { continue };
            if !self.is_live(ex) {
                continue;
            }
            let who = p.session.as_deref();
            if p.stateless.as_ref().is_some_and(|m| !m.wants_log(line)) {
                // Busy (the message may be its), but it asked for no such logs.
                if owner.is_some() {
                    ambiguous = true;
                    break;
                }
                owner = Some(None);
                muted = true;
                continue;
            }
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
        if muted && !ambiguous {
            return;
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
