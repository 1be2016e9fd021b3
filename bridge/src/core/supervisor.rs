//! The server processes of one core: which run, how far each got in its start (and the
//! remote `initialize`s waiting for it), which one is shared by sessionless traffic, and
//! when the shared one is restarted after it exited (the crash-loop guard).
//!
//! Every process is started, written to and stopped through the [`Children`] given to
//! the core; a process this table forgets is stopped.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::warn;

use super::children::Children;
use super::init::WaitingInit;
use super::message::Ctx;
use crate::child::{ChildId, ChildSpec};
use bytes::Bytes;

/// Longest delay between restarts of a crashing server.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// Exits within this window count towards the crash-loop backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Exits of a serving server within [`CRASH_WINDOW`] restarted without delay.
const CRASH_BURST: usize = 120;

/// How far a child got in its start.
pub(super) enum ChildState {
    /// Its `initialize` is unanswered.
    Starting,
    /// It answered `initialize` with this result, speaking this protocol version.
    Ready { result: Value, version: String },
    /// It refused `initialize`, for this reason.
    Failed(String),
}

struct Slot {
    state: ChildState,
    waiting: Vec<WaitingInit>,
    /// Sessionless client messages that came while it started, handled once it is ready.
    parked: Vec<(Ctx, Bytes)>,
}

/// Most sessionless messages kept for one starting child.
pub(super) const MAX_PARKED: usize = 256;

/// What is left of a child the table forgot.
pub(super) struct Forgotten {
    /// Whether it had finished its start.
    pub(super) was_ready: bool,
    /// The remote `initialize`s that were waiting for it.
    pub(super) waiting: Vec<WaitingInit>,
    /// The sessionless messages that waited for it.
    pub(super) parked: Vec<(Ctx, Bytes)>,
}

/// The server processes and the shared one's restarts.
pub(super) struct Supervisor {
    processes: Box<dyn Children>,
    spec: ChildSpec,
    slots: HashMap<ChildId, Slot>,
    /// The child of sessionless traffic (and of every session without `isolate`).
    shared: Option<ChildId>,
    /// Under `isolate`: each principal's child for its sessionless traffic, with when it
    /// was last used.
    by_principal: HashMap<String, (ChildId, Instant)>,
    next_child: ChildId,
    /// When to restart the shared child after it exited.
    restart_at: Option<Instant>,
    /// Recent exits of the shared child while serving.
    crashes: VecDeque<Instant>,
    /// Consecutive failures of the shared child to start.
    startup_failures: u32,
    restarts: u32,
}

impl Supervisor {
    /// No processes yet; they run `spec` through `processes`.
    pub(super) fn new(processes: Box<dyn Children>, spec: ChildSpec) -> Self {
        Self {
            processes,
            spec,
            slots: HashMap::new(),
            shared: None,
            by_principal: HashMap::new(),
            next_child: 1,
            restart_at: None,
            crashes: VecDeque::new(),
            startup_failures: 0,
            restarts: 0,
        }
    }

