//! The OAuth server's limits and what it keeps in memory.

use std::sync::Arc;

use crate::config::{OAuthConfig, RelayConfig};
use crate::store::Store;
use crate::tunnels::registry::Registry;
use crate::util::gate;
use crate::util::rate::RateLimiter;

use super::cimd;
use super::consents::Consents;
use super::limits::*;
use super::token_cache::TokenCache;
use super::trace::Recorder;

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
    /// Failed sign-ins counted on every node sharing the store.
    pub failures: super::failures::SharedFailures,
    /// Bridge tokens presented to `/oauth/approve`: refusals per address and in total.
    pub approvals: gate::Gate,
    /// Bridge tokens presented by bridge connections: refusals per address.
    pub hellos: gate::Gate,
    /// Authorization requests per address.
    pub authorizations: RateLimiter,
    /// Lookups in the shared store of tunnels this node does not know (all addresses
    /// together: a flood of made-up names cannot take the database's connections).
    pub presence_lookups: RateLimiter,
    /// Fetched client metadata documents.
    pub cimd: cimd::Fetcher,
}

impl OAuth {
    /// OAuth state with these settings, its consents kept in `store`.
    pub fn new(config: OAuthConfig, store: Arc<Store>) -> Self {
        Self {
            config,
            consents: Consents::new(store.clone()),
            failures: super::failures::SharedFailures::new(store),
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
            presence_lookups: RateLimiter::default(),
            cimd: cimd::Fetcher::default(),
        }
    }
}

/// What the OAuth endpoints need of the relay: its settings, storage and tunnels, the
/// OAuth in-memory state and the trace's recorder.
pub struct OAuthState {
    /// The relay's settings.
    pub config: Arc<RelayConfig>,
    /// Clients, codes and tokens.
    pub store: Arc<Store>,
    /// The tunnels (whether a named one exists, who holds it).
    pub registry: Arc<Registry>,
    /// Pending consents, caches and rate limits.
    pub oauth: Arc<OAuth>,
    /// Where OAuth steps are recorded.
    pub trace: Arc<Recorder>,
}

/// Lookups per second in the shared store of tunnels this node does not know, for their
/// OAuth metadata and authorization (beyond it, such a name is unknown for the moment).
pub const PRESENCE_LOOKUPS_PER_SEC: usize = 200;

impl OAuthState {
    /// Whether tunnel `name` is one whose clients sign in with OAuth: as this node knows
    /// it (its bridge here now or lately), else, with a store several nodes share, as the
    /// node holding it recorded there. A store that cannot answer says no.
    pub async fn uses_oauth(&self, name: &str) -> bool {
        if let Some((auth, _)) = self.registry.status(name) {
            return auth == protocol::ClientAuth::OAuth;
        }
        self.store.announces()
            && self.oauth.presence_lookups.allow(
                std::net::IpAddr::from([0, 0, 0, 0]),
                PRESENCE_LOOKUPS_PER_SEC,
                std::time::Duration::from_secs(1),
            )
            && matches!(self.store.presence(name).await, Ok(Some(p)) if p.auth == "oauth")
    }
}

#[cfg(test)]
impl OAuthState {
    /// The OAuth state of a relay with this configuration, over an in-memory store.
    pub fn in_memory(config: RelayConfig) -> Arc<Self> {
        let config = Arc::new(config);
        let store = Arc::new(Store::in_memory().expect("in-memory store"));
        let registry = Arc::new(Registry::default());
        Arc::new(Self {
            oauth: Arc::new(OAuth::new(config.oauth.clone(), store.clone())),
            trace: Arc::new(Recorder::new(
                config.clone(),
                store.clone(),
                registry.clone(),
            )),
            config,
            store,
            registry,
        })
    }
}
