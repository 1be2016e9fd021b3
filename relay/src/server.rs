//! Serving a relay: on a listener of the caller's, or embedded on its own thread.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::app::AppState;
use crate::app::router;
use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::net::conn::{ConnLimits, ConnTracker, Counted, Slot, TimedBody};
use crate::net::tls::TlsTerminator;

/// Longest wait for exchanges in flight once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the relay on `listener` (plain HTTP) until `shutdown` completes; then it stops
/// accepting, lets exchanges in flight finish for at most [`DRAIN_TIMEOUT`], and closes
/// everything.
pub async fn serve(
    config: RelayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    run(config, listener, None, shutdown).await
}

/// Like [`serve`], over HTTPS: every connection accepted on `listener` goes through `tls`
/// first (see [`crate::net::tls`]). Routes, WebSockets and the graceful drain are the same.
pub async fn serve_tls(
    config: RelayConfig,
    listener: TcpListener,
    tls: TlsTerminator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    run(config, listener, Some(tls), shutdown).await
}

/// What every connection of a relay shares.
struct Shared {
    router: Router,
    tracker: Arc<ConnTracker>,
    http: http1::Builder,
    body_timeout: Duration,
    /// Cancelled when shutdown begins: connections finish their request and close.
    stopping: CancellationToken,
    /// The connections' tasks.
    tasks: TaskTracker,
}

async fn run(
    config: RelayConfig,
    listener: TcpListener,
    tls: Option<TlsTerminator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let fd_limit = crate::net::conn::fd_limit();
    let limits = ConnLimits::for_fd_limit(fd_limit, config.max_connections_per_address);
    info!(
        fd_limit,
        max_connections = limits.total,
        max_without_request = limits.fresh_total,
        per_address = limits.per_address,
        per_address_without_request = limits.fresh_per_address,
        header_timeout = ?config.header_timeout,
        body_timeout = ?config.body_timeout,
        "connection limits"
    );
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let body_timeout = config.body_timeout;
    let metrics_listen = config.metrics_listen;
    let drain_delay = config.drain_delay;
    let proxies = config.trusted_proxies.clone();
    if !proxies.ranges.is_empty() {
        let ranges: Vec<String> = proxies.ranges.iter().map(ToString::to_string).collect();
        info!(
            trusted_proxies = %ranges.join(","),
            header = ?proxies.header,
            "client addresses of requests from these proxies come from their forwarding header"
        );
    }
    let state = AppState::open(config).await?;
    let registry = state.registry().clone();
    tokio::spawn(watch_revocations(state.clone()));
    tokio::spawn(state.heart().run());
    let metrics = match metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| RelayError::Listen { addr, source })?;
            info!(addr = %l.local_addr()?, "metrics listening (/metrics, /healthz)");
            Some((l, crate::app::metrics_router(state.clone())))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        router: router(state),
        tracker: Arc::new(ConnTracker::new(limits, move |ip| proxies.trusts(ip))),
        http,
        body_timeout,
        stopping: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let metrics = async {
        match metrics {
            Some((listener, router)) => {
                // A few scrapers: caps of its own, within the descriptors kept in reserve
                // (at least 32); the same deadlines and drain.
                let limits = ConnLimits {
                    total: 16,
                    fresh_total: 8,
                    per_address: 16,
                    fresh_per_address: 8,
                };
                let own = Arc::new(Shared {
                    router,
                    tracker: Arc::new(ConnTracker::new(limits, |_| false)),
                    http: shared.http.clone(),
                    body_timeout,
                    stopping: shared.stopping.clone(),
                    tasks: shared.tasks.clone(),
                });
                accept_loop(listener, None, own).await
            }
            None => std::future::pending().await,
        }
    };
    let accepting = accept_loop(listener, tls, shared.clone());
    tokio::pin!(accepting, metrics);
    let stop_asked = tokio::select! {
        _ = &mut accepting => false,
        _ = &mut metrics => false,
        _ = shutdown => true,
    };
    if stop_asked && !drain_delay.is_zero() {
        // Still serving, but /readyz says 503: the load balancer takes this node out.
        registry.set_draining();
        info!("stopping: /readyz answers 503 for {drain_delay:?} before the relay stops serving");
        tokio::select! {
            _ = &mut accepting => {}
            _ = &mut metrics => {}
            _ = tokio::time::sleep(drain_delay) => {}
        }
    }
    registry.set_draining();
    // The listener is closed; connections finish the request they are on.
    shared.stopping.cancel();
    shared.tasks.close();
    info!("shutting down: draining exchanges in flight (at most {DRAIN_TIMEOUT:?})");
    let drained = async {
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while registry.exchanges_in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = shared.tasks.wait() => return Ok(()),
        _ = drained => {}
    }
    // Exchanges are done: give connections a moment to finish writing their answers.
    let _ = tokio::time::timeout(Duration::from_secs(2), shared.tasks.wait()).await;
    Ok(())
}

