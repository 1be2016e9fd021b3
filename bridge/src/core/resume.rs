//! Replay buffers of resumable SSE streams (MCP 2025-03-26…2025-11-25 resumability).
//!
//! A session's POST stream becomes resumable once it carries a message before its answer,
//! or once its client drops it (or the relay link goes down) while the request is still
//! running. From then on every message of that stream is numbered and kept here, bounded;
//! a client that reconnects with `GET` + `Last-Event-ID` gets the messages after that id
//! from this stream only, then the rest live.
//!
//! Event ids are `<stream>.<seq>` ([`protocol::event_id`]): the stream is the relay's
//! exchange number of the POST that opened it (unique per relay connection, and
//! connections are numbered from a random start), `seq` counts from 1 (the relay's
//! priming event is `.0`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Most streams kept per session (the oldest is dropped first).
pub const MAX_STREAMS: usize = 16;
/// Most messages kept per stream (the oldest is dropped first).
pub const MAX_EVENTS: usize = 256;
/// Most bytes kept per stream (the oldest messages are dropped first; the last one is
/// always kept).
pub const MAX_BYTES: usize = 4 << 20;
/// How long a finished stream stays resumable.
pub const KEEP_FINISHED: Duration = Duration::from_secs(120);

/// One stream's numbered messages.
#[derive(Debug, Default)]
pub struct StreamLog {
    events: VecDeque<(u32, Bytes)>,
    bytes: usize,
    next_seq: u32,
    /// Whether the stream's final message (the answer) is in the log.
    pub finished: bool,
    finished_at: Option<Instant>,
}

impl StreamLog {
    /// Appends a message sent at `now`; returns its sequence number.
    pub fn append(&mut self, body: Bytes, is_final: bool, now: Instant) -> u32 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.bytes += body.len();
        self.events.push_back((seq, body));
        if is_final && !self.finished {
            self.finished = true;
            self.finished_at = Some(now);
        }
        while self.events.len() > MAX_EVENTS || (self.bytes > MAX_BYTES && self.events.len() > 1) {
            if let Some((_, old)) = self.events.pop_front() {
                self.bytes -= old.len();
            }
        }
        seq
    }

    /// The messages after `seq`, and whether some of them are no longer kept.
    pub fn after(&self, seq: u32) -> (Vec<(u32, Bytes)>, bool) {
        let first_kept = self.events.front().map_or(self.next_seq + 1, |(s, _)| *s);
        let gap = seq + 1 < first_kept && seq < self.next_seq;
        let out = self
            .events
            .iter()
            .filter(|(s, _)| *s > seq)
            .cloned()
            .collect();
        (out, gap)
    }
}

/// A session's resumable streams, by stream number.
#[derive(Debug, Default)]
pub struct StreamLogs {
    logs: VecDeque<(u64, StreamLog)>,
}

impl StreamLogs {
    /// The log of a stream, created (dropping the oldest beyond [`MAX_STREAMS`]) if new.
    pub fn get_or_create(&mut self, stream: u64) -> &mut StreamLog {
        if let Some(i) = self.logs.iter().position(|(k, _)| *k == stream) {
            return &mut self.logs[i].1;
        }
        if self.logs.len() >= MAX_STREAMS {
            self.logs.pop_front();
        }
        self.logs.push_back((stream, StreamLog::default()));
        let last = self.logs.len() - 1;
        &mut self.logs[last].1
    }

    /// The log of a stream, if kept.
    pub fn get(&self, stream: u64) -> Option<&StreamLog> {
        self.logs.iter().find(|(k, _)| *k == stream).map(|(_, l)| l)
    }

    /// Drops streams finished longer than [`KEEP_FINISHED`] ago.
    pub fn prune(&mut self, now: Instant) {
        self.logs.retain(|(_, l)| {
            l.finished_at
                .is_none_or(|t| now.saturating_duration_since(t) < KEEP_FINISHED)
        });
    }

    /// Whether no stream is kept.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }
}

/// A resumable stream: the session it belongs to, and the exchange its messages go to now.
pub(super) struct Resumable {
    session: String,
    /// The exchange its messages currently go to (the POST, or a resuming GET).
    attached: Option<u64>,
}

impl Resumable {
    /// The session whose log keeps its messages.
    pub(super) fn session(&self) -> &str {
        &self.session
    }

    /// The exchange its messages go to now, if any.
    pub(super) fn attached(&self) -> Option<u64> {
        self.attached
    }
}

/// The resumable streams of all sessions, by the exchange number of the POST that opened
/// each (their messages are kept in the session's [`StreamLogs`]).
#[derive(Default)]
pub(super) struct ResumableStreams {
    by_stream: HashMap<u64, Resumable>,
}

