//! `tests/clients/tap_proxy.mjs`, a recording proxy between a client and the relay: which
//! requests a client really sent, and what came back.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::clients::deps;
use e2e::{Bridge, BridgeOpts, Proc};
use serde_json::{Value, json};

/// A running `tap_proxy.mjs` in front of a bridge's relay.
pub(crate) struct Tap {
    proc: Proc,
    pub(crate) port: u16,
    upstream: String,
    log: PathBuf,
    seen: usize,
    _dir: tempfile::TempDir,
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    &url[..end]
}

impl Tap {
    /// A bridge with its embedded relay and default options, and a tap in front of it.
    pub(crate) fn with_bridge() -> (Bridge, Self) {
        let bridge = Bridge::start(BridgeOpts::default());
        let tap = Self::start(&bridge);
        (bridge, tap)
    }

    /// Starts a tap forwarding to the relay that serves `bridge`.
    pub(crate) fn start(bridge: &Bridge) -> Self {
        Self::before(origin(&bridge.mcp_url))
    }

    /// Starts a tap forwarding to `upstream` (an origin, which may not listen yet).
    pub(crate) fn before(upstream: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("tap.jsonl");
        let upstream = upstream.to_owned();
        let mut cmd = Command::new(deps().var("NODE22"));
        cmd.arg(deps().client("tap_proxy.mjs"))
            .arg(&upstream)
            .arg("--log")
            .arg(&log);
        let proc = Proc::start(cmd, "tap");
        proc.expect_log(
            "tap_proxy listening port=",
            Duration::from_secs(20),
            "tap_proxy.mjs did not start",
        );
        let port = proc
            .log_text()
            .split("listening port=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("tap port");
        Self {
            proc,
            port,
            upstream,
            log,
            seen: 0,
            _dir: dir,
        }
    }

    /// `url` (on the relay) as reached through the tap.
    pub(crate) fn url(&self, url: &str) -> String {
        let rest = url
            .strip_prefix(&self.upstream)
            .unwrap_or_else(|| panic!("{url} is not on {}", self.upstream));
        format!("http://127.0.0.1:{}{rest}", self.port)
    }

    /// Every exchange recorded so far, request and response merged, once all are complete
    /// (or after 10 s).
    pub(crate) fn exchanges(&self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut merged: Vec<Value> = Vec::new();
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let rec: Value = serde_json::from_str(line).expect("tap record");
                let n = rec["n"].as_u64().expect("n") as usize;
                if merged.len() < n {
                    merged.resize(n, Value::Null);
                }
                let slot = &mut merged[n - 1];
                if slot.is_null() {
                    *slot = json!({});
                }
                for (k, v) in rec.as_object().expect("record object") {
                    if k != "phase" || v == "done" || slot.get("phase").is_none() {
                        slot[k] = v.clone();
                    }
                }
            }
            let complete = merged.iter().all(|r| r["phase"] == "done");
            if complete || Instant::now() >= deadline {
                assert!(
                    complete,
                    "tap: exchanges still open after 10 s: {merged:#?}\ntap log: {}",
                    self.proc.log_text()
                );
                return merged;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `METHOD path` of every request seen so far (complete or not), oldest first.
    pub(crate) fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
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

    /// The exchanges recorded since the previous call (one client run's traffic).
    pub(crate) fn take(&mut self) -> Vec<Value> {
        let all = self.exchanges();
        let new = all[self.seen..].to_vec();
        self.seen = all.len();
        new
    }
}
