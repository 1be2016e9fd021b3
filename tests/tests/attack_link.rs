//! Attacks on the bridge link (`/<name>/connect`), end to end, and the compatibility of the
//! link's handshake with the previous release in both directions.
//!
//! * Strangers without a token: hundreds of idle upgrades from one address do not keep a
//!   real bridge out, and a 32 MiB first message is cut off instead of buffered (the
//!   relay's resident memory stays bounded).
//! * A bridge of the previous release (no token header, token in its `Hello`) is served by
//!   this relay; this bridge is served by a relay of the previous release (a fake one in
//!   the test: it accepts any upgrade, reads the `Hello` and answers `Welcome`).
//! * A bad token in the upgrade's header gets a plain 401 before any upgrade.
//! * The bridge token is never in a log, even at `RUST_LOG=trace`.
//! * A second connection with a leaked bridge token cannot silently steal a live tunnel:
//!   it is refused (naming the live bridge's address), the live bridge warns its owner
//!   (naming the newcomer's), the owner's status page shows the attempt, and every client
//!   request still reaches the live bridge. A connection that does not answer (half-open,
//!   a frozen bridge) is replaced within the probe's two seconds, and told so, by whom.
//! * A malicious relay cannot grow the bridge's memory with sessionless `GET` streams: past
//!   a cap they are answered with an error (a fake relay opens 300,000 of them).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::{Bridge, BridgeOpts, Relay};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientAuth, Frame, Hello, Limits, Refusal, Request, RequestKind, Welcome};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// Longest wait for a WebSocket message or for the relay to close a socket.
const WS_TIMEOUT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<TcpStream>;

// ----- helpers ------------------------------------------------------------------------------

/// `127.0.0.1:PORT` of a relay started by the harness.
fn addr_of(relay: &Relay) -> SocketAddr {
    relay
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the relay's base URL is http://<ip>:<port>")
}

/// A TCP connection to `to` from the loopback address `from` (every 127.0.0.0/8 address
/// is local on Linux, so one test can act as many client addresses).
async fn tcp_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

/// How an upgrade of `/<name>/connect` went.
enum Upgraded {
    /// `101`: the socket, and the relay's features header.
    Open(Box<Ws>, String),
    /// Refused with this HTTP status.
    Status(u16),
}

/// Opens `/<name>/connect` from `from`, with `token` in the `Authorization` header if any.
async fn upgrade(relay: SocketAddr, from: IpAddr, name: &str, token: Option<&str>) -> Upgraded {
    upgrade_with(relay, from, name, token, None).await
}

/// Like [`upgrade`], announcing `features`.
async fn upgrade_with(
    relay: SocketAddr,
    from: IpAddr,
    name: &str,
    token: Option<&str>,
    features: Option<&str>,
) -> Upgraded {
    let tcp = tcp_from(from, relay)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the relay at {relay} from {from}: {e}"));
    let mut req = format!("ws://{relay}/{name}/connect")
        .into_client_request()
        .expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    if let Some(f) = features {
        req.headers_mut()
            .insert(protocol::FEATURES_HEADER, f.parse().expect("header"));
    }
    match tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::client_async(req, tcp)).await {
        Err(_) => panic!("the upgrade from {from} got no answer within {WS_TIMEOUT:?}"),
        Ok(Ok((ws, resp))) => {
            let features = resp
                .headers()
                .get(protocol::FEATURES_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Upgraded::Open(Box::new(ws), features)
        }
        Ok(Err(tungstenite::Error::Http(resp))) => Upgraded::Status(resp.status().as_u16()),
        Ok(Err(e)) => panic!("the upgrade from {from} failed: {e}"),
    }
}

async fn must_upgrade(
    relay: SocketAddr,
    from: IpAddr,
    name: &str,
    token: Option<&str>,
) -> (Ws, String) {
    match upgrade(relay, from, name, token).await {
        Upgraded::Open(ws, f) => (*ws, f),
        Upgraded::Status(s) => panic!("the upgrade from {from} was refused with HTTP {s}"),
    }
}

