//! Relay configuration.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

pub mod file;
pub mod node;
pub mod origin;

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
        min = MIN_BRIDGE_TOKEN_LEN
    )]
    ShortBridgeToken(usize),
}

/// Access tokens live this long.
pub const ACCESS_TTL: Duration = Duration::from_secs(3600);

/// OAuth settings of a relay.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Redirect hosts allowed besides ChatGPT's, Claude's and loopback.
    pub extra_redirect_hosts: Vec<String>,
    /// Argon2 hash (PHC string) of the operator password, if one is set.
    pub operator_password_hash: Option<String>,
    /// Most dynamically registered clients.
    pub max_clients: usize,
    /// Most pending consents.
    pub max_consents: usize,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            extra_redirect_hosts: Vec::new(),
            operator_password_hash: None,
            max_clients: 10_000,
            max_consents: 1_000,
            access_ttl: ACCESS_TTL,
        }
    }
}

/// Fewest characters a configured bridge token may have.
pub const MIN_BRIDGE_TOKEN_LEN: usize = 32;

/// Everything a relay needs to run. Build it with [`RelayConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The public base URL (scheme, host, optional port and path prefix, no trailing
    /// slash). Every URL the relay prints or publishes is built from it, never from
    /// request headers.
    pub public_url: Url,
    /// SHA-256 digests of the bridge tokens allowed to connect.
    pub bridge_token_hashes: Vec<[u8; 32]>,
    /// Allow tunnels whose clients do not authenticate even though the public URL is not
    /// loopback.
    pub allow_unauthenticated: bool,
    /// Largest accepted HTTP request body, in bytes.
    pub max_body: usize,
    /// Silence after which a POST answer turns into an SSE stream, and the interval of
    /// keep-alive comments on SSE streams.
    pub keepalive: Duration,
    /// Close a resumable SSE answer (a 2025-11-25 session's POST) after this long; the
    /// client resumes it with `GET` + `Last-Event-ID` ("SSE polling", for proxies that
    /// cut long responses). `None`: streams stay open until the answer.
    pub sse_poll: Option<Duration>,
    /// How long requests wait for a bridge that just disconnected before the tunnel is
    /// answered as offline.
    pub grace: Duration,
    /// Most tunnels connected at once.
    pub max_tunnels: usize,
    /// Most exchanges in flight on one tunnel; further requests get 503.
    pub max_exchanges_per_tunnel: usize,
    /// Extra allowed browser origins (besides the public URL's own origin).
    pub allowed_origins: Vec<String>,
    /// Longest time a client may take to send a request's head, and the longest a
    /// kept-alive connection may stay idle.
    pub header_timeout: Duration,
    /// Longest time a client may take to send a request's body (from its head).
    pub body_timeout: Duration,
    /// Reverse proxies whose forwarding header names the client (see
    /// [`crate::net::client_addr`]); none by default.
    pub trusted_proxies: crate::net::client_addr::TrustedProxies,
    /// A separate address serving only `/metrics` (and the health routes), to anyone who
    /// can reach it; `/metrics` on the main address then needs the metrics token.
    pub metrics_listen: Option<SocketAddr>,
    /// Most connections per client address; `None`: derived from the file-descriptor
    /// limit (see [`crate::net::conn::ConnLimits`]).
    pub max_connections_per_address: Option<usize>,
    /// Where the relay's state lives: memory (the bridge's embedded relay), SQLite in a
    /// data directory, or a PostgreSQL database shared by several nodes.
    pub storage: crate::store::Storage,
    /// This node's name in logs and metrics (several nodes may share one database).
    pub node_id: String,
    /// On shutdown, how long `/readyz` answers 503 before the relay stops serving.
    pub drain_delay: Duration,
    /// OAuth settings.
    pub oauth: OAuthConfig,
}

impl RelayConfig {
    /// A configuration with defaults for everything but the listen address and public URL.
    pub fn new(listen: SocketAddr, public_url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            listen,
            public_url: parse_public_url(public_url)?,
            bridge_token_hashes: Vec::new(),
            allow_unauthenticated: false,
            max_body: 16 << 20,
            keepalive: Duration::from_secs(15),
            sse_poll: None,
            grace: Duration::from_secs(10),
            max_tunnels: 10_000,
            max_exchanges_per_tunnel: 4096,
            allowed_origins: Vec::new(),
            header_timeout: crate::net::conn::HEADER_TIMEOUT,
            body_timeout: crate::net::conn::BODY_TIMEOUT,
            max_connections_per_address: None,
            metrics_listen: None,
            trusted_proxies: crate::net::client_addr::TrustedProxies::default(),
            storage: crate::store::Storage::Memory,
            node_id: node::default_node_id(),
            drain_delay: Duration::ZERO,
            oauth: OAuthConfig::default(),
        })
    }

    /// Allows bridges presenting `token` to connect; refuses a token shorter than
    /// [`MIN_BRIDGE_TOKEN_LEN`] characters.
    pub fn add_bridge_token(&mut self, token: &str) -> Result<(), ConfigError> {
        let len = token.chars().count();
        if len < MIN_BRIDGE_TOKEN_LEN {
            return Err(ConfigError::ShortBridgeToken(len));
        }
        self.bridge_token_hashes.push(sha256(token.as_bytes()));
        Ok(())
    }

    /// The public MCP URL of a tunnel: its OAuth resource identifier.
    pub fn resource_url(&self, name: &str) -> String {
        format!("{}/{name}/mcp", self.base())
    }

    /// The URL of a tunnel's protected-resource metadata (RFC 9728, path-inserted).
    pub fn metadata_url(&self, name: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/{name}/mcp",
            self.base()
        )
    }

    /// Frame limits for the relay's bridge connections: bodies up to the larger of the
    /// HTTP body limit and the protocol's default message limit (results can exceed
    /// requests).
    pub fn frame_limits(&self) -> protocol::Limits {
        protocol::Limits {
            max_body: self.max_body.max(protocol::Limits::default().max_body),
        }
    }

    /// Whether the public URL points at this machine (loopback).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.public_url.host_str().unwrap_or(""))
    }

    /// The public base URL as a string without a trailing slash.
    pub fn base(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
}

/// Parses and normalises a public base URL.
pub fn parse_public_url(s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s).map_err(|e| ConfigError::PublicUrl(format!("{s}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::PublicUrl(format!(
            "{s}: the scheme must be http or https"
        )));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::PublicUrl(format!(
            "{s}: expected scheme://host[:port][/prefix] without query or fragment"
        )));
    }
    Ok(url)
}

pub use protocol::digest::sha256;
pub use protocol::net::is_loopback_host;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bridge_tokens_are_refused() {
        let mut c = RelayConfig::new("127.0.0.1:0".parse().unwrap(), "http://127.0.0.1").unwrap();
        let e = c.add_bridge_token("a-token").unwrap_err().to_string();
        assert!(
            e.contains("7 characters") && e.contains("at least 32"),
            "{e}"
        );
        assert!(c.add_bridge_token(&"x".repeat(31)).is_err());
        c.add_bridge_token(&"x".repeat(32)).unwrap();
        assert_eq!(c.bridge_token_hashes.len(), 1);
    }
}
