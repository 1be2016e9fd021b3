//! The relay: public HTTP(S) front of MCP tunnels.
//!
//! It routes `/<name>/mcp` (Streamable HTTP) and `/<name>/sse` + `/<name>/messages`
//! (legacy HTTP+SSE) to the bridge connected at `/<name>/connect`, authenticates clients
//! per tunnel, and turns each HTTP exchange into frames on the bridge's WebSocket. It
//! keeps no MCP session state: sessions live in the bridge.

// Handlers return `Result<_, Response>`: the error is the finished HTTP answer, built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod answer;
pub mod client_addr;
pub mod config;
pub mod config_file;
pub mod conn;
mod connect;
pub mod error;
pub mod guard;
pub mod legacy_sse;
pub mod logging;
pub mod metrics;
pub mod modern;
pub mod oauth;
pub mod offline;
pub mod recent;
pub mod registry;
pub mod reqlog;
pub mod routes;
pub mod server;
pub mod state;
pub mod status_page;
pub mod store;
pub mod tls;
pub mod trace;
pub mod tunnel;
pub mod upgrade;

pub use config::RelayConfig;
pub use error::{ConfigError, RelayError};
pub use server::{EmbeddedRelay, bind, serve, serve_tls};
