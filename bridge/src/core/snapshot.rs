//! The offline snapshot: the shared child's initialize result and tools list (after the
//! desktop policy), which the relay keeps to answer while the bridge is away. It is sent
//! when it changed, and in full on every new link.

use bytes::Bytes;
use protocol::{Frame, Snapshot};

/// What the relay may answer offline, and whether it changed since it was last sent.
#[derive(Default)]
pub(super) struct OfflineSnapshot {
    initialize: Option<Bytes>,
    tools: Option<Bytes>,
    dirty: bool,
}

impl OfflineSnapshot {
    /// Whether an initialize result is kept (a snapshot exists).
    pub(super) fn has_initialize(&self) -> bool {
        self.initialize.is_some()
    }

    /// Keeps an initialize result (JSON object).
    pub(super) fn set_initialize(&mut self, result: Bytes) {
        self.initialize = Some(result);
        self.dirty = true;
    }

    /// Keeps a `tools/list` result (JSON object).
    pub(super) fn set_tools(&mut self, result: Bytes) {
        self.tools = Some(result);
        self.dirty = true;
    }

    /// Rewrites the kept results with `f` (which returns `None` for no change).
    pub(super) fn rewrite(&mut self, f: impl Fn(&[u8]) -> Option<Bytes>) {
        for kept in [&mut self.initialize, &mut self.tools]
            .into_iter()
            .flatten()
        {
            if let Some(new) = f(kept) {
                *kept = new;
                self.dirty = true;
            }
        }
    }

    /// The snapshot frame: when it changed since the last one, or always with `force`;
    /// none before an initialize result is known.
    pub(super) fn frame(&mut self, force: bool) -> Option<Frame> {
        if !(self.dirty || force) {
            return None;
        }
        let initialize = self.initialize.clone()?;
        self.dirty = false;
        Some(Frame::Snapshot(Snapshot {
            initialize,
            tools: self.tools.clone().unwrap_or_default(),
        }))
    }
}
