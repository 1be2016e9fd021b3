//! Legacy HTTP+SSE streams across a cut of the relay link.
//!
//! A legacy client holds one `GET /sse` stream for its whole session and never reopens it:
//! every answer to its POSTs, and every notification, must reach it on that stream. When
//! the relay link drops, the stream's exchange is gone, but a relay announcing nothing
//! special still holds the client's HTTP stream open through its grace period (see
//! [`protocol::FEATURE_SSE_REATTACH`]). So a legacy session is not ended with the link:
//!
//! - its stream is *carried*: it keeps its number (the exchange of the `GET /sse` that
//!   opened it) as its name, which the session's requests in flight keep too, and what
//!   the session sends while no exchange carries it waits in a bounded backlog
//!   ([`MAX_BACKLOG_MESSAGES`], [`MAX_BACKLOG_BYTES`] per stream, [`MAX_BACKLOG_TOTAL`] for
//!   all): a session that outgrows it is ended (its client then sees its stream end rather
//!   than silently miss an answer);
//! - on the next connection the relay sends a `LegacyOpen` naming the session, for the
//!   principal that opened it: if that principal owns the session, the exchange takes the
//!   stream over (answered like a stream's first frame), the backlog goes first, and the
//!   session's messages follow; otherwise it gets 404 and the relay ends the client's
//!   stream;
//! - a stream not taken over within [`REATTACH_WINDOW`] of the cut ends its session, as
//!   the cut itself did before (a relay of an earlier release ends the client's stream at
//!   once and never asks).

use super::*;

/// How long a legacy session whose stream lost its exchange waits for the relay to carry
/// it on (the relay's grace period is 10 s by default; a session is cheap to keep).
pub const REATTACH_WINDOW: Duration = Duration::from_secs(60);
/// Most messages kept for one detached stream.
pub const MAX_BACKLOG_MESSAGES: usize = 256;
/// Most bytes kept for one detached stream (its first message is always kept).
pub const MAX_BACKLOG_BYTES: usize = 4 << 20;
/// Most bytes kept for all detached streams together (a first message is always kept).
pub const MAX_BACKLOG_TOTAL: usize = 64 << 20;

/// A legacy session's stream that outlived the relay connection it was opened on.
#[derive(Debug)]
pub(super) struct Carried {
    /// The session it belongs to.
    pub(super) session: String,
    /// The exchange carrying it now (a `LegacyOpen` naming the session), if any.
    pub(super) attached: Option<u64>,
    /// Since when no exchange carries it.
    detached_at: Option<Instant>,
    /// What the session sent meanwhile, oldest first.
    backlog: VecDeque<Bytes>,
    /// Bytes in `backlog`.
    bytes: usize,
}

/// Whether a message of `len` bytes may join a backlog of `count` messages and `bytes`
/// bytes while all backlogs hold `total` bytes.
pub(super) fn fits(count: usize, bytes: usize, total: usize, len: usize) -> bool {
    count < MAX_BACKLOG_MESSAGES
        && (count == 0 || bytes.saturating_add(len) <= MAX_BACKLOG_BYTES)
        && (total == 0 || total.saturating_add(len) <= MAX_BACKLOG_TOTAL)
}

impl Core {
    /// The link went down: every legacy session's stream waits to be carried on.
    pub(super) fn detach_legacy_streams(&mut self) {
        let now = self.now;
        let legacy: Vec<(String, Option<u64>)> = self
            .sessions
            .iter()
            .filter(|s| s.legacy)
            .map(|s| (s.id.clone(), s.stream))
            .collect();
        for (sid, stream) in legacy {
            let Some(name) = stream else {
                self.end_session(&sid, false);
                continue;
            };
            let c = self.carried.entry(name).or_insert_with(|| Carried {
                session: sid,
                attached: None,
                detached_at: None,
                backlog: VecDeque::new(),
                bytes: 0,
            });
            c.attached = None;
            // A stream that flaps without being taken over keeps its first deadline.
            c.detached_at.get_or_insert(now);
        }
    }

