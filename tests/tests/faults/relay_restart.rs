//! The relay is killed and restarted on the same address: the call in flight ends, the
//! sessions (which live in the bridge) go on through the new relay.

use std::time::{Duration, Instant};

use e2e::process::tail;
use e2e::{Relay, addr_of};
use serde_json::json;

use crate::calls::{Got, Session, ended_within};
use crate::stack::{connected_via, settle, slow_call_running, stop_bridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart() {
    let token = format!("faults-restart-{:0>24}", std::process::id());
    let relay = Relay::start_with_token("127.0.0.1:0", &token, &[], &[]);
    let addr = addr_of(&relay.base);
    let (mut bridge, ep) =
        connected_via(&relay.base, &token, &[("FIXTURE_RECORD_ECHO", "1")]).await;
    settle(&ep, 1, "start").await;
    let a = Session::must_open(&ep).await;
    let b = Session::must_open(&ep).await;
    a.echo_ok(1, "probe-a").await;
    b.echo_ok(2, "probe-b").await;
    let in_flight = slow_call_running(&bridge, &a, json!(3), 1500, "in-flight").await;

    drop(relay);
    let killed = Instant::now();
    let relay = Relay::start_with_token(&addr.to_string(), &token, &[], &[]);
    let restarted = killed.elapsed();
    let back = ep
        .wait_connected(true, Duration::from_secs(10), "after the relay restart")
        .await;
    let got = ended_within(in_flight, Duration::from_secs(5), "the call in flight").await;
    eprintln!("relay restarted in {restarted:?}; the bridge was back {back:?} later");
    assert!(
        matches!(&got, Err(e) if e.starts_with("transport"))
            || matches!(got, Ok(Got::Error { .. })),
        "the call in flight when the relay died: {got:?}; relay log:\n{}",
        tail(&relay.proc.log_text())
    );
    // Sessions live in the bridge: both still work through the new relay.
    a.echo_ok(4, "probe-a-after").await;
    b.echo_ok(5, "probe-b-after").await;
    let fresh = Session::must_open(&ep).await;
    fresh.echo_ok(6, "probe-fresh").await;
    assert_eq!(bridge.count("call slow"), 1, "the slow call ran once");
    assert_eq!(bridge.count("call echo"), 5);
    let st = settle(&ep, 1, "after the relay restart").await;
    assert_eq!(st["bridge"]["sessions"], json!(3), "{st}");
    stop_bridge(&mut bridge, "relay_restart").await;
    drop(relay);
}
