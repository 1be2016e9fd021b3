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
//! `HTTP_FUZZ_SEED=7 HTTP_FUZZ_REQUESTS=50000 cargo test -p e2e --test http_fuzz -- --nocapture`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::{Bridge, BridgeOpts, Proc, Relay};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Requests sent by default.
const DEFAULT_REQUESTS: usize = 4000;
/// Default PRNG seed.
const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;
/// Longest acceptable wait for a response head (or, for malformed requests, a close).
const HEAD_LIMIT: Duration = Duration::from_secs(5);
/// How long an incomplete request is given to produce an early answer before we give up.
const INCOMPLETE_WAIT: Duration = Duration::from_millis(300);
/// The relay's `--keepalive-secs`: a POST answer silent this long becomes an SSE stream,
/// so no response head legitimately takes longer.
const KEEPALIVE_SECS: &str = "1";
/// The relay's `--max-body`: small, so oversized bodies are cheap to send.
const MAX_BODY: usize = 256 * 1024;
/// Response bytes kept per answer.
const MAX_KEPT_BODY: usize = 1 << 20;
/// Tunnel served without client authentication.
const OPEN: &str = "fuzz-open";
/// Tunnel served with a bearer token.
const AUTH: &str = "fuzz-auth";
/// The protocol revision of the sessions set up before fuzzing.
const MCP_VERSION: &str = "2025-06-18";
/// Violations shown per kind.
const SHOWN_PER_KIND: usize = 3;

// ----- PRNG ------------------------------------------------------------------------------

/// xorshift64* — tiny, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    fn pct(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `n` characters from `alphabet`.
    fn string_from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| self.pick(alphabet) as char)
            .collect::<String>()
    }
}

/// `tchar` of RFC 9110: what a method or header name may contain.
const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters allowed unencoded in a path segment.
const PCHAR: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
/// Visible ASCII, for header values.
const VCHAR: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\t";

// ----- test cases ------------------------------------------------------------------------

/// How a request is framed, which decides the acceptable outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Framing {
    /// Valid HTTP/1.x: a response is required.
    WellFormed,
    /// Invalid HTTP: a response or a prompt close.
    Malformed,
    /// Missing bytes the server may wait for.
    Incomplete,
}

/// One generated request.
struct Case {
    /// Position in the generated sequence.
    index: usize,
    /// Exactly what is written to the socket.
    bytes: Vec<u8>,
    framing: Framing,
    /// `HEAD`: the response has no body whatever its headers say.
    head: bool,
    /// The request target is `/<segment>/mcp` (possibly with a query).
    mcp_route: bool,
    /// A WebSocket upgrade: after a 101 the socket carries frames, not HTTP.
    upgrade: bool,
}

/// A session set up before fuzzing.
struct Session {
    tunnel: &'static str,
    id: String,
    /// Offered to `DELETE` requests (the others are never deleted on purpose).
    deletable: bool,
}

/// What the generator knows about the system under test.
struct Known {
    /// The relay's port, for `Host`, `Origin` and absolute-form targets.
    port: u16,
    /// The bearer tunnel's client token.
    bearer: String,
    /// Real sessions, for `Mcp-Session-Id` and `sessionId`.
    sessions: Vec<Session>,
}

