//! `echo-server`: the fast stdio MCP server the benchmark puts behind every transport.
//!
//! It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout and does as little as an MCP
//! server can:
//!
//! * `initialize` → the client's protocol version when known (else the newest), a `tools`
//!   capability and `serverInfo`; `ping` → `{}`;
//! * `tools/list` → two tools, `echo {text}` and `big {bytes}`;
//! * `tools/call echo` → `{"content":[{"type":"text","text":<text>}]}`;
//! * `tools/call big` → a text of exactly `bytes` ASCII bytes;
//! * notifications (`notifications/initialized`, …) and responses are ignored; other
//!   requests get error -32601.
//!
//! Each line is parsed with borrowed serde structs (`id` and `params` stay raw slices of
//! the input; the id is written back byte for byte). Output goes to a large buffer that is
//! flushed only when no more input is buffered, so a burst of requests costs one `write`.
//!
//! `echo-server --http [ADDR]` (default `127.0.0.1:0`) serves the same tools over
//! Streamable HTTP instead (`http.rs`).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::value::RawValue;

mod http;

/// Protocol versions echoed back when the client asks for them.
const SUPPORTED: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Protocol version answered when the client asks for an unknown one.
const LATEST: &str = "2025-11-25";
/// Largest text `big` agrees to produce.
const BIG_MAX: usize = 1 << 30;

const TOOLS: &str = r#"{"tools":[{"name":"echo","description":"Returns its text argument.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}},{"name":"big","description":"Returns a text of the given number of bytes.","inputSchema":{"type":"object","properties":{"bytes":{"type":"integer","minimum":0}},"required":["bytes"]}}]}"#;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitParams<'a> {
    #[serde(borrow, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EchoArgs<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
struct BigArgs {
    bytes: usize,
}

/// What one request produces.
enum Reply<'a> {
    /// A `result` member, written raw.
    Raw(Cow<'a, str>),
    /// `{"content":[{"type":"text","text":…}]}` with this text.
    Text(Cow<'a, str>),
    /// `{"content":[{"type":"text","text":"xxx…"}]}` with this many bytes.
    Big(usize),
    /// A JSON-RPC error.
    Error(i64, &'static str),
}

fn handle<'a>(method: &str, params: Option<&'a RawValue>) -> Reply<'a> {
    match method {
        "initialize" => {
            let asked = params
                .and_then(|p| serde_json::from_str::<InitParams<'_>>(p.get()).ok())
                .and_then(|p| p.protocol_version.map(Cow::into_owned));
            let version = asked
                .as_deref()
                .filter(|v| SUPPORTED.contains(v))
                .unwrap_or(LATEST);
            Reply::Raw(Cow::Owned(format!(
                r#"{{"protocolVersion":"{version}","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"bench-echo","version":"{}"}}}}"#,
                env!("CARGO_PKG_VERSION")
            )))
        }
        "ping" => Reply::Raw(Cow::Borrowed("{}")),
        "tools/list" => Reply::Raw(Cow::Borrowed(TOOLS)),
        "tools/call" => {
            let Some(call) =
                params.and_then(|p| serde_json::from_str::<CallParams<'a>>(p.get()).ok())
            else {
                return Reply::Error(-32602, "tools/call needs a name");
            };
            let args = call.arguments.map(RawValue::get).unwrap_or("{}");
            match call.name.as_ref() {
                "echo" => match serde_json::from_str::<EchoArgs<'a>>(args) {
                    Ok(a) => Reply::Text(a.text),
                    Err(_) => Reply::Error(-32602, "echo needs {\"text\": string}"),
                },
                "big" => match serde_json::from_str::<BigArgs>(args) {
                    Ok(a) if a.bytes <= BIG_MAX => Reply::Big(a.bytes),
                    _ => Reply::Error(-32602, "big needs {\"bytes\": integer ≤ 2^30}"),
                },
                _ => Reply::Error(-32602, "unknown tool"),
            }
        }
        _ => Reply::Error(-32601, "Method not found"),
    }
}

fn write_reply(out: &mut impl Write, id: &RawValue, reply: Reply<'_>) -> io::Result<()> {
    out.write_all(br#"{"jsonrpc":"2.0","id":"#)?;
    out.write_all(id.get().as_bytes())?;
    match reply {
        Reply::Raw(r) => {
            out.write_all(br#","result":"#)?;
            out.write_all(r.as_bytes())?;
        }
        Reply::Text(t) => {
            out.write_all(br#","result":{"content":[{"type":"text","text":"#)?;
            serde_json::to_writer(&mut *out, t.as_ref())?;
            out.write_all(b"}]}")?;
        }
        Reply::Big(n) => {
            static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
            out.write_all(br#","result":{"content":[{"type":"text","text":""#)?;
            let mut left = n;
            while left > 0 {
                let k = left.min(CHUNK.len());
                out.write_all(&CHUNK[..k])?;
                left -= k;
            }
            out.write_all(br#""}]}"#)?;
        }
        Reply::Error(code, message) => {
            write!(out, r#","error":{{"code":{code},"message":"#)?;
            serde_json::to_writer(&mut *out, message)?;
            out.write_all(b"}")?;
        }
    }
    out.write_all(b"}\n")
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        None => stdio().map_err(anyhow::Error::from),
        Some("--http") => args
            .next()
            .unwrap_or_else(|| "127.0.0.1:0".into())
            .parse()
            .map_err(anyhow::Error::from)
            .and_then(http::serve),
        Some(other) => Err(anyhow::anyhow!(
            "unknown argument {other:?} (usage: echo-server [--http [ADDR]])"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves newline-delimited JSON-RPC on stdin/stdout until stdin ends.
fn stdio() -> io::Result<()> {
    // Own the file descriptors directly: std's stdin/stdout add a second buffer and a
    // line-flushing writer.
    let stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let mut input = BufReader::with_capacity(256 * 1024, stdin);
    let mut out = BufWriter::with_capacity(256 * 1024, stdout);
    let mut line = Vec::with_capacity(4096);
    loop {
        if input.buffer().is_empty() {
            out.flush()?;
        }
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg: Message<'_> = match std::str::from_utf8(text)
            .ok()
            .and_then(|s| serde_json::from_str(s).ok())
        {
            Some(m) => m,
            None => {
                out.write_all(
                    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
                )?;
                out.write_all(b"\n")?;
                continue;
            }
        };
        // Notifications (no id) and responses (no method) need no answer.
        let (Some(id), Some(method)) = (msg.id, msg.method.as_deref()) else {
            continue;
        };
        let reply = handle(method, msg.params);
        write_reply(&mut out, id, reply)?;
    }
    out.flush()
}
