//! HTTP+SSE streams across a cut of the relay link.
//!
//! An HTTP+SSE client holds one `GET /sse` stream for its whole session and never reopens
//! it: every answer to its POSTs, and every notification, must reach it on that stream.
//! When the relay link drops, the stream's exchange is gone, but a relay announcing
//! nothing special still holds the client's HTTP stream open through its grace period (see
//! [`protocol::FEATURE_SSE_REATTACH`]). So an HTTP+SSE session is not ended with the link:
//!
//! - its stream is *carried*: it keeps its number (the exchange of the `GET /sse` that
//!   opened it) as its name, which the session's requests in flight keep too, and what
//!   the session sends while no exchange carries it waits in a bounded backlog
//!   ([`MAX_BACKLOG_MESSAGES`], [`MAX_BACKLOG_BYTES`] per stream, [`MAX_BACKLOG_TOTAL`] for
//!   all): a session that outgrows it is ended (its client then sees its stream end rather
//!   than silently miss an answer);
//! - on the next connection the relay sends a `HttpSseOpen` naming the session, for the
//!   principal that opened it: if that principal owns the session, the exchange takes the
//!   stream over (answered like a stream's first frame), the backlog goes first, and the
//!   session's messages follow; otherwise it gets 404 and the relay ends the client's
//!   stream;
//! - a stream not taken over within [`REATTACH_WINDOW`] of the cut ends its session, as
//!   the cut itself did before (a relay of an earlier release ends the client's stream at
//!   once and never asks).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::frame::{FLAG_FINAL, FLAG_STREAM};
use tracing::{debug, info, warn};

use super::Core;
use super::exchanges::Role;

/// How long an HTTP+SSE session whose stream lost its exchange waits for the relay to
/// carry it on (the relay's grace period is 10 s by default; a session is cheap to keep).
pub const REATTACH_WINDOW: Duration = Duration::from_secs(60);
/// Most messages kept for one detached stream.
pub const MAX_BACKLOG_MESSAGES: usize = 256;
/// Most bytes kept for one detached stream (its first message is always kept).
pub const MAX_BACKLOG_BYTES: usize = 4 << 20;
/// Most bytes kept for all detached streams together (a first message is always kept).
pub const MAX_BACKLOG_TOTAL: usize = 64 << 20;

/// An HTTP+SSE session's stream that outlived the relay connection it was opened on.
#[derive(Debug)]
struct Carried {
    /// The session it belongs to.
    session: String,
    /// The exchange carrying it now (a `HttpSseOpen` naming the session), if any.
    attached: Option<u64>,
    /// Since when no exchange carries it.
    detached_at: Option<Instant>,
    /// What the session sent meanwhile, oldest first.
    backlog: VecDeque<Bytes>,
    /// Bytes in `backlog`.
    bytes: usize,
}

/// Whether a message of `len` bytes may join a backlog of `count` messages and `bytes`
/// bytes while all backlogs hold `total` bytes.
fn fits(count: usize, bytes: usize, total: usize, len: usize) -> bool {
    count < MAX_BACKLOG_MESSAGES
        && (count == 0 || bytes.saturating_add(len) <= MAX_BACKLOG_BYTES)
        && (total == 0 || total.saturating_add(len) <= MAX_BACKLOG_TOTAL)
}

/// Where a message of a carried stream goes.
enum Carry {
    /// To the exchange carrying the stream now.
    To(u64, Bytes),
    /// Nowhere now: kept in the backlog, or dropped (empty, or the stream ended).
    Held,
    /// The backlog of this session's stream is full: the session is to end.
    Overflow(String),
}

/// The carried streams, by name, with the bytes of all their backlogs.
#[derive(Default)]
pub(super) struct CarriedStreams {
    by_name: HashMap<u64, Carried>,
    bytes: usize,
}

impl CarriedStreams {
    /// Whether no stream is carried.
    pub(super) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether the stream `name` is carried.
    pub(super) fn contains(&self, name: u64) -> bool {
        self.by_name.contains_key(&name)
    }

    /// The stream `name` of `session` lost its exchange at `now`: it waits to be carried
    /// on (a stream that flaps without being taken over keeps its first deadline).
    fn detach(&mut self, name: u64, session: String, now: Instant) {
        let c = self.by_name.entry(name).or_insert_with(|| Carried {
            session,
            attached: None,
            detached_at: None,
            backlog: VecDeque::new(),
            bytes: 0,
        });
        c.attached = None;
        c.detached_at.get_or_insert(now);
    }

    /// A message (or the end, `is_final`) of the stream `name`; `open` says whether an
    /// exchange is still open.
    fn carry(
        &mut self,
        name: u64,
        is_final: bool,
        body: Bytes,
        open: impl Fn(u64) -> bool,
    ) -> Carry {
        let Some(c) = self.by_name.get_mut(&name) else {
            return Carry::Held;
        };
        if let Some(to) = c.attached.filter(|a| open(*a)) {
            if is_final {
                self.forget(name);
            }
            return Carry::To(to, body);
        }
        if is_final {
            self.forget(name);
            return Carry::Held;
        }
        if body.is_empty() {
            return Carry::Held;
        }
        if !fits(c.backlog.len(), c.bytes, self.bytes, body.len()) {
            return Carry::Overflow(c.session.clone());
        }
        c.bytes += body.len();
        self.bytes += body.len();
        c.backlog.push_back(body);
        Carry::Held
    }

