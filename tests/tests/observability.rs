//! Debugging a tunnel from the outside: the relay's Prometheus `/metrics` (who may read
//! it, and that its counters move), and the JSON logs of both binaries, where one call
//! carries the same request id in the relay's and the bridge's request lines.

use std::time::{Duration, Instant};

use e2e::{Bridge, BridgeOpts, Relay, bin};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const MCP_VERSION: &str = "2025-06-18";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("http client")
}

/// A client of one tunnel, with its session once initialized.
struct Client {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    session: Option<String>,
}

impl Client {
    fn of(bridge: &Bridge) -> Self {
        Self {
            http: http(),
            url: bridge.mcp_url.clone(),
            bearer: bridge.bearer.clone(),
            session: None,
        }
    }

    /// POSTs a JSON-RPC message; the status and the messages of the answer.
    async fn post(&self, body: Value) -> (StatusCode, Vec<Value>) {
        let mut rb = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MCP_VERSION)
            .body(body.to_string());
        if let Some(b) = &self.bearer {
            rb = rb.bearer_auth(b);
        }
        if let Some(s) = &self.session {
            rb = rb.header("mcp-session-id", s);
        }
        let resp = rb.send().await.expect("POST");
        let status = resp.status();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let text = resp.text().await.expect("body");
        let messages = if text.is_empty() {
            Vec::new()
        } else if sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
                .collect()
        } else {
            vec![serde_json::from_str(&text).expect("JSON answer")]
        };
        assert!(session.is_none() || self.session.is_none() || session == self.session);
        (status, messages)
    }

    async fn initialize(&mut self) {
        let mut rb = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                    "protocolVersion": MCP_VERSION, "capabilities": {},
                    "clientInfo": {"name": "observability-test", "version": "1"}}})
                .to_string(),
            );
        if let Some(b) = &self.bearer {
            rb = rb.bearer_auth(b);
        }
        let resp = rb.send().await.expect("initialize");
        assert_eq!(resp.status(), StatusCode::OK);
        self.session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert!(self.session.is_some(), "no session id");
        let (status, _) = self
            .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    /// Calls the fixture's `echo` tool and checks its answer.
    async fn echo(&self, id: u64, text: &str) {
        let (status, messages) = self
            .post(json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                         "params":{"name":"echo","arguments":{"text":text}}}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let answer = messages
            .iter()
            .find(|m| m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no answer to the call: {messages:?}"));
        assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
    }
}

