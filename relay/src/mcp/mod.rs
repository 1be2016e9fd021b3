//! The public MCP path: Streamable HTTP and HTTP+SSE requests turned into exchanges on a tunnel.

pub mod guard;
pub mod offline;
pub mod reply;
pub mod routes;
pub mod state;
pub mod stateless;
