//! Nodes failing under load, and floods that must not take a node's database from the
//! others (the scale-out design's S5 and S6, with the real engines: three `relay serve`
//! nodes on one PostgreSQL database behind Debian's HAProxy with the shipped
//! configuration, six bridges of the fixture, two dozen client sessions calling `echo`
//! with a text of their own each time, so that the fixture's record of what it echoed
//! shows every call that ran).
//!
//! - `kill_9_of_a_node_under_load_answers_every_call_once`: a node holding tunnels is
//!   killed with SIGKILL mid-load. Every call gets exactly one answer (none is silent
//!   past the client's 30 s, none gets two); the only errors are calls that were in
//!   flight on the killed node's tunnels at the kill; nothing runs twice; every bridge
//!   is connected again where HAProxy sends its requests. The node restarted on its port
//!   gets its tunnels back (the requests HAProxy sends it ask for them) without one call
//!   failing.
//! - `a_rolling_restart_fails_no_call`: each node in turn stopped with SIGTERM (its
//!   `/readyz` says 503 for longer than HAProxy takes to notice), restarted on its port
//!   and taken back by HAProxy, under load: not one call fails.
//! - `a_flood_of_unknown_tunnel_names_stalls_nothing`: thousands of concurrent requests
//!   for tunnels that never existed, to the MCP endpoint and to the OAuth metadata, from
//!   many addresses: a tunnel on the node keeps answering, and what needs the database
//!   (fresh access tokens, a refresh, a client registration) still gets it.
//! - `a_bridge_flooding_store_writes_starves_no_one`: a bridge (made by hand, speaking
//!   the real protocol) sends snapshots and consent decisions in a tight loop, each one a
//!   database write or lookup: meanwhile another tunnel's calls, fresh access tokens, a
//!   refresh and a client registration on the same node all succeed.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::http::BlockingHttp;
use e2e::mcp::{
    HANDSHAKE_2025_06, McpClient, Reply, no_headers, notification, session_headers, tool_call,
};
use e2e::postgres::Postgres;
use e2e::{Bridge, BridgeOpts, Proc, Relay, unused_port};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long a client waits for an answer before it counts the call as unanswered.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Tunnel names HAProxy's consistent hash (server ids 1 to 3) spreads two to a node.
const TUNNELS: [&str; 6] = ["lb-1", "lb-2", "lb-3", "lb-4", "lb-5", "lb-9"];

/// Client sessions per tunnel.
const SESSIONS_PER_TUNNEL: usize = 4;

/// Three relay nodes on one database behind HAProxy, and a bridge of the fixture (no
/// client authentication, every `echo` recorded) for each of [`TUNNELS`].
struct Cluster {
    url: String,
    token: String,
    /// HAProxy's address, every node's public URL.
    public: String,
    ports: Vec<u16>,
    /// The running nodes (`None` while one is down).
    nodes: Vec<Option<Relay>>,
    /// Nodes that were stopped, for their logs.
    retired: Vec<(usize, Relay)>,
    /// `--drain-delay-secs` of every node.
    drain_delay: u64,
    dir: tempfile::TempDir,
    _lb: Proc,
    bridges: Vec<Bridge>,
    names: Vec<String>,
}

