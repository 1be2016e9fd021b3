//! A second connection with a leaked bridge token cannot silently steal a live tunnel: it
//! is refused (naming the live bridge's address), the live bridge warns its owner (naming
//! the newcomer's), the owner's status page shows the attempt, and every client request
//! still reaches the live bridge. A connection that does not answer (half-open, a frozen
//! bridge) is replaced within the probe's two seconds, and told so, by whom.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::bridge::{assert_refused_exit, run_until_exit};
use e2e::fake_bridge::{
    Upgraded, WS_TIMEOUT, next_binary, next_frame, open_link, ping, previous_release_hello,
    until_frame, upgrade,
};
use e2e::process::signal;
use e2e::status_page::{dashboard, sign_in};
use e2e::{BridgeOpts, Relay, addr_of};
use futures_util::{SinkExt, StreamExt};
use protocol::{Frame, Limits};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::ip;

/// Signs in to the owner's status page with `secret`; the dashboard's HTML.
async fn status_page(base: &str, secret: &str) -> String {
    let http = e2e::http::client();
    let url = format!("{base}/status");
    let session = sign_in(&http, &url, secret).await;
    dashboard(&http, &url, &session).await
}

/// Calls the fixture's `echo` through the tunnel at `mcp_url` (no session); whether it was
/// answered with the text.
async fn echo(http: &reqwest::Client, mcp_url: &str, id: u64) -> bool {
    let text = format!("call-{id}");
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":text}}});
    let Ok(resp) = http
        .post(mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return false;
    };
    resp.text().await.is_ok_and(|t| t.contains(&text))
}

