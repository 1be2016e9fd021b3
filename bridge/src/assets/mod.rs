//! Local asset origins published under the tunnel. A ChatGPT Apps (or MCP Apps) widget is an
//! HTML resource that often loads its scripts, styles and images from an asset server on
//! the desktop (`http://127.0.0.1:4444`). With `assets = "http://127.0.0.1:4444"` the
//! bridge publishes that origin at `https://relay/<name>/assets/…` (in a tunnel that
//! aggregates several servers, a member's origin at `…/assets/<member>/…`):
//!
//! - [`fetch`] answers the relay's asset requests from that origin only, `GET`/`HEAD` only,
//!   bounded in size and time;
//! - [`rewrite`] replaces the local origin by its public address in what the servers send:
//!   the widget CSP domains they declare (`openai/widgetCSP`, MCP Apps `ui.csp`) become
//!   the relay's origin, and URLs in the widget HTML (and anywhere else) the public path.

pub mod fetch;
pub mod rewrite;

use std::sync::Arc;

use url::Url;

/// A tunnel's published asset origins, ready to serve.
#[derive(Debug, Clone)]
pub struct Published {
    /// The origins and where each is mounted.
    pub origins: Vec<AssetOrigin>,
    /// What fetches their files.
    pub server: Arc<fetch::AssetServer>,
}

/// One published asset origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetOrigin {
    /// Below which path segment of `/<name>/assets/` it is published: `None` for the
    /// tunnel's own (one server), the member's name in an aggregated tunnel.
    pub mount: Option<String>,
    /// The origin (`scheme://host[:port]`, no path).
    pub origin: Url,
}

impl AssetOrigin {
    /// The origin as written in URLs, without a trailing slash (`http://127.0.0.1:4444`).
    pub fn origin_str(&self) -> String {
        self.origin.origin().ascii_serialization()
    }

    /// The path of this origin's files below `/<name>/assets` (`""` or `/<member>`).
    pub fn mount_path(&self) -> String {
        match &self.mount {
            Some(m) => format!("/{m}"),
            None => String::new(),
        }
    }
}

/// Why an asset origin is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssetError {
    /// Not an origin.
    #[error(
        "assets {0:?} is not an http:// or https:// origin (scheme, host and port, with no path, query or user)"
    )]
    NotOrigin(String),
}

/// Parses an asset origin (`http://127.0.0.1:4444`, a trailing `/` allowed).
pub fn parse_origin(s: &str) -> Result<Url, AssetError> {
    let bad = || AssetError::NotOrigin(s.to_owned());
    let url = Url::parse(s.trim()).map_err(|_| bad())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if plain { Ok(url) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asset_origin_is_scheme_host_and_port_only() {
        let u = parse_origin("http://127.0.0.1:4444").unwrap();
        let o = AssetOrigin {
            mount: None,
            origin: u,
        };
        assert_eq!(o.origin_str(), "http://127.0.0.1:4444");
        assert_eq!(o.mount_path(), "");
        assert!(parse_origin("https://localhost/").is_ok());
        for bad in [
            "http://127.0.0.1:4444/static",
            "http://u:p@127.0.0.1:4444",
            "http://127.0.0.1:4444/?a=1",
            "file:///tmp",
            "ws://127.0.0.1:4444",
            "127.0.0.1:4444",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
