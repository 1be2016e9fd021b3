//! Legacy HTTP+SSE sessions across a short cut of the bridge↔relay link, end to end.
//!
//! * A real Python SDK 2.x client (`mcp.client.sse.sse_client` with `mcp.Client`) opens
//!   `/<name>/sse` through the relay and calls a tool; it starts a slow call, the link
//!   between bridge and relay is cut (a TCP proxy drops it and refuses new connections)
//!   while the call runs, and restored within the relay's grace period. The same client
//!   session then gets the slow call's answer (the server gave it while the link was
//!   down: the bridge kept it), calls tools again with the same `sessionId`, and a
//!   server notification reaches it on the same stream. Before, the relay ended the
//!   client's stream at the cut and every later message failed ("Connection closed").
//! * The relay side of the protocol, with hand-made bridges: a bridge of an earlier
//!   release (no `sse-reattach` feature) has its clients' streams ended at the cut, and is
//!   never asked to carry a session on (it would take that for a new session); a bridge
//!   announcing the feature is asked, for the stream's session and principal, and what it
//!   sends then reaches the same client stream, which got keep-alive comments meanwhile.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::addr_of;
use e2e::cut_proxy::CutProxy;
use e2e::{Bridge, BridgeOpts, Deps, Relay, teed};
use futures_util::{SinkExt, StreamExt};
use protocol::frame::{FLAG_FINAL, FLAG_STREAM};
use protocol::{ClientAuth, Frame, Hello, Limits, Request, RequestKind, Response};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Whether the relay reports a bridge connected for the tunnel of `mcp_url`.
async fn connected(relay: &Relay, mcp_url: &str, bearer: Option<&str>) -> bool {
    let name = mcp_url
        .trim_end_matches("/mcp")
        .rsplit('/')
        .next()
        .expect("tunnel name");
    let mut req = reqwest::Client::new()
        .get(format!("{}/status/{name}", relay.base))
        .timeout(Duration::from_secs(3));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let Ok(resp) = req.send().await else {
        return false;
    };
    let Ok(v) = resp.json::<Value>().await else {
        return false;
    };
    v["connected"] == json!(true)
}

