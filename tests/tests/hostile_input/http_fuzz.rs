//! Fuzzes the relay's public HTTP front with a few thousand random requests, against a
//! real `relay serve` with two real bridges connected (one `--auth none`, one bearer).
//!
//! Requests are generated from a seeded xorshift PRNG (so a failure is reproducible) and
//! sent as raw bytes over `tokio::net::TcpStream` HTTP/1.1, which allows malformed ones. They
//! mix:
//!
//! - methods: `GET`, `POST`, `DELETE`, `PUT`, `PATCH`, `OPTIONS`, `HEAD`, extension tokens
//!   and bytes that are no token at all;
//! - paths: the tunnels' `/mcp`, `/sse`, `/messages`, `/connect`, unknown and invalid tunnel
//!   names, random segments, very long paths, percent-encoding, `..`, queries,
//!   absolute-form and `*` targets;
//! - headers: random names and values, huge values, many headers, duplicates, and random
//!   `Content-Type`, `Accept`, `Mcp-Session-Id` (real sessions too), `MCP-Protocol-Version`,
//!   `Last-Event-ID`, `Origin`, `Host`, `Authorization`, `Expect`, `Connection`,
//!   `Transfer-Encoding` and wrong `Content-Length`s;
//! - bodies: random bytes, valid JSON-RPC messages (tool calls included), the same
//!   truncated or mutated, 100 000 nested `[`, huge strings, bodies over `--max-body`.
//!
//! About 40 % of the requests are *tame* (valid HTTP and headers, only the JSON-RPC body
//! random) so that plenty reach the bridge and the server behind it. The relay runs with
//! `--keepalive-secs 1` (a POST answer turns into an SSE stream after 1 s of silence, so
//! no well-behaved response head takes longer) and a 256 KiB `--max-body`.
//!
//! Each request is classified by its HTTP framing, which decides what is acceptable:
//!
//! - *well-formed*: must get a parseable response whose head arrives within
//!   [`HEAD_LIMIT`];
//! - *malformed* (broken request line or header syntax, bad chunking, conflicting
//!   lengths): a response (typically 400) or a closed connection are both fine, but not
//!   silence past [`HEAD_LIMIT`];
//! - *incomplete* (a `Content-Length` longer than the bytes sent, a head without its end):
//!   the server may rightly wait for the rest, so only a response that does come is checked.
//!
//! Every response is checked:
//!
//! - no 5xx status other than 502 and 503. Those two are the relay's documented answers
//!   about the tunnel rather than about the request: 503 when no bridge is connected for
//!   the name (random names hit this), when the bridge just left or has too many exchanges
//!   in flight, or when the bridge itself reports its server unavailable; 502 when the
//!   bridge's answer cannot be turned into an HTTP status. Any other 5xx (notably 500, a
//!   panicking handler) is a bug;
//! - a 4xx answer to `/<name>/mcp` that has a body carries a JSON-RPC error object
//!   (`{"jsonrpc":"2.0","error":{"code":<int>,"message":<string>}}`), so MCP clients can show
//!   the reason. Bodiless answers (hyper's own 400/414/431, axum's 405) are exempt.
//!
//! At the end:
//!
//! - the relay and both bridges still run, `/healthz` still counts both tunnels, and no
//!   log contains a panic;
//! - every request the relay forwarded has been answered: the bridges' count of requests
//!   in flight on their servers (`/status/<name>`) falls to zero within [`DRAIN_LIMIT`].
//!   The generator only makes requests the fixture server answers promptly, so a request
//!   left over is one the relay accepted but the server could not read and never answered
//!   (its client waits forever); the failure quotes the server's complaints;
//! - two such requests are sent on purpose ([`probes`]) and must get a JSON-RPC answer;
//! - a valid `initialize` followed by a `tools/call` still works through each tunnel.
//!
//! A failure lists every violation, grouped by kind and by answer, with the exact request
//! bytes. The run takes about 5 s (debug build) when nothing is wrong.
//!
//! Environment: `HTTP_FUZZ_SEED` (default fixed) and `HTTP_FUZZ_REQUESTS` (default
//! [`DEFAULT_REQUESTS`]) run other or longer campaigns, and `HTTP_FUZZ_TRACE=<file>` writes
//! one line per request (its first line and the answer), e.g.
//! `HTTP_FUZZ_SEED=7 HTTP_FUZZ_REQUESTS=50000 cargo test -p e2e --test hostile_input http_fuzz
//! -- --nocapture`.

