//! Exchanges from the relay: which session and stream each belongs to, session creation
//! and eviction, the HTTP+SSE transport, and the link going down.

use std::time::Instant;

use bytes::Bytes;
use protocol::frame::{FLAG_FINAL, FLAG_STREAM};
use protocol::jsonrpc::{
    INTERNAL_ERROR, INVALID_REQUEST, SESSION_NOT_FOUND, UNAVAILABLE, error_response,
};
use protocol::{Request, RequestKind};
use tracing::{info, warn};

use super::exchanges::Role;
use super::ids::Purpose;
use super::message::{Ctx, Transport};
use super::sessions::ClientCaps;
use super::subscriptions::Release;
use super::{Core, MAX_OPEN_EXCHANGES, MAX_SESSIONLESS_STREAMS, ex_body};
use crate::child::ChildId;

impl Core {
    /// The relay link went down: every exchange is gone (sessions stay; HTTP+SSE streams
    /// wait to be carried on, see `http_sse`), at `now`.
    pub fn on_link_down(&mut self, now: Instant) {
        self.now = now;
        self.held_link_down();
        self.stateless_link_down();
        // Session POSTs still running stay resumable: their client may come back (on the
        // next connection) with `GET` + `Last-Event-ID`.
        let running: Vec<(u64, String)> = self
            .ids
            .iter()
            .filter_map(|(_, p)| {
                let stream = p.exchange?;
                match self.exchanges.role(stream) {
                    Some(Role::SessionPost(sid)) => Some((stream, sid.clone())),
                    _ => None,
                }
            })
            .collect();
        for (stream, sid) in running {
            self.make_resumable(stream, sid, None);
        }
        self.resumable.detach_all();
        self.detach_http_sse_streams();
        self.exchanges.clear();
        self.outbox.clear();
        for s in self.sessions.iter_mut() {
            if !s.http_sse {
                s.stream = None;
            }
        }
        // Exchange numbers belong to the connection that is gone: no answer may ever be
        // matched to a number a later connection reuses (resumable streams and carried
        // HTTP+SSE streams keep theirs as their name; what they carry only goes to the
        // exchange that took them over).
        let (resumable, carried) = (&self.resumable, &self.carried);
        let named = |e: &u64| resumable.contains(*e) || carried.contains(*e);
        for p in self.ids.values_mut() {
            if !p.exchange.as_ref().is_some_and(named) {
                p.exchange = None;
            }
        }
        for w in self.children.waiting_mut() {
            if !w.exchange.as_ref().is_some_and(named) {
                w.exchange = None;
            }
        }
    }

    /// The relay abandoned an exchange (its client went away) at `now`.
    pub fn on_cancel(&mut self, exchange: u64, now: Instant) {
        self.now = now;
        match self.exchanges.close(exchange) {
            Some(Role::Stream(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid)
                    && s.stream == Some(exchange)
                {
                    s.stream = None;
                }
            }
            Some(Role::HttpSseStream(sid)) => {
                // Closing an HTTP+SSE stream ends its session.
                self.end_session(&sid, false);
            }
            // In 2026-07-28 closing the response stream cancels the request.
            Some(Role::Stateless(cid)) => self.cancel_stateless(cid, exchange),
            Some(Role::Listen) => self.end_listen(exchange),
            Some(Role::SessionPost(sid)) => {
                // The client dropped the stream: the request runs on (handshake revisions) and what
                // it sends is kept for the client's `GET` + `Last-Event-ID`.
                if self.ids.iter().any(|(_, p)| p.exchange == Some(exchange)) {
                    self.make_resumable(exchange, sid, None);
                } else {
                    self.resumable.detach(exchange);
                }
            }
            Some(Role::Resume(stream)) => self.resumable.detach_reader(stream, exchange),
            // A disconnect is not a cancellation in the handshake revisions: the request runs
            // on; its answer is dropped.
            Some(Role::Post | Role::Probe) | None => {}
        }
    }

    /// Streams open without a session (probes and `subscriptions/listen`).
    pub(super) fn sessionless_streams(&self) -> usize {
        self.exchanges.probes() + self.listens.len()
    }

