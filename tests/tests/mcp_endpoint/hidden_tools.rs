//! Hidden tools (allow and deny globs) are missing from `tools/list` in a 2025 session, a
//! 2026-07-28 request, the HTTP+SSE transport and the relay's offline snapshot, and
//! calling one is refused with -32602 "Unknown tool" without reaching the server;
//! annotation overrides show in every list.

use std::time::Duration;

use e2e::Relay;
use e2e::mcp::{request, tool_call};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::policy::{
    LIMIT, PolicyClient, assert_unknown_tool, audit_wait, check_list, check_record, hiding,
    hiding_bridge, stateless_envelope, text,
};
use e2e::mcp::{HANDSHAKE_2025_06, STATELESS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_tools_and_overrides_in_every_era() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = hiding_bridge(&audit);
    let c = PolicyClient::of(&bridge);

    // 2025 session.
    let sid = c.initialize().await;
    let r = c
        .post(&request(json!(1), "tools/list", json!({})), Some(&sid))
        .await;
    check_list(&r.answer()["result"], "2025 session");
    for (i, hidden) in ["exit", "test_error_handling", "big"].iter().enumerate() {
        let r = c
            .post(&tool_call(json!(10 + i), hidden, json!({})), Some(&sid))
            .await;
        assert_unknown_tool(&r.answer(), hidden, "2025 session");
        assert_eq!(r.answer()["id"], json!(10 + i));
    }
    // A request without a session (hosted clients drop the header).
    let r = c
        .post(&tool_call(json!("x"), "exit", json!({"code": 3})), None)
        .await;
    assert_unknown_tool(&r.answer(), "exit", "2025 sessionless");
    let r = c
        .post(
            &tool_call(json!(2), "echo", json!({"text": "visible-2025"})),
            Some(&sid),
        )
        .await;
    assert_eq!(text(&r.answer()["result"]), "visible-2025", "{r:?}");

    // 2026-07-28.
    let r = c
        .post(
            &stateless_envelope(request(json!(20), "tools/list", json!({}))),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let result = &r.answer()["result"];
    check_list(result, "2026-07-28");
    assert_eq!(result["resultType"], "complete", "{result}");
    assert!(result["ttlMs"].is_u64(), "caching hints kept: {result}");
    let call = async |id: i64, tool: &str, args: Value| {
        c.post(&stateless_envelope(tool_call(json!(id), tool, args)), None)
            .await
    };
    let r = call(21, "exit", json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_unknown_tool(&r.answer(), "exit", "2026-07-28");
    let r = call(22, "test_error_handling", json!({})).await;
    assert_unknown_tool(&r.answer(), "test_error_handling", "2026-07-28");
    let r = call(23, "echo", json!({"text": "visible-stateless"})).await;
    assert_eq!(text(&r.answer()["result"]), "visible-stateless", "{r:?}");

    // The HTTP+SSE transport.
    http_sse_round(&c).await;

    // The server never saw a hidden call; the server still exists (exit never ran).
    assert_eq!(bridge.count("call exit"), 0, "{:?}", bridge.counts());
    assert_eq!(bridge.count("call test_error_handling"), 0);
    assert_eq!(bridge.count("call big"), 0);
    assert_eq!(bridge.count("call echo"), 3);
    assert_eq!(bridge.count("initialize"), 1, "{:?}", bridge.counts());

    // The audit log: one line per call, refused ones included, never the arguments.
    let lines = audit_wait(&audit, 10).await;
    assert_eq!(lines.len(), 10, "{lines:#?}");
    for l in &lines {
        check_record(l);
    }
    let outcome = |tool: &str, era: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["tool"] == tool && l["era"] == era)
            .map(|l| l["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(outcome("exit", HANDSHAKE_2025_06), ["refused"]);
    assert_eq!(outcome("exit", STATELESS), ["refused"]);
    assert_eq!(outcome("exit", "2024-11-05"), ["refused"]);
    assert_eq!(outcome("echo", HANDSHAKE_2025_06), ["ok"]);
    assert_eq!(outcome("echo", STATELESS), ["ok"]);
    assert_eq!(outcome("echo", "2024-11-05"), ["ok"]);
    let raw = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        "visible-2025",
        "visible-stateless",
        "visible-http-sse",
        "\"code\"",
    ] {
        assert!(
            !raw.contains(secret),
            "argument values in the audit log: {raw}"
        );
    }
    let digest = |text: &str| {
        lines
            .iter()
            .find(|l| l["tool"] == "echo" && l["era"] == text)
            .unwrap()["args_sha256"]
            .clone()
    };
    assert_ne!(
        digest(HANDSHAKE_2025_06),
        digest(STATELESS),
        "different arguments"
    );
    assert_eq!(
        lines.iter().find(|l| l["tool"] == "big").unwrap()["args_sha256"],
        // SHA-256 of `{}`, the arguments as sent.
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

/// The HTTP+SSE transport: list and call over `/sse` + `/messages`.
async fn http_sse_round(c: &PolicyClient) {
    let mut sse = c.http_sse().await;
    sse.initialize().await;
    sse.send(&request(json!(2), "tools/list", json!({}))).await;
    check_list(&sse.answer(&json!(2)).await["result"], "HTTP+SSE");
    sse.send(&tool_call(json!(3), "exit", json!({}))).await;
    assert_unknown_tool(&sse.answer(&json!(3)).await, "exit", "HTTP+SSE");
    sse.send(&tool_call(
        json!(4),
        "echo",
        json!({"text": "visible-http-sse"}),
    ))
    .await;
    assert_eq!(
        text(&sse.answer(&json!(4)).await["result"]),
        "visible-http-sse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_snapshot_is_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let relay = Relay::start(&["--grace-secs", "1"]);
    let mut bridge = hiding(&audit)
        .args(&["--auth", "bearer"])
        .via(&relay)
        .start();
    let c = PolicyClient::of(&bridge);
    // Online first, and let the snapshot reach the relay.
    let r = c
        .post(&request(json!(1), "tools/list", json!({})), None)
        .await;
    check_list(&r.answer()["result"], "online");
    tokio::time::sleep(Duration::from_secs(1)).await;
    bridge.proc.terminate();
    assert!(
        bridge.proc.wait_exit(Duration::from_secs(15)).is_some(),
        "the bridge stops"
    );
    // Past the grace period the relay answers from the snapshot.
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = c
            .post(&request(json!(2), "tools/list", json!({})), None)
            .await;
        if r.status == 200
            && let Some(result) = r.answer().get("result")
        {
            check_list(result, "offline snapshot");
            break;
        }
        assert!(Instant::now() < deadline, "no offline answer: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
