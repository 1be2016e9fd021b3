//! State shared by every handler of a relay.

use std::sync::Arc;

use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::oauth::state::OAuth;
use crate::store::Store;
use crate::tunnels::registry::Registry;

/// Cheap-to-clone handle on the relay's configuration, tunnels and stored state: one
/// reference count (handlers clone it on every request, from both cores at once).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What an [`AppState`] holds.
pub struct Shared {
    /// The configuration the relay was started with.
    pub config: Arc<RelayConfig>,
    /// Tunnel names and their connections.
    pub registry: Arc<Registry>,
    /// Persistent state (tokens, names, OAuth).
    pub store: Arc<Store>,
    /// OAuth in-memory state (pending consents, caches, rate limits).
    pub oauth: Arc<OAuth>,
    /// Bridge connections still in their handshake without a token header (so not yet
    /// authenticated), capped relay-wide.
    pub handshakes: Arc<tokio::sync::Semaphore>,
    /// The same connections per address, capped at
    /// [`crate::link::upgrade::MAX_PENDING_PER_ADDR`] each.
    pub handshakes_by_addr: Arc<crate::link::upgrade::PendingByAddr>,
    /// The newest calls of each tunnel (the status page).
    pub recent: Arc<crate::observe::recent::RecentCalls>,
    /// The OAuth trace's recorder.
    pub trace: Arc<crate::oauth::trace::Recorder>,
    /// The version and takeover history of each tunnel's bridges.
    pub history: Arc<crate::tunnels::history::BridgeHistory>,
    /// Sessions of the owner's status page.
    pub status_page: Arc<crate::owner::status_page::StatusPage>,
}

impl AppState {
    /// State for a relay with this configuration: opens its database and adds the
    /// configured bridge tokens to it.
    pub fn new(config: RelayConfig) -> Result<Self, RelayError> {
        let store = match &config.data_dir {
            Some(dir) => Store::open(dir)?,
            None => Store::in_memory()?,
        };
        for (i, hash) in config.bridge_token_hashes.iter().enumerate() {
            store.add_token_hash(&format!("configured-{}", i + 1), *hash)?;
        }
        let oauth = OAuth::new(config.oauth.clone());
        let config = Arc::new(config);
        let registry = Arc::new(Registry::default());
        let store = Arc::new(store);
        let trace = Arc::new(crate::oauth::trace::Recorder::new(
            config.clone(),
            store.clone(),
            registry.clone(),
        ));
        Ok(Self(Arc::new(Shared {
            config,
            registry,
            store,
            oauth: Arc::new(oauth),
            handshakes: Arc::new(tokio::sync::Semaphore::new(
                crate::link::upgrade::MAX_HANDSHAKES,
            )),
            handshakes_by_addr: Arc::default(),
            recent: Arc::default(),
            trace,
            status_page: Arc::default(),
            history: Arc::default(),
        })))
    }
}

impl crate::net::client_addr::ProxyTrust for AppState {
    fn trusted_proxies(&self) -> &crate::net::client_addr::TrustedProxies {
        &self.config.trusted_proxies
    }
}
