//! Prometheus metrics of `relay serve --metrics`, served at `GET /metrics`.
//!
//! Counters and histograms are [`metrics`] handles registered once with a
//! [`PrometheusRecorder`] of the relay's own (never a process-wide recorder), and
//! resolved once per label combination: on the hot path a request costs a few atomic
//! additions and one histogram sample, with no allocation and no label formatting.
//! Gauges are read from the registry when `/metrics` is scraped.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mcp_relay_requests_total` | counter | `method` ([`CallKind`] label), `status` (`2xx`…`5xx`) |
//! | `mcp_relay_request_duration_seconds` | histogram | `method`: time to the answer's head (the whole answer for JSON answers, the first event for streams) |
//! | `mcp_relay_request_bytes_total` | counter | request bodies read |
//! | `mcp_relay_response_bytes_total` | counter | answer bodies sent |
//! | `mcp_relay_oauth_requests_total` | counter | `step` ([`OAuthStep`] label), `outcome` (`ok`, `refused`, `error`) |
//! | `mcp_relay_bridge_connections_total` | counter | bridges admitted |
//! | `mcp_relay_bridge_refusals_total` | counter | `reason` |
//! | `mcp_relay_tunnels_connected` | gauge | |
//! | `mcp_relay_exchanges_in_flight` | gauge | |
//! | `mcp_relay_bridge_sessions` | gauge | sum of the sessions the connected bridges report |
//! | `mcp_relay_bridge_requests_in_flight` | gauge | sum of their requests running on servers |
//! | `mcp_relay_bridge_server_processes` | gauge | sum of their server processes |
//! | `mcp_relay_bridge_server_restarts` | gauge | sum of their server restarts |
//!
//! Access (see [`serve`]): without `--metrics` the route does not exist (404). With
//! `--metrics-listen ADDR`, the metrics are served on that address only (to whoever can
//! reach it: bind it to loopback or a private network), and on the main address only with
//! `Authorization: Bearer <token>` (from `--metrics-token-file`; 404 without a token
//! file). Without it, on the main address, requests that carry the token or look local (a
//! loopback peer that is not a trusted proxy, a loopback `Host`, no forwarding headers)
//! get the metrics; others get 403. A reverse proxy on the same host connects from
//! loopback and may pass a client's `Host: localhost`: the shipped nginx and Caddy
//! configurations always add `X-Forwarded-For`, and a trusted proxy's requests are never
//! local, but `--metrics-listen` is the robust choice behind a proxy.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use subtle::ConstantTimeEq;

use crate::config::RelayConfig;
use crate::config::{is_loopback_host, sha256};
use crate::tunnels::registry::Registry;
use crate::util::http_error::McpError;
use axum::response::IntoResponse;
use protocol::calls::CallKind;

/// A step of the OAuth flows, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthStep {
    /// Discovery documents (RFC 8414 and RFC 9728 metadata).
    Metadata,
    /// Dynamic client registration.
    Register,
    /// The authorization endpoint.
    Authorize,
    /// A consent decided on the page, or finished (the redirect to the client).
    Consent,
    /// An authorization code exchanged for tokens.
    Token,
    /// A refresh token exchanged for new tokens.
    Refresh,
    /// Token revocation.
    Revoke,
}

impl OAuthStep {
    /// Every step, in label order.
    pub const ALL: [OAuthStep; 7] = [
        OAuthStep::Metadata,
        OAuthStep::Register,
        OAuthStep::Authorize,
        OAuthStep::Consent,
        OAuthStep::Token,
        OAuthStep::Refresh,
        OAuthStep::Revoke,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            OAuthStep::Metadata => "metadata",
            OAuthStep::Register => "register",
            OAuthStep::Authorize => "authorize",
            OAuthStep::Consent => "consent",
            OAuthStep::Token => "token",
            OAuthStep::Refresh => "refresh",
            OAuthStep::Revoke => "revoke",
        }
    }
}

