//! Helpers of the relay's unit tests.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::RelayConfig;

/// A relay configuration listening anywhere, with this public URL.
pub fn config(public_url: &str) -> RelayConfig {
    RelayConfig::new("127.0.0.1:0".parse().unwrap(), public_url).unwrap()
}

/// Request headers from name/value pairs (a repeated name is sent twice).
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// An answer's body as JSON.
pub async fn json_body(r: axum::response::Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
