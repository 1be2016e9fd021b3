//! A server's life as the core sees it: starting one (its `initialize` is the bridge's
//! own), its exit (what was in flight on it is answered with an error), the shared one's
//! restart, the clock's tick (timeouts and expiries), and the bridge's own requests.

use std::time::Instant;

use protocol::jsonrpc::{INTERNAL_ERROR, REQUEST_TIMEOUT, error_response};
use serde_json::Value;
use tracing::{error, info};

use super::ids::{Pending, Purpose};
use super::init;
use super::supervisor::ChildState;
use super::{Core, incident_id};
use crate::child::{ChildEvent, ChildId};

impl Core {
    /// Starts the shared child (not under `isolate`). Its readiness is reported by
    /// [`Core::default_child_state`].
    pub fn start_default_child(&mut self) -> Result<(), String> {
        if self.children.shared().is_none() {
            let id = self.spawn_child()?;
            self.children.set_shared(Some(id));
        }
        Ok(())
    }

    /// `None` while the shared child starts, then `Ok(())` or the failure.
    pub fn default_child_state(&self) -> Option<Result<(), String>> {
        match self.children.state(self.children.shared()?)? {
            ChildState::Starting => None,
            ChildState::Ready { .. } => Some(Ok(())),
            ChildState::Failed(e) => Some(Err(e.clone())),
        }
    }

    /// The last lines the shared child wrote to stderr (for errors shown locally).
    pub fn default_child_stderr(&self) -> Vec<String> {
        self.children
            .shared()
            .map(|id| self.children.stderr_tail(id))
            .unwrap_or_default()
    }

    pub(super) fn spawn_child(&mut self) -> Result<ChildId, String> {
        let id = self.children.spawn()?;
        let req_id = self.ids.fresh();
        if !self
            .children
            .send_line(id, init::child_initialize_request(req_id))
        {
            self.children.forget(id);
            return Err("the server's stdin closed at once".into());
        }
        self.ids
            .insert(req_id, Pending::internal(id, Purpose::ChildInit));
        Ok(id)
    }

    /// The child for sessionless traffic of `principal`: under `isolate` its own (the least
    /// recently used principal's is stopped to make room), otherwise the shared one.
    pub(super) fn sessionless_child(&mut self, principal: &str) -> Result<ChildId, String> {
        if !self.cfg.isolate {
            return self.shared_child();
        }
        if let Some(id) = self.children.principal_child(principal, self.now) {
            return Ok(id);
        }
        if self.children.principal_children() >= self.cfg.max_children.max(1)
            && let Some(oldest) = self.children.oldest_principal_child()
        {
            info!("stopping the least recently used client's server to make room");
            self.stop_principal_child(oldest);
        }
        let id = self.spawn_child()?;
        self.children.set_principal_child(principal, id, self.now);
        Ok(id)
    }

    /// Stops a principal's child to make room; what is in flight on it is answered.
    fn stop_principal_child(&mut self, child: ChildId) {
        self.children.forget_principal_child(child);
        let Some(gone) = self.children.forget(child) else {
            return;
        };
        self.answer_parked(
            gone.parked,
            "the bridge stopped this client's server to make room for others",
        );
        for (id, p) in self.ids.take_all(|p| p.child == child) {
            if p.purpose == Purpose::Client {
                p.set_outcome(crate::audit::Outcome::Error(INTERNAL_ERROR));
                let msg = "the bridge stopped this client's server to make room for others";
                let body = error_response(&p.original_id, INTERNAL_ERROR, msg);
                self.deliver_answer(&p, body);
            }
            self.forget_in_flight(&p, id);
        }
        self.ids.forget_server_requests_of(child);
    }

    /// Answers sessionless messages that waited for a child that is gone.
    fn answer_parked(&mut self, parked: Vec<(super::message::Ctx, bytes::Bytes)>, message: &str) {
        for (ctx, body) in parked {
            if let Ok(env) = protocol::scan::parse_fast(&body)
                && let Some(id) = env.id
            {
                self.answer(&ctx, error_response(&body[id], INTERNAL_ERROR, message));
            }
        }
    }

    /// The child for sessionless traffic, started on demand.
    pub(super) fn shared_child(&mut self) -> Result<ChildId, String> {
        if let Some(id) = self.children.running_shared() {
            return Ok(id);
        }
        if self.children.restarting() {
            return Err("it exited and is being restarted; retry in a moment".into());
        }
        let id = self.spawn_child()?;
        self.children.set_shared(Some(id));
        Ok(id)
    }

    /// Handles a child event that happened at `now`.
    pub fn on_child_event(&mut self, ev: ChildEvent, now: Instant) {
        self.now = now;
        match ev {
            ChildEvent::Line(child, line) => self.on_child_line(child, line),
            ChildEvent::Exited(child, status) => self.on_child_exit(child, &status, false),
            ChildEvent::Unreachable(child, why) => self.on_child_exit(child, &why, true),
        }
    }

