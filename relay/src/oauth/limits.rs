//! The OAuth server's lifetimes and rate limits.

use std::time::Duration;

pub use crate::config::ACCESS_TTL;

/// Refresh tokens live this long (each use rotates them).
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Authorization codes live this long.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// Pending consents live this long.
pub const CONSENT_TTL: Duration = Duration::from_secs(600);
/// The scope tokens carry.
pub const SCOPE: &str = "mcp";
/// Failed operator-password (or status page sign-in) attempts allowed per address in
/// [`PASSWORD_WINDOW`].
pub const PASSWORD_ATTEMPTS: usize = 5;
/// Window of the operator-password rate limit.
pub const PASSWORD_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Refused bridge-token presentations on `/oauth/approve` allowed per address in
/// [`APPROVE_WINDOW`].
pub const APPROVE_ATTEMPTS: usize = 10;
/// The same, from all addresses together.
pub const APPROVE_ATTEMPTS_TOTAL: usize = 200;
/// Window of those limits.
pub const APPROVE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Refused bridge tokens on bridge connections allowed per address in [`APPROVE_WINDOW`]
/// (no limit in total: that would let anyone keep every bridge out).
pub const HELLO_ATTEMPTS: usize = 30;