/// Builds request number `index`.
///
/// About 40 % of the requests are *tame*: a valid request to a tunnel's endpoint (valid
/// headers, right token, a real session or none) whose only randomness is the JSON-RPC
/// body, so that many requests get past the relay's checks to the bridge and the server.
/// The others vary every part at once.
fn generate(rng: &mut Rng, index: usize, known: &Known) -> Case {
    let mut framing = Framing::WellFormed;
    let tame = rng.pct(40);
    // A draw in 0..100 where 0 is the plain, valid choice; always 0 for tame requests.
    let roll = |rng: &mut Rng| if tame { 0 } else { rng.below(100) };
    // A perturbation that tame requests never get.
    let wild = |rng: &mut Rng, percent: usize| !tame && rng.pct(percent);

    // Method.
    let method: String = if tame {
        rng.pick(&[
            "POST", "POST", "POST", "POST", "POST", "POST", "GET", "GET", "DELETE",
        ])
        .into()
    } else {
        match rng.below(100) {
            0..=41 => "POST".into(),
            42..=58 => "GET".into(),
            59..=65 => "DELETE".into(),
            66..=69 => "HEAD".into(),
            70 | 71 => "PUT".into(),
            72 | 73 => "PATCH".into(),
            74 | 75 => "OPTIONS".into(),
            76..=79 => {
                let n = rng.range(1, 40);
                rng.string_from(TCHAR, n)
            }
            80 => "post".into(),
            81 => "CONNECT".into(),
            82 => "TRACE".into(),
            83..=85 => {
                framing = Framing::Malformed;
                let n = rng.range(1, 12);
                let mut m = String::from_utf8_lossy(&rng.bytes(n)).into_owned();
                m.retain(|c| c != ' ' && c != '\r' && c != '\n');
                m.push(rng.pick(&['(', '"', '\u{e9}', '\u{1}']));
                m
            }
            86 => {
                framing = Framing::Malformed;
                String::new()
            }
            _ => "POST".into(),
        }
    };
    let head = method == "HEAD";

    // Tunnel name and endpoint.
    let tunnel: String = match rng.below(100) {
        _ if tame => rng.pick(&[OPEN, AUTH]).into(),
        0..=46 => OPEN.into(),
        47..=83 => AUTH.into(),
        84 | 85 => "nobody-here".into(),
        86 => "%66uzz-open".into(),
        87 => "fuzz%2Dauth".into(),
        88 => "%ff%fe".into(),
        89 => "%C3%A9t%C3%A9".into(),
        90 => "..".into(),
        91 => "%2e%2e".into(),
        92 => String::new(),
        93 => "healthz".into(),
        94 => "FUZZ-OPEN".into(),
        95 => "a".repeat(41),
        96 => "fuzz%2Fopen".into(),
        97 => "%zz".into(),
        _ => {
            let n = rng.range(1, 30);
            rng.string_from(PCHAR, n)
        }
    };
    let endpoint = match rng.below(100) {
        0..=84 if tame => "mcp",
        _ if tame => rng.pick(&["messages", "messages", "sse"]),
        0..=69 => "mcp",
        70..=75 => "sse",
        76..=85 => "messages",
        86..=89 => "connect",
        _ => rng.pick(&["mcp/", "MCP", "status", "", "x", "mcp/x", "mcp;a", "sse/"]),
    };
    let mut path = match roll(rng) {
        0..=84 => format!("/{tunnel}/{endpoint}"),
        85 => format!("/{tunnel}/../{tunnel}/{endpoint}"),
        86 => format!("//{tunnel}//{endpoint}"),
        87 => format!("/status/{tunnel}"),
        88 => "/healthz".into(),
        89 => "/readyz".into(),
        90 => "/".into(),
        91 => {
            let n = rng.range(1_000, 20_000);
            format!("/{tunnel}/{}", "a/".repeat(n / 2))
        }
        92 => {
            let n = rng.range(10_000, 70_000);
            format!("/{}/mcp", "x".repeat(n))
        }
        93 => {
            let n = rng.range(1, 60);
            let mut p = format!("/{tunnel}/");
            for _ in 0..n {
                let _ = write!(p, "%{:02X}", rng.next() as u8);
            }
            p
        }
        94 => format!("/{tunnel}/%6D%63%70"),
        _ => {
            let n = rng.range(1, 5);
            let mut p = String::new();
            for _ in 0..n {
                let len = rng.range(0, 20);
                p.push('/');
                p.push_str(&rng.string_from(PCHAR, len));
            }
            p
        }
    };
    // Queries, the legacy sessionId among them.
    match rng.below(10) {
        _ if tame && endpoint != "messages" => {}
        0..=5 if !tame => {}
        0..=7 => {
            let sid = session_for(rng, known, &tunnel, false);
            let _ = write!(path, "?sessionId={sid}");
        }
        8 => {
            let n = rng.range(0, 40);
            let _ = write!(path, "?{}", rng.string_from(PCHAR, n));
        }
        _ => path.push_str("?sessionId=&sessionId=%ff&a=b"),
    }
    let mcp_route = is_mcp_route(&path);
    let target = match roll(rng) {
        0..=95 => path.clone(),
        96 => format!("http://127.0.0.1:{}{path}", known.port),
        97 => "*".to_owned(),
        98 => {
            framing = framing.max(Framing::Malformed);
            format!("{path} x")
        }
        _ => {
            framing = framing.max(Framing::Malformed);
            let mut p = path.clone();
            p.push_str(&String::from_utf8_lossy(&rng.bytes(4)));
            p.retain(|c| c != ' ' && c != '\r' && c != '\n');
            p.push('\u{7f}');
            p
        }
    };
    let version = match roll(rng) {
        0..=93 => "HTTP/1.1",
        94 | 95 => "HTTP/1.0",
        96 => {
            framing = framing.max(Framing::Malformed);
            "HTTP/2.0"
        }
        97 => {
            framing = framing.max(Framing::Malformed);
            "HTTP/1.1 extra"
        }
        98 => {
            framing = framing.max(Framing::Malformed);
            "HTTX/1.1"
        }
        _ => {
            framing = framing.max(Framing::Malformed);
            ""
        }
    };

    // Body.
    let body: Vec<u8> = if tame && method == "POST" {
        if rng.pct(65) {
            jsonrpc_message(rng, true).into_bytes()
        } else {
            let msg = jsonrpc_message(rng, false).into_bytes();
            mutate(rng, msg)
        }
    } else if method.eq_ignore_ascii_case("POST") || wild(rng, 10) {
        make_body(rng)
    } else {
        Vec::new()
    };

    // Headers.
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    fn push(h: &mut Vec<(String, Vec<u8>)>, k: &str, v: &[u8]) {
        h.push((k.to_owned(), v.to_vec()));
    }
    if version != "HTTP/1.0" || rng.pct(50) {
        let host: Vec<u8> = match roll(rng) {
            0..=88 => format!("127.0.0.1:{}", known.port).into_bytes(),
            89 => b"localhost".to_vec(),
            90 => b"[::1]:1".to_vec(),
            91 => b"evil.example".to_vec(),
            92 => b"evil.example:80".to_vec(),
            93 => Vec::new(),
            94 => b"127.0.0.1.evil.example".to_vec(),
            95 => vec![b'h'; rng.range(1_000, 10_000)],
            96 => b"[::1".to_vec(),
            _ => random_value(rng),
        };
        push(&mut headers, "Host", &host);
    }
    if tame && !body.is_empty() {
        push(&mut headers, "Content-Type", b"application/json");
    } else if !body.is_empty() || wild(rng, 30) {
        let ct: &[u8] = rng.pick(&[
            &b"application/json"[..],
            b"application/json",
            b"application/json",
            b"application/json",
            b"application/json; charset=utf-8",
            b"APPLICATION/JSON",
            b" application/json ; x=y",
            b"text/plain",
            b"application/jsonx",
            b"application/",
            b"",
            b"multipart/form-data; boundary=x",
            b"application/json\xff",
        ]);
        if rng.pct(92) {
            push(&mut headers, "Content-Type", ct);
        }
    }
    if tame {
        push(
            &mut headers,
            "Accept",
            b"application/json, text/event-stream",
        );
    } else if rng.pct(85) {
        let accept: &[u8] = rng.pick(&[
            &b"application/json, text/event-stream"[..],
            b"application/json, text/event-stream",
            b"application/json, text/event-stream",
            b"application/json",
            b"text/event-stream",
            b"*/*",
            b"text/html",
            b"application/*;q=0.1",
            b"",
            b"\xfe\xff",
        ]);
        push(&mut headers, "Accept", accept);
    }
    if tunnel.contains("auth") || wild(rng, 5) {
        let auth: Vec<u8> = match roll(rng) {
            0..=59 => format!("Bearer {}", known.bearer).into_bytes(),
            60..=64 => format!("bearer   {}  ", known.bearer).into_bytes(),
            65..=69 => b"Bearer wrong".to_vec(),
            70..=74 => b"Bearer".to_vec(),
            75..=79 => b"Basic Zm9vOmJhcg==".to_vec(),
            80..=84 => Vec::new(),
            85..=89 => format!("Bearer {}", "t".repeat(rng.range(5_000, 40_000))).into_bytes(),
            90..=94 => format!("Bearer {}\u{e9}", known.bearer).into_bytes(),
            _ => random_value(rng),
        };
        if tame || rng.pct(90) {
            push(&mut headers, "Authorization", &auth);
        }
    }
    if rng.pct(60) {
        let sid: Vec<u8> = match roll(rng) {
            0..=64 => session_for(rng, known, &tunnel, method == "DELETE").into_bytes(),
            65..=69 => {
                let n = rng.range(1, 40);
                rng.string_from(TCHAR, n).into_bytes()
            }
            70..=74 => Vec::new(),
            75..=79 => vec![b's'; rng.range(4_000, 5_000)],
            80..=84 => b"\x80\x81\xff".to_vec(),
            85..=89 => b"a, b".to_vec(),
            _ => random_value(rng),
        };
        push(&mut headers, "Mcp-Session-Id", &sid);
        if wild(rng, 5) {
            push(&mut headers, "Mcp-Session-Id", b"second");
        }
    }
    if tame && rng.pct(50) {
        let v: &[u8] = rng.pick(&[&b"2025-06-18"[..], b"2025-11-25", b"2025-03-26"]);
        push(&mut headers, "MCP-Protocol-Version", v);
    } else if wild(rng, 50) {
        let v: &[u8] = rng.pick(&[
            &b"2025-06-18"[..],
            b"2025-11-25",
            b"2025-03-26",
            b"2024-11-05",
            b"2026-07-28",
            b"2099-01-01",
            b"",
            b"2025-06-18, 2025-03-26",
            b"\xff",
            b"latest",
        ]);
        push(&mut headers, "MCP-Protocol-Version", v);
    }
    if wild(rng, 15) {
        let v: Vec<u8> = match rng.below(5) {
            0 => b"0".to_vec(),
            1 => b"1-1".to_vec(),
            2 => vec![b'9'; rng.range(1, 6_000)],
            3 => b"\xc3\x28".to_vec(),
            _ => random_value(rng),
        };
        push(&mut headers, "Last-Event-ID", &v);
    }
    if wild(rng, 15) {
        let v: Vec<u8> = match rng.below(7) {
            0 => b"http://localhost:3000".to_vec(),
            1 => b"http://evil.example".to_vec(),
            2 => b"null".to_vec(),
            3 => format!("http://127.0.0.1:{}", known.port).into_bytes(),
            4 => b"http://[::1".to_vec(),
            5 => b"://".to_vec(),
            _ => random_value(rng),
        };
        push(&mut headers, "Origin", &v);
    }
    if wild(rng, 5) {
        push(&mut headers, "Expect", b"100-continue");
    }
    if wild(rng, 15) {
        let v: &[u8] = rng.pick(&[&b"close"[..], b"keep-alive", b"upgrade", b"x, close"]);
        push(&mut headers, "Connection", v);
    }
    let mut upgrade = false;
    if endpoint == "connect" && wild(rng, 40) {
        upgrade = true;
        push(&mut headers, "Connection", b"Upgrade");
        push(&mut headers, "Upgrade", b"websocket");
        push(&mut headers, "Sec-WebSocket-Version", b"13");
        push(
            &mut headers,
            "Sec-WebSocket-Key",
            b"dGhlIHNhbXBsZSBub25jZQ==",
        );
    }
    // Random extra headers: a few, sometimes very many, sometimes one huge value.
    let extra = match roll(rng) {
        0..=69 => 0,
        70..=91 => rng.range(1, 6),
        92..=96 => rng.range(50, 99),
        _ => rng.range(101, 400),
    };
    for _ in 0..extra {
        let n = rng.range(1, 30);
        let name = rng.string_from(TCHAR, n);
        let value = random_value(rng);
        headers.push((name, value));
    }
    if wild(rng, 4) {
        let n = rng.range(8_000, 120_000);
        headers.push(("X-Huge".into(), vec![b'v'; n]));
    }
    // Header syntax errors.
    if wild(rng, 4) {
        framing = framing.max(Framing::Malformed);
        let (k, v): (&str, &[u8]) = rng.pick(&[
            ("No-Colon", &b""[..]),
            ("Space-Before-Colon ", b"x"),
            ("Bad\u{1}Name", b"x"),
            ("", b"empty name"),
            ("Ctl", b"a\x01b"),
            ("Nul", b"a\0b"),
            ("Bare-CR", b"a\rb"),
        ]);
        let mut line = k.as_bytes().to_vec();
        if k != "No-Colon" {
            line.push(b':');
        }
        line.extend_from_slice(v);
        headers.push((String::new(), line));
    }

    // Length and transfer framing.
    let mut body_bytes = body.clone();
    match roll(rng) {
        0..=79 if !body.is_empty() || method == "POST" || rng.pct(20) => {
            let cl = body.len().to_string();
            headers.push(("Content-Length".into(), cl.into_bytes()));
        }
        80..=85 => {
            headers.push(("Transfer-Encoding".into(), b"chunked".to_vec()));
            body_bytes = chunked(rng, &body);
        }
        86..=88 if !body.is_empty() => {
            // Shorter than the body: the rest is read as a next request.
            let cl = rng.below(body.len()).to_string();
            headers.push(("Content-Length".into(), cl.into_bytes()));
        }
        89..=90 => {
            framing = framing.max(Framing::Incomplete);
            let cl = (body.len() + rng.range(1, 1000)).to_string();
            headers.push(("Content-Length".into(), cl.into_bytes()));
        }
        91 => {
            framing = framing.max(Framing::Malformed);
            let v: &[u8] = rng.pick(&[
                &b"abc"[..],
                b"-1",
                b"1e3",
                b"",
                b"+5",
                b" 1 2",
                b"99999999999999999999999",
            ]);
            headers.push(("Content-Length".into(), v.to_vec()));
        }
        92 => {
            framing = framing.max(Framing::Malformed);
            headers.push(("Content-Length".into(), body.len().to_string().into_bytes()));
            headers.push((
                "Content-Length".into(),
                (body.len() + 1).to_string().into_bytes(),
            ));
        }
        93 => {
            framing = framing.max(Framing::Malformed);
            headers.push(("Content-Length".into(), body.len().to_string().into_bytes()));
            headers.push(("Transfer-Encoding".into(), b"chunked".to_vec()));
            body_bytes = chunked(rng, &body);
        }
        94 => {
            framing = framing.max(Framing::Malformed);
            headers.push(("Transfer-Encoding".into(), b"chunked".to_vec()));
            body_bytes = body.clone();
            body_bytes.extend_from_slice(b"\r\nzz\r\n\r\n");
        }
        95 => {
            framing = framing.max(Framing::Malformed);
            headers.push((
                "Transfer-Encoding".into(),
                b"gzip, chunked, identity".to_vec(),
            ));
        }
        96 => {
            // No length at all: a request body cannot be delimited by the close, so the
            // bytes after the head are read as a next request.
        }
        _ => {}
    }

    // Assemble.
    let mut bytes = Vec::with_capacity(body_bytes.len() + 512);
    bytes.extend_from_slice(method.as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(target.as_bytes());
    if !version.is_empty() {
        bytes.push(b' ');
        bytes.extend_from_slice(version.as_bytes());
    }
    let eol: &[u8] = if wild(rng, 3) {
        framing = framing.max(Framing::Malformed);
        b"\n"
    } else {
        b"\r\n"
    };
    bytes.extend_from_slice(eol);
    for (k, v) in &headers {
        if !k.is_empty() {
            bytes.extend_from_slice(k.as_bytes());
            bytes.extend_from_slice(b": ");
        }
        bytes.extend_from_slice(v);
        bytes.extend_from_slice(eol);
    }
    if wild(rng, 2) {
        // The head never ends.
        framing = framing.max(Framing::Incomplete);
    } else {
        bytes.extend_from_slice(eol);
        bytes.extend_from_slice(&body_bytes);
    }
    if wild(rng, 2) {
        // Pure garbage instead.
        framing = Framing::Malformed;
        let n = rng.range(1, 2_000);
        bytes = rng.bytes(n);
        bytes.extend_from_slice(b"\r\n\r\n");
    }
    Case {
        index,
        bytes,
        framing,
        head,
        mcp_route,
        upgrade,
    }
}

/// A random header value: visible ASCII, sometimes obs-text, never a line break.
fn random_value(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(0, 60);
    let mut v = rng.string_from(VCHAR, n).into_bytes();
    if rng.pct(10) {
        v.extend_from_slice(&[0x80, 0xc3, 0xa9, 0xff]);
    }
    v.retain(|&b| b != b'\r' && b != b'\n');
    v.trim_ascii().to_vec()
}

/// A real session of `tunnel` (or, now and then, of the other one). Only the sessions set
/// aside for it are offered to `DELETE`, so the others live through the whole run.
fn session_for(rng: &mut Rng, known: &Known, tunnel: &str, delete: bool) -> String {
    let pool: Vec<&Session> = known
        .sessions
        .iter()
        .filter(|s| s.deletable == delete && (s.tunnel == tunnel || rng.pct(10)))
        .collect();
    if pool.is_empty() {
        known.sessions[rng.below(known.sessions.len())].id.clone()
    } else {
        pool[rng.below(pool.len())].id.clone()
    }
}

/// Whether a request target's path is `/<segment>/mcp`.
fn is_mcp_route(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    let mut parts = path.split('/');
    parts.next() == Some("")
        && parts.next().is_some_and(|name| !name.is_empty())
        && parts.next() == Some("mcp")
        && parts.next().is_none()
}

/// `body` in valid chunked encoding, cut at random places.
fn chunked(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = body;
    while !rest.is_empty() {
        let n = rng.range(1, rest.len().min(50_000));
        let _ = write!(ByteWriter(&mut out), "{n:x}\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// `fmt::Write` into a byte vector.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A random request body.
fn make_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(100) {
        0..=44 => jsonrpc_message(rng, true).into_bytes(),
        45..=74 => {
            let msg = jsonrpc_message(rng, false).into_bytes();
            mutate(rng, msg)
        }
        75..=79 => {
            let n = rng.range(0, 300);
            rng.bytes(n)
        }
        80..=81 => vec![b'['; 100_000],
        82 => {
            let depth = rng.range(100, 100_000);
            let mut b = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"#.to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.extend_from_slice(b"}}}");
            b
        }
        83 => {
            let depth = rng.range(100, 50_000);
            let mut b = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"#.to_vec();
            b.extend(std::iter::repeat_n(&b"{\"a\":"[..], depth).flatten());
            b.extend_from_slice(b"1");
            b.extend(std::iter::repeat_n(b'}', depth + 1));
            b
        }
        84..=86 => {
            // A huge string, under the body limit.
            let n = rng.range(10_000, MAX_BODY - 200);
            format!(
                r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
                "x".repeat(n)
            )
            .into_bytes()
        }
        87 => {
            // Over the body limit.
            let n = rng.range(MAX_BODY, MAX_BODY + 100_000);
            format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"ping","params":{{"pad":"{}"}}}}"#,
                "y".repeat(n)
            )
            .into_bytes()
        }
        88 => {
            let n = rng.range(1, 50);
            let items: Vec<String> = (0..n).map(|_| jsonrpc_message(rng, true)).collect();
            format!("[{}]", items.join(",")).into_bytes()
        }
        89 => b"   \r\n\t ".to_vec(),
        90 => {
            let mut b = b"\xef\xbb\xbf".to_vec();
            b.extend_from_slice(jsonrpc_message(rng, true).as_bytes());
            b
        }
        91 => {
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"ping"}"#
                .to_vec()
        }
        92 => br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#.to_vec(),
        93 => br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":5}}"#.to_vec(),
        94 => br#"{"jsonrpc":"2.0","id":"\ud800","method":"tools/list"}"#.to_vec(),
        _ => {
            let n = rng.range(0, 20);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    rng.pick(&["1", "\"s\"", "null", "{}", "[]", "true", "-0.5e9"])
                        .to_string()
                })
                .collect();
            format!("{{\"jsonrpc\":\"2.0\",\"x\":[{}]}}", items.join(",")).into_bytes()
        }
    }
}

