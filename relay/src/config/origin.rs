//! Which `Host` and `Origin` a relay answers.

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use protocol::jsonrpc::INVALID_REQUEST;

use super::RelayConfig;
use crate::util::http_error::McpError;
use axum::response::IntoResponse;
use protocol::net::is_loopback_host;

/// Strips the port from a `Host` header value or an origin's authority.
fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Refuses requests whose `Host` or `Origin` does not belong to this relay: a relay on
/// loopback only answers loopback host names (DNS rebinding), and a browser `Origin`
/// must be the public URL's own origin or explicitly allowed.
pub fn check_origin(config: &RelayConfig, headers: &HeaderMap) -> Result<(), Response> {
    if config.is_loopback() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host.is_empty() && !is_loopback_host(host_only(host)) {
            return Err(McpError::new(
                StatusCode::FORBIDDEN,
                INVALID_REQUEST,
                "Forbidden: Host header is not a loopback name",
            )
            .into_response());
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let own = config.public_url.origin().ascii_serialization();
    let allowed = origin.eq_ignore_ascii_case(&own)
        || config
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        || (config.is_loopback() && origin_is_loopback(origin));
    if allowed {
        Ok(())
    } else {
        Err(McpError::new(
            StatusCode::FORBIDDEN,
            INVALID_REQUEST,
            "Forbidden: Origin not allowed",
        )
        .into_response())
    }
}

fn origin_is_loopback(origin: &str) -> bool {
    match url::Url::parse(origin) {
        Ok(u) => u.host_str().map(is_loopback_host).unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config as cfg, headers};

    #[test]
    fn loopback_relay_refuses_foreign_host_and_origin() {
        let c = cfg("http://127.0.0.1:8080");
        assert!(check_origin(&c, &headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(check_origin(&c, &headers(&[("host", "localhost:8080")])).is_ok());
        assert!(check_origin(&c, &headers(&[("host", "[::1]:8080")])).is_ok());
        assert!(check_origin(&c, &headers(&[("host", "evil.example.com")])).is_err());
        assert!(
            check_origin(
                &c,
                &headers(&[("host", "localhost"), ("origin", "http://evil.example.com")])
            )
            .is_err()
        );
        assert!(
            check_origin(
                &c,
                &headers(&[("host", "localhost"), ("origin", "http://localhost:3000")])
            )
            .is_ok()
        );
    }

    #[test]
    fn public_relay_checks_origin_only() {
        let c = cfg("https://relay.example.com");
        assert!(check_origin(&c, &headers(&[("host", "relay.example.com")])).is_ok());
        assert!(check_origin(&c, &headers(&[("origin", "https://relay.example.com")])).is_ok());
        assert!(check_origin(&c, &headers(&[("origin", "https://evil.example")])).is_err());
    }
}
