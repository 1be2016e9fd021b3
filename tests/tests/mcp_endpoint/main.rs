//! A tunnel's MCP endpoint spoken to over raw HTTP, end to end: the real `bridge` (and,
//! where the case needs it, a separate `relay serve`) with the fixture server, in both
//! protocol eras and on both transports.
//!
//! - The stateless 2026-07-28 revision: closing a request's stream cancels its call
//!   (`cancellation`), `server/discover` mirrors `initialize` and `--protocol legacy`
//!   refuses the revision (`discover`), `subscriptions/listen` (`subscriptions`), log
//!   levels (`log_level`), input-required results and their request state
//!   (`input_required`), and the header checks of the relay (`headers`,
//!   `param_headers`).
//! - The handshake revisions: resumable streams with `Last-Event-ID`, also across a relay
//!   restart (`resumption`), and sessions kept apart under concurrency, with the shared
//!   child and with `--isolate` (`isolation`).
//! - The desktop policy in every era: hidden tools and overrides (`hidden_tools`),
//!   confirmation in the terminal (`confirmation`), the audit log and policy roots
//!   (`audit`), calls smuggled as notifications (`smuggled_calls`).
//!
//! Needs `cargo build --workspace --bins` first.

mod audit;
mod cancellation;
mod confirmation;
mod discover;
mod headers;
mod hidden_tools;
mod input_required;
mod isolation;
mod log_level;
mod param_headers;
mod policy;
mod resumption;
mod smuggled_calls;
mod subscriptions;

use std::path::PathBuf;
use std::time::Duration;

use e2e::{Bridge, BridgeOpts, bin, teed};
use serde_json::Value;

/// Longest wait for one ordinary exchange.
const HTTP_LIMIT: Duration = Duration::from_secs(15);

/// What the bridge wrote to its server's standard input, recorded by `tee`.
struct StdinLog {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StdinLog {
    /// The JSON-RPC messages the bridge wrote to the server.
    fn written(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `method uri` of each request the bridge wrote to the server, for failure messages.
    fn requests(&self) -> Vec<String> {
        self.written()
            .iter()
            .filter_map(|m| {
                let method = m["method"].as_str()?;
                Some(match m["params"]["uri"].as_str() {
                    Some(uri) => format!("{method} {uri}"),
                    None => method.to_owned(),
                })
            })
            .collect()
    }

    /// Waits (up to 5 s) until the bridge wrote `n` `method` requests for `uri` to the
    /// server; panics saying `what` did not happen otherwise.
    async fn wait_wrote(&self, method: &str, uri: &str, n: usize, what: &str) {
        e2e::wait::wait_until(
            std::time::Duration::from_secs(5),
            || self.wrote(method, uri) == n,
            || format!("{what}: {:?}", self.requests()),
        )
        .await;
    }

    /// How many `method` requests for `uri` the bridge wrote to the server.
    fn wrote(&self, method: &str, uri: &str) -> usize {
        self.written()
            .iter()
            .filter(|m| m["method"] == method && m["params"]["uri"] == uri)
            .count()
    }
}

/// A bridge serving the fixture behind a `tee` of its standard input, to see what the
/// bridge writes to it.
fn teed_bridge() -> (Bridge, StdinLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stdin.jsonl");
    let bridge = BridgeOpts::default()
        .command(teed(&path, &[bin("mcp-fixture").display().to_string()]))
        .start();
    (bridge, StdinLog { path, _dir: dir })
}
