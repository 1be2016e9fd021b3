//! The OAuth server's limits and what it keeps in memory.

use std::time::Duration;

use crate::config::OAuthConfig;
use crate::util::gate;
use crate::util::rate::RateLimiter;

use super::cimd;
use super::consents::Consents;
use super::token_cache::TokenCache;

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

/// Mutable OAuth state of a relay.
pub struct OAuth {
    /// Settings.
    pub config: OAuthConfig,
    /// Authorizations waiting for the owner.
    pub consents: Consents,
    /// Recently validated access tokens.
    pub tokens: TokenCache,
    /// Registrations per address.
    pub registrations: RateLimiter,
    /// Operator-password and status page sign-in attempts: failures per address,
    /// reserved before the check, and Argon2 verifications bounded in concurrency.
    pub passwords: gate::Gate,
    /// Bridge tokens presented to `/oauth/approve`: refusals per address and in total.
    pub approvals: gate::Gate,
    /// Bridge tokens presented by bridge connections: refusals per address.
    pub hellos: gate::Gate,
    /// Authorization requests per address.
    pub authorizations: RateLimiter,
    /// Fetched client metadata documents.
    pub cimd: cimd::Fetcher,
}

impl OAuth {
    /// OAuth state with these settings.
    pub fn new(config: OAuthConfig) -> Self {
        Self {
            config,
            consents: Consents::default(),
            tokens: TokenCache::default(),
            registrations: RateLimiter::default(),
            passwords: gate::Gate::new(PASSWORD_ATTEMPTS, None, PASSWORD_WINDOW, true),
            approvals: gate::Gate::new(
                APPROVE_ATTEMPTS,
                Some(APPROVE_ATTEMPTS_TOTAL),
                APPROVE_WINDOW,
                false,
            ),
            hellos: gate::Gate::new(HELLO_ATTEMPTS, None, APPROVE_WINDOW, false),
            authorizations: RateLimiter::default(),
            cimd: cimd::Fetcher::default(),
        }
    }
}
