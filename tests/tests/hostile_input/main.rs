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
//!   (`fake_bridges`).
//!
//! Every HTTP request has a short timeout, so a hang fails fast instead of stalling the run.

mod access;
mod bodies;
mod endpoint;
mod fake_bridges;
mod http_fuzz;
mod misbehaving;
mod sessions;
