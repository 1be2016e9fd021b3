//! The client's address, as the relay's rate limits and its OAuth trace know it.
//!
//! It is the TCP peer's address, unless that peer is a trusted reverse proxy
//! (`--trusted-proxy CIDR`): then it is the right-most address of the forwarding header
//! (`X-Forwarded-For` by default, or RFC 7239 `Forwarded` with
//! `--trusted-proxy-header forwarded`) that is not itself a trusted proxy. Entries left
//! of it were written by the client or by proxies nobody vouches for, and are ignored; a
//! malformed entry stops the walk at the nearest trusted hop, so a forged or garbled
//! header never yields an address of the sender's choosing. Without trusted proxies the
//! headers are never read.
//!
//! The proxy must overwrite (or append to) the header it sends: see deploy/nginx.conf and
//! deploy/Caddyfile.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::IntoResponse;
use axum::response::Response;
use http::{HeaderMap, StatusCode};

/// Most entries of a forwarding header looked at, from the right.
const MAX_HOPS: usize = 32;

/// An IP address range (`192.0.2.0/24`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A range that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR range (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1/128)")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(s.to_owned());
        let t = s.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's IPv4 peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Which header a trusted proxy writes the client's address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, Caddy, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// Who may tell the relay a client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// The proxies' addresses.
    pub ranges: Vec<Cidr>,
    /// The header they write.
    pub header: ForwardedHeader,
}

impl TrustedProxies {
    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// The client's address of a request from `peer` with `headers` (module
    /// documentation).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        // Several header lines make one list, in order.
        let mut entries: Vec<&str> = Vec::new();
        for value in headers.get_all(name) {
            let Ok(v) = value.to_str() else {
                return peer;
            };
            entries.extend(split_outside_quotes(v, b','));
        }
        let mut nearest = peer;
        for entry in entries.iter().rev().take(MAX_HOPS) {
            let ip = match self.header {
                ForwardedHeader::XForwardedFor => parse_node(entry),
                ForwardedHeader::Forwarded => forwarded_for(entry),
            };
            match ip.map(canonical) {
                Some(ip) if self.trusts(ip) => nearest = ip,
                Some(ip) => return ip,
                // Unknown, obfuscated or garbled: nothing left of it can be believed.
                None => return nearest,
            }
        }
        nearest
    }
}

/// Splits on `sep` outside double-quoted strings (with backslash escapes).
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    split_outside_quotes(element, b';')
        .into_iter()
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("for") {
                return None;
            }
            let v = v.trim();
            let v = match v.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"')?,
                None => v,
            };
            parse_node(v)
        })
}

/// An address, possibly with a port: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
        return port_ok.then(|| inner.parse::<IpAddr>().ok()).flatten();
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The client's address of a request (see the module documentation). As an extractor it
/// needs the relay's state; [`ClientAddr::ip`] gives the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.0
    }

    /// The client's address of a request from `peer`.
    pub fn of(proxies: &TrustedProxies, peer: SocketAddr, headers: &HeaderMap) -> Self {
        Self(proxies.client_ip(peer.ip(), headers))
    }
}

/// A router state that knows which proxies to believe (what [`ClientAddr`] needs to be
/// extracted).
pub trait ProxyTrust {
    /// The proxies whose forwarding headers are believed.
    fn trusted_proxies(&self) -> &TrustedProxies;
}

impl<S: ProxyTrust + Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Ok(Self::of(state.trusted_proxies(), *peer, &parts.headers)),
            None => Err(crate::util::http_error::McpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                protocol::jsonrpc::INTERNAL_ERROR,
                "the peer's address is unknown",
            )
            .into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::headers;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusting(ranges: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies {
            ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            header,
        }
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert!(r.contains(ip("10.255.0.1")) && !r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")) && !all.contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host/8",
            "1.2.3",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let t = trusting(&["127.0.0.1/32"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(t.client_ip(ip("203.0.113.5"), &h), ip("203.0.113.5"));
        // A loopback peer is not trusted unless configured.
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        assert_eq!(t.client_ip(ip("127.0.0.2"), &h), ip("127.0.0.2"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let t = trusting(
            &["127.0.0.1/32", "10.0.0.0/8"],
            ForwardedHeader::XForwardedFor,
        );
        let peer = ip("127.0.0.1");
        // The client's own entries (left) are ignored; the proxy's (right) count.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]);
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.7"));
        // Trusted hops are skipped.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.7"));
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.8"));
        // Only trusted hops: the farthest of them.
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.2")]);
        assert_eq!(t.client_ip(peer, &h), ip("10.0.0.9"));
        // No header: the proxy itself.
        assert_eq!(t.client_ip(peer, &HeaderMap::new()), peer);
        // Ports and brackets.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:443")]);
        assert_eq!(t.client_ip(peer, &h), ip("2001:db8::7"));
        let h = headers(&[("x-forwarded-for", "198.51.100.9:5555")]);
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.9"));
        // A dual-stack listener's peer.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(t.client_ip(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn malformed_entries_stop_at_the_nearest_trusted_hop() {
        let t = trusting(
            &["127.0.0.1/32", "10.0.0.0/8"],
            ForwardedHeader::XForwardedFor,
        );
        let peer = ip("127.0.0.1");
        for bad in [
            "198.51.100.7, garbage",
            "198.51.100.7, unknown",
            "198.51.100.7, ",
            "198.51.100.7,,",
            "[2001:db8::1",
            "[2001:db8::1]:port",
            "198.51.100.7:99999",
        ] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(t.client_ip(peer, &h), peer, "{bad:?}");
        }
        let h = headers(&[("x-forwarded-for", "198.51.100.7, junk, 10.0.0.3")]);
        assert_eq!(t.client_ip(peer, &h), ip("10.0.0.3"));
        // Very long chains of trusted hops end at the last one looked at.
        let long = vec!["10.0.0.1"; 100].join(", ");
        let h = headers(&[("x-forwarded-for", &format!("198.51.100.7, {long}"))]);
        assert_eq!(t.client_ip(peer, &h), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_header() {
        let t = trusting(&["127.0.0.1/32", "10.0.0.0/8"], ForwardedHeader::Forwarded);
        let peer = ip("127.0.0.1");
        let h = headers(&[(
            "forwarded",
            "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.1",
        )]);
        assert_eq!(t.client_ip(peer, &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "For=\"198.51.100.7:80\", for=10.0.0.2")]);
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.7"));
        let h = headers(&[("forwarded", "for=\"[2001:db8::1]\"")]);
        assert_eq!(t.client_ip(peer, &h), ip("2001:db8::1"));
        // A quoted comma does not split elements.
        let h = headers(&[("forwarded", "for=198.51.100.7;ext=\"a,b\"")]);
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.7"));
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=\"[2001:db8::1]:x\"",
            "for=2001:db8::1:80:",
            "for=\"198.51.100.7",
        ] {
            let h = headers(&[("forwarded", bad)]);
            assert_eq!(t.client_ip(peer, &h), peer, "{bad:?}");
        }
        // The other header is not read.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(t.client_ip(peer, &h), peer);
        let x = trusting(&["127.0.0.1/32"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("forwarded", "for=198.51.100.7")]);
        assert_eq!(x.client_ip(peer, &h), peer);
    }
}
