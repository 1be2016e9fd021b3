//! Bounds on the relay's connections: how many it holds in total and per client address
//! (fewer for connections that have not yet sent a complete request head), all sized
//! below the process's file-descriptor limit, and a total deadline on request bodies.
//!
//! The accept loop ((`crate::server`)) asks a [`ConnTracker`] for a [`Slot`] before it
//! serves a connection; a connection that would pass a cap is closed at once, so one
//! address holding slow connections cannot use up the descriptors every other client
//! (and every bridge) needs. The slot travels with the connection's socket
//! ([`Counted`]), WebSocket upgrades included, and is given back when the socket closes.
//!
//! Addresses are counted per IPv4 address and per IPv6 /64 (what one host usually gets).
//! Trusted reverse proxies ([`crate::net::client_addr`]) are exempt from the per-address caps:
//! every client behind them shares their address.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Default longest time a client may take to send a request's head (request line and
/// headers), and the longest a kept-alive connection may stay idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default longest time a client may take to send a request's body, from the end of its
/// head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The file-descriptor limit of this process (the soft `RLIMIT_NOFILE`); a generous
/// assumption where there is no such limit.
pub fn fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            if lim.rlim_cur == libc::RLIM_INFINITY {
                return 1 << 20;
            }
            // `rlim_t` is not 64-bit everywhere.
            #[allow(clippy::unnecessary_cast)]
            return lim.rlim_cur as u64;
        }
        1024
    }
    #[cfg(not(unix))]
    {
        16_384
    }
}

/// Raises the soft file-descriptor limit to the hard one (at most 2^20), as a server
/// holding one socket per client should; the limit in effect afterwards.
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            let want = lim.rlim_max.min(1 << 20);
            if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < want {
                let raised = libc::rlimit {
                    rlim_cur: want,
                    rlim_max: lim.rlim_max,
                };
                // SAFETY: setrlimit reads the struct we own.
                unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
            }
        }
    }
    fd_limit()
}

/// How many connections the relay holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections in total.
    pub total: usize,
    /// Connections that have not yet sent a complete request head, in total.
    pub fresh_total: usize,
    /// Connections per client address (IPv4 address, IPv6 /64).
    pub per_address: usize,
    /// Connections per client address that have not yet sent a complete request head.
    pub fresh_per_address: usize,
}

impl ConnLimits {
    /// Caps for a process allowed `fd_limit` descriptors: some are kept for everything
    /// else (the database, logs, outgoing fetches, the listeners): an eighth, between 32
    /// and 1024; connections take the rest. Half of them may be fresh. Per address: the
    /// given cap (at most the total), else an eighth of the total between 8 and 256;
    /// half of that fresh.
    pub fn for_fd_limit(fd_limit: u64, per_address: Option<usize>) -> Self {
        let fds = usize::try_from(fd_limit).unwrap_or(usize::MAX).max(16);
        let reserve = (fds / 8).clamp(32, 1024).min(fds / 2);
        let total = (fds - reserve).max(8);
        let fresh_total = (total / 2).max(4);
        let per_address = per_address
            .unwrap_or((total / 8).clamp(8, 256))
            .clamp(1, total);
        let fresh_per_address = (per_address / 2).max(2).min(fresh_total);
        Self {
            total,
            fresh_total,
            per_address,
            fresh_per_address,
        }
    }
}

pub use crate::util::addr::address_key;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The relay holds as many connections as it may.
    Total,
    /// As many connections are waiting for their first request head as may.
    FreshTotal,
    /// The address holds as many connections as it may.
    PerAddress,
    /// The address holds as many connections waiting for a first request head as it may.
    FreshPerAddress,
}

impl Refusal {
    fn describe(self) -> &'static str {
        match self {
            Refusal::Total => "the connection limit",
            Refusal::FreshTotal => "the limit of connections without a request",
            Refusal::PerAddress => "the per-address connection limit",
            Refusal::FreshPerAddress => "the per-address limit of connections without a request",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    fresh: usize,
    per_address: HashMap<IpAddr, (usize, usize)>,
}

/// Counts the relay's connections against its [`ConnLimits`].
pub struct ConnTracker {
    limits: ConnLimits,
    exempt: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
    counts: Mutex<Counts>,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl ConnTracker {
    /// A tracker with these caps; addresses for which `exempt` holds (trusted proxies)
    /// only count toward the totals.
    pub fn new(
        limits: ConnLimits,
        exempt: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            limits,
            exempt: Box::new(exempt),
            counts: Mutex::default(),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        }
    }

    /// The caps.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.locked()
    }

    /// Admits a new connection from `ip`, or says which cap it would pass (and logs,
    /// at most every 10 s, how many were refused).
    pub fn admit(self: &std::sync::Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let exempt = (self.exempt)(ip);
        let key = address_key(ip);
        let refusal = {
            let mut c = self.lock();
            let l = self.limits;
            let here = if exempt {
                (0, 0)
            } else {
                c.per_address.get(&key).copied().unwrap_or((0, 0))
            };
            if c.total >= l.total {
                Some(Refusal::Total)
            } else if c.fresh >= l.fresh_total {
                Some(Refusal::FreshTotal)
            } else if here.0 >= l.per_address {
                Some(Refusal::PerAddress)
            } else if here.1 >= l.fresh_per_address {
                Some(Refusal::FreshPerAddress)
            } else {
                c.total += 1;
                c.fresh += 1;
                if !exempt {
                    let e = c.per_address.entry(key).or_default();
                    e.0 += 1;
                    e.1 += 1;
                }
                None
            }
        };
        match refusal {
            None => Ok(Slot {
                tracker: self.clone(),
                key: (!exempt).then_some(key),
                fresh: AtomicBool::new(true),
            }),
            Some(r) => {
                self.refused(ip, r);
                Err(r)
            }
        }
    }

