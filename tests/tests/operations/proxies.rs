//! `nginx.conf` and `Caddyfile`: checked by their programs (`nginx -t`, `caddy validate`),
//! then a real nginx and a real Caddy from them (with TLS certificates made here) between
//! a bridge, the relay and clients: the bridge's WebSocket, a `POST` answer streamed as SSE
//! while the call runs, the HTTP+SSE stream; the relay sees the client's address from
//! `X-Forwarded-For`, which the proxy sets (a forged one is not passed on); `/metrics`,
//! served to local requests, is refused through the proxy even with `Host: localhost`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::mcp::{HANDSHAKE_2025_06, McpClient, session_headers, tool_call};
use e2e::status_page::{post_form, sign_in_form};
use e2e::text::assert_contains_all;
use e2e::{Bridge, BridgeOpts, Proc, Relay, install_crypto_provider, unused_port};
use serde_json::json;

use crate::test_ca::TestCa;
use crate::{deploy, read, relay_from_example, run, tool, wait_port, write};

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
    let bridge = BridgeOpts::default()
        .via_url(&format!("https://127.0.0.1:{port}"), &relay.token)
        .name(name)
        .args(&["--auth", "bearer", "--ca-file", ca_file])
        .start();
    assert_eq!(
        bridge.mcp_url,
        format!("https://relay.example.com:{port}/{name}/mcp")
    );
    bridge
}

/// Through a proxy: a session, a call whose answer is an SSE stream that starts (relay
/// keep-alive: 1 s) long before the answer, and the HTTP+SSE stream's first event
/// while the stream stays open.
async fn streams_pass(http: &reqwest::Client, bridge: &Bridge, what: &str) {
    let bearer = bridge.bearer.clone().expect("bearer token");
    let client = McpClient::with_http(http.clone(), &bridge.mcp_url, Some(&bearer));
    let (session, init) = client.initialize(HANDSHAKE_2025_06).await;
    assert_eq!(init["serverInfo"]["name"], "mcp-fixture", "{what}: {init}");

    // A 4 s call: after 1 s of silence the relay turns the answer into an SSE stream
    // with keep-alive comments, which must reach the client while the call runs.
    let started = Instant::now();
    let mut call = client
        .open(
            &tool_call(json!(2), "slow", json!({"ms": 4000})),
            &session_headers(&session, HANDSHAKE_2025_06),
            what,
        )
        .await;
    assert_eq!(call.status, 200, "{what}: tools/call");
    assert!(call.is_sse(), "{what}: {}", call.content_type);
    let mut first_chunk = None;
    let mut body = String::new();
    while let Some(chunk) = call.chunk().await {
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

    // The HTTP+SSE transport: the `endpoint` event arrives at once on an open stream.
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

/// What a proxy under test is given: a test CA, the files it made in `dir` (its
/// certificate, the proxy's certificate and key), and ports for the relay and the proxy.
struct ProxySite<'a> {
    dir: &'a Path,
    ca: TestCa,
    ca_file: String,
    cert: String,
    key: String,
    relay_port: u16,
    port: u16,
    http_port: u16,
}

impl<'a> ProxySite<'a> {
    fn in_dir(dir: &'a Path) -> Self {
        install_crypto_provider();
        let ca = TestCa::new();
        let (ca_file, cert, key) = ca.files(dir);
        Self {
            dir,
            ca,
            ca_file,
            cert,
            key,
            relay_port: unused_port(),
            port: unused_port(),
            http_port: unused_port(),
        }
    }
}

/// A relay from the example configuration behind the proxy `proxy_cmd` of `site`, a
/// bridge through the proxy, and every check through it.
async fn through_the_proxy(proxy_cmd: Command, what: &str, site: &ProxySite<'_>) {
    let (ca, port) = (&site.ca, site.port);
    let public = format!("https://relay.example.com:{port}");
    let relay = relay_from_example(
        &format!("127.0.0.1:{}", site.relay_port),
        site.dir,
        &[
            "--public-url",
            &public,
            "--keepalive-secs",
            "1",
            "--metrics",
        ],
    );
    let proxy = Proc::start(proxy_cmd, what);
    wait_port(port, what, &proxy);
    let bridge = bridge_through(port, &relay, &site.ca_file, &format!("via-{what}"));
    streams_pass(&ca.client(port), &bridge, what).await;
    the_proxy_sets_the_client_address(ca, port, &relay, what).await;
    metrics_stay_local(ca, port, what).await;
}

/// Through the proxy on `port`, from 127.0.0.3, a failed sign-in on the status page
/// with a forged `X-Forwarded-For`: the relay (trusting the proxy, as the example
/// configuration does) must see 127.0.0.3, which the proxy sets, never the forged address.
async fn the_proxy_sets_the_client_address(ca: &TestCa, port: u16, relay: &Relay, what: &str) {
    let http = ca.client_from(port, Some([127, 0, 0, 3].into()));
    let base = format!("https://relay.example.com:{port}");
    let forged = "198.51.100.66";
    let url = format!("{base}/status");
    let (cookie, csrf) = sign_in_form(http.get(&url).header("x-forwarded-for", forged)).await;
    let fields = [("op", "login"), ("csrf", &csrf), ("secret", "wrong")];
    let refused = post_form(
        http.post(&url).header("x-forwarded-for", forged),
        &cookie,
        &fields,
    )
    .await;
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
    let nginx = tool("/usr/sbin/nginx", "nginx");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path").to_owned();
    let ps = ProxySite::in_dir(dir.path());
    let (relay_port, port, http_port) = (ps.relay_port, ps.port, ps.http_port);
    let (cert, key) = (ps.cert.clone(), ps.key.clone());
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
    let needed = [
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_read_timeout 1h;",
    ];
    assert_contains_all(&site, &needed, "deploy/nginx.conf");
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

    // The bridge's WebSocket goes through nginx.
    through_the_proxy(nginx_cmd(false), "nginx", &ps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_from_the_example_proxies_websockets_and_streams() {
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
    let ps = ProxySite::in_dir(dir.path());
    let (relay_port, port, http_port) = (ps.relay_port, ps.port, ps.http_port);
    let (cert, key) = (&ps.cert, &ps.key);
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
    let mut run_caddy = Command::new(&caddy);
    run_caddy.args(["run", "--adapter", "caddyfile", "--config", &config_file]);
    caddy_env(&mut run_caddy);
    through_the_proxy(run_caddy, "caddy", &ps).await;
}
