//! The deployment files in `deploy/`, checked with the real programs where possible:
//!
//! - `relay.example.toml`: a relay starts from it (listen address, data directory and
//!   public URL overridden by flags) and answers `/healthz`; flags beat environment
//!   variables, which beat the file; errors name the file, the line and the key. (That
//!   the example parses and documents every `relay serve` option, as clap defines them, is
//!   checked by the relay's unit tests.)
//! - `nginx.conf`: `nginx -t`, then a real nginx from it (with TLS certificates made
//!   here) between a bridge, the relay and clients: the bridge's WebSocket, a `POST`
//!   answer streamed as SSE while the call runs, the legacy SSE stream; the relay sees
//!   the client's address from `X-Forwarded-For`, which the proxy sets (a forged one is
//!   not passed on); `/metrics`, served to local requests, is refused through the proxy
//!   even with `Host: localhost`.
//! - `Caddyfile`: `caddy validate`, then a real Caddy from it, with the same checks.
//! - `relay.service`: read as INI for the sandbox it promises, then `systemd-analyze
//!   verify` and `systemd-analyze security` (when systemd-analyze exists).
//! - `compose.yaml`: read as YAML (Debian's python3-yaml), and what it refers to: the
//!   Dockerfile, the configuration file, the data volume, the ports.
//! - `Dockerfile`: a lint (stages, the path of the binary, a non-root user, ports, volume,
//!   health check). No image is built: that needs a container engine.
//! - The backup procedure of deploy/GUIDE.md: `sqlite3 relay.db ".backup …"` while the
//!   relay runs gives a database another relay serves the same tokens from.
//!
//! nginx, Caddy, sqlite3 and python3-yaml come from Debian (`tests/deps/system.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Bridge, BridgeOpts, Proc, Relay, bin, install_crypto_provider, repo_root, unused_port};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// A file of `deploy/`.
fn deploy(name: &str) -> PathBuf {
    repo_root().join("deploy").join(name)
}

/// The text of a file of `deploy/`.
fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p.to_str().expect("utf-8 path").to_owned()
}

fn wait_port(port: u16, what: &str, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of a Debian tool, or a panic saying how to install it.
fn tool(path: &str, package: &str) -> String {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run tests/deps/system.sh (apt-get install {package})"
    );
    path.to_owned()
}

