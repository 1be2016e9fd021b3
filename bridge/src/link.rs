//! The outbound WebSocket to the relay: connect (TLS when the relay URL is https),
//! handshake, pump frames, and reconnect with capped exponential backoff and jitter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientAuth, Frame, Hello, Limits, Refusal, RefuseReason, Welcome};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http};
use tracing::{debug, info, warn};
use url::Url;

/// Interval of bridge → relay pings.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A link silent for this long (three missed pings) is considered dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// A wall-clock jump this much larger than the monotonic clock's means the machine slept.
const SLEEP_JUMP: Duration = Duration::from_secs(3);
/// Longest wait for the TCP/TLS/WebSocket/handshake sequence.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames queued towards the relay.
const OUTBOUND_QUEUE: usize = 1024;
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where and how to connect.
#[derive(Clone)]
pub struct LinkConfig {
    /// Relay base URL (http or https).
    pub relay: Url,
    /// Bridge token.
    pub token: String,
    /// Tunnel name.
    pub tunnel: String,
    /// How clients authenticate.
    pub client_auth: ClientAuth,
    /// TLS settings for https relays.
    pub tls: Arc<rustls::ClientConfig>,
    /// The tunnel publishes a local asset origin (announced as [`protocol::FEATURE_ASSETS`]).
    pub assets: bool,
}

/// What the link reports to the bridge core.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected and welcomed; frames for the relay go to `out`.
    Up {
        /// Queue towards the relay.
        out: mpsc::Sender<Frame>,
        /// The relay's welcome (public URLs).
        welcome: Welcome,
        /// The relay takes [`Frame::ServerHealth`] ([`protocol::FEATURE_SERVER_HEALTH`]).
        server_health: bool,
        /// The relay serves asset requests ([`protocol::FEATURE_ASSETS`]).
        assets: bool,
    },
    /// A frame from the relay.
    Frame(Frame),
    /// The connection ended; a reconnect follows.
    Down,
    /// The relay refused permanently; the bridge should stop.
    Fatal(String),
}

/// Errors of one connection attempt.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Network, TLS or WebSocket failure.
    #[error("{0}")]
    Connect(String),
    /// The relay refused the handshake.
    #[error("the relay refused the tunnel: {}", .0.message)]
    Refused(Refusal),
    /// The relay answered something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// What to do about a permanent refusal, for the person running the bridge.
fn advice(r: &Refusal, config: &LinkConfig) -> String {
    let relay = config.relay.as_str().trim_end_matches('/');
    let name = &config.tunnel;
    match r.reason {
        RefuseReason::BadToken => format!(
            "the relay refused the bridge token: run `bridge login {relay}` again or create one \
             with `relay token create NAME` on the VPS"
        ),
        RefuseReason::NameTaken => format!(
            "the name {name:?} is taken: choose another with --name, or, on the relay, free it \
             with `relay name release {name}`"
        ),
        RefuseReason::BadName => "choose another name with --name".into(),
        RefuseReason::AuthNotAllowed => {
            "use --auth oauth or --auth bearer (or ask the relay's operator)".into()
        }
        RefuseReason::UnsupportedVersion => "install the same version of bridge and relay".into(),
        RefuseReason::Malformed => format!("check that {relay} is an mcp-tunnel relay"),
        RefuseReason::Busy => "retry later".into(),
        RefuseReason::InUse => format!(
            "another bridge with this bridge token serves {name:?} right now (from the address \
             above). If it is yours, stop it first or choose another name with --name; if it is \
             not, the bridge token has leaked: revoke it on the relay (`relay token revoke \
             LABEL`) and log in again with a new one"
        ),
    }
}

/// Describes a failed WebSocket upgrade: which URL, the HTTP status if any, what to check.
pub fn upgrade_error(relay: &Url, e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Http(resp) => format!(
            "the relay at {relay} answered the WebSocket upgrade with HTTP {}: check that this \
             is the relay's base URL, and that a reverse proxy in front of it passes WebSocket \
             upgrades (see deploy/GUIDE.md)",
            resp.status()
        ),
        e => format!("WebSocket upgrade with the relay at {relay} failed: {e}"),
    }
}

