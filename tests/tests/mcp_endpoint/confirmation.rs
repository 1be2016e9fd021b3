//! Calls of `--confirm-tool` tools wait for `y CODE` / `n CODE` typed into the bridge's
//! terminal: allowed they run, declined or unanswered they get a tool error and never
//! run, concurrent prompts are told apart by their codes, a client that cancels or closes
//! its stream withdraws its call, and without a terminal or the dashboard they are declined
//! (the dashboard's own tests: `bridge_cli/dashboard.rs`).

use std::path::Path;
use std::time::Duration;

use e2e::mcp::tool_call;
use e2e::{Bridge, BridgeOpts};
use serde_json::{Value, json};
use tokio::time::Instant;

use e2e::wait::wait_log;

use crate::policy::{LIMIT, PolicyClient, audit_wait, check_record, stateless_envelope, text};

/// Waits for a new approval prompt in the bridge's log (beyond the `seen` first ones) and
/// returns its code and the prompt's text.
async fn next_prompt(bridge: &Bridge, seen: &mut usize) -> (String, String) {
    let marker = "Tool call waiting for your approval [code ";
    let deadline = Instant::now() + LIMIT;
    loop {
        let log = bridge.proc.log_text();
        let prompts: Vec<&str> = log.split(marker).skip(1).collect();
        if prompts.len() > *seen {
            let p = prompts[*seen];
            *seen += 1;
            let code = p[..p.find(']').expect("code ends")].to_owned();
            let text = p.split("\n\n").next().unwrap_or(p).to_owned();
            return (code, text);
        }
        assert!(Instant::now() < deadline, "no approval prompt; log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types the approval of `code` after its call stopped waiting: nothing waits for it.
async fn approve_too_late(bridge: &mut Bridge, code: &str) {
    bridge.proc.write_line(&format!("y {code}"));
    wait_log(
        &bridge.proc,
        &format!("No tool call waits with the code \"{code}\""),
        LIMIT,
    )
    .await;
}

fn confirming_bridge(audit: &Path, piped_stdin: bool) -> Bridge {
    Bridge::start(BridgeOpts {
        piped_stdin,
        ..BridgeOpts::default()
            .flags("--confirm-tool ech* --confirm-tool slow --confirm-timeout-secs 3")
            .args(&["--audit-log", audit.to_str().unwrap()])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_allow_decline_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut bridge = confirming_bridge(&audit, true);
    let c = PolicyClient::of(&bridge);
    let sid = c.initialize().await;
    let mut seen = 0;
    // A 2025 call in the session, answered later.
    let spawn_call = |id: i64, tool: &str, args: Value| {
        let (c, sid) = (c.clone(), sid.clone());
        let body = tool_call(json!(id), tool, args);
        tokio::spawn(async move { c.post(&body, Some(&sid)).await })
    };

    // Allowed: the call runs, with the arguments shown (escape sequences neutralized).
    let pending = spawn_call(1, "echo", json!({"text": "allowed-arg\u{1b}[2J"}));
    let (code, prompt) = next_prompt(&bridge, &mut seen).await;
    assert!(prompt.contains("tool:      echo"), "{prompt}");
    assert!(
        prompt.contains("allowed"),
        "a preview of the arguments: {prompt}"
    );
    assert!(!prompt.contains('\u{1b}'), "{prompt}");
    assert_eq!(bridge.count("call echo"), 0, "held, not sent");
    // The owner takes a moment to answer (the audit log counts the wait in milliseconds).
    tokio::time::sleep(Duration::from_millis(20)).await;
    bridge
        .proc
        .write_line(&format!("y {}", code.to_lowercase()));
    let r = pending.await.unwrap();
    assert_eq!(text(&r.answer()["result"]), "allowed-arg\u{1b}[2J", "{r:?}");
    assert_eq!(bridge.count("call echo"), 1);

    // Declined: a tool error, and the server never sees it.
    let pending = spawn_call(2, "echo", json!({"text": "declined-arg"}));
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    bridge.proc.write_line(&format!("n {code}"));
    let r = pending.await.unwrap();
    let result = &r.answer()["result"];
    assert_eq!(result["isError"], true, "{r:?}");
    assert!(
        text(result).contains("the owner declined this call"),
        "{r:?}"
    );
    assert_eq!(bridge.count("call echo"), 1);

    // Unanswered: declined after the timeout (3 s).
    let started = Instant::now();
    let r = c
        .post(
            &tool_call(json!(3), "echo", json!({"text": "ignored-arg"})),
            Some(&sid),
        )
        .await;
    let waited = started.elapsed();
    let result = &r.answer()["result"];
    assert_eq!(result["isError"], true, "{r:?}");
    assert!(text(result).contains("declined"), "{r:?}");
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    assert_eq!(bridge.count("call echo"), 1);
    // A late answer finds nothing.
    approve_too_late(&mut bridge, &code).await;

    // Two at once, in the 2026-07-28 revision: each code answers its own call.
    let spawn_stateless = |id: i64, text: &'static str| {
        let c = c.clone();
        tokio::spawn(async move {
            c.post(
                &stateless_envelope(tool_call(json!(id), "echo", json!({"text": text}))),
                None,
            )
            .await
        })
    };
    let first = spawn_stateless(4, "first-arg");
    let (code_a, prompt_a) = next_prompt(&bridge, &mut seen).await;
    let second = spawn_stateless(5, "second-arg");
    let (code_b, prompt_b) = next_prompt(&bridge, &mut seen).await;
    assert!(prompt_a.contains("first-arg") && prompt_b.contains("second-arg"));
    assert_ne!(code_a, code_b);
    bridge.proc.write_line(&format!("n {code_b}"));
    bridge.proc.write_line(&format!("y {code_a}"));
    let a = first.await.unwrap();
    let b = second.await.unwrap();
    assert_eq!(text(&a.answer()["result"]), "first-arg", "{a:?}");
    assert_eq!(a.answer()["result"]["resultType"], "complete");
    assert_eq!(b.answer()["result"]["isError"], true, "{b:?}");
    assert_eq!(b.answer()["result"]["resultType"], "complete");
    assert_eq!(bridge.count("call echo"), 2);

    // A held 2026-07-28 call whose client closes the stream is withdrawn.
    let gone = spawn_stateless(6, "gone-arg");
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    gone.abort();
    let _ = gone.await;
    wait_log(
        &bridge.proc,
        &format!("[code {code}] no longer waits"),
        LIMIT,
    )
    .await;
    approve_too_late(&mut bridge, &code).await;

    // A held 2025 call cancelled by its client is withdrawn too.
    let cancelled = spawn_call(7, "slow", json!({"ms": 1, "tag": "t"}));
    let (code, _) = next_prompt(&bridge, &mut seen).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "changed my mind"}});
    assert_eq!(c.post(&cancel, Some(&sid)).await.status, 202);
    let r = cancelled.await.unwrap();
    assert_eq!(r.answer()["error"]["code"], -32800, "{r:?}");
    wait_log(
        &bridge.proc,
        &format!("[code {code}] no longer waits"),
        LIMIT,
    )
    .await;
    assert_eq!(bridge.count("call echo"), 2);
    assert_eq!(bridge.count("call slow"), 0);

    // Calls of other tools are not held.
    let r = c
        .post(
            &tool_call(json!(8), "test_simple_text", json!({})),
            Some(&sid),
        )
        .await;
    assert!(r.answer()["result"].is_object(), "{r:?}");

    let lines = audit_wait(&audit, 8).await;
    for l in &lines {
        check_record(l);
    }
    let outcomes: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["tool"].as_str().unwrap(), l["outcome"].as_str().unwrap()))
        .collect();
    for want in [
        ("echo", "ok"),
        ("echo", "declined"),
        ("echo", "timeout"),
        ("echo", "cancelled"),
        ("slow", "cancelled"),
        ("test_simple_text", "ok"),
    ] {
        assert!(outcomes.contains(&want), "{want:?} missing: {outcomes:?}");
    }
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    let allowed = lines
        .iter()
        .find(|l| l["outcome"] == "ok" && l["tool"] == "echo")
        .unwrap();
    assert!(
        allowed["duration_ms"].as_u64().unwrap() > 0,
        "the wait for approval counts: {allowed}"
    );
    let raw = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !raw.contains("-arg"),
        "argument values in the audit log: {raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_without_a_terminal_or_dashboard_declines() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = Bridge::start(
        BridgeOpts::default()
            .flags(
                "--confirm-tool ech* --confirm-tool slow --confirm-timeout-secs 3 --no-dashboard",
            )
            .args(&["--audit-log", audit.to_str().unwrap()]),
    );
    let c = PolicyClient::of(&bridge);
    for (id, body) in [
        (
            1,
            tool_call(json!(1), "echo", json!({"text": "no terminal"})),
        ),
        (
            2,
            stateless_envelope(tool_call(json!(2), "echo", json!({"text": "no terminal"}))),
        ),
    ] {
        let r = c.post(&body, None).await;
        let result = &r.answer()["result"];
        assert_eq!(result["isError"], true, "{id}: {r:?}");
        assert!(
            text(result).contains("run `bridge run` in a terminal"),
            "{id}: {r:?}"
        );
    }
    wait_log(&bridge.proc, "the bridge has no terminal to ask in", LIMIT).await;
    assert_eq!(bridge.count("call echo"), 0);
    let lines = audit_wait(&audit, 2).await;
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l["outcome"] == "declined"),
        "{lines:?}"
    );
}