/// Accepts connections until dropped: each is admitted by the connection caps (or
/// closed at once), then served on a task of its own, after its TLS handshake if any.
async fn accept_loop(listener: TcpListener, tls: Option<TlsTerminator>, shared: Arc<Shared>) {
    let handshakes = Arc::new(Semaphore::new(crate::net::tls::MAX_HANDSHAKES));
    loop {
        // With TLS, at most MAX_HANDSHAKES run at once; further connections wait in the
        // kernel's accept queue.
        let permit = match &tls {
            Some(_) => match handshakes.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => return,
            },
            None => None,
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let Ok(slot) = shared.tracker.admit(peer.ip()) else {
            // Closing it now gives its descriptor back.
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let slot = Arc::new(slot);
        let shared2 = shared.clone();
        match &tls {
            None => {
                shared
                    .tasks
                    .spawn(serve_connection(shared2, tcp, peer, slot));
            }
            Some(tls) => {
                let tls = tls.clone();
                shared.tasks.spawn(async move {
                    let handshake =
                        tokio::time::timeout(crate::net::tls::HANDSHAKE_TIMEOUT, tls.accept(tcp))
                            .await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(Some(stream))) => serve_connection(shared2, stream, peer, slot).await,
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Errors of `accept` on one connection are not the listener's; others (out of file
/// descriptors) get a pause before the next try.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    warn!("accept failed: {e}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it closes, or until shutdown
/// begins and its current request is answered.
async fn serve_connection<I>(shared: Arc<Shared>, io: I, peer: SocketAddr, slot: Arc<Slot>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService {
        router: shared.router.clone(),
        peer,
        slot: slot.clone(),
        body_timeout: shared.body_timeout,
    };
    let io = TokioIo::new(Counted::new(io, slot));
    let conn = shared.http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, "connection ended: {e}");
            }
            return;
        }
        _ = shared.stopping.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        debug!(%peer, "connection ended: {e}");
    }
}

/// The relay's routes as one connection's hyper service: each request gets the peer's
/// address (axum's `ConnectInfo`) and a body with a deadline; the first request's head
/// makes the connection count as proven.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    slot: Arc<Slot>,
    body_timeout: Duration,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.slot.proven();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let req = http::Request::from_parts(parts, TimedBody::new(body, self.body_timeout));
        let mut router = self.router.clone();
        tower_service::Service::call(&mut router, req)
    }
}

