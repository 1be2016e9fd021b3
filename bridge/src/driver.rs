//! The bridge's event loop: feeds relay frames and child events to the [`Core`] and
//! sends what it produces to the relay, on one thread. It also gives the core its server
//! processes ([`Processes`]) and the time of each event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{ConsentRequest, Frame};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::child::{ChildEvent, ChildHandle, ChildId, ChildSpec};
use crate::core::{Children, Core, CoreConfig};
use crate::guard::Guard;
use crate::link::{LinkConfig, LinkEvent};
use crate::status_line::{Gauges, LinkState};

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

/// The core's server processes: real ones, reporting to the driver's channel.
pub struct Processes {
    events: mpsc::Sender<ChildEvent>,
    guard: Arc<Guard>,
    running: HashMap<ChildId, ChildHandle>,
}

impl Processes {
    /// No processes yet; those started report to `events` and are watched by `guard`.
    pub fn new(events: mpsc::Sender<ChildEvent>, guard: Arc<Guard>) -> Self {
        Self {
            events,
            guard,
            running: HashMap::new(),
        }
    }
}

impl Children for Processes {
    fn spawn(&mut self, id: ChildId, spec: &ChildSpec) -> Result<(), String> {
        let handle = ChildHandle::spawn(id, spec, self.events.clone(), self.guard.clone())
            .map_err(|e| e.to_string())?;
        self.running.insert(id, handle);
        Ok(())
    }

    fn send_line(&mut self, id: ChildId, line: Vec<u8>) -> bool {
        self.running.get(&id).is_some_and(|c| c.send_line(line))
    }

    fn stdin_closed(&self, id: ChildId) -> bool {
        self.running.get(&id).is_none_or(ChildHandle::stdin_closed)
    }

    fn stderr_tail(&self, id: ChildId) -> Vec<String> {
        self.running
            .get(&id)
            .map(ChildHandle::stderr_tail)
            .unwrap_or_default()
    }

    fn kill(&mut self, id: ChildId) {
        // Dropping the handle kills the process group.
        self.running.remove(&id);
    }

    fn pid(&self, id: ChildId) -> Option<u32> {
        self.running.get(&id).and_then(ChildHandle::pid)
    }
}

impl Core {
    /// A core whose servers are real processes: their events go to `events`, and `guard`
    /// takes them down if the bridge dies.
    pub fn new(cfg: CoreConfig, events: mpsc::Sender<ChildEvent>, guard: Arc<Guard>) -> Self {
        Core::with_children(cfg, Box::new(Processes::new(events, guard)), Instant::now())
    }
}

/// Prints the public endpoints once the relay welcomed the tunnel.
pub type OnWelcome = Box<dyn FnMut(&protocol::Welcome)>;

/// The driver's link to the owner's terminal: consent prompts, the owner's decisions and
/// the status line's counters (one terminal serves every driver when the bridge publishes
/// several servers).
pub struct TerminalLink {
    /// This driver's index, tagging its consent requests.
    pub index: usize,
    /// Consent requests from the relay, to show in the terminal (one reader of standard
    /// input serves every driver).
    pub consent: mpsc::Sender<(usize, ConsentRequest)>,
    /// The owner's decisions on this driver's consent requests, for the relay.
    pub decisions: mpsc::Receiver<Frame>,
    /// Counters for the terminal's status line (and the dashboard).
    pub gauges: Arc<Gauges>,
    /// The dashboard runs: keep the core's view for it in the gauges.
    pub owner_view: bool,
    /// The owner's commands from the dashboard (restart, disconnect, pause), each with
    /// what to tell once it is carried out.
    pub commands: Option<mpsc::Receiver<Command>>,
}

/// An owner's command, and where to say it was carried out.
pub type Command = (crate::core::OwnerCommand, tokio::sync::oneshot::Sender<()>);

/// How the driver runs its tunnel.
#[derive(Debug, Default)]
pub struct DriverOptions {
    /// Start the shared server at once, and print the endpoints once it answered.
    pub start_shared: bool,
    /// The local asset origins the tunnel publishes, if any.
    pub assets: Option<crate::assets::Published>,
}