    /// Starts a process; it is [`ChildState::Starting`] until [`Supervisor::settle`].
    pub(super) fn spawn(&mut self) -> Result<ChildId, String> {
        let id = self.next_child;
        self.next_child += 1;
        self.processes.spawn(id, &self.spec)?;
        self.slots.insert(
            id,
            Slot {
                state: ChildState::Starting,
                waiting: Vec::new(),
                parked: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Queues a line to a child's stdin; `false` if it is gone or not keeping up.
    pub(super) fn send_line(&mut self, child: ChildId, line: Vec<u8>) -> bool {
        self.slots.contains_key(&child) && self.processes.send_line(child, line)
    }

    /// Whether a child is gone or its stdin closed.
    pub(super) fn stdin_closed(&self, child: ChildId) -> bool {
        !self.slots.contains_key(&child) || self.processes.stdin_closed(child)
    }

    /// The last lines a child wrote to stderr.
    pub(super) fn stderr_tail(&self, child: ChildId) -> Vec<String> {
        if self.slots.contains_key(&child) {
            self.processes.stderr_tail(child)
        } else {
            Vec::new()
        }
    }

    /// Forgets a child and stops its process; `None` if it was not known.
    pub(super) fn forget(&mut self, child: ChildId) -> Option<Forgotten> {
        let slot = self.slots.remove(&child)?;
        self.processes.kill(child);
        Some(Forgotten {
            was_ready: matches!(slot.state, ChildState::Ready { .. }),
            waiting: slot.waiting,
            parked: slot.parked,
        })
    }

    /// The process ids of the children that are local processes, in order.
    pub(super) fn pids(&self) -> Vec<u32> {
        let mut ids: Vec<ChildId> = self.slots.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.processes.pid(id))
            .collect()
    }

    /// The children known, in no order.
    pub(super) fn ids(&self) -> Vec<ChildId> {
        self.slots.keys().copied().collect()
    }

    /// Whether a child runs.
    pub(super) fn contains(&self, child: ChildId) -> bool {
        self.slots.contains_key(&child)
    }

    /// Number of running children.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// How far a running child got in its start.
    pub(super) fn state(&self, child: ChildId) -> Option<&ChildState> {
        self.slots.get(&child).map(|s| &s.state)
    }

    /// Whether a child has finished its start successfully.
    pub(super) fn is_ready(&self, child: ChildId) -> bool {
        matches!(self.state(child), Some(ChildState::Ready { .. }))
    }

    /// Keeps a remote `initialize` until its child finishes its start; gives it back if the
    /// child is not starting (it is ready, failed, or gone: answer it now).
    pub(super) fn wait_if_starting(
        &mut self,
        child: ChildId,
        w: WaitingInit,
    ) -> Option<WaitingInit> {
        match self.slots.get_mut(&child) {
            Some(slot) if matches!(slot.state, ChildState::Starting) => {
                slot.waiting.push(w);
                None
            }
            _ => Some(w),
        }
    }

    /// Keeps a sessionless message until its child finishes its start; gives it back if
    /// the child is not starting or keeps too many already.
    pub(super) fn park_if_starting(
        &mut self,
        child: ChildId,
        ctx: Ctx,
        body: Bytes,
    ) -> Option<(Ctx, Bytes)> {
        match self.slots.get_mut(&child) {
            Some(slot)
                if matches!(slot.state, ChildState::Starting) && slot.parked.len() < MAX_PARKED =>
            {
                slot.parked.push((ctx, body));
                None
            }
            _ => Some((ctx, body)),
        }
    }

    /// The sessionless messages parked on a child (once it settled).
    pub(super) fn take_parked(&mut self, child: ChildId) -> Vec<(Ctx, Bytes)> {
        self.slots
            .get_mut(&child)
            .map(|s| std::mem::take(&mut s.parked))
            .unwrap_or_default()
    }

    /// A child finished its start (well or not): its new state, and the `initialize`s
    /// that waited for it. A successful start clears the startup failure count.
    pub(super) fn settle(&mut self, child: ChildId, state: ChildState) -> Vec<WaitingInit> {
        let Some(slot) = self.slots.get_mut(&child) else {
            return Vec::new();
        };
        if matches!(state, ChildState::Ready { .. }) {
            self.startup_failures = 0;
        }
        slot.state = state;
        std::mem::take(&mut slot.waiting)
    }

    /// Every waiting `initialize`, of every child.
    pub(super) fn waiting_mut(&mut self) -> impl Iterator<Item = &mut WaitingInit> {
        self.slots.values_mut().flat_map(|s| s.waiting.iter_mut())
    }

    /// Whether an `initialize` that came on `exchange` waits for its child.
    pub(super) fn is_waiting(&self, exchange: u64) -> bool {
        self.slots
            .values()
            .any(|s| s.waiting.iter().any(|w| w.exchange == Some(exchange)))
    }

    /// The shared child, whether or not it runs now.
    pub(super) fn shared(&self) -> Option<ChildId> {
        self.shared
    }

    /// The shared child, if it runs.
    pub(super) fn running_shared(&self) -> Option<ChildId> {
        self.shared.filter(|c| self.slots.contains_key(c))
    }

    /// Makes `child` the shared child (or none); returns the previous one.
    pub(super) fn set_shared(&mut self, child: Option<ChildId>) -> Option<ChildId> {
        std::mem::replace(&mut self.shared, child)
    }

    /// `principal`'s running child for sessionless traffic, marked used at `now`.
    pub(super) fn principal_child(&mut self, principal: &str, now: Instant) -> Option<ChildId> {
        let (id, used) = self.by_principal.get_mut(principal)?;
        if !self.slots.contains_key(id) {
            self.by_principal.remove(principal);
            return None;
        }
        *used = now;
        Some(*id)
    }

    /// Makes `child` the child of `principal`'s sessionless traffic.
    pub(super) fn set_principal_child(&mut self, principal: &str, child: ChildId, now: Instant) {
        self.by_principal.insert(principal.to_owned(), (child, now));
    }

    /// Forgets which principal `child` served (it is gone).
    pub(super) fn forget_principal_child(&mut self, child: ChildId) {
        self.by_principal.retain(|_, (id, _)| *id != child);
    }

    /// How many principals have a child of their own.
    pub(super) fn principal_children(&self) -> usize {
        self.by_principal.len()
    }

    /// The least recently used principal's child.
    pub(super) fn oldest_principal_child(&self) -> Option<ChildId> {
        self.by_principal
            .values()
            .min_by_key(|(_, used)| *used)
            .map(|(id, _)| *id)
    }

    /// Whether the shared child exited and waits for its restart.
    pub(super) fn restarting(&self) -> bool {
        self.restart_at.is_some()
    }

    /// Plans the shared child's restart (crash-loop guard):
    /// - a server that never finished starting is restarted after 0.25 s, doubling with
    ///   each consecutive failure up to 30 s (a broken command does not spin);
    /// - a server that was serving is restarted at once, unless it exited more than
    ///   [`CRASH_BURST`] times within a minute; past that the delay doubles up to 30 s.
    pub(super) fn schedule_restart(&mut self, was_ready: bool, now: Instant) {
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

    /// Whether the planned restart is due at `now`; if so it is counted and no longer
    /// planned.
    pub(super) fn restart_due(&mut self, now: Instant) -> bool {
        if self.restart_at.is_none_or(|at| at > now) {
            return false;
        }
        self.restart_at = None;
        self.restarts = self.restarts.saturating_add(1);
        true
    }

    /// Restarts of the shared child so far.
    pub(super) fn restarts(&self) -> u32 {
        self.restarts
    }
}
