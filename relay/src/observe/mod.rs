//! Observability: the request log, metrics, logging and the newest calls of each tunnel.
//! What is logged and measured, and how to read it: `docs/design/observability.md`.

pub mod logging;
pub mod metrics;
pub mod recent;
pub mod reqlog;
