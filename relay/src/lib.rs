//! The relay: public HTTP(S) front of MCP tunnels.
//!
//! It routes `/<name>/mcp` (Streamable HTTP) and `/<name>/sse` + `/<name>/messages`
//! (HTTP+SSE) to the bridge connected at `/<name>/connect`, authenticates clients per
//! tunnel, and turns each HTTP exchange into frames on the bridge's WebSocket. It keeps no
//! MCP session state: sessions live in the bridge. How one request travels through the
//! relay and the bridge: `docs/design/architecture.md`.
//!
//! # Layout
//!
//! Folders are the relay's jobs. Each layer imports only the layers below it:
//!
//! | layer | folders | what they own |
//! |---|---|---|
//! | top | [`server`], `app`, [`error`] | serving a listener (plain or TLS), the embedded relay, shutdown; the only place that builds every feature's state and the router |
//! | features | `mcp`, `assets`, `link`, [`oauth`], `owner` | the public MCP path (both transports, both protocol revisions, offline answers, client authentication); the public asset route of tunnels that publish a local asset origin; the bridge's WebSocket (upgrade, admission, the socket a tunnel lives on); the OAuth 2.1 server and its trace; the owner's status page |
//! | observability | [`observe`] | the request log, metrics, logging, the newest calls |
//! | configuration | [`config`] | settings, the config file, which `Host`/`Origin` the relay answers |
//! | plumbing | [`net`] | connection limits and timeouts, TLS and ACME, the client's address behind proxies |
//! | data | [`store`], `tunnels`, [`util`] | the SQLite database and its row types; the registry of tunnels, each bridge's exchanges, streams that outlive a request, bridge history; small helpers (rate limits, password hashing, HTML text, error answers) |
//!
//! Each feature's handlers take only their own state (`McpState`, `OAuthState`,
//! `OwnerState`, `LinkState`, or one part such as the registry) through axum's `FromRef`;
//! only `app` names them all. The crate's public API is what the bridge (which embeds a
//! relay) and the `relay` binary use.

// Handlers return `Result<_, Response>`: the error is the finished HTTP answer, built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub(crate) mod app;
pub(crate) mod assets;
pub mod config;
pub mod error;
pub(crate) mod link;
pub(crate) mod mcp;
pub mod net;
pub mod oauth;
pub mod observe;
pub(crate) mod owner;
pub mod server;
pub mod store;
#[cfg(test)]
mod testing;
pub(crate) mod tunnels;
pub mod util;

pub use config::ConfigError;
pub use config::RelayConfig;
pub use error::RelayError;
pub use server::{EmbeddedRelay, bind, serve, serve_tls};