/// Runs a command to completion: (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `relay serve` with the example configuration, on `listen`, with a fresh data
/// directory in `dir` and `flags` after the file.
fn relay_from_example(listen: &str, dir: &Path, flags: &[&str]) -> Relay {
    let example = deploy("relay.example.toml");
    let data = dir.join("data");
    let mut args = vec![
        "--config",
        example.to_str().expect("utf-8 path"),
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ];
    args.extend(flags);
    Relay::start_on(listen, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_with_the_example_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = unused_port();
    let relay = relay_from_example(&format!("127.0.0.1:{port}"), dir.path(), &[]);
    // The public URL comes from the file.
    assert_eq!(relay.base, "https://relay.example.com");
    let health = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .expect("/healthz");
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("JSON health");
    assert_eq!(body["status"], "ok", "{body}");
    assert!(
        dir.path().join("data/relay.db").exists(),
        "the data directory is used"
    );
    let log = relay.proc.log_text();
    assert!(
        log.contains("overrides the file"),
        "the relay says which settings of the file flags replace: {log}"
    );
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "relay.toml",
        "listen = \"127.0.0.1:1\"\npublic_url = \"https://file.example\"\ndata_dir = \"state\"\n\
         max_body = 1000\n",
    );
    let start = |env: Option<&str>, flags: &[&str]| {
        let port = unused_port();
        let mut cmd = Command::new(bin("relay"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(flags)
            .env(
                "RELAY_BRIDGE_TOKENS",
                "a-bridge-token-of-32-characters-at-least",
            )
            .env("RUST_LOG", "info")
            .env_remove("RELAY_PUBLIC_URL")
            .env_remove("RELAY_DATA_DIR")
            .env_remove("RELAY_LISTEN");
        if let Some(url) = env {
            cmd.env("RELAY_PUBLIC_URL", url);
        }
        let proc = Proc::start(cmd, "relay");
        assert!(
            proc.wait_log("relay listening", Duration::from_secs(30)),
            "relay did not start: {}",
            proc.log_text()
        );
        proc.log_text()
    };
    let log = start(None, &[]);
    assert!(log.contains("https://file.example"), "file: {log}");
    assert!(
        dir.path().join("state/relay.db").exists(),
        "data_dir relative to the file"
    );
    let log = start(Some("https://env.example"), &[]);
    assert!(
        log.contains("https://env.example"),
        "environment over file: {log}"
    );
    let log = start(
        Some("https://env.example"),
        &["--public-url", "https://flag.example"],
    );
    assert!(
        log.contains("https://flag.example"),
        "flag over environment: {log}"
    );
}

#[test]
fn configuration_errors_name_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fails = |name: &str, text: Option<&str>| {
        let file = match text {
            Some(text) => write(dir.path(), name, text),
            None => dir
                .path()
                .join(name)
                .to_str()
                .expect("utf-8 path")
                .to_owned(),
        };
        let out = Command::new(bin("relay"))
            .args(["serve", "--config", &file])
            .env(
                "RELAY_BRIDGE_TOKENS",
                "a-bridge-token-of-32-characters-at-least",
            )
            .output()
            .expect("relay");
        assert!(!out.status.success(), "{name} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fails(
        "typo.toml",
        Some("public_url = \"https://x.example\"\nlistn = \"0.0.0.0:1\"\n"),
    );
    assert!(
        e.contains("typo.toml:2: unknown key \"listn\" (did you mean \"listen\"?)"),
        "{e}"
    );
    let e = fails("kebab.toml", Some("[oauth]\naccess-token-ttl-secs = 60\n"));
    assert!(
        e.contains(
            "kebab.toml:2: unknown key \"oauth.access-token-ttl-secs\" (did you mean \
             \"oauth.access_token_ttl_secs\"?)"
        ),
        "{e}"
    );
    let e = fails(
        "type.toml",
        Some("\n[acme]\ndomain = \"relay.example.com\"\n"),
    );
    assert!(
        e.contains("type.toml:3: acme.domain: invalid type: string \"relay.example.com\""),
        "{e}"
    );
    let e = fails("missing.toml", None);
    assert!(e.contains("missing.toml: No such file"), "{e}");
}

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
            .push(DnType::CommonName, "mcp-tunnel deploy test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// (CA file, certificate chain file, key file) in `dir`, for the proxy's names.
    fn files(&self, dir: &Path) -> (String, String, String) {
        let names = vec!["relay.example.com".to_owned(), "127.0.0.1".to_owned()];
        let params = CertificateParams::new(names).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (
            write(dir, "ca.pem", &self.issuer.pem()),
            write(dir, "cert.pem", &cert.pem()),
            write(dir, "key.pem", &key.serialize_pem()),
        )
    }

    /// An HTTPS client trusting this CA, sending `relay.example.com` to loopback.
    fn client(&self, port: u16) -> reqwest::Client {
        self.client_from(port, None)
    }

    /// Like [`TestCa::client`], with connections from the loopback address `from`.
    fn client_from(&self, port: u16, from: Option<std::net::IpAddr>) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.issuer.pem().as_bytes()) {
            roots.add(cert.expect("PEM certificate")).expect("root");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .local_address(from)
            .no_proxy()
            .resolve(
                "relay.example.com",
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            )
            .build()
            .expect("https client")
    }
}

/// Replaces each `from` (which must be in `text`: the test follows the file) by `to`.
fn adapt(name: &str, text: &str, edits: &[(&str, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in edits {
        assert!(out.contains(from), "deploy/{name} no longer has {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// A bridge serving the fixture through the proxy on `port`, with a bearer token.
fn bridge_through(port: u16, relay: &Relay, ca_file: &str, name: &str) -> Bridge {
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((format!("https://127.0.0.1:{port}"), relay.token.clone())),
        name: Some(name.into()),
        args: vec![
            "--auth".into(),
            "bearer".into(),
            "--ca-file".into(),
            ca_file.into(),
        ],
        ..Default::default()
    });
    assert_eq!(
        bridge.mcp_url,
        format!("https://relay.example.com:{port}/{name}/mcp")
    );
    bridge
}

/// Through a proxy: a session, a call whose answer is an SSE stream that starts (relay
/// keep-alive: 1 s) long before the answer, and the legacy SSE stream's first event
/// while the stream stays open.
async fn streams_pass(http: &reqwest::Client, bridge: &Bridge, what: &str) {
    let bearer = bridge.bearer.clone().expect("bearer token");
    let post = |msg: Value, session: Option<String>| {
        let mut req = http
            .post(&bridge.mcp_url)
            .bearer_auth(&bearer)
            .header("Accept", "application/json, text/event-stream")
            .json(&msg);
        if let Some(s) = session {
            req = req
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", "2025-06-18");
        }
        req.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "deploy-test", "version": "1"}}}),
        None,
    )
    .await
    .expect("initialize through the proxy");
    assert_eq!(init.status(), 200, "{what}: initialize");
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("session id");
    let body = init.text().await.expect("initialize answer");
    assert!(body.contains("mcp-fixture"), "{what}: {body}");
    let note = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(session.clone()),
    )
    .await
    .expect("initialized");
    assert_eq!(note.status(), 202, "{what}: initialized");

    // A 4 s call: after 1 s of silence the relay turns the answer into an SSE stream
    // with keep-alive comments, which must reach the client while the call runs.
    let started = Instant::now();
    let mut call = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "slow", "arguments": {"ms": 4000}}}),
        Some(session),
    )
    .await
    .expect("tools/call through the proxy");
    assert_eq!(call.status(), 200, "{what}: tools/call");
    let content_type = call
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{what}: {content_type}"
    );
    let mut first_chunk = None;
    let mut body = String::new();
    while let Some(chunk) = call.chunk().await.expect("SSE chunk") {
        first_chunk.get_or_insert(started.elapsed());
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let total = started.elapsed();
    let first_chunk = first_chunk.expect("some SSE data");
    assert!(
        body.contains("\"id\":2") && body.contains("done"),
        "{what}: {body}"
    );
    assert!(
        total >= Duration::from_millis(3900),
        "{what}: the call took {total:?}"
    );
    assert!(
        first_chunk + Duration::from_millis(1500) < total,
        "{what}: the stream's first bytes came at {first_chunk:?}, the answer at {total:?}: \
         the proxy held the stream back"
    );

    // The legacy transport: the `endpoint` event arrives at once on an open stream.
    let sse_url = bridge.mcp_url.replace("/mcp", "/sse");
    let started = Instant::now();
    let mut sse = http
        .get(&sse_url)
        .bearer_auth(&bearer)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("GET /sse through the proxy");
    assert_eq!(sse.status(), 200, "{what}: /sse");
    let mut seen = String::new();
    while !seen.contains("event: endpoint") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
            .await
            .unwrap_or_else(|_| panic!("{what}: no endpoint event within 10 s: {seen:?}"))
            .expect("SSE chunk")
            .unwrap_or_else(|| panic!("{what}: the SSE stream ended: {seen:?}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what}: endpoint event after {:?}",
        started.elapsed()
    );
    assert!(
        seen.contains(&format!(
            "https://relay.example.com:{}",
            sse.url().port().unwrap_or(443)
        )),
        "{what}: {seen}"
    );
    // Still open: a keep-alive comment follows.
    let more = tokio::time::timeout(Duration::from_secs(5), sse.chunk())
        .await
        .unwrap_or_else(|_| panic!("{what}: the SSE stream went silent"))
        .expect("SSE chunk");
    assert!(more.is_some(), "{what}: the SSE stream ended");
}

/// Through the proxy on `port`, from 127.0.0.3, a failed sign-in on the status page
/// with a forged `X-Forwarded-For`: the relay (trusting the proxy, as the example
/// configuration does) must see 127.0.0.3, which the proxy sets, never the forged address.
async fn the_proxy_sets_the_client_address(ca: &TestCa, port: u16, relay: &Relay, what: &str) {
    let http = ca.client_from(port, Some([127, 0, 0, 3].into()));
    let base = format!("https://relay.example.com:{port}");
    let forged = "198.51.100.66";
    let login = http
        .get(format!("{base}/status"))
        .header("x-forwarded-for", forged)
        .send()
        .await
        .expect("GET /status through the proxy");
    assert_eq!(login.status(), 200, "{what}: GET /status");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("login cookie")
        .to_owned();
    let page = login.text().await.expect("login page");
    let csrf = page
        .split("name=csrf value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("csrf field")
        .to_owned();
    let refused = http
        .post(format!("{base}/status"))
        .header("x-forwarded-for", forged)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(format!("op=login&csrf={csrf}&secret=wrong"))
        .send()
        .await
        .expect("POST /status through the proxy");
    assert_eq!(refused.status(), 403, "{what}: a wrong secret");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = relay.proc.log_text();
        if let Some(l) = log.lines().find(|l| l.contains("failed sign-in")) {
            break l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no failed sign-in logged: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        line.contains("127.0.0.3") && !line.contains(forged),
        "{what}: the relay took the client's address from a header the client wrote: {line}"
    );
}

/// Through the proxy on `port`, `/metrics` of a relay serving them to local requests is
/// refused, even with `Host: localhost` (the proxy connects from loopback).
async fn metrics_stay_local(ca: &TestCa, port: u16, what: &str) {
    let http = ca.client(port);
    for host in [None, Some("localhost"), Some("127.0.0.1")] {
        let mut rb = http.get(format!("https://relay.example.com:{port}/metrics"));
        if let Some(h) = host {
            rb = rb.header("host", h);
        }
        let r = rb.send().await.expect("GET /metrics through the proxy");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        // The relay refuses (403), or the proxy answers itself (Caddy: 200 and nothing
        // for a host it does not serve); never the metrics.
        assert!(
            (status == 403 || body.trim().is_empty()) && !body.contains("mcp_relay_"),
            "{what}: /metrics with Host {host:?} through the proxy: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_from_the_example_proxies_websockets_and_streams() {
    install_crypto_provider();
    let nginx = tool("/usr/sbin/nginx", "nginx");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path").to_owned();
    let ca = TestCa::new();
    let (ca_file, cert, key) = ca.files(dir.path());
    let (relay_port, port, http_port) = (unused_port(), unused_port(), unused_port());

    let site = adapt(
        "nginx.conf",
        &read("nginx.conf"),
        &[
            ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
            ("listen [::]:443 ssl;", String::new()),
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            ("listen [::]:80;", String::new()),
            (
                "server 127.0.0.1:8080;",
                format!("server 127.0.0.1:{relay_port};"),
            ),
            (
                "/etc/letsencrypt/live/relay.example.com/fullchain.pem",
                cert,
            ),
            ("/etc/letsencrypt/live/relay.example.com/privkey.pem", key),
        ],
    );
    for needed in [
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_read_timeout 1h;",
    ] {
        assert!(site.contains(needed), "deploy/nginx.conf lacks {needed}");
    }
    assert!(
        !site
            .lines()
            .any(|l| l.trim_start().starts_with("proxy_ignore_headers")),
        "X-Accel-Buffering is honoured"
    );
    let site_file = write(dir.path(), "mcp-relay.conf", &site);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let main = format!(
        "{user}worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {site_file};\n}}\n",
        user = if root { "user root;\n" } else { "" },
    );
    let main_file = write(dir.path(), "nginx.conf", &main);
    let nginx_cmd = |test: bool| {
        let mut c = Command::new(&nginx);
        c.args(["-p", &d, "-e", &format!("{d}/error.log"), "-c", &main_file]);
        if test {
            c.arg("-t");
        }
        c
    };
    let (ok, out) = run(&mut nginx_cmd(true));
    assert!(ok && out.contains("test is successful"), "nginx -t:\n{out}");

    let relay = relay_from_example(
        &format!("127.0.0.1:{relay_port}"),
        dir.path(),
        &[
            "--public-url",
            &format!("https://relay.example.com:{port}"),
            "--keepalive-secs",
            "1",
            "--metrics",
        ],
    );
    let proxy = Proc::start(nginx_cmd(false), "nginx");
    wait_port(port, "nginx", &proxy);

    // The bridge's WebSocket goes through nginx.
    let bridge = bridge_through(port, &relay, &ca_file, "via-nginx");
    streams_pass(&ca.client(port), &bridge, "nginx").await;
    the_proxy_sets_the_client_address(&ca, port, &relay, "nginx").await;
    metrics_stay_local(&ca, port, "nginx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_from_the_example_proxies_websockets_and_streams() {
    install_crypto_provider();
    let caddy = tool("/usr/bin/caddy", "caddy");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path").to_owned();
    let caddy_env = |c: &mut Command| {
        c.env("HOME", &d)
            .env("XDG_DATA_HOME", format!("{d}/caddy-data"))
            .env("XDG_CONFIG_HOME", format!("{d}/caddy-config"));
    };

    // The file as shipped is valid.
    let mut validate = Command::new(&caddy);
    validate.args(["validate", "--adapter", "caddyfile", "--config"]);
    validate.arg(deploy("Caddyfile"));
    caddy_env(&mut validate);
    let (ok, out) = run(&mut validate);
    assert!(
        ok && out.contains("Valid configuration"),
        "caddy validate:\n{out}"
    );

    // Then served on test ports with certificates made here.
    let ca = TestCa::new();
    let (ca_file, cert, key) = ca.files(dir.path());
    let (relay_port, port, http_port) = (unused_port(), unused_port(), unused_port());
    let site = adapt(
        "Caddyfile",
        &read("Caddyfile"),
        &[
            (
                "relay.example.com {",
                format!(
                    "https://relay.example.com:{port}, https://127.0.0.1:{port} {{\n\ttls {cert} {key}"
                ),
            ),
            ("127.0.0.1:8080", format!("127.0.0.1:{relay_port}")),
        ],
    );
    assert!(
        site.contains("flush_interval -1"),
        "deploy/Caddyfile streams"
    );
    // No local CA in the machine's trust stores (slow, and not the test's business).
    let config = format!(
        "{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n\thttps_port {port}\n\
         \tstorage file_system {d}/storage\n}}\n\n{site}"
    );
    let config_file = write(dir.path(), "Caddyfile", &config);
    let relay = relay_from_example(
        &format!("127.0.0.1:{relay_port}"),
        dir.path(),
        &[
            "--public-url",
            &format!("https://relay.example.com:{port}"),
            "--keepalive-secs",
            "1",
            "--metrics",
        ],
    );
    let mut run_caddy = Command::new(&caddy);
    run_caddy.args(["run", "--adapter", "caddyfile", "--config", &config_file]);
    caddy_env(&mut run_caddy);
    let proxy = Proc::start(run_caddy, "caddy");
    wait_port(port, "caddy", &proxy);

    let bridge = bridge_through(port, &relay, &ca_file, "via-caddy");
    streams_pass(&ca.client(port), &bridge, "caddy").await;
    the_proxy_sets_the_client_address(&ca, port, &relay, "caddy").await;
    metrics_stay_local(&ca, port, "caddy").await;
}

/// A unit file's settings: section → key → values (in order).
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line}"));
        assert!(!section.is_empty(), "{line} outside a section");
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

#[test]
fn the_systemd_unit_is_sandboxed_and_verifies() {
    let text = read("relay.service");
    let unit = ini(&text);
    let service = &unit["Service"];
    let one = |k: &str| -> String {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("relay.service has no {k}="));
        v.last().expect("value").clone()
    };
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("SystemCallArchitectures", "native"),
        ("StateDirectory", "mcp-relay"),
    ] {
        assert_eq!(one(key), value, "relay.service {key}=");
    }
    assert!(
        service["SystemCallFilter"]
            .iter()
            .any(|v| v == "@system-service"),
        "SystemCallFilter=@system-service"
    );
    let families = one("RestrictAddressFamilies");
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
    let user = one("User");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(unit["Install"]["WantedBy"].contains(&"multi-user.target".to_owned()));

    // It runs the relay with the configuration file, whose data_dir is the state
    // directory.
    let exec = one("ExecStart");
    let config = exec
        .strip_prefix("/usr/local/bin/relay serve --config ")
        .unwrap_or_else(|| panic!("ExecStart={exec}"));
    assert_eq!(config, "/etc/mcp-relay/relay.toml");
    assert!(
        read("relay.example.toml").contains("data_dir = \"/var/lib/mcp-relay\""),
        "the example's data_dir is the unit's StateDirectory"
    );

    let analyze = "/usr/bin/systemd-analyze";
    if !Path::new(analyze).exists() {
        eprintln!("systemd-analyze is not installed: only the INI checks ran");
        return;
    }
    // `verify` checks the binary exists: point ExecStart at the one built here.
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = bin("relay");
    let local = text.replace("/usr/local/bin/relay", relay.to_str().expect("utf-8 path"));
    let unit_file = write(dir.path(), "relay.service", &local);
    let (ok, out) = run(Command::new(analyze).args(["verify", &unit_file]));
    assert!(ok, "systemd-analyze verify:\n{out}");
    assert!(
        !out.contains("relay.service"),
        "systemd-analyze verify complains about the unit:\n{out}"
    );
    let (ok, out) = run(Command::new(analyze).args([
        "security",
        "--offline=yes",
        "--threshold=20",
        &unit_file,
    ]));
    if out.contains("unrecognized option") {
        eprintln!("this systemd-analyze has no offline security check");
        return;
    }
    assert!(
        ok,
        "systemd-analyze security: exposure above 2.0 (or an error):\n{out}"
    );
}

/// A YAML file as JSON, read by Debian's python3-yaml.
fn yaml(path: &Path) -> Value {
    let python = tool("/usr/bin/python3", "python3-yaml");
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{} is not valid YAML (or python3-yaml is missing: run tests/deps/system.sh):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// `KEY=value` settings of the Dockerfile's `ENV` instructions (continued lines joined).
fn dockerfile_env(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, args)| args.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// The Dockerfile's instructions: (INSTRUCTION, arguments), continuations joined.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if t.starts_with('#') {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (i, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((i.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_the_relay_and_runs_it_unprivileged() {
    let ins = dockerfile();
    let all = |name: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    // Two stages: a named Rust builder, then the runtime, on the same Debian release.
    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "FROM: {froms:?}");
    let (builder_image, builder) = froms[0]
        .split_once(" AS ")
        .expect("the builder stage is named");
    assert!(builder_image.starts_with("rust:"), "{builder_image}");
    assert!(froms[1].starts_with("debian:"), "{}", froms[1]);
    assert!(
        builder_image.ends_with("-${DEBIAN_RELEASE}")
            && froms[1].starts_with("debian:${DEBIAN_RELEASE}-"),
        "both stages on one Debian release (glibc): {froms:?}"
    );
    // The builder's Rust is at least the workspace's rust-version.
    let args: BTreeMap<&str, &str> = all("ARG")
        .into_iter()
        .filter_map(|a| a.split_once('='))
        .collect();
    let rust = args["RUST_VERSION"];
    let workspace = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let needed = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let minor = |v: &str| -> u32 {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .expect("version")
    };
    assert!(minor(rust) >= minor(needed), "Rust {rust} < {needed}");

    // The build command, and the binary it makes is the one the image runs.
    let runs = all("RUN");
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("cargo build --release -p relay --locked"),
        "{build}"
    );
    let (_, installed) = build
        .split_once("target/release/relay ")
        .expect("the built binary is installed");
    let installed = installed.split_whitespace().next().expect("destination");
    let copy = all("COPY")
        .into_iter()
        .find(|c| c.starts_with("--from="))
        .expect("COPY --from the builder");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(
        parts,
        [
            &format!("--from={builder}"),
            installed,
            "/usr/local/bin/relay"
        ][..]
    );
    let entry = all("ENTRYPOINT");
    assert_eq!(entry, ["[\"/usr/local/bin/relay\"]"]);
    assert_eq!(all("CMD").last().copied(), Some("[\"serve\"]"));

    // Unprivileged, with the data volume, the ports and a health check.
    let user = all("USER").last().copied().expect("USER");
    let uid = user.split(':').next().expect("uid");
    assert!(uid != "root" && uid != "0", "USER {user}");
    let env = dockerfile_env(&ins);
    assert_eq!(env["RELAY_DATA_DIR"], "/data");
    assert!(all("VOLUME").iter().any(|v| v.contains("\"/data\"")));
    let runtime_setup = runs
        .iter()
        .find(|r| r.contains("useradd"))
        .expect("useradd");
    assert!(
        runtime_setup.contains(&format!("--uid {uid}")),
        "{runtime_setup}"
    );
    assert!(
        runtime_setup.contains("-o relay -g relay -m 0700 /data"),
        "{runtime_setup}"
    );
    let exposed: Vec<&str> = all("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&"443") && exposed.contains(&"8080"),
        "{exposed:?}"
    );
    let listen_port = env["RELAY_LISTEN"].rsplit(':').next().expect("port");
    assert!(exposed.contains(&listen_port));
    let health = all("HEALTHCHECK").last().copied().expect("HEALTHCHECK");
    assert!(
        health.contains("curl") && health.contains("$HEALTHCHECK_URL"),
        "{health}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("install") && r.contains("curl"))
    );
    assert_eq!(
        env["HEALTHCHECK_URL"],
        format!("http://127.0.0.1:{listen_port}/healthz")
    );

    // The build context (the repository root) leaves out build outputs.
    let ignore = read("Dockerfile.dockerignore");
    for path in ["target", ".git", ".test-deps"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            "{path} in the context"
        );
    }
}