/// Runs the `bridge` binary (`--auth none`) for `name` with `token` until it exits
/// (within a minute).
async fn run_bridge_until_exit(relay: &str, token: &str, name: &str) -> std::process::Output {
    run_until_exit(relay, token, name, &["--auth", "none"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_token_cannot_steal_a_live_tunnel() {
    const N: u64 = 20;
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    let victim = BridgeOpts::default()
        .via(&relay)
        .name("victim")
        .no_auth()
        .start();

    // The attacker, from another address, with the leaked token.
    let (mut ws, _) = open_link(addr, ip("127.0.0.7"), "victim", Some(&relay.token)).await;
    let stolen = Arc::new(AtomicUsize::new(0));
    let outcome = previous_release_hello(&mut ws, "", "victim", "attacker").await;
    // Whatever happened, count what the attacker's socket receives from now on.
    let attacker = {
        let stolen = stolen.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await
            {
                match msg {
                    Ok(Message::Binary(b)) => {
                        if let Ok(Frame::Request(_)) = Frame::decode(b, &Limits::default()) {
                            stolen.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
    };
    let refusal = outcome.expect_err("a second connection took over a live tunnel");
    assert_eq!(
        refusal.reason,
        protocol::RefuseReason::NameTaken,
        "{refusal:?}"
    );
    assert!(
        refusal.message.contains("live bridge from 127.0.0.1"),
        "the refusal names the live bridge's address: {}",
        refusal.message
    );

    // The victim's owner is warned, with the attacker's address.
    victim.proc.expect_log(
        "127.0.0.7",
        Duration::from_secs(10),
        "the live bridge did not warn about the attempt",
    );
    let log = victim.proc.log_text();
    assert!(
        log.contains("!!! WARNING") && log.contains("tried to take over"),
        "{log}"
    );

    // A second `bridge run` of the same login is refused with a clear message, and stops.
    let second = run_bridge_until_exit(&relay.base, &relay.token, "victim").await;
    let stderr = assert_refused_exit(
        &second,
        &[
            "is served by a live bridge from 127.0.0.1",
            "another bridge with this bridge token serves",
        ],
    );
    assert_eq!(
        stderr.matches("refused this tunnel").count(),
        1,
        "one attempt, no retry loop: {stderr}"
    );

    // Every client request still reaches the victim.
    let http = reqwest::Client::new();
    let mut answered = 0;
    for id in 1..=N {
        if echo(&http, &victim.mcp_url, id).await {
            answered += 1;
        }
    }
    assert_eq!(answered, N, "calls answered through the tunnel");
    assert_eq!(victim.count("call echo"), N as usize);
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "requests reached the attacker"
    );
    attacker.abort();

    // The owner's status page shows the attempt.
    let page = status_page(&relay.base, &relay.token).await;
    assert!(page.contains("Takeover attempts"), "{page}");
    assert!(page.contains("<td>127.0.0.7</td>"), "{page}");
    assert!(
        page.contains("refused: the connected bridge answered"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_bridge_tolerates_the_takeover_warning() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    // The holder speaks the previous release's protocol by hand: no headers.
    let (mut holder, _) = open_link(addr, ip("127.0.0.1"), "held", None).await;
    previous_release_hello(&mut holder, &relay.token, "held", "holder")
        .await
        .expect("holder welcomed");
    let token = relay.token.clone();
    let newcomer = tokio::spawn(async move {
        match upgrade(
            addr,
            ip("127.0.0.8"),
            "held",
            Some(&token),
            Some(protocol::FEATURE_IN_USE),
        )
        .await
        {
            Upgraded::Open(mut ws, _) => {
                previous_release_hello(&mut ws, "", "held", "newcomer").await
            }
            Upgraded::Status(s) => panic!("newcomer upgrade: HTTP {s}"),
        }
    });
    // The holder answers the relay's probe, then gets the warning, and stays connected.
    let warning = loop {
        let b = next_binary(&mut holder, WS_TIMEOUT, "the holder").await;
        match Frame::decode(b, &Limits::default()).expect("frame") {
            Frame::Ping(v) => holder
                .send(Message::Binary(Frame::Pong(v).encode()))
                .await
                .expect("pong"),
            Frame::Refused(r) => break r,
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert_eq!(
        warning.reason,
        protocol::RefuseReason::NameTaken,
        "a code the previous release decodes"
    );
    assert!(warning.message.contains("127.0.0.8"), "{warning:?}");
    let refused = newcomer
        .await
        .expect("task")
        .expect_err("the newcomer is refused");
    assert_eq!(
        refused.reason,
        protocol::RefuseReason::InUse,
        "a bridge that announces the feature gets the precise reason"
    );
    let pong = ping(&mut holder, 9, "after the warning").await;
    assert_eq!(pong, Some(9), "the holder was disconnected by the attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_replaced_and_told_by_whom() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    let (mut silent, _) = open_link(addr, ip("127.0.0.1"), "napping", Some(&relay.token)).await;
    previous_release_hello(&mut silent, "", "napping", "silent holder")
        .await
        .expect("welcomed");
    // It never reads again (a half-open connection). A newcomer claims the name.
    let (mut newcomer, _) = open_link(addr, ip("127.0.0.9"), "napping", Some(&relay.token)).await;
    let started = Instant::now();
    previous_release_hello(&mut newcomer, "", "napping", "newcomer")
        .await
        .expect("the newcomer replaces a connection that does not answer");
    eprintln!("a silent holder was replaced after {:?}", started.elapsed());
    // When the old connection reads again, it learns who took over, then it is closed.
    let farewell = until_frame(&mut silent, "the replaced connection", |f| match f {
        Frame::Refused(r) => Some(r),
        _ => None,
    })
    .await
    .expect("the replaced connection was closed without a word");
    assert!(
        farewell
            .message
            .contains("taken over by a bridge from 127.0.0.9"),
        "{farewell:?}"
    );
    assert!(
        next_frame(&mut silent, "after the farewell")
            .await
            .is_none()
    );
    let page = status_page(&relay.base, &relay.token).await;
    assert!(page.contains("replaced the connected bridge"), "{page}");
    assert!(page.contains("<td>127.0.0.9</td>"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_bridge_is_replaced_by_a_new_one_quickly() {
    let relay = Relay::start(&[]);
    let first = BridgeOpts::default()
        .via(&relay)
        .name("laptop")
        .no_auth()
        .start();
    // The first bridge is frozen: its connection stays open but nothing answers on it,
    // like a laptop asleep.
    let mut first = first;
    signal(first.proc.pid(), libc::SIGSTOP);
    let started = Instant::now();
    let second = BridgeOpts::default()
        .via(&relay)
        .name("laptop")
        .no_auth()
        .start();
    let took = started.elapsed();
    eprintln!("a new bridge took over a frozen bridge's tunnel {took:?} after it started");
    assert!(
        relay
            .proc
            .log_text()
            .contains("did not answer a probe; a new connection replaced it"),
        "the takeover came from the probe (not from the idle timeout): {}",
        relay.proc.log_text()
    );
    let http = reqwest::Client::new();
    assert!(echo(&http, &second.mcp_url, 1).await);
    assert_eq!(second.count("call echo"), 1);

    // The frozen bridge wakes: it is told who took over, tries once more, is refused
    // because the new one is alive, and stops with a clear message.
    signal(first.proc.pid(), libc::SIGCONT);
    assert_eq!(
        first.proc.wait_exit(Duration::from_secs(60)),
        Some(2),
        "{}",
        first.proc.log_text()
    );
    let log = first.proc.log_text();
    assert!(
        log.contains("taken over by a bridge from 127.0.0.1"),
        "the woken bridge says who took over: {log}"
    );
    assert!(log.contains("is served by a live bridge"), "{log}");
    assert!(echo(&http, &second.mcp_url, 2).await);
    assert_eq!(second.count("call echo"), 2);
    assert_eq!(first.count("call echo"), 0);
}
