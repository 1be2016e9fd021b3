//! Library errors and the HTTP error answers of the relay.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// A configuration value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The public URL is malformed.
    #[error("invalid public URL {0}")]
    PublicUrl(String),
    /// A configured bridge token is too short to resist guessing.
    #[error(
        "a configured bridge token has {0} characters; bridge tokens need at least {min} \
         (create one with `relay token create NAME`, or use 32+ random characters, e.g. \
         `openssl rand -hex 32`)",
        min = crate::config::MIN_BRIDGE_TOKEN_LEN
    )]
    ShortBridgeToken(usize),
}

/// Errors of running a relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Binding or accepting on the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// An HTTP error answered with a JSON-RPC error body (id `null`), so MCP clients can show
/// the reason.
pub fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = protocol::jsonrpc::error_response(b"null", code, message);
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(Body::from(body))
        .expect("static response parts")
}
