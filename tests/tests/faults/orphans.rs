//! The bridge is killed (`SIGKILL`) or stopped (`SIGTERM`) with a server that ignores
//! `SIGTERM` and has forked a grandchild: nothing is left behind.

use std::time::{Duration, Instant};

use e2e::BridgeOpts;
use e2e::process::{alive, signal, tail};
use serde_json::json;

use crate::calls::{Endpoint, Got, Session};
use crate::stack::{assert_no_leftovers, processes_of, server_pids, wait_exit};

/// Starts a bridge whose server ignores SIGTERM and has forked a grandchild, stops the
/// bridge (`SIGKILL`, or `SIGTERM` when `graceful`), and checks neither survives.
async fn orphans_case(graceful: bool) {
    let what = if graceful { "SIGTERM" } else { "SIGKILL" };
    let mut bridge = BridgeOpts::default()
        .env(&[("FIXTURE_IGNORE_SIGTERM", "1")])
        .start();
    let ep = Endpoint::of(&bridge);
    let s = Session::must_open(&ep).await;
    let got = s
        .call(
            &json!(1),
            "spawn_grandchild",
            json!({}),
            Duration::from_secs(10),
        )
        .await;
    let Ok(Got::Text(pid)) = got else {
        panic!("spawn_grandchild: {got:?}")
    };
    let grandchild: u32 = pid.parse().expect("pid");
    let servers = server_pids(&bridge.counts);
    assert_eq!(servers.len(), 1, "{:?}", processes_of(&bridge.counts));
    let server = servers[0];
    assert!(alive(server) && alive(grandchild));
    assert!(
        processes_of(&bridge.counts)
            .iter()
            .any(|(_, c)| c.contains("__guard")),
        "no orphan guard process: {:?}",
        processes_of(&bridge.counts)
    );
    let start = Instant::now();
    if graceful {
        bridge.proc.terminate();
    } else {
        assert!(signal(bridge.proc.pid(), libc::SIGKILL), "kill failed");
    }
    let code = wait_exit(&mut bridge.proc, Duration::from_secs(15));
    if graceful {
        assert_eq!(code, Some(0), "{what}: {}", tail(&bridge.proc.log_text()));
    } else {
        assert!(code.is_some(), "{what}: the bridge did not die");
    }
    assert_no_leftovers(&bridge.counts, what).await;
    assert!(!alive(server) && !alive(grandchild));
    eprintln!(
        "{what}: server and grandchild gone {:?} after the signal",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_orphans_after_sigkill() {
    tokio::join!(orphans_case(false), orphans_case(true));
}