impl ResumableStreams {
    /// Whether there is none.
    pub(super) fn is_empty(&self) -> bool {
        self.by_stream.is_empty()
    }

    /// Whether `stream` is resumable.
    pub(super) fn contains(&self, stream: u64) -> bool {
        self.by_stream.contains_key(&stream)
    }

    /// A resumable stream.
    pub(super) fn get(&self, stream: u64) -> Option<&Resumable> {
        self.by_stream.get(&stream)
    }

    /// Makes `stream` (of `session`) resumable, its messages going to `attached`; whether it
    /// is new (its log is then to be made).
    pub(super) fn make(&mut self, stream: u64, session: String, attached: Option<u64>) -> bool {
        match self.by_stream.get_mut(&stream) {
            Some(r) => {
                r.attached = attached;
                false
            }
            None => {
                self.by_stream
                    .insert(stream, Resumable { session, attached });
                true
            }
        }
    }

    /// Sends the messages of `stream` to `exchange` from now on; the exchange they went to
    /// before, if any.
    pub(super) fn attach(&mut self, stream: u64, exchange: u64) -> Option<u64> {
        self.by_stream
            .get_mut(&stream)
            .and_then(|r| r.attached.replace(exchange))
    }

    /// No exchange carries `stream` any more: its messages are only kept.
    pub(super) fn detach(&mut self, stream: u64) {
        if let Some(r) = self.by_stream.get_mut(&stream) {
            r.attached = None;
        }
    }

    /// `exchange` no longer carries `stream` (its client left), if it did.
    pub(super) fn detach_reader(&mut self, stream: u64, exchange: u64) {
        if let Some(r) = self.by_stream.get_mut(&stream)
            && r.attached == Some(exchange)
        {
            r.attached = None;
        }
    }

    /// No exchange carries any stream (the link went down).
    pub(super) fn detach_all(&mut self) {
        for r in self.by_stream.values_mut() {
            r.attached = None;
        }
    }

    /// Forgets a stream (it finished).
    pub(super) fn remove(&mut self, stream: u64) {
        self.by_stream.remove(&stream);
    }

    /// Keeps only the streams `running` holds (those whose request still runs).
    pub(super) fn retain_running(&mut self, running: &HashSet<u64>) {
        self.by_stream.retain(|stream, _| running.contains(stream));
    }

    /// Forgets the streams of a session (it ended).
    pub(super) fn forget_session(&mut self, session: &str) {
        self.by_stream.retain(|_, r| r.session != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_only_what_follows() {
        let mut log = StreamLog::default();
        for i in 0..5 {
            log.append(Bytes::from(format!("m{i}")), i == 4, Instant::now());
        }
        let (after, gap) = log.after(2);
        assert!(!gap);
        assert_eq!(after.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(log.finished);
        assert!(log.after(5).0.is_empty());
    }

    #[test]
    fn bounded_and_reports_gaps() {
        let mut log = StreamLog::default();
        for _ in 0..(MAX_EVENTS + 10) {
            log.append(Bytes::from_static(b"x"), false, Instant::now());
        }
        let (after, gap) = log.after(0);
        assert!(gap);
        assert_eq!(after.len(), MAX_EVENTS);
        assert_eq!(after[0].0, 11);
        let mut big = StreamLog::default();
        big.append(Bytes::from(vec![0u8; MAX_BYTES]), false, Instant::now());
        big.append(Bytes::from(vec![0u8; 10]), true, Instant::now());
        assert_eq!(big.after(0).0.len(), 1);
    }

    #[test]
    fn finished_streams_expire() {
        let mut logs = StreamLogs::default();
        logs.get_or_create(1)
            .append(Bytes::from_static(b"a"), true, Instant::now());
        logs.get_or_create(2)
            .append(Bytes::from_static(b"b"), false, Instant::now());
        logs.prune(Instant::now());
        assert!(logs.get(1).is_some());
        logs.prune(Instant::now() + KEEP_FINISHED);
        assert!(logs.get(1).is_none(), "finished long ago");
        assert!(logs.get(2).is_some(), "still running");
        assert!(!logs.is_empty());
    }

    #[test]
    fn streams_per_session_are_bounded() {
        let mut logs = StreamLogs::default();
        for k in 0..(MAX_STREAMS as u64 + 3) {
            logs.get_or_create(k)
                .append(Bytes::from_static(b"x"), false, Instant::now());
        }
        assert!(logs.get(0).is_none());
        assert!(logs.get(MAX_STREAMS as u64 + 2).is_some());
        assert_eq!(logs.get_or_create(5).after(0).0.len(), 1);
    }
}