    /// Periodic housekeeping: restarts the shared child after a crash (with backoff) and
    /// times out requests.
    pub fn on_tick(&mut self, now: Instant) {
        self.now = now;
        self.expire_held(now);
        self.expire_calls(now);
        self.expire_suspensions(now);
        self.prune_resumable();
        self.expire_carried(now);
        for s in self.sessions.iter_mut() {
            if !s.logs.is_empty() {
                s.logs.prune(now);
            }
        }
        if self.children.restart_due(now) {
            match self.spawn_child() {
                Ok(new) => {
                    let old = self.children.set_shared(Some(new));
                    for s in self.sessions.iter_mut() {
                        if Some(s.child) == old {
                            s.child = new;
                        }
                    }
                    // Move subscriptions to the new child and renew them there.
                    let moved = match old {
                        Some(old) => self.subscriptions.move_child(old, new),
                        None => Vec::new(),
                    };
                    for uri in moved {
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
                    self.children.schedule_restart(false, now);
                }
            }
        }
    }

    /// A child is gone: it exited, or (`unreachable`) its HTTP server could not be
    /// reached. What waited for it is answered with an error.
    pub(super) fn on_child_exit(&mut self, child: ChildId, status: &str, unreachable: bool) {
        let tail = self.children.stderr_tail(child);
        let Some(gone) = self.children.forget(child) else {
            return;
        };
        self.children.forget_principal_child(child);
        let incident = incident_id();
        let message = if unreachable {
            // Logged where it was noticed (the server's health), once per outage.
            format!(
                "the local MCP server is not reachable (incident {incident}); the bridge keeps trying, retry in a moment"
            )
        } else {
            error!(
                incident = %incident,
                child,
                "the MCP server exited ({status}); last stderr lines: {}",
                tail.join(" | ")
            );
            format!(
                "the local MCP server exited (incident {incident}); the bridge is restarting it, retry the request"
            )
        };
        if unreachable {
            tracing::debug!(incident = %incident, child, "{status}");
        }
        for w in gone.waiting {
            if let Some(ex) = w.exchange {
                self.answer_to(ex, true, &error_response(&w.id, INTERNAL_ERROR, &message));
            }
        }
        self.answer_parked(gone.parked, &message);
        for (id, p) in self.ids.take_all(|p| p.child == child) {
            if p.purpose == Purpose::Client {
                p.set_outcome(crate::audit::Outcome::Error(INTERNAL_ERROR));
                let body = error_response(&p.original_id, INTERNAL_ERROR, &message);
                self.deliver_answer(&p, body);
            }
            self.forget_in_flight(&p, id);
        }
        self.ids.forget_server_requests_of(child);
        let orphaned: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.child == child && s.owns_child)
            .map(|s| s.id.clone())
            .collect();
        for sid in orphaned {
            self.end_session(&sid, true);
        }
        if Some(child) == self.children.shared() && (!self.cfg.isolate || self.cfg.keep_shared) {
            self.children.schedule_restart(gone.was_ready, self.now);
        } else if Some(child) == self.children.shared() {
            self.children.set_shared(None);
        }
    }

    /// Answers requests past their deadline with an error and cancels them on the server.
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let expired = self.ids.take_all(|p| p.deadline.is_some_and(|d| d <= now));
        for (id, p) in expired {
            let msg = serde_json::json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": { "requestId": id, "reason": "timed out" }
            });
            self.children
                .send_line(p.child, msg.to_string().into_bytes());
            p.set_outcome(crate::audit::Outcome::Timeout);
            let secs = self.cfg.call_timeout.as_secs();
            let body = error_response(
                &p.original_id,
                REQUEST_TIMEOUT,
                &format!(
                    "the local MCP server did not answer within {secs} s; the request was cancelled"
                ),
            );
            self.deliver_answer(&p, body);
            self.forget_in_flight(&p, id);
        }
    }

    /// Asks a child for its tools list, kept for the relay's offline answers.
    pub(super) fn refresh_tools_snapshot(&mut self, child: ChildId) {
        self.internal_request_for(
            child,
            "tools/list",
            serde_json::json!({}),
            Purpose::ToolsSnapshot,
        );
    }

    pub(super) fn internal_request(&mut self, child: ChildId, method: &str, params: Value) {
        self.internal_request_for(child, method, params, Purpose::Internal);
    }

    pub(super) fn internal_request_for(
        &mut self,
        child: ChildId,
        method: &str,
        params: Value,
        purpose: Purpose,
    ) {
        let id = self.ids.fresh();
        let msg =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self.children.send_line(child, msg.to_string().into_bytes()) {
            self.ids.insert(id, Pending::internal(child, purpose));
        }
    }
}
