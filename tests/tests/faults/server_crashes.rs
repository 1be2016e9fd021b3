//! The server is killed again and again while calls run, shared and `--isolate`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use e2e::BridgeOpts;
use e2e::process::signal;
use protocol::jsonrpc::{INTERNAL_ERROR, UNAVAILABLE};
use serde_json::json;

use crate::calls::{Endpoint, Got, Session, incident_of};
use crate::load::{
    Call, EchoLoad, assert_all_answered, check_executions, refused_before_running, successes,
};
use crate::stack::{server_pids, settle, stop_bridge};

/// Checks the errors of a run where servers were killed: each is an incident error for a
/// call in flight (the incident id is in the bridge's log), a "starting / being restarted"
/// error for a call made while the server was down, or (`--isolate`) a 404 for a session
/// whose server died. Returns (incident errors, other errors).
fn check_crash_errors(calls: &[Call], log: &str, isolate: bool) -> (usize, usize) {
    let (mut incidents, mut others) = (0, 0);
    for c in calls {
        let Ok(Got::Error {
            status,
            code,
            message,
        }) = &c.got
        else {
            continue;
        };
        if *status == 200 && *code == INTERNAL_ERROR {
            let id = incident_of(message)
                .unwrap_or_else(|| panic!("{}: an error without incident id: {message}", c.text));
            assert!(log.contains(id), "incident {id} is not in the bridge's log");
            incidents += 1;
        } else if (*status == 200 && *code == UNAVAILABLE && refused_before_running(message))
            || (isolate && *status == 404)
        {
            others += 1;
        } else {
            panic!("{}: unexpected error {:?}", c.text, c.got);
        }
    }
    (incidents, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_killed_repeatedly() {
    // A server that was serving is restarted at once (the crash-loop guard only slows
    // down servers that fail to start, or exit over 120 times a minute): one `exit`, then
    // 99 SIGKILLs of the shared server during calls.
    const CRASHES: u64 = 100;
    let mut bridge = BridgeOpts::default()
        .env(&[("FIXTURE_RECORD_ECHO", "1")])
        .start();
    let ep = Endpoint::of(&bridge);
    settle(&ep, 1, "start").await;
    let sessions = [
        Session::must_open(&ep).await,
        Session::must_open(&ep).await,
        Session::must_open(&ep).await,
    ];
    let load = EchoLoad::start(&sessions, 2, Duration::from_secs(20), false);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Crash 1: the server exits in the middle of a call; that call gets an incident error.
    let got = sessions[0]
        .call(
            &json!("exit"),
            "exit",
            json!({"code": 3}),
            Duration::from_secs(10),
        )
        .await;
    match &got {
        Ok(Got::Error { code, message, .. }) if *code == INTERNAL_ERROR => {
            assert!(incident_of(message).is_some(), "{message}")
        }
        other => panic!("the call that made the server exit: {other:?}"),
    }
    let mut last_pid = 0;
    for crash in 1..CRASHES {
        // Wait for the restarted server, then kill it.
        let start = Instant::now();
        let pid = loop {
            let pids = server_pids(&bridge.counts);
            if let [pid] = pids[..]
                && pid != last_pid
            {
                break pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no restart {crash}: servers {pids:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Let it finish starting (and take calls) before killing it.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(signal(pid, libc::SIGKILL), "kill failed");
        last_pid = pid;
    }
    // After the last kill the server comes back (after the backoff) and calls succeed.
    let start = Instant::now();
    while ep.status().await.map(|s| s["bridge"]["restarts"].clone()) != Some(json!(CRASHES)) {
        assert!(start.elapsed() < Duration::from_secs(15), "no last restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (calls, _) = load.finish().await;
    assert_all_answered(&calls);
    assert!(
        !calls.iter().any(|c| matches!(c.got, Ok(Got::ToolError(_)))),
        "tool errors during the kills"
    );
    let log = bridge.proc.log_text();
    let (incidents, others) = check_crash_errors(&calls, &log, false);
    let ran = check_executions(&bridge, &calls);
    let ok = successes(&calls);
    for (i, s) in sessions.iter().enumerate() {
        s.echo_ok(1_000_000 + i as u64, &format!("final-{i}")).await;
    }
    eprintln!(
        "child_killed_repeatedly: {} calls, {ok} answered, {incidents} incident errors, \
         {others} 'retry' errors while restarting, {ran} executed",
        calls.len()
    );
    let st = settle(&ep, 1, "after the kills").await;
    assert_eq!(st["bridge"]["restarts"], json!(CRASHES), "{st}");
    assert_eq!(st["bridge"]["sessions"], json!(sessions.len()), "{st}");
    stop_bridge(&mut bridge, "child_killed_repeatedly").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_children_killed_100_times() {
    const KILLS: usize = 100;
    let mut bridge = BridgeOpts {
        isolate: true,
        ..BridgeOpts::default().env(&[("FIXTURE_RECORD_ECHO", "1")])
    }
    .start();
    let ep = Endpoint::of(&bridge);
    settle(&ep, 0, "start").await;
    let sessions = Session::must_open_many(&ep, 4).await;
    let load = EchoLoad::start(&sessions, 1, Duration::from_secs(20), true);
    let mut killed = HashSet::new();
    let start = Instant::now();
    while killed.len() < KILLS {
        let pids = server_pids(&bridge.counts);
        match pids.iter().find(|p| !killed.contains(*p)) {
            Some(&pid) => {
                assert!(signal(pid, libc::SIGKILL), "kill failed");
                killed.insert(pid);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} kills in 60 s",
            killed.len()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (calls, mut last) = load.finish().await;
    assert_all_answered(&calls);
    let log = bridge.proc.log_text();
    let (incidents, others) = check_crash_errors(&calls, &log, true);
    let ran = check_executions(&bridge, &calls);
    let ok = successes(&calls);
    eprintln!(
        "isolated_children_killed_100_times: {KILLS} kills in {:?}, {} calls, {ok} answered, \
         {incidents} incident errors, {others} other errors, {ran} executed",
        start.elapsed(),
        calls.len()
    );
    // New sessions work; ending every session stops every server.
    for i in 0..4 {
        let s = Session::must_open(&ep).await;
        s.echo_ok(1_000_000 + i, &format!("final-{i}")).await;
        last.push(s);
    }
    for s in &last {
        let status = s.delete().await;
        assert!(status == 200 || status == 404, "DELETE: {status}");
    }
    let st = settle(&ep, 0, "after the kills").await;
    assert_eq!(st["bridge"]["sessions"], json!(0), "{st}");
    assert!(server_pids(&bridge.counts).is_empty());
    stop_bridge(&mut bridge, "isolated kills").await;
}
