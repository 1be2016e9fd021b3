//! The tool calls of one tunnel as the owner's dashboard shows them: the newest calls
//! (tool, client, outcome, duration), and per tool its calls, errors and latency (p50 and
//! p95 of its latest calls). Filled from the same records as the audit log (see
//! `core/note.rs`), whether or not an audit log is written.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use protocol::sync::LockExt;

use crate::audit::{Entry, Outcome};

/// Newest calls kept.
const RECENT: usize = 50;
/// Latest durations kept per tool for its percentiles.
const SAMPLES: usize = 256;
/// Most tools tracked (names come from clients; a call of another is only in the recent
/// list).
const MAX_TOOLS: usize = 512;

/// One finished call.
#[derive(Debug, Clone)]
pub struct CallRow {
    /// When it ended.
    pub at: SystemTime,
    /// The tool.
    pub tool: String,
    /// The client.
    pub principal: String,
    /// How it ended.
    pub outcome: Outcome,
    /// From its arrival to its end.
    pub duration: Duration,
}

/// One tool's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRow {
    /// The tool.
    pub tool: String,
    /// Calls that ended.
    pub calls: u64,
    /// Of those, answered with an error, a tool error or not in time.
    pub errors: u64,
    /// Median duration of its latest calls that reached the server.
    pub p50: Option<Duration>,
    /// 95th percentile of the same.
    pub p95: Option<Duration>,
}

#[derive(Default)]
struct Tool {
    calls: u64,
    errors: u64,
    durations: VecDeque<Duration>,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<CallRow>,
    tools: BTreeMap<String, Tool>,
}

/// A tunnel's call figures.
#[derive(Default)]
pub struct CallStats {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CallStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStats").finish_non_exhaustive()
    }
}

impl CallStats {
    /// Counts a finished call.
    pub fn record(&self, e: &Entry<'_>) {
        let mut inner = self.inner.locked();
        if inner.recent.len() >= RECENT {
            inner.recent.pop_back();
        }
        inner.recent.push_front(CallRow {
            at: SystemTime::now(),
            tool: e.tool.to_owned(),
            principal: e.principal.to_owned(),
            outcome: e.outcome,
            duration: e.duration,
        });
        let known = inner.tools.contains_key(e.tool);
        if !known && inner.tools.len() >= MAX_TOOLS {
            return;
        }
        let t = inner.tools.entry(e.tool.to_owned()).or_default();
        t.calls += 1;
        let (reached, failed) = match e.outcome {
            Outcome::Ok => (true, false),
            Outcome::ToolError | Outcome::Error(_) | Outcome::Timeout => (true, true),
            Outcome::Refused | Outcome::Declined | Outcome::Cancelled => (false, false),
        };
        if failed {
            t.errors += 1;
        }
        if reached {
            if t.durations.len() >= SAMPLES {
                t.durations.pop_front();
            }
            t.durations.push_back(e.duration);
        }
    }

    /// The newest calls, newest first.
    pub fn recent(&self) -> Vec<CallRow> {
        self.inner.locked().recent.iter().cloned().collect()
    }

    /// Each tool's figures, by name.
    pub fn tools(&self) -> Vec<ToolRow> {
        self.inner
            .locked()
            .tools
            .iter()
            .map(|(name, t)| {
                let mut d: Vec<Duration> = t.durations.iter().copied().collect();
                d.sort();
                ToolRow {
                    tool: name.clone(),
                    calls: t.calls,
                    errors: t.errors,
                    p50: percentile(&d, 50),
                    p95: percentile(&d, 95),
                }
            })
            .collect()
    }
}

/// The `p`th percentile of sorted durations (nearest rank).
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tool: &str, outcome: Outcome, ms: u64) -> Entry<'_> {
        Entry {
            principal: "alice",
            tool,
            args_sha256: "",
            outcome,
            duration: Duration::from_millis(ms),
            era: "2025-06-18",
        }
    }

    #[test]
    fn tools_count_calls_errors_and_percentiles_of_calls_that_ran() {
        let s = CallStats::default();
        for ms in 1..=100 {
            s.record(&entry("search", Outcome::Ok, ms));
        }
        s.record(&entry("search", Outcome::ToolError, 500));
        s.record(&entry("search", Outcome::Declined, 90_000));
        s.record(&entry("write", Outcome::Error(-32603), 7));
        let tools = s.tools();
        assert_eq!(tools.len(), 2);
        let search = &tools[0];
        assert_eq!((search.calls, search.errors), (102, 1));
        assert_eq!(search.p50, Some(Duration::from_millis(51)));
        assert_eq!(search.p95, Some(Duration::from_millis(96)));
        assert_eq!(tools[1].p95, Some(Duration::from_millis(7)));
        let recent = s.recent();
        assert_eq!(recent[0].tool, "write", "newest first");
        assert_eq!(recent.len(), RECENT);
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let s = CallStats::default();
        for n in 0..(MAX_TOOLS + 10) {
            s.record(&entry(&format!("t{n}"), Outcome::Ok, 1));
        }
        assert_eq!(s.tools().len(), MAX_TOOLS);
        for _ in 0..(SAMPLES * 2) {
            s.record(&entry("t0", Outcome::Ok, 3));
        }
        assert_eq!(s.inner.locked().tools["t0"].durations.len(), SAMPLES);
        assert_eq!(percentile(&[], 50), None);
    }
}
