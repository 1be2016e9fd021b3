//! TLS to PostgreSQL, as a database URL asks for it with libpq's parameters:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given |
//! | `verify-ca`, `verify-full` | always | checked, with its host name, against `sslrootcert` (a PEM file) or the web PKI roots |
//!
//! tokio-postgres knows only the first three modes and no `sslrootcert`: the URL handed to
//! it has `verify-*` as `require` and no `sslrootcert`.

use std::path::PathBuf;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Whether the chain and host name are verified.
    pub verify: bool,
    /// The CA certificates to verify against (the web PKI roots when `None`).
    pub root_cert: Option<PathBuf>,
    /// Whether the URL asked for TLS (`require` or `verify-*`), not just allowed it.
    pub required: bool,
}

/// Splits the TLS parameters out of a database URL: the URL for tokio-postgres, and the
/// policy. A URL that is not one (libpq's `key=value` form) is passed on unchanged.
pub fn split(url: &str) -> Result<(String, TlsPolicy), StoreError> {
    let mut policy = TlsPolicy {
        verify: false,
        root_cert: None,
        required: false,
    };
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok((url.to_owned(), policy));
    };
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("sslrootcert", path) => policy.root_cert = Some(PathBuf::from(path)),
            ("sslmode", "verify-ca" | "verify-full") => {
                policy.verify = true;
                policy.required = true;
                kept.push(("sslmode".into(), "require".into()));
            }
            ("sslmode", "require") => {
                policy.required = true;
                kept.push(("sslmode".into(), "require".into()));
            }
            (k, v) => kept.push((k.to_owned(), v.to_owned())),
        }
    }
    // libpq: `require` with a root certificate verifies like `verify-ca`.
    if policy.root_cert.is_some() {
        policy.verify = true;
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.into(), policy))
}

/// The TLS connector for a policy.
pub fn connector(policy: &TlsPolicy) -> Result<MakeRustlsConnect, StoreError> {
    let config = if policy.verify {
        crate::net::tls::client_config(policy.root_cert.as_deref())
    } else {
        crate::net::tls::encrypt_only_client_config()
    }
    .map_err(|e| StoreError::Refused(format!("TLS to PostgreSQL: {e}")))?;
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(verify: bool, root: Option<&str>, required: bool) -> TlsPolicy {
        TlsPolicy {
            verify,
            root_cert: root.map(PathBuf::from),
            required,
        }
    }

    #[test]
    fn the_modes_of_libpq() {
        assert_eq!(
            split("postgres://relay@db/relay").unwrap(),
            (
                "postgres://relay@db/relay".into(),
                policy(false, None, false)
            )
        );
        assert_eq!(
            split("postgres://relay@db/relay?sslmode=require").unwrap(),
            (
                "postgres://relay@db/relay?sslmode=require".into(),
                policy(false, None, true)
            )
        );
        assert_eq!(
            split("postgres://relay@db/relay?sslmode=verify-full&connect_timeout=5").unwrap(),
            (
                "postgres://relay@db/relay?sslmode=require&connect_timeout=5".into(),
                policy(true, None, true)
            )
        );
        assert_eq!(
            split("postgres://relay@db/relay?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-ca")
                .unwrap(),
            (
                "postgres://relay@db/relay?sslmode=require".into(),
                policy(true, Some("/etc/ca.pem"), true)
            )
        );
        assert_eq!(
            split("postgres://relay@db/relay?sslmode=require&sslrootcert=ca.pem").unwrap(),
            (
                "postgres://relay@db/relay?sslmode=require".into(),
                policy(true, Some("ca.pem"), true)
            ),
            "require with a root certificate verifies"
        );
        assert_eq!(
            split("host=db user=relay").unwrap(),
            ("host=db user=relay".into(), policy(false, None, false)),
            "the key=value form goes to tokio-postgres as it is"
        );
    }
}
