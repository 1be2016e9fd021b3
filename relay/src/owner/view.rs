//! What the status page shows, gathered for who is signed in.

use std::collections::HashMap;

use protocol::ClientAuth;

use crate::oauth::trace::{TraceEvent, format_time};
use crate::observe::recent::RecentCall;
use crate::store::AuthorizedClient;
use crate::tunnels::history::Takeover;

use super::session::Who;
use super::state::OwnerState;

/// Trace events shown per tunnel.
pub(super) const TRACE_SHOWN: usize = 50;

/// One tunnel as shown.
#[derive(Debug, Clone, Default)]
pub struct TunnelView {
    /// The name.
    pub name: String,
    /// The label of the owning bridge token (shown to the operator).
    pub owner_label: Option<String>,
    /// Whether the owning token was revoked.
    pub owner_revoked: bool,
    /// Connection state, in words.
    pub connection: String,
    /// Whether a bridge is connected.
    pub connected: bool,
    /// How clients authenticate, in words.
    pub auth: String,
    /// The bridge's version, if it connected since the relay started.
    pub bridge_version: Option<String>,
    /// Sessions, requests in flight, server processes, restarts (from Status frames) and
    /// exchanges open at the relay.
    pub gauges: Option<[u64; 5]>,
    /// Clients holding tokens.
    pub clients: Vec<AuthorizedClient>,
    /// Recent calls, newest first.
    pub calls: Vec<RecentCall>,
    /// Trace events, newest first.
    pub trace: Vec<TraceEvent>,
    /// Takeover attempts and replacements, newest first.
    pub takeovers: Vec<Takeover>,
}

/// The whole dashboard as shown.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Who is signed in, in words.
    pub who: String,
    /// Whether it is the operator.
    pub operator: bool,
    /// The tunnels.
    pub tunnels: Vec<TunnelView>,
    /// Relay-wide trace events (operator only), newest first.
    pub relay_wide: Vec<TraceEvent>,
    /// Names of clients by id (for recent calls).
    pub client_names: HashMap<String, String>,
}

fn auth_words(auth: &ClientAuth) -> &'static str {
    match auth {
        ClientAuth::OAuth => "OAuth",
        ClientAuth::Bearer { .. } => "static bearer token",
        ClientAuth::None => "none (public)",
    }
}

/// Where another node sharing the store holds (or last held) a tunnel's bridge.
async fn elsewhere(state: &OwnerState, name: &str) -> Option<crate::store::Presence> {
    if !state.store.announces() {
        return None;
    }
    state.store.presence(name).await.ok().flatten()
}

/// Gathers what `who` may see.
pub(super) async fn collect(state: &OwnerState, who: Who) -> View {
    crate::oauth::trace::sweep_expired_consents(&state.trace).await;
    let tokens = state.store.list_tokens().await.unwrap_or_default();
    let mut view = View {
        operator: who == Who::Operator,
        ..View::default()
    };
    view.who = match who {
        Who::Operator => "the relay operator".into(),
        Who::Owner { token_id } => {
            let label = tokens
                .iter()
                .find(|t| t.id == token_id)
                .map(|t| t.label.as_str())
                .unwrap_or("?");
            format!("the owner of bridge token \u{201c}{label}\u{201d}")
        }
    };
    let versions = state.history.versions();
    let takeovers = state.history.takeovers();
    for t in &tokens {
        if let Who::Owner { token_id } = who
            && t.id != token_id
        {
            continue;
        }
        for name in &t.names {
            let mut tv = TunnelView {
                name: name.clone(),
                owner_label: view.operator.then(|| t.label.clone()),
                owner_revoked: t.revoked.is_some(),
                ..TunnelView::default()
            };
            match state.registry.status(name) {
                Some((auth, s)) => {
                    tv.connected = s.connected;
                    tv.connection = match (s.connected, s.connected_since, s.offline_since) {
                        (true, Some(t), _) => match s.server_unreachable_since {
                            Some(d) => format!(
                                "connected since {}; its MCP server is not reachable since {}",
                                format_time(t as i64 * 1000),
                                format_time(d as i64 * 1000)
                            ),
                            None => format!("connected since {}", format_time(t as i64 * 1000)),
                        },
                        (true, None, _) => "connected".into(),
                        (false, _, Some(t)) => {
                            format!("offline since {}", format_time(t as i64 * 1000))
                        }
                        (false, _, None) => "offline".into(),
                    };
                    tv.auth = auth_words(&auth).into();
                    let b = s.bridge;
                    tv.gauges = Some([
                        b.sessions.into(),
                        b.pending.into(),
                        b.children.into(),
                        b.restarts.into(),
                        s.exchanges as u64,
                    ]);
                    tv.bridge_version = versions.get(name).cloned();
                }
                None => match elsewhere(state, name).await {
                    Some(p) => {
                        let now_ms = protocol::time::now_ms();
                        let gone = p.gone_since(now_ms);
                        tv.connected = gone.is_none();
                        tv.connection = match gone {
                            None => format!(
                                "connected to node {} since {}",
                                p.node,
                                format_time(p.connected_at * 1000)
                            ),
                            Some(t) if p.disconnected_at.is_none() => format!(
                                "offline since {}: its node {} stopped answering",
                                format_time(t * 1000),
                                p.node
                            ),
                            Some(t) => format!("offline since {}", format_time(t * 1000)),
                        };
                        if gone.is_none() {
                            tv.gauges = p
                                .gauges
                                .as_deref()
                                .and_then(crate::link::heartbeat::parse_gauges);
                        }
                        tv.calls = p
                            .recent
                            .as_deref()
                            .and_then(|j| serde_json::from_str::<Vec<RecentCall>>(j).ok())
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|c| c.owner == t.id)
                            .take(crate::observe::recent::KEEP)
                            .collect();
                        tv.auth = match p.auth.as_str() {
                            "oauth" => "OAuth",
                            "bearer" => "static bearer token",
                            _ => "none (public)",
                        }
                        .into();
                        tv.bridge_version = Some(p.bridge_version);
                    }
                    None => {
                        tv.connection = "not connected since the relay started".into();
                        tv.auth = "—".into();
                    }
                },
            }
            tv.takeovers = takeovers
                .get(name)
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default();
            tv.clients = state
                .store
                .authorized_clients(name)
                .await
                .unwrap_or_default();
            if tv.calls.is_empty() {
                tv.calls = state.recent.list(name, t.id);
            }
            tv.trace = state
                .store
                .trace_for_tunnel(name, TRACE_SHOWN, crate::oauth::trace::LINK_WINDOW_MS)
                .await
                .unwrap_or_default();
            for c in &tv.calls {
                if let Some(id) = crate::oauth::access::client_of(&c.principal)
                    && !view.client_names.contains_key(id)
                    && let Ok(Some(client)) = state.store.client(id).await
                    && let Some(n) = client.name
                {
                    view.client_names.insert(id.to_owned(), n);
                }
            }
            view.tunnels.push(tv);
        }
    }
    view.tunnels.sort_by(|a, b| a.name.cmp(&b.name));
    if view.operator {
        view.relay_wide = state
            .store
            .trace_all(TRACE_SHOWN, true)
            .await
            .unwrap_or_default();
    }
    view
}