mod exchange;
mod generator;
mod verdict;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::http::client_with;
use e2e::mcp::{McpClient, session_headers, tool_call};
use e2e::{Bridge, BridgeOpts, Proc, Relay};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use exchange::{Outcome, send};
use generator::{Case, Known, Rng, Session, generate};
use verdict::{Results, Violation, check, excerpt, explain};

/// Requests sent by default.
pub(super) const DEFAULT_REQUESTS: usize = 4000;
/// Default PRNG seed.
pub(super) const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Requests in flight at once.
pub(super) const CONCURRENCY: usize = 16;
/// Longest acceptable wait for a response head (or, for malformed requests, a close).
pub(super) const HEAD_LIMIT: Duration = Duration::from_secs(5);
/// How long an incomplete request is given to produce an early answer before we give up.
pub(super) const INCOMPLETE_WAIT: Duration = Duration::from_millis(300);
/// The relay's `--keepalive-secs`: a POST answer silent this long becomes an SSE stream,
/// so no response head legitimately takes longer.
pub(super) const KEEPALIVE_SECS: &str = "1";
/// The relay's `--max-body`: small, so oversized bodies are cheap to send.
pub(super) const MAX_BODY: usize = 256 * 1024;
/// Response bytes kept per answer.
pub(super) const MAX_KEPT_BODY: usize = 1 << 20;
/// Tunnel served without client authentication.
pub(super) const OPEN: &str = "fuzz-open";
/// Tunnel served with a bearer token.
pub(super) const AUTH: &str = "fuzz-auth";
/// The protocol revision of the sessions set up before fuzzing.
pub(super) const MCP_VERSION: &str = "2025-06-18";
/// Violations shown per kind.
pub(super) const SHOWN_PER_KIND: usize = 3;

// ----- the test ------------------------------------------------------------------------------

fn alive(name: &str, p: &mut Proc) -> Result<(), String> {
    match p.wait_exit(Duration::from_millis(60)) {
        None => Ok(()),
        Some(code) => Err(format!(
            "{name} exited with code {code}; its log:\n{}",
            p.log_text()
        )),
    }
}

/// A client for the checks after fuzzing.
fn http() -> reqwest::Client {
    client_with(Duration::from_secs(10))
}

/// `initialize` + `notifications/initialized` on `url`; the session id.
async fn initialize(url: &str, bearer: Option<&str>) -> String {
    McpClient::new(url, bearer).initialize(MCP_VERSION).await.0
}

/// The `/status/<name>` of a tunnel of the relay at `base`.
async fn tunnel_status(base: &str, name: &str, bearer: Option<&str>) -> Option<Value> {
    McpClient::new(&format!("{base}/{name}/mcp"), bearer)
        .status()
        .await
}

/// How long the bridge may still hold requests once the last client left (the longest
/// `slow` call the generator makes is 2.5 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(8);

