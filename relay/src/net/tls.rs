//! HTTPS for the relay: TLS termination with a certificate from PEM files, or with
//! certificates obtained and renewed automatically from an ACME CA (Let's Encrypt, or any
//! RFC 8555 server such as Pebble) using the TLS-ALPN-01 challenge.
//!
//! Plain HTTP stays the default (a TLS-terminating reverse proxy in front). With a
//! [`TlsTerminator`], `crate::server::serve_tls` performs the handshakes itself: each
//! accepted TCP connection gets `TCP_NODELAY`, its handshake runs on a task of its own
//! (bounded in time and in number, so slow clients never hold up the accept loop), and the
//! finished TLS stream is handed to the same HTTP server, routes and graceful drain as
//! plain HTTP. ALPN offers `http/1.1`; with ACME the same port also answers the CA's
//! `acme-tls/1` validation handshakes.
//!
//! Only the `ring` crypto provider is used.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls_acme::caches::DirCache;
use tokio_rustls_acme::{AcmeAcceptor, AcmeConfig, EventOk};
use tracing::{debug, error, info};

/// The protocol offered with ALPN: the relay speaks HTTP/1.1 (WebSocket upgrades included).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Let's Encrypt's production ACME directory, the default of `--acme-directory`.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Longest time a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TLS handshakes in progress at once; further connections wait in the kernel's
/// accept queue.
pub const MAX_HANDSHAKES: usize = 512;

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The certificate and key do not make a usable server configuration.
    #[error("unusable certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The ACME settings are unusable.
    #[error("ACME: {0}")]
    Acme(String),
}

fn pem_error(path: &Path, e: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The `ring` crypto provider, the only one this project builds.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file (the server's certificate first, then the
/// intermediates).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE section"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => pem_error(path, "no PRIVATE KEY section"),
        e => pem_error(path, e),
    })
}

