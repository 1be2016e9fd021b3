//! Attacks on the relay's edge, each against a real `relay serve` process:
//!
//! - slow clients: connections that trickle their request head are cut off at the header
//!   deadline, bodies at the body deadline, and one address holding many slow
//!   connections under a small file-descriptor limit does not stop another address from
//!   being served.
//!
//! Client sockets are bound to other loopback addresses (127.0.0.2, …) to act as other
//! clients: Linux routes all of 127.0.0.0/8 to the loopback interface.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use e2e::{Proc, bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `relay serve` on 127.0.0.1 with `args`, optionally with its file-descriptor limit
/// (soft and hard) lowered to `nofile` before it starts.
struct TestRelay {
    proc: Proc,
    addr: SocketAddr,
}

impl TestRelay {
    fn start(args: &[&str], nofile: Option<u64>) -> Self {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(bin("relay"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .env("RELAY_BRIDGE_TOKENS", "attack-edge-bridge-token")
            .env("RUST_LOG", "info,relay::conn=debug")
            .env_remove("RELAY_CONFIG")
            .env_remove("RELAY_DATA_DIR");
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
            #[allow(clippy::unnecessary_cast)]
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let proc = Proc::start(cmd, "relay");
        assert!(
            proc.wait_log("relay listening", Duration::from_secs(30)),
            "the relay did not start: {}",
            proc.log_text()
        );
        Self { proc, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// An HTTP client whose connections come from `from`.
fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Sends `prefix`, then one more byte of `trickle` every 200 ms, until the relay answers
/// or closes the connection (true), or `trickle` runs out (false).
async fn trickle_until_cut(to: SocketAddr, prefix: &[u8], trickle: &[u8]) -> bool {
    let mut s = TcpStream::connect(to).await.expect("connect");
    s.write_all(prefix).await.expect("write the prefix");
    let mut buf = [0u8; 1024];
    for b in trickle {
        if s.write_all(&[*b]).await.is_err() {
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Err(_) => continue,
            // An answer (e.g. 408 or 400) or the end of the connection.
            Ok(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_slowly_is_cut_off() {
    let relay = TestRelay::start(&["--header-timeout-secs", "1"], None);
    // 100 bytes at one every 200 ms: 20 s, far past the 1 s deadline.
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ".to_vec();
    let trickle = vec![b'a'; 100];
    assert!(
        trickle_until_cut(relay.addr, &head, &trickle).await,
        "a request head trickled for 20 s was not cut off: {}",
        relay.proc.log_text()
    );
    // A connection that sends nothing at all is closed too.
    let mut idle = TcpStream::connect(relay.addr).await.expect("connect");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a silent connection stayed open for 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_sent_slowly_is_cut_off() {
    let relay = TestRelay::start(&["--body-timeout-secs", "1"], None);
    for path in ["/oauth/token", "/oauth/register", "/status"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type="
        );
        let trickle = vec![b'a'; 100];
        assert!(
            trickle_until_cut(relay.addr, head.as_bytes(), &trickle).await,
            "a body trickled to {path} for 20 s was not cut off: {}",
            relay.proc.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_from_one_address_do_not_lock_out_another() {
    // 256 descriptors; the header deadline far away, so only the connection caps can
    // keep the relay serving.
    let relay = TestRelay::start(&["--header-timeout-secs", "600"], Some(256));
    let attacker = Ipv4Addr::new(127, 0, 0, 1);
    let mut held = Vec::new();
    for _ in 0..300 {
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), connect_from(attacker, relay.addr)).await
        else {
            continue;
        };
        // One byte of a request head, never finished.
        if s.write_all(b"G").await.is_ok() {
            held.push(s);
        }
    }
    let health = client_from(Ipv4Addr::new(127, 0, 0, 2))
        .get(relay.url("/healthz"))
        .send()
        .await;
    let log = relay.proc.log_text();
    match health {
        Ok(r) => assert_eq!(r.status(), 200, "{log}"),
        Err(e) => panic!(
            "with 300 slow connections from {attacker} the relay no longer serves 127.0.0.2: \
             {e}\n{log}"
        ),
    }
    assert!(
        log.contains("per-address"),
        "the relay says why it closed connections: {log}"
    );
    drop(held);
}
