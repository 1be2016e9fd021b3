//! Bridges made by hand: the relay's `/<name>/connect` WebSocket spoken frame by frame, for
//! what the real bridge never sends (wrong tokens, garbage, an older release's handshake,
//! a frozen or hostile peer).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientAuth, Frame, Hello, Limits, Refusal, Request, RequestKind, Welcome};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// A WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Longest wait for a WebSocket message or for the peer to close a socket.
pub const WS_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `to` from the loopback address `from` (every 127.0.0.0/8 address
/// is local on Linux, so one test can act as many client addresses).
pub async fn tcp_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// How an upgrade of `/<name>/connect` went.
pub enum Upgraded {
    /// `101`: the socket, and the relay's features header.
    Open(Box<Ws>, String),
    /// Refused with this HTTP status.
    Status(u16),
}

impl Upgraded {
    /// The upgrade that must have succeeded: the socket and the relay's features header.
    pub fn opened(self) -> (Ws, String) {
        match self {
            Upgraded::Open(ws, f) => (*ws, f),
            Upgraded::Status(s) => panic!("the upgrade was refused with HTTP {s}"),
        }
    }
}

/// Opens `/<name>/connect` on `relay` from `from`, with `token` in the `Authorization`
/// header and `features` announced, if any.
pub async fn upgrade(
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

/// [`upgrade`] without features, which must succeed: the socket and the relay's features
/// header.
pub async fn open_link(
    relay: SocketAddr,
    from: IpAddr,
    name: &str,
    token: Option<&str>,
) -> (Ws, String) {
    upgrade(relay, from, name, token, None).await.opened()
}

/// A relay of the test's own on 127.0.0.1 that accepts one connection and hands it, with
/// its own address, to `serve` on a task: the relay's `http://` URL.
pub async fn fake_relay<F, Fut>(serve: F) -> String
where
    F: FnOnce(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        serve(tcp, addr).await;
    });
    format!("http://{addr}")
}

/// Opens `/<name>/connect` on the relay at `addr` (`host:port`) without headers.
pub async fn ws_connect(addr: &str, name: &str) -> Ws {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the relay at {addr}: {e}"));
    let url = format!("ws://{addr}/{name}/connect");
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap_or_else(|e| panic!("WebSocket upgrade of {url} failed: {e}"));
    ws
}

/// An encoded `Hello` of the current wire protocol from a bridge calling itself `version`.
pub fn hello_from(version: &str, token: &str, name: &str, client_auth: ClientAuth) -> Bytes {
    Frame::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: version.into(),
        token: token.into(),
        tunnel: name.into(),
        client_auth,
    })
    .encode()
}

/// The `Welcome` a relay calling itself `version` at `base` (`http://host:port`) answers
/// a bridge of `tunnel` with.
pub fn welcome(version: &str, base: &str, tunnel: &str) -> Frame {
    Frame::Welcome(Welcome {
        protocol: protocol::PROTOCOL_VERSION,
        relay_version: version.into(),
        mcp_url: format!("{base}/{tunnel}/mcp"),
        sse_url: format!("{base}/{tunnel}/sse"),
    })
}

/// A relay's request `exchange` without a session, from the anonymous principal: a `POST`
/// of `body`, or a `GET` when `body` is `None`.
pub fn anonymous_request(exchange: u64, body: Option<&'static [u8]>) -> Frame {
    Frame::Request(Request {
        exchange,
        kind: if body.is_some() {
            RequestKind::Post
        } else {
            RequestKind::Get
        },
        session: None,
        protocol_version: None,
        last_event_id: None,
        principal: "anonymous".into(),
        body: body.map(Bytes::from_static).unwrap_or_default(),
    })
}

/// Sends one frame.
pub async fn send_frame(ws: &mut Ws, frame: Frame, what: &str) {
    ws.send(Message::Binary(frame.encode()))
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot send a frame: {e}"));
}

/// The next frame from the peer (its pings skipped); `None` when the socket ended.
pub async fn next_frame(ws: &mut Ws, what: &str) -> Option<Frame> {
    loop {
        let msg = tokio::time::timeout(WS_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: the peer said nothing for {WS_TIMEOUT:?}"));
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

/// Reads frames until `pick` takes one: what it made of it, `None` when the socket ended
/// first.
pub async fn until_frame<T>(
    ws: &mut Ws,
    what: &str,
    mut pick: impl FnMut(Frame) -> Option<T>,
) -> Option<T> {
    while let Some(f) = next_frame(ws, what).await {
        if let Some(t) = pick(f) {
            return Some(t);
        }
    }
    None
}

/// Sends `Ping(value)` and reads frames until a `Pong`: its value, `None` when the socket
/// ended first.
pub async fn ping(ws: &mut Ws, value: u64, what: &str) -> Option<u64> {
    send_frame(ws, Frame::Ping(value), what).await;
    until_frame(ws, what, |f| match f {
        Frame::Pong(v) => Some(v),
        _ => None,
    })
    .await
}

/// The next binary message of a socket's read half within `wait`; panics with `what` when
/// none comes, the socket ends or fails.
pub async fn next_binary<S>(stream: &mut S, wait: Duration, what: &str) -> Bytes
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(wait, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing within {wait:?}"))
            .unwrap_or_else(|| panic!("{what}: the socket ended"))
            .unwrap_or_else(|e| panic!("{what}: socket error {e}"));
        if let Message::Binary(b) = msg {
            return b;
        }
    }
}

/// Sends the `Hello` of a bridge of the previous release (`previous-release`, no client
/// authentication) for `name` with `token` (empty when it went in the upgrade's header);
/// the relay's `Welcome` or `Refused`.
pub async fn previous_release_hello(
    ws: &mut Ws,
    token: &str,
    name: &str,
    what: &str,
) -> Result<Welcome, Refusal> {
    let hello = hello_from("previous-release", token, name, ClientAuth::None);
    handshake(ws, hello, what).await
}

/// Sends a `Hello`; the relay's `Welcome` or `Refused`.
pub async fn handshake(ws: &mut Ws, hello: Bytes, what: &str) -> Result<Welcome, Refusal> {
    ws.send(Message::Binary(hello))
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot send the Hello: {e}"));
    match next_frame(ws, what).await {
        Some(Frame::Welcome(w)) => Ok(w),
        Some(Frame::Refused(r)) => Err(r),
        other => panic!("{what}: expected Welcome or Refused, got {other:?}"),
    }
}
