//! `bridge run --upstream URL`: real MCP servers served over HTTP published through the
//! tunnel, driven by the Python SDK 2.x and the TypeScript 2.x client package in both
//! protocol eras (the `initialize` handshake and the stateless 2026-07-28 revision).
//!
//! - `@modelcontextprotocol/server-everything` in its Streamable HTTP and its HTTP+SSE
//!   mode (the upstream transport found by `auto`: the SSE server refuses the `initialize`
//!   POST with a 404): tools listed, `echo`, a tool reporting progress, a tool asking the
//!   client for a completion (sampling).
//! - `tests/clients/py_http_server.py` (the Python SDK's `MCPServer`, its FastMCP) over
//!   Streamable HTTP (`--upstream-transport http`, with an `--upstream-header`) and over
//!   HTTP+SSE (`--upstream-transport sse`): progress, log messages, sampling and
//!   elicitation answered by the client, the header reaching the server and the tunnel's
//!   bearer token not reaching it.
//! - Clients at once, each in its own session (and one stateless), each seeing only its own
//!   log messages and server→client requests while all of them are in flight.
//! - The upstream killed and started again on the same port during a call and between
//!   calls: the call in flight fails (it does not hang), later calls on the same client
//!   connection succeed.
//! - A non-private upstream host refused at start without `--allow-remote-upstream`.
//!
//! Every test starts its own upstream server (`e2e::upstreams`) and one bridge with the
//! in-process relay, and runs the client scripts of `tests/clients/` against it.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::clients::{run_json, script, strs};
use e2e::upstreams::{Transport, Upstream};
use e2e::{Bridge, BridgeOpts, Proc, bin};
use serde_json::{Value, json};

use crate::{assert_handshake_client, assert_stateless_client};

/// One client program in one era.
#[derive(Clone, Copy)]
struct Client {
    /// For failure messages.
    what: &'static str,
    /// A short name, put into the texts the server sees and the client answers with.
    tag: &'static str,
    /// A `Deps` variable.
    interpreter: &'static str,
    script: &'static str,
    /// The options choosing its era (and transport).
    args: &'static [&'static str],
    /// Connects to the tunnel's HTTP+SSE endpoint instead of its MCP endpoint.
    sse: bool,
    /// `true` when it must end up on 2026-07-28, `false` on the handshake revision.
    stateless: bool,
}

const PY_AUTO: Client = Client {
    what: "Python 2.x, auto (2026-07-28)",
    tag: "py-auto",
    interpreter: "PY_SDK",
    script: "py_client.py",
    args: &["--mode", "auto"],
    sse: false,
    stateless: true,
};

const PY_HANDSHAKE: Client = Client {
    what: "Python 2.x, handshake",
    tag: "py-handshake",
    interpreter: "PY_SDK",
    script: "py_client.py",
    args: &["--mode", "legacy"],
    sse: false,
    stateless: false,
};

const PY_SSE: Client = Client {
    what: "Python 2.x, the tunnel's HTTP+SSE endpoint",
    tag: "py-sse",
    interpreter: "PY_SDK",
    script: "py_client.py",
    args: &["--transport", "sse"],
    sse: true,
    stateless: false,
};

const TS_AUTO: Client = Client {
    what: "TypeScript 2.x, auto (2026-07-28)",
    tag: "ts-auto",
    interpreter: "NODE22",
    script: "ts_client_v2.mjs",
    args: &["--era", "auto"],
    sse: false,
    stateless: true,
};

const TS_HANDSHAKE: Client = Client {
    what: "TypeScript 2.x, handshake",
    tag: "ts-handshake",
    interpreter: "NODE22",
    script: "ts_client_v2.mjs",
    args: &["--era", "legacy"],
    sse: false,
    stateless: false,
};

/// Both SDKs in both eras.
const BOTH_ERAS: [Client; 4] = [PY_AUTO, PY_HANDSHAKE, TS_AUTO, TS_HANDSHAKE];

impl Client {
    /// The script's command against `bridge` with `args` after the URL and the era options.
    fn command(&self, bridge: &Bridge, args: &[&str]) -> Command {
        let url = if self.sse {
            &bridge.sse_url
        } else {
            &bridge.mcp_url
        };
        let mut all = vec![url.as_str()];
        all.extend(self.args);
        all.extend(args);
        script(bridge, self.interpreter, self.script, &all)
    }