/// A JSON-RPC message an MCP client might send (valid JSON; not always a valid request).
///
/// Every request it makes is one the fixture answers promptly (so the bridge's count of
/// requests in flight must fall back to zero after the run): no `slow` call longer than
/// 2.5 s, unless `slow` is false (for messages about to be mutated, whose `ms` a mutation
/// could make huge) none at all, and no tool that waits for an answer from the client
/// (sampling, elicitation, roots), which a client that hangs up never sends. Nor does it
/// use numbers beyond `f64` (`1e400`): valid JSON, but the fixture cannot read them, so a
/// mutation moving one out of the `id` (which the bridge rewrites) would leave a request
/// unanswered through no fault of the relay.
fn jsonrpc_message(rng: &mut Rng, slow: bool) -> String {
    let id = rng
        .pick(&[
            "1",
            "1",
            "2",
            "0",
            "-1",
            "\"a\"",
            "\"\"",
            "\"\\u0000\"",
            "1.5",
            "99999999999999999999999",
            "true",
            "null",
            "{}",
            "[1]",
            "\"\\n\"",
        ])
        .to_string();
    let token = rng.pick(&["\"p1\"", "7", "null", "{}", "\"\\u00e9\""]);
    let len = rng.range(0, 20);
    let text = rng
        .string_from(b"abcdefghij \\\"/", len)
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let tool_call = |name: &str, args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
        )
    };
    match rng.below(22) {
        0 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{}","capabilities":{{"roots":{{}},"sampling":{{}},"elicitation":{{}}}},"clientInfo":{{"name":"fuzz","version":"0"}}}}}}"#,
            rng.pick(&["2025-06-18", "2025-11-25", "2024-11-05", "1999-01-01", ""])
        ),
        1 => r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
        2 => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
        3 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{"cursor":"{text}"}}}}"#
        ),
        4 => tool_call("echo", &format!(r#"{{"text":"{text}"}}"#)),
        5 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},"_meta":{{"progressToken":{token}}}}}}}"#
        ),
        6 | 7 if slow => tool_call(
            "slow",
            &format!(r#"{{"ms":{},"tag":"fuzz"}}"#, rng.range(0, 2_500)),
        ),
        6 | 7 => tool_call("test_simple_text", "{}"),
        8 => tool_call(
            rng.pick(&[
                "test_simple_text",
                "test_error_handling",
                "test_image_content",
            ]),
            "{}",
        ),
        9 => tool_call(
            rng.pick(&["test_tool_with_progress", "test_tool_with_logging"]),
            "{}",
        ),
        10 => tool_call("test_multiple_content_types", "{}"),
        11 => tool_call(
            rng.pick(&["no_such_tool", "", "echo"]),
            rng.pick(&["[]", "null", "5", "{\"text\":5}"]),
        ),
        12 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"resources/read","params":{{"uri":"{}"}}}}"#,
            rng.pick(&["fixture://static-text", "x", ""])
        ),
        13 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"prompts/get","params":{{"name":"test_simple_prompt"}}}}"#
        ),
        14 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"logging/setLevel","params":{{"level":"{}"}}}}"#,
            rng.pick(&["debug", "emergency", "nope"])
        ),
        15 => format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"fuzz"}}}}"#
        ),
        16 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[],"model":"m","role":"assistant"}}}}"#
        ),
        17 => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-1,"message":"no"}}}}"#),
        18 => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"server/discover","params":{{}}}}"#),
        19 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
        ),
        20 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"resources/subscribe","params":{{"uri":"fixture://watched"}}}}"#
        ),
        _ => format!(r#"{{"jsonrpc":"1.0","id":{id},"method":"{text}"}}"#),
    }
}

