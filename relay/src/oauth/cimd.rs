//! Client ID metadata documents: a `client_id` that is an https URL names a JSON document
//! describing the client. The relay fetches it with SSRF guards: https on port 443 only, no
//! redirects, the host resolved once and every address checked to be public, the
//! connection pinned to the checked address, size and time limits; documents are cached.
//!
//! ChatGPT's document advertises `private_key_jwt`; the relay treats such clients as
//! public clients bound by PKCE.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::redirect::redirect_allowed;
use crate::store::{Client, Store, now};

/// Largest document fetched.
const MAX_DOC: usize = 64 * 1024;
/// Time limit for resolving and fetching.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fetched document is reused.
const CACHE_SECS: i64 = 3600;

/// Fetches client metadata documents.
#[derive(Default)]
pub struct Fetcher {
    tls: OnceLock<Arc<rustls::ClientConfig>>,
}

/// Whether an address is publicly routable: IPv4 outside the special-purpose ranges
/// (loopback, private, link-local, CGNAT, benchmarking, documentation, 6to4 relays,
/// multicast, reserved, broadcast, "this network"); IPv6 only inside global unicast
/// (2000::/3), and not in its special-purpose parts (2001::/23 with Teredo, benchmarking and
/// ORCHID, documentation, 6to4). Everything outside 2000::/3 is refused: loopback,
/// unspecified, IPv4-mapped and -compatible, NAT64 (64:ff9b::/96, 64:ff9b:1::/48),
/// discard-only, unique-local, link-local, site-local and multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let special = match s[0] {
                // IETF protocol assignments (Teredo, benchmarking, ORCHID…), documentation.
                0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
                // 6to4.
                0x2002 => true,
                // Documentation (RFC 9637).
                0x3fff => s[1] < 0x1000,
                _ => false,
            };
            (s[0] & 0xe000) == 0x2000 && !special
        }
    }
}

/// Checks the form of a metadata document URL.
pub fn check_url(client_id: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(client_id).map_err(|_| "client_id is not a URL".to_string())?;
    if u.scheme() != "https" {
        return Err("a client metadata document must be served over https".into());
    }
    if u.port().is_some_and(|p| p != 443) {
        return Err("a client metadata document must be served on port 443".into());
    }
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err("the client_id URL must not carry a fragment or credentials".into());
    }
    if u.path() == "/" || u.path().is_empty() {
        return Err("the client_id URL must have a path".into());
    }
    if u.host_str().is_none() {
        return Err("the client_id URL has no host".into());
    }
    Ok(u)
}

/// Validates a fetched document for `client_id`.
pub fn parse_document(
    client_id: &str,
    body: &[u8],
    extra_hosts: &[String],
) -> Result<Client, String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| "the metadata document is not JSON".to_string())?;
    let obj = doc
        .as_object()
        .ok_or("the metadata document is not a JSON object")?;
    if obj.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err("the document's client_id differs from its URL".into());
    }
    let uris: Vec<String> = obj
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() || uris.len() > 10 {
        return Err("the document must list 1 to 10 redirect_uris".into());
    }
    if let Some(bad) = uris.iter().find(|u| !redirect_allowed(u, extra_hosts)) {
        return Err(format!("redirect URI {bad:?} is not allowed on this relay"));
    }
    Ok(Client {
        client_id: client_id.to_owned(),
        kind: "cimd".into(),
        name: obj
            .get("client_name")
            .and_then(Value::as_str)
            .map(|s| protocol::text::printable(s, 100)),
        redirect_uris: uris,
        // Public client bound by PKCE, whatever the document says (`private_key_jwt`).
        auth_method: "none".into(),
        secret_hash: None,
        metadata: String::from_utf8_lossy(body).into_owned(),
        created: now(),
    })
}

