//! The error answer of the MCP path and the relay's own routes: an HTTP status with a
//! JSON-RPC error body.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// An HTTP error answered with a JSON-RPC error body (id `null`), so MCP clients can show
/// the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON-RPC error code.
    pub code: i64,
    /// The message clients show.
    pub message: String,
}

impl McpError {
    /// An error with this status, JSON-RPC code and message.
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for McpError {
    fn into_response(self) -> Response {
        let body = protocol::jsonrpc::error_response(b"null", self.code, &self.message);
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

impl From<McpError> for Response {
    fn from(e: McpError) -> Self {
        e.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_with_the_status_and_a_jsonrpc_error() {
        let r = McpError::new(StatusCode::NOT_FOUND, -32600, "Not found").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v = crate::testing::json_body(r).await;
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["error"]["message"], "Not found");
    }
}