#[test]
fn compose_builds_the_image_and_mounts_the_configuration_and_the_data() {
    let compose = yaml(&deploy("compose.yaml"));
    let relay = &compose["services"]["relay"];
    assert!(relay.is_object(), "services.relay: {compose}");

    // The build refers to this Dockerfile, from the repository root.
    let context = deploy("").join(relay["build"]["context"].as_str().expect("context"));
    let dockerfile = context.join(relay["build"]["dockerfile"].as_str().expect("dockerfile"));
    assert_eq!(
        dockerfile.canonicalize().expect("the Dockerfile exists"),
        deploy("Dockerfile").canonicalize().expect("Dockerfile")
    );
    assert_eq!(
        context.canonicalize().expect("context"),
        repo_root().canonicalize().expect("root")
    );

    let env = &relay["environment"];
    let config_path = env["RELAY_CONFIG"].as_str().expect("RELAY_CONFIG");
    let data_dir = env["RELAY_DATA_DIR"].as_str().expect("RELAY_DATA_DIR");
    let volumes = relay["volumes"].as_array().expect("volumes");
    let config_mount = volumes
        .iter()
        .find(|v| v["target"] == config_path)
        .unwrap_or_else(|| panic!("nothing mounted at {config_path}: {volumes:?}"));
    assert_eq!(config_mount["type"], "bind");
    assert_eq!(config_mount["read_only"], true);
    assert_eq!(config_mount["bind"]["create_host_path"], false);
    // The file mounted is a copy of the example, as deploy/GUIDE.md says.
    let source = config_mount["source"].as_str().expect("source");
    assert_eq!(source, "./relay.toml");
    assert!(read("GUIDE.md").contains("cp deploy/relay.example.toml deploy/relay.toml"));
    let data_mount = volumes
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.ends_with(&format!(":{data_dir}")))
        .unwrap_or_else(|| panic!("no volume at {data_dir}: {volumes:?}"));
    let volume = data_mount.split(':').next().expect("volume name");
    assert!(
        compose["volumes"].get(volume).is_some(),
        "volume {volume} declared"
    );

    // The port the relay listens on is published, and the health check asks it.
    let listen = env["RELAY_LISTEN"].as_str().expect("RELAY_LISTEN");
    let port = listen.rsplit(':').next().expect("port");
    let ports: Vec<&str> = relay["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{ports:?} publish {port}"
    );
    let health = env["HEALTHCHECK_URL"].as_str().expect("HEALTHCHECK_URL");
    assert!(
        health.ends_with(&format!("127.0.0.1:{port}/healthz")),
        "{health}"
    );
    assert_eq!(relay["restart"], "unless-stopped");
    assert!(
        relay["security_opt"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("no-new-privileges:true")))
    );
}