fn hello(token: &str, name: &str) -> Bytes {
    Frame::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: "previous-release".into(),
        token: token.into(),
        tunnel: name.into(),
        client_auth: ClientAuth::None,
    })
    .encode()
}

/// The next frame from the peer (pings answered by the caller are skipped); `None` when
/// the socket ended.
async fn next_frame(ws: &mut Ws, what: &str) -> Option<Frame> {
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing for {WS_TIMEOUT:?}"));
        match msg {
            Some(Ok(Message::Binary(b))) => {
                let f = Frame::decode(b, &Limits::default())
                    .unwrap_or_else(|e| panic!("{what}: undecodable frame: {e}"));
                if !matches!(f, Frame::Ping(_)) {
                    return Some(f);
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Text(t))) => panic!("{what}: text message: {t}"),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
        }
    }
}

async fn handshake(ws: &mut Ws, hello: Bytes, what: &str) -> Result<Welcome, Refusal> {
    ws.send(Message::Binary(hello))
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot send the Hello: {e}"));
    match next_frame(ws, what).await {
        Some(Frame::Welcome(w)) => Ok(w),
        Some(Frame::Refused(r)) => Err(r),
        other => panic!("{what}: expected Welcome or Refused, got {other:?}"),
    }
}

/// The resident memory of a process, in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Whether the relay reports a bridge connected for `name` (bearer-less tunnels).
async fn connected(relay: &Relay, name: &str) -> bool {
    let url = format!("{}/status/{name}", relay.base);
    let Ok(resp) = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
    else {
        return false;
    };
    let Ok(v) = resp.json::<Value>().await else {
        return false;
    };
    v["connected"] == json!(true)
}

// ----- strangers without a token --------------------------------------------------------------

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
    let addr = addr_of(&relay);
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
    let (mut ws, features) =
        must_upgrade(addr, ip("127.0.0.1"), "real-one", Some(&relay.token)).await;
    assert!(
        protocol::has_feature(&features, protocol::FEATURE_TOKEN_HEADER),
        "the relay confirms the token header: {features:?}"
    );
    let w = handshake(&mut ws, hello("", "real-one"), "header bridge")
        .await
        .expect("a bridge with a token header is welcomed during the flood");
    assert!(w.mcp_url.ends_with("/real-one/mcp"), "{w:?}");
    drop(ws);

    // A bridge of the previous release from another address still finds a slot.
    let (mut ws, features) = must_upgrade(addr, ip("127.0.0.3"), "old-one", None).await;
    assert!(features.is_empty(), "{features:?}");
    handshake(&mut ws, hello(&relay.token, "old-one"), "old bridge")
        .await
        .expect("a bridge of the previous release is welcomed during the flood");
    drop(ws);

    // And the real bridge connects while the flood goes on.
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("real-bridge".into()),
        no_auth: true,
        ..Default::default()
    });
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
    let addr = addr_of(&relay);
    let pid = relay.proc.pid();
    let before = rss_kib(pid);
    // Twenty strangers, each from an address of its own (so no per-address cap helps).
    let mut tasks = Vec::new();
    for i in 0..N {
        tasks.push(tokio::spawn(async move {
            let from = ip(&format!("127.0.1.{}", 10 + i));
            let (mut ws, _) = must_upgrade(addr, from, "big-hello", None).await;
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
    let mut peak = rss_kib(pid);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
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
    let (mut ws, _) = must_upgrade(addr, ip("127.0.0.1"), "after-big", Some(&relay.token)).await;
    handshake(&mut ws, hello("", "after-big"), "after the attack")
        .await
        .expect("welcome after the attack");
}

#[tokio::test]
async fn bad_header_token_gets_401_before_upgrade() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay);
    match upgrade(addr, ip("127.0.0.1"), "some-name", Some("not-a-token")).await {
        Upgraded::Status(401) => {}
        Upgraded::Status(s) => panic!("a bad token header got HTTP {s}"),
        Upgraded::Open(..) => panic!("a bad token header was upgraded"),
    }
    // A good header with a Hello repeating another (valid-looking) token is refused too.
    let (mut ws, _) = must_upgrade(addr, ip("127.0.0.1"), "some-name", Some(&relay.token)).await;
    let r = handshake(&mut ws, hello("another-token", "some-name"), "mismatch")
        .await
        .expect_err("a Hello whose token differs from the header's is refused");
    assert_eq!(r.reason, protocol::RefuseReason::BadToken, "{r:?}");
}

// ----- compatibility with the previous release ----------------------------------------------

#[tokio::test]
async fn previous_bridge_is_served_by_this_relay() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay);
    // No token header: the previous release sends the token in its Hello only.
    let (mut ws, features) = must_upgrade(addr, ip("127.0.0.1"), "old-bridge", None).await;
    assert!(
        !protocol::has_feature(&features, protocol::FEATURE_TOKEN_HEADER),
        "{features:?}"
    );
    let w = handshake(&mut ws, hello(&relay.token, "old-bridge"), "old bridge")
        .await
        .expect("the previous release's handshake is welcomed");
    assert!(w.mcp_url.ends_with("/old-bridge/mcp"), "{w:?}");
    assert!(connected(&relay, "old-bridge").await);
    // Past the Hello, the whole frame limit applies again: a 1 MiB answer (to an exchange
    // the relay does not know, so it is dropped) keeps the link up.
    let big = Frame::Response(protocol::Response {
        exchange: 12345,
        status: 200,
        session: None,
        flags: protocol::frame::FLAG_FINAL,
        event_id: None,
        body: Bytes::from(vec![b' '; 1 << 20]),
    });
    ws.send(Message::Binary(big.encode())).await.expect("send");
    ws.send(Message::Binary(Frame::Ping(7).encode()))
        .await
        .expect("send");
    let pong = loop {
        match next_frame(&mut ws, "after a large frame").await {
            Some(Frame::Pong(v)) => break v,
            Some(_) => continue,
            None => panic!("the relay dropped the previous release's bridge after a 1 MiB frame"),
        }
    };
    assert_eq!(pong, 7);
    assert!(connected(&relay, "old-bridge").await);
}

