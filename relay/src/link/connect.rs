//! `GET /<name>/connect`: the bridge's WebSocket upgrade.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use protocol::jsonrpc::UNAVAILABLE;
use std::sync::Arc;

use crate::config::origin::check_origin;
use crate::link::socket::handle_socket;
use crate::link::state::LinkState;
use crate::util::http_error::McpError;
use crate::util::path::{PathParam, not_found_tunnel};

/// `GET /<name>/connect`: a bridge's WebSocket (see [`crate::link::upgrade`] for who may upgrade
/// and how much it may send before its `Hello`).
/// The relay's features (see `protocol`'s module documentation).
const FEATURES: &str = "server-health, assets";
/// The relay's features when it checked the upgrade's token.
const FEATURES_TOKEN_CHECKED: &str = "token-header, server-health, assets";

pub async fn connect(
    State(state): State<Arc<LinkState>>,
    PathParam(name): PathParam,
    mut req: axum::extract::Request,
) -> Response {
    use crate::link::socket::{Admission, Credential};
    use crate::link::upgrade::{MAX_PENDING_PER_ADDR, Upgrade};

    if let Err(r) = check_origin(&state.config, req.headers()) {
        return r;
    }
    if !protocol::valid_tunnel_name(&name) {
        return not_found_tunnel();
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    // Behind a trusted proxy, the address it forwarded (see crate::net::client_addr).
    let ip = peer
        .map(|p| {
            crate::net::client_addr::ClientAddr::of(&state.config.trusted_proxies, p, req.headers())
                .ip()
        })
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let upgrade = match Upgrade::from_request(&mut req) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let credential = match &upgrade.token {
        // A bridge of this release: its token is checked before the upgrade, and it
        // takes no handshake slot.
        Some(Ok(token)) => {
            // Refused bridge tokens are limited per address (the Hello path counts the
            // same way).
            let Ok(attempt) = state.oauth.hellos.begin(ip) else {
                return McpError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    UNAVAILABLE,
                    "too many refused bridge tokens from this address; retry later",
                )
                .into_response();
            };
            match state.store.token_id(token).await {
                Ok(Some(id)) => {
                    attempt.succeeded();
                    Credential::Checked(id)
                }
                Ok(None) => return bad_bridge_token(),
                Err(e) => {
                    // Not the bridge's fault: the attempt is not counted against it.
                    attempt.succeeded();
                    tracing::error!("token lookup: {e}");
                    return McpError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        UNAVAILABLE,
                        "the relay cannot check tokens right now; retry shortly",
                    )
                    .into_response();
                }
            }
        }
        Some(Err(())) => return bad_bridge_token(),
        // A bridge of an earlier release: the token comes in its Hello. Such handshakes
        // are capped per address and in total.
        None => {
            let Some(addr) = state
                .handshakes_by_addr
                .try_acquire(ip, MAX_PENDING_PER_ADDR)
            else {
                return McpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "too many bridges are connecting from this address at once; retry shortly",
                )
                .into_response();
            };
            let Ok(global) = state.handshakes.clone().try_acquire_owned() else {
                return McpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "too many bridges are connecting at once; retry shortly",
                )
                .into_response();
            };
            Credential::InHello {
                _slot: (global, addr),
            }
        }
    };
    let features = match credential {
        Credential::Checked(_) => FEATURES_TOKEN_CHECKED,
        Credential::InHello { .. } => FEATURES,
    };
    let limits = state.config.frame_limits();
    // Small buffers: thousands of mostly idle bridges per relay.
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.max_message_size = Some(limits.max_frame());
    config.max_frame_size = Some(limits.max_frame());
    config.read_buffer_size = 4 * 1024;
    config.write_buffer_size = 16 * 1024;
    let admission = Admission {
        credential,
        peer: ip,
        features: upgrade.features.clone(),
    };
    upgrade.respond(config, features, move |socket, budget| {
        handle_socket(state, name, socket, budget, admission)
    })
}

/// The answer to an upgrade whose bridge token is unknown, revoked or unreadable.
fn bad_bridge_token() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "the relay does not know this bridge token (or it was revoked)",
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"bridge\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_features_lists_name_the_features() {
        for f in [FEATURES, FEATURES_TOKEN_CHECKED] {
            for feature in [protocol::FEATURE_SERVER_HEALTH, protocol::FEATURE_ASSETS] {
                assert!(protocol::has_feature(f, feature), "{f}: {feature}");
            }
        }
        assert!(protocol::has_feature(
            FEATURES_TOKEN_CHECKED,
            protocol::FEATURE_TOKEN_HEADER
        ));
    }
}
