//! `bridge doctor`: healthy tunnels pass (a bearer tunnel with its token, the discovery
//! steps of an OAuth tunnel), and deliberately broken deployments fail the check that
//! names what is wrong: a proxy that buffers responses (SSE delivery), a proxy mounting
//! the relay under another URL than its `--public-url` (the metadata's `resource`), a
//! proxy rewriting the authorization server's `issuer`, a path prefix whose RFC 8414
//! metadata URI is not routed.
//!
//! The proxies are `tests/clients/faulty_proxy.mjs` (Node 22 from the pinned
//! test helpers).

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::clients::{deps, tools_server};
use e2e::{Bridge, BridgeOpts, Proc, Relay, bin, unused_port};
use serde_json::{Value, json};

/// Keep-alive interval of the relays under test (seconds), so the stream check is quick.
const KEEPALIVE: &str = "1";
/// The doctor's wait for SSE bytes (seconds).
const STREAM_WAIT: &str = "5";

/// A finished `bridge doctor --json` run.
struct Run {
    code: Option<i32>,
    report: Value,
    stdout: String,
}

impl Run {
    fn check(&self, id: &str) -> &Value {
        self.report["checks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("no check {id} in the report:\n{}", self.stdout))
    }

    fn status(&self, id: &str) -> &str {
        self.check(id)["status"].as_str().unwrap_or("")
    }

    fn assert_status(&self, id: &str, want: &str) {
        assert_eq!(
            self.status(id),
            want,
            "check {id} is not {want}:\n{}",
            self.stdout
        );
    }

    /// Asserts the run failed (exit code 1) on check `id`, whose `seen` and `fix` say every
    /// one of `says` (lower case), while each of `passing` passed.
    fn assert_fails<S: AsRef<str>>(&self, id: &str, passing: &[&str], says: &[S]) {
        assert_eq!(self.code, Some(1), "{}", self.stdout);
        for p in passing {
            self.assert_status(p, "pass");
        }
        self.assert_status(id, "fail");
        let text = self.text(id);
        for s in says.iter().map(AsRef::as_ref) {
            assert!(text.contains(s), "check {id} does not say {s:?}: {text}");
        }
    }

    /// The check's `seen` and `fix`, lower case.
    fn text(&self, id: &str) -> String {
        let c = self.check(id);
        format!(
            "{} {}",
            c["seen"].as_str().unwrap_or(""),
            c["fix"].as_str().unwrap_or("")
        )
        .to_ascii_lowercase()
    }
}

/// Runs `bridge doctor URL --json` with `args`.
fn doctor(url: &str, args: &[&str]) -> Run {
    let out = Command::new(bin("bridge"))
        .arg("doctor")
        .arg(url)
        .arg("--json")
        .args(["--stream-wait-secs", STREAM_WAIT])
        .args(args)
        .env_remove("BRIDGE_CLIENT_TOKEN")
        .output()
        .expect("run bridge doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "bridge doctor printed no JSON report ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        code: out.status.code(),
        report,
        stdout,
    }
}

/// `scheme://host:port` and the path of a URL.
fn split_url(url: &str) -> (String, String) {
    let after = url.find("://").expect("absolute URL") + 3;
    let slash = url[after..].find('/').map_or(url.len(), |i| after + i);
    (url[..slash].to_owned(), url[slash..].to_owned())
}

/// A running `faulty_proxy.mjs` on 127.0.0.1.
struct Proxy {
    _proc: Proc,
    origin: String,
}

impl Proxy {
    /// Starts the proxy in `mode` in front of `upstream` (an origin), on `port` (0: any).
    fn start(upstream: &str, mode: &str, port: u16, extra: &[&str]) -> Self {
        let deps = deps();
        let port = if port == 0 { unused_port() } else { port };
        let mut cmd = Command::new(deps.var("NODE22"));
        cmd.arg(deps.client("faulty_proxy.mjs"))
            .arg(upstream)
            .arg(mode)
            .args(["--port", &port.to_string()])
            .args(extra);
        let proc = Proc::start(cmd, "proxy");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the proxy did not start: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            _proc: proc,
            origin: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// Runs `bridge doctor --json` with `args` on `url` as reached through a
/// `faulty_proxy.mjs` in `mode` in front of its origin.
fn doctor_through(mode: &str, url: &str, args: &[&str]) -> Run {
    let (origin, path) = split_url(url);
    let proxy = Proxy::start(&origin, mode, 0, &[]);
    doctor(&format!("{}{path}", proxy.origin), args)
}

/// A stdio MCP server whose tools carry annotations.
fn annotated_server() -> Vec<String> {
    tools_server(&json!({
        "serverInfo": {"name": "notes", "version": "1.2.3"},
        "instructions": "Notes of the day.",
        "call": "ok",
        "tools": [
            {"name": "read_note", "description": "Reads a note",
             "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}},
                             "required": ["id"]},
             "annotations": {"readOnlyHint": true, "openWorldHint": false}},
            {"name": "write_note", "description": "Writes a note",
             "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
             "annotations": {"readOnlyHint": false, "destructiveHint": false,
                             "openWorldHint": false}},
        ],
    }))
}

/// An embedded-relay bridge with a bearer token serving the fixture (or `command`).
fn bearer_bridge(command: Vec<String>) -> Bridge {
    Bridge::start(BridgeOpts {
        args: vec!["--keepalive-secs".into(), KEEPALIVE.into()],
        command,
        ..BridgeOpts::default()
    })
}

/// An OAuth tunnel `name` on `relay`, whose bridge dials `relay.base`.
fn oauth_bridge(relay: &Relay, name: &str) -> Bridge {
    oauth_bridge_via(relay, &relay.base, name)
}

/// An OAuth tunnel `name` on `relay`, whose bridge dials `dial` (the relay's own address
/// when its public URL is a proxy's).
fn oauth_bridge_via(relay: &Relay, dial: &str, name: &str) -> Bridge {
    Bridge::start(BridgeOpts {
        relay: Some((dial.to_owned(), relay.token.clone())),
        name: Some(name.into()),
        args: vec!["--auth".into(), "oauth".into()],
        ..BridgeOpts::default()
    })
}

/// A relay whose `--public-url` is the origin (plus `path`) of a `faulty_proxy.mjs` in
/// `mode` (with `extra` flags) in front of it, and an OAuth tunnel `name` whose bridge
/// dials the relay directly.
fn behind_proxy(mode: &str, extra: &[&str], path: &str, name: &str) -> (Proxy, Relay, Bridge) {
    let relay_port = unused_port();
    let proxy_port = unused_port();
    let direct = format!("http://127.0.0.1:{relay_port}");
    let proxy = Proxy::start(&direct, mode, proxy_port, extra);
    let public = format!("{}{path}", proxy.origin);
    let relay = Relay::start_on(
        &format!("127.0.0.1:{relay_port}"),
        &["--public-url", &public, "--keepalive-secs", KEEPALIVE],
    );
    let bridge = oauth_bridge_via(&relay, &direct, name);
    (proxy, relay, bridge)
}

const DISCOVERY: &[&str] = &[
    "discover",
    "prm",
    "prm-resource",
    "as-metadata",
    "as-issuer",
    "as-pkce",
    "as-iss-parameter",
    "as-registration",
    "as-endpoints",
];

#[test]
fn a_bearer_tunnel_with_its_token_passes_every_step() {
    let bridge = bearer_bridge(annotated_server());
    let token = bridge.bearer.clone().expect("a bearer token");

    let run = doctor(&bridge.mcp_url, &["--token", &token]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.report["ok"], true);
    assert_eq!(run.report["url"], bridge.mcp_url.as_str());
    for id in [
        "discover",
        "get-probe",
        "discover-consistent",
        "tools-list",
        "tools-size",
        "tool-annotations",
        "modern-tools-list",
        "sse-delivery",
    ] {
        run.assert_status(id, "pass");
    }
    // Not an OAuth tunnel, and a loopback URL: nothing else to check, nothing wrong.
    for id in ["url", "prm", "as-metadata"] {
        run.assert_status(id, "skip");
    }
    assert_eq!(run.report["summary"]["fail"], 0, "{}", run.stdout);
    assert_eq!(run.report["summary"]["warn"], 0, "{}", run.stdout);
    assert!(run.text("discover-consistent").contains("notes 1.2.3"));
    assert!(run.text("tools-list").contains("read_note, write_note"));
    assert!(
        run.text("modern-tools-list")
            .contains("2 tools, the same as the session's"),
        "{}",
        run.stdout
    );
    assert!(run.text("sse-delivery").contains("keep-alive"));

    // The line format: one line per check, then the tally.
    let out = Command::new(bin("bridge"))
        .args(["doctor", &bridge.mcp_url, "--token", &token])
        .args(["--stream-wait-secs", STREAM_WAIT])
        .output()
        .expect("run bridge doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("PASS  4 get-probe")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("PASS  6 sse-delivery")),
        "{text}"
    );
    assert!(text.contains("0 failed"), "{text}");

    // Without the token the tunnel's own steps are skipped, never failed.
    let run = doctor(&bridge.mcp_url, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.assert_status("discover", "pass");
    for id in [
        "get-probe",
        "discover-consistent",
        "tools-list",
        "sse-delivery",
    ] {
        run.assert_status(id, "skip");
    }

    // A wrong token is named.
    let run = doctor(&bridge.mcp_url, &["--token", "not-the-token"]);
    run.assert_fails("discover-consistent", &[], &["token was refused"]);
}

#[test]
fn an_open_tunnel_is_checked_without_credentials() {
    let bridge = Bridge::start(BridgeOpts {
        no_auth: true,
        args: vec!["--keepalive-secs".into(), KEEPALIVE.into()],
        ..BridgeOpts::default()
    });
    let run = doctor(&bridge.mcp_url, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    for id in [
        "discover",
        "get-probe",
        "discover-consistent",
        "tools-list",
        "sse-delivery",
    ] {
        run.assert_status(id, "pass");
    }
    assert!(run.text("discover").contains("without credentials"));
    assert!(run.text("discover-consistent").contains("mcp-fixture"));
    run.assert_status("tool-annotations", "warn");
}

#[test]
fn an_oauth_tunnel_passes_the_discovery_steps() {
    let relay = Relay::start(&["--keepalive-secs", KEEPALIVE]);
    let bridge = oauth_bridge(&relay, "doctor-oauth");
    let run = doctor(&bridge.mcp_url, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    for id in DISCOVERY {
        run.assert_status(id, "pass");
    }
    assert!(run.text("discover").contains("resource_metadata"));
    assert!(
        run.text("prm-resource")
            .contains(&bridge.mcp_url.to_ascii_lowercase())
    );
    // Without an access token, the rest waits for one.
    for id in ["get-probe", "discover-consistent", "sse-delivery"] {
        run.assert_status(id, "skip");
    }
}

#[test]
fn a_tool_list_too_large_for_chatgpt_is_named() {
    // 30 tools of about 750 tokens each, and one of about 4,000: more than ChatGPT takes.
    let tool = |name: String, words: usize| {
        json!({"name": name, "description": "lorem ipsum dolor ".repeat(words),
               "inputSchema": {"type": "object"},
               "annotations": {"readOnlyHint": true}})
    };
    let mut tools: Vec<Value> = (0..30).map(|i| tool(format!("tool_{i:02}"), 160)).collect();
    tools.push(tool("the_big_one".into(), 900));
    let bridge = bearer_bridge(tools_server(&json!({
        "serverInfo": {"name": "big", "version": "1"},
        "call": "ok",
        "tools": tools,
    })));
    let token = bridge.bearer.clone().expect("a bearer token");

    let run = doctor(&bridge.mcp_url, &["--token", &token]);
    // A warning: the endpoint works, but ChatGPT would refuse the connector.
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.assert_status("tools-list", "pass");
    run.assert_status("tools-size", "warn");
    let text = run.text("tools-size");
    assert!(text.contains("in 31 tools"), "{text}");
    assert!(text.contains("the largest: the_big_one (about "), "{text}");
    assert!(text.contains("--deny-tool"), "{text}");
}

#[test]
fn a_buffering_proxy_fails_sse_delivery() {
    let bridge = bearer_bridge(Vec::new());
    let token = bridge.bearer.clone().expect("a bearer token");
    let through = |mode: &str| doctor_through(mode, &bridge.mcp_url, &["--token", &token]);

    // A proxy that streams: SSE delivery passes through it.
    let run = through("pass");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.assert_status("get-probe", "pass");
    run.assert_status("sse-delivery", "pass");
    // The fixture's tools carry no annotations: a warning, not a failure.
    run.assert_status("tool-annotations", "warn");
    assert!(run.text("tool-annotations").contains("test_simple_text"));
    assert!(run.text("tool-annotations").contains("confirmation"));

    // A proxy that holds whole responses: requests still work, the stream never comes.
    let run = through("buffer");
    assert_eq!(run.report["ok"], false);
    run.assert_fails(
        "sse-delivery",
        &["discover-consistent", "tools-list"],
        &[
            "buffers the sse stream",
            "proxy_buffering off",
            "flush_interval -1",
        ],
    );
    run.assert_status("get-probe", "fail");

    // A proxy that passes the head at once but holds the body (nginx buffering): the
    // probe is answered, the stream's bytes never come.
    let run = through("buffer-body");
    run.assert_fails(
        "sse-delivery",
        &["get-probe"],
        &[
            "no bytes of the open get event stream",
            "buffers the sse stream",
        ],
    );
}

#[test]
fn a_resource_other_than_the_url_fails_the_metadata_check() {
    // A proxy mounting the relay under /tunnels while the relay's --public-url is its own
    // address.
    let relay = Relay::start(&["--keepalive-secs", KEEPALIVE]);
    let _bridge = oauth_bridge(&relay, "doctor-prefix");
    let proxy = Proxy::start(&relay.base, "pass", 0, &["--prefix", "/tunnels"]);
    let url = format!("{}/tunnels/doctor-prefix/mcp", proxy.origin);
    let run = doctor(&url, &[]);
    run.assert_fails(
        "prm-resource",
        &["discover"],
        &[
            format!(
                "prm resource is {}/doctor-prefix/mcp but the url is {url}",
                relay.base
            ),
            format!("--public-url to {}/tunnels", proxy.origin),
        ],
    );

    // No proxy: a relay whose --public-url names another host than the URL used.
    let port = unused_port();
    let relay = Relay::start_on(
        &format!("127.0.0.1:{port}"),
        &["--public-url", &format!("http://localhost:{port}")],
    );
    let _bridge = oauth_bridge(&relay, "doctor-host");
    let url = format!("http://127.0.0.1:{port}/doctor-host/mcp");
    let run = doctor(&url, &[]);
    run.assert_fails(
        "prm-resource",
        &[],
        &[
            format!("prm resource is http://localhost:{port}/doctor-host/mcp"),
            format!("--public-url to http://127.0.0.1:{port}"),
        ],
    );
}

#[test]
fn a_rewritten_issuer_fails_the_server_metadata_check() {
    // The relay's --public-url is the proxy's origin; the proxy rewrites the issuer.
    let (proxy, _relay, bridge) = behind_proxy(
        "issuer",
        &["--issuer", "https://auth.example.invalid"],
        "",
        "doctor-issuer",
    );
    let public = proxy.origin.clone();
    assert_eq!(
        bridge.mcp_url,
        format!("{}/doctor-issuer/mcp", proxy.origin)
    );
    let run = doctor(&bridge.mcp_url, &[]);
    run.assert_fails(
        "as-issuer",
        &["discover", "prm", "prm-resource", "as-metadata", "as-pkce"],
        &[
            format!("issuer is https://auth.example.invalid but it was fetched for {public}"),
            "rewrites".into(),
        ],
    );
}

#[test]
fn a_path_prefix_without_its_well_known_route_fails_the_server_metadata_check() {
    // The relay knows its prefix (--public-url …/tunnels), but RFC 8414 puts the
    // issuer's metadata at /.well-known/oauth-authorization-server/tunnels, outside the
    // proxied prefix.
    let (proxy, _relay, bridge) =
        behind_proxy("pass", &["--prefix", "/tunnels"], "/tunnels", "doctor-path");
    let run = doctor(&bridge.mcp_url, &[]);
    run.assert_fails(
        "as-metadata",
        &["discover", "prm", "prm-resource", "as-issuer"],
        &[format!(
            "{}/.well-known/oauth-authorization-server/tunnels",
            proxy.origin
        )],
    );
}

#[test]
fn a_tunnel_without_its_bridge_is_named() {
    let bridge = bearer_bridge(Vec::new());
    let (origin, _) = split_url(&bridge.mcp_url);
    let run = doctor(&format!("{origin}/nobody-here/mcp"), &[]);
    run.assert_fails("discover", &[], &["503", "bridge run"]);

    // Nothing listening at all.
    let run = doctor(&format!("http://127.0.0.1:{}/x/mcp", unused_port()), &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    run.assert_status("discover", "fail");
    run.assert_status("get-probe", "fail");
}

/// Both eras are checked, on a real Python SDK 2.x server (whose stdio connection refuses
/// the 2026-07-28 envelope once opened with `initialize`): through the tunnel both pass;
/// behind something that answers 2026-07-28 requests with that refusal (as bridges that
/// passed the envelope on did), the session path still passes and the doctor fails,
/// naming the way around it.
#[test]
fn the_2026_07_28_path_is_checked_beside_the_session_path() {
    let deps = deps();
    let bridge = bearer_bridge(vec![
        deps.var("PY_SDK"),
        deps.client("py_server.py").display().to_string(),
    ]);
    let token = bridge.bearer.clone().expect("a bearer token");
    let run = doctor(&bridge.mcp_url, &["--token", &token]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.assert_status("tools-list", "pass");
    run.assert_status("modern-tools-list", "pass");
    assert!(
        run.text("modern-tools-list")
            .contains("the same as the session's"),
        "{}",
        run.stdout
    );

    let run = doctor_through("refuse-envelope", &bridge.mcp_url, &["--token", &token]);
    run.assert_fails(
        "modern-tools-list",
        &["discover", "tools-list"],
        &["-32600", "--protocol legacy"],
    );

    // A bridge serving only the handshake era offers no 2026-07-28 path to check.
    let handshake_only = Bridge::start(BridgeOpts {
        command: vec![
            deps.var("PY_SDK"),
            deps.client("py_server.py").display().to_string(),
        ],
        args: vec![
            "--protocol".into(),
            "legacy".into(),
            "--keepalive-secs".into(),
            KEEPALIVE.into(),
        ],
        ..Default::default()
    });
    let token = handshake_only.bearer.clone().expect("a bearer token");
    let run = doctor(&handshake_only.mcp_url, &["--token", &token]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.assert_status("modern-tools-list", "skip");
}

/// A tunnel of several servers: the size of the tool list is given per server.
#[test]
fn a_tunnel_of_several_servers_is_sized_per_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bridge.toml");
    let fx = serde_json::to_string(&bin("mcp-fixture").display().to_string()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[servers.files]\ncommand = {fx}\ntunnel = \"work\"\n\n\
             [servers.notes]\ncommand = {fx}\ntunnel = \"work\"\n"
        ),
    )
    .unwrap();
    let bridge = Bridge::start(BridgeOpts {
        args: vec!["--keepalive-secs".into(), KEEPALIVE.into()],
        ..BridgeOpts::default().config(&config)
    });
    let token = bridge.bearer.clone().expect("a bearer token");
    let run = doctor(&bridge.mcp_url, &["--token", &token]);
    run.assert_status("tools-size", "pass");
    let text = run.text("tools-size");
    assert!(
        text.contains("per server: files about ") && text.contains(", notes about "),
        "{text}"
    );
}
