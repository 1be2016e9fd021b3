//! The live status line of `bridge run` on a terminal: whether each tunnel is online, its
//! sessions, and the requests in flight and answered, updated in place on standard error
//! (at most four times a second; once a second when nothing changes). Off when standard
//! error is not a terminal, and with `--quiet`.
//!
//! The line is drawn with the cursor left at its start, so a log line written meanwhile
//! overwrites it and the next redraw puts it back below.

use protocol::sync::LockExt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the line is updated when the numbers change.
const REDRAW: Duration = Duration::from_millis(250);
/// How often an unchanged line is drawn again.
const REFRESH: Duration = Duration::from_secs(1);

/// Whether a status line is running in this process.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The line stays hidden until then (a prompt waits for the owner's typing).
static HOLD_UNTIL: Mutex<Option<Instant>> = Mutex::new(None);

/// Hides the status line for `d` at most: a prompt printed now waits for the owner to type
/// an answer, which the redraws would otherwise wipe from the screen.
pub fn hold(d: Duration) {
    let until = Instant::now() + d;
    let mut h = HOLD_UNTIL.locked();
    if h.is_none_or(|t| t < until) {
        *h = Some(until);
    }
    drop(h);
    without_line(|| ());
}

fn held() -> bool {
    HOLD_UNTIL
        .lock()
        .map(|h| h.is_some_and(|t| Instant::now() < t))
        .unwrap_or(false)
}

/// Runs `f`, which writes to the terminal, with the status line cleared first (it is
/// redrawn at its next update), so the two do not overwrite each other.
pub fn without_line<R>(f: impl FnOnce() -> R) -> R {
    // Standard error's lock is reentrant: `f` may use `eprintln!`, and the status line
    // cannot redraw in between.
    let mut err = std::io::stderr().lock();
    if ACTIVE.load(Ordering::Relaxed) {
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
    let r = f();
    drop(err);
    r
}

/// Hides and shows the status line from another task.
#[derive(Clone)]
pub struct Pauser(Arc<AtomicBool>);

impl Pauser {
    /// Hides the line (`true`, e.g. while the owner types an approval code) or shows it
    /// again.
    pub fn set(&self, paused: bool) {
        let was = self.0.swap(paused, Ordering::Relaxed);
        if paused && !was {
            without_line(|| ());
        }
    }
}

/// Where a tunnel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// The server is starting.
    Starting = 0,
    /// Connecting to the relay.
    Connecting = 1,
    /// Connected and welcomed.
    Online = 2,
    /// The link dropped; reconnecting.
    Reconnecting = 3,
    /// The tunnel stopped (refused, or its server failed).
    Stopped = 4,
}

/// One tunnel's counters, written by its driver and read by the status line.
#[derive(Debug, Default)]
pub struct Gauges {
    state: AtomicU8,
    sessions: AtomicU32,
    in_flight: AtomicU32,
    answered: AtomicU64,
    /// Whether an HTTP server answers (a stdio server's is never down).
    health: Arc<crate::upstream::Health>,
    /// When the link state last changed (the dashboard shows it).
    since: std::sync::Mutex<Option<std::time::SystemTime>>,
    /// The public MCP endpoint, once the relay welcomed the tunnel.
    url: std::sync::Mutex<Option<String>>,
    /// The core's view for the dashboard, as of the driver's last tick.
    owner: std::sync::Mutex<crate::core::OwnerView>,
}

impl Gauges {
    /// Records the link state.
    pub fn set_state(&self, s: LinkState) {
        let before = self.state.swap(s as u8, Ordering::Relaxed);
        let mut since = self.since.locked();
        if before != s as u8 || since.is_none() {
            *since = Some(std::time::SystemTime::now());
        }
    }

    /// Since when the link is in its state.
    pub fn state_since(&self) -> Option<std::time::SystemTime> {
        *self.since.locked()
    }

    /// Records the public MCP endpoint the relay gave.
    pub fn set_url(&self, url: &str) {
        *self.url.locked() = Some(url.to_owned());
    }

    /// The public MCP endpoint, once known.
    pub fn url(&self) -> Option<String> {
        self.url.locked().clone()
    }

    /// Records the core's view for the dashboard.
    pub fn set_owner_view(&self, v: crate::core::OwnerView) {
        *self.owner.locked() = v;
    }

    /// The core's view for the dashboard.
    pub fn owner_view(&self) -> crate::core::OwnerView {
        self.owner.locked().clone()
    }

    /// Live sessions and requests in flight on the server.
    pub fn load(&self) -> (u32, u32) {
        (
            self.sessions.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
        )
    }

