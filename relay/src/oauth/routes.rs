//! The OAuth server's routes.

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;

use super::authorize;
use super::consent;
use super::metadata;
use super::register;
use super::token;

/// The OAuth routes.
pub fn routes() -> Router<AppState> {
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
