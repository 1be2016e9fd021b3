//! The stdio MCP server process: spawning it in its own process group, feeding its stdin
//! (coalesced writes), reading its stdout line by line (bounded), keeping its stderr in
//! the local log, and killing its whole process tree when it is dropped.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::guard::Guard;

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
}

/// Something a child did, reported to the bridge core.
#[derive(Debug)]
pub enum ChildEvent {
    /// One line of stdout (without the newline).
    Line(ChildId, Bytes),
    /// The process exited (stdout closed and the process was reaped).
    Exited(ChildId, String),
}

/// A running child. Dropping it kills its process group.
pub struct ChildHandle {
    stdin: mpsc::Sender<Bytes>,
    pid: Option<u32>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    guard: Arc<Guard>,
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
}

impl ChildHandle {
    /// Spawns the child and its I/O tasks; its events go to `events`.
    pub fn spawn(
        id: ChildId,
        spec: &ChildSpec,
        events: mpsc::Sender<ChildEvent>,
        guard: Arc<Guard>,
    ) -> Result<Self, SpawnError> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        {
            cmd.process_group(0);
            #[cfg(target_os = "linux")]
            // SAFETY: prctl is async-signal-safe; it only sets this process's parent-death
            // signal so the child dies with the bridge even if the bridge is killed.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child: Child = cmd.spawn().map_err(|source| SpawnError::Exec {
            program: spec.program.clone(),
            source,
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            guard.watch(pid);
        }
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        info!(child = id, pid, program = %spec.program, "started the MCP server");

        let (tx, rx) = mpsc::channel::<Bytes>(STDIN_QUEUE);
        tokio::spawn(write_stdin(id, stdin, rx));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        tokio::spawn(read_stderr(id, stderr, tail.clone()));
        let max_line = spec.max_line;
        tokio::spawn(async move {
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
                let s = String::from_utf8_lossy(&buf).into_owned();
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
