//! Tunnels: the registry of names, each connected bridge with its exchanges (and asset fetches), and streams that outlive a request.

pub mod assets;
pub mod history;
pub mod http_sse;
pub mod registry;
pub mod tunnel;
