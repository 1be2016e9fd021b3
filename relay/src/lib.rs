//! The relay: public HTTP(S) front of MCP tunnels.
//!
//! It routes `/<name>/mcp` (Streamable HTTP) and `/<name>/sse` + `/<name>/messages`
//! (legacy HTTP+SSE) to the bridge connected at `/<name>/connect`, authenticates clients
//! per tunnel, and turns each HTTP exchange into frames on the bridge's WebSocket. It
//! keeps no MCP session state: sessions live in the bridge.

// Handlers return `Result<_, Response>`: the error is the finished HTTP answer, built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod config;
pub mod error;
pub mod link;
pub mod mcp;
pub mod net;
pub mod oauth;
pub mod observe;
pub mod owner;
pub mod server;
pub mod store;
pub mod tunnels;
pub mod util;

pub use config::ConfigError;
pub use config::RelayConfig;
pub use error::RelayError;
pub use server::{EmbeddedRelay, bind, serve, serve_tls};
