//! Debugging a tunnel from the outside: the relay's Prometheus `/metrics` (who may read
//! it, and that its counters move), and the JSON logs of both binaries, where one call
//! carries the same request id in the relay's and the bridge's request lines.

use std::time::{Duration, Instant};

use e2e::bridge::run_until_exit;
use e2e::http::client_with;
use e2e::mcp::{HANDSHAKE_2025_06, McpClient, Session};
use e2e::{Bridge, BridgeOpts, Relay};
use serde_json::{Value, json};

/// Longest wait for any one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A session of the bridge's tunnel (2025-06-18).
async fn session(bridge: &Bridge) -> Session {
    McpClient::of(bridge).session(HANDSHAKE_2025_06).await
}

/// Calls the fixture's `echo` tool in `s` and checks its answer.
async fn echo(s: &Session, id: u64, text: &str) {
    assert_eq!(
        s.tool_text(json!(id), "echo", json!({"text": text})).await,
        text
    );
}

/// `GET /metrics` with these extra headers: the status and the body.
async fn scrape(base: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut rb = client_with(HTTP_TIMEOUT).get(format!("{base}/metrics"));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("GET /metrics");
    let status = resp.status().as_u16();
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
        assert_eq!(status, 200, "{text}");
        if done(&text) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a bridge the relay refuses (a wrong bridge token) until it exits.
async fn refused_bridge(relay: &Relay) {
    let out = run_until_exit(
        &relay.base,
        "not-a-token-this-relay-knows",
        "obs-refused",
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn metrics_count_requests_oauth_and_bridges() {
    let relay = Relay::start(&["--metrics"]);
    let bridge = relay.bridge(BridgeOpts::default().name("obs-metrics"));
    let client = session(&bridge).await;
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(client.post(&list, "tools/list").await.status, 200);
    echo(&client, 2, "one").await;
    echo(&client, 3, "two").await;
    // Refused before the body is read.
    let anonymous = McpClient::new(&bridge.mcp_url, None);
    let version = vec![("mcp-protocol-version".into(), HANDSHAKE_2025_06.into())];
    let status = anonymous.post(&list, &version, "anonymous").await.status;
    assert_eq!(status, 401);
    // OAuth: discovery works, a token request from an unknown client is refused.
    let h = client_with(HTTP_TIMEOUT);
    let resp = h
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            relay.base
        ))
        .send()
        .await
        .expect("metadata");
    assert_eq!(resp.status(), 200);
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
    echo(&client, 4, "three").await;
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
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(!body.contains("mcp_relay_"), "{body}");
    }
}

#[tokio::test]
async fn metrics_need_the_flag_and_remote_scrapes_the_token() {
    let plain = Relay::start(&[]);
    let (status, body) = scrape(&plain.base, &[]).await;
    assert_eq!(status, 404, "{body}");
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
    assert_eq!(status, 403);
    let (status, _) = scrape(
        &guarded.base,
        &[proxied, ("authorization", "Bearer wrong-secret")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = scrape(
        &guarded.base,
        &[
            proxied,
            ("authorization", "Bearer scrape-secret-0123456789"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("mcp_relay_tunnels_connected 0"), "{body}");
    // Local scrapes still need nothing.
    let (status, _) = scrape(&guarded.base, &[]).await;
    assert_eq!(status, 200);
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
    let bridge = BridgeOpts::default()
        .name("obs-logs")
        .via(&relay)
        .args(&["--log-format", "json"])
        // The bridge's request lines are at debug.
        .env(&[("RUST_LOG", "info,bridge::request=debug")])
        .start();
    let client = session(&bridge).await;
    echo(&client, 7, "observable").await;

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
    let bridge = relay.bridge(BridgeOpts::default().name("obs-probes"));
    let client = McpClient::of(&bridge);
    let mut streams = Vec::new();
    for _ in 0..40 {
        let get = client
            .http
            .get(&client.url)
            .header("accept", "text/event-stream");
        let stream = client.send(client.authed(get), "GET").await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.content_type, "text/event-stream");
        streams.push(stream);
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
    let other = session(&bridge).await;
    echo(&other, 1, "still served").await;
    drop(streams);
}