/// Damages a message: truncation, byte flips, insertions, deletions, duplications.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.range(1, 4) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len());
        match rng.below(7) {
            0 => b.truncate(at),
            1 => b[at] = rng.next() as u8,
            2 => {
                let tok = rng.pick(&[
                    &b"{"[..],
                    b"}",
                    b"[",
                    b"]",
                    b",",
                    b":",
                    b"\"",
                    b"\\",
                    b"\n",
                    b"\0",
                    b"null",
                    b"-0.0e-0",
                    b"\"id\":",
                    b"\xff",
                    b"\"jsonrpc\":\"2.0\",",
                ]);
                b.splice(at..at, tok.iter().copied());
            }
            3 => {
                let end = rng.range(at, b.len());
                b.drain(at..end);
            }
            4 => {
                let end = rng.range(at, b.len());
                let part = b[at..end].to_vec();
                b.splice(at..at, part);
            }
            5 => b
                .splice(at..at, std::iter::repeat_n(b' ', rng.range(1, 100)))
                .for_each(drop),
            _ => b[at] ^= 1 << rng.below(8),
        }
    }
    b
}

// ----- sending and reading -----------------------------------------------------------------

/// A parsed response.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Time to the (final) response head.
    elapsed: Duration,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What happened to one request.
enum Outcome {
    Response(Resp),
    /// The connection closed (or reset) before a complete response head.
    Closed {
        partial: Vec<u8>,
        error: String,
    },
    /// Nothing within the wait.
    Silent {
        partial: Vec<u8>,
    },
    /// The response bytes are not HTTP.
    Garbled {
        data: Vec<u8>,
        why: String,
    },
}