impl Cluster {
    fn start(drain_delay: u64) -> Self {
        let url = Postgres::shared().new_database();
        let token = crate::create_token(&url, "alice");
        let dir = tempfile::tempdir().expect("temp dir");
        let lb_port = unused_port();
        let public = format!("http://127.0.0.1:{lb_port}");
        let ports: Vec<u16> = (0..3).map(|_| unused_port()).collect();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            crate::cluster::haproxy_config(
                dir.path(),
                &format!("127.0.0.1:{lb_port}"),
                None,
                &ports,
            ),
        )
        .expect("write config");
        let mut lb = Command::new("haproxy");
        lb.arg("-db").arg("-f").arg(&cfg);
        let mut c = Self {
            url,
            token,
            public,
            ports,
            nodes: Vec::new(),
            retired: Vec::new(),
            drain_delay,
            _lb: Proc::start(lb, "haproxy"),
            dir,
            bridges: Vec::new(),
            names: TUNNELS.iter().map(|n| (*n).to_owned()).collect(),
        };
        c.nodes = (0..3).map(|i| Some(c.node(i))).collect();
        for i in 0..3 {
            c.wait_up(i, "every node up in HAProxy");
        }
        c.bridges = c
            .names
            .iter()
            .map(|name| {
                BridgeOpts::default()
                    .via_url(&c.public, &c.token)
                    .name(name)
                    .no_auth()
                    .env(&[("FIXTURE_RECORD_ECHO", "1")])
                    .start()
            })
            .collect();
        c
    }

    /// Starts node `i` (`r<i+1>`) on its port.
    fn node(&self, i: usize) -> Relay {
        Relay::start_with_token(
            &format!("127.0.0.1:{}", self.ports[i]),
            &self.token,
            &[
                "--database-url",
                &self.url,
                "--public-url",
                &self.public,
                "--node-id",
                &format!("r{}", i + 1),
                "--trusted-proxy",
                "127.0.0.1/32",
                "--drain-delay-secs",
                &self.drain_delay.to_string(),
            ],
            &[],
        )
    }

    /// Which node holds each tunnel's bridge (from their logs), once every one is held.
    fn holders(&self) -> Vec<usize> {
        self.names
            .iter()
            .map(|n| {
                e2e::wait::eventually(Duration::from_secs(10), || {
                    crate::cluster::holder(&self.nodes, n)
                })
                .unwrap_or_else(|| panic!("no node holds {n}"))
            })
            .collect()
    }

    /// HAProxy's view of each node (`UP`, `DOWN`, `UP 1/3`, …), from its admin socket.
    fn lb_states(&self) -> Vec<String> {
        use std::io::{Read, Write};
        let Ok(mut sock) =
            std::os::unix::net::UnixStream::connect(self.dir.path().join("admin.sock"))
        else {
            return Vec::new();
        };
        let mut csv = String::new();
        if sock.write_all(b"show stat\n").is_err() || sock.read_to_string(&mut csv).is_err() {
            return Vec::new();
        }
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return Vec::new();
        };
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        (1..=3)
            .map(|i| {
                rows.iter()
                    .find(|r| r.get(px) == Some(&"relays") && r.get(sv) == Some(&&*format!("r{i}")))
                    .and_then(|r| r.get(st))
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits until HAProxy sees node `i` up (its checks passed, `/readyz` answering 200).
    fn wait_up(&self, i: usize, what: &str) {
        let seen = e2e::wait::eventually(Duration::from_secs(30), || {
            let state = self.lb_states().get(i).cloned().unwrap_or_default();
            (state == "UP").then_some(())
        });
        assert!(
            seen.is_some(),
            "{what}: HAProxy sees r{} as {:?}",
            i + 1,
            self.lb_states()
        );
    }

    /// Whether, through HAProxy, every tunnel's bridge is on the node its requests go to.
    fn all_connected(&self, http: &BlockingHttp) -> bool {
        self.names.iter().all(|n| {
            http.try_send(
                http.client
                    .get(format!("{}/status/{n}", self.public))
                    .timeout(Duration::from_secs(5)),
            )
            .ok()
            .filter(|a| a.status == 200)
            .is_some_and(|a| a.json()["connected"] == json!(true))
        })
    }

    /// The logs of every node, stopped ones included, for failure messages (the last 40
    /// lines of each that are not one request's).
    fn logs(&self) -> String {
        let current = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)));
        let retired = self.retired.iter().map(|(i, n)| (*i, n));
        retired
            .chain(current)
            .map(|(i, n)| {
                let log: Vec<String> = n
                    .proc
                    .log_text()
                    .lines()
                    .filter(|l| !l.contains("relay::request"))
                    .map(str::to_owned)
                    .collect();
                format!(
                    "--- r{} ---\n{}",
                    i + 1,
                    e2e::process::tail(&log.join("\n"))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What a client asked.
#[derive(Debug, Clone)]
enum Kind {
    /// `initialize` and `notifications/initialized`: a new session.
    Initialize,
    /// `tools/call echo` with this text.
    Echo(String),
}

/// What came back.
#[derive(Debug, Clone)]
enum Outcome {
    /// The right answer.
    Answered,
    /// An error (an HTTP error, a JSON-RPC or tool error, an answer broken off).
    Failed(String),
    /// Nothing within [`CLIENT_TIMEOUT`].
    Silent(String),
    /// More than one response.
    Twice(String),
}

/// One call of the load.
#[derive(Debug, Clone)]
struct Call {
    tunnel: usize,
    kind: Kind,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

impl Call {
    fn answered(&self) -> bool {
        matches!(self.outcome, Outcome::Answered)
    }
}

/// Client sessions through HAProxy, each calling `echo` in a loop (a new session when the
/// old one is gone), every call recorded.
struct Load {
    rt: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(public: &str, names: &[String], per_tunnel: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let http = e2e::http::client_with(CLIENT_TIMEOUT + Duration::from_secs(10));
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (t, name) in names.iter().enumerate() {
            for s in 0..per_tunnel {
                let client =
                    McpClient::with_http(http.clone(), &format!("{public}/{name}/mcp"), None)
                        .with_limit(CLIENT_TIMEOUT);
                tasks.push(rt.spawn(session(
                    client,
                    t,
                    format!("{name}-s{s}"),
                    stop.clone(),
                    calls.clone(),
                )));
            }
        }
        Self {
            rt,
            stop,
            calls,
            tasks,
        }
    }

    /// Answered calls of `tunnel` that started after `since`.
    fn answered_since(&self, tunnel: usize, since: Instant) -> usize {
        let calls = self.calls.lock().expect("calls");
        calls
            .iter()
            .filter(|c| c.tunnel == tunnel && c.start > since && c.answered())
            .count()
    }

    /// Waits until every tunnel has `n` answered calls started after `since`.
    fn wait_answered(&self, tunnels: usize, n: usize, since: Instant, what: &str) {
        let done = e2e::wait::eventually(Duration::from_secs(60), || {
            (0..tunnels)
                .all(|t| self.answered_since(t, since) >= n)
                .then_some(())
        });
        if done.is_none() {
            let calls = self.calls.lock().expect("calls");
            let last: Vec<&Call> = calls.iter().rev().take(20).collect();
            panic!("{what}: not {n} answered calls on every tunnel; the last calls: {last:#?}");
        }
    }

    /// Stops the sessions (each finishes its call): every call made.
    fn finish(self) -> Vec<Call> {
        self.stop.store(true, Ordering::SeqCst);
        let tasks = self.tasks;
        self.rt.block_on(async {
            for t in tasks {
                t.await.expect("a session task");
            }
        });
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }
}

/// A client session of `tunnel`: a session, then `echo` calls with texts `<tag>-<n>`
/// until `stop`.
async fn session(
    client: McpClient,
    tunnel: usize,
    tag: String,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
) {
    let mut session: Option<String> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let start = Instant::now();
        let (kind, outcome) = match &session {
            None => {
                let (outcome, id) = open_session(&client).await;
                session = id;
                (Kind::Initialize, outcome)
            }
            Some(id) => {
                n += 1;
                let text = format!("{tag}-{n}");
                let outcome = echo(&client, id, n, &text).await;
                if matches!(&outcome, Outcome::Failed(e) if e.starts_with("HTTP 404")) {
                    session = None;
                }
                (Kind::Echo(text), outcome)
            }
        };
        calls.lock().expect("calls").push(Call {
            tunnel,
            kind,
            start,
            end: Instant::now(),
            outcome,
        });
    }
}

/// A request that got no complete answer: silent when the client gave up waiting,
/// failed when the answer broke off.
fn unanswered(e: String) -> Outcome {
    if e.contains("(hang)") {
        Outcome::Silent(e)
    } else {
        Outcome::Failed(e)
    }
}

/// The one response to `id` in a 200 answer, or what is wrong with the answer.
fn judge(reply: &Reply, id: &Value) -> Result<Value, Outcome> {
    if reply.status != 200 {
        return Err(Outcome::Failed(format!(
            "HTTP {}: {}",
            reply.status, reply.text
        )));
    }
    let responses = reply
        .messages
        .iter()
        .filter(|m| m.get("method").is_none())
        .count();
    if responses > 1 {
        return Err(Outcome::Twice(reply.text.clone()));
    }
    let r = reply.response_to(id).map_err(Outcome::Failed)?;
    if r.get("error").is_some() {
        return Err(Outcome::Failed(format!("JSON-RPC error: {r}")));
    }
    Ok(r.clone())
}

/// `initialize` and `notifications/initialized`: how it went, and the session.
async fn open_session(client: &McpClient) -> (Outcome, Option<String>) {
    let id = json!("init");
    let body = e2e::mcp::initialize(id.clone(), HANDSHAKE_2025_06, json!({}), "failover");
    let reply = match client.try_post(&body, &no_headers()).await {
        Ok(r) => r,
        Err(e) => return (unanswered(e), None),
    };
    if let Err(o) = judge(&reply, &id) {
        return (o, None);
    }
    let Some(session) = reply.session.clone() else {
        return (Outcome::Failed(format!("no session id: {reply:?}")), None);
    };
    let note = client
        .try_post(
            &notification("notifications/initialized"),
            &session_headers(&session, HANDSHAKE_2025_06),
        )
        .await;
    match note {
        Ok(r) if r.status == 202 => (Outcome::Answered, Some(session)),
        Ok(r) => (
            Outcome::Failed(format!(
                "notifications/initialized: HTTP {} {}",
                r.status, r.text
            )),
            None,
        ),
        Err(e) => (unanswered(e), None),
    }
}

/// `echo` of `text` in `session` (request id `n`): how it went.
async fn echo(client: &McpClient, session: &str, n: u64, text: &str) -> Outcome {
    let id = json!(n);
    let body = tool_call(id.clone(), "echo", json!({ "text": text }));
    let reply = match client
        .try_post(&body, &session_headers(session, HANDSHAKE_2025_06))
        .await
    {
        Ok(r) => r,
        Err(e) => return unanswered(e),
    };
    match judge(&reply, &id) {
        Err(o) => o,
        Ok(r) if r["result"]["isError"] == json!(true) => {
            Outcome::Failed(format!("tool error: {r}"))
        }
        Ok(r) if r["result"]["content"][0]["text"] != json!(text) => {
            Outcome::Failed(format!("another answer: {r}"))
        }
        Ok(_) => Outcome::Answered,
    }
}

/// Asserts that no call got two answers or none, and that the fixtures ran no `echo`
/// twice and every answered one once.
fn assert_once_each(calls: &[Call], bridges: &[Bridge]) {
    let odd: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Silent(e) => Some(format!("{:?}: no answer: {e}", c.kind)),
            Outcome::Twice(e) => Some(format!("{:?}: two answers: {e}", c.kind)),
            _ => None,
        })
        .collect();
    assert!(odd.is_empty(), "calls without exactly one answer: {odd:#?}");
    for (t, bridge) in bridges.iter().enumerate() {
        let mut ran: HashMap<String, usize> = HashMap::new();
        for line in bridge.counts() {
            if let Some(text) = line.strip_prefix("echoed ") {
                *ran.entry(text.to_owned()).or_default() += 1;
            }
        }
        let twice: Vec<(&String, &usize)> = ran.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{}: run more than once: {twice:?}",
            bridge.name()
        );
        for c in calls.iter().filter(|c| c.tunnel == t && c.answered()) {
            if let Kind::Echo(text) = &c.kind {
                assert_eq!(
                    ran.get(text),
                    Some(&1),
                    "{}: {text} answered but not run once",
                    bridge.name()
                );
            }
        }
    }
}

