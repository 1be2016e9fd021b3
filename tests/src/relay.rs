//! `relay serve` as a real process: with a bridge token in its environment ([`Relay`]), or
//! with a data directory holding bridge tokens made by `relay token create`, a public URL
//! `http://localhost:<port>` and optionally an operator password ([`OAuthRelay`]), as the
//! OAuth tests and the status page need.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::bridge::{Bridge, BridgeOpts};
use crate::ports::unused_port;
use crate::process::{Proc, bin};

/// The relay operator's password the tests use (its Argon2 hash is given to
/// `--operator-password-file`).
pub const OPERATOR_PASSWORD: &str = "correct horse battery staple";

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
        // (Bridge tokens have at least 32 characters.)
        let token = format!("test-bridge-token-{:0>16}-abcdefgh", std::process::id());
        Self::start_with_token(listen, &token, args, env)
    }

    /// Starts a relay listening on `listen` that accepts the bridge token `token`.
    pub fn start_with_token(
        listen: &str,
        token: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(bin("relay"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .args(args)
            .env("RELAY_BRIDGE_TOKENS", token)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::start(cmd, "relay");
        let lines = proc.stdout_until("relay", |l| {
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
        Self {
            proc,
            base,
            token: token.to_owned(),
        }
    }

    /// `host:port` the relay listens on (also when its public URL is elsewhere), from its
    /// public URL when that is a loopback address, else from its log.
    pub fn listen_addr(&self) -> String {
        if let Some(a) = self.base.strip_prefix("http://127.0.0.1:") {
            return format!("127.0.0.1:{a}");
        }
        // The tracing line `relay listening addr=127.0.0.1:PORT …` (with ANSI colours).
        let log = self.proc.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("relay listening"))
            .unwrap_or_else(|| panic!("no listen line in the relay log:\n{log}"));
        let at = line.find("127.0.0.1:").expect("a loopback listen address");
        let port: String = line[at + "127.0.0.1:".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        format!("127.0.0.1:{port}")
    }

    /// A bridge connected to this relay, serving the fixture with `opts`.
    pub fn bridge(&self, opts: BridgeOpts) -> Bridge {
        opts.via(self).start()
    }
}

/// `relay token create LABEL --data-dir DATA`: the new bridge token.
pub fn create_bridge_token(data: &Path, label: &str) -> String {
    let out = Command::new(bin("relay"))
        .args(["token", "create", label, "--data-dir"])
        .arg(data)
        .env_remove("RELAY_DATA_DIR")
        .output()
        .expect("relay token create");
    assert!(out.status.success(), "relay token create: {out:?}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!token.is_empty(), "relay token create printed no token");
    token
}

/// Argon2 hash of a password, from `relay hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin("relay"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("relay hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "relay hash-password: {out:?}");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2"), "{hash}");
    hash
}

/// `bridge approve CODE --relay BASE` with this bridge token.
pub fn bridge_approve(base: &str, token: &str, code: &str) -> Output {
    Command::new(bin("bridge"))
        .args(["approve", code, "--relay", base])
        .env("BRIDGE_TOKEN", token)
        .env_remove("BRIDGE_RELAY")
        .output()
        .expect("bridge approve")
}

/// `bridge approve` that must succeed for `tunnel`.
pub fn approve(base: &str, token: &str, code: &str, tunnel: &str) {
    let out = bridge_approve(base, token, code);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("access to tunnel {tunnel} ")),
        "bridge approve {code}: {out:?}"
    );
}

/// A `relay serve` on a fixed loopback port with public URL `http://localhost:<port>` and a
/// data directory that outlives it (so it can be restarted with its grants).
pub struct OAuthRelay {
    relay: Option<Relay>,
    /// Public base URL and OAuth issuer.
    pub base: String,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Bridge tokens by label (made with `relay token create`).
    tokens: HashMap<String, String>,
    data: tempfile::TempDir,
}

impl OAuthRelay {
    /// Creates the bridge tokens `labels`, then starts the relay with `extra` flags
    /// (`operator_password`: also `--operator-password-file` with [`OPERATOR_PASSWORD`]).
    pub fn start(labels: &[&str], operator_password: bool, extra: &[&str]) -> Self {
        Self::start_with_env(labels, operator_password, extra, &[])
    }

    /// [`OAuthRelay::start`] with environment variables for `relay serve`.
    pub fn start_with_env(
        labels: &[&str],
        operator_password: bool,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let db = data.path().join("db");
        let tokens = labels
            .iter()
            .map(|label| (label.to_string(), create_bridge_token(&db, label)))
            .collect();
        let port = unused_port();
        let base = format!("http://localhost:{port}");
        let mut args: Vec<String> = vec![
            "--public-url".into(),
            base.clone(),
            "--data-dir".into(),
            db.display().to_string(),
        ];
        if operator_password {
            let file = data.path().join("operator-password");
            std::fs::write(&file, hash_password(OPERATOR_PASSWORD)).expect("write hash");
            args.extend([
                "--operator-password-file".into(),
                file.display().to_string(),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut r = Self {
            relay: None,
            base,
            port,
            args,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            tokens,
            data,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let relay = Relay::start_with_env(&format!("127.0.0.1:{}", self.port), &args, &env);
        assert_eq!(relay.base, self.base);
        self.relay = Some(relay);
    }

    /// The running relay.
    pub fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("running")
    }

    /// Stops the relay (SIGTERM) and starts it again: same port, data directory and flags.
    pub fn restart(&mut self) {
        let mut old = self.relay.take().expect("running");
        old.proc.terminate();
        assert!(
            old.proc.wait_exit(Duration::from_secs(15)).is_some(),
            "the relay did not stop on SIGTERM"
        );
        drop(old);
        self.launch();
    }

    /// The data directory given to `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("db")
    }

    /// The bridge token made for `label`.
    pub fn token(&self, label: &str) -> &str {
        &self.tokens[label]
    }

    /// A bridge of the token `label` serving the fixture as tunnel `name` with OAuth.
    pub fn bridge(&self, label: &str, name: &str, piped_stdin: bool) -> Bridge {
        let b = Bridge::start(BridgeOpts {
            piped_stdin,
            ..BridgeOpts::default()
                .via_url(&self.base, self.token(label))
                .name(name)
                .args(&["--auth", "oauth"])
        });
        assert_eq!(b.mcp_url, self.mcp_url(name));
        b
    }

    /// `<base>/<tunnel>/mcp`.
    pub fn mcp_url(&self, tunnel: &str) -> String {
        format!("{}/{tunnel}/mcp", self.base)
    }

    /// The tunnel's protected-resource metadata URL.
    pub fn prm_url(&self, tunnel: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/{tunnel}/mcp",
            self.base
        )
    }

    /// `<base><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `relay name release NAME` on the data directory (while the relay runs).
    pub fn release_name(&self, name: &str) {
        let out = Command::new(bin("relay"))
            .args(["name", "release", name, "--data-dir"])
            .arg(self.data_dir())
            .output()
            .expect("relay name release");
        assert!(out.status.success(), "relay name release: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("released {name}")
        );
    }

    /// `bridge approve CODE` with the bridge token `label`.
    pub fn bridge_approve(&self, label: &str, code: &str) -> Output {
        bridge_approve(&self.base, self.token(label), code)
    }

    /// `bridge approve` with the bridge token `label`, which must succeed for `tunnel`.
    pub fn approve(&self, label: &str, code: &str, tunnel: &str) {
        approve(&self.base, self.token(label), code, tunnel);
    }
}