/// Sends a case and reads the answer: the head within `wait`, then (unless it is a stream)
/// the body within the same budget.
async fn send(addr: &str, case: &Case) -> Outcome {
    let wait = if case.framing == Framing::Incomplete {
        INCOMPLETE_WAIT
    } else {
        HEAD_LIMIT
    };
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + wait;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Outcome::Closed {
                partial: Vec::new(),
                error: format!("connect: {e}"),
            };
        }
        Err(_) => {
            return Outcome::Silent {
                partial: Vec::new(),
            };
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    // Write concurrently: the server may answer (and stop reading) before the body ends.
    let bytes = case.bytes.clone();
    let writer = tokio::spawn(async move {
        let r = wr.write_all(&bytes).await;
        let _ = wr.flush().await;
        // Keep the write half open (no FIN) until the reader is done.
        std::future::pending::<()>().await;
        drop((r, wr));
    });
    let mut buf: Vec<u8> = Vec::new();
    let outcome = async {
        // Head, skipping interim 1xx answers (100-continue).
        let (status, headers, mut rest) = loop {
            let (end, parsed) = loop {
                if let Some(end) = find(&buf, b"\r\n\r\n") {
                    break (end, parse_head(&buf[..end]));
                }
                match read_some(&mut rd, &mut buf, deadline).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Outcome::Closed {
                            partial: buf,
                            error: "EOF".into(),
                        };
                    }
                    Err(ReadErr::Timeout) => return Outcome::Silent { partial: buf },
                    Err(ReadErr::Io(e)) => {
                        return Outcome::Closed {
                            partial: buf,
                            error: e,
                        };
                    }
                }
            };
            let (status, headers) = match parsed {
                Ok(x) => x,
                Err(why) => return Outcome::Garbled { data: buf, why },
            };
            let rest = buf.split_off(end + 4);
            if (100..200).contains(&status) && status != 101 {
                buf = rest;
                continue;
            }
            break (status, headers, rest);
        };
        let elapsed = start.elapsed();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            elapsed,
        };
        let streaming = resp
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if case.head || status == 101 || status == 204 || status == 304 || streaming {
            return Outcome::Response(resp);
        }
        // Body: Content-Length, chunked, or up to the close.
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                match dechunk(&rest) {
                    Some(Ok(body)) => {
                        resp.body = body;
                        break;
                    }
                    Some(Err(why)) => {
                        return Outcome::Garbled {
                            data: rest,
                            why: format!("bad chunked body: {why}"),
                        };
                    }
                    None if rest.len() > MAX_KEPT_BODY => {
                        resp.body = rest;
                        break;
                    }
                    None => {}
                }
                if !matches!(read_some(&mut rd, &mut rest, deadline).await, Ok(true)) {
                    return Outcome::Garbled {
                        data: rest,
                        why: "chunked body cut short".into(),
                    };
                }
            }
        } else if let Some(len) = resp.header("content-length") {
            let Ok(len) = len.trim().parse::<usize>() else {
                return Outcome::Garbled {
                    data: rest,
                    why: format!("bad Content-Length {len:?}"),
                };
            };
            while rest.len() < len.min(MAX_KEPT_BODY) {
                if !matches!(read_some(&mut rd, &mut rest, deadline).await, Ok(true)) {
                    return Outcome::Garbled {
                        data: rest,
                        why: format!("body cut short of its Content-Length {len}"),
                    };
                }
            }
            rest.truncate(len);
            resp.body = rest;
        } else {
            while rest.len() < MAX_KEPT_BODY
                && matches!(read_some(&mut rd, &mut rest, deadline).await, Ok(true))
            {}
            resp.body = rest;
        }
        Outcome::Response(resp)
    }
    .await;
    writer.abort();
    outcome
}

