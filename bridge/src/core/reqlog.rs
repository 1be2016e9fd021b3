//! One log line per finished client request (target `bridge::request`), named like the
//! relay's own line for it: `request_id` is the relay's exchange number in hex
//! ([`protocol::calls::RequestId`]).
//!
//! ```text
//! request request_id=1a2b0000002f method=tools/call tool=search outcome=ok by=server duration_ms=3.2
//! ```
//!
//! `outcome` is `ok` or `error` (a JSON-RPC error answer, or an HTTP error status), or
//! `closed` for a request that ended without an answer from the server (timed out,
//! cancelled, its server exited, its session ended, its client left a suspended call);
//! `by` says who answered: the `server`, or the `bridge` itself (`initialize`, `ping`,
//! `server/discover`, refusals). Lines for `closed` requests are written when the bridge
//! notices, at most a second late.
//!
//! The lines are at [`LEVEL`]; when that level is off (the default) nothing is tracked and
//! a request costs one cached level check.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::calls::{CallKind, RequestId};

use protocol::Frame;
use protocol::frame::FLAG_FINAL;

use super::Core;
use super::ids::{Pending, Purpose};
use super::init::WaitingInit;

/// Target of the lines.
pub const TARGET: &str = "bridge::request";

/// Level of the lines: `debug`, so that the bridge's hot path stays as cheap as without
/// them (`RUST_LOG=info,bridge::request=debug` turns them on).
pub const LEVEL: tracing::Level = tracing::Level::DEBUG;

/// Most requests tracked at once (beyond, requests go unlogged until some finish).
const MAX_OPEN: usize = 65_536;

/// How often requests that ended without an answer are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A request being tracked.
struct Open {
    /// The exchange it came on (its request id).
    exchange: u64,
    start: Instant,
    kind: CallKind,
    /// An unlisted method's name.
    method: Option<String>,
    tool: Option<String>,
}

/// A request seen arriving, before the core handled it.
pub struct Begun {
    open: Open,
    /// The core's next child-side id before it handled the request: a request it
    /// forwarded has this id or a later one.
    first_id: u64,
    /// Frames already in the outbox.
    outbox_len: usize,
}

#[derive(Default)]
struct Table {
    /// Requests forwarded to a server, by child-side id.
    forwarded: HashMap<u64, Open>,
    /// `initialize` requests waiting for their server to start, by exchange.
    waiting: HashMap<u64, Open>,
    last_sweep: Option<Instant>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

fn enabled() -> bool {
    tracing::enabled!(target: TARGET, LEVEL)
}

fn emit(open: &Open, exchange: u64, outcome: &str, by: &str, now: Instant) {
    let duration_ms = now.saturating_duration_since(open.start).as_micros() as f64 / 1000.0;
    tracing::event!(
        target: TARGET,
        LEVEL,
        request_id = %RequestId(exchange),
        method = open.method.as_deref().unwrap_or(open.kind.as_str()),
        tool = open.tool.as_deref(),
        outcome,
        by,
        duration_ms,
        "request"
    );
}

/// A client-supplied name made safe for the log.
fn printable(s: &str) -> String {
    protocol::text::printable(s, 100)
}

/// Whether an answer body is a JSON-RPC error (a scan of its top level only).
fn is_error(body: &[u8]) -> bool {
    protocol::scan::parse_fast(body).is_ok_and(|e| e.is_error)
}

impl Core {
    /// Notes a message POSTed on `exchange`, when the lines are on and it is a request.
    pub(super) fn log_begin(&self, exchange: u64, body: &[u8]) -> Option<Begun> {
        if !enabled() {
            return None;
        }
        let p = protocol::calls::peek(body);
        if !p.is_request() {
            return None;
        }
        let method = p.method.unwrap_or("");
        let kind = CallKind::of_method(method);
        let tool = match kind {
            CallKind::ToolsCall => p.params.and_then(protocol::calls::tool_name).map(printable),
            _ => None,
        };
        Some(Begun {
            open: Open {
                exchange,
                start: self.now,
                kind,
                method: (kind == CallKind::Other).then(|| printable(method)),
                tool,
            },
            first_id: self.ids.peek_next(),
            outbox_len: self.outbox.len(),
        })
    }