/// Requests by kind and status class.
pub const REQUESTS: &str = "mcp_relay_requests_total";
/// Time to the answer's head, by kind.
pub const REQUEST_DURATION: &str = "mcp_relay_request_duration_seconds";
/// Request body bytes read.
pub const REQUEST_BYTES: &str = "mcp_relay_request_bytes_total";
/// Answer body bytes sent.
pub const RESPONSE_BYTES: &str = "mcp_relay_response_bytes_total";
/// OAuth requests by step and outcome.
pub const OAUTH: &str = "mcp_relay_oauth_requests_total";
/// Bridges admitted.
pub const BRIDGE_CONNECTIONS: &str = "mcp_relay_bridge_connections_total";
/// Bridges refused, by reason.
pub const BRIDGE_REFUSALS: &str = "mcp_relay_bridge_refusals_total";
/// The node's name, as a label of a constant 1.
pub const NODE_INFO: &str = "mcp_relay_node_info";
/// Connected tunnels.
pub const TUNNELS: &str = "mcp_relay_tunnels_connected";
/// Exchanges in flight.
pub const EXCHANGES: &str = "mcp_relay_exchanges_in_flight";
/// Sessions reported by the connected bridges.
pub const SESSIONS: &str = "mcp_relay_bridge_sessions";
/// Requests running on servers, reported by the connected bridges.
pub const BRIDGE_PENDING: &str = "mcp_relay_bridge_requests_in_flight";
/// Server processes, reported by the connected bridges.
pub const SERVER_PROCESSES: &str = "mcp_relay_bridge_server_processes";
/// Server restarts, reported by the connected bridges.
pub const SERVER_RESTARTS: &str = "mcp_relay_bridge_server_restarts";

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Status-class labels, by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// OAuth outcome labels.
const OUTCOMES: [&str; 3] = ["ok", "refused", "error"];

/// Bridge refusal reasons (labels).
pub const REFUSALS: [&str; 8] = [
    "bad_token",
    "name_taken",
    "auth_not_allowed",
    "unsupported_version",
    "bad_name",
    "busy",
    "origin",
    "malformed",
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The status-class label of an HTTP status (`2xx`…).
pub fn status_class(status: StatusCode) -> &'static str {
    let i = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
    CLASSES[i]
}

/// The label of a bridge refusal reason as the relay logs it (`BadToken` → `bad_token`);
/// unknown reasons are `malformed`.
pub fn refusal_label(reason: &str) -> &'static str {
    match reason {
        "BadToken" | "bad_token" => "bad_token",
        "NameTaken" | "name_taken" | "InUse" | "in_use" => "name_taken",
        "AuthNotAllowed" | "auth_not_allowed" => "auth_not_allowed",
        "UnsupportedVersion" | "unsupported_version" => "unsupported_version",
        "BadName" | "bad_name" => "bad_name",
        "Busy" | "busy" => "busy",
        "origin" => "origin",
        _ => "malformed",
    }
}

/// Settings of `--metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// SHA-256 of the bearer token that may scrape from anywhere (`--metrics-token-file`).
    pub token_sha256: Option<[u8; 32]>,
    /// The node's name (`--node-id`), given as `mcp_relay_node_info{node="…"} 1` (joined
    /// on the scrape's `instance` label, it names the node of every other series).
    pub node: Option<String>,
}

/// A relay's metrics: the recorder, and every handle the hot path uses.
pub struct Metrics {
    settings: MetricsSettings,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: [[OnceLock<Counter>; 5]; CallKind::COUNT],
    latency: [OnceLock<Histogram>; CallKind::COUNT],
    oauth: [[OnceLock<Counter>; 3]; OAuthStep::ALL.len()],
    refusals: [OnceLock<Counter>; REFUSALS.len()],
    request_bytes: Counter,
    response_bytes: Counter,
    bridge_connections: Counter,
    tunnels: Gauge,
    exchanges: Gauge,
    sessions: Gauge,
    bridge_pending: Gauge,
    server_processes: Gauge,
    server_restarts: Gauge,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// Turns metrics on for this process (`relay serve --metrics`): relays started afterwards
/// count and serve `/metrics`. Also starts the thread that folds histogram samples into
/// their buckets every few seconds. Only the first call has an effect.
pub fn enable(settings: MetricsSettings) {
    if GLOBAL.set(Metrics::new(settings)).is_ok() {
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    if let Some(m) = get() {
                        m.handle.run_upkeep();
                    }
                }
            });
    }
}