/// `GET /metrics` with these extra headers: the status and the body.
async fn scrape(base: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut rb = http().get(format!("{base}/metrics"));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("GET /metrics");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

/// The value of the sample whose line starts with `series` (name and labels, exactly as
/// rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes until `done` accepts the text (or 15 s pass); the last text.
async fn scrape_until(base: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = scrape(base, &[]).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        if done(&text) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a bridge the relay refuses (a wrong bridge token) until it exits.
async fn refused_bridge(relay: &Relay) {
    let mut cmd = tokio::process::Command::new(bin("bridge"));
    cmd.args(["run", "--relay", &relay.base, "--name", "obs-refused", "--"])
        .arg(bin("mcp-fixture"))
        .env("BRIDGE_TOKEN", "not-a-token-this-relay-knows")
        .env("RUST_LOG", "info")
        .env_remove("BRIDGE_CLIENT_TOKEN")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the refused bridge did not exit")
        .expect("bridge");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn metrics_count_requests_oauth_and_bridges() {
    let relay = Relay::start(&["--metrics"]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("obs-metrics".into()),
        ..Default::default()
    });
    let mut client = Client::of(&bridge);
    client.initialize().await;
    let (status, _) = client
        .post(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    client.echo(2, "one").await;
    client.echo(3, "two").await;
    // Refused before the body is read.
    let anonymous = Client {
        bearer: None,
        ..Client::of(&bridge)
    };
    let (status, _) = anonymous
        .post(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // OAuth: discovery works, a token request from an unknown client is refused.
    let h = http();
    let resp = h
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            relay.base
        ))
        .send()
        .await
        .expect("metadata");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = h
        .post(format!("{}/oauth/token", relay.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=x&code_verifier=y&client_id=nobody")
        .send()
        .await
        .expect("token");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    refused_bridge(&relay).await;

    // Status frames reach the relay every half second or so.
    let text = scrape_until(&relay.base, |t| {
        sample(t, "mcp_relay_bridge_sessions").is_some_and(|v| v >= 1.0)
            && sample(t, "mcp_relay_bridge_refusals_total{reason=\"bad_token\"}").is_some()
    })
    .await;
    let v = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
    };
    assert_eq!(
        v("mcp_relay_requests_total{method=\"tools/call\",status=\"2xx\"}"),
        2.0
    );
    assert_eq!(
        v("mcp_relay_requests_total{method=\"tools/list\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        v("mcp_relay_requests_total{method=\"initialize\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        v("mcp_relay_requests_total{method=\"notification\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        v("mcp_relay_requests_total{method=\"unknown\",status=\"4xx\"}"),
        1.0
    );
    assert_eq!(
        v("mcp_relay_request_duration_seconds_count{method=\"tools/call\"}"),
        2.0
    );
    assert_eq!(
        v("mcp_relay_request_duration_seconds_bucket{method=\"tools/call\",le=\"+Inf\"}"),
        2.0
    );
    assert!(v("mcp_relay_request_bytes_total") > 200.0);
    assert!(v("mcp_relay_response_bytes_total") > 200.0);
    assert_eq!(v("mcp_relay_tunnels_connected"), 1.0);
    assert!(v("mcp_relay_bridge_sessions") >= 1.0);
    assert_eq!(v("mcp_relay_bridge_server_processes"), 1.0);
    assert_eq!(v("mcp_relay_exchanges_in_flight"), 0.0);
    assert_eq!(v("mcp_relay_bridge_connections_total"), 1.0);
    assert_eq!(
        v("mcp_relay_bridge_refusals_total{reason=\"bad_token\"}"),
        1.0
    );
    assert_eq!(
        v("mcp_relay_oauth_requests_total{step=\"metadata\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        v("mcp_relay_oauth_requests_total{step=\"token\",outcome=\"refused\"}"),
        1.0
    );
    assert!(text.contains("# TYPE mcp_relay_request_duration_seconds histogram"));

    // More calls move the counters; the scrapes themselves are not counted.
    client.echo(4, "three").await;
    let text = scrape_until(&relay.base, |t| {
        sample(
            t,
            "mcp_relay_requests_total{method=\"tools/call\",status=\"2xx\"}",
        ) == Some(3.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "mcp_relay_requests_total{method=\"tools/call\",status=\"2xx\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert!(!text.contains("method=\"metrics\""));

    // Requests that come through a reverse proxy (or name another host) are refused.
    for headers in [
        &[("x-forwarded-for", "203.0.113.7")][..],
        &[("forwarded", "for=203.0.113.7")],
        &[("host", "relay.example.com")],
    ] {
        let (status, body) = scrape(&relay.base, headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {body}");
        assert!(!body.contains("mcp_relay_"), "{body}");
    }
}

#[tokio::test]
async fn metrics_need_the_flag_and_remote_scrapes_the_token() {
    let plain = Relay::start(&[]);
    let (status, body) = scrape(&plain.base, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.contains("mcp_relay_"));

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("metrics-token");
    std::fs::write(&file, "scrape-secret-0123456789\n").expect("token file");
    let guarded = Relay::start(&[
        "--metrics",
        "--metrics-token-file",
        file.to_str().expect("utf-8 path"),
    ]);
    let proxied = ("x-forwarded-for", "203.0.113.7");
    let (status, _) = scrape(&guarded.base, &[proxied]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = scrape(
        &guarded.base,
        &[proxied, ("authorization", "Bearer wrong-secret")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = scrape(
        &guarded.base,
        &[
            proxied,
            ("authorization", "Bearer scrape-secret-0123456789"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("mcp_relay_tunnels_connected 0"), "{body}");
    // Local scrapes still need nothing.
    let (status, _) = scrape(&guarded.base, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !guarded.proc.log_text().contains("scrape-secret"),
        "the metrics token leaked into the log"
    );
}

/// Every line of a JSON log, parsed (panics on a line that is not a JSON object).
fn json_lines(what: &str, log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: a log line is not JSON ({e}): {l}"));
            assert!(
                v.is_object() && v["timestamp"].is_string() && v["level"].is_string(),
                "{what}: {l}"
            );
            v
        })
        .collect()
}

#[tokio::test]
async fn json_logs_name_one_call_with_the_same_request_id() {
    let relay = Relay::start(&["--log-format", "json"]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("obs-logs".into()),
        args: vec!["--log-format".into(), "json".into()],
        // The bridge's request lines are at debug.
        env: vec![("RUST_LOG".into(), "info,bridge::request=debug".into())],
        ..Default::default()
    });
    let mut client = Client::of(&bridge);
    client.initialize().await;
    client.echo(7, "observable").await;

    // Each binary writes its line when the request has ended.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (relay_line, bridge_line) = loop {
        let relay_log = json_lines("relay", &relay.proc.log_text());
        let bridge_log = json_lines("bridge", &bridge.proc.log_text());
        let call = relay_log.iter().find(|v| {
            v["target"] == "relay::request"
                && v["message"] == "request"
                && v["mcp_method"] == "tools/call"
        });
        let matching = call.and_then(|c| {
            bridge_log.iter().find(|v| {
                v["target"] == "bridge::request"
                    && v["message"] == "request"
                    && v["request_id"] == c["request_id"]
            })
        });
        if let (Some(c), Some(b)) = (call, matching) {
            break (c.clone(), b.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no matching request lines;\nrelay:\n{}\nbridge:\n{}",
            relay.proc.log_text(),
            bridge.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = relay_line["request_id"].as_str().expect("request_id");
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{relay_line}"
    );
    assert_eq!(relay_line["tunnel"], "obs-logs", "{relay_line}");
    assert_eq!(relay_line["tool"], "echo", "{relay_line}");
    assert_eq!(relay_line["http_method"], "POST", "{relay_line}");
    assert_eq!(relay_line["status"], 200, "{relay_line}");
    assert_eq!(relay_line["level"], "INFO", "{relay_line}");
    assert!(relay_line["duration_ms"].is_number(), "{relay_line}");
    assert!(
        relay_line["bytes_in"].as_u64().is_some_and(|n| n > 50)
            && relay_line["bytes_out"].as_u64().is_some_and(|n| n > 50),
        "{relay_line}"
    );
    let principal = relay_line["principal"].as_str().expect("principal");
    assert!(principal.starts_with("bearer:"), "{relay_line}");

    assert_eq!(bridge_line["method"], "tools/call", "{bridge_line}");
    assert_eq!(bridge_line["tool"], "echo", "{bridge_line}");
    assert_eq!(bridge_line["outcome"], "ok", "{bridge_line}");
    assert_eq!(bridge_line["by"], "server", "{bridge_line}");
    assert!(bridge_line["duration_ms"].is_number(), "{bridge_line}");

    // The bridge answers `initialize` itself; its line says so, under the relay's id too.
    let relay_log = json_lines("relay", &relay.proc.log_text());
    let bridge_log = json_lines("bridge", &bridge.proc.log_text());
    let init = relay_log
        .iter()
        .find(|v| v["target"] == "relay::request" && v["mcp_method"] == "initialize")
        .expect("the relay logged initialize");
    assert!(
        bridge_log.iter().any(|v| v["target"] == "bridge::request"
            && v["request_id"] == init["request_id"]
            && v["method"] == "initialize"
            && v["by"] == "bridge"),
        "{}",
        bridge.proc.log_text()
    );
    // Neither log holds the client's bearer token or a request body.
    let token = bridge.bearer.as_deref().expect("bearer");
    for log in [relay.proc.log_text(), bridge.proc.log_text()] {
        assert!(!log.contains(token), "a token leaked into a log:\n{log}");
        assert!(
            !log.contains("observable"),
            "a body leaked into a log:\n{log}"
        );
    }
}

/// The attack: one authorized client opening idle sessionless `GET` streams (the connector
/// probe) until the tunnel has no exchange left for anyone else. The relay answers such
/// streams itself: they hold no exchange on the bridge, and other clients are still served.
#[tokio::test]
async fn idle_probe_streams_hold_no_exchange() {
    let relay = Relay::start(&["--metrics"]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some("obs-probes".into()),
        ..Default::default()
    });
    let client = Client::of(&bridge);
    let mut streams = Vec::new();
    for _ in 0..40 {
        let resp = client
            .http
            .get(&client.url)
            .header("accept", "text/event-stream")
            .bearer_auth(client.bearer.as_deref().expect("bearer"))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        streams.push(resp);
    }
    let text = scrape_until(&relay.base, |t| {
        sample(t, "mcp_relay_exchanges_in_flight").is_some()
    })
    .await;
    assert_eq!(
        sample(&text, "mcp_relay_exchanges_in_flight"),
        Some(0.0),
        "idle probe streams hold exchanges:\n{text}"
    );
    let mut other = Client::of(&bridge);
    other.initialize().await;
    other.echo(1, "still served").await;
    drop(streams);
}