/// A line about the load for the test's output.
fn summary(calls: &[Call]) -> String {
    let failed = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .count();
    format!(
        "{} calls, {} answered, {failed} failed",
        calls.len(),
        calls.iter().filter(|c| c.answered()).count()
    )
}

#[test]
fn kill_9_of_a_node_under_load_answers_every_call_once() {
    let mut c = Cluster::start(drain_delay_for_haproxy());
    let http = BlockingHttp::new();
    let holders = c.holders();
    // The node holding the most tunnels dies.
    let victim = (0..3)
        .max_by_key(|i| holders.iter().filter(|h| *h == i).count())
        .expect("a node");
    let moved: HashSet<usize> = (0..holders.len())
        .filter(|t| holders[*t] == victim)
        .collect();
    assert!(!moved.is_empty(), "{holders:?}");

    let load = Load::start(&c.public, &c.names, SESSIONS_PER_TUNNEL);
    load.wait_answered(c.names.len(), 5, Instant::now(), "the load under way");

    // The kill lasts from the signal until the process is gone (its sockets closed).
    let mut killed = c.nodes[victim].take().expect("running");
    let kill_started = Instant::now();
    assert!(e2e::process::signal(killed.proc.pid(), libc::SIGKILL));
    assert!(killed.proc.wait_exit(Duration::from_secs(10)).is_some());
    let kill_done = Instant::now();
    c.retired.push((victim, killed));

    // Every bridge is connected again, on the node HAProxy sends its tunnel's requests to,
    // and the calls go on.
    let reconnected = e2e::wait::eventually(Duration::from_secs(30), || {
        c.all_connected(&http).then_some(())
    });
    assert!(
        reconnected.is_some(),
        "the bridges connected again after the kill:\n{}",
        c.logs()
    );
    load.wait_answered(
        c.names.len(),
        20,
        Instant::now(),
        "calls after the bridges reconnected",
    );

    // The node comes back on its port: the requests HAProxy sends it ask for its tunnels,
    // whose holders hand them over.
    let restarted = Instant::now();
    c.nodes[victim] = Some(c.node(victim));
    c.wait_up(victim, "the restarted node up again");
    let back = e2e::wait::eventually(Duration::from_secs(40), || {
        let log = c.nodes[victim].as_ref().expect("running").proc.log_text();
        let on_it = moved
            .iter()
            .all(|t| log.contains(&format!("bridge connected tunnel={} ", c.names[*t])));
        (on_it && c.all_connected(&http)).then_some(())
    });
    assert!(
        back.is_some(),
        "the tunnels back on the restarted node:\n{}",
        c.logs()
    );
    load.wait_answered(
        c.names.len(),
        20,
        Instant::now(),
        "calls after the tunnels came back",
    );
    let calls = load.finish();
    eprintln!("{}", summary(&calls));

    let handed = c
        .nodes
        .iter()
        .flatten()
        .any(|n| n.proc.log_text().contains("handing the tunnel over"));
    assert!(handed, "a node handed a tunnel back:\n{}", c.logs());

    assert_once_each(&calls, &c.bridges);
    // Errors only for calls in flight on the killed node's tunnels at the kill.
    let in_flight = calls
        .iter()
        .filter(|x| moved.contains(&x.tunnel) && x.start < kill_done && x.end > kill_started)
        .count();
    let failed: Vec<&Call> = calls
        .iter()
        .filter(|x| matches!(x.outcome, Outcome::Failed(_)))
        .collect();
    eprintln!(
        "{} failed of {in_flight} in flight on the killed node's tunnels at the kill",
        failed.len()
    );
    let stray: Vec<&Call> = failed
        .iter()
        .copied()
        .filter(|x| !(moved.contains(&x.tunnel) && x.start < kill_done && x.end > kill_started))
        .collect();
    assert!(
        stray.is_empty(),
        "calls failed that were not in flight on the killed node (tunnels {moved:?}) at the \
         kill; of them, {} started after the restart:\n{}\n{}",
        stray.iter().filter(|x| x.start > restarted).count(),
        describe(&stray, &c.names, kill_started),
        c.logs()
    );
}