/// The process's metrics, when enabled.
pub fn get() -> Option<&'static Metrics> {
    GLOBAL.get()
}

impl Metrics {
    /// Metrics with their own recorder (not installed globally).
    #[expect(
        clippy::expect_used,
        reason = "the latency buckets are a non-empty constant"
    )]
    pub fn new(settings: MetricsSettings) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &LATENCY_BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, text: &'static str| {
            recorder.describe_counter(
                KeyName::from_const_str(name),
                None,
                SharedString::const_str(text),
            );
        };
        describe(
            REQUESTS,
            "Public MCP requests, by method (or kind) and HTTP status class.",
        );
        describe(REQUEST_BYTES, "Bytes of request bodies read.");
        describe(RESPONSE_BYTES, "Bytes of answer bodies sent.");
        describe(OAUTH, "OAuth requests, by step and outcome.");
        describe(BRIDGE_CONNECTIONS, "Bridges admitted.");
        describe(BRIDGE_REFUSALS, "Bridge connections refused, by reason.");
        recorder.describe_histogram(
            KeyName::from_const_str(REQUEST_DURATION),
            Some(metrics::Unit::Seconds),
            SharedString::const_str(
                "Time to the answer's head (for JSON answers the whole answer), by method.",
            ),
        );
        for (name, text) in [
            (TUNNELS, "Tunnels whose bridge is connected."),
            (EXCHANGES, "HTTP exchanges in flight to bridges."),
            (SESSIONS, "MCP sessions the connected bridges report."),
            (
                BRIDGE_PENDING,
                "Requests running on MCP servers, as the bridges report.",
            ),
            (
                SERVER_PROCESSES,
                "MCP server processes, as the bridges report.",
            ),
            (
                SERVER_RESTARTS,
                "MCP server restarts, as the bridges report.",
            ),
        ] {
            recorder.describe_gauge(
                KeyName::from_const_str(name),
                None,
                SharedString::const_str(text),
            );
        }
        if let Some(node) = &settings.node {
            recorder.describe_gauge(
                KeyName::from_const_str(NODE_INFO),
                None,
                SharedString::const_str("This relay node's name (--node-id): always 1."),
            );
            let key = Key::from_parts(NODE_INFO, vec![metrics::Label::new("node", node.clone())]);
            recorder.register_gauge(&key, &METADATA).set(1.0);
        }
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &METADATA);
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &METADATA);
        Self {
            settings,
            request_bytes: counter(REQUEST_BYTES),
            response_bytes: counter(RESPONSE_BYTES),
            bridge_connections: counter(BRIDGE_CONNECTIONS),
            tunnels: gauge(TUNNELS),
            exchanges: gauge(EXCHANGES),
            sessions: gauge(SESSIONS),
            bridge_pending: gauge(BRIDGE_PENDING),
            server_processes: gauge(SERVER_PROCESSES),
            server_restarts: gauge(SERVER_RESTARTS),
            requests: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            latency: std::array::from_fn(|_| OnceLock::new()),
            oauth: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            refusals: std::array::from_fn(|_| OnceLock::new()),
            recorder,
            handle,
        }
    }

    fn labelled_counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// Counts a finished public MCP request: its kind, status, time to the answer's head
    /// and request body size.
    pub fn request(&self, kind: CallKind, status: StatusCode, ttfb: Duration, bytes_in: u64) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.requests[kind.index()][class]
            .get_or_init(|| {
                self.labelled_counter(
                    REQUESTS,
                    vec![
                        Label::from_static_parts("method", kind.as_str()),
                        Label::from_static_parts("status", CLASSES[class]),
                    ],
                )
            })
            .increment(1);
        self.latency[kind.index()]
            .get_or_init(|| {
                let key = Key::from_parts(
                    REQUEST_DURATION,
                    vec![Label::from_static_parts("method", kind.as_str())],
                );
                self.recorder.register_histogram(&key, &METADATA)
            })
            .record(ttfb.as_secs_f64());
        if bytes_in > 0 {
            self.request_bytes.increment(bytes_in);
        }
    }

    /// Counts answer body bytes sent.
    pub fn bytes_out(&self, n: u64) {
        if n > 0 {
            self.response_bytes.increment(n);
        }
    }

    /// Counts an OAuth request; `outcome` is `ok`, `refused` or `error`.
    pub fn oauth_step(&self, step: OAuthStep, outcome: &'static str) {
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(2);
        let s = step as usize;
        self.oauth[s][o]
            .get_or_init(|| {
                self.labelled_counter(
                    OAUTH,
                    vec![
                        Label::from_static_parts("step", step.as_str()),
                        Label::from_static_parts("outcome", OUTCOMES[o]),
                    ],
                )
            })
            .increment(1);
    }

    /// Counts a bridge admitted.
    pub fn bridge_connected(&self) {
        self.bridge_connections.increment(1);
    }

    /// Counts a bridge refused; `reason` is one of [`REFUSALS`] (others count as
    /// `malformed`).
    pub fn bridge_refused(&self, reason: &str) {
        let label = refusal_label(reason);
        let i = REFUSALS.iter().position(|r| *r == label).unwrap_or(7);
        self.refusals[i]
            .get_or_init(|| {
                self.labelled_counter(
                    BRIDGE_REFUSALS,
                    vec![Label::from_static_parts("reason", REFUSALS[i])],
                )
            })
            .increment(1);
    }

    /// Sets the gauges from the registry (the bridges' last reported status).
    pub fn update_gauges(&self, registry: &Registry) {
        let live = registry.live();
        let mut sum = [0u64; 4];
        for t in &live {
            if let Some((_, s)) = registry.status(&t.name) {
                let b = s.bridge;
                sum[0] += u64::from(b.sessions);
                sum[1] += u64::from(b.pending);
                sum[2] += u64::from(b.children);
                sum[3] += u64::from(b.restarts);
            }
        }
        self.tunnels.set(live.len() as f64);
        self.exchanges.set(registry.exchanges_in_flight() as f64);
        self.sessions.set(sum[0] as f64);
        self.bridge_pending.set(sum[1] as f64);
        self.server_processes.set(sum[2] as f64);
        self.server_restarts.set(sum[3] as f64);
    }

    /// The Prometheus text exposition of everything counted so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Whether a scrape may see the metrics: with the right bearer token, or, when
    /// `local_ok`, when it looks local (see [`looks_local`]).
    pub fn allowed(&self, peer: SocketAddr, headers: &HeaderMap, local_ok: bool) -> bool {
        if let Some(expected) = &self.settings.token_sha256
            && let Some(token) = crate::util::bearer::bearer(headers)
        {
            return bool::from(sha256(token.as_bytes()).ct_eq(expected));
        }
        local_ok && looks_local(peer, headers)
    }
}