async fn wait_connected(relay: &Relay, bridge: &Bridge, want: bool, within: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < within {
        if connected(relay, &bridge.mcp_url, bridge.bearer.as_deref()).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: the relay did not see the bridge connected={want} within {within:?}");
}

// ----- a real Python SDK client -----------------------------------------------------------

/// usage: python -c SSE_BLIP URL ECHO_ARGUMENT. Prints `{"phase": "cut-me"}` once a slow call is on its
/// way, waits for a line on stdin (the link was cut and restored), then prints the summary.
const SSE_BLIP: &str = r#"
import asyncio, json, os, sys
import anyio
from mcp import Client
from mcp.client.sse import sse_client

def texts(r):
    return [getattr(x, "text", None) for x in r.content]

async def main(url, key):
    token = os.environ.get("MCP_BEARER")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    sessions, notes, out = [], [], {}

    async def on_message(m):
        method = getattr(m, "method", None)
        if method:
            notes.append(method)

    transport = sse_client(url, headers=headers, timeout=30.0, sse_read_timeout=120.0,
                           on_session_created=sessions.append)
    async with Client(transport, mode="legacy", message_handler=on_message) as c:
        out["before"] = texts(await c.call_tool("echo", {key: "before"}))
        async with anyio.create_task_group() as tg:
            async def slow():
                # Answered by the server while the link is down.
                out["during"] = texts(await c.call_tool("slow", {"ms": 1500, "tag": "cut"}))
            tg.start_soon(slow)
            print(json.dumps({"phase": "cut-me"}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
        out["after"] = texts(await c.call_tool("echo", {key: "after"}))
        out["again"] = texts(await c.call_tool("echo", {key: "again"}))
        out["trigger"] = texts(await c.call_tool("trigger_list_changed", {}))
        for _ in range(100):
            if "notifications/tools/list_changed" in notes:
                break
            await asyncio.sleep(0.05)
    out.update(ok=True, sessions=sessions, notifications=notes)
    print(json.dumps(out), flush=True)

asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 90))
"#;

/// A server for the cut: its command (empty: the fixture), the argument name of its `echo`
/// tool and what `echo` puts before the text. Both servers also have `slow(ms, tag)` and
/// `trigger_list_changed`.
struct BlipServer {
    command: Vec<String>,
    echo_key: &'static str,
    echo_prefix: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sse_session_survives_a_link_cut() {
    survives_a_link_cut(BlipServer {
        command: Vec::new(),
        echo_key: "text",
        echo_prefix: "",
    })
    .await;
}

/// The same with a real third-party server: one written with the Python SDK 2.x.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sse_session_on_a_python_sdk_server_survives_a_link_cut() {
    let deps = Deps::get();
    survives_a_link_cut(BlipServer {
        command: vec![
            deps.var("PY_SDK"),
            deps.client("py_server.py").display().to_string(),
        ],
        echo_key: "message",
        echo_prefix: "Echo: ",
    })
    .await;
}

async fn survives_a_link_cut(server: BlipServer) {
    let fixture = server.command.is_empty();
    let dir = tempfile::tempdir().expect("tempdir");
    let stdin_log = dir.path().join("stdin.jsonl");
    // Keep-alives every second: the client's stream gets some while the bridge is away.
    let relay = Relay::start(&["--keepalive-secs", "1"]);
    let proxy = CutProxy::start(addr_of(&relay.base)).await;
    // The fixture counts the calls it gets; another server's standard input is recorded.
    let command = if fixture {
        Vec::new()
    } else {
        teed(&stdin_log, &server.command)
    };
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((proxy.url(), relay.token.clone())),
        command,
        ..Default::default()
    });
    // Whether the server got the slow call.
    let slow_reached = || {
        if fixture {
            bridge.count("call slow") > 0
        } else {
            std::fs::read_to_string(&stdin_log).is_ok_and(|l| l.contains(r#""name":"slow""#))
        }
    };
    wait_connected(&relay, &bridge, true, Duration::from_secs(10), "start").await;

    let mut cmd = Command::new(Deps::get().var("PY_SDK"));
    cmd.args(["-c", SSE_BLIP, &bridge.sse_url, server.echo_key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &bridge.bearer {
        Some(t) => cmd.env("MCP_BEARER", t),
        None => cmd.env_remove("MCP_BEARER"),
    };
    let mut py = cmd.spawn().expect("start the Python client");
    let mut stdin = py.stdin.take().expect("stdin");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = py.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let stderr = py.stderr.take().expect("stderr");
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let next_line = |what: &str| -> String {
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the Python client printed nothing ({what})"))
    };
    let ready = next_line("ready");
    assert!(ready.contains("cut-me"), "{ready}");

    // The slow call reached the server: cut the link while it runs, past its end.
    let start = Instant::now();
    while !slow_reached() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the slow call never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    wait_connected(&relay, &bridge, false, Duration::from_secs(3), "cut").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !connected(&relay, &bridge.mcp_url, bridge.bearer.as_deref()).await,
        "the link stayed cut"
    );
    proxy.resume();
    // Back well within the relay's 10 s grace period.
    wait_connected(&relay, &bridge, true, Duration::from_secs(6), "reconnect").await;
    writeln!(stdin, "go").expect("tell the client");
    drop(stdin);

    let line = rx.recv_timeout(Duration::from_secs(60));
    let status = py.wait().expect("client exit");
    let err = err_text.join().unwrap_or_default();
    let line = line.unwrap_or_else(|_| panic!("no summary ({status}); stderr:\n{err}"));
    assert!(
        status.success(),
        "client failed ({status}): {line}\nstderr:\n{err}"
    );
    let out: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(out["ok"], true, "{out}");
    let echo = |t: &str| json!([format!("{}{t}", server.echo_prefix)]);
    assert_eq!(out["before"], echo("before"), "{out}");
    assert_eq!(
        out["during"],
        json!(["done cut"]),
        "the answer given while the link was down: {out}"
    );
    assert_eq!(out["after"], echo("after"), "{out}");
    assert_eq!(out["again"], echo("again"), "{out}");
    assert_eq!(out["trigger"], json!(["ok"]), "{out}");
    assert!(
        out["notifications"]
            .as_array()
            .expect("notifications")
            .contains(&json!("notifications/tools/list_changed")),
        "the server's notification after the reconnect: {out}"
    );
    assert_eq!(
        out["sessions"].as_array().map(Vec::len),
        Some(1),
        "one endpoint event, one session: {out}"
    );
    // Each call ran once on the server.
    for (line, n) in [("call echo", 3), ("call slow", 1)] {
        if fixture {
            assert_eq!(bridge.count(line), n, "{line}");
        }
    }
}

// ----- the relay with hand-made bridges -----------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

/// Longest wait for a frame, an SSE chunk or the end of a stream.
const WAIT: Duration = Duration::from_secs(10);

/// A hand-made bridge for tunnel `name`: announcing `features` (with the token in the
/// upgrade's header, as this release does), or none at all (the previous release: token
/// in the `Hello`).
async fn fake_bridge(relay: &Relay, name: &str, features: Option<&str>) -> Ws {
    let addr = addr_of(&relay.base);
    let tcp = TcpStream::connect(addr).await.expect("reach the relay");
    let mut req = format!("ws://{addr}/{name}/connect")
        .into_client_request()
        .expect("request");
    let token = match features {
        Some(f) => {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {}", relay.token).parse().expect("header"),
            );
            req.headers_mut()
                .insert(protocol::FEATURES_HEADER, f.parse().expect("header"));
            String::new()
        }
        None => relay.token.clone(),
    };
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("upgrade");
    let hello = Frame::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: "hand-made".into(),
        token,
        tunnel: name.into(),
        client_auth: ClientAuth::None,
    });
    ws.send(Message::Binary(hello.encode()))
        .await
        .expect("send");
    match next_frame(&mut ws).await {
        Some(Frame::Welcome(_)) => ws,
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

/// The next frame from the relay (pings skipped); `None` when the socket ended.
async fn next_frame(ws: &mut Ws) -> Option<Frame> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame from the relay");
        match msg {
            Some(Ok(Message::Binary(b))) => {
                let f = Frame::decode(b, &Limits::default()).expect("a frame");
                if !matches!(f, Frame::Ping(_) | Frame::Pong(_)) {
                    return Some(f);
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn next_request(ws: &mut Ws) -> Request {
    loop {
        match next_frame(ws).await {
            Some(Frame::Request(r)) => return r,
            Some(_) => {}
            None => panic!("the relay closed the link"),
        }
    }
}

async fn respond(ws: &mut Ws, r: Response) {
    ws.send(Message::Binary(Frame::Response(r).encode()))
        .await
        .expect("send");
}

fn frame(exchange: u64, session: Option<&str>, flags: u8, body: &[u8]) -> Response {
    Response {
        exchange,
        status: 200,
        session: session.map(str::to_owned),
        flags,
        event_id: None,
        body: Bytes::copy_from_slice(body),
    }
}

/// A client's `GET /<name>/sse` answered by the hand-made bridge as a new session `sid`:
/// the response (its endpoint event read) and the principal the relay named.
async fn open_sse(
    relay: &Relay,
    ws: &mut Ws,
    name: &str,
    sid: &str,
) -> (reqwest::Response, String) {
    let url = format!("{}/{name}/sse", relay.base);
    let get = tokio::spawn(async move { reqwest::Client::new().get(url).send().await });
    let r = next_request(ws).await;
    assert_eq!(
        (r.kind, r.session.as_deref()),
        (RequestKind::LegacyOpen, None)
    );
    respond(ws, frame(r.exchange, Some(sid), FLAG_STREAM, b"")).await;
    let mut resp = get.await.expect("task").expect("the SSE answer");
    assert_eq!(resp.status(), 200);
    let head = chunk(&mut resp).await.expect("the endpoint event");
    assert!(
        head.contains("event: endpoint") && head.contains(&format!("sessionId={sid}")),
        "{head}"
    );
    (resp, r.principal)
}

/// The next chunk of an SSE stream; `None` when it ended.
async fn chunk(resp: &mut reqwest::Response) -> Option<String> {
    let c = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .expect("the stream went silent")
        .ok()
        .flatten()?;
    Some(String::from_utf8_lossy(&c).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_carries_streams_on_only_for_bridges_that_say_so() {
    let relay = Relay::start(&["--keepalive-secs", "1"]);

    // A bridge of an earlier release: the stream ends with the link, and the bridge, back
    // at once, is never asked to carry the session on.
    let mut old = fake_bridge(&relay, "old-bridge", None).await;
    let (mut sse, _) = open_sse(&relay, &mut old, "old-bridge", "sess-old").await;
    drop(old);
    let cut = Instant::now();
    let mut old = fake_bridge(&relay, "old-bridge", None).await;
    while let Some(c) = chunk(&mut sse).await {
        assert!(c.starts_with(':'), "only keep-alives: {c}");
    }
    assert!(
        cut.elapsed() < Duration::from_secs(5),
        "ended with the link"
    );
    let asked = tokio::time::timeout(Duration::from_millis(500), next_frame(&mut old)).await;
    assert!(
        !matches!(asked, Ok(Some(Frame::Request(_)))),
        "the earlier release got {asked:?}"
    );

    // A bridge that carries legacy sessions across a reconnect.
    let features = "in-use, sse-reattach";
    let mut first = fake_bridge(&relay, "new-bridge", Some(features)).await;
    let (mut sse, principal) = open_sse(&relay, &mut first, "new-bridge", "sess-new").await;
    drop(first);
    // Away for a while: the client's stream stays open with keep-alive comments.
    let away = Instant::now();
    let mut kept_alive = 0;
    while away.elapsed() < Duration::from_millis(2500) {
        let c = chunk(&mut sse).await.expect("the stream stays open");
        assert!(c.starts_with(": keepalive"), "{c}");
        kept_alive += 1;
    }
    assert!(kept_alive >= 1);
    let mut second = fake_bridge(&relay, "new-bridge", Some(features)).await;
    let r = next_request(&mut second).await;
    assert_eq!(r.kind, RequestKind::LegacyOpen);
    assert_eq!(
        r.session.as_deref(),
        Some("sess-new"),
        "the stream's session"
    );
    assert_eq!(r.principal, principal, "for the principal that opened it");
    respond(&mut second, frame(r.exchange, None, FLAG_STREAM, b"")).await;
    let note = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"carried"}}"#;
    respond(&mut second, frame(r.exchange, None, 0, note)).await;
    let got = loop {
        let c = chunk(&mut sse).await.expect("the stream goes on");
        if !c.starts_with(':') {
            break c;
        }
    };
    assert!(
        got.contains("event: message") && got.contains("carried"),
        "{got}"
    );
    assert!(!got.contains("endpoint"), "no second endpoint event: {got}");
    // The session's end ends the stream.
    respond(&mut second, frame(r.exchange, None, FLAG_FINAL, b"")).await;
    while let Some(c) = chunk(&mut sse).await {
        assert!(c.starts_with(':'), "{c}");
    }

    // A bridge that refuses (the session ended, or is another principal's): the stream
    // ends.
    let (mut sse, _) = open_sse(&relay, &mut second, "new-bridge", "sess-gone").await;
    drop(second);
    let mut third = fake_bridge(&relay, "new-bridge", Some(features)).await;
    let r = next_request(&mut third).await;
    assert_eq!(r.session.as_deref(), Some("sess-gone"));
    let mut refusal = frame(
        r.exchange,
        None,
        FLAG_FINAL,
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#,
    );
    refusal.status = 404;
    respond(&mut third, refusal).await;
    while let Some(c) = chunk(&mut sse).await {
        assert!(c.starts_with(':'), "{c}");
    }
}