    /// After the core handled a request noted by [`Core::log_begin`]: tracks it if it went
    /// to a server (or waits for one), logs it if the bridge answered it at once.
    pub(super) fn log_sent(&mut self, begun: Option<Begun>) {
        let Some(b) = begun else { return };
        let exchange = b.open.exchange;
        let forwarded = self
            .ids
            .since(b.first_id)
            .find(|(_, p)| p.purpose == Purpose::Client)
            .map(|(id, _)| id);
        if let Some(cid) = forwarded {
            return self.track(cid, b.open);
        }
        // The bridge's own answer, final (Streamable HTTP) or on the session's stream
        // (HTTP+SSE).
        let answer = self.outbox.get(b.outbox_len..).and_then(|new| {
            new.iter().find_map(|f| match f {
                Frame::Response(r) if !r.body.is_empty() || r.flags & FLAG_FINAL != 0 => {
                    Some((r.status, is_error(&r.body)))
                }
                _ => None,
            })
        });
        if let Some((status, error)) = answer {
            let outcome = if error || status >= 400 {
                "error"
            } else {
                "ok"
            };
            return emit(&b.open, exchange, outcome, "bridge", self.now);
        }
        // A retry of a suspended 2026-07-28 call continues its request.
        let resumed = self
            .ids
            .iter()
            .find(|(_, p)| p.exchange == Some(exchange))
            .map(|(id, _)| id);
        if let Some(cid) = resumed {
            TABLE.with(|t| {
                let mut t = t.borrow_mut();
                match t.forwarded.get_mut(&cid) {
                    // The whole call, first round included; its answer goes to the retry.
                    Some(o) => o.exchange = exchange,
                    None => {
                        t.forwarded.insert(cid, b.open);
                    }
                }
            });
            return;
        }
        if self.children.is_waiting(exchange) {
            TABLE.with(|t| {
                let mut t = t.borrow_mut();
                if t.waiting.len() < MAX_OPEN {
                    t.waiting.insert(exchange, b.open);
                }
            });
        }
    }

    fn track(&mut self, cid: u64, open: Open) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            if t.forwarded.len() < MAX_OPEN {
                t.forwarded.insert(cid, open);
            }
        });
        self.log_sweep();
    }

    /// A server answered the request `cid`.
    pub(super) fn log_answered(&mut self, cid: u64, p: &Pending, error: bool) {
        if p.purpose != Purpose::Client || !enabled() {
            return;
        }
        let open = TABLE.with(|t| t.borrow_mut().forwarded.remove(&cid));
        if let Some(open) = open {
            // A Streamable answer goes to the request's (current) exchange; an HTTP+SSE one
            // to the session's stream, so the line keeps the POST's id.
            let exchange = match (p.reply_final, p.exchange) {
                (true, Some(ex)) => ex,
                _ => open.exchange,
            };
            let outcome = if error { "error" } else { "ok" };
            emit(&open, exchange, outcome, "server", self.now);
        }
        self.log_sweep();
    }

    /// Logs requests that ended without an answer from a server (at most once a second).
    fn log_sweep(&self) {
        let now = self.now;
        let due = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            if t.last_sweep
                .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
            {
                return false;
            }
            t.last_sweep = Some(now);
            !(t.forwarded.is_empty() && t.waiting.is_empty())
        });
        if !due {
            return;
        }
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let forwarded: Vec<u64> = t
                .forwarded
                .keys()
                .filter(|cid| !self.ids.contains(**cid))
                .copied()
                .collect();
            for cid in forwarded {
                if let Some(open) = t.forwarded.remove(&cid) {
                    emit(&open, open.exchange, "closed", "bridge", now);
                }
            }
            let waiting: Vec<u64> = t
                .waiting
                .keys()
                .filter(|ex| !self.is_live(**ex))
                .copied()
                .collect();
            for ex in waiting {
                if let Some(open) = t.waiting.remove(&ex) {
                    emit(&open, open.exchange, "closed", "bridge", now);
                }
            }
        });
    }

    /// The server of these `initialize` requests finished starting (`ok`) or failed.
    pub(super) fn log_inits_answered(&self, waiting: &[WaitingInit], ok: bool) {
        if waiting.is_empty() || !enabled() {
            return;
        }
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            for w in waiting {
                if let Some(open) = w.exchange.and_then(|ex| t.waiting.remove(&ex)) {
                    let outcome = if ok { "ok" } else { "error" };
                    emit(&open, open.exchange, outcome, "bridge", self.now);
                }
            }
        });
    }
}
