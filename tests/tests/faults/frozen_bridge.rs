//! The bridge is frozen (`SIGSTOP`) past the relay's grace period: the relay answers from
//! the snapshot and says since when the desktop is offline, and after `SIGCONT` the bridge
//! is back within seconds.

use std::time::{Duration, Instant};

use e2e::Relay;
use e2e::mcp::tool_call;
use e2e::process::signal;
use serde_json::json;

use crate::calls::{Got, Session, ended_within, judge};
use crate::stack::{connected_via, settle, stop_bridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_bridge_past_grace() {
    let relay = Relay::start(&["--grace-secs", "2", "--keepalive-secs", "2"]);
    let (mut bridge, ep) = connected_via(&relay.base, &relay.token, &[]).await;
    settle(&ep, 1, "start").await;
    let a = Session::must_open(&ep).await;
    a.echo_ok(1, "probe-before").await;
    // Let the bridge's snapshot (initialize result and tools list) reach the relay.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pid = bridge.proc.pid();
    assert!(signal(pid, libc::SIGSTOP), "kill failed");
    let stopped = Instant::now();
    let during = a.spawn_call(
        json!(2),
        "echo",
        json!({"text": "probe-during"}),
        Duration::from_secs(40),
    );
    // The relay notices the silent link (no ping for 15 s), then waits out the grace.
    let noticed = ep
        .wait_connected(false, Duration::from_secs(25), "while stopped")
        .await;
    eprintln!("the relay noticed the frozen bridge after {noticed:?}");
    // The call made at the freeze is answered once the link is dropped.
    let during = ended_within(during, Duration::from_secs(5), "the call at the freeze").await;
    assert!(
        matches!(
            during,
            Ok(Got::Error { status: 503, .. } | Got::Error { status: 200, .. })
        ),
        "the call sent to the frozen bridge: {during:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Offline answers, from the snapshot.
    let init = e2e::mcp::initialize(json!(10), "2025-06-18", json!({}), "t");
    let r = ep
        .post(None, &init, Duration::from_secs(5))
        .await
        .expect("offline initialize");
    assert_eq!(r.status, 200, "{r:?}");
    let resp = r.response_to(&json!(10)).expect("initialize answered");
    assert_eq!(
        resp["result"]["serverInfo"]["name"], "mcp-fixture",
        "{resp}"
    );
    assert_eq!(resp["result"]["protocolVersion"], "2025-06-18", "{resp}");
    let list = json!({"jsonrpc":"2.0","id":11,"method":"tools/list"});
    let r = ep
        .post(None, &list, Duration::from_secs(5))
        .await
        .expect("offline tools/list");
    let resp = r.response_to(&json!(11)).expect("tools/list answered");
    let tools: Vec<&str> = resp["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(tools.contains(&"echo"), "offline tools/list: {resp}");
    for got in [
        judge(
            ep.post(
                None,
                &tool_call(json!(12), "echo", json!({"text":"x"})),
                Duration::from_secs(5),
            )
            .await,
            &json!(12),
        ),
        a.call(
            &json!(13),
            "echo",
            json!({"text": "x"}),
            Duration::from_secs(5),
        )
        .await,
    ] {
        match got {
            Ok(Got::ToolError(t)) => assert!(
                t.contains("offline since 20"),
                "the offline tool error says since when: {t}"
            ),
            other => panic!("offline tools/call: {other:?}"),
        }
    }
    eprintln!("SIGCONT after {:?}", stopped.elapsed());

    assert!(signal(pid, libc::SIGCONT), "kill failed");
    let back = ep
        .wait_connected(true, Duration::from_secs(5), "after SIGCONT")
        .await;
    eprintln!("the bridge was back {back:?} after SIGCONT");
    // The session lives in the bridge and survived.
    a.echo_ok(3, "probe-after").await;
    let ran = bridge.count("call echo");
    assert!(
        (2..=3).contains(&ran),
        "echo ran {ran} times for 2 answered calls and 1 in flight"
    );
    settle(&ep, 1, "after SIGCONT").await;
    stop_bridge(&mut bridge, "sigstop").await;
}