    /// Handles one exchange from the relay, arrived at `now`.
    pub fn on_request(&mut self, r: Request, now: Instant) {
        self.now = now;
        let exchange = r.exchange;
        if self.exchanges.len() >= MAX_OPEN_EXCHANGES && !self.exchanges.contains(exchange) {
            // Only a misbehaving relay gets here (a relay caps exchanges per tunnel lower).
            let msg = "too many requests are open on this bridge; retry in a moment";
            return self.unavailable(exchange, msg);
        }
        if !self.carried.is_empty() && self.carried.contains(exchange) {
            // A number naming a carried HTTP+SSE stream (a restarted relay numbering from the
            // same start): refused, so nothing of that stream can reach this request.
            let body = Bytes::from(ex_body(UNAVAILABLE, "retry in a moment"));
            return self.emit(exchange, 503, FLAG_FINAL, None, body);
        }
        if self.draining {
            return self.unavailable(exchange, "the bridge is shutting down; retry in a moment");
        }
        match r.kind {
            RequestKind::Post => {
                self.exchanges.open(exchange, Role::Post);
                let log = self.log_begin(exchange, &r.body);
                let ctx = Ctx {
                    principal: r.principal,
                    exchange,
                    transport: Transport::Streamable { session: r.session },
                    header_version: r.protocol_version,
                };
                self.on_message(ctx, r.body);
                self.log_sent(log);
            }
            RequestKind::HttpSsePost => {
                self.exchanges.open(exchange, Role::Post);
                let sid = r.session.unwrap_or_default();
                let ok = self
                    .sessions
                    .touch(&sid, &r.principal)
                    .is_some_and(|s| s.http_sse);
                if !ok {
                    self.session_not_found(exchange);
                    return;
                }
                let ctx = Ctx {
                    principal: r.principal,
                    exchange,
                    transport: Transport::HttpSse { session: sid },
                    header_version: None,
                };
                let log = self.log_begin(exchange, &r.body);
                self.on_message(ctx, r.body);
                self.log_sent(log);
            }
            RequestKind::Get => match r.last_event_id {
                Some(last) if r.session.is_some() => {
                    self.on_resume(exchange, r.session.unwrap_or_default(), &r.principal, &last)
                }
                _ => self.on_get(exchange, r.session, &r.principal),
            },
            RequestKind::Delete => self.on_delete(exchange, r.session, &r.principal),
            RequestKind::HttpSseOpen => match r.session {
                Some(sid) => self.on_http_sse_reattach(exchange, sid, &r.principal),
                None => self.on_http_sse_open(exchange, &r.principal),
            },
        }
    }

    /// Refuses an exchange with 503 (the client may retry).
    fn unavailable(&mut self, exchange: u64, message: &str) {
        self.exchanges.open(exchange, Role::Post);
        self.reply(exchange, 503, None, ex_body(UNAVAILABLE, message));
    }

    /// Answers 404 "Session not found" (clients then re-initialize).
    pub(super) fn session_not_found(&mut self, exchange: u64) {
        self.reply(
            exchange,
            404,
            None,
            ex_body(SESSION_NOT_FOUND, "Session not found"),
        );
    }

    pub(super) fn on_get(&mut self, exchange: u64, session: Option<String>, principal: &str) {
        let Some(sid) = session else {
            // No session: the connector probe of hosted clients. An open stream with
            // keep-alives is the answer they need; it holds nothing but its number, and
            // their count is capped all the same.
            if self.sessionless_streams() >= MAX_SESSIONLESS_STREAMS {
                let msg = "too many streams without a session are open on this bridge; retry later";
                return self.unavailable(exchange, msg);
            }
            self.exchanges.open(exchange, Role::Probe);
            self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
            return;
        };
        let old = match self.sessions.touch(&sid, principal) {
            Some(s) if !s.http_sse => s.stream.replace(exchange),
            _ => {
                self.exchanges.open(exchange, Role::Post);
                self.session_not_found(exchange);
                return;
            }
        };
        if let Some(old) = old {
            // One standalone stream per session: the newest replaces the previous.
            if self.exchanges.contains(old) {
                self.push(old, 200, None, FLAG_FINAL, Vec::new());
            }
        }
        self.exchanges.open(exchange, Role::Stream(sid));
        self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
    }

