//! What the desktop policy attaches to a request in flight (see `gate.rs`): a `tools/list`
//! whose answer it rewrites, or the record of a `tools/call`, written to the audit log and
//! counted in the dashboard's figures when the call ends, however it ends (the record is
//! written when dropped).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use protocol::jsonrpc::INTERNAL_ERROR;
use serde::Deserialize;

use crate::audit::{AuditSender, Entry, Outcome};
use crate::calls::CallStats;

/// Who called which tool, with what, when and how (for the audit log).
pub(super) struct CallInfo {
    /// The tool called.
    pub(super) tool: String,
    /// Who called it.
    pub(super) principal: String,
    /// The SHA-256 of its arguments (hex).
    pub(super) args_sha256: String,
    /// The protocol revision of the call.
    pub(super) era: String,
    /// When it arrived.
    pub(super) started: Instant,
}

impl CallInfo {
    /// Its audit log entry, with how it ended.
    pub(super) fn entry(&self, outcome: Outcome) -> Entry<'_> {
        Entry {
            principal: &self.principal,
            tool: &self.tool,
            args_sha256: &self.args_sha256,
            outcome,
            duration: self.started.elapsed(),
            era: &self.era,
        }
    }
}

/// Where a finished call is recorded: the audit log, the dashboard's figures, or both.
#[derive(Clone, Default)]
pub(super) struct Sinks {
    /// The audit log.
    pub(super) audit: Option<AuditSender>,
    /// The dashboard's call figures.
    pub(super) stats: Option<Arc<CallStats>>,
}

impl Sinks {
    /// Whether a call must be recorded at all.
    pub(super) fn any(&self) -> bool {
        self.audit.is_some() || self.stats.is_some()
    }

    /// Records a finished call.
    pub(super) fn record(&self, entry: &Entry<'_>) {
        if let Some(a) = &self.audit {
            a.record(entry);
        }
        if let Some(s) = &self.stats {
            s.record(entry);
        }
    }
}

/// A call on its way: recorded when dropped, with the outcome set last (`cancelled` unless
/// something else was said).
pub(super) struct CallRecord {
    info: CallInfo,
    outcome: Cell<Outcome>,
    sinks: Sinks,
}

impl CallRecord {
    /// The record of `info`, for `sinks`.
    pub(super) fn new(info: CallInfo, sinks: Sinks) -> Self {
        Self {
            info,
            outcome: Cell::new(Outcome::Cancelled),
            sinks,
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.sinks.record(&self.info.entry(self.outcome.get()));
    }
}

/// What the policy attached to a request in flight.
pub(super) enum Note {
    /// A `tools/list`: its answer is rewritten.
    ToolsList,
    /// A `tools/call`, audited.
    Call(CallRecord),
}

impl Note {
    /// Says how the call ended (for the audit log).
    pub(super) fn set_outcome(&self, outcome: Outcome) {
        if let Note::Call(r) = self {
            r.outcome.set(outcome);
        }
    }

    /// The server answered the call with `line`.
    pub(super) fn answered(&self, line: &[u8]) {
        self.set_outcome(outcome_of(line));
    }
}

/// How the server's answer to a call went.
fn outcome_of(line: &[u8]) -> Outcome {
    #[derive(Deserialize)]
    struct Answer {
        result: Option<Flags>,
        error: Option<Code>,
    }
    #[derive(Deserialize)]
    struct Flags {
        #[serde(rename = "isError")]
        is_error: Option<bool>,
    }
    #[derive(Deserialize)]
    struct Code {
        code: Option<i64>,
    }
    match serde_json::from_slice::<Answer>(line) {
        Ok(Answer { error: Some(e), .. }) => Outcome::Error(e.code.unwrap_or(INTERNAL_ERROR)),
        Ok(Answer {
            result: Some(Flags {
                is_error: Some(true),
            }),
            ..
        }) => Outcome::ToolError,
        _ => Outcome::Ok,
    }
}