/// A server configuration for a certificate chain and key in PEM files, offering
/// `http/1.1` with ALPN.
pub fn server_config_from_pem(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = load_certificates(cert)?;
    let key = load_private_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// A client configuration trusting the web PKI roots, or only the certificates of a PEM
/// file (for an ACME server with a private CA, such as Pebble's).
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certificates(path)? {
                roots.add(cert).map_err(|e| pem_error(path, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that encrypts without checking who the server is: its
/// certificate chain is not verified (the handshake's signatures still are, so the
/// session is with the holder of the key it presented). What libpq's `sslmode=require`
/// does without a root certificate; `verify-full` uses [`client_config`].
pub fn encrypt_only_client_config() -> Result<ClientConfig, TlsError> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth())
}

/// Accepts any certificate chain; checks handshake signatures with the provider's
/// algorithms.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Settings for automatic certificates from an ACME CA.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The names the certificate covers (the first is the subject). Each must resolve to
    /// this relay, which must be reachable from the CA on port 443 (TLS-ALPN-01).
    pub domains: Vec<String>,
    /// Contact e-mail addresses for the ACME account (without `mailto:`); may be empty.
    pub emails: Vec<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// A PEM file of CA certificates to trust for the ACME server's own HTTPS instead of
    /// the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Where the account key and certificates are cached (created with mode 0700).
    pub cache_dir: PathBuf,
}

impl AcmeSettings {
    /// Checks the settings: at least one domain, each a DNS name without wildcard (which
    /// TLS-ALPN-01 cannot validate), plausible e-mail addresses and an https directory.
    pub fn validate(&self) -> Result<(), TlsError> {
        if self.domains.is_empty() {
            return Err(TlsError::Acme("give at least one domain".into()));
        }
        for d in &self.domains {
            let valid = !d.contains('*')
                && d.parse::<std::net::IpAddr>().is_err()
                && rustls_pki_types::DnsName::try_from(d.as_str()).is_ok()
                && d.contains('.');
            if !valid {
                return Err(TlsError::Acme(format!(
                    "{d:?} is not a domain name TLS-ALPN-01 can validate (no wildcards or IP \
                     addresses)"
                )));
            }
        }
        for e in &self.emails {
            if e.starts_with("mailto:") || !e.contains('@') || e.contains(char::is_whitespace) {
                return Err(TlsError::Acme(format!(
                    "{e:?} is not an e-mail address (give it without mailto:)"
                )));
            }
        }
        match url::Url::parse(&self.directory) {
            Ok(u) if u.scheme() == "https" => Ok(()),
            _ => Err(TlsError::Acme(format!(
                "the directory {:?} must be an https URL",
                self.directory
            ))),
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
enum Kind {
    Static(tokio_rustls::TlsAcceptor),
    Acme {
        acceptor: AcmeAcceptor,
        config: Arc<ServerConfig>,
        _driver: Arc<AbortOnDrop>,
    },
}

/// Turns accepted TCP connections into TLS streams. Cheap to clone.
#[derive(Clone)]
pub struct TlsTerminator {
    kind: Kind,
}

impl fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Static(_) => "certificate files",
            Kind::Acme { .. } => "ACME",
        };
        f.debug_struct("TlsTerminator")
            .field("kind", &kind)
            .finish()
    }
}

impl TlsTerminator {
    /// TLS with a fixed server configuration.
    pub fn from_config(config: ServerConfig) -> Self {
        Self {
            kind: Kind::Static(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        }
    }

    /// TLS with a certificate chain and private key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self::from_config(server_config_from_pem(cert, key)?))
    }

    /// TLS with certificates from an ACME CA. Starts, on the current tokio runtime, the
    /// task that loads the cached account and certificate, orders a certificate when
    /// there is none (answering the CA's TLS-ALPN-01 challenge on the relay's own port),
    /// renews it when a third of its lifetime is left, and logs each step. The task stops
    /// when the last clone of the terminator is dropped.
    ///
    /// Connections other than the CA's validation fail their handshake until the first
    /// certificate is there.
    pub fn acme(settings: &AcmeSettings) -> Result<Self, TlsError> {
        settings.validate()?;
        // The crate builds its validation config with the process default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Arc::new(client_config(settings.ca_file.as_deref())?);
        create_private_dir(&settings.cache_dir).map_err(|e| {
            TlsError::Acme(format!(
                "cannot create the cache directory {}: {e}",
                settings.cache_dir.display()
            ))
        })?;
        let mut state = AcmeConfig::new_with_client_tls_config(&settings.domains, client)
            .directory(&settings.directory)
            .contact(settings.emails.iter().map(|e| format!("mailto:{e}")))
            .cache(DirCache::new(settings.cache_dir.clone()))
            .state();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(state.resolver());
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        let acceptor = state.acceptor();
        let domains = settings.domains.join(",");
        let directory = settings.directory.clone();
        info!(%domains, %directory, "ACME: getting a certificate with TLS-ALPN-01");
        let driver = tokio::spawn(async move {
            while let Some(event) = state.next().await {
                match event {
                    Ok(EventOk::DeployedCachedCert) => {
                        info!(%domains, "ACME: serving the cached certificate")
                    }
                    Ok(EventOk::DeployedNewCert) => {
                        info!(%domains, "ACME: new certificate obtained and deployed")
                    }
                    Ok(EventOk::CertCacheStore) => debug!("ACME: certificate cached"),
                    Ok(EventOk::AccountCacheStore) => debug!("ACME: account key cached"),
                    Err(e) => error!(%domains, "ACME: {e} (retrying with backoff)"),
                }
            }
        });
        Ok(Self {
            kind: Kind::Acme {
                acceptor,
                config: Arc::new(config),
                _driver: Arc::new(AbortOnDrop(driver)),
            },
        })
    }

    /// Performs the server side of the handshake. `Ok(None)` when the connection was an
    /// ACME validation (already answered) rather than a client.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Option<TlsStream<TcpStream>>> {
        match &self.kind {
            Kind::Static(acceptor) => acceptor.accept(tcp).await.map(Some),
            Kind::Acme {
                acceptor, config, ..
            } => match acceptor.accept(tcp).await? {
                None => {
                    info!("ACME: answered a TLS-ALPN-01 validation");
                    Ok(None)
                }
                Some(start) => start.into_stream(config.clone()).await.map(Some),
            },
        }
    }
}

/// Creates a directory (and its parents) readable only by its owner.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(domains: &[&str], emails: &[&str], directory: &str) -> AcmeSettings {
        AcmeSettings {
            domains: domains.iter().map(|s| s.to_string()).collect(),
            emails: emails.iter().map(|s| s.to_string()).collect(),
            directory: directory.into(),
            ca_file: None,
            cache_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn acme_settings_are_checked() {
        let ok = acme(
            &["relay.example.com"],
            &["ops@example.com"],
            LETS_ENCRYPT_PRODUCTION,
        );
        assert!(ok.validate().is_ok());
        assert!(acme(&[], &[], LETS_ENCRYPT_PRODUCTION).validate().is_err());
        assert!(
            acme(&["*.example.com"], &[], LETS_ENCRYPT_PRODUCTION)
                .validate()
                .is_err()
        );
        assert!(
            acme(&["127.0.0.1"], &[], LETS_ENCRYPT_PRODUCTION)
                .validate()
                .is_err()
        );
        assert!(
            acme(&["localhost"], &[], LETS_ENCRYPT_PRODUCTION)
                .validate()
                .is_err()
        );
        assert!(
            acme(
                &["a.example.com"],
                &["mailto:x@y.z"],
                LETS_ENCRYPT_PRODUCTION
            )
            .validate()
            .is_err()
        );
        assert!(
            acme(&["a.example.com"], &[], "http://acme.example/dir")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn missing_or_empty_pem_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("relay-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let e = load_certificates(&empty).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = load_private_key(&empty).unwrap_err().to_string();
        assert!(e.contains("no PRIVATE KEY"), "{e}");
        let e = load_certificates(&dir.join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
