//! Helpers for the end-to-end tests: start `bridge` and `relay` as real processes with
//! the fixture server, find the pinned third-party clients, and run them.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/<profile>/bridge`, `relay`, `mcp-fixture`); the test command builds them first.

pub mod browser;
pub mod cut_proxy;
pub mod fixture_truth;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// A child process killed (with its process group) when dropped.
pub struct Proc {
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
    lines: mpsc::Receiver<String>,
    stdin: Option<std::process::ChildStdin>,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` (stdout read line by line, stderr to [`Proc::log`]) in a process
    /// group of its own, killed when the `Proc` is dropped.
    pub fn start(cmd: Command, name: &str) -> Self {
        Self::spawn(cmd, tempfile::tempdir().expect("tempdir"), name)
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

    fn spawn(cmd: Command, dir: tempfile::TempDir, name: &str) -> Self {
        Self::spawn_with(cmd, dir, name, false)
    }

    /// Like [`Proc::spawn`]; with `piped_stdin` the process reads what
    /// [`Proc::write_line`] writes (otherwise its stdin is empty).
    fn spawn_with(mut cmd: Command, dir: tempfile::TempDir, name: &str, piped_stdin: bool) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let err = std::fs::File::create(&log).expect("log file");
        let stdin = if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.stdout(Stdio::piped()).stderr(err).stdin(stdin);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            log,
            lines: rx,
            stdin,
            _dir: dir,
        }
    }

    /// Writes one line to the process's standard input (started with a piped stdin, e.g.
    /// [`BridgeOpts::piped_stdin`]): what a person would type in its terminal.
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

    /// Waits for stdout lines until `done` says the collected lines are enough.
    fn wait_lines(&mut self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!(
                    "{what} did not become ready; stdout so far: {seen:?}; stderr: {}",
                    self.log_text()
                ),
            }
        }
        seen
    }

    /// The process's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Operating-system pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, up to `timeout`; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        #[cfg(unix)]
        // SAFETY: signalling our own child.
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
    }
}

#[cfg(unix)]
unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Proc {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: killing the process group we created for this child.
        unsafe {
            libc_kill(-(self.child.id() as i32), 9);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for starting a bridge.
#[derive(Default, Clone)]
pub struct BridgeOpts {
    /// Connect to this relay (base URL, bridge token) instead of the embedded one.
    pub relay: Option<(String, String)>,
    /// `--listen` address of the in-process relay (default `127.0.0.1:0`, any free port);
    /// unused with `relay`.
    pub listen: Option<String>,
    /// `--auth none` instead of a bearer token.
    pub no_auth: bool,
    /// `--isolate`.
    pub isolate: bool,
    /// `--name`.
    pub name: Option<String>,
    /// More flags.
    pub args: Vec<String>,
    /// The server command; the fixture when empty.
    pub command: Vec<String>,
    /// Environment for the bridge (and so its child).
    pub env: Vec<(String, String)>,
    /// Give the bridge a piped stdin ([`Proc::write_line`] types into its terminal, e.g.
    /// the code of an OAuth consent); otherwise its stdin is empty.
    pub piped_stdin: bool,
}

/// A running bridge with the endpoints it printed.
pub struct Bridge {
    /// The process.
    pub proc: Proc,
    /// `MCP endpoint:` URL.
    pub mcp_url: String,
    /// `SSE endpoint:` URL.
    pub sse_url: String,
    /// The bearer token clients must send, when auth is on.
    pub bearer: Option<String>,
    /// The fixture's counts file.
    pub counts: PathBuf,
}

impl Bridge {
    /// Starts a bridge serving the fixture (or `opts.command`).
    pub fn start(opts: BridgeOpts) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let counts = dir.path().join("counts.txt");
        let mut cmd = Command::new(bin("bridge"));
        cmd.arg("run");
        match &opts.relay {
            Some((url, token)) => {
                cmd.arg("--relay").arg(url).env("BRIDGE_TOKEN", token);
            }
            None => {
                cmd.arg("--listen")
                    .arg(opts.listen.as_deref().unwrap_or("127.0.0.1:0"));
            }
        }
        if opts.no_auth {
            cmd.arg("--auth").arg("none");
        }
        if opts.isolate {
            cmd.arg("--isolate");
        }
        if let Some(n) = &opts.name {
            cmd.arg("--name").arg(n);
        }
        cmd.args(&opts.args);
        cmd.arg("--");
        if opts.command.is_empty() {
            cmd.arg(bin("mcp-fixture"));
        } else {
            cmd.args(&opts.command);
        }
        cmd.env("FIXTURE_COUNTS", &counts)
            .env("RUST_LOG", "info")
            .env_remove("BRIDGE_CLIENT_TOKEN");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn_with(cmd, dir, "bridge", opts.piped_stdin);
        let lines = proc.wait_lines("bridge", |l| {
            l.iter()
                .any(|x| x.starts_with("Bearer token:") || x.starts_with("Client auth:"))
        });
        let field = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(|s| s.trim().to_owned()))
        };
        Self {
            mcp_url: field("MCP endpoint:").expect("MCP endpoint line"),
            sse_url: field("SSE endpoint:").expect("SSE endpoint line"),
            bearer: field("Bearer token:"),
            counts,
            proc,
        }
    }

    /// Lines the fixture recorded.
    pub fn counts(&self) -> Vec<String> {
        std::fs::read_to_string(&self.counts)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many recorded lines equal `line` exactly.
    pub fn count(&self, line: &str) -> usize {
        self.counts().iter().filter(|l| *l == line).count()
    }
}

/// A running `relay serve`.
pub struct Relay {
    /// The process.
    pub proc: Proc,
    /// Its public base URL.
    pub base: String,
    /// A bridge token it accepts.
    pub token: String,
}

impl Relay {
    /// Starts a relay on a free loopback port with a fresh bridge token.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts a relay listening on `listen` with a fresh bridge token.
    pub fn start_on(listen: &str, args: &[&str]) -> Self {
        Self::start_with_env(listen, args, &[])
    }

    /// Starts a relay listening on `listen` with a fresh bridge token and these
    /// environment variables.
    pub fn start_with_env(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // (Bridge tokens have at least 32 characters.)
        let token = format!("test-bridge-token-{:0>16}-abcdefgh", std::process::id());
        let mut cmd = Command::new(bin("relay"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .args(args)
            .env("RELAY_BRIDGE_TOKENS", &token)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(cmd, dir, "relay");
        let lines = proc.wait_lines("relay", |l| {
            l.iter().any(|x| x.starts_with("Relay listening"))
        });
        let line = lines
            .iter()
            .find(|l| l.starts_with("Relay listening"))
            .expect("banner");
        let base = line
            .rsplit("public URL ")
            .next()
            .expect("url")
            .trim()
            .to_owned();
        Self { proc, base, token }
    }
}

/// Paths of the pinned third-party test helpers (from `tests/deps/env.sh`).
pub struct Deps {
    vars: HashMap<String, String>,
}

impl Deps {
    /// Reads the helper paths; panics with instructions when they are not installed.
    pub fn get() -> Self {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/deps/env.sh"))
            .output()
            .expect("bash");
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        assert_eq!(
            vars.get("TEST_DEPS_READY").map(String::as_str),
            Some("1"),
            "the pinned test helpers are missing: run tests/deps/install.sh"
        );
        Self { vars }
    }

    /// One variable (e.g. `NODE22`, `PY_SDK`, `CONFORMANCE_JS`).
    pub fn var(&self, k: &str) -> String {
        self.vars
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} is not set by tests/deps/env.sh"))
    }

    /// Path of a client script under `tests/clients`.
    pub fn client(&self, name: &str) -> PathBuf {
        repo_root().join("tests/clients").join(name)
    }
}

/// Runs a command and returns the JSON object on the last line of its stdout, panicking
/// (with its output) if it fails.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{cmd:?} printed no JSON summary ({e}):\nstdout:\n{stdout}\nstderr:\n{stderr}")
    })
}

/// Process ids whose command line contains `needle` (Linux `/proc`).
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// A raw HTTP/1.1 answer read to its end: status, headers (names in lower case, repeated
/// ones joined with a line break) and body (a chunked one decoded).
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HashMap<String, String>,
    /// The body, as text (lossy).
    pub body: String,
}

/// Parses a whole HTTP/1.1 answer as read from a connection closed by the server; panics
/// (the test fails) on anything that is not one.
pub fn parse_http_answer(raw: &[u8]) -> HttpAnswer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut headers: HashMap<String, String> = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let e = headers.entry(k.trim().to_ascii_lowercase()).or_default();
            if !e.is_empty() {
                e.push('\n');
            }
            e.push_str(v.trim());
        }
    }
    let rest = &raw[split + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut body = Vec::new();
        let mut rest = rest;
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&rest[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .unwrap_or(0);
            let data = &rest[eol + 2..];
            if size == 0 || data.len() < size {
                break;
            }
            body.extend_from_slice(&data[..size]);
            rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
        }
        body
    } else {
        rest.to_vec()
    };
    HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// POSTs `body` to `url` (`http://host:port/path`) on a fresh connection with `headers`
/// (`Connection: close`, `Content-Type: application/json` and an `Accept` for both answer
/// types are added) and reads the whole answer; panics on a connection error.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &str) -> HttpAnswer {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut conn = std::net::TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("cannot connect to {authority}: {e}"));
    conn.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .expect("read timeout");
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n",
        if path.is_empty() { "/" } else { path },
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).expect("write the request");
    conn.write_all(body.as_bytes()).expect("write the body");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read the answer");
    parse_http_answer(&raw)
}

/// The command that runs `command` (a server) with a copy of everything written to its
/// standard input appended to `log`, to see what the bridge sends it.
pub fn teed(log: &Path, command: &[String]) -> Vec<String> {
    let mut all = vec![
        "sh".into(),
        "-c".into(),
        r#"log="$1"; shift; tee -a "$log" | "$@""#.into(),
        "sh".into(),
        log.display().to_string(),
    ];
    all.extend_from_slice(command);
    all
}

/// A TCP port free on every interface right now, for a program that must be told its port
/// before it binds (Caddy, HAProxy). It is taken below the kernel's ephemeral range
/// (32768–60999 on Linux), so the source ports of other connections cannot take it in the
/// meantime, as they can with a port the kernel handed out for `:0`.
pub fn unused_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Different processes start at different places; one process walks on.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n.wrapping_mul(7919)) % SPAN) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}