/// A relay of the previous release: accepts any upgrade, ignores its headers, reads the
/// `Hello` and checks its token, answers `Welcome`, then sends one request and reports the
/// bridge's answer.
struct PreviousRelay {
    url: String,
    /// The upgrade's `Authorization` header, the Hello's token, and the body of the answer
    /// to a `ping` request.
    seen: tokio::sync::oneshot::Receiver<(Option<String>, String, Bytes)>,
}

impl PreviousRelay {
    async fn start(token: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut auth = None;
            // The callback's error type is tungstenite's own (an HTTP response).
            #[allow(clippy::result_large_err)]
            let callback =
                |req: &tungstenite::handshake::server::Request,
                 resp: tungstenite::handshake::server::Response| {
                    auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    Ok(resp)
                };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
                .await
                .expect("upgrade");
            let Some(Frame::Hello(h)) = next_frame(&mut ws, "previous relay").await else {
                panic!("the bridge sent no Hello");
            };
            if h.token != token {
                let refused = Frame::Refused(Refusal {
                    reason: protocol::RefuseReason::BadToken,
                    message: "unknown token".into(),
                });
                let _ = ws.send(Message::Binary(refused.encode())).await;
                let _ = tx.send((auth, h.token, Bytes::new()));
                return;
            }
            let base = format!("http://{addr}");
            let welcome = Frame::Welcome(Welcome {
                protocol: protocol::PROTOCOL_VERSION,
                relay_version: "0.0.9-previous".into(),
                mcp_url: format!("{base}/{}/mcp", h.tunnel),
                sse_url: format!("{base}/{}/sse", h.tunnel),
            });
            ws.send(Message::Binary(welcome.encode()))
                .await
                .expect("welcome");
            let ping = Frame::Request(Request {
                exchange: 1,
                kind: RequestKind::Post,
                session: None,
                protocol_version: None,
                last_event_id: None,
                principal: "anonymous".into(),
                body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#),
            });
            ws.send(Message::Binary(ping.encode()))
                .await
                .expect("request");
            let body = loop {
                match next_frame(&mut ws, "previous relay").await {
                    Some(Frame::Response(r)) if r.exchange == 1 && r.is_final() => break r.body,
                    Some(_) => continue,
                    None => panic!("the bridge left before answering"),
                }
            };
            let _ = tx.send((auth, h.token, body));
            // Stay up (answering pings) until the test ends.
            while let Some(f) = next_frame(&mut ws, "previous relay").await {
                if let Frame::Ping(v) = f {
                    let _ = ws.send(Message::Binary(Frame::Pong(v).encode())).await;
                }
            }
        });
        Self {
            url: format!("http://{addr}"),
            seen: rx,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_bridge_is_served_by_previous_relay() {
    let token = "previous-relay-token-0123456789".to_owned();
    let fake = PreviousRelay::start(token.clone()).await;
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((fake.url.clone(), token.clone())),
        name: Some("compat".into()),
        no_auth: true,
        ..Default::default()
    });
    assert_eq!(bridge.mcp_url, format!("{}/compat/mcp", fake.url));
    let (auth, hello_token, body) = tokio::time::timeout(WS_TIMEOUT, fake.seen)
        .await
        .expect("the previous relay saw the exchange")
        .expect("report");
    assert_eq!(auth.as_deref(), Some(format!("Bearer {token}").as_str()));
    assert_eq!(
        hello_token, token,
        "without the relay's token-header feature, the Hello carries the token"
    );
    let v: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(v["id"], json!(42), "{v}");
    assert!(v.get("result").is_some(), "{v}");
}

