//! A bearer tunnel's refusal of a wrong token, seen by a real OAuth-capable client:
//! `mcp-remote` (the stdio proxy Claude Desktop users run for remote servers), given the
//! token with `--header "Authorization: Bearer …"`.
//!
//! Such a client starts an OAuth sign-in on a 401: it finds no protected-resource metadata
//! for a bearer tunnel, takes the relay's own authorization server, registers itself and
//! opens a browser at `/oauth/authorize`, which can only fail, and never says the token is
//! wrong. The relay answers a wrong static token 403 instead, and the client must give up
//! with an error that names the token, without registering or opening a browser, over
//! Streamable HTTP and over the older HTTP+SSE transport.
//!
//! The client talks to a `relay serve` through `tests/clients/tap_proxy.mjs`, a recording
//! proxy whose address is the relay's public URL (so every URL the relay publishes, its
//! OAuth endpoints included, leads through the proxy), and every "browser" it could open is
//! a script that only records the URL.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::clients::deps;
use e2e::mcp::initialize;
use e2e::{Bridge, BridgeOpts, Proc, Relay, unused_port};
use serde_json::{Value, json};

use crate::tap::Tap;

/// How long mcp-remote may take to connect or to give up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A relay whose public URL is a recording proxy in front of it, and a bridge on it with a
/// bearer token.
struct Setup {
    bridge: Bridge,
    _relay: Relay,
    tap: Tap,
}

impl Setup {
    fn start() -> Self {
        let relay_port = unused_port();
        let tap = Tap::before(&format!("http://127.0.0.1:{relay_port}"));
        let public = format!("http://127.0.0.1:{}", tap.port);
        let relay = Relay::start_on(
            &format!("127.0.0.1:{relay_port}"),
            &["--public-url", &public],
        );
        assert_eq!(relay.base, public);
        // The bridge dials the relay itself (the proxy does not carry WebSockets); the
        // endpoints it prints are on the public URL.
        let bridge = BridgeOpts::default()
            .via_url(&format!("http://127.0.0.1:{relay_port}"), &relay.token)
            .args(&["--auth", "bearer"])
            .start();
        assert!(
            bridge.mcp_url.starts_with(&public),
            "{} is not on {public}",
            bridge.mcp_url
        );
        Self {
            bridge,
            _relay: relay,
            tap,
        }
    }

    /// `METHOD path` of every request the proxy has seen, oldest first.
    fn requests(&self) -> Vec<String> {
        self.tap.requests()
    }
}

/// A running `mcp-remote` with a throw-away home, no display, and every way it has to
/// open a browser (`$BROWSER`, `xdg-open` and the other helpers it tries) replaced by a
/// script that records the URL.
struct McpRemote {
    proc: Proc,
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
        let mut proc = Proc::start_piped(cmd, "mcp-remote");
        let initialize = initialize(json!(1), "2025-06-18", json!({}), "bearer-refusal-test");
        proc.write_line(&initialize.to_string());
        Self {
            proc,
            browser_log,
            _dir: dir,
        }
    }

    /// What it wrote to stderr.
    fn log(&self) -> String {
        self.proc.log_text()
    }

    /// The URLs it asked a browser to open.
    fn browser_opened(&self) -> String {
        std::fs::read_to_string(&self.browser_log).unwrap_or_default()
    }

    /// Waits until it exits (its exit code) or asks a browser to open a page (`None`).
    fn wait_exit_or_browser(&mut self) -> Option<i32> {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            if let Some(code) = self.proc.exited() {
                return Some(code);
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
    fn answer(&mut self) -> Value {
        let line = self.proc.next_line(CLIENT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "mcp-remote answered nothing within {CLIENT_TIMEOUT:?}: {}",
                self.log()
            )
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
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
    let mut client = McpRemote::start(&setup.bridge.mcp_url, &token, &[]);
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

/// HTTP+SSE: the stream's GET is refused the same way. (The SDK's EventSource reports
/// only the status of a refused stream, not its body, so the message cannot reach the user.)
#[test]
fn http_sse_a_wrong_token_starts_no_oauth_sign_in() {
    let setup = Setup::start();
    refused_without_oauth(&setup, &setup.bridge.sse_url, &["--transport", "sse-only"]);
}
