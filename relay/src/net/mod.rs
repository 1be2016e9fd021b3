//! Connection plumbing under every feature: the accept loop's limits, TLS, the client address.

pub mod client_addr;
pub mod conn;
pub mod tls;
