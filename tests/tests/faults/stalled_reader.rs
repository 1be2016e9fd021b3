//! A client stops reading a streaming answer while other sessions keep being served.

use std::time::{Duration, Instant};

use e2e::BridgeOpts;
use e2e::mcp::{response_to, session_headers};
use e2e::process::tail;
use serde_json::json;

use crate::calls::{Endpoint, MCP_VERSION, Session};
use crate::load::{EchoLoad, assert_all_answered, check_executions, successes};
use crate::stack::{settle, stop_bridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_sse_reader() {
    let mut bridge = BridgeOpts::default()
        .env(&[("FIXTURE_RECORD_ECHO", "1")])
        .start();
    let ep = Endpoint::of(&bridge);
    settle(&ep, 1, "start").await;
    let stalled = Session::must_open(&ep).await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(Session::must_open(&ep).await);
    }

    // 1000 progress notifications of 32 KiB: far more than the relay's queue and the
    // sockets' buffers hold.
    let flood_id = json!("flood");
    let body = json!({"jsonrpc":"2.0","id":flood_id,"method":"tools/call","params":{
        "name":"flood","arguments":{"count":1000,"bytes":32768},
        "_meta":{"progressToken":"flood-progress"}}});
    let headers = session_headers(&stalled.id, MCP_VERSION);
    let mut resp = ep
        .mcp
        .post_builder(&body, &headers)
        .send()
        .await
        .expect("flood POST");
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the stream starts")
        .expect("stream");
    assert!(first.is_some(), "the flood's stream is empty");
    // Stop reading `resp` now.

    let load = EchoLoad::start(&others, 1, Duration::from_secs(20), false);
    let start = Instant::now();
    loop {
        let dropped = bridge
            .proc
            .log_text()
            .contains("a client is not reading its stream");
        let ran = bridge.count("call flood") == 1;
        let idle = ep
            .status()
            .await
            .is_some_and(|s| s["bridge"]["pending"] == json!(0));
        if dropped && ran && idle && start.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the flood did not finish (dropped {dropped}, ran {ran}, idle {idle}); log:\n{}",
            tail(&bridge.proc.log_text())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (calls, _) = load.finish().await;
    assert_all_answered(&calls);
    assert_eq!(successes(&calls), calls.len(), "other sessions got errors");
    let mut lat: Vec<Duration> = calls.iter().map(|c| c.ended - c.started).collect();
    lat.sort();
    let (p50, max) = (lat[lat.len() / 2], lat[lat.len() - 1]);
    eprintln!(
        "stalled_sse_reader: {} calls from other sessions while one stalled, p50 {p50:?}, max {max:?}",
        calls.len()
    );
    assert!(calls.len() >= 100, "only {} calls", calls.len());
    assert!(
        max < Duration::from_secs(2),
        "another session waited {max:?} behind the stalled reader"
    );
    check_executions(&bridge, &calls);

    // The stalled client reads again: what is left of its stream ends, with one response
    // to its request (the answer, or an error since the relay gave up on the stream).
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = first.expect("checked").to_vec();
        while let Some(c) = resp.chunk().await.map_err(|e| e.to_string())? {
            buf.extend_from_slice(&c);
        }
        Ok::<_, String>(buf)
    })
    .await
    .expect("the stalled stream ends")
    .expect("stream");
    let messages = e2e::sse::messages(&rest).expect("SSE");
    let progress = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    let last = response_to(&messages, &flood_id).expect("one response to the stalled call");
    eprintln!(
        "the stalled reader got {progress} progress notifications, then {}",
        {
            let s = last.to_string();
            s[..s.len().min(300)].to_owned()
        }
    );
    assert!(progress < 1000, "the relay buffered the whole flood");
    assert_eq!(bridge.count("call flood"), 1);
    settle(&ep, 1, "after the stall").await;
    stop_bridge(&mut bridge, "stalled_sse_reader").await;
}
