//! The path segment extractor of the public routes.

use axum::extract::{FromRequestParts, Path};
use axum::response::Response;
use http::StatusCode;
use protocol::jsonrpc::INVALID_REQUEST;

use crate::util::http_error::McpError;
use axum::response::IntoResponse;

/// A path segment (tunnel name, consent id). A segment axum cannot decode (not UTF-8) is
/// answered like an unknown tunnel: a JSON-RPC 404, not a plain-text 400.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParam(v)),
            Err(_) => Err(not_found_tunnel()),
        }
    }
}

/// The answer for a tunnel name that is malformed or unknown.
pub fn not_found_tunnel() -> Response {
    McpError::new(
        StatusCode::NOT_FOUND,
        INVALID_REQUEST,
        "Not found: no such tunnel",
    )
    .into_response()
}
