//! A bearer tunnel's refusal of a wrong token, seen by a real OAuth-capable client:
//! `mcp-remote` (the stdio proxy Claude Desktop users run for remote servers), given the
//! token with `--header "Authorization: Bearer …"`.
//!
//! Such a client starts an OAuth sign-in on a 401: it finds no protected-resource metadata
//! for a bearer tunnel, takes the relay's own authorization server, registers itself and
//! opens a browser at `/oauth/authorize`, which can only fail, and never says the token is
//! wrong. The relay answers a wrong static token 403 instead, and the client must give up
//! with an error that names the token, without registering or opening a browser, over
//! Streamable HTTP and over the legacy HTTP+SSE transport.
//!
//! The client talks to a `relay serve` through `tests/clients/tap_proxy.mjs`, a recording
//! proxy whose address is the relay's public URL (so every URL the relay publishes, its
//! OAuth endpoints included, leads through the proxy), and every "browser" it could open is
//! a script that only records the URL. Needs `tests/deps/install.sh` and
//! `cargo build --workspace --bins` first.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use e2e::{Bridge, BridgeOpts, Deps, Proc, Relay, unused_port};
use serde_json::{Value, json};

/// How long mcp-remote may take to connect or to give up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The pinned helpers, read once.
fn deps() -> &'static Deps {
    static DEPS: OnceLock<Deps> = OnceLock::new();
    DEPS.get_or_init(Deps::get)
}

/// A relay whose public URL is a recording proxy in front of it, and a bridge on it with a
/// bearer token.
struct Setup {
    tap_log: PathBuf,
    bridge: Bridge,
    _relay: Relay,
    _tap: Proc,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tap_log = dir.path().join("tap.jsonl");
        let relay_port = unused_port();
        let mut cmd = Command::new(deps().var("NODE22"));
        cmd.arg(deps().client("tap_proxy.mjs"))
            .arg(format!("http://127.0.0.1:{relay_port}"))
            .arg("--log")
            .arg(&tap_log);
        let tap = Proc::start(cmd, "tap");
        assert!(
            tap.wait_log("tap_proxy listening port=", Duration::from_secs(20)),
            "tap_proxy.mjs did not start: {}",
            tap.log_text()
        );
        let tap_port: u16 = tap
            .log_text()
            .split("listening port=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("tap port");
        let public = format!("http://127.0.0.1:{tap_port}");
        let relay = Relay::start_on(
            &format!("127.0.0.1:{relay_port}"),
            &["--public-url", &public],
        );
        assert_eq!(relay.base, public);
        // The bridge dials the relay itself (the proxy does not carry WebSockets); the
        // endpoints it prints are on the public URL.
        let bridge = Bridge::start(BridgeOpts {
            relay: Some((
                format!("http://127.0.0.1:{relay_port}"),
                relay.token.clone(),
            )),
            args: vec!["--auth".into(), "bearer".into()],
            ..BridgeOpts::default()
        });
        assert!(
            bridge.mcp_url.starts_with(&public),
            "{} is not on {public}",
            bridge.mcp_url
        );
        Self {
            tap_log,
            bridge,
            _relay: relay,
            _tap: tap,
            _dir: dir,
        }
    }

    /// `METHOD path` of every request the proxy has seen, oldest first.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.tap_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["phase"] == "request")
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap_or("?"),
                    r["path"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }
}