/// The WebSocket URL for a tunnel on a relay.
pub fn connect_url(relay: &Url, tunnel: &str) -> Result<Url, LinkError> {
    let mut u = relay.clone();
    let scheme = match relay.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        s => {
            return Err(LinkError::Connect(format!(
                "unsupported relay URL scheme {s:?}: give the relay's http:// or https:// URL"
            )));
        }
    };
    u.set_scheme(scheme)
        .map_err(|_| LinkError::Connect("cannot build the WebSocket URL".into()))?;
    let base = u.path().trim_end_matches('/').to_owned();
    u.set_path(&format!("{base}/{tunnel}/connect"));
    Ok(u)
}

/// Runs the link until a permanent refusal or until `stop` turns true, reporting to
/// `events`. On stop, frames already queued are written before the link closes.
pub async fn run(
    config: LinkConfig,
    events: mpsc::Sender<LinkEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let failure = match connect_once(&config, &events, &mut stop).await {
            Ok(true) => {
                // Welcomed: the next attempt starts from the shortest delay, unless the
                // relay keeps dropping us at once.
                if started.elapsed() > Duration::from_secs(1) {
                    attempt = 0;
                }
                None
            }
            Ok(false) => None,
            Err(LinkError::Refused(r)) if r.reason.is_permanent() => {
                let message = format!("{}\n  {}", r.message, advice(&r, &config));
                let _ = events.send(LinkEvent::Fatal(message)).await;
                return;
            }
            Err(e) => Some(e),
        };
        if events.is_closed() || *stop.borrow() {
            return;
        }
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        match failure {
            Some(e) => {
                warn!(
                    "relay link ({}): {e}; retrying in {:.1} s",
                    config.relay.as_str().trim_end_matches('/'),
                    delay.as_secs_f64()
                );
            }
            None => debug!("reconnecting in {delay:?}"),
        }
        if sleep_unless_resumed(delay).await {
            info!("the machine woke up or its network changed; reconnecting now");
            attempt = 0;
        }
    }
}

/// Notices that the machine slept: the wall clock jumped ahead of the monotonic clock
/// (which stops during suspend).
pub struct WakeDetector {
    wall: std::time::SystemTime,
    mono: Instant,
}

impl Default for WakeDetector {
    fn default() -> Self {
        Self {
            wall: std::time::SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

impl WakeDetector {
    /// `true` if the machine slept since the last call.
    pub fn woke(&mut self) -> bool {
        let (wall, mono) = (std::time::SystemTime::now(), Instant::now());
        let wall_delta = wall.duration_since(self.wall).unwrap_or_default();
        let mono_delta = mono.duration_since(self.mono);
        self.wall = wall;
        self.mono = mono;
        wall_delta > mono_delta + SLEEP_JUMP
    }
}

/// Notices that the machine's network changed (an interface address appeared or went
/// away: a new Wi-Fi, a VPN, a cable), so the link is renewed at once instead of waiting
/// for heartbeats to fail.
pub struct NetWatch {
    last: Vec<String>,
}

impl Default for NetWatch {
    fn default() -> Self {
        Self {
            last: local_addresses(),
        }
    }
}

impl NetWatch {
    /// `true` if the set of local addresses changed since the last call.
    pub fn changed(&mut self) -> bool {
        let now = local_addresses();
        let changed = now != self.last;
        self.last = now;
        changed
    }
}

/// The machine's interface addresses, sorted (empty where this cannot be read).
fn local_addresses() -> Vec<String> {
    #[cfg(unix)]
    {
        let mut out = Vec::new();
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills a list we walk read-only and free exactly once.
        unsafe {
            if libc::getifaddrs(&mut head) != 0 {
                return out;
            }
            let mut cur = head;
            while !cur.is_null() {
                let ifa = &*cur;
                if !ifa.ifa_addr.is_null() {
                    let family = i32::from((*ifa.ifa_addr).sa_family);
                    let addr = if family == libc::AF_INET {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(
                            std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string(),
                        )
                    } else if family == libc::AF_INET6 {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).to_string())
                    } else {
                        None
                    };
                    if let Some(a) = addr {
                        let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
                        out.push(format!("{name}/{a}"));
                    }
                }
                cur = ifa.ifa_next;
            }
            libc::freeifaddrs(head);
        }
        out.sort();
        out
    }
    #[cfg(not(unix))]
    {
        Vec::new()
    }
}

/// Sleeps for `delay`, returning early (`true`) if the machine wakes from sleep or its
/// network changes meanwhile.
async fn sleep_unless_resumed(delay: Duration) -> bool {
    let mut wake = WakeDetector::default();
    let mut net = NetWatch::default();
    let end = tokio::time::Instant::now() + delay;
    loop {
        let now = tokio::time::Instant::now();
        if now >= end {
            return false;
        }
        tokio::time::sleep((end - now).min(Duration::from_secs(1))).await;
        if wake.woke() || net.changed() {
            return true;
        }
    }
}

/// Capped exponential backoff with full jitter: 0.25 s · 2^attempt, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << attempt.min(10));
    let cap = base.min(MAX_BACKOFF);
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let frac = u32::from_le_bytes(r) as f64 / u32::MAX as f64;
    cap.mul_f64(0.5 + frac / 2.0)
}