enum ReadErr {
    Timeout,
    Io(String),
}

/// Reads more bytes into `buf`; `Ok(false)` at EOF.
async fn read_some(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<bool, ReadErr> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
        Err(_) => Err(ReadErr::Timeout),
        Ok(Err(e)) => Err(ReadErr::Io(e.to_string())),
        Ok(Ok(0)) => Ok(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `HTTP/1.1 200 OK` and the header lines.
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok((status, headers))
}

/// Decodes a complete chunked body; `None` while more bytes are needed.
fn dechunk(mut data: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let mut out = Vec::new();
    loop {
        let eol = find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Some(Err(format!("bad chunk size {size_text:?}")));
        };
        data = &data[eol + 2..];
        if size == 0 {
            return Some(Ok(out));
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ----- checking ----------------------------------------------------------------------------

/// What the workers collect.
#[derive(Default)]
struct Results {
    /// Outcomes by framing and status.
    stats: BTreeMap<String, usize>,
    violations: Vec<Violation>,
    /// The slowest response head and its request.
    slowest: (Duration, usize),
    /// One line per request, when `HTTP_FUZZ_TRACE` names a file.
    trace: Vec<String>,
}

/// What went wrong with one request.
struct Violation {
    kind: &'static str,
    /// The answer's status and body start, to group identical findings.
    signature: String,
    request: String,
    observed: String,
}

/// A readable excerpt of bytes.
fn excerpt(b: &[u8], max: usize) -> String {
    let shown = &b[..b.len().min(max)];
    let mut s = shown.escape_ascii().to_string();
    if b.len() > max {
        let _ = write!(s, "… ({} bytes in all)", b.len());
    }
    s
}

/// The request as reported: the head in full (long lines cut) and the body's start.
fn describe_request(case: &Case) -> String {
    let head_end = find(&case.bytes, b"\r\n\r\n").map_or(case.bytes.len(), |e| e + 4);
    let (head, body) = case.bytes.split_at(head_end);
    let mut s = format!("{:?} request #{}:\n", case.framing, case.index);
    for line in head.split(|&b| b == b'\n') {
        let _ = writeln!(s, "    {}", excerpt(line, 300));
    }
    if !body.is_empty() {
        let _ = writeln!(s, "    body: {}", excerpt(body, 300));
    }
    s
}

fn describe_response(r: &Resp) -> String {
    let mut s = format!("{} after {:?}", r.status, r.elapsed);
    for (k, v) in &r.headers {
        let _ = write!(s, "; {k}: {}", excerpt(v.as_bytes(), 100));
    }
    let _ = write!(s, "; body: {}", excerpt(&r.body, 400));
    s
}

/// What a violation kind means and what is expected instead.
fn explain(kind: &str) -> &'static str {
    match kind {
        KIND_5XX => {
            "    expected: no 5xx but 502/503 (tunnel unavailable); a 500 means a handler \
             failed or panicked"
        }
        KIND_SLOW => "    expected: every response head within HEAD_LIMIT",
        KIND_NOT_JSONRPC => {
            "    expected: every refusal on /<name>/mcp is a JSON-RPC error object (as \
             relay/src/util/http_error.rs builds), so MCP clients can show why; this answer comes from \
             the framework (e.g. axum's Path extractor rejecting the tunnel name), not the relay"
        }
        KIND_CLOSED => "    expected: a response (any status) to a well-formed request",
        KIND_SILENT => "    expected: a response, or at least a close, within HEAD_LIMIT",
        _ => "    expected: a parseable HTTP/1.x response",
    }
}

/// Violation kinds.
const KIND_5XX: &str = "5xx other than 502/503";
const KIND_SLOW: &str = "slow response head";
const KIND_NOT_JSONRPC: &str = "4xx on /<name>/mcp without a JSON-RPC error body";
const KIND_CLOSED: &str = "well-formed request closed without a response";
const KIND_SILENT: &str = "no response (nor close) within the limit";
const KIND_GARBLED: &str = "unparseable response";

/// Whether a body is a JSON-RPC error object.
fn is_jsonrpc_error(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    v["jsonrpc"] == "2.0"
        && v["error"]["code"].is_i64()
        && v["error"]["message"].is_string()
        && v.get("id").is_some()
}

/// Checks one outcome, returning the violations and a label for the statistics.
fn check(case: &Case, outcome: &Outcome) -> (String, Vec<Violation>) {
    let mut found = Vec::new();
    let signature = match outcome {
        Outcome::Response(r) => format!("{} {}", r.status, excerpt(&r.body, 80)),
        Outcome::Closed { error, .. } => format!("closed ({error})"),
        Outcome::Silent { .. } => "nothing".to_owned(),
        Outcome::Garbled { why, .. } => format!("garbled ({why})"),
    };
    let mut violation = |kind: &'static str, observed: String| {
        found.push(Violation {
            kind,
            signature: signature.clone(),
            request: describe_request(case),
            observed,
        });
    };
    let label = match outcome {
        Outcome::Response(r) => {
            if r.status >= 500 && r.status != 502 && r.status != 503 {
                violation(KIND_5XX, describe_response(r));
            }
            if r.elapsed > HEAD_LIMIT {
                violation(KIND_SLOW, describe_response(r));
            }
            if case.mcp_route
                && (400..500).contains(&r.status)
                && !r.body.is_empty()
                && !is_jsonrpc_error(&r.body)
            {
                violation(KIND_NOT_JSONRPC, describe_response(r));
            }
            let sse = r
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream"));
            format!(
                "{:?} {}{}",
                case.framing,
                r.status,
                if sse { " (SSE)" } else { "" }
            )
        }
        Outcome::Closed { partial, error } => {
            if case.framing == Framing::WellFormed {
                violation(
                    KIND_CLOSED,
                    format!("{error}; bytes received: {}", excerpt(partial, 300)),
                );
            }
            format!("{:?} closed", case.framing)
        }
        Outcome::Silent { partial } => {
            if case.framing != Framing::Incomplete {
                violation(
                    KIND_SILENT,
                    format!(
                        "nothing complete within {HEAD_LIMIT:?}; bytes received: {}",
                        excerpt(partial, 300)
                    ),
                );
            }
            format!("{:?} silent", case.framing)
        }
        Outcome::Garbled { data, why } => {
            if !(case.upgrade || case.framing == Framing::Incomplete) {
                violation(KIND_GARBLED, format!("{why}: {}", excerpt(data, 300)));
            }
            format!("{:?} garbled", case.framing)
        }
    };
    (label, found)
}

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

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// Sends one JSON-RPC message the way an MCP client does; returns the session header and
/// the answer to `id` (from a JSON body or an SSE stream), if any.
async fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    session: Option<&str>,
    msg: &Value,
) -> (u16, Option<String>, Option<Value>) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MCP_VERSION)
        .body(msg.to_string());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("MCP POST");
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let answer = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).ok()
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id") == msg.get("id") && v.get("method").is_none())
    };
    (status, sid, answer)
}

