//! HTTP/1.1 spoken by hand over a plain TCP connection, for requests a client library
//! would correct (or headers it would add) and answers read byte for byte.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 answer read to its end: status, headers (names in lower case, repeated
/// ones joined with a line break) and body (a chunked one decoded).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HashMap<String, String>,
    /// The body, as text (lossy).
    pub body: String,
}

impl HttpAnswer {
    /// A header's value (repeated ones joined with a line break), `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The body as JSON; panics with the status and body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.body))
    }

    /// The `name=value` part of the first `Set-Cookie` whose name starts with `prefix`.
    pub fn cookie(&self, prefix: &str) -> String {
        self.header("set-cookie")
            .lines()
            .find(|c| c.starts_with(prefix))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no {prefix} cookie: {:?}", self.headers))
            .to_owned()
    }
}

/// The request head of `method target` to `Host: host` (closing the connection after the
/// answer) with `headers` and a body of `len` bytes.
fn head(method: &str, target: &str, host: &str, headers: &[(&str, &str)], len: usize) -> String {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    req
}

/// One request to `url` on a server listening on 127.0.0.1 (the URL's host, e.g.
/// `localhost`, goes into `Host` only): `method` with `headers` and `body`; the whole
/// answer. Panics on a connection error, or after 15 s without the end of the answer.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpAnswer {
    let u = reqwest::Url::parse(url).expect("URL");
    let port = u.port().expect("a URL with a port");
    let host = format!("{}:{port}", u.host_str().expect("a host"));
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let req = head(method, &target, &host, headers, body.len());
    conn.write_all(req.as_bytes()).expect("send the request");
    conn.write_all(body.as_bytes()).expect("send the body");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read the answer");
    parse_http_answer(&raw)
}

/// One request to the server on 127.0.0.1:`port` (`Host: localhost:<port>`), sent from the
/// loopback address `from` (any of 127.0.0.0/8, so one test can be many clients): `method
/// target` with `headers` and `body`; the whole answer, waited for up to `wait`.
pub async fn request_from(
    from: Ipv4Addr,
    port: u16,
    (method, target): (&str, &str),
    headers: &[(&str, &str)],
    body: &str,
    wait: Duration,
) -> HttpAnswer {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let mut conn = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect to the server");
    let req = head(
        method,
        target,
        &format!("localhost:{port}"),
        headers,
        body.len(),
    );
    conn.write_all(req.as_bytes()).await.expect("send");
    conn.write_all(body.as_bytes())
        .await
        .expect("send the body");
    let mut raw = Vec::new();
    tokio::time::timeout(wait, conn.read_to_end(&mut raw))
        .await
        .expect("the server answers")
        .expect("read the answer");
    parse_http_answer(&raw)
}

/// Parses a whole HTTP/1.1 answer as read from a connection closed by the server; panics
/// (the test fails) on anything that is not one.
pub fn parse_http_answer(raw: &[u8]) -> HttpAnswer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut headers: HashMap<String, String> = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let e = headers.entry(k.trim().to_ascii_lowercase()).or_default();
            if !e.is_empty() {
                e.push('\n');
            }
            e.push_str(v.trim());
        }
    }
    let rest = &raw[split + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut body = Vec::new();
        let mut rest = rest;
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&rest[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .unwrap_or(0);
            let data = &rest[eol + 2..];
            if size == 0 || data.len() < size {
                break;
            }
            body.extend_from_slice(&data[..size]);
            rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
        }
        body
    } else {
        rest.to_vec()
    };
    HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// POSTs `body` to `url` (`http://host:port/path`) on a fresh connection with `headers`
/// (`Connection: close`, `Content-Type: application/json` and an `Accept` for both answer
/// types are added) and reads the whole answer; panics on a connection error.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &str) -> HttpAnswer {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut conn = std::net::TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("cannot connect to {authority}: {e}"));
    conn.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .expect("read timeout");
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n",
        if path.is_empty() { "/" } else { path },
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).expect("write the request");
    conn.write_all(body.as_bytes()).expect("write the body");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read the answer");
    parse_http_answer(&raw)
}
