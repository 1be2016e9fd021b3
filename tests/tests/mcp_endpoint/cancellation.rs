//! Closing a stateless request's response stream cancels the call on the server, while a
//! 2025-era client that disconnects leaves its call running.

use std::time::Duration;

use e2e::mcp::{
    HANDSHAKE_2025_06, McpClient, session_headers, stateless, stateless_headers, tool_call,
};
use e2e::process::tail;
use e2e::wait::wait_until;
use e2e::{Bridge, BridgeOpts};
use serde_json::json;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_stateless_stream_cancels_the_call_but_a_2025_disconnect_does_not() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = McpClient::of(&bridge);

    // A 2025-era call whose client disconnects runs on (the 2025 rules).
    const KEPT_MS: u64 = 2500;
    let (session, _) = c.initialize(HANDSHAKE_2025_06).await;
    let handshake_call = tool_call(json!(2), "slow", json!({"ms": KEPT_MS, "tag": "kept"}));
    let started = Instant::now();
    c.abandon(
        &handshake_call,
        &session_headers(&session, HANDSHAKE_2025_06),
        Duration::from_millis(300),
        "2025-era slow call",
    )
    .await;

    // A stateless call whose client goes away is cancelled on the server.
    let body = stateless(
        tool_call(json!("m-1"), "slow", json!({"ms": 60000, "tag": "t"})),
        json!({}),
        &[],
    );
    c.abandon(
        &body,
        &stateless_headers(&body),
        Duration::from_millis(300),
        "stateless slow call",
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        || bridge.count("cancelled t") == 1,
        || {
            format!(
                "the stateless call was not cancelled on the server; counts: {:?}; log:\n{}",
                bridge.counts(),
                tail(&bridge.proc.log_text())
            )
        },
    )
    .await;

    // The 2025-era call outlived its client and the stateless call's cancellation: it ran to
    // its end without being cancelled.
    tokio::time::sleep_until(started + Duration::from_millis(KEPT_MS + 1500)).await;
    assert_eq!(
        bridge.count("cancelled kept"),
        0,
        "the 2025-era call was cancelled when its client disconnected: {:?}",
        bridge.counts()
    );
    assert_eq!(bridge.count("call slow"), 2, "{:?}", bridge.counts());
    assert_eq!(bridge.count("cancelled t"), 1, "{:?}", bridge.counts());
}
