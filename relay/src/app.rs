//! The whole relay put together: each feature's state, built once, and the router that
//! hands every handler only the state it needs (axum's `FromRef`). This is the only file
//! that knows every feature.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use protocol::jsonrpc::INVALID_REQUEST;

use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::link::state::LinkState;
use crate::mcp::state::McpState;
use crate::net::client_addr::{ProxyTrust, TrustedProxies};
use crate::oauth::state::{OAuth, OAuthState};
use crate::oauth::trace::Recorder;
use crate::observe::recent::RecentCalls;
use crate::owner::{OwnerState, StatusPage};
use crate::store::Store;
use crate::tunnels::history::BridgeHistory;
use crate::tunnels::registry::Registry;
use crate::util::http_error::McpError;

/// Cheap-to-clone handle on the whole relay: one reference count (the router clones it
/// on every request, from both cores at once).
#[derive(Clone)]
pub struct AppState(Arc<Features>);

/// Each feature's state, and the parts the top level itself uses.
struct Features {
    config: Arc<RelayConfig>,
    registry: Arc<Registry>,
    store: Arc<Store>,
    mcp: Arc<McpState>,
    oauth: Arc<OAuthState>,
    owner: Arc<OwnerState>,
    link: Arc<LinkState>,
}

impl AppState {
    /// State for a relay with this configuration: opens its database (see
    /// [`Store::connect`]) and adds the configured bridge tokens to it.
    pub async fn open(config: RelayConfig) -> Result<Self, RelayError> {
        let store = Store::connect(&config.storage, Some(config.public_url.as_str())).await?;
        for (i, hash) in config.bridge_token_hashes.iter().enumerate() {
            store
                .add_token_hash(&format!("configured-{}", i + 1), *hash)
                .await?;
        }
        let store = Arc::new(store);
        let oauth = Arc::new(OAuth::new(config.oauth.clone(), store.clone()));
        let config = Arc::new(config);
        let registry = Arc::new(Registry::default());
        let recent = Arc::new(RecentCalls::default());
        let history = Arc::new(BridgeHistory::default());
        let trace = Arc::new(Recorder::new(
            config.clone(),
            store.clone(),
            registry.clone(),
        ));
        let auth = Arc::new(OAuthState {
            config: config.clone(),
            store: store.clone(),
            registry: registry.clone(),
            oauth: oauth.clone(),
            trace: trace.clone(),
        });
        let features = Features {
            mcp: Arc::new(McpState {
                config: config.clone(),
                registry: registry.clone(),
                recent: recent.clone(),
                auth: auth.clone(),
                wanted: Default::default(),
                elsewhere_lookups: Default::default(),
            }),
            owner: Arc::new(OwnerState {
                config: config.clone(),
                registry: registry.clone(),
                store: store.clone(),
                oauth: oauth.clone(),
                recent,
                history: history.clone(),
                status_page: Arc::new(StatusPage::new(store.clone())),
                trace,
            }),
            link: Arc::new(LinkState {
                config: config.clone(),
                registry: registry.clone(),
                store: store.clone(),
                oauth,
                history,
                handshakes: Arc::new(tokio::sync::Semaphore::new(
                    crate::link::upgrade::MAX_HANDSHAKES,
                )),
                handshakes_by_addr: Arc::default(),
            }),
            oauth: auth,
            config,
            registry,
            store,
        };
        Ok(Self(Arc::new(features)))
    }

    /// The relay's settings.
    pub fn config(&self) -> &Arc<RelayConfig> {
        &self.0.config
    }

    /// Tunnel names and their connections.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.0.registry
    }

    /// The relay's database.
    pub fn store(&self) -> &Arc<Store> {
        &self.0.store
    }

    /// The OAuth server's state.
    pub fn oauth(&self) -> &Arc<OAuthState> {
        &self.0.oauth
    }

    /// This node's heartbeat in a store several nodes share.
    pub fn heart(&self) -> crate::link::heartbeat::Heart {
        crate::link::heartbeat::Heart {
            store: self.0.store.clone(),
            node: self.0.config.node_id.clone(),
            registry: self.0.registry.clone(),
            recent: self.0.owner.recent.clone(),
        }
    }
}

impl ProxyTrust for AppState {
    fn trusted_proxies(&self) -> &TrustedProxies {
        &self.0.config.trusted_proxies
    }
}

macro_rules! from_app_state {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl FromRef<AppState> for Arc<$ty> {
            fn from_ref(app: &AppState) -> Self {
                app.0.$field.clone()
            }
        }
    )*};
}

from_app_state! {
    RelayConfig => config,
    Registry => registry,
    McpState => mcp,
    OAuthState => oauth,
    OwnerState => owner,
    LinkState => link,
}

/// The relay's public router: the MCP path, the bridge's WebSocket, the OAuth server,
/// the owner's pages, `/metrics` and the health routes, inside the request log and the
/// OAuth trace.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .merge(crate::mcp::routes::routes())
        .merge(crate::assets::routes())
        .route("/{name}/connect", get(crate::link::connect::connect))
        .route("/status", get(crate::owner::show).post(crate::owner::act))
        .route("/metrics", get(crate::observe::metrics::serve))
        .merge(crate::oauth::routes::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            crate::observe::reqlog::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.0.oauth.trace.clone(),
            crate::oauth::trace::middleware,
        ))
        .with_state(state)
}

/// The router of the metrics address (`--metrics-listen`): `/metrics`, unguarded, and the
/// health routes; nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(crate::observe::metrics::serve_private))
        .fallback(not_found)
        .with_state(state)
}

async fn health(State(registry): State<Arc<Registry>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "tunnels": registry.connected(),
        "exchanges": registry.exchanges_in_flight(),
    });
    axum::Json(body).into_response()
}

/// `/readyz`: as `/healthz`, but 503 once the relay is stopping (a load balancer then
/// sends it no more work while it finishes what it has).
async fn ready(State(registry): State<Arc<Registry>>) -> Response {
    if registry.draining() {
        let body = serde_json::json!({
            "status": "draining",
            "tunnels": registry.connected(),
            "exchanges": registry.exchanges_in_flight(),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    health(State(registry)).await
}

async fn not_found() -> Response {
    McpError::new(StatusCode::NOT_FOUND, INVALID_REQUEST, "Not found").into_response()
}
