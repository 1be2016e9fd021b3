//! The OAuth server's routes.

use axum::Router;
use axum::routing::{get, post};

use std::sync::Arc;

use axum::extract::FromRef;

use crate::net::client_addr::ProxyTrust;
use crate::oauth::state::OAuthState;

use super::authorize;
use super::consent;
use super::metadata;
use super::register;
use super::token;

/// The OAuth routes.
pub fn routes<S>() -> Router<S>
where
    S: ProxyTrust + Clone + Send + Sync + 'static,
    Arc<OAuthState>: FromRef<S>,
{
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/oauth-protected-resource/{name}/mcp",
            get(metadata::protected_resource),
        )
        .route("/oauth/register", post(register::register))
        .route("/oauth/authorize", get(authorize::authorize))
        .route(
            "/oauth/consent/{id}",
            get(consent::poll).post(consent::decide),
        )
        .route("/oauth/approve", post(consent::approve_with_bridge_token))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
}
