//! Sending a case as raw bytes and reading what comes back, whatever it is.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::generator::{Case, Framing};
use super::{HEAD_LIMIT, INCOMPLETE_WAIT, MAX_KEPT_BODY};

// ----- sending and reading -----------------------------------------------------------------

/// A parsed response.
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    /// Time to the (final) response head.
    pub(super) elapsed: Duration,
}

impl Resp {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What happened to one request.
pub(super) enum Outcome {
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
pub(super) async fn send(addr: &str, case: &Case) -> Outcome {
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

pub(super) enum ReadErr {
    Timeout,
    Io(String),
}

/// Reads more bytes into `buf`; `Ok(false)` at EOF.
pub(super) async fn read_some(
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

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `HTTP/1.1 200 OK` and the header lines.
pub(super) fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
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
pub(super) fn dechunk(mut data: &[u8]) -> Option<Result<Vec<u8>, String>> {
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
