//! Which redirect URIs clients may register.

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
