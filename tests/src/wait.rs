//! Polling until something holds, in tests with and without an async runtime.

use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it returns `Some`, for at most `within`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `cond` every 25 ms until it holds; panics with `what()` after `within`.
pub async fn wait_until(
    within: Duration,
    mut cond: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (without blocking the runtime) until `proc`'s log contains `needle`; panics with
/// the log after `within`.
pub async fn wait_log(proc: &crate::Proc, needle: &str, within: Duration) {
    wait_until(
        within,
        || proc.log_text().contains(needle),
        || format!("{needle:?} not in the log:\n{}", proc.log_text()),
    )
    .await;
}
