//! What the bridge side of the relay needs.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::RelayConfig;
use crate::link::upgrade::PendingByAddr;
use crate::oauth::state::OAuth;
use crate::store::Store;
use crate::tunnels::history::BridgeHistory;
use crate::tunnels::registry::Registry;

/// The state of the bridge's WebSocket: settings, tunnels, bridge tokens, handshake slots,
/// and the OAuth state a bridge's consent decisions go to.
pub struct LinkState {
    /// The relay's settings.
    pub config: Arc<RelayConfig>,
    /// Tunnel names and their connections.
    pub registry: Arc<Registry>,
    /// Bridge tokens and the names they own.
    pub store: Arc<Store>,
    /// Pending consents (a bridge may decide them) and the refusal limits of bridge tokens.
    pub oauth: Arc<OAuth>,
    /// What each tunnel's bridges announced and attempted.
    pub history: Arc<BridgeHistory>,
    /// Bridge connections still in their handshake without a token header (so not yet
    /// authenticated), capped relay-wide.
    pub handshakes: Arc<Semaphore>,
    /// The same connections per address, capped at
    /// [`crate::link::upgrade::MAX_PENDING_PER_ADDR`] each.
    pub handshakes_by_addr: Arc<PendingByAddr>,
}