    /// `GET` with `Last-Event-ID`: replays the rest of that stream, then continues it live.
    pub(super) fn on_resume(&mut self, exchange: u64, sid: String, principal: &str, last: &str) {
        self.exchanges.open(exchange, Role::Post);
        if self.sessions.touch(&sid, principal).is_none() {
            return self.session_not_found(exchange);
        }
        let cannot = |core: &mut Self| {
            core.reply(
                exchange,
                400,
                None,
                ex_body(
                    INVALID_REQUEST,
                    "Bad Request: the stream of this Last-Event-ID cannot be resumed (unknown, \
                     expired, or of another session)",
                ),
            );
        };
        let Some((stream, seq)) = protocol::parse_event_id(last) else {
            return cannot(self);
        };
        let live = self
            .resumable
            .get(stream)
            .is_some_and(|r| r.session() == sid);
        let Some(log) = self.sessions.get(&sid).and_then(|s| s.logs.get(stream)) else {
            return cannot(self);
        };
        if !live && !log.finished {
            return cannot(self);
        }
        let (events, gap) = log.after(seq);
        let finished = log.finished;
        if gap {
            warn!(
                stream,
                "resuming a stream whose oldest messages are no longer kept"
            );
        }
        self.exchanges.open(exchange, Role::Resume(stream));
        self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
        let n = events.len();
        for (i, (seq, body)) in events.into_iter().enumerate() {
            let last = finished && i + 1 == n;
            self.emit_event(exchange, last, Some(protocol::event_id(stream, seq)), body);
        }
        if finished {
            if n == 0 {
                self.push(exchange, 200, None, FLAG_FINAL, Vec::new());
            }
            return;
        }
        if let Some(old) = self.resumable.attach(stream, exchange)
            && old != exchange
        {
            // One reader per stream: the newest resumption replaces an older one (or the
            // original POST, which its client has given up on).
            self.end_replaced_reader(old);
        }
    }

    pub(super) fn on_delete(&mut self, exchange: u64, session: Option<String>, principal: &str) {
        self.exchanges.open(exchange, Role::Post);
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
            self.session_not_found(exchange);
            return;
        }
        self.end_session(&sid, true);
        self.reply(exchange, 200, None, Vec::new());
    }

    pub(super) fn on_http_sse_open(&mut self, exchange: u64, principal: &str) {
        let child = match self.child_for_new_session() {
            Ok(c) => c,
            Err(e) => return self.unavailable(exchange, &e),
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
            .open(exchange, Role::HttpSseStream(sid.clone()));
        self.push(exchange, 200, Some(sid), FLAG_STREAM, Vec::new());
    }

    pub(super) fn make_room_for_session(&mut self, principal: &str) {
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
    pub(super) fn child_for_new_session(&mut self) -> Result<ChildId, String> {
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

    pub(super) fn end_session(&mut self, sid: &str, close_stream: bool) {
        let Some(s) = self.sessions.remove(sid) else {
            return;
        };
        self.resumable.forget_session(sid);
        for uri in &s.subscriptions {
            if self.subscriptions.release(s.child, uri) == Release::Last {
                self.internal_request(
                    s.child,
                    "resources/unsubscribe",
                    serde_json::json!({"uri": uri}),
                );
            }
        }
        if let Some(stream) = s.stream {
            if close_stream && self.is_live(stream) {
                self.push(stream, 200, None, FLAG_FINAL, Vec::new());
            } else {
                self.exchanges.close(stream);
            }
            if let Some(to) = self.carried.forget(stream) {
                self.exchanges.close(to);
            }
        }
        if s.owns_child && self.children.forget(s.child).is_some() {
            for (_, p) in self.ids.take_all(|p| p.child == s.child) {
                if p.purpose == Purpose::Client {
                    p.set_outcome(crate::audit::Outcome::Error(INTERNAL_ERROR));
                    let body = error_response(&p.original_id, INTERNAL_ERROR, "the session ended");
                    self.deliver_answer(&p, body);
                }
            }
            self.ids.forget_server_requests_of(s.child);
        }
    }
}