/// Whether a request looks like it comes from this machine rather than through a
/// reverse proxy: a loopback peer, a loopback (or no) `Host`, and no forwarding headers.
/// (Behind a proxy on the same machine every request has a loopback peer; the proxy's
/// `Host` and `X-Forwarded-For` give it away.)
pub fn looks_local(peer: SocketAddr, headers: &HeaderMap) -> bool {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    if !ip.is_loopback() {
        return false;
    }
    const FORWARDING: [&str; 5] = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
        "x-forwarded-proto",
    ];
    if FORWARDING.iter().any(|h| headers.contains_key(*h)) {
        return false;
    }
    match headers.get(header::HOST) {
        None => true,
        Some(h) => h.to_str().is_ok_and(|h| is_loopback_host(host_part(h))),
    }
}

/// The host of a `Host` header value (without its port).
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// `GET /metrics`.
pub async fn serve(
    State(config): State<Arc<RelayConfig>>,
    State(registry): State<Arc<Registry>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        McpError::new(
            StatusCode::NOT_FOUND,
            protocol::jsonrpc::INVALID_REQUEST,
            "Not found",
        )
        .into_response()
    };
    let Some(m) = get() else {
        return not_found();
    };
    let separate = config.metrics_listen.is_some();
    if separate && m.settings.token_sha256.is_none() {
        return not_found();
    }
    let local_ok = !separate && !config.trusted_proxies.trusts(peer.ip());
    if !m.allowed(peer, &headers, local_ok) {
        let mut r = Response::new(Body::from(
            "Forbidden: /metrics is served to local requests, or with the metrics token\n",
        ));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if m.settings.token_sha256.is_some() {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
        }
        return r;
    }
    exposition(m, &registry)
}

