//! The stdio MCP server process: spawning it in its own process group (a Job Object on
//! Windows), feeding its stdin (coalesced writes), reading its stdout line by line
//! (bounded), keeping its stderr in the local log, and killing its whole process tree when
//! it is dropped.
//!
//! How the tree is taken down on each system:
//!
//! - **Linux**: the server leads its own process group, which the bridge kills with
//!   `SIGKILL` when it drops the server; the server also gets `SIGKILL` if the bridge dies
//!   (`PR_SET_PDEATHSIG`), and the orphan guard ([`crate::guard`]) kills the group, with
//!   the server's own children, if the bridge is killed outright.
//! - **macOS** (and other Unix systems): the same, without a parent-death signal: the
//!   orphan guard alone takes the group down when the bridge dies.
//! - **Windows**: the server is found on `PATH` with `PATHEXT` (so `npx` finds `npx.cmd`),
//!   its arguments are checked (see [`win`]), and it runs in a Job Object that the bridge
//!   terminates when it drops the server and that the kernel kills when the bridge dies.
//!
//! The process group, the Job Object (the server created suspended and resumed once it is
//! in its job, so nothing it starts escapes) and kill-on-drop are `process-wrap`'s
//! wrappers. What stays here:
//!
//! - the parent-death signal (Linux), which `process-wrap` has no wrapper for;
//! - on Unix, the group is signalled from the handle's drop (`killpg`): the wrapped child
//!   lives in the task that waits for the server's exit, and the wrapper kills only the
//!   server when dropped, so killing through it would miss what a server that already
//!   exited left in its group;
//! - on Windows, dropping the handle tells that task to terminate the job (closing the
//!   job's last handle, when the task ends or the bridge dies, kills the tree as well). If
//!   the server cannot be started in a job (the job cannot be created, the server cannot be
//!   put in it or resumed there), it is started again outside one, with a warning; then
//!   only the server itself is killed, not what it started.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use process_wrap::tokio::{CommandWrap, KillOnDrop};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::guard::Guard;

#[path = "win.rs"]
pub mod win;

/// Identifies one child process over the bridge's lifetime.
pub type ChildId = u64;

/// Lines of stderr kept for incident reports.
const STDERR_TAIL: usize = 20;
/// Lines queued to a child's stdin before callers are told it is busy.
const STDIN_QUEUE: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Program.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Longest stdout line accepted; longer lines are dropped with a warning.
    pub max_line: usize,
    /// Environment variables set for it, on top of the bridge's own.
    pub env: Vec<(String, String)>,
    /// Working directory (the bridge's own when `None`).
    pub cwd: Option<std::path::PathBuf>,
}

/// Something a child did, reported to the bridge core.
#[derive(Debug)]
pub enum ChildEvent {
    /// One line of stdout (without the newline).
    Line(ChildId, Bytes),
    /// The process exited (stdout closed and the process was reaped).
    Exited(ChildId, String),
    /// An HTTP server could not be reached (connection refused, timed out): the child is
    /// gone as one that exited, and the server is retried.
    Unreachable(ChildId, String),
}

