//! State shared by every handler of a relay.

use std::sync::Arc;

use crate::config::RelayConfig;
use crate::registry::Registry;

/// Cheap-to-clone handle on the relay's configuration and tunnels.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the relay was started with.
    pub config: Arc<RelayConfig>,
    /// Connected tunnels.
    pub registry: Arc<Registry>,
}

impl AppState {
    /// State for a relay with this configuration and no tunnels yet.
    pub fn new(config: RelayConfig) -> Self {
        Self {
            config: Arc::new(config),
            registry: Arc::new(Registry::default()),
        }
    }
}