/// Waits until the bridge behind `name` has no request in flight on its server; the
/// error names the server's complaints from the bridge's log.
async fn drained(
    base: &str,
    name: &str,
    bearer: Option<&str>,
    bridge: &Bridge,
) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(v) = tunnel_status(base, name, bearer).await {
            if v["bridge"]["pending"] == 0 {
                return Ok(());
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = bridge.proc.log_text();
    let complaints: Vec<String> = log
        .lines()
        .filter(|l| l.contains("malformed input") || l.contains("not responding"))
        .take(6)
        .map(|l| format!("\n        {}", excerpt(strip_ansi(l).as_bytes(), 400)))
        .collect();
    Err(format!(
        "requests never answered: {DRAIN_LIMIT:?} after the last client left, bridge {name} \
         still counts {} request(s) in flight on its server (status: {last}). The server will \
         never answer them, so each holds a slot of its session's in-flight limit (256 by \
         default) for good. Known causes, both seen in the server's log below: a message the \
         relay accepted but the server cannot read (\"ignoring malformed input line\"; its \
         client gets an SSE stream that never carries an answer), and a request the client \
         cancelled (\"was cancelled; not responding\": the server rightly stays silent, the \
         bridge keeps waiting). See the probes below. Server log:{}",
        last["bridge"]["pending"],
        complaints.concat()
    ))
}

/// The bridge's count of requests in flight on the `fuzz-open` tunnel's server.
async fn open_pending(base: &str) -> Option<u64> {
    tunnel_status(base, OPEN, None).await?["bridge"]["pending"].as_u64()
}

/// A request its client cancels with `notifications/cancelled` must stop counting as in
/// flight: the server, as the MCP specification asks, never answers it.
async fn cancel_is_forgotten(base: &str, url: &str) -> Result<(), String> {
    let before = open_pending(base).await.unwrap_or(0);
    let client = McpClient::new(url, None);
    let sid = initialize(url, None).await;
    let headers = session_headers(&sid, MCP_VERSION);
    let call = tool_call(
        json!(7),
        "slow",
        json!({"ms": 60_000, "tag": "cancel-probe"}),
    );
    // The answer turns into an SSE stream after the relay's 1 s keep-alive interval.
    let mut stream = client
        .try_send(client.post_builder(&call, &headers))
        .await
        .map_err(|e| format!("cancellation probe: the slow call failed: {e}"))?;
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":7,"reason":"probe"}});
    let status = client.post(&cancel, &headers, "cancellation").await.status;
    if status != 202 {
        return Err(format!(
            "cancellation probe: notifications/cancelled got {status}"
        ));
    }
    // The bridge closes the call's stream with a "Request cancelled" error.
    let _ = tokio::time::timeout(HEAD_LIMIT, async {
        while let Ok(Some(_)) = stream.try_next(HEAD_LIMIT).await {}
    })
    .await;
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut now_pending = None;
    while Instant::now() < deadline {
        now_pending = open_pending(base).await;
        if now_pending.is_some_and(|n| n <= before) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "a request cancelled by its client stays in flight on the bridge for good\n    \
         request: in a fresh session, POST {url} tools/call slow {{\"ms\":60000}} (id 7), then \
         POST notifications/cancelled {{\"requestId\":7}}\n    expected: the bridge forgets the \
         request (the server does not answer cancelled requests): /status/{OPEN} pending back \
         to {before}\n    observed: pending {now_pending:?} 3 s later; it never drops (cancelled \
         requests are also skipped by the call timeout), so after 256 cancellations a session \
         answers every request with -32002 \"too many requests in flight in this session\""
    ))
}

/// `s` without terminal colour sequences (`ESC [ … m`), as the processes' logs have them.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Requests the relay accepts but the fixture (a serde_json server) cannot read.
fn probes() -> Vec<(&'static str, Vec<u8>)> {
    let mut deep = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"#.to_vec();
    deep.extend([b'['; 200]);
    deep.extend([b']'; 200]);
    deep.extend_from_slice(b"}}}");
    vec![
        (
            "a request with invalid UTF-8 inside a string of an unknown member",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","x":"?"}"#
                .iter()
                .map(|&b| if b == b'?' { 0xff } else { b })
                .collect(),
        ),
        ("a request whose params nest 200 arrays deep", deep),
    ]
}