/// A running child. Dropping it kills its process group.
pub struct ChildHandle {
    stdin: mpsc::Sender<Bytes>,
    pid: Option<u32>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    guard: Arc<Guard>,
    /// Dropped with the handle, which tells the child's task to kill it (with its job).
    #[cfg(windows)]
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program could not be executed.
    #[error("cannot start {program:?}: {source}")]
    Exec {
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An argument cannot be passed to the program (Windows: a NUL character, or a line
    /// break for a `.bat`/`.cmd` program).
    #[cfg_attr(not(windows), allow(dead_code))]
    #[error("an argument cannot be passed to \"{program}\": {reason}")]
    Argument {
        /// The program.
        program: String,
        /// Which argument, and why.
        reason: String,
    },
}

impl ChildHandle {
    /// Spawns the child and its I/O tasks; its events go to `events`.
    pub fn spawn(
        id: ChildId,
        spec: &ChildSpec,
        events: mpsc::Sender<ChildEvent>,
        guard: Arc<Guard>,
    ) -> Result<Self, SpawnError> {
        let program = program_to_run(spec);
        #[cfg(windows)]
        win::check_args(&program, &spec.args).map_err(|reason| SpawnError::Argument {
            program: program.clone(),
            reason,
        })?;
        #[cfg(not(windows))]
        let spawned = server_command(&program, spec).spawn();
        #[cfg(windows)]
        let spawned = spawn_in_job(&program, spec);
        let mut child = spawned.map_err(|source| SpawnError::Exec {
            program: program.clone(),
            source,
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            guard.watch(pid);
        }
        // The command pipes all three; a missing one is reported, never assumed.
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            return Err(SpawnError::Exec {
                program,
                source: std::io::Error::other("the server's standard streams are not piped"),
            });
        };
        info!(child = id, pid, program = %program, "started the MCP server");

        let (tx, rx) = mpsc::channel::<Bytes>(STDIN_QUEUE);
        tokio::spawn(write_stdin(id, stdin, rx));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        tokio::spawn(read_stderr(id, stderr, tail.clone()));
        let max_line = spec.max_line;
        // Windows has no process group to signal: dropping the handle (which drops `stop`)
        // tells this task to terminate the job (or the server alone, outside a job).
        #[cfg(windows)]
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            #[cfg(windows)]
            tokio::select! {
                _ = read_stdout(id, stdout, max_line, &events) => {}
                _ = stopped => {
                    let _ = child.start_kill();
                }
            }
            #[cfg(not(windows))]
            read_stdout(id, stdout, max_line, &events).await;
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown exit status ({e})"),
            };
            let _ = events.send(ChildEvent::Exited(id, status)).await;
        });
        Ok(Self {
            stdin: tx,
            pid,
            stderr_tail: tail,
            guard,
            #[cfg(windows)]
            _stop: stop,
        })
    }

    /// Queues one line (a newline is added) to the child's stdin. `false` if the child is
    /// not keeping up or is gone.
    pub fn send_line(&self, mut line: Vec<u8>) -> bool {
        line.push(b'\n');
        self.stdin.try_send(Bytes::from(line)).is_ok()
    }

    /// Whether the child's stdin is gone (it exited, or is exiting).
    pub fn stdin_closed(&self) -> bool {
        self.stdin.is_closed()
    }

    /// The process id, if the system gave one.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The last lines the child wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for ChildHandle {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid {
            // The child leads its own process group: signal the whole group, so servers
            // started through `npx`/`uvx` shims do not leave grandchildren behind.
            // SAFETY: plain syscalls on a process group we created.
            unsafe {
                libc::killpg(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if let Some(pid) = self.pid {
            self.guard.forget(pid);
        }
    }
}

/// The program to start for `spec`: on Windows a bare name is looked up on `PATH` with
/// `PATHEXT` (std alone only finds `.exe` files), those of `spec.env` when it sets them,
/// else the bridge's; elsewhere it is left to `execvp`.
fn program_to_run(spec: &ChildSpec) -> String {
    let program = spec.program.as_str();
    #[cfg(windows)]
    {
        let var = |name: &str| {
            let set = spec
                .env
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(name));
            match set {
                Some((_, v)) => v.clone(),
                None => std::env::var_os(name)
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            }
        };
        let found = win::resolve_program(program, &var("PATH"), &var("PATHEXT"), |p| {
            std::path::Path::new(p).is_file()
        });
        if found != program {
            debug!("{program:?} is {found:?}");
        }
        found
    }
    #[cfg(not(windows))]
    program.to_string()
}

