//! What the public MCP path needs of the relay.

use std::sync::Arc;

use crate::config::RelayConfig;
use crate::oauth::state::OAuthState;
use crate::observe::recent::RecentCalls;
use crate::tunnels::registry::Registry;

/// The state of the MCP routes: the relay's settings, its tunnels, the newest calls, and
/// the OAuth server that checks access tokens.
pub struct McpState {
    /// The relay's settings.
    pub config: Arc<RelayConfig>,
    /// Tunnel names and their connections.
    pub registry: Arc<Registry>,
    /// The newest calls of each tunnel (the status page shows them).
    pub recent: Arc<RecentCalls>,
    /// The OAuth server, for tunnels whose clients sign in with OAuth.
    pub auth: Arc<OAuthState>,
    /// When this node last asked for each tunnel held by another node.
    pub wanted: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Bounds the store lookups of requests for tunnels this node does not know (one
    /// bucket for the node: names are free to invent).
    pub elsewhere_lookups: crate::util::rate::RateLimiter,
}
