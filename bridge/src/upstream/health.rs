//! [`Health`]: whether an HTTP server answers, as its sessions last saw it. Requests mark
//! it down when they cannot connect and up on any answer; the prober in `children.rs`
//! tries a server that is down; the status line and the relay are told.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use tracing::{info, warn};

/// Whether the server answers, as its sessions last saw it.
#[derive(Debug)]
pub struct Health {
    state: AtomicU8,
    detail: Mutex<(Instant, String)>,
    /// Wakes the prober when the server goes down.
    pub(super) went_down: tokio::sync::Notify,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Default for Health {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
            detail: Mutex::new((Instant::now(), String::new())),
            went_down: tokio::sync::Notify::new(),
        }
    }
}

impl Health {
    /// The server answered.
    pub fn up(&self) {
        if self.state.swap(UP, Ordering::Relaxed) == DOWN {
            info!("the local MCP server answers again");
            self.set_detail(String::new());
        }
    }

    /// The server could not be reached, for this reason.
    pub fn down(&self, why: &str) {
        if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
            warn!("the local MCP server is not reachable: {why}");
            self.went_down.notify_one();
        }
        self.set_detail(why.to_owned());
    }

    fn set_detail(&self, why: String) {
        if let Ok(mut d) = self.detail.lock() {
            if d.1.is_empty() || why.is_empty() {
                d.0 = Instant::now();
            }
            d.1 = why;
        }
    }

    pub(super) fn is_down(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DOWN
    }

    /// Why the server is not reachable and since when; `None` while it answers (or has
    /// not been tried).
    pub fn down_since(&self) -> Option<(Instant, String)> {
        if self.state.load(Ordering::Relaxed) != DOWN {
            return None;
        }
        self.detail.lock().ok().map(|d| d.clone())
    }
}
