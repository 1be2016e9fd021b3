//! The random requests: a seeded PRNG and the cases it makes (methods, targets, headers,
//! framings and bodies, a share of them tame enough to reach the server).

use std::fmt::Write as _;

use super::{AUTH, MAX_BODY, OPEN};

// ----- PRNG ------------------------------------------------------------------------------

/// xorshift64* — tiny, seeded, good enough to pick test cases.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub(super) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub(super) fn pct(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `n` characters from `alphabet`.
    pub(super) fn string_from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| self.pick(alphabet) as char)
            .collect::<String>()
    }
}

/// `tchar` of RFC 9110: what a method or header name may contain.
pub(super) const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters allowed unencoded in a path segment.
pub(super) const PCHAR: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
/// Visible ASCII, for header values.
pub(super) const VCHAR: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\t";

// ----- test cases ------------------------------------------------------------------------

/// How a request is framed, which decides the acceptable outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Framing {
    /// Valid HTTP/1.x: a response is required.
    WellFormed,
    /// Invalid HTTP: a response or a prompt close.
    Malformed,
    /// Missing bytes the server may wait for.
    Incomplete,
}

/// One generated request.
pub(super) struct Case {
    /// Position in the generated sequence.
    pub(super) index: usize,
    /// Exactly what is written to the socket.
    pub(super) bytes: Vec<u8>,
    pub(super) framing: Framing,
    /// `HEAD`: the response has no body whatever its headers say.
    pub(super) head: bool,
    /// The request target is `/<segment>/mcp` (possibly with a query).
    pub(super) mcp_route: bool,
    /// A WebSocket upgrade: after a 101 the socket carries frames, not HTTP.
    pub(super) upgrade: bool,
}

/// A session set up before fuzzing.
pub(super) struct Session {
    pub(super) tunnel: &'static str,
    pub(super) id: String,
    /// Offered to `DELETE` requests (the others are never deleted on purpose).
    pub(super) deletable: bool,
}

/// What the generator knows about the system under test.
pub(super) struct Known {
    /// The relay's port, for `Host`, `Origin` and absolute-form targets.
    pub(super) port: u16,
    /// The bearer tunnel's client token.
    pub(super) bearer: String,
    /// Real sessions, for `Mcp-Session-Id` and `sessionId`.
    pub(super) sessions: Vec<Session>,
}

/// Builds request number `index`.
///
/// About 40 % of the requests are *tame*: a valid request to a tunnel's endpoint (valid
/// headers, right token, a real session or none) whose only randomness is the JSON-RPC
/// body, so that many requests get past the relay's checks to the bridge and the server.
/// The others vary every part at once.
pub(super) fn generate(rng: &mut Rng, index: usize, known: &Known) -> Case {
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
    // Queries, the HTTP+SSE transport's sessionId among them.
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
    pub(super) fn push(h: &mut Vec<(String, Vec<u8>)>, k: &str, v: &[u8]) {
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
pub(super) fn random_value(rng: &mut Rng) -> Vec<u8> {
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
pub(super) fn session_for(rng: &mut Rng, known: &Known, tunnel: &str, delete: bool) -> String {
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
pub(super) fn is_mcp_route(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    let mut parts = path.split('/');
    parts.next() == Some("")
        && parts.next().is_some_and(|name| !name.is_empty())
        && parts.next() == Some("mcp")
        && parts.next().is_none()
}

/// `body` in valid chunked encoding, cut at random places.
pub(super) fn chunked(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
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
pub(super) struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A random request body.
pub(super) fn make_body(rng: &mut Rng) -> Vec<u8> {
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
pub(super) fn jsonrpc_message(rng: &mut Rng, slow: bool) -> String {
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
pub(super) fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
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