/// `GET /metrics` on the metrics address (`--metrics-listen`): no checks, the address is
/// the operator's.
pub async fn serve_private(State(registry): State<Arc<Registry>>) -> Response {
    match get() {
        Some(m) => exposition(m, &registry),
        None => McpError::new(
            StatusCode::NOT_FOUND,
            protocol::jsonrpc::INVALID_REQUEST,
            "Not found",
        )
        .into_response(),
    }
}

fn exposition(m: &Metrics, registry: &Registry) -> Response {
    m.update_gauges(registry);
    let mut r = Response::new(Body::from(m.render()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Counts bridge admissions and refusals from the relay's own connection events
/// (`bridge connected` with its `bridge_version`, `refused bridge` with its `reason`,
/// target `relay::link::socket`), when metrics are enabled. Installed by
/// [`crate::observe::logging::init`] for `relay serve`.
pub struct BridgeEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for BridgeEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "relay::link::socket" {
            return;
        }
        let Some(m) = get() else { return };
        let mut v = EventFields::default();
        event.record(&mut v);
        if v.connected {
            m.bridge_connected();
        } else if let Some(reason) = v.reason {
            m.bridge_refused(&reason);
        }
    }
}

#[derive(Default)]
struct EventFields {
    connected: bool,
    reason: Option<String>,
}

impl tracing::field::Visit for EventFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "bridge_version" => self.connected = true,
            "reason" => self.reason = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "bridge_version" => self.connected = true,
            "reason" => self.reason = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(m: &Metrics, text: &str, line_start: &str) -> Option<f64> {
        let _ = m;
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::ACCEPTED), "2xx");
        assert_eq!(status_class(StatusCode::SWITCHING_PROTOCOLS), "1xx");
        assert_eq!(status_class(StatusCode::FOUND), "3xx");
        assert_eq!(status_class(StatusCode::UNAUTHORIZED), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        assert_eq!(refusal_label("BadToken"), "bad_token");
        assert_eq!(refusal_label("NameTaken"), "name_taken");
        assert_eq!(refusal_label("Whatever"), "malformed");
    }

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new(MetricsSettings::default());
        m.request(
            CallKind::ToolsCall,
            StatusCode::OK,
            Duration::from_millis(3),
            120,
        );
        m.request(
            CallKind::ToolsCall,
            StatusCode::OK,
            Duration::from_millis(40),
            80,
        );
        m.request(
            CallKind::Unknown,
            StatusCode::UNAUTHORIZED,
            Duration::ZERO,
            0,
        );
        m.bytes_out(500);
        m.oauth_step(OAuthStep::Refresh, "ok");
        m.oauth_step(OAuthStep::Token, "refused");
        m.bridge_connected();
        m.bridge_refused("BadToken");
        m.bridge_refused("origin");
        m.update_gauges(&Registry::default());
        let text = m.render();
        let v = |s: &str| sample(&m, &text, s);
        assert_eq!(
            v("mcp_relay_requests_total{method=\"tools/call\",status=\"2xx\"}"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            v("mcp_relay_requests_total{method=\"unknown\",status=\"4xx\"}"),
            Some(1.0)
        );
        assert_eq!(v("mcp_relay_request_bytes_total"), Some(200.0));
        assert_eq!(v("mcp_relay_response_bytes_total"), Some(500.0));
        assert_eq!(
            v("mcp_relay_oauth_requests_total{step=\"refresh\",outcome=\"ok\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("mcp_relay_oauth_requests_total{step=\"token\",outcome=\"refused\"}"),
            Some(1.0)
        );
        assert_eq!(v("mcp_relay_bridge_connections_total"), Some(1.0));
        assert_eq!(
            v("mcp_relay_bridge_refusals_total{reason=\"bad_token\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("mcp_relay_bridge_refusals_total{reason=\"origin\"}"),
            Some(1.0)
        );
        assert_eq!(v("mcp_relay_tunnels_connected"), Some(0.0));
        assert_eq!(v("mcp_relay_bridge_sessions"), Some(0.0));
        // A real histogram (buckets), not a summary.
        assert!(
            text.contains("# TYPE mcp_relay_request_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            v("mcp_relay_request_duration_seconds_bucket{method=\"tools/call\",le=\"0.005\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("mcp_relay_request_duration_seconds_bucket{method=\"tools/call\",le=\"0.05\"}"),
            Some(2.0)
        );
        assert_eq!(
            v("mcp_relay_request_duration_seconds_count{method=\"tools/call\"}"),
            Some(2.0)
        );
        assert!(text.contains("# HELP mcp_relay_requests_total"));
        // Combinations never used are not rendered.
        assert!(!text.contains("method=\"ping\""));
    }

    #[test]
    fn scrapes_must_look_local_or_carry_the_token() {
        let peer = |s: &str| s.parse::<SocketAddr>().unwrap();
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        let local = peer("127.0.0.1:5000");
        assert!(looks_local(local, &headers(&[("host", "127.0.0.1:8080")])));
        assert!(looks_local(local, &headers(&[("host", "localhost")])));
        assert!(looks_local(
            peer("[::1]:5000"),
            &headers(&[("host", "[::1]:8080")])
        ));
        assert!(looks_local(peer("[::ffff:127.0.0.1]:5000"), &headers(&[])));
        assert!(!looks_local(peer("10.0.0.2:5000"), &headers(&[])));
        assert!(!looks_local(
            local,
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("x-forwarded-for", "203.0.113.7")
            ])
        ));
        assert!(!looks_local(
            local,
            &headers(&[("forwarded", "for=203.0.113.7")])
        ));
        assert!(!looks_local(
            local,
            &headers(&[("host", "relay.example.com")])
        ));

        let open = Metrics::new(MetricsSettings::default());
        assert!(open.allowed(local, &headers(&[]), true));
        assert!(!open.allowed(
            peer("10.0.0.2:5000"),
            &headers(&[("authorization", "Bearer x")]),
            true
        ));
        // Local is not enough where it is not allowed (a trusted proxy's request, or
        // metrics on their own address).
        assert!(!open.allowed(local, &headers(&[]), false));

        let guarded = Metrics::new(MetricsSettings {
            token_sha256: Some(sha256(b"scrape-secret")),
            node: None,
        });
        let remote = peer("10.0.0.2:5000");
        assert!(guarded.allowed(
            remote,
            &headers(&[("authorization", "Bearer scrape-secret")]),
            false
        ));
        assert!(!guarded.allowed(remote, &headers(&[("authorization", "Bearer wrong")]), true));
        assert!(!guarded.allowed(remote, &headers(&[]), true));
        // A wrong token is refused even from a local-looking request.
        assert!(!guarded.allowed(local, &headers(&[("authorization", "Bearer wrong")]), true));
        assert!(guarded.allowed(local, &headers(&[]), true));
    }
}
