//! HTTP error answers with a JSON-RPC body.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

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
