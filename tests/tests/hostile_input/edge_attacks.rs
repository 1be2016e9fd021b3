//! Attacks on the relay's edge, each against a real `relay serve` process:
//!
//! - slow clients: connections that trickle their request head are cut off at the header
//!   deadline, bodies at the body deadline, and one address holding many slow
//!   connections under a small file-descriptor limit does not stop another address from
//!   being served;
//! - client addresses: behind a trusted reverse proxy each client (by its
//!   `X-Forwarded-For`) has its own sign-in and authorization limits, so one client cannot
//!   lock out the others; from a peer that is not trusted, a forged header gives no fresh
//!   limits;
//! - the OAuth trace: a flood of token requests naming a tunnel, from clients no grant
//!   ties to it, does not evict the owner's events, and a forged `X-Forwarded-For` is not
//!   recorded as their address;
//! - metrics: a trusted proxy's request never counts as local, and `--metrics-listen`
//!   serves them on an address of their own, not on the main one.
//!
//! Client sockets are bound to other loopback addresses (127.0.0.2, …) to act as other
//! clients: Linux routes all of 127.0.0.0/8 to the loopback interface.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use e2e::fake_bridge::tcp_from;
use e2e::status_page::{csrf_of, dashboard, post_form, sign_in, sign_in_form};
use e2e::{Proc, bin, unused_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `relay serve` on 127.0.0.1 with `args`, optionally with its file-descriptor limit
/// (soft and hard) lowered to `nofile` before it starts.
struct TestRelay {
    proc: Proc,
    addr: SocketAddr,
}

impl TestRelay {
    fn start(args: &[&str], nofile: Option<u64>) -> Self {
        let port = unused_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(bin("relay"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .env(
                "RELAY_BRIDGE_TOKENS",
                "attack-edge-bridge-token-0123456789abcdef",
            )
            .env("RUST_LOG", "info,relay::net::conn=debug")
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
        proc.expect_log(
            "relay listening",
            Duration::from_secs(30),
            "the relay did not start",
        );
        Self { proc, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
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
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(2),
            tcp_from(IpAddr::V4(attacker), relay.addr),
        )
        .await
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

/// A failed sign-in on the status page from `client` (a loopback address), with
/// `X-Forwarded-For: xff` when given: the answer's status.
async fn failed_sign_in(relay: &TestRelay, client: Ipv4Addr, xff: Option<&str>) -> u16 {
    let http = client_from(client);
    let with_xff = |rb: reqwest::RequestBuilder| match xff {
        Some(x) => rb.header("x-forwarded-for", x),
        None => rb,
    };
    let url = relay.url("/status");
    let (cookie, csrf) = sign_in_form(with_xff(http.get(&url))).await;
    let fields = [
        ("op", "login"),
        ("csrf", &csrf),
        ("secret", "not-the-password"),
    ];
    post_form(with_xff(http.post(&url)), &cookie, &fields)
        .await
        .status()
        .as_u16()
}

/// Whether failed sign-ins from `client`, attempt `i` with `X-Forwarded-For: xff(i)`, are
/// limited (answered 429) within 12 attempts.
async fn sign_ins_limited(
    relay: &TestRelay,
    client: Ipv4Addr,
    xff: impl Fn(usize) -> String,
) -> bool {
    until_limited(12, |i| {
        let forged = xff(i);
        async move { failed_sign_in(relay, client, Some(&forged)).await }
    })
    .await
}

/// An authorization request from `client` with `X-Forwarded-For: xff`: the status.
async fn authorize(relay: &TestRelay, client: Ipv4Addr, xff: &str) -> u16 {
    client_from(client)
        .get(relay.url("/oauth/authorize?response_type=code"))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .expect("GET /oauth/authorize")
        .status()
        .as_u16()
}

/// Repeats `attempt(i)` until it answers 429 (at most `max` times): whether it did.
async fn until_limited<F, Fut>(max: usize, mut attempt: F) -> bool
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    for i in 0..max {
        if attempt(i).await == 429 {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_has_its_own_limits() {
    // 127.0.0.1 plays the reverse proxy: it says who the client is.
    let relay = TestRelay::start(&["--trusted-proxy", "127.0.0.1/32"], None);
    let proxy = Ipv4Addr::new(127, 0, 0, 1);
    // Client A uses up its sign-in attempts; its own left-hand entries do not help it.
    let a = "198.51.100.1";
    assert!(
        sign_ins_limited(&relay, proxy, |i| format!("203.0.113.{i}, {a}")).await,
        "client A was never limited: {}",
        relay.proc.log_text()
    );
    assert_eq!(failed_sign_in(&relay, proxy, Some(a)).await, 429);
    // Client B, behind the same proxy, is not locked out.
    assert_eq!(
        failed_sign_in(&relay, proxy, Some("198.51.100.2")).await,
        403,
        "client B is locked out by client A's failures"
    );
    // The same for authorization requests.
    assert!(until_limited(40, |_| authorize(&relay, proxy, a)).await);
    assert_ne!(authorize(&relay, proxy, "198.51.100.2").await, 429);
    // The events of the OAuth trace carry the client's address, not the proxy's.
    let log = relay.proc.log_text();
    assert!(log.contains("198.51.100.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarding_header_gives_no_fresh_limits() {
    // 127.0.0.1 is trusted; the attacker connects from 127.0.0.2, which is not.
    let relay = TestRelay::start(&["--trusted-proxy", "127.0.0.1/32"], None);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    assert!(
        sign_ins_limited(&relay, attacker, |i| format!("198.51.100.{i}")).await,
        "a new X-Forwarded-For per attempt escaped the sign-in limit"
    );
    assert!(
        until_limited(40, |i| {
            let forged = format!("198.51.100.{i}");
            let relay = &relay;
            async move { authorize(relay, attacker, &forged).await }
        })
        .await,
        "a new X-Forwarded-For per attempt escaped the authorization limit"
    );
    // A relay without trusted proxies ignores the header from loopback too.
    let relay = TestRelay::start(&[], None);
    let local = Ipv4Addr::new(127, 0, 0, 1);
    assert!(
        sign_ins_limited(&relay, local, |i| format!("198.51.100.{i}")).await,
        "without trusted proxies, X-Forwarded-For from loopback escaped the sign-in limit"
    );
}

/// Signs in on the status page as the owner of `bridge_token` and revokes a client of
/// `tunnel`: an event of the owner's in the tunnel's OAuth trace.
async fn owner_revokes(relay: &TestRelay, bridge_token: &str, tunnel: &str) {
    let http = e2e::http::client();
    let url = relay.url("/status");
    let session = sign_in(&http, &url, bridge_token).await;
    let csrf = csrf_of(&dashboard(&http, &url, &session).await);
    let fields = [
        ("op", "revoke"),
        ("csrf", &csrf),
        ("tunnel", tunnel),
        ("client_id", "mcpcl_owner_marker"),
    ];
    let revoked = post_form(http.post(&url), &session, &fields).await;
    assert_eq!(revoked.status(), 303, "the owner revokes");
}

/// `relay logs --tunnel NAME --json` of a relay's data directory.
fn trace_of(data_dir: &std::path::Path, tunnel: &str) -> Vec<serde_json::Value> {
    let out = Command::new(bin("relay"))
        .args(["logs", "--json", "--limit", "10000", "--tunnel", tunnel])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("relay logs");
    assert!(out.status.success(), "relay logs: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON event"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_token_requests_do_not_flush_a_tunnels_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let relay = TestRelay::start(&["--data-dir", data.to_str().expect("utf-8")], None);
    let token = "attack-edge-bridge-token-0123456789abcdef";
    // The owner's bridge claims the tunnel; the owner acts on the status page.
    let bridge = e2e::Bridge::start(e2e::BridgeOpts {
        relay: Some((format!("http://{}", relay.addr), token.into())),
        name: Some("victim".into()),
        ..Default::default()
    });
    owner_revokes(&relay, token, "victim").await;
    let before = trace_of(&data, "victim");
    assert!(
        before
            .iter()
            .any(|e| e["client_id"] == "mcpcl_owner_marker"),
        "the owner's event is in the trace: {before:?}"
    );

    // 700 token requests naming the tunnel, without a valid client, from 7 addresses
    // (the trace's per-address budget is 120 a minute), each with a forged address.
    let resource = format!("http://{}/victim/mcp", relay.addr);
    let body = format!(
        "grant_type=authorization_code&code=x&code_verifier=y&client_id=nobody&resource={}",
        resource.replace(':', "%3A").replace('/', "%2F")
    );
    for from in 2..=8u8 {
        let http = client_from(Ipv4Addr::new(127, 0, 0, from));
        for _ in 0..100 {
            let status = http
                .post(relay.url("/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-forwarded-for", "203.0.113.77")
                .body(body.clone())
                .send()
                .await
                .expect("token request")
                .status();
            assert_eq!(status, 401, "an unknown client is refused");
        }
    }
    let after = trace_of(&data, "victim");
    assert!(
        after.iter().any(|e| e["client_id"] == "mcpcl_owner_marker"),
        "the flood evicted the owner's event ({} events left)",
        after.len()
    );
    let flood: Vec<&serde_json::Value> = after
        .iter()
        .filter(|e| e["step"] == "token" && e["client_id"] == "nobody")
        .collect();
    assert!(!flood.is_empty(), "the refusals are still visible");
    assert!(
        flood.iter().all(|e| e["unverified"] == true),
        "token requests no grant ties to the tunnel are unverified"
    );
    assert!(
        after.iter().all(|e| e["ip"] != "203.0.113.77"),
        "a forged X-Forwarded-For was recorded as the client's address"
    );
    assert!(
        flood.iter().any(|e| e["ip"] == "127.0.0.8"),
        "the events carry the peer's address (the newest ones are kept)"
    );
    drop(bridge);
}

/// `GET path` on `addr` with `Host: host`: the status and the body.
async fn get_with_host(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let r = client_from(Ipv4Addr::new(127, 0, 0, 1))
        .get(format!("http://{addr}{path}"))
        .header("host", host)
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_local_through_a_trusted_proxy_and_have_their_own_address() {
    // Local requests may scrape, but not through the trusted proxy (here 127.0.0.1,
    // which sends no forwarding header and Host: localhost, as a careless proxy would).
    let relay = TestRelay::start(&["--metrics", "--trusted-proxy", "127.0.0.1/32"], None);
    let (status, body) = get_with_host(relay.addr, "/metrics", "localhost").await;
    assert_eq!(
        status, 403,
        "a trusted proxy's request looked local: {body}"
    );
    let mut local = relay.addr;
    local.set_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    let from_other = client_from(Ipv4Addr::new(127, 0, 0, 2))
        .get(format!("http://{local}/metrics"))
        .send()
        .await
        .expect("GET");
    assert_eq!(from_other.status(), 200, "a local scraper that is no proxy");

    // With --metrics-listen, /metrics is served there, and not on the main address.
    let metrics_port = unused_port();
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let relay = TestRelay::start(&["--metrics-listen", &metrics_addr.to_string()], None);
    let (status, body) = get_with_host(metrics_addr, "/metrics", "anything").await;
    assert!(status == 200 && body.contains("# TYPE"), "{status} {body}");
    let (status, _) = get_with_host(metrics_addr, "/status", "localhost").await;
    assert_eq!(status, 404, "the metrics address serves nothing else");
    let (status, body) = get_with_host(relay.addr, "/metrics", "localhost").await;
    assert_eq!(status, 404, "main address: {body}");
}