#[test]
fn the_guide_covers_every_deploy_file() {
    let guide = read("GUIDE.md");
    for entry in std::fs::read_dir(deploy("")).expect("deploy/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_str().expect("utf-8 name");
        if name == "GUIDE.md" {
            continue;
        }
        assert!(
            guide.contains(&format!("deploy/{name}")),
            "GUIDE.md never mentions deploy/{name}"
        );
    }
    for topic in [
        "sqlite3",
        ".backup",
        "relay token create",
        "ChatGPT",
        "Claude",
        "--config",
        "acme",
        "AAAA",
    ] {
        assert!(guide.contains(topic), "GUIDE.md does not cover {topic}");
    }
}

#[test]
fn an_online_sqlite_backup_restores_the_tokens() {
    let sqlite3 = tool("/usr/bin/sqlite3", "sqlite3");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let relay_cli = |args: &[&str], data: &Path| {
        let out = Command::new(bin("relay"))
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .output()
            .expect("relay");
        assert!(out.status.success(), "relay {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let token = relay_cli(&["token", "create", "laptop"], &data);

    // The relay runs (with the WAL open) while the backup is taken.
    let port = unused_port();
    let mut cmd = Command::new(bin("relay"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data);
    let relay = Proc::start(cmd, "relay");
    wait_port(port, "relay", &relay);
    let backup = dir.path().join("backup.db");
    let (ok, out) = run(Command::new(&sqlite3)
        .arg(data.join("relay.db"))
        .arg(format!(".backup '{}'", backup.display())));
    assert!(ok, "sqlite3 .backup: {out}");
    drop(relay);

    // Restored into a new data directory, it holds the token, which a relay accepts.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).expect("dir");
    std::fs::copy(&backup, restored.join("relay.db")).expect("copy");
    let list = relay_cli(&["token", "list"], &restored);
    assert!(list.starts_with("laptop\tactive"), "{list}");
    let port = unused_port();
    let mut cmd = Command::new(bin("relay"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&restored);
    let relay = Proc::start(cmd, "relay");
    wait_port(port, "relay", &relay);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((format!("http://127.0.0.1:{port}"), token)),
        name: Some("restored".into()),
        ..Default::default()
    });
    assert!(
        bridge.mcp_url.ends_with("/restored/mcp"),
        "{}",
        bridge.mcp_url
    );
}
