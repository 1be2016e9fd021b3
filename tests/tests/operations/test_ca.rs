//! A certificate authority made for one test, its server certificates, and HTTPS clients
//! that trust it (or any other roots).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::write;

/// A certificate authority made for one test.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mcp-tunnel test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate.
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses): (chain PEM, key PEM).
    pub(crate) fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mcp-tunnel test server");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    }

    /// (CA file, certificate chain file, key file) in `dir`, for a proxy serving
    /// `relay.example.com` and `127.0.0.1`.
    pub(crate) fn files(&self, dir: &Path) -> (String, String, String) {
        let (chain, key) = self.server_cert(&["relay.example.com", "127.0.0.1"]);
        (
            write(dir, "ca.pem", &self.pem()),
            write(dir, "cert.pem", &chain),
            write(dir, "key.pem", &key),
        )
    }

    /// An HTTPS client trusting this CA, sending `relay.example.com` to loopback `port`,
    /// its connections from `from` (if given).
    pub(crate) fn client_from(&self, port: u16, from: Option<IpAddr>) -> reqwest::Client {
        let relay = SocketAddr::from(([127, 0, 0, 1], port));
        https_client(&self.pem(), &[("relay.example.com", relay)], from)
    }

    /// [`TestCa::client_from`] from the default address.
    pub(crate) fn client(&self, port: u16) -> reqwest::Client {
        self.client_from(port, None)
    }
}

/// A rustls client configuration (ring) trusting only the certificates of `roots_pem`.
fn client_tls(roots_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(cert.expect("PEM certificate")).expect("root");
    }
    assert!(!roots.is_empty(), "no certificate in {roots_pem:?}");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTPS client trusting `roots_pem`, resolving each `(name, addr)` of `resolve`, its
/// connections from `from` (if given).
pub(crate) fn https_client(
    roots_pem: &str,
    resolve: &[(&str, SocketAddr)],
    from: Option<IpAddr>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(roots_pem))
        .no_proxy()
        .local_address(from)
        .timeout(Duration::from_secs(20));
    for (name, addr) in resolve {
        b = b.resolve(name, *addr);
    }
    b.build().expect("https client")
}
