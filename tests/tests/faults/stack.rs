//! The bridge under test: its servers and their descendants (found by the `FIXTURE_COUNTS`
//! path they all inherit), a stop that must leave nothing behind, and the relay's and
//! bridge's gauges back at their baseline.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::process::{processes_with_env, tail};
use e2e::{Bridge, BridgeOpts, bin};
use serde_json::{Value, json};

use crate::calls::{Endpoint, Got, Session};

/// Longest wait for the gauges to return to their baseline.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Live processes whose environment holds `FIXTURE_COUNTS=<counts>` (the bridge, its
/// guard, its servers and their descendants all inherit it), with their command lines.
pub(crate) fn processes_of(counts: &Path) -> Vec<(u32, String)> {
    processes_with_env(&format!("FIXTURE_COUNTS={}", counts.display()))
}

/// Pids of the fixture servers (not grandchildren) of the bridge writing to `counts`.
pub(crate) fn server_pids(counts: &Path) -> Vec<u32> {
    let fixture = bin("mcp-fixture").display().to_string();
    processes_of(counts)
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with(&fixture) && !cmd.contains("--grandchild"))
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits until no process of this bridge (servers, grandchildren, guard) is left.
pub(crate) async fn assert_no_leftovers(counts: &Path, what: &str) {
    let start = Instant::now();
    loop {
        let left = processes_of(counts);
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: processes left behind 5 s after the bridge exited: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a process to exit without blocking the runtime's other tasks.
pub(crate) fn wait_exit(proc: &mut e2e::Proc, limit: Duration) -> Option<i32> {
    tokio::task::block_in_place(|| proc.wait_exit(limit))
}

/// `SIGTERM`s the bridge, expects exit code 0, and checks nothing is left behind.
pub(crate) async fn stop_bridge(bridge: &mut Bridge, what: &str) {
    bridge.proc.terminate();
    let code = wait_exit(&mut bridge.proc, Duration::from_secs(15));
    assert_eq!(
        code,
        Some(0),
        "{what}: the bridge did not exit cleanly after SIGTERM; log:\n{}",
        tail(&bridge.proc.log_text())
    );
    assert_no_leftovers(&bridge.counts, what).await;
}

/// Waits until the fixture recorded `line` at least `n` times.
pub(crate) async fn wait_count(bridge: &Bridge, line: &str, n: usize, within: Duration) {
    let start = Instant::now();
    while bridge.count(line) < n {
        assert!(
            start.elapsed() < within,
            "the fixture did not record {line:?} {n} times within {within:?}: {:?}",
            bridge.counts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the relay's and bridge's gauges are back to baseline: no exchange at the
/// relay or the bridge, no pending request, `children` server processes, the bridge
/// connected. Returns the last status.
pub(crate) async fn settle(ep: &Endpoint, children: u64, what: &str) -> Value {
    let start = Instant::now();
    let mut last = (None, None);
    while start.elapsed() < SETTLE_TIMEOUT {
        let (st, health) = (ep.status().await, ep.health().await);
        if let (Some(s), Some(h)) = (&st, &health)
            && s["connected"] == json!(true)
            && s["exchanges"] == json!(0)
            && s["bridge"]["pending"] == json!(0)
            && s["bridge"]["exchanges"] == json!(0)
            && s["bridge"]["children"] == json!(children)
            && h["exchanges"] == json!(0)
        {
            return s.clone();
        }
        last = (st, health);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: gauges not back to baseline (children {children}) within {SETTLE_TIMEOUT:?}: \
         status {:?}, healthz {:?}",
        last.0, last.1
    );
}

/// A bridge connected to `relay_url` with `token`, serving the fixture with `env` set.
pub(crate) fn bridge_via(relay_url: &str, token: &str, env: &[(&str, &str)]) -> Bridge {
    BridgeOpts::default()
        .via_url(relay_url, token)
        .env(env)
        .start()
}

/// [`bridge_via`], once the relay reports it connected: the bridge and its endpoint.
pub(crate) async fn connected_via(
    relay_url: &str,
    token: &str,
    env: &[(&str, &str)],
) -> (Bridge, Endpoint) {
    let bridge = bridge_via(relay_url, token, env);
    let ep = Endpoint::of(&bridge);
    ep.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    (bridge, ep)
}

/// Starts the fixture's `slow` tool (`ms`, answering `done <tag>`) in `session` on a task
/// of its own, and waits until the fixture runs it: the task.
pub(crate) async fn slow_call_running(
    bridge: &Bridge,
    session: &Session,
    id: Value,
    ms: u64,
    tag: &str,
) -> tokio::task::JoinHandle<Result<Got, String>> {
    let before = bridge.count("call slow");
    let args = json!({"ms": ms, "tag": tag});
    let call = session.spawn_call(id, "slow", args, Duration::from_secs(20));
    wait_count(bridge, "call slow", before + 1, Duration::from_secs(5)).await;
    call
}