/// Acts on what changed in the store elsewhere (another node, a `relay` command) and
/// sweeps expired codes and tokens hourly.
///
/// A database that several nodes share announces revocations: this node forgets cached
/// token checks and disconnects the bridges of a revoked bridge token at once, and checks
/// every bridge's token again when its listener (re)connects. A poll of the connected
/// bridges' tokens stays as a net: every 2 s on SQLite, where `relay token revoke` from
/// another process announces nothing, every 30 s where announcements come.
async fn watch_revocations(state: AppState) {
    use crate::store::events::Event;
    use tokio::sync::broadcast::error::RecvError;
    let mut events = state.store().subscribe();
    let poll = if events.is_some() { 30 } else { 2 };
    let mut tick = tokio::time::interval(Duration::from_secs(poll));
    let sweep_every = Duration::from_secs(3600);
    let mut handed = std::collections::HashMap::new();
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        let event = tokio::select! {
            _ = tick.tick() => None,
            heard = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Some(heard),
        };
        match event {
            None => {
                disconnect_revoked(&state, "its bridge token was revoked; disconnecting").await;
                if last_sweep.elapsed() >= sweep_every {
                    last_sweep = tokio::time::Instant::now();
                    let _ = state.store().sweep().await;
                }
            }
            Some(Ok(Event::TokensRevoked)) => {
                state.oauth().oauth.tokens.clear();
                tracing::info!(
                    "OAuth tokens were revoked (announced by the database): cached token checks cleared"
                );
            }
            Some(Ok(Event::BridgeTokenRevoked(id))) => {
                for t in state.registry().live() {
                    if t.token_id == id {
                        tracing::warn!(
                            tunnel = %t.name,
                            "its bridge token was revoked (announced by the database); disconnecting"
                        );
                        t.close();
                    }
                }
            }
            Some(Ok(Event::NameReleased(name))) => state.oauth().oauth.tokens.forget_owner(&name),
            Some(Ok(Event::Want { tunnel, node })) => {
                if node != state.config().node_id
                    && let Some(t) = state.registry().get(&tunnel)
                {
                    crate::link::handoff::hand_over(t, &node, &mut handed);
                }
            }
            Some(Ok(Event::Probe {
                tunnel,
                from,
                holder,
                token,
            })) => {
                if holder == state.config().node_id && from != holder {
                    crate::link::claim::answer(
                        state.registry(),
                        state.store(),
                        tunnel,
                        from,
                        token,
                        crate::link::socket::PROBE_TIMEOUT,
                    );
                }
            }
            Some(Ok(Event::Probed { .. })) => {}
            Some(Ok(Event::ConsentWaiting { tunnel, id })) => {
                // The node holding the tunnel's bridge prompts it.
                if let Some(t) = state.registry().get(&tunnel)
                    && let Some(c) = state.oauth().oauth.consents.get(&id).await
                {
                    crate::oauth::authorize::prompt_bridge(&t, &c);
                }
            }
            Some(Ok(Event::Resync) | Err(RecvError::Lagged(_))) => {
                state.oauth().oauth.tokens.clear();
                disconnect_revoked(&state, "its bridge token was revoked; disconnecting").await;
                for t in state.registry().live() {
                    crate::link::presence::prompt_waiting(state.store(), &state.oauth().oauth, &t);
                }
            }
            Some(Err(RecvError::Closed)) => events = None,
        }
    }
}

/// Disconnects the bridges whose token is revoked, asking the store once for all of them.
async fn disconnect_revoked(state: &AppState, why: &str) {
    let live = state.registry().live();
    if live.is_empty() {
        return;
    }
    let ids: Vec<i64> = live.iter().map(|t| t.token_id).collect();
    let Ok(revoked) = state.store().revoked_among(&ids).await else {
        // A store that cannot answer revokes nothing.
        return;
    };
    for t in live {
        if revoked.contains(&t.token_id) {
            tracing::warn!(tunnel = %t.name, "{why}");
            t.close();
        }
    }
}

/// Binds a listening socket (port 0 picks a free port).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, RelayError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| RelayError::Listen { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| RelayError::Listen { addr, source })?;
    Ok(l)
}

/// A relay running on a thread of its own (the bridge's embedded mode). Dropping it stops
/// the relay.
pub struct EmbeddedRelay {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedRelay {
    /// Starts `config` on an already bound listener, on a new thread with a
    /// single-threaded runtime.
    pub fn start(config: RelayConfig, listener: std::net::TcpListener) -> Result<Self, RelayError> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("cannot start the embedded relay's runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("embedded relay listener: {e}");
                            return;
                        }
                    };
                    info!(%addr, "embedded relay listening");
                    if let Err(e) = serve(config, listener, async {
                        let _ = stopped.await;
                    })
                    .await
                    {
                        tracing::error!("embedded relay stopped: {e}");
                    }
                });
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl EmbeddedRelay {
    /// Stops the relay: it drains its exchanges and finishes answers in flight, for at most
    /// `timeout`.
    pub fn shutdown(mut self, timeout: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + timeout;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for EmbeddedRelay {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            // Do not wait for long-lived streams; the process is ending anyway.
            drop(t);
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the signal for a graceful shutdown, shared by
/// the `relay` and `bridge` binaries.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
