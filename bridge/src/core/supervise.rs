//! Server processes: starting them, initializing them once, restarting the shared one
//! after it exits (with backoff), timing out requests, and the bridge's own requests.

use super::*;

impl Core {
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

    /// The last lines the shared child wrote to stderr (for errors shown locally).
    pub fn default_child_stderr(&self) -> Vec<String> {
        self.default_child
            .filter(|id| self.children.contains_key(id))
            .map(|id| self.processes.stderr_tail(id))
            .unwrap_or_default()
    }

    pub(super) fn spawn_child(&mut self) -> Result<ChildId, String> {
        let id = self.next_child;
        self.next_child += 1;
        self.processes.spawn(id, &self.cfg.child)?;
        let req_id = self.fresh_id();
        if !self
            .processes
            .send_line(id, init::child_initialize_request(req_id))
        {
            self.processes.kill(id);
            return Err("the server's stdin closed at once".into());
        }
        self.pending
            .insert(req_id, Pending::internal(id, Purpose::ChildInit));
        self.children.insert(
            id,
            ChildSlot {
                state: ChildState::Starting,
                waiting: Vec::new(),
            },
        );
        Ok(id)
    }

    /// The child for sessionless traffic, started on demand.
    pub(super) fn shared_child(&mut self) -> Result<ChildId, String> {
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

    /// Handles a child event that happened at `now`.
    pub fn on_child_event(&mut self, ev: ChildEvent, now: Instant) {
        self.now = now;
        match ev {
            ChildEvent::Line(child, line) => self.on_child_line(child, line),
            ChildEvent::Exited(child, status) => self.on_child_exit(child, &status),
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
                    self.schedule_restart(false);
                }
            }
        }
    }

    pub(super) fn on_child_exit(&mut self, child: ChildId, status: &str) {
        if !self.children.contains_key(&child) {
            return;
        }
        let tail = self.processes.stderr_tail(child);
        let Some(slot) = self.remove_child(child) else {
            return;
        };
        let was_ready = matches!(slot.state, ChildState::Ready { .. });
        let incident = incident_id();
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
            if let Some(ex) = w.exchange {
                self.answer_to(ex, true, &error_response(&w.id, INTERNAL_ERROR, &message));
            }
        }
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.child == child)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let p = self.pending.remove(&id).expect("listed");
            if p.purpose == Purpose::Client {
                p.set_outcome(crate::audit::Outcome::Error(INTERNAL_ERROR));
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
            self.schedule_restart(was_ready);
        } else if Some(child) == self.default_child {
            self.default_child = None;
        }
    }

    /// Plans the shared child's restart (crash-loop guard):
    /// - a server that never finished starting is restarted after 0.25 s, doubling with
    ///   each consecutive failure up to 30 s (a broken command does not spin);
    /// - a server that was serving is restarted at once, unless it exited more than
    ///   [`CRASH_BURST`] times within a minute; past that the delay doubles up to 30 s.
    pub(super) fn schedule_restart(&mut self, was_ready: bool) {
        let now = self.now;
        let doubling = |n: u32| {
            Duration::from_millis(250)
                .saturating_mul(1 << n.min(8))
                .min(MAX_RESTART_DELAY)
        };
        let delay = if was_ready {
            self.crashes.push_back(now);
            while self
                .crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
            {
                self.crashes.pop_front();
            }
            match self.crashes.len().checked_sub(CRASH_BURST) {
                None | Some(0) => Duration::ZERO,
                Some(excess) => doubling(excess as u32 - 1),
            }
        } else {
            self.startup_failures = self.startup_failures.saturating_add(1);
            doubling(self.startup_failures - 1)
        };
        if delay >= Duration::from_secs(2) {
            warn!("the MCP server keeps exiting; next restart in {delay:?}");
        }
        self.restart_at = Some(now + delay);
    }

    /// Answers requests past their deadline with an error and cancels them on the server.
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            let child = p.child;
            let msg = serde_json::json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": { "requestId": id, "reason": "timed out" }
            });
            self.send_to(child, serde_json::to_vec(&msg).expect("json"));
            let p = self.pending.remove(&id).expect("present");
            p.set_outcome(crate::audit::Outcome::Timeout);
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
        let id = self.fresh_id();
        let msg =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self.send_to(child, serde_json::to_vec(&msg).expect("json")) {
            self.pending.insert(id, Pending::internal(child, purpose));
        }
    }
}