    /// Forgets the stream `name` (its session ended); the exchange carrying it, if any.
    pub(super) fn forget(&mut self, name: u64) -> Option<u64> {
        let c = self.by_name.remove(&name)?;
        self.bytes -= c.bytes;
        c.attached
    }

    /// `exchange` carries the stream `name` from now on: the exchange that carried it
    /// before, and the backlog to send first; `None` if the stream is not carried.
    fn take_over(&mut self, name: u64, exchange: u64) -> Option<(Option<u64>, VecDeque<Bytes>)> {
        let c = self.by_name.get_mut(&name)?;
        let old = c.attached.replace(exchange);
        c.detached_at = None;
        let backlog = std::mem::take(&mut c.backlog);
        self.bytes -= std::mem::take(&mut c.bytes);
        Some((old, backlog))
    }

    /// The sessions whose stream was not carried on within [`REATTACH_WINDOW`] by `now`.
    fn expired(&self, now: Instant) -> Vec<String> {
        self.by_name
            .values()
            .filter(|c| {
                c.detached_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= REATTACH_WINDOW)
            })
            .map(|c| c.session.clone())
            .collect()
    }

    /// Bytes held in all backlogs.
    #[cfg(test)]
    pub(super) fn total_bytes(&self) -> usize {
        self.bytes
    }
}

impl Core {
    /// The link went down: every HTTP+SSE session's stream waits to be carried on (a
    /// session without a stream ends).
    pub(super) fn detach_http_sse_streams(&mut self) {
        let streams: Vec<(String, Option<u64>)> = self
            .sessions
            .iter()
            .filter(|s| s.http_sse)
            .map(|s| (s.id.clone(), s.stream))
            .collect();
        for (sid, stream) in streams {
            match stream {
                Some(name) => self.carried.detach(name, sid, self.now),
                None => self.end_session(&sid, false),
            }
        }
    }

    /// A message (or the end) of a carried stream: to the exchange carrying it, or into
    /// its backlog.
    pub(super) fn push_carried(&mut self, name: u64, flags: u8, body: Bytes) {
        let is_final = flags & FLAG_FINAL != 0;
        let exchanges = &self.exchanges;
        match self
            .carried
            .carry(name, is_final, body, |e| exchanges.contains(e))
        {
            Carry::To(to, body) => self.emit_event(to, is_final, None, body),
            Carry::Held => {}
            Carry::Overflow(sid) => {
                warn!(
                    "an HTTP+SSE session received more than the bridge keeps while the relay \
                     link is down; the session ended"
                );
                self.end_session(&sid, false);
            }
        }
    }

    /// `HttpSseOpen` naming a session: the relay carries its stream on over this exchange
    /// (after a reconnect), for the principal that opened it.
    pub(super) fn on_http_sse_reattach(&mut self, exchange: u64, sid: String, principal: &str) {
        let name = self
            .sessions
            .touch(&sid, principal)
            .filter(|s| s.http_sse)
            .and_then(|s| s.stream);
        let Some((old, backlog)) = name.and_then(|n| self.carried.take_over(n, exchange)) else {
            self.exchanges.open(exchange, Role::Post);
            return self.session_not_found(exchange);
        };
        if let Some(old) = old.filter(|o| *o != exchange) {
            self.end_replaced_reader(old);
        }
        debug!(
            messages = backlog.len(),
            "an HTTP+SSE stream was carried on after a reconnect"
        );
        self.exchanges.open(exchange, Role::HttpSseStream(sid));
        self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
        for body in backlog {
            self.emit(exchange, 200, 0, None, body);
        }
    }

    /// Ends the sessions whose stream was not carried on within [`REATTACH_WINDOW`].
    pub(super) fn expire_carried(&mut self, now: Instant) {
        if self.carried.is_empty() {
            return;
        }
        for sid in self.carried.expired(now) {
            info!(
                "an HTTP+SSE session's stream was not carried on within {REATTACH_WINDOW:?} \
                 of the relay link's cut; the session ended"
            );
            self.end_session(&sid, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_bounds() {
        assert!(
            fits(0, 0, 0, MAX_BACKLOG_BYTES * 2),
            "a first message always fits"
        );
        assert!(fits(1, 10, 10, MAX_BACKLOG_BYTES - 10));
        assert!(!fits(1, 10, 10, MAX_BACKLOG_BYTES - 9));
        assert!(!fits(MAX_BACKLOG_MESSAGES, 0, 0, 1));
        assert!(!fits(0, 0, MAX_BACKLOG_TOTAL, 1), "all streams together");
        assert!(fits(0, 0, MAX_BACKLOG_TOTAL - 1, 1));
    }
}
