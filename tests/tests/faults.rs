//! Fault injection, end to end: the tunnel under the failures it is built to survive.
//!
//! Each test runs the real `bridge` (and, where the fault needs it, a separate `relay serve`)
//! with the stdio fixture server, breaks something on purpose and checks the reliability
//! rules of the design:
//!
//! * the relay link is cut (a TCP proxy between bridge and relay drops every connection and
//!   refuses new ones for a while) under thousands of calls, and the relay is killed and
//!   restarted on the same port: calls in flight get an error, calls made meanwhile wait for
//!   the bridge and succeed, sessions survive, a late answer never reaches another call, and
//!   a flapping link does not keep the bridge away past the relay's grace period;
//! * the bridge is frozen (`SIGSTOP`) past the relay's grace period: the relay answers from
//!   the snapshot and says since when the desktop is offline, and after `SIGCONT` the bridge
//!   is back within seconds;
//! * the server is killed again and again while calls run (shared and `--isolate`);
//! * a client stops reading a streaming answer while other sessions keep being served;
//! * the bridge is killed (`SIGKILL`) or stopped (`SIGTERM`) with a server that ignores
//!   `SIGTERM` and has forked a grandchild: nothing is left behind;
//! * a graceful stop drains the call in flight, and a call past `--call-timeout-secs` is
//!   answered with an error and cancelled on the server.
//!
//! Every test checks the same invariants: every call is answered exactly once within a
//! deadline (no hang), successful answers carry the call's own payload, the fixture ran each
//! call at most once and only calls that got an answer or an error after reaching it
//! (`FIXTURE_RECORD_ECHO=1` records `echoed <text>` per `echo`), no process carrying the
//! test's `FIXTURE_COUNTS` path survives the bridge, and the gauges of `/healthz` and
//! `/status/<name>` return to their baseline (no exchange, no pending request, the same
//! number of server processes).
//!

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::addr_of;
use e2e::cut_proxy::CutProxy;
use e2e::{Bridge, BridgeOpts, Relay, bin};
use protocol::jsonrpc::{INTERNAL_ERROR, REQUEST_TIMEOUT, UNAVAILABLE};
use serde_json::{Value, json};

/// The protocol revision the tests speak.
const MCP_VERSION: &str = "2025-11-25";
/// Longest wait for a status or health request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the gauges to return to their baseline.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

// ----- HTTP client ----------------------------------------------------------------------

/// Where a tunnel is served: the relay's base URL, the tunnel name and the client token.
#[derive(Clone)]
struct Endpoint {
    http: reqwest::Client,
    base: String,
    name: String,
    bearer: Option<String>,
}

impl Endpoint {
    /// The endpoint a bridge printed.
    fn of(bridge: &Bridge) -> Self {
        let url = bridge
            .mcp_url
            .strip_suffix("/mcp")
            .expect("the MCP endpoint ends in /mcp");
        let (base, name) = url.rsplit_once('/').expect("…/<name>/mcp");
        Self {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .expect("HTTP client"),
            base: base.to_owned(),
            name: name.to_owned(),
            bearer: bridge.bearer.clone(),
        }
    }

    fn mcp_url(&self) -> String {
        format!("{}/{}/mcp", self.base, self.name)
    }

    async fn get_json(&self, url: String) -> Option<Value> {
        let mut req = self.http.get(url).timeout(PROBE_TIMEOUT);
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// `GET /status/<name>`, when the relay knows the tunnel.
    async fn status(&self) -> Option<Value> {
        self.get_json(format!("{}/status/{}", self.base, self.name))
            .await
    }

    /// `GET /healthz`.
    async fn health(&self) -> Option<Value> {
        self.get_json(format!("{}/healthz", self.base)).await
    }

    async fn connected(&self) -> bool {
        self.status()
            .await
            .is_some_and(|s| s["connected"] == json!(true))
    }

    /// Waits until the relay reports the bridge connected (`want`) or not; how long it took.
    async fn wait_connected(&self, want: bool, within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.connected().await == want {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: the relay did not report connected={want} within {within:?}");
    }

    /// POSTs one JSON-RPC message (in `session`, if any) and reads the whole answer.
    async fn post(
        &self,
        session: Option<&str>,
        body: &Value,
        limit: Duration,
    ) -> Result<Reply, String> {
        let mut req = self
            .http
            .post(self.mcp_url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MCP_VERSION)
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        let exchange = async {
            let resp = req.send().await.map_err(|e| format!("transport: {e:?}"))?;
            let status = resp.status().as_u16();
            let session = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| format!("transport (body): {e:?}"))?;
            let messages = if sse {
                sse_messages(&bytes)?
            } else if bytes.is_empty() {
                Vec::new()
            } else {
                vec![serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "non-JSON body ({status}): {e}: {}",
                        String::from_utf8_lossy(&bytes)
                    )
                })?]
            };
            Ok(Reply {
                status,
                session,
                messages,
            })
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| format!("no answer within {limit:?} (hang)"))?
    }
}

/// The messages of an SSE body.
fn sse_messages(body: &[u8]) -> Result<Vec<Value>, String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        // A priming event (an id, empty data) carries no message.
        if data.iter().any(|d| !d.trim().is_empty()) {
            let v = serde_json::from_str(&data.join("\n"))
                .map_err(|e| format!("bad SSE event ({e}): {event}"))?;
            out.push(v);
        }
    }
    Ok(out)
}

/// One POST's complete answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    session: Option<String>,
    messages: Vec<Value>,
}

impl Reply {
    /// The one response of this answer, which must answer `id` and come last.
    fn response_to(&self, id: &Value) -> Result<&Value, String> {
        let responses: Vec<&Value> = self
            .messages
            .iter()
            .filter(|m| m.get("method").is_none())
            .collect();
        if let Some(other) = responses.iter().find(|r| r["id"] != *id) {
            return Err(format!(
                "the answer to {id} carries a response to another request: {other}"
            ));
        }
        match responses.as_slice() {
            [r] if self.messages.last() == Some(*r) => Ok(r),
            [_] => Err(format!("messages after the response to {id}")),
            [] => Err(format!("no response to {id} in {:?}", self.messages)),
            _ => Err(format!("{} responses to {id}", responses.len())),
        }
    }
}

