//! Where what the core sends goes: the outbox frames of an exchange, a resumable stream
//! (numbered and kept for replay, see [`super::resume`]), or a carried HTTP+SSE stream (see
//! [`super::http_sse`]), and the answers to requests and client messages.

use std::collections::HashSet;

use bytes::Bytes;
use protocol::frame::FLAG_FINAL;
use protocol::{Frame, Response};

use super::Core;
use super::exchanges::Role;
use super::ids::Pending;
use super::message::{Ctx, Transport};

impl Core {
    /// One frame for an exchange (or the stream that bears its number).
    pub(super) fn push(
        &mut self,
        exchange: u64,
        status: u16,
        session: Option<String>,
        flags: u8,
        body: Vec<u8>,
    ) {
        if !self.resumable.is_empty() && self.resumable.contains(exchange) {
            return self.push_resumable(exchange, flags, Bytes::from(body));
        }
        if !self.carried.is_empty() && self.carried.contains(exchange) {
            return self.push_carried(exchange, flags, Bytes::from(body));
        }
        if flags & FLAG_FINAL != 0 {
            self.exchanges.close(exchange);
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

    /// One frame for `exchange` as it is, past the streams that bear exchange numbers.
    pub(super) fn emit(
        &mut self,
        exchange: u64,
        status: u16,
        flags: u8,
        event_id: Option<String>,
        body: Bytes,
    ) {
        self.outbox.push(Frame::Response(Response {
            exchange,
            status,
            session: None,
            flags,
            event_id,
            body,
        }));
    }

    /// A message of a stream sent on `exchange`; the last one ends the exchange.
    pub(super) fn emit_event(
        &mut self,
        exchange: u64,
        last: bool,
        event_id: Option<String>,
        body: Bytes,
    ) {
        if last {
            self.exchanges.close(exchange);
        }
        let flags = if last { FLAG_FINAL } else { 0 };
        self.emit(exchange, 200, flags, event_id, body);
    }

    /// A message of a resumable stream: numbered, kept for replay, and sent to wherever
    /// the stream is attached now.
    fn push_resumable(&mut self, stream: u64, flags: u8, body: Bytes) {
        let is_final = flags & FLAG_FINAL != 0;
        let Some(r) = self.resumable.get(stream) else {
            return;
        };
        let attached = r.attached().filter(|a| self.exchanges.contains(*a));
        let seq = match self.sessions.get_mut(r.session()) {
            Some(s) => s
                .logs
                .get_or_create(stream)
                .append(body.clone(), is_final, self.now),
            None => 0,
        };
        if is_final {
            self.resumable.remove(stream);
            self.exchanges.close(stream);
        }
        let Some(to) = attached else { return };
        let event_id = (seq > 0).then(|| protocol::event_id(stream, seq));
        self.emit_event(to, is_final, event_id, body);
    }

    /// Makes a session POST's stream resumable (attached to `attached`).
    pub(super) fn make_resumable(&mut self, stream: u64, session: String, attached: Option<u64>) {
        if let Some(s) = self.sessions.get_mut(&session)
            && !self.resumable.contains(stream)
        {
            s.logs.get_or_create(stream);
        }
        self.resumable.make(stream, session, attached);
    }

    /// Forgets resumable streams whose request ended without an answer (cancelled by
    /// the client); a resuming client then finds the stream finished or unknown.
    pub(super) fn prune_resumable(&mut self) {
        if self.resumable.is_empty() {
            return;
        }
        let running: HashSet<u64> = self.ids.iter().filter_map(|(_, p)| p.exchange).collect();
        self.resumable.retain_running(&running);
    }

    /// Whether messages for this exchange still go somewhere (open, resumable, or an
    /// HTTP+SSE stream carried across a reconnect).
    pub(super) fn is_live(&self, exchange: u64) -> bool {
        self.exchanges.contains(exchange)
            || self.resumable.contains(exchange)
            || self.carried.contains(exchange)
    }

    /// Ends an exchange with one answer.
    pub(super) fn reply(
        &mut self,
        exchange: u64,
        status: u16,
        session: Option<String>,
        body: Vec<u8>,
    ) {
        self.push(exchange, status, session, FLAG_FINAL, body);
    }

    /// Adds one message to an exchange's stream (if it is still open).
    pub(super) fn message(&mut self, exchange: u64, body: Vec<u8>) {
        match self.exchanges.role(exchange) {
            Some(Role::SessionPost(sid)) if !self.resumable.contains(exchange) => {
                // The answer becomes a stream: from now on it can be resumed.
                let sid = sid.clone();
                self.make_resumable(exchange, sid, Some(exchange));
                self.push(exchange, 200, None, 0, body);
            }
            Some(_) => self.push(exchange, 200, None, 0, body),
            None if self.resumable.contains(exchange) || self.carried.contains(exchange) => {
                self.push(exchange, 200, None, 0, body)
            }
            None => {}
        }
    }

    /// Answers on an exchange: finally (Streamable POST) or as a stream message (HTTP+SSE).
    pub(super) fn answer_to(&mut self, exchange: u64, is_final: bool, body: &[u8]) {
        if !self.exchanges.contains(exchange) && !self.carried.contains(exchange) {
            return;
        }
        if is_final {
            self.reply(exchange, 200, None, body.to_vec());
        } else {
            self.message(exchange, body.to_vec());
        }
    }

    /// Sends a child's answer to where the request came from.
    pub(super) fn deliver_answer(&mut self, p: &Pending, body: Vec<u8>) {
        let Some(ex) = p.exchange else { return };
        if !self.is_live(ex) {
            return;
        }
        if p.reply_final {
            self.reply(ex, 200, None, body);
        } else {
            self.message(ex, body);
        }
    }

    /// Answers a client message in its context.
    pub(super) fn answer(&mut self, ctx: &Ctx, body: Vec<u8>) {
        match &ctx.transport {
            Transport::HttpSse { session } => {
                if let Some(stream) = self.sessions.get(session).and_then(|s| s.stream) {
                    self.message(stream, body);
                }
            }
            Transport::Streamable { .. } => self.reply(ctx.exchange, 200, None, body),
        }
    }

    /// Ends the exchange of a stream's reader that a newer one replaced (one reader per
    /// stream), if it is still open.
    pub(super) fn end_replaced_reader(&mut self, old: u64) {
        if self.exchanges.close(old).is_some() {
            self.emit(old, 200, FLAG_FINAL, None, Bytes::new());
        }
    }
}