/// The server's command: piped stdio, the bridge's own variables left out, `spec.env` and
/// `spec.cwd`, killed when dropped, and in a process group of its own: on Unix one it leads
/// (with, on Linux, `SIGKILL` when the bridge dies), on Windows a console process group, so
/// that the terminal's Ctrl+C reaches only the bridge, which finishes the requests in
/// flight and then stops the server.
fn server_command(program: &str, spec: &ChildSpec) -> CommandWrap {
    let mut cmd = CommandWrap::with_new(program, |cmd| {
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if is_bridge_variable(&name) {
                cmd.env_remove(name);
            }
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; it only sets this process's parent-death
        // signal so the child dies with the bridge even if the bridge is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    });
    cmd.wrap(KillOnDrop);
    #[cfg(unix)]
    cmd.wrap(process_wrap::tokio::ProcessGroup::leader());
    #[cfg(windows)]
    cmd.wrap(process_wrap::tokio::CreationFlags(
        windows::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP,
    ));
    cmd
}

/// Starts the server in a Job Object of its own (with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`,
/// as [`KillOnDrop`] asks): created suspended, put in the job, then resumed, so nothing it
/// starts escapes the job. If that fails other than by the program not starting, the
/// server is started again outside a job, with a warning.
#[cfg(windows)]
fn spawn_in_job(
    program: &str,
    spec: &ChildSpec,
) -> std::io::Result<Box<dyn process_wrap::tokio::ChildWrapper>> {
    let mut not_started = false;
    let mut cmd = server_command(program, spec);
    cmd.wrap(process_wrap::tokio::JobObject);
    match cmd.spawn_with(|cmd| cmd.spawn().inspect_err(|_| not_started = true)) {
        Err(e) if !not_started => {
            warn!(
                "cannot put the server in a job object ({e}); its child processes may outlive the bridge"
            );
            server_command(program, spec).spawn()
        }
        spawned => spawned,
    }
}

/// Feeds queued lines to stdin, coalescing everything queued into one write.
async fn write_stdin(
    id: ChildId,
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        let result = match rx.try_recv() {
            Err(_) => stdin.write_all(&first).await,
            Ok(second) => {
                buf.clear();
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second);
                while buf.len() < (1 << 20) {
                    match rx.try_recv() {
                        Ok(more) => buf.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                stdin.write_all(&buf).await
            }
        };
        if let Err(e) = result.and(stdin.flush().await) {
            debug!(child = id, "stdin closed: {e}");
            break;
        }
    }
}

/// Reads stdout lines (bounded) and reports them.
async fn read_stdout<R: AsyncRead + Unpin>(
    id: ChildId,
    stdout: R,
    max_line: usize,
    events: &mpsc::Sender<ChildEvent>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        match read_line_limited(&mut reader, &mut line, max_line).await {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong(n)) => {
                warn!(
                    child = id,
                    "dropped a stdout line of {n} bytes (limit {max_line})"
                );
            }
            Ok(LineRead::Line) => {
                let l = std::mem::take(&mut line);
                let trimmed_len = l.strip_suffix(b"\r").map(|s| s.len()).unwrap_or(l.len());
                if trimmed_len == 0 {
                    continue;
                }
                let mut b = Bytes::from(l);
                b.truncate(trimmed_len);
                if events.send(ChildEvent::Line(id, b)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                debug!(child = id, "stdout read error: {e}");
                break;
            }
        }
    }
}

/// Result of reading one line.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A complete line is in the buffer (newline removed).
    Line,
    /// A line longer than the limit was skipped; its length.
    TooLong(usize),
    /// End of input.
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), never holding more than
/// `max` bytes. A final line without a newline counts as a line.
pub async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    let mut skipped = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if skipped > 0 {
                LineRead::TooLong(skipped)
            } else if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (part, found) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], Some(i)),
            None => (chunk, None),
        };
        if skipped > 0 || buf.len() + part.len() > max {
            skipped += buf.len() + part.len();
            buf.clear();
        } else {
            buf.extend_from_slice(part);
        }
        match found {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(if skipped > 0 {
                    LineRead::TooLong(skipped)
                } else {
                    LineRead::Line
                });
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// A line of the server's stderr made safe for the owner's terminal and log: a carriage
/// return, escape sequence or bidirectional override could otherwise overwrite or forge
/// the bridge's own lines. Tabs become spaces; at most 4,096 characters are kept.
fn stderr_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).replace('\t', "    ");
    protocol::text::printable(&text, 4096)
}

/// Whether an environment variable of the bridge's own stays out of the server's
/// environment: `BRIDGE_*` and `RELAY_*` hold the bridge token, the client token and the
/// relay's settings, which a server (and through its tools, any client) must never read.
/// Variables a server needs go in its `env` table of the configuration file, which is
/// applied after this filter. Names compare case-insensitively (Windows' rule).
pub fn is_bridge_variable(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    ["BRIDGE_", "RELAY_"].iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

/// Logs stderr locally (it can hold paths and secrets: it never leaves the desktop) and
/// keeps a short tail for incident reports.
async fn read_stderr(
    id: ChildId,
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line_limited(&mut lines, &mut buf, 64 * 1024).await {
            Ok(LineRead::Line) => {
                let s = stderr_line(&buf);
                info!(target: "server_stderr", child = id, "{s}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(s);
                }
            }
            Ok(LineRead::TooLong(_)) => {}
            Ok(LineRead::Eof) | Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_cannot_forge_terminal_lines() {
        let forged = stderr_line(b"working...\rINFO bridge: approved client\x1b[2K\tdone");
        assert!(
            !forged.contains('\r') && !forged.contains('\x1b'),
            "{forged:?}"
        );
        assert!(forged.starts_with("working...\u{FFFD}INFO"), "{forged:?}");
        assert!(forged.ends_with("    done"), "{forged:?}");
        assert_eq!(stderr_line("é \u{202E}x".as_bytes()), "é \u{FFFD}x");
    }

    #[test]
    fn bridge_variables_stay_out_of_the_server() {
        for name in [
            "BRIDGE_TOKEN",
            "BRIDGE_CLIENT_TOKEN",
            "bridge_token",
            "Relay_Url",
            "RELAY_BRIDGE_TOKENS",
        ] {
            assert!(is_bridge_variable(std::ffi::OsStr::new(name)), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "MY_BRIDGE_TOKEN",
            "BRIDGE",
            "RELAYED",
            "É_BRIDGE_",
        ] {
            assert!(!is_bridge_variable(std::ffi::OsStr::new(name)), "{name}");
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let data: &[u8] = b"short\nthis line is far too long\nok\nlast";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"short");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::TooLong(_)
        ));
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"ok");
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Eof
        );
    }
}
