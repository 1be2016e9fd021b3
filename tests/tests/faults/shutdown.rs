//! A graceful stop drains the call in flight, and a call past `--call-timeout-secs` is
//! answered with an error and cancelled on the server.

use std::time::{Duration, Instant};

use e2e::process::tail;
use e2e::{Bridge, BridgeOpts, Relay};
use protocol::jsonrpc::REQUEST_TIMEOUT;
use serde_json::json;

use crate::calls::{Endpoint, Got, Session};
use crate::stack::{
    assert_no_leftovers, bridge_via, settle, slow_call_running, stop_bridge, wait_count, wait_exit,
};

/// SIGTERM while a 2 s call runs: the call is answered, requests after the signal get 503,
/// the bridge exits 0 well within its 10 s drain deadline.
async fn drain_case(mut bridge: Bridge, what: &str) {
    let ep = Endpoint::of(&bridge);
    let a = Session::must_open(&ep).await;
    let b = Session::must_open(&ep).await;
    let slow = slow_call_running(&bridge, &a, json!(1), 2000, "drain").await;
    bridge.proc.terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = b
        .call(
            &json!(2),
            "echo",
            json!({"text": "after"}),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(after, Ok(Got::Error { status: 503, .. })),
        "{what}: a call after SIGTERM: {after:?}"
    );
    let init = Session::open(&ep).await.err().unwrap_or_default();
    assert!(
        init.contains("HTTP 503"),
        "{what}: a new session after SIGTERM: {init}"
    );
    let slow = slow.await.expect("task");
    let code = wait_exit(&mut bridge.proc, Duration::from_secs(12));
    let log = bridge.proc.log_text();
    assert_eq!(code, Some(0), "{what}: exit code; log:\n{}", tail(&log));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(
        bridge.count("call echo"),
        0,
        "{what}: refused calls never ran"
    );
    assert_no_leftovers(&bridge.counts, what).await;
    // A separate relay outlives the bridge: nothing may be left open there.
    if let Some(h) = ep.health().await {
        assert_eq!(h["exchanges"], json!(0), "{what}: {h}");
    }
    assert_eq!(
        slow,
        Ok(Got::Text("done drain".into())),
        "{what}: the call in flight at SIGTERM; log:\n{}",
        tail(&log)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains() {
    drain_case(Bridge::start(BridgeOpts::default()), "embedded relay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_separate_relay() {
    let relay = Relay::start(&[]);
    let bridge = bridge_via(&relay.base, &relay.token, &[]);
    drain_case(bridge, "separate relay").await;
}

// ----- 8. call timeouts ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_cancels() {
    let mut bridge = Bridge::start(BridgeOpts {
        args: vec!["--call-timeout-secs".into(), "1".into()],
        ..Default::default()
    });
    let ep = Endpoint::of(&bridge);
    settle(&ep, 1, "start").await;
    let s = Session::must_open(&ep).await;
    let start = Instant::now();
    let got = s
        .call(
            &json!(7),
            "slow",
            json!({"ms": 10_000, "tag": "late"}),
            Duration::from_secs(8),
        )
        .await;
    let took = start.elapsed();
    match &got {
        Ok(Got::Error {
            status: 200, code, ..
        }) if *code == REQUEST_TIMEOUT => {}
        other => panic!("a call past the timeout: {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    wait_count(&bridge, "cancelled late", 1, Duration::from_secs(3)).await;
    s.echo_ok(8, "after-timeout").await;
    settle(&ep, 1, "after the timeout").await;
    assert_eq!(bridge.count("call slow"), 1);
    stop_bridge(&mut bridge, "call_timeout_cancels").await;
}
