//! A local HTTP server (`bridge run --upstream`) that answers badly: bodies that are not
//! JSON-RPC, answers longer than `--max-message`, an SSE line that never ends, an HTTP+SSE
//! endpoint on another origin. The bridge never crashes: a bad `initialize` answer stops
//! it at start with exit code 3 and a clear message, a bad answer to a call is that call's
//! JSON-RPC error, and the tunnel goes on serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use e2e::{BridgeOpts, Proc, bin};
use serde_json::{Value, json};

/// How the fake server answers.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Every `POST` gets `200` with a body that is not JSON.
    NotJson,
    /// Every `POST` gets a JSON body of 4 MiB (longer than `--max-message 1048576`).
    Huge,
    /// Every `POST` gets an event stream whose one line never ends.
    EndlessLine,
    /// `POST` is refused (so the bridge tries HTTP+SSE); `GET` names an endpoint on
    /// another origin.
    ForeignEndpoint,
    /// A good server, except that `tools/call` gets a body that is not JSON.
    BadCalls,
}

/// Serves `mode` on a free loopback port, one thread per connection; its URL.
fn serve(mode: Mode) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = answer(conn, mode);
            });
        }
    });
    url
}

/// Reads one request (head and `Content-Length` body): its method and body.
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, Vec<u8>)> {
    let mut method = String::new();
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if method.is_empty() {
            method = line.split_whitespace().next().unwrap_or("").to_owned();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((method, body))
}

fn answer(conn: TcpStream, mode: Mode) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    loop {
        let (method, body) = read_request(&mut r)?;
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let head = |ct: &str, len: Option<usize>| match len {
            Some(n) => {
                format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {n}\r\n\r\n")
            }
            None => format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\nconnection: close\r\n\r\n"),
        };
        match (mode, method.as_str()) {
            (Mode::NotJson, _) => {
                let b = "<html>not MCP</html>";
                w.write_all(head("application/json", Some(b.len())).as_bytes())?;
                w.write_all(b.as_bytes())?;
            }
            (Mode::Huge, _) => {
                let n = 4 << 20;
                w.write_all(head("application/json", Some(n)).as_bytes())?;
                let chunk = vec![b' '; 64 << 10];
                for _ in 0..n / chunk.len() {
                    w.write_all(&chunk)?;
                }
            }
            (Mode::EndlessLine, _) => {
                w.write_all(head("text/event-stream", None).as_bytes())?;
                w.write_all(b"data: ")?;
                let chunk = vec![b'x'; 64 << 10];
                loop {
                    w.write_all(&chunk)?;
                }
            }
            (Mode::ForeignEndpoint, "GET") => {
                w.write_all(head("text/event-stream", None).as_bytes())?;
                w.write_all(b"event: endpoint\ndata: http://192.168.1.1:9/steal\n\n")?;
                std::thread::sleep(Duration::from_secs(30));
                return Ok(());
            }
            (Mode::ForeignEndpoint, _) => {
                w.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")?;
            }
            (Mode::BadCalls, "GET") => {
                w.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")?;
            }
            (Mode::BadCalls, _) => {
                let id = msg["id"].clone();
                let body = match msg["method"].as_str() {
                    Some("initialize") => json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "bad-calls", "version": "1"}}})
                    .to_string(),
                    Some("tools/list") => json!({"jsonrpc": "2.0", "id": id, "result": {
                        "tools": [{"name": "broken", "inputSchema": {"type": "object"}}]}})
                    .to_string(),
                    Some("tools/call") => "{\"jsonrpc\": \"2.0\", \"id\": oops".to_owned(),
                    Some(_) => json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string(),
                    None => {
                        w.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")?;
                        continue;
                    }
                };
                w.write_all(head("application/json", Some(body.len())).as_bytes())?;
                w.write_all(body.as_bytes())?;
            }
        }
    }
}

/// `bridge run --upstream URL` against a server that answers `initialize` badly: it exits
/// with code 3 naming the problem, and never panics.
#[test]
fn a_bad_initialize_answer_stops_the_bridge_at_start() {
    for (mode, needle) in [
        (Mode::NotJson, "initialize"),
        (Mode::Huge, "longer than"),
        (Mode::EndlessLine, "longer than"),
        (Mode::ForeignEndpoint, "another origin"),
    ] {
        let url = serve(mode);
        let home = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(bin("bridge"));
        cmd.args([
            "run",
            "--quiet",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &url,
        ])
        .args(["--max-message", "1048576"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("RUST_LOG", "info");
        let mut bridge = Proc::start(cmd, "bridge");
        let code = bridge.wait_exit(Duration::from_secs(60));
        let stderr = bridge.log_text();
        assert_eq!(code, Some(3), "{mode:?}: exit code; stderr:\n{stderr}");
        assert!(
            stderr.contains(needle),
            "{mode:?}: no {needle:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{mode:?}:\n{stderr}");
    }
}

/// A server that answers a call with a body that is not JSON: the call gets a JSON-RPC
/// error, and the tunnel goes on serving.
#[test]
fn a_bad_answer_to_a_call_is_that_calls_error() {
    let url = serve(Mode::BadCalls);
    let bridge = BridgeOpts::default().no_auth().upstream(&url).start();
    let http = e2e::http::BlockingHttp::new();
    let post = |body: Value| http.post_mcp(&bridge.mcp_url, &body);
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "broken", "arguments": {}}});
    let a = post(call).response_to(&json!(5));
    assert!(a["error"]["message"].is_string(), "{a}");
    let list = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"});
    let l = post(list).response_to(&json!(6));
    assert_eq!(l["result"]["tools"][0]["name"], "broken", "{l}");
}
