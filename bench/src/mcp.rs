//! An MCP Streamable HTTP client session on one keep-alive connection: `initialize`,
//! `notifications/initialized`, then `tools/call` with its own `Mcp-Session-Id`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use memchr::memmem;

use crate::http::{Conn, Endpoint, Response};

/// The protocol version the benchmark's client asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// The arguments of every `echo` call (the whole request body is about 100 bytes).
pub const ECHO_ARGS: &str = r#"{"text":"hello, bench"}"#;

/// What the load generator talks to.
#[derive(Debug)]
pub struct Target {
    /// Short name for messages.
    pub label: String,
    /// Address and path.
    pub endpoint: Endpoint,
    /// `Authorization: Bearer` token, if the server wants one.
    pub bearer: Option<String>,
    /// Whether to run the MCP handshake first (false for the null HTTP server).
    pub handshake: bool,
}

/// One client session.
pub struct Session {
    target: Arc<Target>,
    conn: Conn,
    /// Header lines sent with every request.
    head: Vec<u8>,
    session: Option<String>,
    next_id: u64,
    body: Vec<u8>,
}

fn check(resp: &Response, what: &str) -> Result<()> {
    if resp.status != 200 {
        bail!(
            "{what}: HTTP {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
        );
    }
    let json = resp.json();
    if memmem::find(json, b"\"result\"").is_none() {
        bail!(
            "{what}: no result in {}",
            String::from_utf8_lossy(&json[..json.len().min(300)])
        );
    }
    Ok(())
}

impl Session {
    /// Connects and, for MCP targets, initializes a session.
    pub async fn open(target: Arc<Target>) -> Result<Self> {
        let conn = Conn::connect(target.endpoint.addr).await?;
        let mut s = Self {
            head: Vec::new(),
            target,
            conn,
            session: None,
            next_id: 1,
            body: Vec::with_capacity(256),
        };
        s.set_head(None);
        if !s.target.handshake {
            return Ok(s);
        }
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"bench","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let resp = s.post_raw(init.into_bytes()).await?;
        check(&resp, "initialize")?;
        let version = serde_json::from_slice::<serde_json::Value>(resp.json())
            .ok()
            .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_owned))
            .unwrap_or_else(|| PROTOCOL_VERSION.to_owned());
        s.session = resp.session.clone();
        s.set_head(Some(&version));
        let resp = s
            .post_raw(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec())
            .await?;
        if !(200..300).contains(&resp.status) {
            bail!("notifications/initialized: HTTP {}", resp.status);
        }
        Ok(s)
    }

    fn set_head(&mut self, version: Option<&str>) {
        let t = &self.target;
        let mut h = Vec::with_capacity(256);
        let _ = write!(
            h,
            "Host: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n",
            t.endpoint.host
        );
        if let Some(b) = &t.bearer {
            let _ = write!(h, "Authorization: Bearer {b}\r\n");
        }
        if let Some(s) = &self.session {
            let _ = write!(h, "Mcp-Session-Id: {s}\r\n");
        }
        if let Some(v) = version {
            let _ = write!(h, "MCP-Protocol-Version: {v}\r\n");
        }
        self.head = h;
    }

    async fn post_raw(&mut self, body: Vec<u8>) -> Result<Response> {
        self.conn
            .request("POST", &self.target.endpoint.path, &self.head, &body)
            .await
            .with_context(|| format!("POST to {}", self.target.label))
    }

    async fn call(&mut self, tool: &str, args: &str) -> Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        self.body.clear();
        write!(
            self.body,
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        )?;
        let resp = self
            .conn
            .request("POST", &self.target.endpoint.path, &self.head, &self.body)
            .await?;
        check(&resp, "tools/call")?;
        Ok(resp)
    }

    /// One `tools/call echo` with [`ECHO_ARGS`]; checks that a result came back.
    pub async fn echo(&mut self) -> Result<()> {
        self.call("echo", ECHO_ARGS).await.map(drop)
    }

    /// One `tools/call big` of `bytes` bytes; the size of the HTTP body received.
    pub async fn big(&mut self, bytes: usize) -> Result<usize> {
        let resp = self.call("big", &format!(r#"{{"bytes":{bytes}}}"#)).await?;
        if resp.body.len() < bytes {
            bail!("big: only {} bytes came back", resp.body.len());
        }
        Ok(resp.body.len())
    }

    /// The target this session talks to.
    pub fn target(&self) -> Arc<Target> {
        self.target.clone()
    }

    /// Ends the session with `DELETE` (best effort) and closes the connection.
    pub async fn close(mut self) {
        if self.session.is_some() {
            let _ = self
                .conn
                .request("DELETE", &self.target.endpoint.path, &self.head, b"")
                .await;
        }
    }
}