/// One line per call: its tunnel and request, when it was sent (milliseconds from
/// `origin`), how long it took, and what came back.
fn describe(calls: &[&Call], names: &[String], origin: Instant) -> String {
    let ms = |t: Instant| {
        if t >= origin {
            (t - origin).as_millis() as i64
        } else {
            -((origin - t).as_millis() as i64)
        }
    };
    calls
        .iter()
        .map(|c| {
            let outcome = match &c.outcome {
                Outcome::Answered => "answered".to_owned(),
                Outcome::Failed(e) | Outcome::Silent(e) | Outcome::Twice(e) => {
                    e.chars().take(240).collect()
                }
            };
            format!(
                "{} {:?}: sent at {:+} ms, for {} ms: {outcome}",
                names[c.tunnel],
                c.kind,
                ms(c.start),
                (c.end - c.start).as_millis()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `--drain-delay-secs` longer than HAProxy takes to mark a node down after its
/// `/readyz` says 503 (`fall` failed checks `inter` apart, from the shipped
/// configuration), with a check's length to spare.
fn drain_delay_for_haproxy() -> u64 {
    let cfg = std::fs::read_to_string(e2e::repo_root().join("deploy/cluster/haproxy.cfg"))
        .expect("haproxy.cfg");
    let line = cfg
        .lines()
        .find(|l| l.trim_start().starts_with("default-server"))
        .expect("a default-server line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("{key} in {line:?}"))
    };
    let inter_ms: u64 = match after("inter") {
        s if s.ends_with("ms") => s.trim_end_matches("ms").parse().expect("inter"),
        s => s.trim_end_matches('s').parse::<u64>().expect("inter") * 1000,
    };
    let fall: u64 = after("fall").parse().expect("fall");
    ((fall + 2) * inter_ms).div_ceil(1000)
}

#[test]
fn a_rolling_restart_fails_no_call() {
    let mut c = Cluster::start(drain_delay_for_haproxy());
    let holders = c.holders();
    let load = Load::start(&c.public, &c.names, SESSIONS_PER_TUNNEL);
    load.wait_answered(c.names.len(), 5, Instant::now(), "the load under way");
    let began = Instant::now();
    let mut stops = Vec::new();
    for i in 0..3 {
        let mut node = c.nodes[i].take().expect("running");
        stops.push(format!("r{} at +{} ms", i + 1, began.elapsed().as_millis()));
        node.proc.terminate();
        let code = node.proc.wait_exit(Duration::from_secs(60));
        assert_eq!(
            code,
            Some(0),
            "r{} stopping:\n{}",
            i + 1,
            node.proc.log_text()
        );
        c.retired.push((i, node));
        c.nodes[i] = Some(c.node(i));
        c.wait_up(i, "the restarted node up again");
        load.wait_answered(
            c.names.len(),
            5,
            Instant::now(),
            "calls after a node's restart",
        );
    }
    let calls = load.finish();
    eprintln!("holders at the start {holders:?}; {}", summary(&calls));
    assert_once_each(&calls, &c.bridges);
    let failed: Vec<&Call> = calls
        .iter()
        .filter(|x| matches!(x.outcome, Outcome::Failed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "failed calls (SIGTERM to {}):\n{}\n{}",
        stops.join(", "),
        describe(&failed, &c.names, began),
        c.logs()
    );
}

/// A relay node on its own PostgreSQL database, with a bridge token `alice`.
fn lone_node() -> (Relay, String, String) {
    let url = Postgres::shared().new_database();
    let token = crate::create_token(&url, "alice");
    let node = Relay::start_with_token("127.0.0.1:0", &token, &["--database-url", &url], &[]);
    (node, url, token)
}

/// Fresh access tokens and refresh tokens the checks of a flood use.
const FRESH: usize = 10;

/// What needs the node's database, done while a flood goes on, all at once: a session
/// and 20 calls on the tunnel of `plain`, `initialize` with [`FRESH`] access tokens never
/// checked before (`at-<i>`, for the tunnel `guarded`), a refresh (`rt-0`) and a client
/// registration. Each must succeed.
async fn database_work(base: &str, plain: &Bridge) {
    use futures_util::future::join_all;
    let client = McpClient::of(plain).with_limit(CLIENT_TIMEOUT);
    let s = client.session(HANDSHAKE_2025_06).await;
    let http = e2e::http::client_with(CLIENT_TIMEOUT);
    let guarded = format!("{base}/guarded/mcp");
    let calls = join_all((0..20).map(|n| {
        let s = &s;
        async move {
            let text = format!("during-{n}");
            assert_eq!(
                s.tool_text(json!(n), "echo", json!({ "text": &text }))
                    .await,
                text
            );
        }
    }));
    let fresh = join_all((0..FRESH).map(|i| {
        let client = McpClient::with_http(http.clone(), &guarded, Some(&format!("at-{i}")))
            .with_limit(CLIENT_TIMEOUT);
        async move {
            let r = client
                .post(
                    &e2e::mcp::initialize(json!(1), HANDSHAKE_2025_06, json!({}), "check"),
                    &no_headers(),
                    "initialize with a fresh token",
                )
                .await;
            assert_eq!(r.status, 200, "a fresh access token: {r:?}");
        }
    }));
    let refresh = async {
        let refreshed = http
            .post(format!("{base}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(e2e::http::form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "rt-0"),
                ("client_id", "mcpcl_test"),
            ]))
            .send()
            .await
            .expect("token endpoint");
        let status = refreshed.status().as_u16();
        let body = refreshed.text().await.unwrap_or_default();
        assert_eq!(status, 200, "refresh: {body}");
    };
    let register = async {
        let registered = http
            .post(format!("{base}/oauth/register"))
            .json(&json!({
                "redirect_uris": ["http://127.0.0.1:9/cb"],
                "token_endpoint_auth_method": "none",
                "client_name": "during the flood",
            }))
            .send()
            .await
            .expect("registration endpoint");
        let status = registered.status().as_u16();
        let body = registered.text().await.unwrap_or_default();
        assert_eq!(status, 201, "registration: {body}");
    };
    tokio::join!(calls, fresh, refresh, register);
}

/// A node with the tunnel `plain` (no client authentication) and the tunnel `guarded`
/// (OAuth) whose grant holds the tokens [`database_work`] uses.
struct Victim {
    node: Relay,
    url: String,
    token: String,
    plain: Bridge,
    _guarded: Bridge,
}

impl Victim {
    fn start() -> Self {
        let (node, url, token) = lone_node();
        let plain = node.bridge(BridgeOpts::default().name("plain").no_auth());
        let guarded = node.bridge(
            BridgeOpts::default()
                .name("guarded")
                .args(&["--auth", "oauth"]),
        );
        let names: Vec<String> = (0..FRESH)
            .map(|i| format!("at-{i}"))
            .chain((0..FRESH).map(|i| format!("rt-{i}")))
            .collect();
        let tokens: Vec<(&str, &str)> = names
            .iter()
            .map(|n| {
                let kind = if n.starts_with("at-") {
                    "access"
                } else {
                    "refresh"
                };
                (kind, n.as_str())
            })
            .collect();
        crate::mint_grant(
            &url,
            &token,
            "guarded",
            &format!("{}/guarded/mcp", node.base),
            &tokens,
        );
        Self {
            node,
            url,
            token,
            plain,
            _guarded: guarded,
        }
    }

    /// Lines of its log that say a database connection could not be had.
    fn pool_errors(&self) -> Vec<String> {
        self.node
            .proc
            .log_text()
            .lines()
            .filter(|l| l.contains("PostgreSQL connection"))
            .map(str::to_owned)
            .collect()
    }
}

/// Requests of the flood answered, by HTTP status (0: no answer).
type Tally = Arc<Mutex<HashMap<u16, usize>>>;

#[test]
fn a_flood_of_unknown_tunnel_names_stalls_nothing() {
    let v = Victim::start();
    let base = v.node.base.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let tally: Tally = Arc::default();
    // 16 addresses, 64 requests at a time each: 1024 at once, every name a new one.
    let mut flood = Vec::new();
    for a in 0..16u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + a));
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .local_address(ip)
            .timeout(CLIENT_TIMEOUT)
            .build()
            .expect("client");
        for w in 0..64u32 {
            let (http, base, stop, sent, tally) = (
                http.clone(),
                base.clone(),
                stop.clone(),
                sent.clone(),
                tally.clone(),
            );
            flood.push(rt.spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let name = format!("ghost-{a}-{w}-{n}");
                    let rb = if n.is_multiple_of(2) {
                        http.get(format!(
                            "{base}/.well-known/oauth-protected-resource/{name}/mcp"
                        ))
                    } else {
                        http.post(format!("{base}/{name}/mcp"))
                            .header("content-type", "application/json")
                            .header("accept", e2e::mcp::ACCEPT_BOTH)
                            .body(
                                e2e::mcp::initialize(json!(1), HANDSHAKE_2025_06, json!({}), "x")
                                    .to_string(),
                            )
                    };
                    let status = match rb.send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    *tally.lock().expect("tally").entry(status).or_default() += 1;
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }
    let under_way = e2e::wait::eventually(Duration::from_secs(30), || {
        (sent.load(Ordering::SeqCst) >= 1000).then_some(())
    });
    assert!(under_way.is_some(), "the flood under way: {tally:?}");
    let before = sent.load(Ordering::SeqCst);
    let checks = Instant::now();
    rt.block_on(database_work(&base, &v.plain));
    let checks = checks.elapsed();
    let during = sent.load(Ordering::SeqCst) - before;
    // Thousands in all.
    let thousands = e2e::wait::eventually(Duration::from_secs(60), || {
        (sent.load(Ordering::SeqCst) >= 4000).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for f in flood {
            f.await.expect("a flood task");
        }
    });
    let tally = tally.lock().expect("tally").clone();
    eprintln!("flood answers by status: {tally:?}; {during} while the checks ran (for {checks:?})");
    assert!(
        thousands.is_some(),
        "the flood reached 4000 requests: {tally:?}"
    );
    assert!(during > 0, "the flood went on during the checks");
    assert_eq!(
        tally.get(&0),
        None,
        "flood requests left unanswered: {tally:?}"
    );
    assert!(
        v.pool_errors().is_empty(),
        "the node ran out of database connections: {:?}",
        v.pool_errors()
    );
}

#[test]
fn a_bridge_flooding_store_writes_starves_no_one() {
    let v = Victim::start();
    let base = v.node.base.clone();
    let addr: SocketAddr = v.node.listen_addr().parse().expect("address");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (stop, sent, token) = (stop.clone(), sent.clone(), v.token.clone());
        let (mut ws, _) = rt.block_on(e2e::fake_bridge::open_link(
            addr,
            IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)),
            "flooder",
            Some(&token),
        ));
        let hello =
            e2e::fake_bridge::hello_from("flood-0", &token, "flooder", protocol::ClientAuth::None);
        rt.block_on(e2e::fake_bridge::handshake(
            &mut ws,
            hello,
            "the flooder's hello",
        ))
        .expect("the flooding bridge welcomed");
        // A tools list of some size, so that every write carries a few kilobytes.
        let tools = json!({ "tools": (0..40).map(|i| json!({
            "name": format!("tool-{i}"),
            "description": "x".repeat(100),
            "inputSchema": {"type": "object"},
        })).collect::<Vec<_>>() })
        .to_string();
        rt.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let frame = if n.is_multiple_of(4) {
                    protocol::Frame::ConsentDecision {
                        id: format!("no-such-consent-{n}"),
                        approve: true,
                    }
                } else {
                    protocol::Frame::Snapshot(protocol::Snapshot {
                        initialize: Bytes::from(
                            json!({ "protocolVersion": HANDSHAKE_2025_06, "capabilities": {},
                                    "serverInfo": {"name": "flood", "version": n.to_string()} })
                            .to_string(),
                        ),
                        tools: Bytes::from(tools.clone()),
                    })
                };
                if ws.feed(Message::Binary(frame.encode())).await.is_err() {
                    return n;
                }
                if n.is_multiple_of(64) && ws.flush().await.is_err() {
                    return n;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            n
        })
    };
    let under_way = e2e::wait::eventually(Duration::from_secs(30), || {
        (sent.load(Ordering::SeqCst) >= 2000).then_some(())
    });
    assert!(under_way.is_some(), "the flood under way");
    let before = sent.load(Ordering::SeqCst);
    let checks = Instant::now();
    rt.block_on(database_work(&base, &v.plain));
    let checks = checks.elapsed();
    let during = sent.load(Ordering::SeqCst) - before;
    // The flood's writes reached the database meanwhile: the snapshot kept is a late one.
    let kept = Postgres::shared()
        .psql(
            &v.url,
            "SELECT convert_from(initialize, 'UTF8') FROM tunnel_snapshots WHERE name = 'flooder'",
        )
        .expect("psql");
    stop.store(true, Ordering::SeqCst);
    let frames = rt.block_on(flooder).expect("the flood task");
    let writes = Postgres::shared()
        .psql(
            &v.url,
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables \
             WHERE relname = 'tunnel_snapshots'",
        )
        .unwrap_or_default();
    eprintln!("snapshot rows written (as PostgreSQL's statistics have it so far): {writes}");
    eprintln!(
        "{frames} frames from the flooding bridge, {during} while the checks ran (for {checks:?})"
    );
    assert!(during > 0, "the flood went on during the checks");
    let version: u64 = serde_json::from_str::<Value>(&kept)
        .ok()
        .and_then(|v| v["serverInfo"]["version"].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("the flooder's snapshot in the database: {kept:?}"));
    assert!(
        version as usize > before,
        "a snapshot sent during the checks was written ({version}, the checks began after \
         {before} frames)"
    );
    assert!(
        v.pool_errors().is_empty(),
        "the node ran out of database connections: {:?}",
        v.pool_errors()
    );
}
