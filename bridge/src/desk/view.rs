//! What the dashboard shows, read from the bridge's state at each request: the tunnels
//! (their drivers' gauges), the OAuth consents waiting for the owner, and the tool calls
//! held for approval (from the confirmation hub), as plain rows of text.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::DeskState;
use crate::status_line::LinkState;

/// Longest string value shown whole in a held call's arguments.
const FOLD_AT: usize = 300;

/// One tunnel's row.
pub struct TunnelRow {
    pub name: String,
    pub state: &'static str,
    pub online: bool,
    pub since: String,
    pub url: String,
    pub auth: &'static str,
    pub sessions: u32,
    pub in_flight: u32,
    pub answered: u64,
    /// The owner paused its tool calls.
    pub paused: bool,
    /// Its audit log page, when it writes one.
    pub audit_href: String,
    /// Each client's sessions.
    pub clients: Vec<ClientRow>,
    /// Server processes (or upstream sessions) running, and restarts.
    pub children: u32,
    pub restarts: u32,
    /// Their process ids (local processes), as text.
    pub pids: String,
    /// The server's last stderr lines.
    pub stderr: Vec<String>,
    /// The newest calls.
    pub calls: Vec<RecentRow>,
    /// Per tool: calls, errors, latency.
    pub tools: Vec<ToolLine>,
}

/// A client's sessions.
pub struct ClientRow {
    pub principal: String,
    /// What it called itself (`clientInfo`), comma-separated.
    pub names: String,
    pub sessions: usize,
    pub in_flight: usize,
    pub versions: String,
}

/// One finished call.
pub struct RecentRow {
    pub ago: String,
    pub tool: String,
    pub client: String,
    /// The audit log filtered by this tool, and by this client (empty without a log).
    pub tool_href: String,
    pub client_href: String,
    pub outcome: String,
    pub ok: bool,
    pub duration: String,
}

/// One tool's figures, with the bar lengths of its latencies (0–1000, against the slowest
/// p95 of the tunnel).
pub struct ToolLine {
    pub tool: String,
    pub calls: u64,
    pub errors: u64,
    pub p50: String,
    pub p95: String,
    pub p50_bar: u32,
    pub p95_bar: u32,
}

/// A consent waiting for the owner.
pub struct ConsentRow {
    pub id: String,
    pub tunnel: String,
    pub client: String,
    pub redirect_host: String,
    pub code: String,
    pub waiting: String,
}

/// A tool call held for the owner.
pub struct CallRow {
    pub code: String,
    pub tunnel: String,
    pub tool: String,
    pub client: String,
    /// The arguments, pretty-printed (one line each), long strings folded.
    pub args: Vec<String>,
    pub cut: bool,
    pub waiting: String,
    pub left: String,
}

/// The whole page's data.
pub struct View {
    pub tunnels: Vec<TunnelRow>,
    pub consents: Vec<ConsentRow>,
    pub calls: Vec<CallRow>,
}

impl View {
    /// What the dashboard shows now.
    pub fn now(state: &DeskState) -> Self {
        let now = SystemTime::now();
        let tunnels = state
            .tunnels
            .iter()
            .map(|t| {
                let (sessions, in_flight) = t.gauges.load();
                let s = t.gauges.state();
                let owner = t.gauges.owner_view();
                let audited = t.audit_log.is_some().then_some(t.name.as_str());
                let (calls, tools) = match &t.calls {
                    Some(c) => (recent_rows(now, c, audited), tool_lines(c)),
                    None => (Vec::new(), Vec::new()),
                };
                TunnelRow {
                    paused: owner.paused,
                    audit_href: if t.audit_log.is_some() {
                        audit_href(&t.name, &[])
                    } else {
                        String::new()
                    },
                    clients: owner
                        .clients
                        .into_iter()
                        .map(|c| ClientRow {
                            names: c.names.join(", "),
                            principal: c.principal,
                            sessions: c.sessions,
                            in_flight: c.in_flight,
                            versions: c.versions.join(", "),
                        })
                        .collect(),
                    children: owner.children,
                    pids: owner
                        .pids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    restarts: owner.restarts,
                    stderr: owner.stderr_tail,
                    calls,
                    tools,
                    name: t.name.clone(),
                    state: label(s),
                    online: s == LinkState::Online,
                    since: t
                        .gauges
                        .state_since()
                        .map(|at| ago(now, at))
                        .unwrap_or_default(),
                    url: t.gauges.url().unwrap_or_default(),
                    auth: t.auth,
                    sessions,
                    in_flight,
                    answered: t.gauges.answered(),
                }
            })
            .collect();
        let consents = state
            .consents()
            .into_iter()
            .map(|c| ConsentRow {
                id: c.request.id,
                tunnel: c.tunnel,
                client: c.request.client,
                redirect_host: c.request.redirect_host,
                code: c.request.code,
                waiting: ago(now, c.since),
            })
            .collect();
        let calls = crate::confirm::hub()
            .waiting()
            .into_iter()
            .map(|w| CallRow {
                left: left(now, w.since + w.timeout),
                waiting: ago(now, w.since),
                args: pretty(&w.args).lines().map(str::to_owned).collect(),
                cut: w.args_cut,
                code: w.code,
                tunnel: w.tunnel,
                tool: w.tool,
                client: w.principal,
            })
            .collect();
        View {
            tunnels,
            consents,
            calls,
        }
    }
}