// ----- no token in the logs -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_not_logged_at_trace() {
    let relay = Relay::start(&[]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("traced".into()),
        env: vec![("RUST_LOG".into(), "trace".into())],
        ..Default::default()
    });
    assert!(bridge.mcp_url.ends_with("/traced/mcp"));
    let log = bridge.proc.log_text();
    // The WebSocket library does log (its handshake), only not its frames and headers.
    assert!(
        log.contains("tungstenite"),
        "the bridge logs verbosely: {}",
        &log[..log.len().min(2000)]
    );
    let hex: String = relay.token.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !log.contains(&relay.token),
        "the bridge log holds the token"
    );
    assert!(!log.contains(&hex), "the bridge log holds the token in hex");
}

// ----- a second connection with the same token ------------------------------------------------

/// Signs in to the owner's status page with `secret`; the dashboard's HTML.
async fn status_page(base: &str, secret: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let cookie_of = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(name))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let csrf_of = |html: &str| {
        let from = html.find("name=csrf value=\"").expect("csrf field") + 17;
        html[from..from + html[from..].find('"').expect("end")].to_owned()
    };
    let login = http
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("login page");
    let login_cookie = cookie_of(&login, "relay_login=");
    let csrf = csrf_of(&login.text().await.expect("body"));
    let r = http
        .post(format!("{base}/status"))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body({
            let mut u = reqwest::Url::parse("http://form.invalid/").expect("url");
            u.query_pairs_mut().extend_pairs([
                ("op", "login"),
                ("csrf", csrf.as_str()),
                ("secret", secret),
            ]);
            u.query().unwrap_or("").to_owned()
        })
        .send()
        .await
        .expect("sign-in");
    assert_eq!(r.status().as_u16(), 303, "sign-in");
    let session = cookie_of(&r, "relay_status=");
    http.get(format!("{base}/status"))
        .header("cookie", &session)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("dashboard body")
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

