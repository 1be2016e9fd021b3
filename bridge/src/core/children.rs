//! The core's only way to its server processes. The core decides what to start, stop and
//! write; an implementation of [`Children`] does it: the driver's over real processes
//! (`crate::driver::Processes`), the unit tests' over a recording fake. What a process
//! writes back reaches the core as [`crate::child::ChildEvent`]s, through the driver.

use crate::child::{ChildId, ChildSpec};

/// Starting, feeding and stopping server processes, by the ids the core gives them.
pub trait Children {
    /// Starts `spec` as child `id`; its stdout lines and its exit are reported as
    /// `ChildEvent`s tagged with `id`. The error says why it could not start.
    fn spawn(&mut self, id: ChildId, spec: &ChildSpec) -> Result<(), String>;

    /// Queues one line (without its newline) to a child's stdin. `false` if the child is
    /// not keeping up, is gone, or was never started.
    fn send_line(&mut self, id: ChildId, line: Vec<u8>) -> bool;

    /// Whether a child's stdin is gone (it exited or is exiting; also for unknown ids).
    fn stdin_closed(&self, id: ChildId) -> bool;

    /// The last lines a child wrote to stderr (for errors shown locally).
    fn stderr_tail(&self, id: ChildId) -> Vec<String>;

    /// Stops a child and every process it started; unknown ids are ignored.
    fn kill(&mut self, id: ChildId);

    /// A child's process id, when it is a local process (the owner's dashboard shows it).
    fn pid(&self, _id: ChildId) -> Option<u32> {
        None
    }
}