    /// A message (or the end) of a carried stream: to the exchange carrying it, or into
    /// its backlog.
    pub(super) fn push_carried(&mut self, name: u64, flags: u8, body: Bytes) {
        let is_final = flags & FLAG_FINAL != 0;
        let Some(c) = self.carried.get_mut(&name) else {
            return;
        };
        if let Some(to) = c.attached.filter(|a| self.exchanges.contains(*a)) {
            if is_final {
                self.exchanges.close(to);
                self.drop_carried(name);
            }
            self.outbox.push(Frame::Response(Response {
                exchange: to,
                status: 200,
                session: None,
                flags: if is_final { FLAG_FINAL } else { 0 },
                event_id: None,
                body,
            }));
            return;
        }
        if is_final {
            self.drop_carried(name);
            return;
        }
        if body.is_empty() {
            return;
        }
        if !fits(c.backlog.len(), c.bytes, self.carried_bytes, body.len()) {
            let sid = c.session.clone();
            warn!(
                "a legacy SSE session received more than the bridge keeps while the relay link \
                 is down; the session ended"
            );
            self.end_session(&sid, false);
            return;
        }
        c.bytes += body.len();
        self.carried_bytes += body.len();
        c.backlog.push_back(body);
    }

    /// Forgets a carried stream (its session ended); returns it.
    pub(super) fn drop_carried(&mut self, name: u64) -> Option<Carried> {
        let c = self.carried.remove(&name)?;
        self.carried_bytes -= c.bytes;
        Some(c)
    }

    /// `LegacyOpen` naming a session: the relay carries its stream on over this exchange
    /// (after a reconnect), for the principal that opened it.
    pub(super) fn on_legacy_reattach(&mut self, exchange: u64, sid: String, principal: &str) {
        let name = self
            .sessions
            .touch(&sid, principal)
            .filter(|s| s.legacy)
            .and_then(|s| s.stream)
            .filter(|n| self.carried.contains_key(n));
        let Some(name) = name else {
            self.exchanges.open(exchange, Role::Post);
            return self.session_not_found(exchange);
        };
        let c = self.carried.get_mut(&name).expect("checked");
        let old = c.attached.replace(exchange);
        c.detached_at = None;
        let backlog = std::mem::take(&mut c.backlog);
        self.carried_bytes -= std::mem::take(&mut c.bytes);
        if let Some(old) = old.filter(|o| *o != exchange) {
            self.end_replaced_reader(old);
        }
        debug!(
            messages = backlog.len(),
            "a legacy SSE stream was carried on after a reconnect"
        );
        self.exchanges.open(exchange, Role::HttpSseStream(sid));
        self.push(exchange, 200, None, FLAG_STREAM, Vec::new());
        for body in backlog {
            self.outbox.push(Frame::Response(Response {
                exchange,
                status: 200,
                session: None,
                flags: 0,
                event_id: None,
                body,
            }));
        }
    }