/// Runs the `bridge` binary for `name` with `token` until it exits (within a minute).
async fn run_bridge_until_exit(relay: &str, token: &str, name: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(e2e::bin("bridge"));
    cmd.args([
        "run", "--relay", relay, "--name", name, "--auth", "none", "--",
    ])
    .arg(e2e::bin("mcp-fixture"))
    .env("BRIDGE_TOKEN", token)
    .env("RUST_LOG", "info")
    .env_remove("BRIDGE_CLIENT_TOKEN")
    .env_remove("BRIDGE_RELAY")
    .env_remove("BRIDGE_NAME")
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the second bridge did not exit within 60 s")
        .expect("cannot run bridge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_token_cannot_steal_a_live_tunnel() {
    const N: u64 = 20;
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay);
    let victim = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("victim".into()),
        no_auth: true,
        ..Default::default()
    });

    // The attacker, from another address, with the leaked token.
    let (mut ws, _) = must_upgrade(addr, ip("127.0.0.7"), "victim", Some(&relay.token)).await;
    let stolen = Arc::new(AtomicUsize::new(0));
    let outcome = handshake(&mut ws, hello("", "victim"), "attacker").await;
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
    assert!(
        victim.proc.wait_log("127.0.0.7", Duration::from_secs(10)),
        "the live bridge did not warn about the attempt: {}",
        victim.proc.log_text()
    );
    let log = victim.proc.log_text();
    assert!(
        log.contains("!!! WARNING") && log.contains("tried to take over"),
        "{log}"
    );

    // A second `bridge run` of the same login is refused with a clear message, and stops.
    let second = run_bridge_until_exit(&relay.base, &relay.token, "victim").await;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is served by a live bridge from 127.0.0.1")
            && stderr.contains("another bridge with this bridge token serves"),
        "{stderr}"
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
    let addr = addr_of(&relay);
    // The holder speaks the previous release's protocol by hand: no headers.
    let (mut holder, _) = must_upgrade(addr, ip("127.0.0.1"), "held", None).await;
    handshake(&mut holder, hello(&relay.token, "held"), "holder")
        .await
        .expect("holder welcomed");
    let token = relay.token.clone();
    let newcomer = tokio::spawn(async move {
        match upgrade_with(
            addr,
            ip("127.0.0.8"),
            "held",
            Some(&token),
            Some(protocol::FEATURE_IN_USE),
        )
        .await
        {
            Upgraded::Open(mut ws, _) => handshake(&mut ws, hello("", "held"), "newcomer").await,
            Upgraded::Status(s) => panic!("newcomer upgrade: HTTP {s}"),
        }
    });
    // The holder answers the relay's probe, then gets the warning, and stays connected.
    let warning = loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, holder.next())
            .await
            .expect("the holder heard nothing")
            .expect("the holder's socket ended")
            .expect("socket error");
        let Message::Binary(b) = msg else { continue };
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
    holder
        .send(Message::Binary(Frame::Ping(9).encode()))
        .await
        .expect("ping");
    let pong = loop {
        match next_frame(&mut holder, "after the warning").await {
            Some(Frame::Pong(v)) => break v,
            Some(_) => continue,
            None => panic!("the holder was disconnected by the attempt"),
        }
    };
    assert_eq!(pong, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_replaced_and_told_by_whom() {
    let relay = Relay::start(&[]);
    let addr = addr_of(&relay);
    let (mut silent, _) = must_upgrade(addr, ip("127.0.0.1"), "napping", Some(&relay.token)).await;
    handshake(&mut silent, hello("", "napping"), "silent holder")
        .await
        .expect("welcomed");
    // It never reads again (a half-open connection). A newcomer claims the name.
    let (mut newcomer, _) =
        must_upgrade(addr, ip("127.0.0.9"), "napping", Some(&relay.token)).await;
    let started = Instant::now();
    handshake(&mut newcomer, hello("", "napping"), "newcomer")
        .await
        .expect("the newcomer replaces a connection that does not answer");
    eprintln!("a silent holder was replaced after {:?}", started.elapsed());
    // When the old connection reads again, it learns who took over, then it is closed.
    let farewell = loop {
        match next_frame(&mut silent, "the replaced connection").await {
            Some(Frame::Refused(r)) => break r,
            Some(_) => continue,
            None => panic!("the replaced connection was closed without a word"),
        }
    };
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

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_bridge_is_replaced_by_a_new_one_quickly() {
    let relay = Relay::start(&[]);
    let first = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("laptop".into()),
        no_auth: true,
        ..Default::default()
    });
    // The first bridge is frozen: its connection stays open but nothing answers on it,
    // like a laptop asleep.
    let mut first = first;
    signal(first.proc.pid(), libc::SIGSTOP);
    let started = Instant::now();
    let second = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("laptop".into()),
        no_auth: true,
        ..Default::default()
    });
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

