//! Bad input and attacks at every edge of a tunnel, and what the relay and the bridge
//! answer.
//!
//! - The HTTP side (`/<name>/mcp`, `/<name>/sse`, `/<name>/messages`): malformed,
//!   non-JSON-RPC, mistyped and oversized bodies (`bodies`), unknown and deleted sessions,
//!   unsupported protocol versions (`sessions`), foreign `Host`/`Origin`, missing or wrong
//!   bearer tokens, unknown and invalid tunnel names (`access`), and a tunnel whose bridge
//!   was killed or whose server prints garbage (`misbehaving`). Every refusal is checked
//!   for its exact HTTP status and for a JSON-RPC error body with the expected
//!   `error.code`; after each one, a valid `initialize` proves the relay still serves.
//!   Thousands of random and malformed requests (`http_fuzz`).
//! - The bridge side (`/<name>/connect`): fake bridges speaking the wire format by hand
//!   (`fake_bridges`); strangers without a token (`link_strangers`), the previous
//!   release's handshake both ways (`link_compat`), a leaked token against a live tunnel
//!   (`link_takeover`), a malicious relay against the bridge (`link_malicious_relay`).
//! - A local HTTP server that answers badly (`upstream`): not JSON-RPC, too long, an
//!   endless line, an HTTP+SSE endpoint on another origin.
//! - The relay's edge (`edge_attacks`): slow clients, client addresses behind a trusted
//!   proxy, the OAuth trace under a flood, metrics through a proxy.
//!
//! Every HTTP request has a short timeout, so a hang fails fast instead of stalling the run.

mod access;
mod bodies;
mod edge_attacks;
mod endpoint;
mod fake_bridges;
mod http_fuzz;
mod link_compat;
mod link_malicious_relay;
mod link_strangers;
mod link_takeover;
mod misbehaving;
mod sessions;
mod upstream;

use std::net::IpAddr;

use e2e::Relay;
use e2e::mcp::McpClient;

/// Whether the relay reports a bridge connected for `name` (bearer-less tunnels).
async fn connected(relay: &Relay, name: &str) -> bool {
    McpClient::new(&format!("{}/{name}/mcp", relay.base), None)
        .connected()
        .await
}

/// An IP address.
fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}