/// `/audit?tunnel=…` with more filters, encoded.
fn audit_href(tunnel: &str, filters: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("tunnel", tunnel);
    for (k, v) in filters {
        q.append_pair(k, v);
    }
    format!("/audit?{}", q.finish())
}

fn recent_rows(
    now: SystemTime,
    calls: &crate::calls::CallStats,
    audited: Option<&str>,
) -> Vec<RecentRow> {
    calls
        .recent()
        .into_iter()
        .take(20)
        .map(|c| RecentRow {
            tool_href: audited.map_or(String::new(), |t| audit_href(t, &[("tool", &c.tool)])),
            client_href: audited.map_or(String::new(), |t| {
                audit_href(t, &[("client", &c.principal)])
            }),
            ago: ago(now, c.at),
            ok: c.outcome == crate::audit::Outcome::Ok,
            outcome: c.outcome.to_string(),
            duration: millis(c.duration),
            tool: c.tool,
            client: c.principal,
        })
        .collect()
}

fn tool_lines(calls: &crate::calls::CallStats) -> Vec<ToolLine> {
    let tools = calls.tools();
    let slowest = tools
        .iter()
        .filter_map(|t| t.p95)
        .max()
        .unwrap_or_default()
        .max(Duration::from_micros(1));
    let bar = |d: Option<Duration>| {
        d.map_or(0, |d| {
            u32::try_from(d.as_nanos() * 1000 / slowest.as_nanos()).unwrap_or(1000)
        })
    };
    tools
        .into_iter()
        .map(|t| ToolLine {
            p50_bar: bar(t.p50),
            p95_bar: bar(t.p95),
            p50: t.p50.map(millis).unwrap_or_else(|| "–".into()),
            p95: t.p95.map(millis).unwrap_or_else(|| "–".into()),
            tool: t.tool,
            calls: t.calls,
            errors: t.errors,
        })
        .collect()
}

/// A duration in milliseconds, to a precision a person reads.
fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn label(s: LinkState) -> &'static str {
    match s {
        LinkState::Starting => "starting",
        LinkState::Connecting => "connecting",
        LinkState::Online => "online",
        LinkState::Reconnecting => "reconnecting",
        LinkState::Stopped => "stopped",
    }
}

/// "for 3 min" style durations.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} days", s / 86_400),
    }
}

fn ago(now: SystemTime, at: SystemTime) -> String {
    span(now.duration_since(at).unwrap_or_default())
}

fn left(now: SystemTime, until: SystemTime) -> String {
    span(until.duration_since(now).unwrap_or_default())
}

/// The arguments' JSON pretty-printed, with string values longer than [`FOLD_AT`]
/// characters folded; text that is not JSON (cut arguments) as it is.
pub fn pretty(args: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(args) else {
        return args.to_owned();
    };
    fold(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| args.to_owned())
}

fn fold(v: &mut Value) {
    match v {
        Value::String(s) if s.chars().count() > FOLD_AT => {
            let total = s.chars().count();
            let kept: String = s.chars().take(FOLD_AT).collect();
            *s = format!("{kept}… ({} more characters)", total - FOLD_AT);
        }
        Value::Array(items) => items.iter_mut().for_each(fold),
        Value::Object(map) => map.values_mut().for_each(fold),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_pretty_and_long_values_folded() {
        let long = "x".repeat(FOLD_AT + 5);
        let shown = pretty(&format!(r#"{{"path":"/tmp/a","text":"{long}"}}"#));
        assert!(shown.contains("\n  \"path\": \"/tmp/a\""), "{shown}");
        assert!(shown.contains("… (5 more characters)"), "{shown}");
        assert_eq!(pretty("{\"cut"), "{\"cut");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(span(Duration::from_secs(5)), "5 s");
        assert_eq!(span(Duration::from_secs(125)), "2 min");
        assert_eq!(span(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(span(Duration::from_secs(3 * 86_400)), "3 days");
    }
}
