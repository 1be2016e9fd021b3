//! State shared by every handler of a relay.

use std::sync::Arc;

use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::oauth::OAuth;
use crate::registry::Registry;
use crate::store::Store;

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
    /// [`crate::upgrade::MAX_PENDING_PER_ADDR`] each.
    pub handshakes_by_addr: Arc<crate::upgrade::PendingByAddr>,
    /// The newest calls of each tunnel (the status page).
    pub recent: Arc<crate::recent::RecentCalls>,
    /// The OAuth trace's in-memory part (budgets, consents in progress).
    pub trace: Arc<crate::trace::Tracer>,
    /// Sessions of the owner's status page.
    pub status_page: Arc<crate::status_page::StatusPage>,
}

/// Most bridge connections in their handshake without a token header at once.
pub const MAX_HANDSHAKES: usize = 256;

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
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            registry: Arc::new(Registry::default()),
            store: Arc::new(store),
            oauth: Arc::new(oauth),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
            handshakes_by_addr: Arc::default(),
            recent: Arc::default(),
            trace: Arc::default(),
            status_page: Arc::default(),
        })))
    }
}
