//! Child processes of the tests: the built binaries, a process killed with its group when
//! dropped, its stdout read line by line and its stderr kept in a file, and the signals and
//! `/proc` lookups the tests need.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long [`Proc`] waits for stdout lines a test asks for.
const STDOUT_WAIT: Duration = Duration::from_secs(120);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Makes `ring` the process's default rustls crypto provider (idempotent).
///
/// reqwest is built with `rustls-no-provider` in this workspace (the relay and bridge
/// use it that way), so a `reqwest::Client` without a preconfigured TLS config can only
/// be built once a provider is installed. [`bin`] calls this, so every test that starts
/// a binary before building its clients gets it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Path of a binary built by cargo in the same profile as the running test.
pub fn bin(name: &str) -> PathBuf {
    install_crypto_provider();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        p.display()
    );
    p
}

/// Sends `sig` to `pid`; whether it was delivered.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: a plain syscall signalling a process (or, negative, a process group) this
    // test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// Sends SIGKILL to a process group this test created (with `process_group(0)`).
pub fn kill_group(pid: u32) {
    // SAFETY: signalling a process group the test created.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

/// Live processes (Linux `/proc`) whose environment holds `entry` (`NAME=value`), with
/// their command lines.
pub fn processes_with_env(entry: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == entry.as_bytes()) || !alive(pid) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
    }
    found
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`); panics when it is missing.
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The last 40 lines of a log, for failure messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Reads a child's stdout lines on a thread.
pub fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Until the stream ends or fails, or nobody listens any more.
    std::thread::spawn(move || {
        let _ = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .try_for_each(|line| tx.send(line));
    });
    rx
}

/// A child process killed (with its process group) when dropped.
pub struct Proc {
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    seen: Vec<String>,
    /// How many of `seen` [`Proc::field`] has gone past.
    taken: usize,
    stdin: Option<ChildStdin>,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` (stdout read line by line, stderr to [`Proc::log`], stdin empty) in a
    /// process group of its own, killed when the `Proc` is dropped.
    pub fn start(cmd: Command, name: &str) -> Self {
        Self::spawn(cmd, name, false)
    }

    /// Like [`Proc::start`], with a piped stdin that [`Proc::write_line`] writes to.
    pub fn start_piped(cmd: Command, name: &str) -> Self {
        Self::spawn(cmd, name, true)
    }

    fn spawn(mut cmd: Command, name: &str, piped_stdin: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join(format!("{name}.log"));
        let err = std::fs::File::create(&log).expect("log file");
        let stdin = if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.stdout(Stdio::piped()).stderr(err).stdin(stdin);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = line_reader(&mut child);
        let stdin = child.stdin.take();
        Self {
            child,
            log,
            lines,
            seen: Vec::new(),
            taken: 0,
            stdin,
            _dir: dir,
        }
    }

    /// Waits until its stderr contains `needle`, up to `timeout`; whether it did.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until its stderr contains `needle`, up to `timeout`; panics with `what` and the
    /// log if it did not.
    pub fn expect_log(&self, needle: &str, timeout: Duration, what: &str) {
        assert!(
            self.wait_log(needle, timeout),
            "{what}: no {needle:?} in the log within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    /// Writes one line to the process's standard input (started with a piped stdin, e.g.
    /// [`crate::BridgeOpts::piped_stdin`]): what a person would type in its terminal.
    pub fn write_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self
            .stdin
            .as_mut()
            .expect("this process was started without a piped stdin");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("writing to the process's stdin");
    }

    /// Closes the process's standard input (end of file for it).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, waiting up to `timeout`; `None` on timeout or at the end of
    /// its output.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads stdout lines until `done` says the lines read so far (all of them, from the
    /// start) are enough; those lines. Panics, naming `what`, after two minutes.
    pub fn stdout_until(&mut self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + STDOUT_WAIT;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next_line(left).is_none() {
                panic!(
                    "{what} did not become ready; stdout so far: {:?}; stderr: {}",
                    self.seen,
                    self.log_text()
                );
            }
        }
        self.seen.clone()
    }

    /// Reads stdout until `n` lines start with `prefix`; all lines so far.
    pub fn wait_for(&mut self, prefix: &str, n: usize) -> Vec<String> {
        self.stdout_until(&format!("{n} lines {prefix:?}"), |seen| {
            seen.iter().filter(|l| l.starts_with(prefix)).count() >= n
        })
    }

    /// The next stdout line (after the one the previous call returned) starting with
    /// `prefix`, without it and trimmed.
    pub fn field(&mut self, prefix: &str) -> String {
        let found = |seen: &[String], from: usize| {
            seen.iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| l.starts_with(prefix))
                .map(|(i, _)| i)
        };
        let from = self.taken;
        self.stdout_until(&format!("a {prefix:?} line"), |seen| {
            found(seen, from).is_some()
        });
        let i = found(&self.seen, from).expect("just read");
        self.taken = i + 1;
        self.seen[i][prefix.len()..].trim().to_owned()
    }

    /// The process's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Operating-system pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and been reaped).
    pub fn exited(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// Waits for the process to exit, up to `timeout`; its exit code (-1 when a signal
    /// ended it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(code) = self.exited() {
                return Some(code);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        signal(self.pid(), libc::SIGTERM);
    }

    /// SIGTERM, then waits up to 20 s for the exit; its code.
    pub fn stop(&mut self) -> Option<i32> {
        self.terminate();
        self.wait_exit(Duration::from_secs(20))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
