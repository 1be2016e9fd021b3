//! Serving a relay: on a listener of the caller's, or embedded on its own thread.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener, ListenerExt};
use protocol::Limits;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::info;

use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::routes::router;
use crate::state::AppState;
use crate::tls::{TlsListener, TlsTerminator};

/// Frame limits for a relay's bridge connections: bodies up to the larger of the HTTP
/// body limit and the protocol's default message limit (results can exceed requests).
pub fn frame_limits(config: &RelayConfig) -> Limits {
    Limits {
        max_body: config.max_body.max(Limits::default().max_body),
    }
}

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
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    run(config, listener, shutdown).await
}

/// Like [`serve`], over HTTPS: every connection accepted on `listener` goes through `tls`
/// first (see [`crate::tls`]). Routes, WebSockets and the graceful drain are the same.
pub async fn serve_tls(
    config: RelayConfig,
    listener: TcpListener,
    tls: TlsTerminator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    // `tap_io` with nothing to do: it gives the listener axum's `ConnectInfo<SocketAddr>`.
    let listener = TlsListener::new(listener, tls)?.tap_io(|_| {});
    run(config, listener, shutdown).await
}

async fn run<L>(
    config: RelayConfig,
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError>
where
    L: Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: Connected<IncomingStream<'a, L>>,
{
    let state = AppState::new(config)?;
    let registry = state.registry.clone();
    tokio::spawn(watch_revocations(state.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let stopping = Arc::new(Notify::new());
    let signal = stopping.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        signal.notify_one();
    });
    let drained = async {
        stopping.notified().await;
        info!("shutting down: draining exchanges in flight (at most {DRAIN_TIMEOUT:?})");
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while registry.exchanges_in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return Ok(r?),
        _ = drained => {}
    }
    // Exchanges are done: give connections a moment to finish writing their answers.
    if let Ok(r) = tokio::time::timeout(Duration::from_secs(2), server).await {
        r?;
    }
    Ok(())
}

/// Disconnects bridges whose token was revoked (by `relay token revoke`, possibly from
/// another process) and sweeps expired codes and tokens.
async fn watch_revocations(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut sweeps = 0u32;
    loop {
        tick.tick().await;
        for t in state.registry.live() {
            if matches!(state.store.token_live(t.token_id), Ok(false)) {
                tracing::warn!(tunnel = %t.name, "its bridge token was revoked; disconnecting");
                t.close();
            }
        }
        sweeps += 1;
        if sweeps.is_multiple_of(1800) {
            let _ = state.store.sweep();
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