/// A running `mcp-remote` with a throw-away home, no display, and every way it has to
/// open a browser (`$BROWSER`, `xdg-open` and the other helpers it tries) replaced by a
/// script that records the URL.
struct McpRemote {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    browser_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl McpRemote {
    /// Starts `mcp-remote URL --header "Authorization: Bearer TOKEN" [extra…]` and writes
    /// an `initialize` to its standard input, as a desktop client does.
    fn start(url: &str, token: &str, extra: &[&str]) -> Self {
        let script = PathBuf::from(deps().var("MCP_REMOTE_JS"));
        assert!(
            script.exists(),
            "{} is missing: run tests/deps/install.sh",
            script.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&bin).expect("bin");
        let browser_log = dir.path().join("browser.log");
        let browser = bin.join("browser");
        std::fs::write(
            &browser,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n", browser_log.display()),
        )
        .expect("browser script");
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for helper in [
            "xdg-open",
            "gio",
            "x-www-browser",
            "sensible-browser",
            "www-browser",
        ] {
            std::os::unix::fs::symlink(&browser, bin.join(helper)).expect("symlink");
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let stderr = dir.path().join("mcp-remote.log");
        let mut cmd = Command::new(deps().var("NODE22"));
        cmd.arg(&script)
            .arg(url)
            .arg("--header")
            .arg(format!("Authorization: Bearer {token}"))
            .args(extra)
            .env("HOME", &home)
            .env("MCP_REMOTE_CONFIG_DIR", home.join(".mcp-auth"))
            .env("BROWSER", &browser)
            .env("PATH", path);
        for var in [
            "DISPLAY",
            "WAYLAND_DISPLAY",
            "XDG_CURRENT_DESKTOP",
            "DESKTOP_SESSION",
            "DBUS_SESSION_BUS_ADDRESS",
            "KDE_FULL_SESSION",
            "GNOME_DESKTOP_SESSION_ID",
        ] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .process_group(0);
        let mut child = cmd.spawn().expect("start mcp-remote");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stdin = child.stdin.take().expect("stdin");
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bearer-refusal-test", "version": "0"}}});
        writeln!(stdin, "{initialize}").expect("write initialize");
        Self {
            child,
            stdin: Some(stdin),
            lines,
            stderr,
            browser_log,
            _dir: dir,
        }
    }

    /// What it wrote to stderr.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The URLs it asked a browser to open.
    fn browser_opened(&self) -> String {
        std::fs::read_to_string(&self.browser_log).unwrap_or_default()
    }

    /// Waits until it exits (its exit code) or asks a browser to open a page (`None`).
    fn wait_exit_or_browser(&mut self) -> Option<i32> {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if !self.browser_opened().is_empty() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-remote neither gave up nor opened a browser within {CLIENT_TIMEOUT:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first JSON-RPC message it writes to stdout.
    fn answer(&self) -> Value {
        let line = self.lines.recv_timeout(CLIENT_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "mcp-remote answered nothing within {CLIENT_TIMEOUT:?}: {}",
                self.log()
            )
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}

impl Drop for McpRemote {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // SAFETY: killing the process group created for this child.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs mcp-remote with a wrong token against `url` and checks that it gave up on its own
/// without any OAuth sign-in; its log.
fn refused_without_oauth(setup: &Setup, url: &str, extra: &[&str]) -> String {
    let before = setup.requests().len();
    let mut client = McpRemote::start(url, "not-the-token", extra);
    let exit = client.wait_exit_or_browser();
    let log = client.log();
    let browser = client.browser_opened();
    let requests = setup.requests()[before..].to_vec();
    let path = &url[url.find("://").map_or(0, |i| i + 3)..];
    let path = &path[path.find('/').unwrap_or(path.len())..];
    assert!(
        requests.iter().any(|r| r.ends_with(&format!(" {path}"))),
        "the proxy saw none of mcp-remote's requests to {path}: {requests:#?}\nlog: {log}"
    );
    assert!(
        browser.is_empty(),
        "a wrong bearer token sent mcp-remote to a browser sign-in at {browser}\n\
         requests: {requests:#?}\nlog: {log}"
    );
    // Its start-up discovery reads the relay's authorization-server metadata whatever the
    // answer (it does with the right token too); a sign-in would register and authorize.
    let oauth: Vec<&String> = requests.iter().filter(|r| r.contains(" /oauth/")).collect();
    assert!(
        oauth.is_empty(),
        "mcp-remote went on to the relay's OAuth endpoints: {oauth:?}\nlog: {log}"
    );
    assert!(
        matches!(exit, Some(code) if code != 0),
        "mcp-remote should fail (exit {exit:?}): {log}"
    );
    assert!(
        log.contains("403"),
        "the refusal is a 403 in mcp-remote's log: {log}"
    );
    log
}

#[test]
fn streamable_http_a_wrong_token_is_named_and_starts_no_oauth_sign_in() {
    let setup = Setup::start();
    let token = setup.bridge.bearer.clone().expect("a bearer tunnel");

    // The same client with the right token is served (so what follows is about the token).
    let client = McpRemote::start(&setup.bridge.mcp_url, &token, &[]);
    let answer = client.answer();
    assert_eq!(
        answer["result"]["serverInfo"]["name"],
        "mcp-fixture",
        "{answer}\nlog: {}",
        client.log()
    );
    drop(client);

    // The error mcp-remote prints is the relay's, naming the token.
    let log = refused_without_oauth(&setup, &setup.bridge.mcp_url, &[]);
    assert!(
        log.contains("wrong bearer token")
            && log.contains("the bearer token that `bridge run` printed"),
        "mcp-remote's error should say the token is wrong: {log}"
    );
}

/// Legacy HTTP+SSE: the stream's GET is refused the same way. (The SDK's EventSource reports
/// only the status of a refused stream, not its body, so the message cannot reach the user.)
#[test]
fn legacy_sse_a_wrong_token_starts_no_oauth_sign_in() {
    let setup = Setup::start();
    refused_without_oauth(&setup, &setup.bridge.sse_url, &["--transport", "sse-only"]);
}