// ----- a malicious relay ----------------------------------------------------------------------

/// A relay that welcomes one bridge and hands its socket to the test.
async fn malicious_relay() -> (String, tokio::sync::oneshot::Receiver<Ws>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let Some(Frame::Hello(h)) = next_frame(&mut ws, "malicious relay").await else {
            panic!("the bridge sent no Hello");
        };
        let welcome = Frame::Welcome(Welcome {
            protocol: protocol::PROTOCOL_VERSION,
            relay_version: "evil".into(),
            mcp_url: format!("http://{addr}/{}/mcp", h.tunnel),
            sse_url: format!("http://{addr}/{}/sse", h.tunnel),
        });
        ws.send(Message::Binary(welcome.encode()))
            .await
            .expect("welcome");
        let _ = tx.send(ws);
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_relay_cannot_grow_the_bridge_with_sessionless_streams() {
    const N: u64 = 300_000;
    let (url, socket) = malicious_relay().await;
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((url, "any-token".into())),
        name: Some("target".into()),
        no_auth: true,
        ..Default::default()
    });
    let ws = tokio::time::timeout(WS_TIMEOUT, socket)
        .await
        .expect("the bridge connected")
        .expect("socket");
    let (mut sink, mut stream) = ws.split();
    // The bridge's first Status frame: it is settled.
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, stream.next())
            .await
            .expect("the bridge said nothing")
            .expect("socket ended")
            .expect("socket error");
        if let Message::Binary(b) = msg
            && let Ok(Frame::Status(_)) = Frame::decode(b, &Limits::default())
        {
            break;
        }
    }
    let pid = bridge.proc.pid();
    let before = rss_kib(pid);

    // Answers are read while requests go out (the bridge pushes back when nobody reads).
    let reader = tokio::spawn(async move {
        let (mut opened, mut refused) = (0u64, 0u64);
        while opened + refused < N {
            let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .expect("the bridge stopped answering")
                .expect("socket ended")
                .expect("socket error");
            let Message::Binary(b) = msg else { continue };
            match Frame::decode(b, &Limits::default()).expect("frame") {
                Frame::Response(r) if r.status == 200 && !r.is_final() => opened += 1,
                Frame::Response(r) if r.status == 503 && r.is_final() => refused += 1,
                _ => {}
            }
        }
        (opened, refused, stream)
    });
    for e in 1..=N {
        let get = Frame::Request(Request {
            exchange: e,
            kind: RequestKind::Get,
            session: None,
            protocol_version: None,
            last_event_id: None,
            principal: "anonymous".into(),
            body: Bytes::new(),
        });
        sink.feed(Message::Binary(get.encode()))
            .await
            .expect("send");
        if e % 1024 == 0 {
            sink.flush().await.expect("flush");
        }
    }
    sink.flush().await.expect("flush");
    let (opened, refused, mut stream) = reader.await.expect("reader");
    let after = rss_kib(pid);
    eprintln!(
        "bridge RSS {before} KiB before, {after} KiB after {N} sessionless GETs \
         ({opened} streams opened, {refused} refused)"
    );
    assert!(opened <= 1024, "{opened} sessionless streams kept open");
    assert_eq!(opened + refused, N);
    assert!(
        after.saturating_sub(before) < 12 * 1024,
        "the bridge grew from {before} KiB to {after} KiB"
    );
    // It still serves.
    let ping = Frame::Request(Request {
        exchange: N + 1,
        kind: RequestKind::Post,
        session: None,
        protocol_version: None,
        last_event_id: None,
        principal: "anonymous".into(),
        body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
    });
    sink.send(Message::Binary(ping.encode()))
        .await
        .expect("send");
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, stream.next())
            .await
            .expect("no answer to the ping")
            .expect("socket ended")
            .expect("socket error");
        let Message::Binary(b) = msg else { continue };
        if let Ok(Frame::Response(r)) = Frame::decode(b, &Limits::default())
            && r.exchange == N + 1
        {
            assert!(r.is_final() && r.status == 200, "{r:?}");
            break;
        }
    }
}
