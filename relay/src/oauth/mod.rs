//! The relay as an OAuth 2.1 authorization server (and resource server) for its tunnels.
//!
//! - `metadata`: RFC 9728 protected-resource metadata per tunnel, RFC 8414 server metadata;
//! - `register`: dynamic client registration (RFC 7591);
//! - `cimd`: client ID metadata documents, fetched with SSRF guards;
//! - `authorize` + `consent`: the authorization endpoint and the owner-only consent page;
//! - `token`: code and refresh grants (PKCE S256, rotating refresh tokens), revocation;
//! - `access`: checking access tokens on every MCP request (audience = the tunnel).
//!
//! One issuer: the relay's public base URL.

pub mod access;
pub mod authorize;
pub mod cimd;
pub mod consent;
use crate::util::gate;
pub mod metadata;
pub mod register;
pub mod token;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};

use crate::app::AppState;

pub use crate::config::{ACCESS_TTL, OAuthConfig};
pub use crate::util::html::{escape_html, host_of};
pub use crate::util::rate::RateLimiter;

/// Refresh tokens live this long (each use rotates them).
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Authorization codes live this long.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// Pending consents live this long.
pub const CONSENT_TTL: Duration = Duration::from_secs(600);
/// The scope tokens carry.
pub const SCOPE: &str = "mcp";
/// Failed operator-password (or status page sign-in) attempts allowed per address in
/// [`PASSWORD_WINDOW`].
pub const PASSWORD_ATTEMPTS: usize = 5;
/// Window of the operator-password rate limit.
pub const PASSWORD_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Refused bridge-token presentations on `/oauth/approve` allowed per address in
/// [`APPROVE_WINDOW`].
pub const APPROVE_ATTEMPTS: usize = 10;
/// The same, from all addresses together.
pub const APPROVE_ATTEMPTS_TOTAL: usize = 200;
/// Window of those limits.
pub const APPROVE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Refused bridge tokens on bridge connections allowed per address in [`APPROVE_WINDOW`]
/// (no limit in total: that would let anyone keep every bridge out).
pub const HELLO_ATTEMPTS: usize = 30;

/// Mutable OAuth state of a relay.
pub struct OAuth {
    /// Settings.
    pub config: OAuthConfig,
    /// Authorizations waiting for the owner.
    pub consents: consent::Consents,
    /// Recently validated access tokens.
    pub tokens: access::TokenCache,
    /// Registrations per address.
    pub registrations: RateLimiter,
    /// Operator-password and status page sign-in attempts: failures per address,
    /// reserved before the check, and Argon2 verifications bounded in concurrency.
    pub passwords: gate::Gate,
    /// Bridge tokens presented to `/oauth/approve`: refusals per address and in total.
    pub approvals: gate::Gate,
    /// Bridge tokens presented by bridge connections: refusals per address.
    pub hellos: gate::Gate,
    /// Authorization requests per address.
    pub authorizations: RateLimiter,
    /// Fetched client metadata documents.
    pub cimd: cimd::Fetcher,
}

impl OAuth {
    /// OAuth state with these settings.
    pub fn new(config: OAuthConfig) -> Self {
        Self {
            config,
            consents: consent::Consents::default(),
            tokens: access::TokenCache::default(),
            registrations: RateLimiter::default(),
            passwords: gate::Gate::new(PASSWORD_ATTEMPTS, None, PASSWORD_WINDOW, true),
            approvals: gate::Gate::new(
                APPROVE_ATTEMPTS,
                Some(APPROVE_ATTEMPTS_TOTAL),
                APPROVE_WINDOW,
                false,
            ),
            hellos: gate::Gate::new(HELLO_ATTEMPTS, None, APPROVE_WINDOW, false),
            authorizations: RateLimiter::default(),
            cimd: cimd::Fetcher::default(),
        }
    }
}

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

/// A JSON answer with `Cache-Control: no-store`.
pub fn json_no_store(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).expect("json")));
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

/// An OAuth error answer (`{"error": …, "error_description": …}`).
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_no_store(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}

/// Whether a redirect URI is allowed: ChatGPT's and Claude's callbacks (exactly: https,
/// the default port, the known paths, no query, nothing percent-encoded), loopback
/// (RFC 8252, any port), or an operator-allowed host over https.
pub fn redirect_allowed(uri: &str, extra_hosts: &[String]) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    let host = u.host_str().unwrap_or("").to_ascii_lowercase();
    match u.scheme() {
        "http" => crate::config::is_loopback_host(&host),
        "https" => match host.as_str() {
            "chatgpt.com" | "claude.ai" | "claude.com" => known_callback(&u, &host),
            h if crate::config::is_loopback_host(h) => true,
            h => extra_hosts.iter().any(|x| x.eq_ignore_ascii_case(h)),
        },
        _ => false,
    }
}

/// Whether `u` (on ChatGPT's or Claude's host) is exactly one of their OAuth callbacks.
fn known_callback(u: &url::Url, host: &str) -> bool {
    // (The URL parser drops a default `:443`.)
    if u.port().is_some() || u.query().is_some() {
        return false;
    }
    let path = u.path();
    if path.contains('%') {
        return false;
    }
    match host {
        "chatgpt.com" => {
            path == "/connector_platform_oauth_redirect"
                || path.strip_prefix("/connector/oauth/").is_some_and(|id| {
                    (1..=128).contains(&id.len())
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        }
        _ => path == "/api/mcp/auth_callback",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_allowlist() {
        let none: Vec<String> = vec![];
        for ok in [
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://chatgpt.com/connector/oauth/abc123",
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback",
            "http://127.0.0.1:39999/callback",
            "http://localhost/cb",
            "http://[::1]:8000/cb",
            "http://127.0.0.1:39999/callback?x=1",
            "https://chatgpt.com:443/connector_platform_oauth_redirect",
            "https://CHATGPT.com/connector/oauth/AbC-123_x",
        ] {
            assert!(redirect_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "https://evil.example/cb",
            "https://chatgpt.com/other",
            "http://chatgpt.com/connector_platform_oauth_redirect",
            "https://claude.ai/api/mcp/auth_callback#frag",
            "https://user@claude.ai/api/mcp/auth_callback",
            "javascript:alert(1)",
            "http://10.0.0.1/cb",
            "not a url",
            "https://chatgpt.com:8443/connector_platform_oauth_redirect",
            "https://chatgpt.com/connector_platform_oauth_redirect?next=https://evil.example",
            "https://chatgpt.com/connector_platform_oauth_redirect?",
            "https://chatgpt.com/connector/oauth/",
            "https://chatgpt.com/connector/oauth/a/b",
            "https://chatgpt.com/connector/oauth/%2e%2e%2fevil",
            "https://chatgpt.com/connector/oauth/abc%2Fdef",
            "https://chatgpt.com/connector/oauth/../../evil",
            "https://chatgpt.com/connector_platform_oauth_redirect/",
            "https://claude.ai:444/api/mcp/auth_callback",
            "https://claude.ai/api/mcp/auth_callback?x=1",
            "https://claude.ai/api/mcp/auth_callback/../x",
            "https://claude.com/api/mcp/auth%5Fcallback",
        ] {
            assert!(!redirect_allowed(bad, &none), "{bad}");
        }
        assert!(redirect_allowed(
            "https://app.example.org/cb",
            &["app.example.org".to_string()]
        ));
    }
}