    /// Runs the script to its end (a panic with its output if it fails): its summary, whose
    /// era is checked.
    fn run(&self, bridge: &Bridge, args: &[&str]) -> Value {
        let out = run_json(&mut self.command(bridge, args));
        self.check_era(&out);
        out
    }

    /// Checks that the summary reports the era this client must end up in.
    fn check_era(&self, out: &Value) {
        if self.stateless {
            assert_stateless_client(out, self.what);
        } else {
            assert_handshake_client(out, self.what);
        }
    }

    /// What this client answers to a sampling request.
    fn completion(&self) -> String {
        format!("completion by {}", self.tag)
    }

    /// What this client answers to an elicitation (every string property).
    fn name(&self) -> String {
        format!("name-of-{}", self.tag)
    }

    /// The options of a run that calls `tool` with `args` first, then the `--calls` steps
    /// `calls`, answering sampling and elicitation and keeping every log message.
    fn probe_args(&self, tool: &str, args: &Value, calls: &Value) -> Vec<String> {
        [
            "--tool",
            tool,
            "--args",
            &args.to_string(),
            "--resource",
            "",
            "--prompt",
            "",
            "--sampling-text",
            &self.completion(),
            "--elicit-answer",
            &self.name(),
            "--log-level",
            "debug",
            "--calls",
            &calls.to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// `&[String]` as `Vec<&str>`.
fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The record of `--calls` step `i`, which must have succeeded (no error, no `isError`).
fn step<'a>(out: &'a Value, i: usize, what: &str) -> &'a Value {
    let s = &out["steps"][i];
    assert!(s.is_object(), "{what}: no step {i}: {out}");
    assert_eq!(s["error"], Value::Null, "{what}: step {i} failed: {s}");
    assert_eq!(
        s["is_error"], false,
        "{what}: step {i} is a tool error: {s}"
    );
    s
}

/// The texts of `--calls` step `i` (which must have succeeded).
fn step_texts(out: &Value, i: usize, what: &str) -> Vec<String> {
    strs(&step(out, i, what)["texts"])
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The `(progress, total)` pairs a step received.
fn progress(step: &Value) -> Vec<(f64, f64)> {
    step["progress"]
        .as_array()
        .unwrap_or_else(|| panic!("no progress list: {step}"))
        .iter()
        .map(|p| {
            (
                p["progress"].as_f64().unwrap_or(f64::NAN),
                p["total"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// The `data` of every log message a client received.
fn log_data(out: &Value) -> Vec<&str> {
    out["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs: {out}"))
        .iter()
        .map(|l| {
            l["data"]
                .as_str()
                .unwrap_or_else(|| panic!("log data: {l}"))
        })
        .collect()
}

/// The message texts of every sampling request a client answered.
fn sampled_texts(out: &Value) -> Vec<Vec<&str>> {
    out["samplings"]
        .as_array()
        .unwrap_or_else(|| panic!("no samplings: {out}"))
        .iter()
        .map(|s| strs(&s["texts"]))
        .collect()
}

/// The messages of every elicitation a client answered.
fn elicited_messages(out: &Value) -> Vec<&str> {
    out["elicitations"]
        .as_array()
        .unwrap_or_else(|| panic!("no elicitations: {out}"))
        .iter()
        .map(|e| {
            e["message"]
                .as_str()
                .unwrap_or_else(|| panic!("message: {e}"))
        })
        .collect()
}

/// The tool names a summary lists.
fn tools(out: &Value) -> Vec<&str> {
    strs(&out["tools"])
}

/// `server-everything` through the tunnel with `client`: the tools, `echo`, the long
/// running operation's progress, and a sampling request answered by the client.
fn check_everything(bridge: &Bridge, client: &Client, how: &str) {
    let what = format!("{} → server-everything ({how})", client.what);
    let message = format!("hello from {}", client.tag);
    let prompt = format!("a question from {}", client.tag);
    let calls = json!([
        {"tool": "trigger-long-running-operation", "args": {"duration": 0.3, "steps": 3},
         "progress": true},
        {"tool": "trigger-sampling-request", "args": {"prompt": prompt, "maxTokens": 20}},
    ]);
    let args = client.probe_args("echo", &json!({ "message": message }), &calls);
    let out = client.run(bridge, &as_strs(&args));
    if let Some(name) = out["server"].as_str() {
        assert_eq!(name, "mcp-servers/everything", "{what}: {out}");
    }
    let listed = tools(&out);
    for t in [
        "echo",
        "trigger-long-running-operation",
        "trigger-sampling-request",
    ] {
        assert!(listed.contains(&t), "{what}: {t} missing from {listed:?}");
    }
    assert_eq!(out["call"]["is_error"], false, "{what}: {out}");
    assert_eq!(
        strs(&out["call"]["texts"]),
        [format!("Echo: {message}")],
        "{what}: {out}"
    );

    // Progress: one notification per step, each reaching the call that asked for it.
    let long = step(&out, 0, &what);
    assert_eq!(
        strs(&long["texts"]),
        ["Long running operation completed. Duration: 0.3 seconds, Steps: 3."],
        "{what}: {long}"
    );
    assert_eq!(
        progress(long),
        [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)],
        "{what}: {long}"
    );

    // Sampling: the server's request reached this client, and its answer the server.
    let texts = step_texts(&out, 1, &what);
    assert_eq!(texts.len(), 1, "{what}: {out}");
    assert!(
        texts[0].starts_with("LLM sampling result:") && texts[0].contains(&client.completion()),
        "{what}: the server did not get the client's completion: {texts:?}"
    );
    assert_eq!(
        sampled_texts(&out),
        [[format!(
            "Resource trigger-sampling-request context: {prompt}"
        )]],
        "{what}: {out}"
    );
}

/// `server-everything --transport streamableHttp` behind `bridge run --upstream …/mcp`
/// (transport `auto`), with both SDKs in both eras and a client of the tunnel's HTTP+SSE
/// endpoint.
#[test]
fn server_everything_over_streamable_http() {
    let upstream = Upstream::everything(Transport::Streamable);
    let bridge = BridgeOpts::default().upstream(&upstream.url()).start();
    for client in BOTH_ERAS.iter().chain([&PY_SSE]) {
        check_everything(&bridge, client, "Streamable HTTP upstream");
    }
}

/// `server-everything sse` behind `bridge run --upstream …/sse` with the transport left to
/// `auto`, which falls back to HTTP+SSE (the server answers the `initialize` POST with a
/// 404), with both SDKs in both eras.
#[test]
fn server_everything_over_http_sse() {
    let upstream = Upstream::everything(Transport::Sse);
    let bridge = BridgeOpts::default().upstream(&upstream.url()).start();
    for client in &BOTH_ERAS {
        check_everything(&bridge, client, "HTTP+SSE upstream, auto");
    }
}

/// The header `--upstream-header` adds (see [`python_sdk_server_over_streamable_http`]).
const UPSTREAM_HEADER: (&str, &str) = ("X-Upstream-Test", "set-by-the-bridge");

/// `py_http_server.py` through the tunnel with `client`: progress with its messages, log
/// messages, a sampling request and an elicitation answered by the client, and (when
/// `header` is set) the upstream header reaching the server while the tunnel's bearer token
/// does not.
fn check_python_server(bridge: &Bridge, client: &Client, how: &str, header: bool) {
    let what = format!("{} → Python SDK server ({how})", client.what);
    let tag = client.tag;
    let prompt = format!("a question from {tag}");
    let question = format!("who is {tag}?");
    let calls = json!([
        {"tool": "count", "args": {"steps": 3, "delay_ms": 20}, "progress": true},
        {"tool": "shout", "args": {"tag": tag}},
        {"tool": "sample", "args": {"prompt": prompt}},
        {"tool": "ask_name", "args": {"question": question}},
        {"tool": "header", "args": {"name": UPSTREAM_HEADER.0}},
        {"tool": "header", "args": {"name": "authorization"}},
    ]);
    let args = client.probe_args("add", &json!({"a": 2, "b": 3}), &calls);
    let out = client.run(bridge, &as_strs(&args));
    if let Some(name) = out["server"].as_str() {
        assert_eq!(name, "py-http-server", "{what}: {out}");
    }
    for t in ["echo", "add", "count", "shout", "sample", "ask_name"] {
        assert!(tools(&out).contains(&t), "{what}: {t} missing: {out}");
    }
    assert_eq!(strs(&out["call"]["texts"]), ["5"], "{what}: {out}");

    // Progress, with the server's messages.
    let count = step(&out, 0, &what);
    assert_eq!(strs(&count["texts"]), ["counted 3"], "{what}: {count}");
    assert_eq!(
        progress(count),
        [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)],
        "{what}: {count}"
    );
    let messages: Vec<&Value> = count["progress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["message"])
        .collect();
    assert_eq!(
        messages,
        [&json!("step 1"), &json!("step 2"), &json!("step 3")],
        "{what}: {count}"
    );

    // Log messages (requested at `debug`: every level arrives).
    assert_eq!(
        step_texts(&out, 1, &what),
        [format!("shouted {tag}")],
        "{what}"
    );
    assert_eq!(
        log_data(&out),
        [format!("info {tag}"), format!("warning {tag}")],
        "{what}: {out}"
    );
    let levels: Vec<&Value> = out["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| &l["level"])
        .collect();
    assert_eq!(levels, [&json!("info"), &json!("warning")], "{what}: {out}");

    // Sampling and elicitation, answered by this client.
    assert_eq!(
        step_texts(&out, 2, &what),
        [format!("sampled: {}", client.completion())],
        "{what}: {out}"
    );
    assert_eq!(sampled_texts(&out), [[prompt]], "{what}: {out}");
    assert_eq!(
        step_texts(&out, 3, &what),
        [format!("hello {}", client.name())],
        "{what}: {out}"
    );
    assert_eq!(elicited_messages(&out), [question], "{what}: {out}");
    assert_eq!(
        out["elicitations"][0]["properties"],
        json!(["name"]),
        "{what}: {out}"
    );

    // What the server's HTTP requests carried.
    if header {
        assert_eq!(
            step_texts(&out, 4, &what),
            [UPSTREAM_HEADER.1],
            "{what}: --upstream-header did not reach the server"
        );
    }
    assert_eq!(
        step_texts(&out, 5, &what),
        ["(none)"],
        "{what}: the server got an Authorization header (the tunnel's token must stay in the tunnel)"
    );
}

/// `py_http_server.py --transport streamable-http` behind `bridge run --upstream …/mcp
/// --upstream-transport http --upstream-header …`, with both SDKs in both eras.
#[test]
fn python_sdk_server_over_streamable_http() {
    let upstream = Upstream::python(Transport::Streamable);
    let header = format!("{}: {}", UPSTREAM_HEADER.0, UPSTREAM_HEADER.1);
    let bridge = BridgeOpts::default()
        .upstream(&upstream.url())
        .args(&["--upstream-transport", "http", "--upstream-header", &header])
        .start();
    assert!(bridge.bearer.is_some(), "the tunnel must ask for a token");
    for client in &BOTH_ERAS {
        check_python_server(&bridge, client, "Streamable HTTP upstream", true);
    }
}

/// `py_http_server.py --transport sse` behind `bridge run --upstream …/sse
/// --upstream-transport sse`, with one client of each SDK, one in each era.
#[test]
fn python_sdk_server_over_http_sse() {
    let upstream = Upstream::python(Transport::Sse);
    let bridge = BridgeOpts::default()
        .upstream(&upstream.url())
        .args(&["--upstream-transport", "sse"])
        .start();
    for client in [&PY_AUTO, &TS_HANDSHAKE] {
        check_python_server(&bridge, client, "HTTP+SSE upstream", false);
    }
}

/// Three clients call `rendezvous` at the same time: two handshake-era sessions (Python
/// and TypeScript) and a stateless client. The server waits until all three calls run,
/// then, while all of them still run, each call logs, asks for a completion and asks for a
/// name naming its own client; each client sees only its own log message and its own two
/// requests, and each call ends with its own client's answers.
#[test]
fn clients_at_once_see_only_their_own_messages() {
    let upstream = Upstream::python(Transport::Streamable);
    let bridge = BridgeOpts::default().upstream(&upstream.url()).start();
    let clients = [PY_HANDSHAKE, TS_HANDSHAKE, PY_AUTO];
    let commands: Vec<Command> = clients
        .iter()
        .map(|client| {
            let args = client.probe_args(
                "rendezvous",
                &json!({"tag": client.tag, "peers": clients.len(), "timeout_ms": 60_000}),
                &json!([]),
            );
            client.command(&bridge, &as_strs(&args))
        })
        .collect();
    let outs: Vec<Value> = std::thread::scope(|s| {
        let runs: Vec<_> = commands
            .into_iter()
            .map(|mut cmd| s.spawn(move || run_json(&mut cmd)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("client thread"))
            .collect()
    });
    for (client, out) in clients.iter().zip(&outs) {
        let what = format!("{}, one of {} at once", client.what, clients.len());
        client.check_era(out);
        let tag = client.tag;
        assert_eq!(
            strs(&out["call"]["texts"]),
            [format!(
                "met {tag}: sampled {}, name {}",
                client.completion(),
                client.name()
            )],
            "{what}: the call did not get this client's answers: {out}"
        );
        assert_eq!(
            log_data(out),
            [format!("rendezvous {tag}")],
            "{what}: {out}"
        );
        assert_eq!(
            sampled_texts(out),
            [[format!("sample {tag}")]],
            "{what}: {out}"
        );
        assert_eq!(
            elicited_messages(out),
            [format!("name {tag}")],
            "{what}: {out}"
        );
    }
}

/// Reads a client's stdout until its `{"event": "paused", "label": label}` line; panics
/// (with its stderr) when it does not come within `within`.
fn paused(client: &mut Proc, label: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = client.next_line(left) else {
            panic!(
                "{what}: not paused at {label:?} within {within:?}; stderr:\n{}",
                client.log_text()
            );
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["event"] == "paused"
        {
            assert_eq!(v["label"], label, "{what}: paused at the wrong step");
            return;
        }
    }
}

/// Reads a client's stdout until its summary (the JSON line with `ok`), and checks that it
/// exits with 0.
fn summary(client: &mut Proc, what: &str) -> Value {
    loop {
        let Some(line) = client.next_line(Duration::from_secs(60)) else {
            panic!("{what}: no summary; stderr:\n{}", client.log_text());
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v.get("ok").is_some()
        {
            assert_eq!(
                client.wait_exit(Duration::from_secs(30)),
                Some(0),
                "{what}: {v}\nstderr:\n{}",
                client.log_text()
            );
            return v;
        }
    }
}

/// The upstream server killed while a call runs and started again on the same port, then
/// killed and started again between calls. Two clients stay connected throughout (a Python
/// handshake-era session and a stateless TypeScript client): the calls running at the kill
/// end with an error, not a hang, and the calls each client makes after each restart
/// succeed (the bridge opens a new upstream session).
#[test]
fn upstream_killed_and_restarted_on_the_same_port() {
    let mut upstream = Upstream::python(Transport::Streamable);
    let bridge = BridgeOpts::default().upstream(&upstream.url()).start();
    let clients = [PY_HANDSHAKE, TS_AUTO];
    let mut running: Vec<(Client, Proc)> = clients
        .iter()
        .map(|client| {
            let calls = json!([
                {"tool": "slow", "args": {"ms": 600_000, "tag": client.tag}},
                {"pause": "restarted"},
                {"tool": "echo", "args": {"message": "after the restart"}},
                {"pause": "between"},
                {"tool": "echo", "args": {"message": "after the second restart"}},
            ]);
            let mut args = vec!["--tool", "echo", "--args", r#"{"message":"before"}"#];
            args.extend(["--resource", "", "--prompt", ""]);
            let calls = calls.to_string();
            args.extend(["--calls", calls.as_str(), "--timeout", "300"]);
            let cmd = client.command(&bridge, &args);
            (*client, Proc::start_piped(cmd, client.tag))
        })
        .collect();

    // Both slow calls run on the server; then it is killed under them.
    let mut started: Vec<String> = clients
        .iter()
        .map(|_| upstream.line("slow started "))
        .collect();
    started.sort();
    let mut tags: Vec<String> = clients.iter().map(|c| c.tag.to_owned()).collect();
    tags.sort();
    assert_eq!(started, tags);
    upstream.kill();
    for (client, proc) in &mut running {
        let what = format!("{}: the call running at the kill", client.what);
        paused(proc, "restarted", Duration::from_secs(30), &what);
    }

    // Started again on the same port: the same client connections go on.
    upstream.start_again();
    for (_, proc) in &mut running {
        proc.write_line("go");
    }
    for (client, proc) in &mut running {
        let what = format!("{}: the call after the restart", client.what);
        paused(proc, "between", Duration::from_secs(60), &what);
    }

    // Killed and started again while no call runs.
    upstream.restart();
    for (_, proc) in &mut running {
        proc.write_line("go");
    }
    for (client, proc) in &mut running {
        let what = client.what;
        let out = summary(proc, what);
        assert_eq!(out["ok"], true, "{what}: {out}");
        client.check_era(&out);
        assert_eq!(
            strs(&out["call"]["texts"]),
            ["Echo: before"],
            "{what}: {out}"
        );
        let killed = &out["steps"][0];
        assert!(
            killed["error"].is_string() || killed["is_error"] == true,
            "{what}: the call running at the kill did not fail: {killed}"
        );
        assert_eq!(
            step_texts(&out, 2, what),
            ["Echo: after the restart"],
            "{what}: {out}"
        );
        assert_eq!(
            step_texts(&out, 4, what),
            ["Echo: after the second restart"],
            "{what}: {out}"
        );
    }
}

/// `bridge run --upstream URL` with a public address (IPv4 or IPv6; the test machine has
/// no DNS, so no names) stops at once with an error naming `--allow-remote-upstream`, and
/// publishes nothing.
#[test]
fn a_remote_upstream_needs_allow_remote_upstream() {
    for url in [
        "https://93.184.215.14/mcp",
        "http://[2606:4700::1111]:8080/mcp",
    ] {
        let home = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(bin("bridge"));
        cmd.args(["run", "--listen", "127.0.0.1:0", "--upstream", url])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("RUST_LOG", "info");
        for v in [
            "BRIDGE_RELAY",
            "BRIDGE_TOKEN",
            "BRIDGE_NAME",
            "BRIDGE_CLIENT_TOKEN",
            "BRIDGE_CONFIG",
        ] {
            cmd.env_remove(v);
        }
        let mut bridge = Proc::start(cmd, "bridge");
        let code = bridge.wait_exit(Duration::from_secs(30));
        let stderr = bridge.log_text();
        assert!(
            matches!(code, Some(c) if c != 0),
            "{url}: the bridge did not stop with an error (exit {code:?}); stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("--allow-remote-upstream"),
            "{url}: the error does not name --allow-remote-upstream:\n{stderr}"
        );
        let mut stdout = Vec::new();
        while let Some(line) = bridge.next_line(Duration::from_millis(200)) {
            stdout.push(line);
        }
        assert!(
            !stdout.iter().any(|l| l.starts_with("MCP endpoint:")),
            "{url}: published anyway: {stdout:?}"
        );
    }
}

/// While the local HTTP server is down, the relay says so: `/status/<name>` names since
/// when, `tools/list` is answered from the snapshot and `tools/call` is a tool error
/// naming the server (not the desktop); once it is back, calls reach it again.
#[test]
fn a_server_that_is_down_is_reported_by_the_relay() {
    let mut upstream = Upstream::python(Transport::Streamable);
    let bridge = BridgeOpts::default()
        .no_auth()
        .upstream(&upstream.url())
        .start();
    let http = e2e::http::BlockingHttp::new();
    let status_url = format!("{}/status/{}", bridge.relay_base(), bridge.name());
    let down_since = |http: &e2e::http::BlockingHttp| {
        http.get(&status_url, &[]).json()["server_unreachable_since"].as_u64()
    };
    assert_eq!(down_since(&http), None, "it answers at first");
    let post = |http: &e2e::http::BlockingHttp, body: Value| http.post_mcp(&bridge.mcp_url, &body);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "hi"}}});

    upstream.kill();
    // A request notices the outage at once (the bridge answers it with an error).
    let first = post(&http, call.clone());
    assert!(first.text().contains("not reachable"), "{}", first.text());
    let since = e2e::wait::eventually(Duration::from_secs(10), || down_since(&http))
        .expect("the status page names the outage");
    assert!(since > 0);
    let listed = post(&http, list.clone()).response_to(&json!(1));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"echo"), "from the snapshot: {listed}");
    let answered = post(&http, call.clone()).response_to(&json!(2));
    assert_eq!(answered["result"]["isError"], true, "{answered}");
    let text = answered["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("local MCP server"), "{text}");
    assert!(text.contains("not reachable since"), "{text}");

    upstream.start_again();
    e2e::wait::eventually(Duration::from_secs(30), || {
        down_since(&http).is_none().then_some(())
    })
    .expect("the relay hears that the server is back");
    let back = post(&http, call).response_to(&json!(2));
    assert_eq!(back["result"]["content"][0]["text"], "Echo: hi", "{back}");
}

/// What the stdio path offers works for an HTTP server: the desktop policy hides a tool
/// and audits a call, `--call-timeout-secs` answers a call the server holds, and once the bridge is gone a separate relay answers from the
/// snapshot the bridge's own upstream session filled (policy applied).
#[test]
fn policy_audit_timeouts_and_the_snapshot_work_for_an_http_server() {
    let mut upstream = Upstream::python(Transport::Streamable);
    let relay = e2e::Relay::start(&["--grace-secs", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.jsonl");
    let audit_arg = audit.display().to_string();
    let mut bridge = relay.bridge(
        BridgeOpts::default()
            .no_auth()
            .upstream(&upstream.url())
            .args(&[
                "--deny-tool",
                "add",
                "--audit-log",
                &audit_arg,
                "--call-timeout-secs",
                "2",
            ]),
    );
    let http = e2e::http::BlockingHttp::new();
    let mcp_url = bridge.mcp_url.clone();
    let post = |http: &e2e::http::BlockingHttp, body: Value| http.post_mcp(&mcp_url, &body);
    let names = |listed: &Value| -> Vec<String> {
        listed["result"]["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let listed = names(&post(&http, list.clone()).response_to(&json!(1)));
    assert!(listed.iter().any(|n| n == "echo"), "{listed:?}");
    assert!(
        !listed.iter().any(|n| n == "add"),
        "add is denied: {listed:?}"
    );

    let echo = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "audited"}}});
    let r = post(&http, echo).response_to(&json!(2));
    assert_eq!(r["result"]["content"][0]["text"], "Echo: audited", "{r}");
    let logged = e2e::wait::eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        text.contains("\"echo\"").then_some(text)
    })
    .expect("the call is in the audit log");
    assert!(
        !logged.contains("audited"),
        "arguments stay out of the log: {logged}"
    );

    let slow = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "slow", "arguments": {"ms": 600_000, "tag": "held"}}});
    let started = Instant::now();
    let r = post(&http, slow).response_to(&json!(3));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream.line("slow started "), "held");

    // The bridge goes; the relay answers from the snapshot.
    bridge.stop();
    let offline = e2e::wait::eventually(Duration::from_secs(20), || {
        let a = post(&http, list.clone());
        let r = a.response_to(&json!(1));
        (!names(&r).is_empty()).then_some(r)
    })
    .expect("the relay answers tools/list offline");
    let offline = names(&offline);
    assert!(offline.iter().any(|n| n == "echo"), "{offline:?}");
    assert!(
        !offline.iter().any(|n| n == "add"),
        "policy applied: {offline:?}"
    );
}

/// A server that is not running when the bridge starts is published anyway (with a
/// warning), answered as not reachable meanwhile, and served once it starts: the bridge
/// keeps trying it.
#[test]
fn a_server_started_after_the_bridge_is_served_once_it_is_up() {
    let port = e2e::unused_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let bridge = BridgeOpts::default().no_auth().upstream(&url).start();
    assert!(
        bridge.proc.log_text().contains("not reachable yet"),
        "the owner is warned: {}",
        bridge.proc.log_text()
    );
    let http = e2e::http::BlockingHttp::new();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "late"}}});
    let post = || http.post_mcp(&bridge.mcp_url, &call);
    let before = post();
    assert!(before.text().contains("not reachable"), "{}", before.text());

    let _upstream = Upstream::python_on(Transport::Streamable, port);
    let answered = e2e::wait::eventually(Duration::from_secs(30), || {
        let r = post().response_to(&json!(1));
        (r["result"]["content"][0]["text"] == "Echo: late").then_some(r)
    });
    assert!(
        answered.is_some(),
        "the call reaches the server once it is up"
    );
}
