//! The attack: `tools/call` sent as a notification (no `id`) to a server that dispatches on
//! `method` alone must never reach it, in any era and on any transport.

use e2e::BridgeOpts;
use e2e::mcp::{initialize, tool_call};
use serde_json::json;

use e2e::wait::wait_log;

use crate::policy::{LIMIT, PolicyClient, audit_wait, headers_for, stateless_envelope};

/// The attack: `tools/call` sent as a notification (no `id`) to a server that dispatches on
/// `method` alone. In no era and on no transport may it reach the server: it would skip
/// `deny_tools`, `confirm_tools` and the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sent_as_notifications_never_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = BridgeOpts::default()
        .flags("--deny-tool echo --confirm-tool slow")
        .args(&["--audit-log", audit.to_str().unwrap()])
        .env(&[("FIXTURE_RUN_NOTIFICATIONS", "1")])
        .start();
    let c = PolicyClient::of(&bridge);
    let smuggled = |tool: &str| {
        json!({"jsonrpc": "2.0", "method": "tools/call",
               "params": {"name": tool, "arguments": {"text": "smuggled"}}})
    };
    let escaped_method = r#"{"jsonrpc":"2.0","method":"tools\/call","params":{"name":"echo","arguments":{"text":"smuggled"}}}"#;
    let null_id = json!({"jsonrpc": "2.0", "id": null, "method": "tools/call",
                         "params": {"name": "slow", "arguments": {}}});

    // A 2025 session, and no session at all.
    let sid = c.initialize().await;
    for (body, session) in [
        (smuggled("echo"), Some(sid.as_str())),
        (smuggled("slow"), Some(sid.as_str())),
        (null_id.clone(), Some(sid.as_str())),
        (smuggled("echo"), None),
        (
            json!({"jsonrpc": "2.0", "method": "resources/read",
                "params": {"uri": "test://static-text"}}),
            None,
        ),
    ] {
        let r = c.post(&body, session).await;
        assert_eq!(r.status, 202, "{body}: {r:?}");
    }
    let raw = c
        .mcp
        .post_builder(&json!({}), &headers_for(&json!({}), Some(&sid)))
        .body(escaped_method)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 202);
    // The 2026-07-28 shape.
    let r = c.post(&stateless_envelope(smuggled("echo")), None).await;
    assert!(
        r.status == 202 || r.status == 400,
        "stateless notification: {r:?}"
    );

    // The HTTP+SSE transport.
    let sse = c.http_sse().await;
    for body in [
        initialize(json!(1), "2024-11-05", json!({}), "attack"),
        smuggled("echo"),
    ] {
        sse.send(&body).await;
    }

    // A request after all of them: the server reads its input in order, so once this is
    // answered it has seen (and would have run) everything above.
    let r = c
        .post(
            &tool_call(json!(9), "test_simple_text", json!({})),
            Some(&sid),
        )
        .await;
    assert!(r.answer().get("result").is_some(), "{r:?}");
    assert_eq!(bridge.count("call test_simple_text"), 1);
    let ran: Vec<String> = bridge
        .counts()
        .into_iter()
        .filter(|l| l.starts_with("notification ") || l == "call echo" || l == "call slow")
        .collect();
    assert!(ran.is_empty(), "smuggled calls reached the server: {ran:?}");
    wait_log(&bridge.proc, "dropped a client notification", LIMIT).await;
    // The real call was audited; nothing else was (the smuggled ones never ran).
    let lines = audit_wait(&audit, 1).await;
    assert!(
        lines.iter().all(|l| l["tool"] == "test_simple_text"),
        "{lines:?}"
    );
}
