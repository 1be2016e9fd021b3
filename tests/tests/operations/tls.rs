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
use std::time::{Duration, Instant};

use e2e::http::send;
use e2e::mcp::{HANDSHAKE, McpClient, Session};
use e2e::{BridgeOpts, Proc, Relay, bin, install_crypto_provider, unused_port};
use serde_json::{Value, json};

use crate::test_ca::{TestCa, https_client};
use crate::{wait_port, write};

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
    let bridge = BridgeOpts::default()
        .via_url(&relay_url, &relay.token)
        .args(&["--ca-file", &ca_file])
        .start();
    assert!(
        bridge
            .mcp_url
            .starts_with(&format!("https://127.0.0.1:{port}/")),
        "{}",
        bridge.mcp_url
    );
    let bearer = bridge.bearer.clone().expect("bearer token");

    // An HTTPS client trusting the CA: initialize, initialized, tools/call.
    let http = https_client(&ca.pem(), &[], None);
    let health = http
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .expect("healthz over HTTPS");
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    let client = McpClient::with_http(http.clone(), &bridge.mcp_url, Some(&bearer));
    let (sid, init) = client.initialize(HANDSHAKE).await;
    assert_eq!(init["serverInfo"]["name"], "mcp-fixture", "{init}");
    let session = Session {
        client,
        id: sid,
        version: HANDSHAKE.into(),
    };
    let text = session
        .tool_text(json!(2), "echo", json!({"text": "over TLS"}))
        .await;
    assert_eq!(text, "over TLS");

    // A client that does not trust the CA is refused by certificate verification.
    let stranger = https_client(&TestCa::new().pem(), &[], None);
    let err = stranger
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .expect_err("an unknown issuer must be refused");
    assert!(err.is_connect(), "{err:?}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = e2e::http::client_with(Duration::from_secs(5));
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
    let mgmt = https_client(&ca.pem(), &[], None);
    let roots = mgmt.get(format!("https://localhost:{mgmt_port}/roots/0"));
    let root = send(roots, "pebble /roots/0").await.text();
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
    let client = https_client(&root, &[(domain, relay_addr)], None);
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
    let cached = "serving the cached certificate";
    relay
        .proc
        .expect_log(cached, Duration::from_secs(15), "the restarted relay");
    let client = https_client(&root, &[(domain, relay_addr)], None);
    let health = client
        .get(format!("https://{domain}:{relay_port}/healthz"))
        .send()
        .await
        .expect("healthz after restart");
    assert_eq!(health.status(), 200);
    assert!(!relay.proc.log_text().contains("new certificate obtained"));
    eprintln!("ACME test took {:?}", started.elapsed());
}