/// One connection: `Ok(true)` if the relay welcomed it (and it later ended).
async fn connect_once(
    config: &LinkConfig,
    events: &mpsc::Sender<LinkEvent>,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, LinkError> {
    let url = connect_url(&config.relay, &config.tunnel)?;
    let host = url
        .host_str()
        .ok_or_else(|| {
            LinkError::Connect(format!(
                "the relay URL {} has no host: give its base URL, e.g. https://relay.example.com",
                config.relay
            ))
        })?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| {
            LinkError::Connect(format!(
                "connecting to the relay at {host}:{port} timed out (check the URL, DNS and the firewall)"
            ))
        })?
        .map_err(|e| {
            LinkError::Connect(format!(
                "cannot reach the relay at {host}:{port}: {e} (check the URL, DNS and the firewall)"
            ))
        })?;
    let _ = tcp.set_nodelay(true);
    let limits = Limits::default();
    let mut ws_config = WebSocketConfig::default();
    ws_config.max_message_size = Some(limits.max_frame());
    ws_config.max_frame_size = Some(limits.max_frame());
    ws_config.read_buffer_size = 4 * 1024;
    ws_config.write_buffer_size = 64 * 1024;
    let request = upgrade_request(&url, config)?;
    if url.scheme() == "wss" {
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| LinkError::Connect(format!("invalid relay host name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                LinkError::Connect(format!(
                    "TLS with the relay failed: {e} (for a relay with a private CA, pass --ca-file)"
                ))
            })?;
        let (ws, resp) = tokio_tungstenite::client_async_with_config(request, tls, Some(ws_config))
            .await
            .map_err(|e| upgrade_failure(&config.relay, e))?;
        session(ws, relay_features(&resp), config, events, &limits, stop).await
    } else {
        let (ws, resp) = tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config))
            .await
            .map_err(|e| upgrade_failure(&config.relay, e))?;
        session(ws, relay_features(&resp), config, events, &limits, stop).await
    }
}

/// The features this bridge announces in its upgrade request
/// ([`protocol::FEATURE_IN_USE`], [`protocol::FEATURE_SSE_REATTACH`]).
const FEATURES: &str = "in-use, sse-reattach";
/// The same, for a tunnel that publishes a local asset origin ([`protocol::FEATURE_ASSETS`]).
const FEATURES_ASSETS: &str = "in-use, sse-reattach, assets";

