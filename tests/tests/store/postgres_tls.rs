//! TLS to PostgreSQL: `verify-full` with the CA of the server's certificate connects
//! encrypted, and without it (the web PKI roots, another CA) is refused; `require` encrypts
//! without checking; a server without TLS is refused when TLS is required.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use relay::store::{Storage, Store, StoreError};

use e2e::postgres::Postgres;

/// A CA made for the test: its certificate (PEM), and a server chain and key for
/// `127.0.0.1` and `localhost` signed by it.
fn ca_and_server_cert() -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "mcp-tunnel PostgreSQL test CA");
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params");
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf certificate");
    (issuer.pem(), cert.pem(), key.serialize_pem())
}

async fn connect(url: &str) -> Result<Store, StoreError> {
    Store::connect(&Storage::Postgres(url.to_owned()), None).await
}

/// How many connections of the relay (its `application_name`) are encrypted, and how many
/// there are.
fn relay_connections(pg: &Postgres, url: &str) -> (usize, usize) {
    let rows = pg
        .psql(
            url,
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'mcp-relay'",
        )
        .expect("psql");
    let (tls, all) = rows.trim().split_once('|').expect("two columns");
    (tls.parse().expect("count"), all.parse().expect("count"))
}

#[tokio::test]
async fn tls_to_postgres_as_sslmode_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, chain, key) = ca_and_server_cert();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("write CA");
    let (other_ca, _, _) = ca_and_server_cert();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).expect("write CA");
    let pg = Postgres::start_tls(&chain, &key).expect("a PostgreSQL server with TLS");
    let url = pg.new_database();
    let with = |query: &str| format!("{url}?{query}");

    let verified = connect(&with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    )))
    .await
    .expect("verify-full with the server's CA");
    let (tls, all) = relay_connections(&pg, &url);
    assert!(all >= 1 && tls == all, "{tls} of {all} encrypted");
    drop(verified);

    for (query, what) in [
        ("sslmode=verify-full".to_owned(), "the web PKI roots"),
        (
            format!("sslmode=verify-ca&sslrootcert={}", other_ca_file.display()),
            "another CA",
        ),
    ] {
        let err = connect(&with(&query)).await.err().expect(what);
        assert!(matches!(err, StoreError::Pool(_)), "{what}: {err}");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{what}: {err}"
        );
    }
    let err = connect(&with("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"))
        .await
        .err()
        .expect("a missing CA file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

    // `require` encrypts without checking the certificate (libpq's meaning).
    let _unchecked = connect(&with("sslmode=require"))
        .await
        .expect("require encrypts");
    let (tls, all) = relay_connections(&pg, &url);
    assert!(all >= 1 && tls == all, "{tls} of {all} encrypted");

    // A server without TLS: refused when TLS is required, plain when only preferred.
    let plain = Postgres::shared().new_database();
    let err = connect(&format!("{plain}?sslmode=require"))
        .await
        .err()
        .expect("the server has no TLS");
    assert!(matches!(err, StoreError::Pool(_)), "{err}");
    connect(&plain).await.expect("prefer falls back to plain");
}