/// Runs the bridge until `shutdown` resolves or a permanent error.
pub async fn run(
    mut core: Core,
    mut child_events: mpsc::Receiver<ChildEvent>,
    link: LinkConfig,
    mut on_welcome: OnWelcome,
    shutdown: impl std::future::Future<Output = ()>,
    options: DriverOptions,
    mut terminal: TerminalLink,
) -> Outcome {
    let DriverOptions {
        start_shared,
        assets,
    } = options;
    tokio::pin!(shutdown);
    terminal.gauges.set_state(LinkState::Starting);

    // Start the shared server and dial the relay at once: while the server starts, the
    // relay knows the bridge is there and clients hear that the server is starting (an
    // `initialize` waits for it). The endpoints are printed once the server answered its
    // `initialize`, so the printed URL works at once and a broken command is reported
    // before it.
    let mut starting = start_shared;
    if starting && let Err(e) = core.start_default_child() {
        return Outcome::ServerFailed(e);
    }
    let startup_deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    // The relay's welcome, held while the server starts.
    let mut held_welcome: Option<protocol::Welcome> = None;

    let (link_tx, mut link_rx) = mpsc::channel::<LinkEvent>(1024);
    let (stop_link, stop_rx) = tokio::sync::watch::channel(false);
    let mut link_task = tokio::spawn(crate::link::run(link, link_tx, stop_rx));
    let mut out: Option<mpsc::Sender<Frame>> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_status = None;
    let mut decisions_open = true;
    // The owner's answers to tool calls held for approval (see confirm.rs).
    let mut confirm_answers = core.take_terminal();
    if !starting {
        terminal.gauges.set_state(LinkState::Connecting);
    }
    let mut drain_until: Option<tokio::time::Instant> = None;
    // What the relay was last told of the server's health (`None`: nothing yet on this
    // connection), and whether it takes such news.
    let mut health_sent: Option<Option<u64>> = None;
    let mut relay_takes_health = false;
    let outcome = loop {
        if starting && let Some(state) = core.default_child_state() {
            if let Err(e) = state {
                break Outcome::ServerFailed(format!("{e}{}", stderr_tail(&core)));
            }
            starting = false;
            started(held_welcome.take(), &terminal.gauges, &mut on_welcome);
        }
        if let Some(until) = drain_until
            && (core.client_pending() == 0 || tokio::time::Instant::now() >= until)
        {
            break Outcome::Stopped;
        }
        let flush_at = core.next_flush();
        tokio::select! {
            _ = sleep_until_opt(flush_at), if flush_at.is_some() => {
                core.flush_inputs(Instant::now());
            }
            _ = tokio::time::sleep_until(startup_deadline), if starting => {
                break Outcome::ServerFailed(format!(
                    "no answer to initialize within {STARTUP_TIMEOUT:?} (is it a stdio MCP server? \
                     run the command by hand to see what it does){}",
                    stderr_tail(&core)
                ));
            }
            _ = &mut shutdown, if drain_until.is_none() => {
                if starting {
                    break Outcome::Stopped;
                }
                // Graceful shutdown: refuse new requests, let those in flight finish.
                info!("shutting down: finishing requests in flight (at most {DRAIN_TIMEOUT:?})");
                core.drain(Instant::now());
                drain_until = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            ev = link_rx.recv() => match ev {
                Some(LinkEvent::Up { out: tx, welcome, server_health, assets: relay_assets }) => {
                    if let Some(a) = &assets {
                        if !relay_assets {
                            warn_owner("this relay does not publish assets (it is of an earlier release): the widget assets are not reachable until it is updated");
                        }
                        core.set_asset_rewriter(crate::assets::rewrite::Rewriter::new(
                            &a.origins,
                            &welcome.mcp_url,
                        ));
                    }
                    // The relay keeps what it may answer while we are away.
                    if let Some(s) = core.snapshot(true) {
                        let _ = tx.send(s).await;
                    }
                    health_sent = None;
                    relay_takes_health = server_health;
                    terminal.gauges.set_url(&welcome.mcp_url);
                    last_status = None;
                    out = Some(tx);
                    if starting {
                        held_welcome = Some(welcome);
                    } else {
                        terminal.gauges.set_state(LinkState::Online);
                        on_welcome(&welcome);
                    }
                }
                Some(LinkEvent::Frame(Frame::Request(r))) => core.on_request(r, Instant::now()),
                Some(LinkEvent::Frame(Frame::AssetRequest(r))) => {
                    // Fetched beside the core (bounded in time and size); the answer goes
                    // straight to the link it came from.
                    if let (Some(a), Some(tx)) = (&assets, &out) {
                        let (server, tx) = (a.server.clone(), tx.clone());
                        tokio::spawn(async move {
                            let answer = server.answer(r).await;
                            let _ = tx.send(Frame::AssetResponse(answer)).await;
                        });
                    }
                }
                Some(LinkEvent::Frame(Frame::Cancel { exchange })) => {
                    core.on_cancel(exchange, Instant::now())
                }
                Some(LinkEvent::Frame(Frame::ConsentRequest(c))) => {
                    let _ = terminal.consent.try_send((terminal.index, c));
                }
                // After the welcome, a refusal is a warning for the owner: another bridge
                // claimed this tunnel with our token (refused, as we answered), or took it
                // over while this connection was silent (the link then closes).
                Some(LinkEvent::Frame(Frame::Refused(r))) => warn_owner(&r.message),
                Some(LinkEvent::Frame(other)) => warn!("unexpected frame from the relay: {other:?}"),
                Some(LinkEvent::Down) => {
                    out = None;
                    // A welcome held while the server starts is void: the next one counts.
                    held_welcome = None;
                    if !starting {
                        terminal.gauges.set_state(LinkState::Reconnecting);
                    }
                    core.on_link_down(Instant::now());
                    warn!("lost the relay link; reconnecting (sessions are kept)");
                }
                Some(LinkEvent::Fatal(msg)) => break Outcome::Refused(msg),
                None => break Outcome::Refused("the relay link ended".into()),
            },
            ev = child_events.recv() => match ev {
                Some(ChildEvent::Unreachable(id, why)) if starting => {
                    // A local HTTP server that is not up yet (the desktop app that serves
                    // it is closed): publish it anyway; the core keeps trying it.
                    crate::status_line::without_line(|| {
                        eprintln!(
                            "warning: the local MCP server is not reachable yet ({}); the bridge publishes it anyway and keeps trying",
                            crate::consent::printable(&why)
                        );
                    });
                    core.on_child_event(ChildEvent::Unreachable(id, why), Instant::now());
                    starting = false;
                    started(held_welcome.take(), &terminal.gauges, &mut on_welcome);
                }
                Some(ChildEvent::Exited(_, status)) if starting => {
                    // Let the stderr reader catch up with what the server wrote last.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break Outcome::ServerFailed(format!(
                        "it exited during startup ({status}){}",
                        stderr_tail(&core)
                    ));
                }
                Some(ev) => core.on_child_event(ev, Instant::now()),
                None => {
                    error!("child event channel closed");
                    break Outcome::Stopped;
                }
            },
            msg = crate::confirm::next_msg(&mut confirm_answers), if confirm_answers.is_some() => match msg {
                Some(msg) => core.on_terminal(msg, Instant::now()),
                None => confirm_answers = None,
            },
            cmd = next_command(&mut terminal.commands), if terminal.commands.is_some() => match cmd {
                Some((cmd, done)) => {
                    core.on_owner_command(cmd, Instant::now());
                    // The dashboard's next page shows it.
                    terminal.gauges.set_owner_view(core.owner_view());
                    let _ = done.send(());
                }
                None => terminal.commands = None,
            },
            decision = terminal.decisions.recv(), if decisions_open => match decision {
                Some(decision) => {
                    if let Some(tx) = &out {
                        let _ = tx.send(decision).await;
                    }
                }
                None => decisions_open = false,
            },
            _ = tick.tick() => {
                core.on_tick(Instant::now());
                let status = core.status();
                terminal.gauges.set_load(status.sessions, status.pending);
                if terminal.owner_view {
                    terminal.gauges.set_owner_view(core.owner_view());
                }
                if let Some(tx) = &out {
                    // Whether the server answers (HTTP servers), when it changed.
                    let down_since = server_down_since(&terminal.gauges);
                    if relay_takes_health && health_sent != Some(down_since) {
                        // A new connection starts with the server answering.
                        if health_sent.is_some() || down_since.is_some() {
                            let _ = tx.send(Frame::ServerHealth { down_since }).await;
                        }
                        health_sent = Some(down_since);
                    }
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
        let notices = core.take_notices();
        if !notices.is_empty() {
            crate::status_line::without_line(|| {
                for notice in notices {
                    if let crate::confirm::Notice::Ask { timeout, .. } = &notice {
                        // Keep the status line from redrawing over the owner's typing.
                        crate::status_line::hold(*timeout);
                    }
                    eprintln!("{}", notice.render());
                }
            });
        }
        let frames = core.take_outbox();
        if frames.is_empty() {
            continue;
        }
        terminal.gauges.add_answered(
            frames
                .iter()
                .filter(|f| matches!(f, Frame::Response(r) if r.is_final() && !r.body.is_empty()))
                .count() as u64,
        );
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
    terminal.gauges.set_state(LinkState::Stopped);
    outcome
}

/// The server's start is over: the endpoints are printed if the relay already welcomed
/// the tunnel, else the bridge is still connecting.
fn started(
    held_welcome: Option<protocol::Welcome>,
    gauges: &crate::status_line::Gauges,
    on_welcome: &mut OnWelcome,
) {
    match held_welcome {
        Some(welcome) => {
            gauges.set_state(LinkState::Online);
            on_welcome(&welcome);
        }
        None => gauges.set_state(LinkState::Connecting),
    }
}

/// Since when (seconds since the Unix epoch) the server is not reachable, if it is not.
fn server_down_since(gauges: &crate::status_line::Gauges) -> Option<u64> {
    let (since, _) = gauges.health().down_since()?;
    let at = std::time::SystemTime::now().checked_sub(since.elapsed())?;
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs().max(1))
}

/// Shows a warning from the relay in the terminal, where the owner sees it, and logs it.
fn warn_owner(message: &str) {
    let message = protocol::text::printable(message, 1000);
    warn!("the relay warns: {message}");
    crate::status_line::without_line(|| {
        eprintln!("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!!! {message}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
    });
}

/// The server's last stderr lines, for a startup error shown locally (never sent to the
/// relay).
fn stderr_tail(core: &Core) -> String {
    let tail = core.default_child_stderr();
    if tail.is_empty() {
        return "; it wrote nothing to stderr: run the command by hand to see why".into();
    }
    let start = tail.len().saturating_sub(10);
    let lines: Vec<String> = tail[start..]
        .iter()
        .map(|l| format!("\n    | {}", crate::consent::printable(l)))
        .collect();
    format!("; the last lines of its stderr:{}", lines.concat())
}

/// The next owner command (pending forever without a channel; the caller guards that
/// branch).
async fn next_command(rx: &mut Option<mpsc::Receiver<Command>>) -> Option<Command> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at` (forever when `None`; the caller guards that branch).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn cat() -> ChildSpec {
        ChildSpec {
            program: "cat".into(),
            args: Vec::new(),
            max_line: 1 << 10,
            env: Vec::new(),
            cwd: None,
        }
    }

    #[tokio::test]
    async fn processes_write_lines_and_report_output_and_exit() {
        let (events, mut rx) = mpsc::channel(16);
        let mut p = Processes::new(events, Arc::new(Guard::disabled()));
        assert!(
            !p.send_line(1, b"{}".to_vec()),
            "nothing runs under id 1 yet"
        );
        assert!(p.stdin_closed(1));
        p.spawn(1, &cat()).expect("cat starts");
        assert!(!p.stdin_closed(1));
        assert!(p.send_line(1, b"{\"n\":1}".to_vec()));
        match rx.recv().await {
            Some(ChildEvent::Line(1, line)) => assert_eq!(&line[..], b"{\"n\":1}"),
            other => panic!("expected the echoed line, got {other:?}"),
        }
        p.kill(1);
        assert!(
            !p.send_line(1, b"{}".to_vec()),
            "a killed child takes no input"
        );
        assert!(matches!(rx.recv().await, Some(ChildEvent::Exited(1, _))));
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let (events, _rx) = mpsc::channel(16);
        let mut p = Processes::new(events, Arc::new(Guard::disabled()));
        let spec = ChildSpec {
            program: "/nonexistent/mcp-server".into(),
            ..cat()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = rt
            .block_on(async { p.spawn(2, &spec) })
            .expect_err("no such program");
        assert!(err.contains("/nonexistent/mcp-server"), "{err}");
        assert!(p.stdin_closed(2));
    }
}