    /// The link state.
    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            0 => LinkState::Starting,
            1 => LinkState::Connecting,
            2 => LinkState::Online,
            3 => LinkState::Reconnecting,
            _ => LinkState::Stopped,
        }
    }

    /// Records the live sessions and the requests in flight on the server.
    pub fn set_load(&self, sessions: u32, in_flight: u32) {
        self.sessions.store(sessions, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    /// Counts requests answered.
    pub fn add_answered(&self, n: u64) {
        if n > 0 {
            self.answered.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// The server's health, for an HTTP server's sessions to report to.
    pub fn health(&self) -> Arc<crate::upstream::Health> {
        self.health.clone()
    }
}

/// The text of the line for these tunnels.
pub fn render(tunnels: &[(String, Arc<Gauges>)]) -> String {
    let (mut sessions, mut in_flight, mut answered) = (0u64, 0u64, 0u64);
    let mut online = 0;
    let mut down = Vec::new();
    for (name, g) in tunnels {
        if let Some((since, _)) = g.health.down_since() {
            down.push((name.as_str(), since.elapsed().as_secs()));
        }
        sessions += u64::from(g.sessions.load(Ordering::Relaxed));
        in_flight += u64::from(g.in_flight.load(Ordering::Relaxed));
        answered += g.answered();
        online += usize::from(g.state() == LinkState::Online);
    }
    let state = match tunnels {
        [(_, g)] => match g.state() {
            LinkState::Starting => "starting the server",
            LinkState::Connecting => "connecting to the relay",
            LinkState::Online => "online",
            LinkState::Reconnecting => "offline, reconnecting",
            LinkState::Stopped => "stopped",
        }
        .to_owned(),
        _ => format!("{online}/{} tunnels online", tunnels.len()),
    };
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let down = match down.as_slice() {
        [] => String::new(),
        [(_, secs)] if tunnels.len() == 1 => {
            format!(" · server not reachable for {secs} s, retrying")
        }
        names => format!(
            " · not reachable: {}",
            names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "● {state}{down} · {} · {} in flight · {} answered",
        plural(sessions, "session", "sessions"),
        in_flight,
        answered
    )
}

/// The running status line; stopping it clears the line.
pub struct StatusLine {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatusLine {
    /// Starts the line when standard error is a terminal and `quiet` is off.
    pub fn start(tunnels: Vec<(String, Arc<Gauges>)>, quiet: bool) -> Option<Self> {
        if quiet || !std::io::stderr().is_terminal() || tunnels.is_empty() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (s, p) = (stop.clone(), paused.clone());
        ACTIVE.store(true, Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name("status-line".into())
            .spawn(move || {
                let mut shown = false;
                let mut last = (String::new(), Instant::now());
                while !s.load(Ordering::Relaxed) {
                    let mut err = std::io::stderr().lock();
                    if p.load(Ordering::Relaxed) || held() {
                        if shown {
                            let _ = write!(err, "\r\x1b[2K");
                            shown = false;
                        }
                    } else {
                        let text: String = render(&tunnels).chars().take(width() - 1).collect();
                        // Unchanged, it is redrawn once a second (a log line may have
                        // covered it).
                        if !shown || text != last.0 || last.1.elapsed() >= REFRESH {
                            let _ = write!(err, "\r\x1b[2K{text}\r");
                            shown = true;
                            last = (text, Instant::now());
                        }
                    }
                    let _ = err.flush();
                    drop(err);
                    std::thread::sleep(REDRAW);
                }
                if shown {
                    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
                }
            })
            .ok()?;
        Some(Self {
            stop,
            paused,
            thread: Some(thread),
        })
    }

    /// A handle hiding and showing the line.
    pub fn pauser(&self) -> Pauser {
        Pauser(self.paused.clone())
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        ACTIVE.store(false, Ordering::Relaxed);
    }
}

/// Columns of the terminal on standard error (80 when unknown).
fn width() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ fills a winsize struct we own.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 10 {
                return usize::from(ws.ws_col);
            }
        }
    }
    80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        let g = Arc::new(Gauges::default());
        g.set_state(LinkState::Online);
        g.set_load(2, 1);
        g.add_answered(37);
        let one = vec![("a".to_owned(), g.clone())];
        assert_eq!(
            render(&one),
            "● online · 2 sessions · 1 in flight · 37 answered"
        );
        let h = Arc::new(Gauges::default());
        h.set_load(1, 0);
        let two = vec![("a".to_owned(), g), ("b".to_owned(), h)];
        assert_eq!(
            render(&two),
            "● 1/2 tunnels online · 3 sessions · 1 in flight · 37 answered"
        );
    }

    #[test]
    fn an_http_server_that_is_down_is_named() {
        let g = Arc::new(Gauges::default());
        g.set_state(LinkState::Online);
        g.health().down("connection refused");
        let one = vec![("a".to_owned(), g.clone())];
        assert_eq!(
            render(&one),
            "● online · server not reachable for 0 s, retrying · 0 sessions · 0 in flight · 0 answered"
        );
        let two = vec![
            ("a".to_owned(), g.clone()),
            ("b".to_owned(), Arc::new(Gauges::default())),
        ];
        assert!(
            render(&two).contains("not reachable: a ·"),
            "{}",
            render(&two)
        );
        g.health().up();
        assert_eq!(
            render(&one),
            "● online · 0 sessions · 0 in flight · 0 answered"
        );
    }
}
