//! A minimal HTTP/1.1 keep-alive client: one request at a time per connection, one `write`
//! per request, `TCP_NODELAY`, and just enough response parsing for the benchmark
//! (`Content-Length` and chunked bodies, the `Mcp-Session-Id` header).
//!
//! It is deliberately small so the load generator spends as little CPU as possible on the
//! two cores it shares with the system under test; every target (the null server, the
//! tunnel, supergateway) is driven by this same code.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: a loopback address and the request path.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Socket address of the server.
    pub addr: SocketAddr,
    /// `Host` header value (`ip:port`).
    pub host: String,
    /// Request path (`/name/mcp`).
    pub path: String,
}

impl Endpoint {
    /// Parses an `http://ip:port/path` URL (the benchmark only talks to IP literals).
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url} is not an http:// URL"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = host
            .parse()
            .with_context(|| format!("{url}: the host must be an ip:port literal"))?;
        Ok(Self {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Mcp-Session-Id`, if present.
    pub session: Option<String>,
    /// Whether the body is `text/event-stream`.
    pub sse: bool,
    /// The whole body (de-chunked).
    pub body: Bytes,
}

impl Response {
    /// The first JSON-RPC message of the body: the body itself, or the first SSE `data:`
    /// line.
    pub fn json(&self) -> &[u8] {
        if !self.sse {
            return &self.body;
        }
        for line in self.body.split(|&b| b == b'\n') {
            if let Some(d) = line.strip_prefix(b"data:") {
                let d = d.strip_prefix(b" ").unwrap_or(d);
                let d = d.strip_suffix(b"\r").unwrap_or(d);
                if !d.is_empty() {
                    return d;
                }
            }
        }
        b""
    }
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl Conn {
    /// Connects with `TCP_NODELAY`.
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(1024),
        })
    }

    /// Sends one request: the request line, `head` (complete header lines, each ending in
    /// `\r\n`), `Content-Length` and the body, in one write; then reads the response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        head: &[u8],
        body: &[u8],
    ) -> Result<Response> {
        use std::io::Write;
        self.wbuf.clear();
        write!(self.wbuf, "{method} {path} HTTP/1.1\r\n")?;
        self.wbuf.extend_from_slice(head);
        write!(self.wbuf, "Content-Length: {}\r\n\r\n", body.len())?;
        self.wbuf.extend_from_slice(body);
        self.stream.write_all(&self.wbuf).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < 8 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    async fn line(&mut self) -> Result<Bytes> {
        loop {
            if let Some(i) = memmem::find(&self.rbuf, b"\r\n") {
                let l = self.rbuf.split_to(i).freeze();
                self.rbuf.advance(2);
                return Ok(l);
            }
            self.fill().await?;
        }
    }

    async fn read_response(&mut self) -> Result<Response> {
        let head_len = loop {
            if let Some(i) = memmem::find(&self.rbuf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = self.rbuf.split_to(head_len).freeze();
        let mut lines = head.split(|&b| b == b'\n');
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .with_context(|| {
                format!("bad status line {:?}", String::from_utf8_lossy(status_line))
            })?;
        let mut framing = if status == 204 || status == 304 || status < 200 {
            Framing::Length(0)
        } else {
            Framing::UntilClose
        };
        let mut session = None;
        let mut sse = false;
        for l in lines {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let Some(colon) = memchr::memchr(b':', l) else {
                continue;
            };
            let name = &l[..colon];
            let value = std::str::from_utf8(&l[colon + 1..]).unwrap_or("").trim();
            if name.eq_ignore_ascii_case(b"content-length") {
                framing = Framing::Length(value.parse().context("bad Content-Length")?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                framing = Framing::Chunked;
            } else if name.eq_ignore_ascii_case(b"mcp-session-id") {
                session = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case(b"content-type") {
                sse = value.to_ascii_lowercase().starts_with("text/event-stream");
            }
        }
        let body = match framing {
            Framing::Length(n) => {
                if self.rbuf.len() < n {
                    self.rbuf.reserve(n - self.rbuf.len());
                }
                while self.rbuf.len() < n {
                    self.fill().await?;
                }
                self.rbuf.split_to(n).freeze()
            }
            Framing::Chunked => {
                let mut body = BytesMut::new();
                loop {
                    let size_line = self.line().await?;
                    let hex = size_line
                        .split(|&b| b == b';')
                        .next()
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .map(str::trim)
                        .unwrap_or("");
                    let size = usize::from_str_radix(hex, 16)
                        .with_context(|| format!("bad chunk size {hex:?}"))?;
                    if size == 0 {
                        // Trailers, up to the empty line.
                        while !self.line().await?.is_empty() {}
                        break;
                    }
                    while self.rbuf.len() < size + 2 {
                        self.fill().await?;
                    }
                    body.extend_from_slice(&self.rbuf[..size]);
                    self.rbuf.advance(size + 2);
                }
                body.freeze()
            }
            Framing::UntilClose => {
                bail!("response without Content-Length or chunked encoding (status {status})")
            }
        };
        Ok(Response {
            status,
            session,
            sse,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://127.0.0.1:7171/abc/mcp").unwrap();
        assert_eq!(e.host, "127.0.0.1:7171");
        assert_eq!(e.path, "/abc/mcp");
        assert!(Endpoint::parse("https://x/").is_err());
    }

    #[test]
    fn sse_json() {
        let r = Response {
            status: 200,
            session: None,
            sse: true,
            body: Bytes::from_static(b"event: message\ndata: {\"a\":1}\n\n"),
        };
        assert_eq!(r.json(), b"{\"a\":1}");
    }
}