    /// Ends the sessions whose stream was not carried on within [`REATTACH_WINDOW`].
    pub(super) fn expire_carried(&mut self, now: Instant) {
        if self.carried.is_empty() {
            return;
        }
        let expired: Vec<String> = self
            .carried
            .values()
            .filter(|c| {
                c.detached_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= REATTACH_WINDOW)
            })
            .map(|c| c.session.clone())
            .collect();
        for sid in expired {
            info!(
                "a legacy SSE session's stream was not carried on within {REATTACH_WINDOW:?} \
                 of the relay link's cut; the session ended"
            );
            self.end_session(&sid, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        super::super::idle_core()
    }

    fn request(exchange: u64, kind: RequestKind, session: Option<&str>, who: &str) -> Request {
        Request {
            exchange,
            kind,
            session: session.map(str::to_owned),
            protocol_version: None,
            last_event_id: None,
            principal: who.into(),
            body: Bytes::new(),
        }
    }

    /// A legacy session as `on_legacy_open` makes it (without starting a server).
    fn legacy_session(core: &mut Core, exchange: u64, who: &str) -> String {
        let sid = core.sessions.create(
            who,
            1,
            "2024-11-05".into(),
            ClientCaps::default(),
            true,
            false,
        );
        core.sessions.get_mut(&sid).expect("created").stream = Some(exchange);
        core.exchanges
            .open(exchange, Role::HttpSseStream(sid.clone()));
        sid
    }

    fn responses(out: Vec<Frame>) -> Vec<Response> {
        out.into_iter()
            .filter_map(|f| match f {
                Frame::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stream_is_carried_on_only_for_its_own_principal() {
        let mut core = core();
        let sid = legacy_session(&mut core, 7, "alice");
        core.on_link_down(Instant::now());
        assert!(
            core.sessions.get(&sid).is_some(),
            "the session survives the cut"
        );
        // Meanwhile the session's messages wait.
        core.message(7, b"{\"n\":1}".to_vec());
        core.message(7, b"{\"n\":2}".to_vec());
        assert!(core.take_outbox().is_empty());

        // Another principal naming the session gets 404; the stream still waits.
        core.on_request(
            request(100, RequestKind::LegacyOpen, Some(&sid), "mallory"),
            Instant::now(),
        );
        let out = responses(core.take_outbox());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].exchange, out[0].status), (100, 404));
        assert!(out[0].is_final());
        // An unknown session too.
        core.on_request(
            request(101, RequestKind::LegacyOpen, Some("nope"), "alice"),
            Instant::now(),
        );
        assert_eq!(responses(core.take_outbox())[0].status, 404);

        // Its owner takes it over: a stream head, then the backlog in order.
        core.on_request(
            request(102, RequestKind::LegacyOpen, Some(&sid), "alice"),
            Instant::now(),
        );
        let out = responses(core.take_outbox());
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out.iter().all(|r| r.exchange == 102 && !r.is_final()));
        assert!(out[0].wants_stream() && out[0].body.is_empty());
        assert_eq!(&out[1].body[..], b"{\"n\":1}");
        assert_eq!(&out[2].body[..], b"{\"n\":2}");
        assert_eq!(core.sessions.len(), 1, "no new session was made");
        assert_eq!(core.carried_bytes, 0);

        // What the session sends next goes to the new exchange.
        core.message(7, b"{\"n\":3}".to_vec());
        let out = responses(core.take_outbox());
        assert_eq!(
            (out[0].exchange, &out[0].body[..]),
            (102, &b"{\"n\":3}"[..])
        );

        // A request numbered like the carried stream (a restarted relay) gets none of it.
        core.on_request(
            request(7, RequestKind::Get, None, "mallory"),
            Instant::now(),
        );
        let out = responses(core.take_outbox());
        assert_eq!((out.len(), out[0].exchange, out[0].status), (1, 7, 503));
        assert!(out[0].is_final());
        assert!(core.carried.contains_key(&7));

        // The client closing its stream ends the session, as before.
        core.on_cancel(102, Instant::now());
        assert!(core.sessions.get(&sid).is_none());
        assert!(core.carried.is_empty() && core.exchanges.len() == 0);
    }

    #[test]
    fn a_second_cut_and_the_end_of_the_session() {
        let mut core = core();
        let sid = legacy_session(&mut core, 7, "alice");
        core.on_link_down(Instant::now());
        core.on_request(
            request(50, RequestKind::LegacyOpen, Some(&sid), "alice"),
            Instant::now(),
        );
        core.take_outbox();
        core.on_link_down(Instant::now());
        core.message(7, b"{\"n\":1}".to_vec());
        core.on_request(
            request(90, RequestKind::LegacyOpen, Some(&sid), "alice"),
            Instant::now(),
        );
        let out = responses(core.take_outbox());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.exchange == 90));
        // Ending the session closes the stream that carries it.
        core.end_session(&sid, true);
        let out = responses(core.take_outbox());
        assert_eq!(out.len(), 1);
        assert!(out[0].exchange == 90 && out[0].is_final());
        assert!(core.carried.is_empty() && core.exchanges.len() == 0);
    }

    #[test]
    fn streams_not_carried_on_expire() {
        let mut core = core();
        let sid = legacy_session(&mut core, 7, "alice");
        core.on_link_down(Instant::now());
        core.message(7, b"{}".to_vec());
        core.expire_carried(Instant::now() + REATTACH_WINDOW / 2);
        assert!(core.sessions.get(&sid).is_some());
        core.expire_carried(Instant::now() + REATTACH_WINDOW);
        assert!(core.sessions.get(&sid).is_none());
        assert!(core.carried.is_empty());
        assert_eq!(core.carried_bytes, 0);
        // Too late: the relay ends the client's stream.
        core.on_request(
            request(9, RequestKind::LegacyOpen, Some(&sid), "alice"),
            Instant::now(),
        );
        assert_eq!(responses(core.take_outbox())[0].status, 404);
    }

    #[test]
    fn an_overflowing_backlog_ends_the_session() {
        let mut core = core();
        let sid = legacy_session(&mut core, 7, "alice");
        core.on_link_down(Instant::now());
        for _ in 0..MAX_BACKLOG_MESSAGES {
            core.message(7, b"{}".to_vec());
        }
        assert!(core.sessions.get(&sid).is_some());
        core.message(7, b"{}".to_vec());
        assert!(core.sessions.get(&sid).is_none(), "ended rather than lossy");
        assert_eq!(core.carried_bytes, 0);
    }

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