/// The upgrade request: the bridge token in `Authorization` (a relay of this release
/// checks it before upgrading; one of an earlier release ignores it and reads the token
/// from the `Hello`), and the features this bridge understands.
fn upgrade_request(
    url: &Url,
    config: &LinkConfig,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, LinkError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    // A token that cannot be a header value goes in the Hello only.
    if let Ok(mut auth) = http::HeaderValue::from_str(&format!("Bearer {}", config.token)) {
        auth.set_sensitive(true);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, auth);
    }
    request.headers_mut().insert(
        protocol::FEATURES_HEADER,
        http::HeaderValue::from_static(if config.assets {
            FEATURES_ASSETS
        } else {
            FEATURES
        }),
    );
    Ok(request)
}

/// The relay's features header from its `101` answer (empty for earlier releases).
fn relay_features(resp: &tokio_tungstenite::tungstenite::handshake::client::Response) -> String {
    resp.headers()
        .get(protocol::FEATURES_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect()
}

/// A failed upgrade: a `401` is the relay refusing the token (permanent); anything else
/// may pass.
fn upgrade_failure(relay: &Url, e: tokio_tungstenite::tungstenite::Error) -> LinkError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match &e {
        WsError::Http(resp) if resp.status() == http::StatusCode::UNAUTHORIZED => {
            LinkError::Refused(Refusal {
                reason: RefuseReason::BadToken,
                message: "the relay does not know this bridge token (or it was revoked)".into(),
            })
        }
        _ => LinkError::Connect(upgrade_error(relay, &e)),
    }
}

