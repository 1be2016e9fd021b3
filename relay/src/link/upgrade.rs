//! The bridge socket's WebSocket upgrade (`GET /<name>/connect`).
//!
//! A bridge proves its token before anything is upgraded: the upgrade request carries it
//! in `Authorization: Bearer <token>` ([`protocol::TOKEN_HEADER`]); an unknown token gets
//! a plain `401` and no socket. Upgrades without that header come from bridges of earlier
//! releases, which send the token in their `Hello` only: they are still served, but each
//! address may have only [`MAX_PENDING_PER_ADDR`] of them waiting for their `Hello`
//! (besides the relay-wide [`MAX_HANDSHAKES`]).
//!
//! Every connection, with or without the header, reads at most
//! [`protocol::MAX_HELLO_READ`] bytes until its `Hello` is accepted (a [`ReadBudget`]):
//! a stranger cannot make the relay buffer a large message before the token is checked.
//! The budget is lifted once the bridge is admitted, so its later frames may use the
//! whole frame limit.
//!
//! The upgrade is done here rather than with axum's `WebSocketUpgrade` because the socket
//! must be wrapped in the budget before the WebSocket protocol reads from it.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Most bridge connections in their handshake without a token header at once.
pub const MAX_HANDSHAKES: usize = 256;

/// Most upgrades without a token header waiting for their `Hello` from one address.
pub const MAX_PENDING_PER_ADDR: usize = 8;

/// A bridge's upgraded socket.
pub type BridgeSocket = WebSocketStream<Budgeted<TokioIo<Upgraded>>>;

/// A valid WebSocket upgrade request for the bridge socket.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The `Authorization` header: `None` when absent, `Some(Err(()))` when it is not a
    /// usable bearer token.
    pub token: Option<Result<String, ()>>,
    /// The bridge's [`protocol::FEATURES_HEADER`] (empty when absent).
    pub features: String,
}

fn bad_request(why: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Checks the upgrade headers and takes the connection's upgrade handle; the error is
    /// the HTTP answer.
    pub fn from_request(req: &mut Request) -> Result<Self, Response> {
        if req.method() != Method::GET {
            return Err((StatusCode::METHOD_NOT_ALLOWED, "use GET").into_response());
        }
        let headers = req.headers();
        if !header_has_token(headers, header::CONNECTION, "upgrade") {
            return Err(bad_request("Connection header did not include 'upgrade'"));
        }
        if !header_has_token(headers, header::UPGRADE, "websocket") {
            return Err(bad_request("`Upgrade` header did not include 'websocket'"));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(bad_request(
                "`Sec-WebSocket-Version` header did not include '13'",
            ));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(bad_request("`Sec-WebSocket-Key` header missing"));
        };
        let token = headers.get(header::AUTHORIZATION).map(|v| {
            let v = v.to_str().map_err(|_| ())?;
            let (scheme, token) = v.split_once(' ').ok_or(())?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer")
                || token.is_empty()
                || token.len() > protocol::frame::MAX_STRING
            {
                return Err(());
            }
            Ok(token.to_owned())
        });
        let features = headers
            .get(protocol::FEATURES_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            )
                .into_response());
        };
        Ok(Self {
            key,
            on_upgrade,
            token,
            features,
        })
    }

    /// Answers `101 Switching Protocols` (listing the relay's `features`) and runs
    /// `callback` with the socket once the connection is upgraded. Until
    /// [`ReadBudget::lift`], the socket reads at most [`protocol::MAX_HELLO_READ`] bytes.
    pub fn respond<C, F>(self, config: WebSocketConfig, features: &str, callback: C) -> Response
    where
        C: FnOnce(BridgeSocket, ReadBudget) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let budget = ReadBudget::new(protocol::MAX_HELLO_READ);
            let io = Budgeted {
                inner: TokioIo::new(upgraded),
                budget: budget.clone(),
            };
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            callback(socket, budget).await;
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if !features.is_empty()
            && let Ok(v) = HeaderValue::from_str(features)
        {
            h.insert(protocol::FEATURES_HEADER, v);
        }
        resp
    }
}

/// How many bytes a connection may still read; `usize::MAX` once lifted.
#[derive(Clone)]
pub struct ReadBudget(Arc<AtomicUsize>);

impl ReadBudget {
    fn new(bytes: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(bytes)))
    }

    /// Removes the limit (the bridge proved its token).
    pub fn lift(&self) {
        self.0.store(usize::MAX, Ordering::Relaxed);
    }
}

/// A socket whose reads stop with an error once its [`ReadBudget`] is spent.
pub struct Budgeted<S> {
    inner: S,
    budget: ReadBudget,
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.budget.0.load(Ordering::Relaxed);
        if left == usize::MAX {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than a Hello before the bridge token was proved",
            )));
        }
        // While limited (the handshake only), read through a small buffer of our own.
        let mut tmp = [0u8; 2048];
        let n = left.min(tmp.len()).min(buf.remaining());
        let mut limited = ReadBuf::new(&mut tmp[..n]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let got = limited.filled();
        let _ = this
            .budget
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v != usize::MAX).then(|| v.saturating_sub(got.len()))
            });
        buf.put_slice(got);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Upgrades without a token header waiting for their `Hello`, per address.
#[derive(Default)]
pub struct PendingByAddr(Mutex<HashMap<IpAddr, usize>>);

/// One pending upgrade of an address; released when dropped.
pub struct AddrPermit {
    pending: Arc<PendingByAddr>,
    ip: IpAddr,
}

impl PendingByAddr {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0.locked()
    }

    /// A permit for one more pending upgrade from `ip`, unless it has `max` already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddrPermit> {
        let mut map = self.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddrPermit {
            pending: self.clone(),
            ip,
        })
    }

    /// Pending upgrades from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.lock().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for AddrPermit {
    fn drop(&mut self) {
        let mut map = self.pending.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn pending_per_address_is_capped_and_released() {
        let p = Arc::new(PendingByAddr::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| p.try_acquire(a, 3).unwrap()).collect();
        assert!(p.try_acquire(a, 3).is_none());
        let other = p.try_acquire(b, 3);
        assert!(other.is_some());
        drop(held);
        assert_eq!(p.count(a), 0);
        assert!(p.lock().get(&a).is_none(), "empty entries are removed");
        assert!(p.try_acquire(a, 3).is_some());
    }

    #[tokio::test]
    async fn budget_stops_reads_until_lifted() {
        let data = vec![7u8; 10_000];
        let budget = ReadBudget::new(3000);
        let mut r = Budgeted {
            inner: &data[..],
            budget: budget.clone(),
        };
        let mut buf = vec![0u8; 10_000];
        let mut read = 0;
        let err = loop {
            match r.read(&mut buf[read..]).await {
                Ok(0) => panic!("the budget must stop the read before the end"),
                Ok(n) => read += n,
                Err(e) => break e,
            }
        };
        assert_eq!(read, 3000);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let budget = ReadBudget::new(10);
        let mut r = Budgeted {
            inner: &data[..],
            budget: budget.clone(),
        };
        let n = r.read(&mut buf).await.unwrap();
        assert_eq!(n, 10);
        budget.lift();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(n + rest.len(), data.len());
    }
}
