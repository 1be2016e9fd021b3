//! Discovery documents: RFC 8414 authorization server metadata and RFC 9728 protected
//! resource metadata for each OAuth tunnel.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::error::OAuthError;
use crate::oauth::state::OAuthState;
use std::sync::Arc;

/// `GET /.well-known/oauth-authorization-server`.
pub async fn authorization_server(State(state): State<Arc<OAuthState>>) -> Response {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Metadata);
    let base = state.config.base();
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "registration_endpoint": format!("{base}/oauth/register"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["none", "client_secret_post", "client_secret_basic", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported":
            ["none", "client_secret_post", "client_secret_basic"],
        "scopes_supported": [super::limits::SCOPE],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

/// `GET /.well-known/oauth-protected-resource/<name>/mcp`.
pub async fn protected_resource(
    State(state): State<Arc<OAuthState>>,
    crate::util::path::PathParam(name): crate::util::path::PathParam,
) -> Response {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Metadata);
    if !(protocol::valid_tunnel_name(&name) && state.uses_oauth(&name).await) {
        return OAuthError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no OAuth-protected tunnel with this name",
        )
        .into_response();
    }
    axum::Json(json!({
        "resource": state.config.resource_url(&name),
        "authorization_servers": [state.config.base()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [super::limits::SCOPE],
        "resource_name": format!("MCP tunnel {name}"),
    }))
    .into_response()
}
