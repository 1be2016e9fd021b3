//! Observability: request log, metrics, logging, the OAuth trace and recent calls.

pub mod logging;
pub mod metrics;
pub mod recent;
pub mod reqlog;