/// POSTs a JSON-RPC request (id 1) and waits for its answer: a JSON-RPC error status, or a
/// JSON or SSE body carrying a response. The error describes what came instead.
async fn answered(client: &reqwest::Client, url: &str, body: &[u8]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + HEAD_LIMIT;
    let req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_vec());
    let mut resp = match tokio::time::timeout_at(deadline, req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("request failed: {e}")),
        Err(_) => return Err(format!("no response head within {HEAD_LIMIT:?}")),
    };
    let head = format!("{} {:?}", resp.status(), resp.headers().get("content-type"));
    let mut got = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&got);
        let json_lines = text
            .lines()
            .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok());
        for v in json_lines {
            if v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some()) {
                return Ok(());
            }
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => got.extend_from_slice(&c),
            Ok(Ok(None)) => {
                return Err(format!(
                    "{head}, body without a JSON-RPC response: {}",
                    excerpt(&got, 300)
                ));
            }
            Ok(Err(e)) => return Err(format!("{head}, body failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "{head} and then, within {HEAD_LIMIT:?}, only: {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
}

/// A full valid exchange: initialize, then an `echo` tool call answered with its text.
async fn still_serves(url: &str, bearer: Option<&str>) {
    let session = McpClient::new(url, bearer).session(MCP_VERSION).await;
    let text = session
        .tool_text(json!(2), "echo", json!({"text": "still alive"}))
        .await;
    assert_eq!(text, "still alive", "tools/call on {url} after fuzzing");
}

#[test]
fn http_front_survives_random_requests() {
    let seed = std::env::var("HTTP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let requests = std::env::var("HTTP_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let trace_file = std::env::var_os("HTTP_FUZZ_TRACE");
    let max_body = MAX_BODY.to_string();
    let mut relay = Relay::start(&["--keepalive-secs", KEEPALIVE_SECS, "--max-body", &max_body]);
    let bridge = |name: &str, no_auth: bool| {
        relay.bridge(BridgeOpts {
            no_auth,
            ..BridgeOpts::default().name(name)
        })
    };
    let mut open = bridge(OPEN, true);
    let mut auth = bridge(AUTH, false);
    let bearer = auth
        .bearer
        .clone()
        .expect("the bearer bridge prints its token");
    assert!(
        open.mcp_url.ends_with(&format!("/{OPEN}/mcp")),
        "{}",
        open.mcp_url
    );
    assert!(
        auth.mcp_url.ends_with(&format!("/{AUTH}/mcp")),
        "{}",
        auth.mcp_url
    );
    let addr = relay
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("relay port");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let Results {
        stats,
        violations,
        slowest,
        mut trace,
    } = rt.block_on(async {
        let mut sessions = Vec::new();
        for i in 0..8 {
            let deletable = i % 2 == 1;
            sessions.push(Session {
                tunnel: OPEN,
                id: initialize(&open.mcp_url, None).await,
                deletable,
            });
            sessions.push(Session {
                tunnel: AUTH,
                id: initialize(&auth.mcp_url, Some(&bearer)).await,
                deletable,
            });
        }
        let known = Known {
            port,
            bearer: bearer.clone(),
            sessions,
        };
        let mut rng = Rng::new(seed);
        let cases: Vec<Case> = (0..requests)
            .map(|i| generate(&mut rng, i, &known))
            .collect();
        let cases = Arc::new(cases);
        let next = Arc::new(AtomicUsize::new(0));
        let results = Arc::new(Mutex::new(Results::default()));
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (cases, next, results, addr) =
                (cases.clone(), next.clone(), results.clone(), addr.clone());
            let trace = trace_file.is_some();
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let outcome = send(&addr, case).await;
                    let (label, found) = check(case, &outcome);
                    let mut r = results.lock().await;
                    if trace {
                        let first = case.bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
                        let status = match &outcome {
                            Outcome::Response(resp) => {
                                format!("{} {}", resp.status, excerpt(&resp.body, 120))
                            }
                            _ => label.clone(),
                        };
                        r.trace.push(format!(
                            "#{} {} -> {status}",
                            case.index,
                            excerpt(first, 120)
                        ));
                    }
                    *r.stats.entry(label).or_default() += 1;
                    r.violations.extend(found);
                    if let Outcome::Response(resp) = &outcome
                        && resp.elapsed > r.slowest.0
                    {
                        r.slowest = (resp.elapsed, case.index);
                    }
                }
            }));
        }
        for w in workers {
            w.await.expect("worker");
        }
        std::mem::take(&mut *results.lock().await)
    });
    let fuzz_time = started.elapsed();
    if let Some(path) = &trace_file {
        trace.sort_by_key(|l| {
            l[1..]
                .split(' ')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
        });
        std::fs::write(path, trace.join("\n")).expect("trace file");
    }

    // Statistics, for the record (`-- --nocapture`).
    println!(
        "http_fuzz: seed {seed:#x}, {requests} requests in {fuzz_time:?}; slowest response \
         head {:?} (request #{})",
        slowest.0, slowest.1
    );
    for (label, n) in &stats {
        println!("    {label}: {n}");
    }

    // Violations, grouped by kind.
    let mut report = String::new();
    let mut by_kind: BTreeMap<&str, BTreeMap<&str, Vec<&Violation>>> = BTreeMap::new();
    for v in &violations {
        by_kind
            .entry(v.kind)
            .or_default()
            .entry(&v.signature)
            .or_default()
            .push(v);
    }
    for (kind, groups) in &by_kind {
        let n: usize = groups.values().map(Vec::len).sum();
        let _ = writeln!(report, "\n=== {kind}: {n} request(s)\n{}", explain(kind));
        for (signature, vs) in groups {
            let _ = writeln!(report, "  -- {} request(s) answered: {signature}", vs.len());
            for v in vs.iter().take(SHOWN_PER_KIND) {
                let _ = writeln!(report, "  {}    observed: {}", v.request, v.observed);
            }
        }
    }

    // The processes survived and still serve.
    let mut dead = Vec::new();
    for (name, p) in [
        ("relay", &mut relay.proc),
        ("bridge fuzz-open", &mut open.proc),
        ("bridge fuzz-auth", &mut auth.proc),
    ] {
        if let Err(e) = alive(name, p) {
            dead.push(e);
        }
        let log = p.log_text();
        if let Some(at) = log.find("panicked") {
            let b = log.as_bytes();
            dead.push(format!(
                "{name} logged a panic: {}",
                String::from_utf8_lossy(&b[at.saturating_sub(200)..(at + 800).min(b.len())])
            ));
        }
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect();
        println!(
            "{name}: {} log line(s), {} of them warnings or errors",
            log.lines().count(),
            errors.len()
        );
        for l in errors.iter().take(5) {
            println!("    {}", excerpt(l.as_bytes(), 300));
        }
    }
    let failure = format!(
        "HTTP fuzzing (seed {seed:#x}, {requests} requests) found {} bad answer(s){report}{}\n\n\
         statistics: {stats:?}",
        violations.len(),
        dead.iter()
            .map(|d| format!("\n=== {d}"))
            .collect::<String>()
    );
    assert!(dead.is_empty(), "{failure}");
    let late = rt.block_on(async {
        let client = http();
        let base = relay.base.trim_end_matches('/').to_owned();
        let health = e2e::http::send(client.get(format!("{base}/healthz")), "healthz")
            .await
            .json();
        assert_eq!(
            health["tunnels"], 2,
            "both bridges should still be connected after fuzzing: {health}"
        );
        let mut late = Vec::new();
        // Every request the relay forwarded has been answered by now (see jsonrpc_message).
        for (name, token, bridge) in [(OPEN, None, &open), (AUTH, Some(bearer.as_str()), &auth)] {
            if let Err(e) = drained(&base, name, token, bridge).await {
                late.push(e);
            }
        }
        // Requests of that kind, precisely.
        for (what, body) in probes() {
            if let Err(e) = answered(&client, &open.mcp_url, &body).await {
                late.push(format!(
                    "{what} was never answered\n    request: POST {} with Content-Type: \
                     application/json, Accept: application/json, text/event-stream and the \
                     body {}\n    expected: a JSON-RPC answer (e.g. 400 with a -32700 error) \
                     within {HEAD_LIMIT:?}\n    observed: {e}",
                    open.mcp_url,
                    excerpt(&body, 200)
                ));
            }
        }
        if let Err(e) = cancel_is_forgotten(&base, &open.mcp_url).await {
            late.push(e);
        }
        still_serves(&open.mcp_url, None).await;
        still_serves(&auth.mcp_url, Some(&bearer)).await;
        late
    });
    let failure = format!(
        "{failure}{}",
        late.iter()
            .map(|l| format!("\n\n=== {l}"))
            .collect::<String>()
    );
    assert!(violations.is_empty() && late.is_empty(), "{failure}");
    println!("http_fuzz: done in {:?}", started.elapsed());
}