impl Fetcher {
    #[expect(
        clippy::expect_used,
        reason = "ring supports rustls's default protocol versions"
    )]
    fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                Arc::new(
                    rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .expect("default TLS versions")
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            })
            .clone()
    }

    /// The client a metadata-document `client_id` names: cached, or fetched now.
    pub async fn client(
        &self,
        store: &Store,
        extra_redirect_hosts: &[String],
        client_id: &str,
    ) -> Result<Client, String> {
        if let Ok(Some(c)) = store.client(client_id).await
            && c.kind == "cimd"
            && now() - c.created < CACHE_SECS
        {
            return Ok(c);
        }
        let url = check_url(client_id)?;
        // The name to resolve (IPv6 literals without their brackets) and to pin.
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Domain(d)) => d.to_owned(),
            None => return Err("the client_id URL has no host".into()),
        };
        // One answer whether the name does not resolve or resolves to an address that is
        // not public: the page must not tell anyone what a name resolves to.
        const UNUSABLE: &str = "the client_id host cannot be used: it must resolve to public \
                                addresses only (not a private or local address)";
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(FETCH_TIMEOUT, tokio::net::lookup_host((host.as_str(), 443)))
                .await
                .map_err(|_| "resolving the client_id host timed out".to_string())?
                .map_err(|_| UNUSABLE.to_string())?
                .collect();
        let Some(first) = addrs.first().copied() else {
            return Err(UNUSABLE.into());
        };
        if addrs.iter().any(|a| !is_public(a.ip())) {
            tracing::debug!(host = %host, "a client metadata document host resolves to a non-public address");
            return Err(UNUSABLE.into());
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls()).clone())
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect wherever it likes, not to the
            // address checked above.
            .no_proxy()
            .resolve(url.host_str().unwrap_or(&host), first)
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut resp = http
            .get(url.as_str())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                tracing::debug!("fetching a client metadata document: {e}");
                "fetching the client metadata document failed".to_string()
            })?;
        if !resp.status().is_success() {
            return Err(format!(
                "the client metadata document answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            tracing::debug!("reading a client metadata document: {e}");
            "reading the client metadata document failed".to_string()
        })? {
            if body.len() + chunk.len() > MAX_DOC {
                return Err("the client metadata document is too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let client = parse_document(client_id, &body, extra_redirect_hosts)?;
        if let Err(e) = store.put_client(&client).await {
            tracing::warn!("caching a client metadata document: {e}");
        }
        crate::oauth::trace::client_document_fetched(&client);
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for a in [
            // IPv4 special-purpose ranges.
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6 outside global unicast.
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:1.1.1.1",
            "::1.1.1.1",
            "::ffff:0:1.1.1.1",
            "64:ff9b::1.1.1.1",
            "64:ff9b:1::1",
            "100::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
            // IPv6 special-purpose parts of global unicast.
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:1ff::1",
            "2001:db8::1",
            "2002:101:101::1",
            "2002::1",
            "3fff::1",
            "3fff:fff::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in [
            "1.1.1.1",
            "93.184.216.34",
            "8.8.8.8",
            "198.20.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "3ffe::1",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn url_rules() {
        assert!(check_url("https://chatgpt.com/oauth/client.json").is_ok());
        assert!(check_url("http://chatgpt.com/c.json").is_err());
        assert!(check_url("https://chatgpt.com:8443/c.json").is_err());
        assert!(check_url("https://chatgpt.com/").is_err());
        assert!(check_url("https://u:p@chatgpt.com/c.json").is_err());
    }

    #[test]
    fn documents() {
        let id = "https://chatgpt.com/oauth/client.json";
        let good = format!(
            r#"{{"client_id":"{id}","client_name":"ChatGPT","redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],"token_endpoint_auth_method":"private_key_jwt"}}"#
        );
        let c = parse_document(id, good.as_bytes(), &[]).unwrap();
        assert_eq!(c.auth_method, "none");
        assert_eq!(c.kind, "cimd");
        let other_id = good.replace("client.json\"", "other.json\"");
        assert!(parse_document(id, other_id.as_bytes(), &[]).is_err());
        let evil = good.replace(
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://evil.example/cb",
        );
        assert!(parse_document(id, evil.as_bytes(), &[]).is_err());
        assert!(parse_document(id, b"not json", &[]).is_err());
    }
}
