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
                TunnelRow {
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