/// How a call ended, when it ended acceptably for *some* test.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    /// The tool's answer, with this text.
    Text(String),
    /// A tool error (`isError: true`), with this text.
    ToolError(String),
    /// An HTTP error status with a JSON-RPC error body (id null or the call's), or a
    /// JSON-RPC error response to the call.
    Error {
        status: u16,
        code: i64,
        message: String,
    },
}

/// Reads a call's answer. `Err` means no acceptable answer at all: a hang, a broken
/// connection, a response to another request, or several responses.
fn judge(reply: Result<Reply, String>, id: &Value) -> Result<Got, String> {
    let reply = reply?;
    let error_of = |m: &Value| {
        (
            m["error"]["code"].as_i64().unwrap_or(0),
            m["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    if reply.status != 200 {
        let (code, message) = match reply.messages.as_slice() {
            [m] if m.get("error").is_some() && (m["id"] == *id || m["id"].is_null()) => error_of(m),
            other => {
                return Err(format!(
                    "HTTP {} without a JSON-RPC error for {id}: {other:?}",
                    reply.status
                ));
            }
        };
        return Ok(Got::Error {
            status: reply.status,
            code,
            message,
        });
    }
    let r = reply.response_to(id)?;
    if r.get("error").is_some() {
        let (code, message) = error_of(r);
        return Ok(Got::Error {
            status: 200,
            code,
            message,
        });
    }
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(if r["result"]["isError"] == json!(true) {
        Got::ToolError(text)
    } else {
        Got::Text(text)
    })
}

/// A `tools/call` request.
fn tool_call(id: &Value, tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

/// A Streamable HTTP session.
#[derive(Clone)]
struct Session {
    ep: Endpoint,
    id: String,
}

impl Session {
    /// `initialize` + `notifications/initialized`.
    async fn open(ep: &Endpoint) -> Result<Self, String> {
        let init = json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
            "protocolVersion":MCP_VERSION,"capabilities":{},
            "clientInfo":{"name":"faults-test","version":"1"}}});
        let reply = ep.post(None, &init, Duration::from_secs(20)).await?;
        if reply.status != 200 {
            return Err(format!(
                "initialize: HTTP {}: {:?}",
                reply.status, reply.messages
            ));
        }
        let resp = reply.response_to(&json!("init"))?;
        if resp["result"]["serverInfo"]["name"] != "mcp-fixture" {
            return Err(format!("initialize failed: {resp}"));
        }
        let id = reply.session.clone().ok_or("initialize: no session id")?;
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let r = ep.post(Some(&id), &note, Duration::from_secs(10)).await?;
        if r.status != 202 {
            return Err(format!("notifications/initialized: HTTP {}", r.status));
        }
        Ok(Self { ep: ep.clone(), id })
    }

    /// Opens a session, panicking on failure.
    async fn must_open(ep: &Endpoint) -> Self {
        Self::open(ep)
            .await
            .unwrap_or_else(|e| panic!("cannot open a session: {e}"))
    }

    async fn call(
        &self,
        id: &Value,
        tool: &str,
        args: Value,
        limit: Duration,
    ) -> Result<Got, String> {
        judge(
            self.ep
                .post(Some(&self.id), &tool_call(id, tool, args), limit)
                .await,
            id,
        )
    }

    /// Calls `echo` and checks the answer.
    async fn echo_ok(&self, id: u64, text: &str) {
        let got = self
            .call(
                &json!(id),
                "echo",
                json!({"text": text}),
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(
            got,
            Ok(Got::Text(text.to_owned())),
            "echo {text:?} in session {}",
            self.id
        );
    }

    async fn delete(&self) -> u16 {
        let mut req = self
            .ep
            .http
            .delete(self.ep.mcp_url())
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", MCP_VERSION)
            .timeout(Duration::from_secs(10));
        if let Some(b) = &self.ep.bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

/// The incident id in a "the local MCP server exited (incident …)" message.
fn incident_of(message: &str) -> Option<&str> {
    let rest = &message[message.find("incident ")? + "incident ".len()..];
    let id = rest.get(..8)?;
    id.bytes().all(|b| b.is_ascii_hexdigit()).then_some(id)
}

// ----- processes ------------------------------------------------------------------------

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain syscall signalling a process this test started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

/// Live processes whose environment holds `FIXTURE_COUNTS=<counts>` (the bridge, its
/// guard, its servers and their descendants all inherit it), with their command lines.
fn processes_of(counts: &Path) -> Vec<(u32, String)> {
    let entry = format!("FIXTURE_COUNTS={}", counts.display());
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == entry.as_bytes()) || !alive(pid) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
    }
    found
}

/// Pids of the fixture servers (not grandchildren) of the bridge writing to `counts`.
fn server_pids(counts: &Path) -> Vec<u32> {
    let fixture = bin("mcp-fixture").display().to_string();
    processes_of(counts)
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with(&fixture) && !cmd.contains("--grandchild"))
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits until no process of this bridge (servers, grandchildren, guard) is left.
async fn assert_no_leftovers(counts: &Path, what: &str) {
    let start = Instant::now();
    loop {
        let left = processes_of(counts);
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: processes left behind 5 s after the bridge exited: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of a log, for failure messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Waits for a process to exit without blocking the runtime's other tasks.
fn wait_exit(proc: &mut e2e::Proc, limit: Duration) -> Option<i32> {
    tokio::task::block_in_place(|| proc.wait_exit(limit))
}

/// `SIGTERM`s the bridge, expects exit code 0, and checks nothing is left behind.
async fn stop_bridge(bridge: &mut Bridge, what: &str) {
    bridge.proc.terminate();
    let code = wait_exit(&mut bridge.proc, Duration::from_secs(15));
    assert_eq!(
        code,
        Some(0),
        "{what}: the bridge did not exit cleanly after SIGTERM; log:\n{}",
        tail(&bridge.proc.log_text())
    );
    assert_no_leftovers(&bridge.counts, what).await;
}

/// Waits until the fixture recorded `line` at least `n` times.
async fn wait_count(bridge: &Bridge, line: &str, n: usize, within: Duration) {
    let start = Instant::now();
    while bridge.count(line) < n {
        assert!(
            start.elapsed() < within,
            "the fixture did not record {line:?} {n} times within {within:?}: {:?}",
            bridge.counts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the relay's and bridge's gauges are back to baseline: no exchange at the
/// relay or the bridge, no pending request, `children` server processes, the bridge
/// connected. Returns the last status.
async fn settle(ep: &Endpoint, children: u64, what: &str) -> Value {
    let start = Instant::now();
    let mut last = (None, None);
    while start.elapsed() < SETTLE_TIMEOUT {
        let (st, health) = (ep.status().await, ep.health().await);
        if let (Some(s), Some(h)) = (&st, &health)
            && s["connected"] == json!(true)
            && s["exchanges"] == json!(0)
            && s["bridge"]["pending"] == json!(0)
            && s["bridge"]["exchanges"] == json!(0)
            && s["bridge"]["children"] == json!(children)
            && h["exchanges"] == json!(0)
        {
            return s.clone();
        }
        last = (st, health);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: gauges not back to baseline (children {children}) within {SETTLE_TIMEOUT:?}: \
         status {:?}, healthz {:?}",
        last.0, last.1
    );
}

/// A bridge connected to `relay_url` with `token`, serving the fixture with `env` set.
fn bridge_via(relay_url: &str, token: &str, env: &[(&str, &str)], args: &[&str]) -> Bridge {
    Bridge::start(BridgeOpts {
        relay: Some((relay_url.to_owned(), token.to_owned())),
        env: env_vec(env),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    })
}

fn env_vec(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A `relay serve` on a chosen address (the harness's [`Relay`] always picks a new port).
struct RelayProc {
    child: std::process::Child,
    log: PathBuf,
    base: String,
    _dir: tempfile::TempDir,
}

impl RelayProc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn start(listen: &str, token: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("relay.log");
        let mut child = Command::new(bin("relay"))
            .args(["serve", "--listen", listen])
            .env("RELAY_BRIDGE_TOKENS", token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .process_group(0)
            .spawn()
            .expect("start relay");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let banner = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.starts_with("Relay listening") => break l,
                Ok(_) => {}
                Err(_) => panic!(
                    "relay on {listen} did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        let base = banner
            .rsplit("public URL ")
            .next()
            .expect("url")
            .trim()
            .to_owned();
        Self {
            child,
            log,
            base,
            _dir: dir,
        }
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        // SAFETY: killing the process group created for this relay.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

// ----- bookkeeping of many calls ------------------------------------------------------------

/// One `echo` call of a load run.
#[derive(Debug)]
struct Call {
    text: String,
    started: Instant,
    ended: Instant,
    got: Result<Got, String>,
}

/// The texts the fixture recorded as `echoed <text>`, with how often.
fn echoed(bridge: &Bridge) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in bridge.counts() {
        if let Some(t) = l.strip_prefix("echoed ") {
            *m.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// Whether an error says the call was refused before it reached the server.
fn refused_before_running(message: &str) -> bool {
    message.contains("retry in a moment")
}

/// Checks the fixture's record against the answers: no call ran twice, every success ran,
/// whatever ran got its answer or an error (it was in flight), no refused call ran, and the
/// number of executions (`call echo` lines) lies between the successes and the successes
/// plus the errors of calls that may have reached the server. Returns the executions.
fn check_executions(bridge: &Bridge, calls: &[Call]) -> usize {
    let ran = echoed(bridge);
    let twice: Vec<_> = ran.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "calls executed twice: {twice:?}");
    let by_text: HashMap<&str, &Call> = calls.iter().map(|c| (c.text.as_str(), c)).collect();
    for c in calls {
        if matches!(c.got, Ok(Got::Text(_))) {
            assert!(
                ran.contains_key(&c.text),
                "{:?} succeeded but never ran",
                c.text
            );
        }
    }
    for text in ran.keys() {
        match by_text.get(text.as_str()).map(|c| &c.got) {
            Some(Ok(Got::Text(_))) => {}
            Some(Ok(Got::Error { message, .. })) if !refused_before_running(message) => {}
            Some(other) => panic!("{text:?} ran but its call ended as {other:?}"),
            None => {
                // Checks made outside the load are not in `calls`.
                assert!(
                    text.starts_with("final-") || text.starts_with("probe-"),
                    "the fixture ran {text:?}, which no call sent"
                );
            }
        }
    }
    let executions = bridge.count("call echo");
    let ok = successes(calls);
    let may_have_run = calls
        .iter()
        .filter(|c| matches!(&c.got, Ok(Got::Error { message, .. }) if !refused_before_running(message)))
        .count();
    // A server killed between recording `call echo` and `echoed <text>` leaves fewer of
    // the latter.
    assert!(ran.values().sum::<usize>() <= executions);
    assert!(
        ok <= executions && executions <= ok + may_have_run,
        "{executions} executions for {ok} successes and {may_have_run} errors after \
         reaching the server"
    );
    executions
}

/// Runs `echo` calls from `workers` tasks per session until `stop`, each with a unique id
/// and text. After an error a task backs off 20 ms; with `reopen`, a task whose session is
/// gone (404: its server died under `--isolate`) opens a new one.
fn spawn_echo_load(
    sessions: &[Session],
    workers: usize,
    stop: &Arc<AtomicBool>,
    next_id: &Arc<AtomicU64>,
    limit: Duration,
    reopen: bool,
) -> Vec<tokio::task::JoinHandle<(Vec<Call>, Session)>> {
    let mut tasks = Vec::new();
    for (s, session) in sessions.iter().enumerate() {
        for w in 0..workers {
            let (mut session, stop, next_id) = (session.clone(), stop.clone(), next_id.clone());
            tasks.push(tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = json!(next_id.fetch_add(1, Ordering::SeqCst));
                    let text = format!("s{s}-w{w}-{n}");
                    n += 1;
                    let started = Instant::now();
                    let got = session
                        .call(&id, "echo", json!({"text": text}), limit)
                        .await;
                    let ended = Instant::now();
                    let failed = !matches!(got, Ok(Got::Text(_)));
                    let gone = matches!(got, Ok(Got::Error { status: 404, .. }));
                    calls.push(Call {
                        text,
                        started,
                        ended,
                        got,
                    });
                    if gone && reopen {
                        // The session ended with its server (--isolate): start another.
                        while !stop.load(Ordering::SeqCst) {
                            if let Ok(s) = Session::open(&session.ep).await {
                                session = s;
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    } else if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                (calls, session)
            }));
        }
    }
    tasks
}

/// Waits for the load tasks: all their calls, and the session each ended with.
async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Call>, Session)>>,
) -> (Vec<Call>, Vec<Session>) {
    let (mut all, mut sessions) = (Vec::new(), Vec::new());
    for t in tasks {
        let (calls, session) = t.await.expect("load task");
        all.extend(calls);
        sessions.push(session);
    }
    (all, sessions)
}

/// Asserts no call ended unacceptably (hang, broken answer, another call's answer), and
/// that every answer with text carries the call's own text.
fn assert_all_answered(calls: &[Call]) {
    let bad: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.got {
            Err(e) => Some(format!("{}: {e}", c.text)),
            Ok(Got::Text(t)) if *t != c.text => Some(format!("{}: got {t:?}", c.text)),
            _ => None,
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} calls were not answered properly, e.g. {:?}",
        bad.len(),
        calls.len(),
        &bad[..bad.len().min(10)]
    );
}

fn successes(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c.got, Ok(Got::Text(_))))
        .count()
}

// ----- 1. the relay link is cut under load -------------------------------------------------

/// A cut of the link, as the test saw it.
struct Cut {
    at: Instant,
    reconnected: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn link_cut_during_load() {
    let relay = Relay::start(&[]);
    let proxy = CutProxy::start(addr_of(&relay.base)).await;
    let mut bridge = bridge_via(
        &proxy.url(),
        &relay.token,
        &[("FIXTURE_RECORD_ECHO", "1")],
        &[],
    );
    let ep = Endpoint::of(&bridge);
    ep.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    settle(&ep, 1, "before the load").await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(Session::must_open(&ep).await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let tasks = spawn_echo_load(
        &sessions,
        2,
        &stop,
        &next_id,
        Duration::from_secs(30),
        false,
    );
    let mut cuts = Vec::new();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..3 {
        let at = Instant::now();
        proxy.cut();
        ep.wait_connected(false, Duration::from_secs(2), "after a cut")
            .await;
        tokio::time::sleep(Duration::from_millis(1500).saturating_sub(at.elapsed())).await;
        proxy.resume();
        let resumed = Instant::now();
        ep.wait_connected(true, Duration::from_secs(9), &format!("after cut {i}"))
            .await;
        let reconnected = Instant::now();
        eprintln!(
            "cut {i}: link down {:?}, bridge back {:?} after the link",
            resumed - at,
            reconnected - resumed
        );
        cuts.push(Cut { at, reconnected });
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (calls, _) = join_all(tasks).await;

    assert_all_answered(&calls);
    // The relay drops its side of the link at once; allow it this long to notice.
    let notice = Duration::from_millis(300);
    let in_flight_at_cut = |c: &Call| {
        cuts.iter()
            .any(|cut| c.started < cut.at + notice && c.ended >= cut.at)
    };
    let mut waited = 0;
    let mut errors = 0;
    for c in &calls {
        match c.got.as_ref().expect("checked") {
            Got::Text(_) => {}
            Got::Error { status, .. } => {
                errors += 1;
                assert!(
                    in_flight_at_cut(c),
                    "{} failed without being in flight at a cut: {:?}",
                    c.text,
                    c.got
                );
                assert!(
                    *status == 503 || *status == 200,
                    "{}: status {status}",
                    c.text
                );
            }
            Got::ToolError(t) => panic!("{}: answered as offline: {t}", c.text),
        }
        // Held across a cut: made after the link went down, answered once it was back.
        if matches!(c.got, Ok(Got::Text(_)))
            && cuts.iter().any(|cut| {
                c.started >= cut.at && c.started < cut.reconnected && c.ended >= cut.reconnected
            })
        {
            waited += 1;
        }
    }
    assert!(
        waited > 0,
        "no call made while the link was down was held and answered after it"
    );
    let ran = check_executions(&bridge, &calls);
    let ok = successes(&calls);
    assert!(
        calls.len() >= 2000,
        "only {} calls in the load run",
        calls.len()
    );
    eprintln!(
        "link_cut_during_load: {} calls, {ok} answered, {errors} errors (in flight at a cut), \
         {waited} made while the link was down (all answered), {ran} executed",
        calls.len()
    );

    // The sessions survived the cuts.
    for (i, s) in sessions.iter().enumerate() {
        s.echo_ok(1_000_000 + i as u64, &format!("final-{i}")).await;
    }
    let st = settle(&ep, 1, "after the load").await;
    assert_eq!(st["bridge"]["sessions"], json!(sessions.len()), "{st}");
    assert_eq!(st["bridge"]["restarts"], json!(0), "{st}");
    stop_bridge(&mut bridge, "link_cut_during_load").await;
}

/// A call in flight when the link drops is answered by the server after the bridge has
/// reconnected; its answer must go nowhere, not to the call that now has the same
/// exchange number on the new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answer_after_reconnect_reaches_no_other_call() {
    let relay = Relay::start(&[]);
    let proxy = CutProxy::start(addr_of(&relay.base)).await;
    let mut bridge = bridge_via(&proxy.url(), &relay.token, &[], &[]);
    let ep = Endpoint::of(&bridge);
    ep.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    let a = Session::must_open(&ep).await;
    let old = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call(
                &json!("old"),
                "slow",
                json!({"ms": 3000, "tag": "old"}),
                Duration::from_secs(20),
            )
            .await
        })
    };
    wait_count(&bridge, "call slow", 1, Duration::from_secs(5)).await;
    proxy.cut();
    ep.wait_connected(false, Duration::from_secs(2), "cut")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.resume();
    ep.wait_connected(true, Duration::from_secs(9), "reconnect")
        .await;
    // New calls take exchange numbers 1, 2, … on the new connection, the old call's among
    // them; they are still running when the old call's answer comes.
    let b = Session::must_open(&ep).await;
    let mut news = Vec::new();
    for i in 0..24 {
        let b = b.clone();
        news.push(tokio::spawn(async move {
            let got = b
                .call(
                    &json!(format!("new-{i}")),
                    "slow",
                    json!({"ms": 4000, "tag": format!("new-{i}")}),
                    Duration::from_secs(20),
                )
                .await;
            (i, got)
        }));
    }
    let old = old.await.expect("task");
    assert!(
        matches!(old, Ok(Got::Error { .. })),
        "the call in flight at the cut: {old:?}"
    );
    for t in news {
        let (i, got) = t.await.expect("task");
        assert_eq!(
            got,
            Ok(Got::Text(format!("done new-{i}"))),
            "call new-{i} after the reconnect"
        );
    }
    assert_eq!(bridge.count("call slow"), 25);
    settle(&ep, 1, "after the late answer").await;
    stop_bridge(&mut bridge, "late answer").await;
}

/// A flapping link (down 0.5 s, up 2 s, six times): each time the bridge must be back
/// within a few seconds of the link, well inside the relay's 10 s grace period, so a call
/// made while the link is down waits and succeeds instead of being answered "offline".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brief_flaps_reconnect_within_grace() {
    let relay = Relay::start(&[]);
    let proxy = CutProxy::start(addr_of(&relay.base)).await;
    let mut bridge = bridge_via(&proxy.url(), &relay.token, &[], &[]);
    let ep = Endpoint::of(&bridge);
    ep.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    let s = Session::must_open(&ep).await;
    let mut outcomes = Vec::new();
    for i in 0..6u64 {
        proxy.cut();
        ep.wait_connected(false, Duration::from_secs(2), "cut")
            .await;
        let during = {
            let s = s.clone();
            tokio::spawn(async move {
                s.call(
                    &json!(i),
                    "echo",
                    json!({"text": format!("probe-{i}")}),
                    Duration::from_secs(45),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.resume();
        let back = ep
            .wait_connected(true, Duration::from_secs(40), "after a flap")
            .await;
        let got = during.await.expect("task");
        eprintln!("flap {i}: the bridge was back {back:?} after the link; the call: {got:?}");
        outcomes.push((i, back, got));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (i, back, got) in outcomes {
        assert_eq!(got, Ok(Got::Text(format!("probe-{i}"))), "flap {i}");
        assert!(
            back < Duration::from_secs(3),
            "flap {i}: back after {back:?}"
        );
    }
    settle(&ep, 1, "after the flaps").await;
    stop_bridge(&mut bridge, "flaps").await;
}

// ----- 2. the bridge frozen past the grace period -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_bridge_past_grace() {
    let relay = Relay::start(&["--grace-secs", "2", "--keepalive-secs", "2"]);
    let mut bridge = bridge_via(&relay.base, &relay.token, &[], &[]);
    let ep = Endpoint::of(&bridge);
    ep.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    settle(&ep, 1, "start").await;
    let a = Session::must_open(&ep).await;
    a.echo_ok(1, "probe-before").await;
    // Let the bridge's snapshot (initialize result and tools list) reach the relay.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pid = bridge.proc.pid();
    signal(pid, libc::SIGSTOP);
    let stopped = Instant::now();
    let during = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call(
                &json!(2),
                "echo",
                json!({"text": "probe-during"}),
                Duration::from_secs(40),
            )
            .await
        })
    };
    // The relay notices the silent link (no ping for 15 s), then waits out the grace.
    let noticed = ep
        .wait_connected(false, Duration::from_secs(25), "while stopped")
        .await;
    eprintln!("the relay noticed the frozen bridge after {noticed:?}");
    let during = tokio::time::timeout(Duration::from_secs(5), during)
        .await
        .expect("the call made at the freeze is answered once the link is dropped")
        .expect("task");
    assert!(
        matches!(
            during,
            Ok(Got::Error { status: 503, .. } | Got::Error { status: 200, .. })
        ),
        "the call sent to the frozen bridge: {during:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Offline answers, from the snapshot.
    let init = json!({"jsonrpc":"2.0","id":10,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = ep
        .post(None, &init, Duration::from_secs(5))
        .await
        .expect("offline initialize");
    assert_eq!(r.status, 200, "{r:?}");
    let resp = r.response_to(&json!(10)).expect("initialize answered");
    assert_eq!(
        resp["result"]["serverInfo"]["name"], "mcp-fixture",
        "{resp}"
    );
    assert_eq!(resp["result"]["protocolVersion"], "2025-06-18", "{resp}");
    let list = json!({"jsonrpc":"2.0","id":11,"method":"tools/list"});
    let r = ep
        .post(None, &list, Duration::from_secs(5))
        .await
        .expect("offline tools/list");
    let resp = r.response_to(&json!(11)).expect("tools/list answered");
    let tools: Vec<&str> = resp["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(tools.contains(&"echo"), "offline tools/list: {resp}");
    for got in [
        judge(
            ep.post(
                None,
                &tool_call(&json!(12), "echo", json!({"text":"x"})),
                Duration::from_secs(5),
            )
            .await,
            &json!(12),
        ),
        a.call(
            &json!(13),
            "echo",
            json!({"text": "x"}),
            Duration::from_secs(5),
        )
        .await,
    ] {
        match got {
            Ok(Got::ToolError(t)) => assert!(
                t.contains("offline since 20"),
                "the offline tool error says since when: {t}"
            ),
            other => panic!("offline tools/call: {other:?}"),
        }
    }
    eprintln!("SIGCONT after {:?}", stopped.elapsed());

    signal(pid, libc::SIGCONT);
    let back = ep
        .wait_connected(true, Duration::from_secs(5), "after SIGCONT")
        .await;
    eprintln!("the bridge was back {back:?} after SIGCONT");
    // The session lives in the bridge and survived.
    a.echo_ok(3, "probe-after").await;
    let ran = bridge.count("call echo");
    assert!(
        (2..=3).contains(&ran),
        "echo ran {ran} times for 2 answered calls and 1 in flight"
    );
    settle(&ep, 1, "after SIGCONT").await;
    stop_bridge(&mut bridge, "sigstop").await;
}

// ----- 3. the server killed again and again ---------------------------------------------------

/// Checks the errors of a run where servers were killed: each is an incident error for a
/// call in flight (the incident id is in the bridge's log), a "starting / being restarted"
/// error for a call made while the server was down, or (`--isolate`) a 404 for a session
/// whose server died. Returns (incident errors, other errors).
fn check_crash_errors(calls: &[Call], log: &str, isolate: bool) -> (usize, usize) {
    let (mut incidents, mut others) = (0, 0);
    for c in calls {
        let Ok(Got::Error {
            status,
            code,
            message,
        }) = &c.got
        else {
            continue;
        };
        if *status == 200 && *code == INTERNAL_ERROR {
            let id = incident_of(message)
                .unwrap_or_else(|| panic!("{}: an error without incident id: {message}", c.text));
            assert!(log.contains(id), "incident {id} is not in the bridge's log");
            incidents += 1;
        } else if (*status == 200 && *code == UNAVAILABLE && refused_before_running(message))
            || (isolate && *status == 404)
        {
            others += 1;
        } else {
            panic!("{}: unexpected error {:?}", c.text, c.got);
        }
    }
    (incidents, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_killed_repeatedly() {
    // A server that was serving is restarted at once (the crash-loop guard only slows
    // down servers that fail to start, or exit over 120 times a minute): one `exit`, then
    // 99 SIGKILLs of the shared server during calls.
    const CRASHES: u64 = 100;
    let mut bridge = Bridge::start(BridgeOpts {
        env: env_vec(&[("FIXTURE_RECORD_ECHO", "1")]),
        ..Default::default()
    });
    let ep = Endpoint::of(&bridge);
    settle(&ep, 1, "start").await;
    let sessions = [
        Session::must_open(&ep).await,
        Session::must_open(&ep).await,
        Session::must_open(&ep).await,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let tasks = spawn_echo_load(
        &sessions,
        2,
        &stop,
        &next_id,
        Duration::from_secs(20),
        false,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Crash 1: the server exits in the middle of a call; that call gets an incident error.
    let got = sessions[0]
        .call(
            &json!("exit"),
            "exit",
            json!({"code": 3}),
            Duration::from_secs(10),
        )
        .await;
    match &got {
        Ok(Got::Error { code, message, .. }) if *code == INTERNAL_ERROR => {
            assert!(incident_of(message).is_some(), "{message}")
        }
        other => panic!("the call that made the server exit: {other:?}"),
    }
    let mut last_pid = 0;
    for crash in 1..CRASHES {
        // Wait for the restarted server, then kill it.
        let start = Instant::now();
        let pid = loop {
            let pids = server_pids(&bridge.counts);
            if let [pid] = pids[..]
                && pid != last_pid
            {
                break pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no restart {crash}: servers {pids:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Let it finish starting (and take calls) before killing it.
        tokio::time::sleep(Duration::from_millis(120)).await;
        signal(pid, libc::SIGKILL);
        last_pid = pid;
    }
    // After the last kill the server comes back (after the backoff) and calls succeed.
    let start = Instant::now();
    while ep.status().await.map(|s| s["bridge"]["restarts"].clone()) != Some(json!(CRASHES)) {
        assert!(start.elapsed() < Duration::from_secs(15), "no last restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (calls, _) = join_all(tasks).await;
    assert_all_answered(&calls);
    assert!(
        !calls.iter().any(|c| matches!(c.got, Ok(Got::ToolError(_)))),
        "tool errors during the kills"
    );
    let log = bridge.proc.log_text();
    let (incidents, others) = check_crash_errors(&calls, &log, false);
    let ran = check_executions(&bridge, &calls);
    let ok = successes(&calls);
    for (i, s) in sessions.iter().enumerate() {
        s.echo_ok(1_000_000 + i as u64, &format!("final-{i}")).await;
    }
    eprintln!(
        "child_killed_repeatedly: {} calls, {ok} answered, {incidents} incident errors, \
         {others} 'retry' errors while restarting, {ran} executed",
        calls.len()
    );
    let st = settle(&ep, 1, "after the kills").await;
    assert_eq!(st["bridge"]["restarts"], json!(CRASHES), "{st}");
    assert_eq!(st["bridge"]["sessions"], json!(sessions.len()), "{st}");
    stop_bridge(&mut bridge, "child_killed_repeatedly").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_children_killed_100_times() {
    const KILLS: usize = 100;
    let mut bridge = Bridge::start(BridgeOpts {
        isolate: true,
        env: env_vec(&[("FIXTURE_RECORD_ECHO", "1")]),
        ..Default::default()
    });
    let ep = Endpoint::of(&bridge);
    settle(&ep, 0, "start").await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(Session::must_open(&ep).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let tasks = spawn_echo_load(&sessions, 1, &stop, &next_id, Duration::from_secs(20), true);
    let mut killed = HashSet::new();
    let start = Instant::now();
    while killed.len() < KILLS {
        let pids = server_pids(&bridge.counts);
        match pids.iter().find(|p| !killed.contains(*p)) {
            Some(&pid) => {
                signal(pid, libc::SIGKILL);
                killed.insert(pid);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} kills in 60 s",
            killed.len()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (calls, mut last) = join_all(tasks).await;
    assert_all_answered(&calls);
    let log = bridge.proc.log_text();
    let (incidents, others) = check_crash_errors(&calls, &log, true);
    let ran = check_executions(&bridge, &calls);
    let ok = successes(&calls);
    eprintln!(
        "isolated_children_killed_100_times: {KILLS} kills in {:?}, {} calls, {ok} answered, \
         {incidents} incident errors, {others} other errors, {ran} executed",
        start.elapsed(),
        calls.len()
    );
    // New sessions work; ending every session stops every server.
    for i in 0..4 {
        let s = Session::must_open(&ep).await;
        s.echo_ok(1_000_000 + i, &format!("final-{i}")).await;
        last.push(s);
    }
    for s in &last {
        let status = s.delete().await;
        assert!(status == 200 || status == 404, "DELETE: {status}");
    }
    let st = settle(&ep, 0, "after the kills").await;
    assert_eq!(st["bridge"]["sessions"], json!(0), "{st}");
    assert!(server_pids(&bridge.counts).is_empty());
    stop_bridge(&mut bridge, "isolated kills").await;
}

// ----- 4. the relay restarts ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart() {
    let token = format!("faults-restart-{:0>24}", std::process::id());
    let relay = RelayProc::start("127.0.0.1:0", &token);
    let addr = addr_of(&relay.base);
    let mut bridge = bridge_via(&relay.base, &token, &[("FIXTURE_RECORD_ECHO", "1")], &[]);
    let ep = Endpoint::of(&bridge);
    ep.wait_connected(true, Duration::from_secs(10), "start")
        .await;
    settle(&ep, 1, "start").await;
    let a = Session::must_open(&ep).await;
    let b = Session::must_open(&ep).await;
    a.echo_ok(1, "probe-a").await;
    b.echo_ok(2, "probe-b").await;
    let in_flight = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call(
                &json!(3),
                "slow",
                json!({"ms": 1500, "tag": "in-flight"}),
                Duration::from_secs(20),
            )
            .await
        })
    };
    wait_count(&bridge, "call slow", 1, Duration::from_secs(5)).await;

    drop(relay);
    let killed = Instant::now();
    let relay = RelayProc::start(&addr.to_string(), &token);
    let restarted = killed.elapsed();
    let back = ep
        .wait_connected(true, Duration::from_secs(10), "after the relay restart")
        .await;
    eprintln!("relay restarted in {restarted:?}; the bridge was back {back:?} later");
    let got = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the call in flight when the relay died ends")
        .expect("task");
    assert!(
        matches!(&got, Err(e) if e.starts_with("transport"))
            || matches!(got, Ok(Got::Error { .. })),
        "the call in flight when the relay died: {got:?}; relay log:\n{}",
        tail(&relay.log_text())
    );
    // Sessions live in the bridge: both still work through the new relay.
    a.echo_ok(4, "probe-a-after").await;
    b.echo_ok(5, "probe-b-after").await;
    let fresh = Session::must_open(&ep).await;
    fresh.echo_ok(6, "probe-fresh").await;
    assert_eq!(bridge.count("call slow"), 1, "the slow call ran once");
    assert_eq!(bridge.count("call echo"), 5);
    let st = settle(&ep, 1, "after the relay restart").await;
    assert_eq!(st["bridge"]["sessions"], json!(3), "{st}");
    stop_bridge(&mut bridge, "relay_restart").await;
    drop(relay);
}

// ----- 5. a client that stops reading -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_sse_reader() {
    let mut bridge = Bridge::start(BridgeOpts {
        env: env_vec(&[("FIXTURE_RECORD_ECHO", "1")]),
        ..Default::default()
    });
    let ep = Endpoint::of(&bridge);
    settle(&ep, 1, "start").await;
    let stalled = Session::must_open(&ep).await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(Session::must_open(&ep).await);
    }

    // 1000 progress notifications of 32 KiB: far more than the relay's queue and the
    // sockets' buffers hold.
    let flood_id = json!("flood");
    let body = json!({"jsonrpc":"2.0","id":flood_id,"method":"tools/call","params":{
        "name":"flood","arguments":{"count":1000,"bytes":32768},
        "_meta":{"progressToken":"flood-progress"}}});
    let mut req = ep
        .http
        .post(ep.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MCP_VERSION)
        .header("mcp-session-id", &stalled.id)
        .body(body.to_string());
    if let Some(t) = &ep.bearer {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.expect("flood POST");
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the stream starts")
        .expect("stream");
    assert!(first.is_some(), "the flood's stream is empty");
    // Stop reading `resp` now.

    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let tasks = spawn_echo_load(&others, 1, &stop, &next_id, Duration::from_secs(20), false);
    let start = Instant::now();
    loop {
        let dropped = bridge
            .proc
            .log_text()
            .contains("a client is not reading its stream");
        let ran = bridge.count("call flood") == 1;
        let idle = ep
            .status()
            .await
            .is_some_and(|s| s["bridge"]["pending"] == json!(0));
        if dropped && ran && idle && start.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the flood did not finish (dropped {dropped}, ran {ran}, idle {idle}); log:\n{}",
            tail(&bridge.proc.log_text())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (calls, _) = join_all(tasks).await;
    assert_all_answered(&calls);
    assert_eq!(successes(&calls), calls.len(), "other sessions got errors");
    let mut lat: Vec<Duration> = calls.iter().map(|c| c.ended - c.started).collect();
    lat.sort();
    let (p50, max) = (lat[lat.len() / 2], lat[lat.len() - 1]);
    eprintln!(
        "stalled_sse_reader: {} calls from other sessions while one stalled, p50 {p50:?}, max {max:?}",
        calls.len()
    );
    assert!(calls.len() >= 100, "only {} calls", calls.len());
    assert!(
        max < Duration::from_secs(2),
        "another session waited {max:?} behind the stalled reader"
    );
    check_executions(&bridge, &calls);

    // The stalled client reads again: what is left of its stream ends, with one response
    // to its request (the answer, or an error since the relay gave up on the stream).
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = first.expect("checked").to_vec();
        while let Some(c) = resp.chunk().await.map_err(|e| e.to_string())? {
            buf.extend_from_slice(&c);
        }
        Ok::<_, String>(buf)
    })
    .await
    .expect("the stalled stream ends")
    .expect("stream");
    let messages = sse_messages(&rest).expect("SSE");
    let progress = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    let reply = Reply {
        status: 200,
        session: None,
        messages,
    };
    let last = reply
        .response_to(&flood_id)
        .expect("one response to the stalled call");
    eprintln!(
        "the stalled reader got {progress} progress notifications, then {}",
        {
            let s = last.to_string();
            s[..s.len().min(300)].to_owned()
        }
    );
    assert!(progress < 1000, "the relay buffered the whole flood");
    assert_eq!(bridge.count("call flood"), 1);
    settle(&ep, 1, "after the stall").await;
    stop_bridge(&mut bridge, "stalled_sse_reader").await;
}

// ----- 6. no orphans ----------------------------------------------------------------------

/// Starts a bridge whose server ignores SIGTERM and has forked a grandchild, stops the
/// bridge (`SIGKILL`, or `SIGTERM` when `graceful`), and checks neither survives.
async fn orphans_case(graceful: bool) {
    let what = if graceful { "SIGTERM" } else { "SIGKILL" };
    let mut bridge = Bridge::start(BridgeOpts {
        env: env_vec(&[("FIXTURE_IGNORE_SIGTERM", "1")]),
        ..Default::default()
    });
    let ep = Endpoint::of(&bridge);
    let s = Session::must_open(&ep).await;
    let got = s
        .call(
            &json!(1),
            "spawn_grandchild",
            json!({}),
            Duration::from_secs(10),
        )
        .await;
    let Ok(Got::Text(pid)) = got else {
        panic!("spawn_grandchild: {got:?}")
    };
    let grandchild: u32 = pid.parse().expect("pid");
    let servers = server_pids(&bridge.counts);
    assert_eq!(servers.len(), 1, "{:?}", processes_of(&bridge.counts));
    let server = servers[0];
    assert!(alive(server) && alive(grandchild));
    assert!(
        processes_of(&bridge.counts)
            .iter()
            .any(|(_, c)| c.contains("__guard")),
        "no orphan guard process: {:?}",
        processes_of(&bridge.counts)
    );
    let start = Instant::now();
    if graceful {
        bridge.proc.terminate();
    } else {
        signal(bridge.proc.pid(), libc::SIGKILL);
    }
    let code = wait_exit(&mut bridge.proc, Duration::from_secs(15));
    if graceful {
        assert_eq!(code, Some(0), "{what}: {}", tail(&bridge.proc.log_text()));
    } else {
        assert!(code.is_some(), "{what}: the bridge did not die");
    }
    assert_no_leftovers(&bridge.counts, what).await;
    assert!(!alive(server) && !alive(grandchild));
    eprintln!(
        "{what}: server and grandchild gone {:?} after the signal",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_orphans_after_sigkill() {
    tokio::join!(orphans_case(false), orphans_case(true));
}

// ----- 7. graceful shutdown -----------------------------------------------------------------

/// SIGTERM while a 2 s call runs: the call is answered, requests after the signal get 503,
/// the bridge exits 0 well within its 10 s drain deadline.
async fn drain_case(mut bridge: Bridge, what: &str) {
    let ep = Endpoint::of(&bridge);
    let a = Session::must_open(&ep).await;
    let b = Session::must_open(&ep).await;
    let slow = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call(
                &json!(1),
                "slow",
                json!({"ms": 2000, "tag": "drain"}),
                Duration::from_secs(15),
            )
            .await
        })
    };
    wait_count(&bridge, "call slow", 1, Duration::from_secs(5)).await;
    bridge.proc.terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = b
        .call(
            &json!(2),
            "echo",
            json!({"text": "after"}),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(after, Ok(Got::Error { status: 503, .. })),
        "{what}: a call after SIGTERM: {after:?}"
    );
    let init = Session::open(&ep).await.err().unwrap_or_default();
    assert!(
        init.contains("HTTP 503"),
        "{what}: a new session after SIGTERM: {init}"
    );
    let slow = slow.await.expect("task");
    let code = wait_exit(&mut bridge.proc, Duration::from_secs(12));
    let log = bridge.proc.log_text();
    assert_eq!(code, Some(0), "{what}: exit code; log:\n{}", tail(&log));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(
        bridge.count("call echo"),
        0,
        "{what}: refused calls never ran"
    );
    assert_no_leftovers(&bridge.counts, what).await;
    // A separate relay outlives the bridge: nothing may be left open there.
    if let Some(h) = ep.health().await {
        assert_eq!(h["exchanges"], json!(0), "{what}: {h}");
    }
    assert_eq!(
        slow,
        Ok(Got::Text("done drain".into())),
        "{what}: the call in flight at SIGTERM; log:\n{}",
        tail(&log)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains() {
    drain_case(Bridge::start(BridgeOpts::default()), "embedded relay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_separate_relay() {
    let relay = Relay::start(&[]);
    let bridge = bridge_via(&relay.base, &relay.token, &[], &[]);
    drain_case(bridge, "separate relay").await;
}

// ----- 8. call timeouts ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_cancels() {
    let mut bridge = Bridge::start(BridgeOpts {
        args: vec!["--call-timeout-secs".into(), "1".into()],
        ..Default::default()
    });
    let ep = Endpoint::of(&bridge);
    settle(&ep, 1, "start").await;
    let s = Session::must_open(&ep).await;
    let start = Instant::now();
    let got = s
        .call(
            &json!(7),
            "slow",
            json!({"ms": 10_000, "tag": "late"}),
            Duration::from_secs(8),
        )
        .await;
    let took = start.elapsed();
    match &got {
        Ok(Got::Error {
            status: 200, code, ..
        }) if *code == REQUEST_TIMEOUT => {}
        other => panic!("a call past the timeout: {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    wait_count(&bridge, "cancelled late", 1, Duration::from_secs(3)).await;
    s.echo_ok(8, "after-timeout").await;
    settle(&ep, 1, "after the timeout").await;
    assert_eq!(bridge.count("call slow"), 1);
    stop_bridge(&mut bridge, "call_timeout_cancels").await;
}
