//! OAuth answers: JSON that is never cached, and OAuth errors.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// A JSON answer with `Cache-Control: no-store`.
pub fn json_no_store(status: StatusCode, body: &serde_json::Value) -> Response {
    // A `Value` always serializes.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// An OAuth error (RFC 6749 section 5.2): the HTTP status, the `error` code and its
/// description. Its answer is `{"error": …, "error_description": …}`, never cached, and
/// carries the error itself as an extension, so the OAuth trace reads it from the answer
/// instead of parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OAuth `error` code (`invalid_request`, `invalid_grant`, …).
    pub error: String,
    /// The `error_description`.
    pub description: String,
    /// Whether the answer challenges for HTTP Basic client authentication (a 401 from the
    /// token endpoint, RFC 6749 section 5.2).
    pub basic_challenge: bool,
}

impl OAuthError {
    /// An error with this status, code and description.
    pub fn new(
        status: StatusCode,
        error: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: error.into(),
            description: description.into(),
            basic_challenge: false,
        }
    }

    /// `400 invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// `401 invalid_client` with a Basic challenge.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self {
            basic_challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut r = json_no_store(
            self.status,
            &serde_json::json!({ "error": self.error, "error_description": self.description }),
        );
        if self.basic_challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\""),
            );
        }
        r.extensions_mut().insert(self);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_carries_the_error_and_its_body() {
        let e = OAuthError::invalid_client("client authentication failed");
        let r = e.clone().into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"oauth\""
        );
        assert_eq!(r.extensions().get::<OAuthError>(), Some(&e));
        let v = crate::testing::json_body(r).await;
        assert_eq!(v["error"], "invalid_client");
        assert_eq!(v["error_description"], "client authentication failed");
    }
}
