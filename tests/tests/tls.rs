//! HTTPS on the relay, with real TLS end to end:
//!
//! - `relay serve --tls-cert/--tls-key` with a certificate from a CA made here: a bridge
//!   connects over `wss` trusting that CA (`--ca-file`) and serves the fixture, and an
//!   HTTPS client runs `initialize` and `tools/call` through it; a bridge without
//!   `--ca-file` is refused by certificate verification.
//! - `relay serve --acme-domain` against Debian's Pebble (a real ACME server) with real
//!   TLS-ALPN-01 validation on the relay's port (Pebble's resolver is
//!   `pebble-challtestsrv`, which answers 127.0.0.1 for every name), then a client trusting
//!   Pebble's root reads `/healthz`; a restart serves the cached certificate.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Bridge, BridgeOpts, Proc, Relay, bin, install_crypto_provider, unused_port};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// A certificate authority made for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
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

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses): (chain PEM, key PEM).
    fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mcp-tunnel test server");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
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

/// An HTTPS client trusting `roots_pem`, resolving each `(name, addr)` of `resolve`.
fn https_client(roots_pem: &str, resolve: &[(&str, SocketAddr)]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(roots_pem))
        .no_proxy()
        .timeout(Duration::from_secs(20));
    for (name, addr) in resolve {
        b = b.resolve(name, *addr);
    }
    b.build().expect("https client")
}

/// A loopback port free for both TCP and UDP (a DNS server listens on both).
fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        let port = udp.local_addr().expect("udp addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p.to_str().expect("utf-8 path").to_owned()
}

/// The JSON-RPC message with an `id` in an MCP answer (plain JSON or an SSE stream).
fn rpc_answer(body: &str) -> Value {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).expect("JSON answer");
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC response in {body:?}"))
}

/// POSTs one MCP message; (status, session id, body).
async fn mcp_post(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    session: Option<&str>,
    msg: Value,
) -> (u16, Option<String>, String) {
    let mut req = http
        .post(url)
        .bearer_auth(bearer)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&msg);
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s);
    }
    let resp = req.send().await.expect("MCP request over HTTPS");
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, sid, resp.text().await.expect("MCP answer body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_relay_with_certificate_files_serves_bridges_and_clients() {
    install_crypto_provider();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let (chain, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let cert_file = write(dir.path(), "cert.pem", &chain);
    let key_file = write(dir.path(), "key.pem", &key);

    let relay = Relay::start(&["--tls-cert", &cert_file, "--tls-key", &key_file]);
    assert!(
        relay.base.starts_with("https://127.0.0.1:"),
        "the default public URL of a TLS relay is https: {}",
        relay.base
    );
    let port = relay.base.rsplit(':').next().expect("port").to_owned();
    let relay_url = format!("https://localhost:{port}");

    // A bridge trusting the test CA connects over wss and serves the fixture.
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay_url.clone(), relay.token.clone())),
        args: vec!["--ca-file".into(), ca_file.clone()],
        ..Default::default()
    });
    assert!(
        bridge
            .mcp_url
            .starts_with(&format!("https://127.0.0.1:{port}/")),
        "{}",
        bridge.mcp_url
    );
    let bearer = bridge.bearer.clone().expect("bearer token");

    // An HTTPS client trusting the CA: initialize, initialized, tools/call.
    let http = https_client(&ca.pem(), &[]);
    let health = http
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .expect("healthz over HTTPS");
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    let (status, sid, body) = mcp_post(
        &http,
        &bridge.mcp_url,
        &bearer,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},
            "clientInfo":{"name":"tls-test","version":"1"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let init = rpc_answer(&body);
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcp-fixture",
        "{init}"
    );
    let sid = sid.expect("Mcp-Session-Id");
    let (status, _, body) = mcp_post(
        &http,
        &bridge.mcp_url,
        &bearer,
        Some(&sid),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = mcp_post(
        &http,
        &bridge.mcp_url,
        &bearer,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name":"echo","arguments":{"text":"over TLS"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let call = rpc_answer(&body);
    assert_eq!(call["id"], 2, "{call}");
    assert_eq!(call["result"]["content"][0]["text"], "over TLS", "{call}");

    // A client that does not trust the CA is refused by certificate verification.
    let stranger = https_client(&TestCa::new().pem(), &[]);
    let err = stranger
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .expect_err("an unknown issuer must be refused");
    assert!(err.is_connect(), "{err:?}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    assert!(
        plain
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
    );

    // A bridge without --ca-file checks the relay against the web PKI roots and fails.
    let mut cmd = Command::new(bin("bridge"));
    cmd.arg("run")
        .arg("--relay")
        .arg(&relay_url)
        .env("BRIDGE_TOKEN", &relay.token)
        .env("RUST_LOG", "info")
        .env_remove("BRIDGE_CLIENT_TOKEN")
        .arg("--")
        .arg(bin("mcp-fixture"));
    let mut untrusting = Proc::start(cmd, "bridge-no-ca");
    let refused = untrusting.wait_log("TLS with the relay failed", Duration::from_secs(15));
    let log = untrusting.log_text();
    assert!(refused, "no TLS error in the bridge's log:\n{log}");
    assert!(
        log.contains("invalid peer certificate"),
        "the error names the certificate: {log}"
    );
    // It keeps retrying (or has exited), but it never got a tunnel.
    let _ = untrusting.wait_exit(Duration::from_millis(500));
    assert!(!untrusting.log_text().contains("connected to the relay"));

    // The trusted bridge is still serving; the relay shuts down gracefully over TLS.
    relay.proc.terminate();
    let mut relay = relay;
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(15)), Some(0));
    drop(bridge);
    eprintln!("TLS files test took {:?}", started.elapsed());
}

