//! Which hosts may be upstreams. A bridge publishes what runs on the owner's desktop or
//! network: by default an upstream must resolve to loopback or private-network addresses
//! only, so a typo or a copied config cannot turn the tunnel into an open proxy to a
//! remote service (with the owner's headers). `--allow-remote-upstream` lifts this.
//!
//! The addresses checked are the addresses used: the bridge resolves the host once, at
//! start, and its HTTP client connects only to them (a name that later resolves elsewhere,
//! DNS rebinding, is not followed).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use url::Url;

/// Why an upstream URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    /// Not an `http` or `https` URL with a host.
    #[error("{0} is not an http:// or https:// URL with a host")]
    NotHttp(String),
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Unresolved {
        /// The host.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The host resolves to an address outside loopback and private networks.
    #[error(
        "{host} resolves to {addr}, which is neither loopback nor a private network: the bridge \
         publishes local servers only; pass --allow-remote-upstream to publish it anyway"
    )]
    Remote {
        /// The host.
        host: String,
        /// The first public address it resolved to.
        addr: IpAddr,
    },
}

/// Whether `ip` is loopback, a private network (RFC 1918, IPv6 unique local), link-local,
/// or carrier-grade NAT space (RFC 6598, where VPN overlays such as Tailscale live).
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Resolves the host of `url` and checks every address it resolves to (all of them must be
/// local unless `allow_remote`). Returns the host and the addresses to connect to.
pub fn resolve(url: &Url, allow_remote: bool) -> Result<(String, Vec<SocketAddr>), AddressError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AddressError::NotHttp(url.to_string()));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(AddressError::NotHttp(url.to_string()));
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (bare, port)
            .to_socket_addrs()
            .map_err(|e| AddressError::Unresolved {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(AddressError::Unresolved {
            host: host.to_owned(),
            reason: "no addresses".into(),
        });
    }
    if !allow_remote && let Some(a) = addrs.iter().find(|a| !is_local(a.ip())) {
        return Err(AddressError::Remote {
            host: host.to_owned(),
            addr: a.ip(),
        });
    }
    Ok((bare.to_owned(), addrs))
}

/// An HTTP client for `url`'s host that connects only to `addrs` (checked by [`resolve`]),
/// follows no redirects and uses no proxy.
pub fn pinned_client(
    url: &Url,
    addrs: &[SocketAddr],
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, String> {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("mcp-tunnel-bridge/", env!("CARGO_PKG_VERSION")));
    if bare.parse::<IpAddr>().is_err() {
        builder = builder.resolve_to_addrs(bare, addrs);
    }
    // The web PKI roots for an https server (the TLS setup reqwest is given must be set
    // for http ones too).
    let tls = crate::link::tls_config(None).map_err(|e| e.to_string())?;
    builder = builder.tls_backend_preconfigured(tls.as_ref().clone());
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_addresses_are_loopback_private_link_local_and_cgnat() {
        for a in [
            "127.0.0.1",
            "127.8.9.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.20",
            "169.254.3.4",
            "100.64.0.1",
            "100.127.255.254",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_local(ip(a)), "{a}");
        }
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2001:db8::1",
            "::ffff:1.1.1.1",
            "0.0.0.0",
        ] {
            assert!(!is_local(ip(a)), "{a}");
        }
    }

    #[test]
    fn loopback_urls_resolve_to_their_addresses() {
        let (host, addrs) = resolve(&Url::parse("http://127.0.0.1:3845/mcp").unwrap(), false)
            .expect("loopback is allowed");
        assert_eq!(host, "127.0.0.1");
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 3845))]);
        let (host, addrs) = resolve(&Url::parse("http://[::1]/mcp").unwrap(), false).unwrap();
        assert_eq!(host, "::1");
        assert_eq!(addrs[0].port(), 80);
        let (_, addrs) = resolve(&Url::parse("http://localhost:9/x").unwrap(), false).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn a_public_address_is_refused_unless_allowed() {
        let url = Url::parse("https://93.184.215.14/mcp").unwrap();
        let err = resolve(&url, false).expect_err("public");
        assert!(err.to_string().contains("--allow-remote-upstream"), "{err}");
        assert!(resolve(&url, true).is_ok());
    }

    #[test]
    fn other_schemes_are_refused() {
        for u in ["ftp://127.0.0.1/x", "file:///tmp/x"] {
            assert!(matches!(
                resolve(&Url::parse(u).unwrap(), true),
                Err(AddressError::NotHttp(_))
            ));
        }
    }
}
