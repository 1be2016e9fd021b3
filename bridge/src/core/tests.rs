//! The core's rules (see the module documentation), each checked by feeding the core
//! events (relay requests and cancels, child lines and exits, the clock) and reading what
//! came out (frames for the relay, lines for the children). One file per rule.

mod eviction;
mod exchanges;
mod http_sse;
mod id_rewrite;
mod initialize;
mod lifecycle;
mod listen;
mod notifications;
mod policy;
mod principal_children;
mod resumption;
mod server_requests;
mod snapshot;
mod stateless;
mod suspension;
mod unkeyed;
