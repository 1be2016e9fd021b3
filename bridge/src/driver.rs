//! The bridge's event loop: feeds relay frames and child events to the [`Core`] and
//! sends what it produces to the relay, on one thread.

use std::time::Duration;

use protocol::Frame;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::child::ChildEvent;
use crate::core::Core;
use crate::link::{LinkConfig, LinkEvent};

/// Longest wait for requests in flight at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the MCP server's initialize answer at startup (`npx` may download).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// How `run` ended.
#[derive(Debug)]
pub enum Outcome {
    /// Shutdown was requested.
    Stopped,
    /// The relay refused the tunnel permanently.
    Refused(String),
    /// The MCP server could not start.
    ServerFailed(String),
}

/// Prints the public endpoints once the relay welcomed the tunnel.
pub type OnWelcome = Box<dyn FnMut(&protocol::Welcome)>;

/// Runs the bridge until `shutdown` resolves or a permanent error.
pub async fn run(
    mut core: Core,
    mut child_events: mpsc::Receiver<ChildEvent>,
    link: LinkConfig,
    mut on_welcome: OnWelcome,
    shutdown: impl std::future::Future<Output = ()>,
    isolate: bool,
) -> Outcome {
    tokio::pin!(shutdown);

    // Start the shared server first, so the printed URL works at once and a broken
    // command is reported before anything else.
    if !isolate {
        if let Err(e) = core.start_default_child() {
            return Outcome::ServerFailed(e);
        }
        let deadline = tokio::time::sleep(STARTUP_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            if let Some(state) = core.default_child_state() {
                match state {
                    Ok(()) => break,
                    Err(e) => return Outcome::ServerFailed(e),
                }
            }
            tokio::select! {
                ev = child_events.recv() => match ev {
                    Some(ChildEvent::Exited(_, status)) => {
                        return Outcome::ServerFailed(format!("it exited during startup ({status}); run the command by hand to see why"));
                    }
                    Some(ev) => core.on_child_event(ev),
                    None => return Outcome::ServerFailed("internal channel closed".into()),
                },
                _ = &mut deadline => return Outcome::ServerFailed(format!("no answer to initialize within {STARTUP_TIMEOUT:?}")),
                _ = &mut shutdown => return Outcome::Stopped,
            }
        }
    }

    let (link_tx, mut link_rx) = mpsc::channel::<LinkEvent>(1024);
    let (stop_link, stop_rx) = tokio::sync::watch::channel(false);
    let mut link_task = tokio::spawn(crate::link::run(link, link_tx, stop_rx));
    let mut out: Option<mpsc::Sender<Frame>> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_status = None;
    let mut prompts = crate::consent::Prompts::default();
    let mut stdin = crate::consent::stdin_lines();
    let mut stdin_open = true;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let outcome = loop {
        if let Some(until) = drain_until
            && (core.client_pending() == 0 || tokio::time::Instant::now() >= until)
        {
            break Outcome::Stopped;
        }
        let flush_at = core.next_flush();
        tokio::select! {
            _ = sleep_until_opt(flush_at), if flush_at.is_some() => {
                core.flush_inputs(std::time::Instant::now());
            }
            _ = &mut shutdown, if drain_until.is_none() => {
                // Graceful shutdown: refuse new requests, let those in flight finish.
                info!("shutting down: finishing requests in flight (at most {DRAIN_TIMEOUT:?})");
                core.drain();
                drain_until = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            ev = link_rx.recv() => match ev {
                Some(LinkEvent::Up { out: tx, welcome }) => {
                    // The relay keeps what it may answer while we are away.
                    if let Some(s) = core.snapshot(true) {
                        let _ = tx.send(s).await;
                    }
                    last_status = None;
                    out = Some(tx);
                    on_welcome(&welcome);
                }
                Some(LinkEvent::Frame(Frame::Request(r))) => core.on_request(r),
                Some(LinkEvent::Frame(Frame::Cancel { exchange })) => core.on_cancel(exchange),
                Some(LinkEvent::Frame(Frame::ConsentRequest(c))) => prompts.show(&c),
                Some(LinkEvent::Frame(other)) => warn!("unexpected frame from the relay: {other:?}"),
                Some(LinkEvent::Down) => {
                    out = None;
                    core.on_link_down();
                    warn!("lost the relay link; reconnecting (sessions are kept)");
                }
                Some(LinkEvent::Fatal(msg)) => break Outcome::Refused(msg),
                None => break Outcome::Refused("the relay link ended".into()),
            },
            ev = child_events.recv() => match ev {
                Some(ev) => core.on_child_event(ev),
                None => {
                    error!("child event channel closed");
                    break Outcome::Stopped;
                }
            },
            line = stdin.recv(), if stdin_open => match line {
                Some(line) => {
                    if let (Some(decision), Some(tx)) = (prompts.on_line(&line), &out) {
                        let _ = tx.send(decision).await;
                    }
                }
                None => stdin_open = false,
            },
            _ = tick.tick() => {
                core.on_tick();
                if let Some(tx) = &out {
                    if let Some(s) = core.snapshot(false) {
                        let _ = tx.send(s).await;
                    }
                    let status = core.status();
                    if last_status != Some(status) {
                        last_status = Some(status);
                        let _ = tx.send(Frame::Status(status)).await;
                    }
                }
            }
        }
        let frames = core.take_outbox();
        if frames.is_empty() {
            continue;
        }
        if let Some(tx) = &out {
            for f in frames {
                if tx.send(f).await.is_err() {
                    break;
                }
            }
        }
    };
    // Let the link write what is queued (the last answers), then close it.
    let _ = stop_link.send(true);
    if tokio::time::timeout(Duration::from_secs(3), &mut link_task)
        .await
        .is_err()
    {
        link_task.abort();
    }
    info!("bridge stopping");
    outcome
}

/// Sleeps until `at` (forever when `None`; the caller guards that branch).
async fn sleep_until_opt(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
