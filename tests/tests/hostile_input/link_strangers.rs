//! Strangers without a token on the bridge link: hundreds of idle upgrades from one address
//! do not keep a real bridge out, a 32 MiB first message is cut off instead of buffered (the
//! relay's resident memory stays bounded), and a bad token in the upgrade's header gets a
//! plain 401 before any upgrade.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::fake_bridge::{
    Upgraded, WS_TIMEOUT, Ws, open_link, previous_release_hello, tcp_from, upgrade,
};
use e2e::process::proc_kib;
use e2e::{BridgeOpts, Relay, addr_of};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{connected, ip};

/// Upgrades without a token that never send a `Hello`, kept open and reopened when the
/// relay drops them, from `from`, until `stop`. Counts the upgrades the relay accepted.
fn idle_flood(
    relay: SocketAddr,
    from: IpAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            tokio::spawn(async move {
                // Each worker holds one upgrade at a time; refused ones give up (they
                // would only add load), accepted ones come back as soon as they drop.
                for _ in 0..100 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = tcp_from(from, relay).await else {
                        return;
                    };
                    let url = format!("ws://{relay}/flood-name/connect");
                    match tokio_tungstenite::client_async(url.as_str(), tcp).await {
                        Ok((mut ws, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            // Silent until the relay gives up on us (or the test ends).
                            loop {
                                if stop.load(Ordering::SeqCst) {
                                    return;
                                }
                                match tokio::time::timeout(Duration::from_millis(500), ws.next())
                                    .await
                                {
                                    Ok(Some(Ok(_))) | Err(_) => {}
                                    Ok(_) => break,
                                }
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upgrades_do_not_lock_bridges_out() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let flood = idle_flood(addr, ip("127.0.0.2"), 300, stop.clone(), accepted.clone());
    // Wait until every worker has its answer: accepted ones hold their socket.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10)
        && flood.iter().filter(|h| h.is_finished()).count() + accepted.load(Ordering::SeqCst) < 300
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = accepted.load(Ordering::SeqCst);
    eprintln!("idle upgrades without a token accepted from one address: {held} of 300");
    assert!(
        held < 256,
        "one address holds {held} pending handshakes: every relay-wide slot"
    );

    // A bridge of this release proves its token in the upgrade: it needs no slot.
    let (mut ws, features) = open_link(addr, ip("127.0.0.1"), "real-one", Some(&relay.token)).await;
    assert!(
        protocol::has_feature(&features, protocol::FEATURE_TOKEN_HEADER),
        "the relay confirms the token header: {features:?}"
    );
    let w = previous_release_hello(&mut ws, "", "real-one", "header bridge")
        .await
        .expect("a bridge with a token header is welcomed during the flood");
    assert!(w.mcp_url.ends_with("/real-one/mcp"), "{w:?}");
    drop(ws);

    // A bridge of the previous release from another address still finds a slot.
    let (mut ws, features) = open_link(addr, ip("127.0.0.3"), "old-one", None).await;
    assert!(
        !protocol::has_feature(&features, protocol::FEATURE_TOKEN_HEADER),
        "no token was checked: {features:?}"
    );
    previous_release_hello(&mut ws, &relay.token, "old-one", "old bridge")
        .await
        .expect("a bridge of the previous release is welcomed during the flood");
    drop(ws);

    // And the real bridge connects while the flood goes on.
    let bridge = BridgeOpts::default()
        .via(&relay)
        .name("real-bridge")
        .no_auth()
        .start();
    assert!(
        bridge.mcp_url.ends_with("/real-bridge/mcp"),
        "{}",
        bridge.mcp_url
    );
    assert!(connected(&relay, "real-bridge").await);
    assert!(
        flood.iter().any(|h| !h.is_finished()),
        "the flood was still holding sockets when the bridge connected"
    );
    stop.store(true, Ordering::SeqCst);
    for h in flood {
        let _ = h.await;
    }
}

/// Writes the start of one masked binary WebSocket frame announcing `len` payload bytes,
/// then `len - 1` bytes of it (the message never completes), until the peer stops reading.
/// Returns how many payload bytes were written.
async fn write_huge_message(ws: &mut Ws, len: u64) -> u64 {
    let tcp = ws.get_mut();
    let mut head = vec![0x82u8, 0x80 | 127];
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]); // mask key 0: the payload is sent as is
    if tcp.write_all(&head).await.is_err() {
        return 0;
    }
    // A Hello type byte and junk.
    let mut chunk = vec![0u8; 1 << 20];
    chunk[0] = 1;
    let mut sent = 0u64;
    while sent < len - 1 {
        let n = (len - 1 - sent).min(chunk.len() as u64) as usize;
        match tokio::time::timeout(WS_TIMEOUT, tcp.write_all(&chunk[..n])).await {
            Ok(Ok(())) => sent += n as u64,
            _ => break,
        }
        chunk[0] = 0;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_first_messages_are_not_buffered() {
    const N: usize = 20;
    const LEN: u64 = 32 << 20;
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    let pid = relay.proc.pid();
    let before = proc_kib(pid, "VmRSS");
    // Twenty strangers, each from an address of its own (so no per-address cap helps).
    let mut tasks = Vec::new();
    for i in 0..N {
        tasks.push(tokio::spawn(async move {
            let from = ip(&format!("127.0.1.{}", 10 + i));
            let (mut ws, _) = open_link(addr, from, "big-hello", None).await;
            let sent = write_huge_message(&mut ws, LEN).await;
            (ws, sent)
        }));
    }
    let mut sockets = Vec::new();
    let mut sent_total = 0;
    for t in tasks {
        let (ws, sent) = t.await.expect("task");
        sent_total += sent;
        sockets.push(ws);
    }
    // Whatever the relay read is in its memory now (the sockets stay open); take the
    // highest reading of a short window, as the relay may still be reading.
    let mut peak = proc_kib(pid, "VmRSS");
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(proc_kib(pid, "VmRSS"));
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "relay RSS {before} KiB before, {peak} KiB with {N} pending 32 MiB first messages \
         (+{grown_mib} MiB); the strangers got {} MiB written before being cut off",
        sent_total >> 20
    );
    assert!(
        grown_mib < 100,
        "the relay grew by {grown_mib} MiB buffering first messages of strangers"
    );
    // The relay dropped them.
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        let tcp = ws.get_mut();
        let ended = loop {
            match tokio::time::timeout(WS_TIMEOUT, tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        assert!(ended, "stranger {i}: the relay kept the connection");
    }
    // A real bridge is still served.
    let (mut ws, _) = open_link(addr, ip("127.0.0.1"), "after-big", Some(&relay.token)).await;
    previous_release_hello(&mut ws, "", "after-big", "after the attack")
        .await
        .expect("welcome after the attack");
}

#[tokio::test]
async fn bad_header_token_gets_401_before_upgrade() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay.base);
    match upgrade(
        addr,
        ip("127.0.0.1"),
        "some-name",
        Some("not-a-token"),
        None,
    )
    .await
    {
        Upgraded::Status(401) => {}
        Upgraded::Status(s) => panic!("a bad token header got HTTP {s}"),
        Upgraded::Open(..) => panic!("a bad token header was upgraded"),
    }
    // A good header with a Hello repeating another (valid-looking) token is refused too.
    let (mut ws, _) = open_link(addr, ip("127.0.0.1"), "some-name", Some(&relay.token)).await;
    let r = previous_release_hello(&mut ws, "another-token", "some-name", "mismatch")
        .await
        .expect_err("a Hello whose token differs from the header's is refused");
    assert_eq!(r.reason, protocol::RefuseReason::BadToken, "{r:?}");
}
