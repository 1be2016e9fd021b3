//! What the owner's pages need of the relay.

use std::sync::Arc;

use crate::config::RelayConfig;
use crate::oauth::state::OAuth;
use crate::oauth::trace::Recorder;
use crate::observe::recent::RecentCalls;
use crate::store::Store;
use crate::tunnels::history::BridgeHistory;
use crate::tunnels::registry::Registry;

use super::session::StatusPage;

/// What the owner's pages need of the relay.
pub struct OwnerState {
    /// The relay's settings.
    pub config: Arc<RelayConfig>,
    /// Tunnel names and their connections.
    pub registry: Arc<Registry>,
    /// Bridge tokens, names and OAuth grants.
    pub store: Arc<Store>,
    /// Pending consents and the sign-in attempt limits.
    pub oauth: Arc<OAuth>,
    /// The newest calls of each tunnel.
    pub recent: Arc<RecentCalls>,
    /// What each tunnel's bridges announced and attempted.
    pub history: Arc<BridgeHistory>,
    /// Sessions of the status page.
    pub status_page: Arc<StatusPage>,
    /// The OAuth trace (the owner revokes clients; the page shows the trace).
    pub trace: Arc<Recorder>,
}