    fn refused(&self, ip: IpAddr, r: Refusal) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(%ip, "connection refused: {}", r.describe());
        let mut last = self.last_warning.locked();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            self.refused.store(0, Ordering::Relaxed);
            let hint = if matches!(r, Refusal::PerAddress | Refusal::FreshPerAddress)
                && address_key(ip).is_loopback()
            {
                "; if a reverse proxy on this host connects from there, list it in --trusted-proxy"
            } else {
                ""
            };
            tracing::warn!(
                %ip,
                refused = n,
                "closing new connections at {} (latest from {ip}){hint}",
                r.describe()
            );
        }
    }

    /// Connections held now: (total, fresh).
    pub fn held(&self) -> (usize, usize) {
        let c = self.lock();
        (c.total, c.fresh)
    }

    fn release(&self, key: Option<IpAddr>, fresh: bool) {
        let mut c = self.lock();
        c.total = c.total.saturating_sub(1);
        if fresh {
            c.fresh = c.fresh.saturating_sub(1);
        }
        if let Some(key) = key
            && let Some(e) = c.per_address.get_mut(&key)
        {
            e.0 = e.0.saturating_sub(1);
            if fresh {
                e.1 = e.1.saturating_sub(1);
            }
            if e.0 == 0 {
                c.per_address.remove(&key);
            }
        }
    }

    fn proven(&self, key: Option<IpAddr>) {
        let mut c = self.lock();
        c.fresh = c.fresh.saturating_sub(1);
        if let Some(key) = key
            && let Some(e) = c.per_address.get_mut(&key)
        {
            e.1 = e.1.saturating_sub(1);
        }
    }
}

/// One admitted connection; given back when dropped.
pub struct Slot {
    tracker: std::sync::Arc<ConnTracker>,
    key: Option<IpAddr>,
    fresh: AtomicBool,
}

impl Slot {
    /// The connection sent a complete request head: it no longer counts as fresh.
    pub fn proven(&self) {
        if self.fresh.swap(false, Ordering::Relaxed) {
            self.tracker.proven(self.key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tracker
            .release(self.key, self.fresh.load(Ordering::Relaxed));
    }
}

/// A connection's socket holding its [`Slot`]: the slot is given back when the socket
/// is closed, also after a WebSocket upgrade took it over.
pub struct Counted<I> {
    inner: I,
    _slot: std::sync::Arc<Slot>,
}

impl<I> Counted<I> {
    /// Wraps a socket.
    pub fn new(inner: I, slot: std::sync::Arc<Slot>) -> Self {
        Self { inner, _slot: slot }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client did not send the whole body in time.
    #[error("the request body was not received within {0:?}")]
    Deadline(Duration),
    /// The connection failed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that fails once its deadline passes. The timer is armed only if the
/// body is not there at once (most bodies arrive with their head).
pub struct TimedBody {
    inner: hyper::body::Incoming,
    deadline: Instant,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    /// `inner` must be complete within `timeout` from now.
    pub fn new(inner: hyper::body::Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            timeout,
            sleep: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Deadline(this.timeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn caps_stay_below_the_descriptor_limit() {
        let l = ConnLimits::for_fd_limit(256, None);
        assert_eq!(
            l,
            ConnLimits {
                total: 224,
                fresh_total: 112,
                per_address: 28,
                fresh_per_address: 14,
            }
        );
        for fds in [16, 64, 256, 1024, 4096, 65_536, 1 << 20] {
            let l = ConnLimits::for_fd_limit(fds, None);
            assert!((l.total as u64) < fds, "{fds}: {l:?}");
            assert!(
                l.fresh_total <= l.total && l.per_address <= l.total,
                "{fds}: {l:?}"
            );
            assert!(l.fresh_per_address <= l.per_address, "{fds}: {l:?}");
        }
        let l = ConnLimits::for_fd_limit(65_536, None);
        assert_eq!((l.total, l.per_address), (64_512, 256));
        // An operator's per-address cap, never above the total.
        assert_eq!(ConnLimits::for_fd_limit(256, Some(100)).per_address, 100);
        assert_eq!(ConnLimits::for_fd_limit(256, Some(10_000)).per_address, 224);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let limits = ConnLimits {
            total: 10,
            fresh_total: 6,
            per_address: 4,
            fresh_per_address: 2,
        };
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Arc::new(ConnTracker::new(limits, move |ip| ip == proxy));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = t.admit(a).unwrap();
        let a2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Refusal::FreshPerAddress));
        // Connections that sent a request make room for fresh ones, up to the address cap.
        a1.proven();
        a2.proven();
        let a3 = t.admit(a).unwrap();
        let _a4 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Refusal::PerAddress));
        let _b1 = t.admit(b).unwrap();
        drop(a3);
        assert!(t.admit(a).is_ok(), "a slot given back is free again");
        assert_eq!(t.held(), (4, 2));
        // A trusted proxy only meets the totals.
        let _p: Vec<Slot> = (0..4).map(|_| t.admit(proxy).unwrap()).collect();
        assert_eq!(t.admit(proxy).err(), Some(Refusal::FreshTotal));
        assert_eq!(t.held(), (8, 6));
    }
}