/// `initialize` + `notifications/initialized`; the session id.
async fn initialize(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": MCP_VERSION, "capabilities": {},
        "clientInfo": {"name": "http-fuzz", "version": "0"}}});
    let (status, sid, answer) = mcp_post(client, url, bearer, None, &init).await;
    assert_eq!(status, 200, "initialize on {url}: {answer:?}");
    assert!(
        answer
            .as_ref()
            .is_some_and(|a| a["result"]["protocolVersion"].is_string()),
        "initialize on {url} gave no result: {answer:?}"
    );
    let sid = sid.unwrap_or_else(|| panic!("initialize on {url} returned no Mcp-Session-Id"));
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let (status, _, _) = mcp_post(client, url, bearer, Some(&sid), &note).await;
    assert_eq!(status, 202, "notifications/initialized on {url}");
    sid
}

/// How long the bridge may still hold requests once the last client left (the longest
/// `slow` call the generator makes is 2.5 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(8);

/// Waits until the bridge behind `name` has no request in flight on its server; the
/// error names the server's complaints from the bridge's log.
async fn drained(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    bearer: Option<&str>,
    bridge: &Bridge,
) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let mut req = client.get(format!("{base}/status/{name}"));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Ok(r) = req.send().await
            && let Ok(v) = r.json::<Value>().await
        {
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
async fn open_pending(client: &reqwest::Client, base: &str) -> Option<u64> {
    let v: Value = client
        .get(format!("{base}/status/{OPEN}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["bridge"]["pending"].as_u64()
}

/// A request its client cancels with `notifications/cancelled` must stop counting as in
/// flight: the server, as the MCP specification asks, never answers it.
async fn cancel_is_forgotten(
    client: &reqwest::Client,
    base: &str,
    url: &str,
) -> Result<(), String> {
    let before = open_pending(client, base).await.unwrap_or(0);
    let sid = initialize(client, url, None).await;
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"slow","arguments":{"ms":60_000,"tag":"cancel-probe"}}});
    // The answer turns into an SSE stream after the relay's 1 s keep-alive interval.
    let mut stream = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .body(call.to_string())
        .send()
        .await
        .map_err(|e| format!("cancellation probe: the slow call failed: {e}"))?;
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":7,"reason":"probe"}});
    let (status, _, _) = mcp_post(client, url, None, Some(&sid), &cancel).await;
    if status != 202 {
        return Err(format!(
            "cancellation probe: notifications/cancelled got {status}"
        ));
    }
    // The bridge closes the call's stream with a "Request cancelled" error.
    let _ = tokio::time::timeout(HEAD_LIMIT, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut now_pending = None;
    while Instant::now() < deadline {
        now_pending = open_pending(client, base).await;
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
async fn still_serves(client: &reqwest::Client, url: &str, bearer: Option<&str>) {
    let sid = initialize(client, url, bearer).await;
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"still alive"}}});
    let (status, _, answer) = mcp_post(client, url, bearer, Some(&sid), &call).await;
    assert_eq!(status, 200, "tools/call on {url} after fuzzing: {answer:?}");
    let text = answer
        .as_ref()
        .and_then(|a| a["result"]["content"][0]["text"].as_str());
    assert_eq!(
        text,
        Some("still alive"),
        "tools/call on {url} after fuzzing answered {answer:?}"
    );
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
        Bridge::start(BridgeOpts {
            relay: Some((relay.base.clone(), relay.token.clone())),
            name: Some(name.to_owned()),
            no_auth,
            ..BridgeOpts::default()
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
        let client = http();
        let mut sessions = Vec::new();
        for i in 0..8 {
            let deletable = i % 2 == 1;
            sessions.push(Session {
                tunnel: OPEN,
                id: initialize(&client, &open.mcp_url, None).await,
                deletable,
            });
            sessions.push(Session {
                tunnel: AUTH,
                id: initialize(&client, &auth.mcp_url, Some(&bearer)).await,
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
        let health: Value = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz")
            .json()
            .await
            .expect("healthz JSON");
        assert_eq!(
            health["tunnels"], 2,
            "both bridges should still be connected after fuzzing: {health}"
        );
        let mut late = Vec::new();
        // Every request the relay forwarded has been answered by now (see jsonrpc_message).
        for (name, token, bridge) in [(OPEN, None, &open), (AUTH, Some(bearer.as_str()), &auth)] {
            if let Err(e) = drained(&client, &base, name, token, bridge).await {
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
        if let Err(e) = cancel_is_forgotten(&client, &base, &open.mcp_url).await {
            late.push(e);
        }
        still_serves(&client, &open.mcp_url, None).await;
        still_serves(&client, &auth.mcp_url, Some(&bearer)).await;
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
