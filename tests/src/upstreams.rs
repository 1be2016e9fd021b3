//! Real third-party MCP servers served over HTTP, for `bridge run --upstream URL`: the
//! pinned `@modelcontextprotocol/server-everything` in its Streamable HTTP and its HTTP+SSE
//! mode, and `tests/clients/py_http_server.py` (the Python SDK 2.x's `MCPServer`, its
//! FastMCP) with either transport.
//!
//! Each [`Upstream`] listens on a loopback port of its own (named before it binds, so it
//! can be killed and started again on the same port), is ready when it answers HTTP on that
//! port, and is killed with its process group when dropped.
//!
//! What each one serves on `http://127.0.0.1:<port>`:
//!
//! | server | transport | paths |
//! |---|---|---|
//! | server-everything | Streamable HTTP | `POST`/`GET`/`DELETE /mcp` |
//! | server-everything | HTTP+SSE | `GET /sse` (event `endpoint`: `/message?sessionId=…`), `POST /message?sessionId=…` |
//! | `py_http_server.py` | Streamable HTTP | `POST`/`GET`/`DELETE /mcp` |
//! | `py_http_server.py` | HTTP+SSE | `GET /sse` (event `endpoint`: `/messages/?session_id=…`), `POST /messages/?session_id=…` |

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::clients::deps;
use crate::ports::unused_port;
use crate::process::Proc;

/// How long a server may take to answer HTTP after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The HTTP transport an upstream server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later), one endpoint `/mcp`.
    Streamable,
    /// The 2024-11-05 HTTP+SSE transport: a `GET /sse` stream and a message endpoint.
    Sse,
}

/// Which server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `@modelcontextprotocol/server-everything` (the TypeScript SDK), as pinned.
    Everything,
    /// `tests/clients/py_http_server.py` (the Python SDK 2.x's `MCPServer`).
    Python,
}

/// A real MCP server listening on a loopback port, killed (with its process group) when
/// dropped.
pub struct Upstream {
    program: Program,
    transport: Transport,
    port: u16,
    /// More environment for the server process.
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Upstream {
    /// `server-everything` in the mode for `transport` (`streamableHttp` or `sse`, its port
    /// from `PORT`) on a free loopback port, once it answers.
    pub fn everything(transport: Transport) -> Self {
        Self::start(Program::Everything, transport, unused_port())
    }

    /// `py_http_server.py` with `transport` on a free loopback port, once it answers.
    pub fn python(transport: Transport) -> Self {
        Self::python_on(transport, unused_port())
    }

    /// `py_http_server.py` with `transport` on `port`, once it answers.
    pub fn python_on(transport: Transport, port: u16) -> Self {
        Self::start(Program::Python, transport, port)
    }

    /// `program` with `transport` on `port`, once it answers HTTP there.
    pub fn start(program: Program, transport: Transport, port: u16) -> Self {
        Self::start_with(program, transport, port, &[])
    }

    /// `py_http_server.py` with `transport` on a free loopback port and `env` in its
    /// environment (`WIDGET_ASSETS`), once it answers.
    pub fn python_with_env(transport: Transport, env: &[(&str, &str)]) -> Self {
        Self::start_with(Program::Python, transport, unused_port(), env)
    }

    fn start_with(program: Program, transport: Transport, port: u16, env: &[(&str, &str)]) -> Self {
        let mut up = Self {
            program,
            transport,
            port,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            proc: None,
        };
        up.start_again();
        up
    }

    /// The port it listens on (the same across [`Upstream::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL a client (or `bridge run --upstream`) connects to: `…/mcp` for Streamable
    /// HTTP, `…/sse` for HTTP+SSE.
    pub fn url(&self) -> String {
        match self.transport {
            Transport::Streamable => format!("{}/mcp", self.base()),
            Transport::Sse => format!("{}/sse", self.base()),
        }
    }

    /// The transport it speaks.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The running process (its stdout lines, its stderr log); panics when it was killed.
    pub fn proc(&mut self) -> &mut Proc {
        self.proc
            .as_mut()
            .expect("the upstream server is not running")
    }

    /// Kills the server (SIGKILL to its process group) and reaps it: its port is free
    /// afterwards. Nothing happens when it is not running.
    pub fn kill(&mut self) {
        // Dropping the process kills its group and waits for it.
        self.proc = None;
    }

    /// Starts the server (again) on the same port and waits until it answers; panics when it
    /// is already running.
    pub fn start_again(&mut self) {
        assert!(
            self.proc.is_none(),
            "the upstream server is already running"
        );
        let (mut cmd, name) = self.command();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::start(cmd, name));
        self.wait_ready();
    }

    /// [`Upstream::kill`], then [`Upstream::start_again`] on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Waits for the next stdout line of the server that starts with `prefix` (e.g.
    /// `py_http_server.py`'s `slow started <tag>`); the rest of it, trimmed.
    pub fn line(&mut self, prefix: &str) -> String {
        self.proc().field(prefix)
    }

    /// The command line for this server and a name for its log.
    fn command(&self) -> (Command, &'static str) {
        match self.program {
            Program::Everything => {
                let mode = match self.transport {
                    Transport::Streamable => "streamableHttp",
                    Transport::Sse => "sse",
                };
                let mut cmd = Command::new(deps().var("NODE22"));
                cmd.arg(deps().var("SERVER_EVERYTHING_JS"))
                    .arg(mode)
                    .env("PORT", self.port.to_string())
                    // It listens on every interface unless told otherwise; keep it on loopback.
                    .env(
                        "NODE_OPTIONS",
                        format!("--require {}", deps().var("LOOPBACK_CJS")),
                    );
                (cmd, "server-everything")
            }
            Program::Python => {
                let transport = match self.transport {
                    Transport::Streamable => "streamable-http",
                    Transport::Sse => "sse",
                };
                let mut cmd = Command::new(deps().var("PY_SDK"));
                cmd.arg(deps().client("py_http_server.py"))
                    .args(["--transport", transport, "--port"])
                    .arg(self.port.to_string());
                (cmd, "py-http-server")
            }
        }
    }

    /// Polls the port until an HTTP answer comes back; panics (with the server's log) when
    /// the server exits first or is not up within [`READY_WITHIN`].
    fn wait_ready(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if answers_http(addr) {
                return;
            }
            let (program, transport, port) = (self.program, self.transport, self.port);
            let proc = self.proc();
            if let Some(code) = proc.exited() {
                panic!(
                    "{program:?} ({transport:?}) exited with {code} before it answered on port \
                     {port}:\n{}",
                    proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{program:?} ({transport:?}) did not answer on port {port} within \
                 {READY_WITHIN:?}:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// A static file server (Python's `http.server`) for `dir` on a free loopback port, once it
/// answers: a widget's local asset server. Its port comes with it.
pub fn static_files(dir: &std::path::Path) -> (Proc, u16) {
    let port = unused_port();
    let mut cmd = Command::new(deps().var("PY_SDK"));
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string());
    let mut proc = Proc::start(cmd, "static-files");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_WITHIN;
    while !answers_http(addr) {
        if let Some(code) = proc.exited() {
            panic!("http.server exited with {code}:\n{}", proc.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "http.server did not answer on port {port}:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    (proc, port)
}

/// Whether something at `addr` answers a plain HTTP request (any status: the path does not
/// exist on these servers; a `GET` of an SSE endpoint would open a session, so it is not
/// asked).
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET /ready-probe HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    );
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match conn.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head[..got].starts_with(b"HTTP/1.")
}
