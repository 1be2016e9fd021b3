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

use super::redirect_allowed;
use crate::state::AppState;
use crate::store::{Client, now};

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

/// Whether an address is publicly routable (not loopback, private, link-local,
/// unique-local, CGNAT, multicast, unspecified, documentation or IPv4-mapped private).
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
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[0] == 0)
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
            .map(|s| s.chars().filter(|c| !c.is_control()).take(100).collect()),
        redirect_uris: uris,
        // Public client bound by PKCE, whatever the document says (`private_key_jwt`).
        auth_method: "none".into(),
        secret_hash: None,
        metadata: String::from_utf8_lossy(body).into_owned(),
        created: now(),
    })
}

impl Fetcher {
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
    pub async fn client(&self, state: &AppState, client_id: &str) -> Result<Client, String> {
        if let Ok(Some(c)) = state.store.client(client_id)
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
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(FETCH_TIMEOUT, tokio::net::lookup_host((host.as_str(), 443)))
                .await
                .map_err(|_| "resolving the client_id host timed out".to_string())?
                .map_err(|_| "the client_id host does not resolve".to_string())?
                .collect();
        let Some(first) = addrs.first().copied() else {
            return Err("the client_id host does not resolve".into());
        };
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "the client_id host resolves to {}, a private or local address",
                bad.ip()
            ));
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls()).clone())
            .redirect(reqwest::redirect::Policy::none())
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
            .map_err(|e| format!("fetching the client metadata document failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "the client metadata document answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the client metadata document failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOC {
                return Err("the client metadata document is too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let client = parse_document(client_id, &body, &state.oauth.config.extra_redirect_hosts)?;
        if let Err(e) = state.store.put_client(&client) {
            tracing::warn!("caching a client metadata document: {e}");
        }
        crate::trace::client_document_fetched(&client);
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
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