async fn session<S>(
    ws: WebSocketStream<S>,
    relay_features: String,
    config: &LinkConfig,
    events: &mpsc::Sender<LinkEvent>,
    limits: &Limits,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    // A relay that checked the token from the upgrade's header does not need it again; one
    // of an earlier release reads it from here.
    let token = if protocol::has_feature(&relay_features, protocol::FEATURE_TOKEN_HEADER) {
        String::new()
    } else {
        config.token.clone()
    };
    let hello = Frame::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: env!("CARGO_PKG_VERSION").to_owned(),
        token,
        tunnel: config.tunnel.clone(),
        client_auth: config.client_auth.clone(),
    });
    sink.send(Message::Binary(hello.encode()))
        .await
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let welcome = loop {
        let msg = tokio::time::timeout(CONNECT_TIMEOUT, stream.next())
            .await
            .map_err(|_| {
                LinkError::Protocol(format!(
                    "no answer to the handshake within {CONNECT_TIMEOUT:?}: is {} an mcp-tunnel relay?",
                    config.relay
                ))
            })?;
        match msg {
            Some(Ok(Message::Binary(b))) => match Frame::decode(b, limits) {
                Ok(Frame::Welcome(w)) => break w,
                Ok(Frame::Refused(r)) => return Err(LinkError::Refused(r)),
                Ok(_) => return Err(LinkError::Protocol("unexpected frame in handshake".into())),
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | None => {
                return Err(LinkError::Protocol(
                    "the relay closed the connection during the handshake (a proxy in front of \
                     it may not pass WebSocket messages)"
                        .into(),
                ));
            }
            Some(Err(e)) => return Err(LinkError::Connect(e.to_string())),
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(OUTBOUND_QUEUE);
    if events
        .send(LinkEvent::Up {
            out: out_tx.clone(),
            welcome,
            server_health: protocol::has_feature(&relay_features, protocol::FEATURE_SERVER_HEALTH),
            assets: protocol::has_feature(&relay_features, protocol::FEATURE_ASSETS),
        })
        .await
        .is_err()
    {
        return Ok(true);
    }
    info!(tunnel = %config.tunnel, "connected to the relay");

    let writer = async move {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    // Shutting down: write what is queued, then close.
                    while let Ok(f) = out_rx.try_recv() {
                        if sink.feed(Message::Binary(f.encode())).await.is_err() { return; }
                    }
                    let _ = sink.flush().await;
                    break;
                }
                f = out_rx.recv() => {
                    let Some(f) = f else { break };
                    if sink.feed(Message::Binary(f.encode())).await.is_err() { break; }
                    let mut n = 0;
                    while n < 256 {
                        let Ok(f) = out_rx.try_recv() else { break };
                        if sink.feed(Message::Binary(f.encode())).await.is_err() { return; }
                        n += 1;
                    }
                    if sink.flush().await.is_err() { break; }
                }
                _ = ping.tick() => {
                    seq += 1;
                    if sink.send(Message::Binary(Frame::Ping(seq).encode())).await.is_err() { break; }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    let reader = async {
        let mut wake = WakeDetector::default();
        let mut net = NetWatch::default();
        let mut wake_tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_heard = Instant::now();
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = wake_tick.tick() => {
                    if wake.woke() {
                        info!("the machine woke up; renewing the relay link");
                        break;
                    }
                    if net.changed() {
                        info!("the network changed; renewing the relay link");
                        break;
                    }
                    if last_heard.elapsed() > IDLE_TIMEOUT {
                        warn!("the relay link has been silent for {IDLE_TIMEOUT:?}; reconnecting");
                        break;
                    }
                    continue;
                }
            };
            last_heard = Instant::now();
            let bytes: Bytes = match msg {
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    warn!("text message from the relay; reconnecting");
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    debug!("relay link error: {e}");
                    break;
                }
            };
            match Frame::decode(bytes, limits) {
                Ok(Frame::Ping(v)) => {
                    let _ = out_tx.try_send(Frame::Pong(v));
                }
                Ok(Frame::Pong(_)) => {}
                Ok(f) => {
                    if events.send(LinkEvent::Frame(f)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    warn!("malformed frame from the relay: {e}; reconnecting");
                    break;
                }
            }
        }
    };
    tokio::pin!(reader);
    tokio::select! {
        _ = writer => {
            // The link broke on the writing side (say, a ping after the machine woke):
            // what the relay sent before closing it, such as a frame saying why and by whom
            // this connection was replaced, may still be waiting to be read.
            let _ = tokio::time::timeout(DRAIN_AFTER_WRITE_ERROR, &mut reader).await;
        },
        _ = &mut reader => {},
    }
    let _ = events.send(LinkEvent::Down).await;
    Ok(true)
}

/// How long frames already received are still read once the link failed to write.
const DRAIN_AFTER_WRITE_ERROR: Duration = Duration::from_secs(1);

/// TLS settings: the system's web PKI roots, or the certificates of a PEM file.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)?;
            let mut rd = std::io::Cursor::new(pem);
            for cert in rustls_pemfile::certs(&mut rd) {
                roots.add(cert?)?;
            }
            if roots.is_empty() {
                anyhow::bail!("{} holds no PEM certificate", path.display());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = connect_url(&Url::parse("https://relay.example.com").unwrap(), "abc").unwrap();
        assert_eq!(u.as_str(), "wss://relay.example.com/abc/connect");
        let u = connect_url(&Url::parse("http://127.0.0.1:8080/pre/").unwrap(), "abc").unwrap();
        assert_eq!(u.as_str(), "ws://127.0.0.1:8080/pre/abc/connect");
        assert!(connect_url(&Url::parse("ftp://x").unwrap(), "abc").is_err());
    }

    #[test]
    fn local_addresses_include_loopback() {
        let a = local_addresses();
        if cfg!(unix) {
            assert!(
                a.iter()
                    .any(|x| x.ends_with("/127.0.0.1") || x.ends_with("/::1")),
                "{a:?}"
            );
        }
        assert!(!NetWatch::default().changed());
    }

    #[test]
    fn announces_its_features() {
        for f in [protocol::FEATURE_IN_USE, protocol::FEATURE_SSE_REATTACH] {
            assert!(protocol::has_feature(FEATURES, f), "{f}");
            assert!(protocol::has_feature(FEATURES_ASSETS, f), "{f}");
        }
        assert!(!protocol::has_feature(FEATURES, protocol::FEATURE_ASSETS));
        assert!(protocol::has_feature(
            FEATURES_ASSETS,
            protocol::FEATURE_ASSETS
        ));
    }

    #[test]
    fn backoff_is_capped() {
        for a in 0..40 {
            assert!(backoff(a) <= MAX_BACKOFF);
        }
        assert!(backoff(0) <= Duration::from_millis(250));
    }
}