/// Debian's Pebble binaries, or a panic saying how to get them.
fn pebble_bins() -> (&'static str, &'static str) {
    let (pebble, challtestsrv) = ("/usr/bin/pebble", "/usr/bin/pebble-challtestsrv");
    assert!(
        Path::new(pebble).exists() && Path::new(challtestsrv).exists(),
        "Pebble is missing: run tests/deps/system.sh (apt-get install pebble)"
    );
    (pebble, challtestsrv)
}

/// Waits until a TCP port accepts connections.
fn wait_port(port: u16, what: &str, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_from_pebble_with_tls_alpn_01() {
    install_crypto_provider();
    let started = Instant::now();
    let (pebble, challtestsrv) = pebble_bins();
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = "relay.example.test";

    // Fake DNS: every A query gets 127.0.0.1, and no AAAA answers (the relay listens on
    // IPv4 loopback only).
    let dns_port = free_tcp_udp_port();
    let dns_mgmt = unused_port();
    let mut cmd = Command::new(challtestsrv);
    cmd.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
        .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""]);
    let dns = Proc::start(cmd, "challtestsrv");
    wait_port(dns_mgmt, "pebble-challtestsrv", &dns);

    // Pebble with an HTTPS certificate from a test CA; it validates TLS-ALPN-01 on the
    // relay's port.
    let ca = TestCa::new();
    let ca_file = write(dir.path(), "pebble-ca.pem", &ca.pem());
    let (chain, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let acme_port = unused_port();
    let mgmt_port = unused_port();
    let relay_port = unused_port();
    let config = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
        "certificate": write(dir.path(), "pebble-cert.pem", &chain),
        "privateKey": write(dir.path(), "pebble-key.pem", &key),
        "httpPort": unused_port(),
        "tlsPort": relay_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    let config_file = write(dir.path(), "pebble.json", &config.to_string());
    let mut cmd = Command::new(pebble);
    cmd.args(["-config", &config_file])
        .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env_remove("PEBBLE_VA_ALWAYS_VALID");
    let pebble = Proc::start(cmd, "pebble");
    wait_port(acme_port, "pebble", &pebble);
    wait_port(mgmt_port, "pebble's management interface", &pebble);

    // The relay on the port Pebble validates.
    let data_dir = dir.path().join("relay-data");
    let data = data_dir.to_str().expect("utf-8 path").to_owned();
    let directory = format!("https://localhost:{acme_port}/dir");
    let args = [
        "--acme-domain",
        domain,
        "--acme-email",
        "ops@example.com",
        "--acme-directory",
        &directory,
        "--acme-ca-file",
        &ca_file,
        "--data-dir",
        &data,
    ];
    let listen = format!("127.0.0.1:{relay_port}");
    let relay = Relay::start_on(&listen, &args);
    assert_eq!(relay.base, format!("https://{domain}:{relay_port}"));

    // Pebble's issuing root (made at its start), from its management interface.
    let mgmt = https_client(&ca.pem(), &[]);
    let root = mgmt
        .get(format!("https://localhost:{mgmt_port}/roots/0"))
        .send()
        .await
        .expect("pebble /roots/0")
        .text()
        .await
        .expect("root PEM");
    assert!(root.contains("BEGIN CERTIFICATE"), "{root}");

    let obtained = relay.proc.wait_log(
        "new certificate obtained and deployed",
        Duration::from_secs(45),
    );
    assert!(
        obtained,
        "no certificate from Pebble.\nrelay:\n{}\npebble:\n{}",
        relay.proc.log_text(),
        pebble.log_text()
    );
    assert!(
        relay
            .proc
            .log_text()
            .contains("answered a TLS-ALPN-01 validation"),
        "Pebble validated on the relay's port"
    );

    let relay_addr: SocketAddr = listen.parse().expect("addr");
    let client = https_client(&root, &[(domain, relay_addr)]);
    let health = client
        .get(format!("https://{domain}:{relay_port}/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("healthz with Pebble's certificate: {e:?}"));
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("healthz JSON");
    assert_eq!(body["status"], "ok", "{body}");

    // The account and certificate are cached in <data-dir>/acme; a restarted relay
    // serves the cached certificate without a new order.
    let cached: Vec<String> = std::fs::read_dir(data_dir.join("acme"))
        .expect("acme cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.iter().any(|f| f.starts_with("cached_cert_"))
            && cached.iter().any(|f| f.starts_with("cached_account_")),
        "{cached:?}"
    );
    relay.proc.terminate();
    let mut relay = relay;
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(15)), Some(0));
    drop(relay);
    let relay = Relay::start_on(&listen, &args);
    assert!(
        relay
            .proc
            .wait_log("serving the cached certificate", Duration::from_secs(15)),
        "{}",
        relay.proc.log_text()
    );
    let client = https_client(&root, &[(domain, relay_addr)]);
    let health = client
        .get(format!("https://{domain}:{relay_port}/healthz"))
        .send()
        .await
        .expect("healthz after restart");
    assert_eq!(health.status(), 200);
    assert!(!relay.proc.log_text().contains("new certificate obtained"));
    eprintln!("ACME test took {:?}", started.elapsed());
}
