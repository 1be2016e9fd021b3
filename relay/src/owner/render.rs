//! The status page's HTML: the dashboard, the sign-in page and the page's style sheet.

use crate::oauth::trace::{TraceEvent, format_time};
use crate::util::html::escape_html;

use super::view::{TRACE_SHOWN, View};

/// The page's style sheet (the CSP allows it by its hash).
pub(super) const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;\
padding:0 1em;color:#222}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}\
th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;vertical-align:top}\
th{font-weight:600;background:#f6f6f6}code,.id{font-family:ui-monospace,monospace;font-size:.9em}\
.id{color:#666}.ok{color:#1a6b1a}.refused,.error,.warn{color:#8a1c00}.pending{color:#875d00}\
.notice{background:#eef6ee;padding:.5em}.warn{background:#fbeeea;padding:.5em}\
form.inline{display:inline;margin:0}button{font-size:.95em;padding:.2em .8em}\
header{display:flex;justify-content:space-between;align-items:center}td.t{white-space:nowrap}";

/// A whole page of the status page: `body` is HTML, the title is text.
pub(super) fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape_html(title)
    )
}

/// The sign-in page, with a notice (`warn`: shown as a problem).
pub(super) fn login_page(csrf: &str, notice: Option<(&str, bool)>) -> String {
    let notice = notice
        .map(|(n, warn)| {
            format!(
                "<p class={} id=notice>{}</p>",
                if warn { "warn" } else { "notice" },
                escape_html(n)
            )
        })
        .unwrap_or_default();
    document(
        "Relay status: sign in",
        &format!(
            "<h1>Relay status</h1>{notice}\
             <p>Sign in with the relay operator password to see every tunnel, or with a bridge \
             token to see the tunnels it owns.</p>\
             <form method=post action=\"/status\" id=login>\
             <input type=hidden name=op value=login>\
             <input type=hidden name=csrf value=\"{}\">\
             <p><label>Operator password or bridge token \
             <input type=password name=secret autocomplete=current-password required></label></p>\
             <p><button>Sign in</button></p></form>",
            escape_html(csrf)
        ),
    )
}

fn when(epoch_secs: Option<i64>) -> String {
    epoch_secs
        .map(|s| format_time(s * 1000))
        .unwrap_or_else(|| "—".into())
}

fn caller(view: &View, principal: &str) -> String {
    if let Some(id) = crate::oauth::access::client_of(principal) {
        return match view.client_names.get(id) {
            Some(n) => format!("{n} ({})", crate::oauth::trace::short_id(id)),
            None => format!("OAuth client {}", crate::oauth::trace::short_id(id)),
        };
    }
    if principal.starts_with("bearer:") {
        return "bearer-token client".into();
    }
    principal.to_owned()
}

fn trace_rows(events: &[TraceEvent]) -> String {
    if events.is_empty() {
        return "<p class=empty>No OAuth events yet.</p>".into();
    }
    let mut rows = String::from(
        "<table class=trace><tr><th>Time (UTC)</th><th>Step</th><th>Outcome</th>\
         <th>What happened</th><th>From</th></tr>",
    );
    for e in events {
        let from = [e.ip.as_deref(), e.user_agent.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
        rows.push_str(&format!(
            "<tr class=event><td class=t>{}</td><td>{}</td><td class={}>{}</td><td>{}</td><td>{}</td></tr>",
            format_time(e.time_ms),
            escape_html(&e.step),
            escape_html(&e.outcome),
            escape_html(&e.outcome),
            escape_html(&e.summary()),
            escape_html(&from),
        ));
    }
    rows.push_str("</table>");
    rows
}

/// The dashboard's HTML.
pub fn render(view: &View, csrf: &str, notice: Option<&str>) -> String {
    let csrf = escape_html(csrf);
    let mut b = format!(
        "<header><h1>Relay status</h1>\
         <form method=post action=\"/status\" class=inline id=logout>\
         <input type=hidden name=op value=logout><input type=hidden name=csrf value=\"{csrf}\">\
         <button>Log out</button></form></header>\
         <p id=who>Signed in as {}.</p>",
        escape_html(&view.who)
    );
    if let Some(n) = notice {
        b.push_str(&format!("<p class=notice id=notice>{}</p>", escape_html(n)));
    }
    b.push_str("<h2>Tunnels</h2>");
    if view.tunnels.is_empty() {
        b.push_str("<p class=empty>No tunnel yet: a bridge claims one when it connects.</p>");
    } else {
        b.push_str(
            "<table id=tunnels><tr><th>Tunnel</th><th>State</th><th>Client auth</th>\
             <th>Bridge</th><th>Sessions</th><th>In flight</th>",
        );
        if view.operator {
            b.push_str("<th>Bridge token</th>");
        }
        b.push_str("</tr>");
        for t in &view.tunnels {
            let [sessions, pending, ..] = t.gauges.unwrap_or_default();
            let gauge = |v: u64| {
                if t.gauges.is_some() {
                    v.to_string()
                } else {
                    "—".into()
                }
            };
            b.push_str(&format!(
                "<tr class=tunnel><td><a href=\"#t-{name}\">{name}</a></td><td class={}>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                if t.connected { "ok" } else { "pending" },
                escape_html(&t.connection),
                escape_html(&t.auth),
                escape_html(
                    &t.bridge_version
                        .as_deref()
                        .map(|v| format!("bridge {v}"))
                        .unwrap_or_else(|| "—".into())
                ),
                gauge(sessions),
                gauge(pending),
                name = escape_html(&t.name),
            ));
            if view.operator {
                let label = t.owner_label.as_deref().unwrap_or("?");
                let revoked = if t.owner_revoked { " (revoked)" } else { "" };
                b.push_str(&format!("<td>{}{revoked}</td>", escape_html(label)));
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>");
    }
    for t in &view.tunnels {
        let name = escape_html(&t.name);
        b.push_str(&format!(
            "<section class=tunnel-detail id=\"t-{name}\"><h2>Tunnel {name}</h2>"
        ));
        if let Some([sessions, pending, children, restarts, exchanges]) = t.gauges {
            b.push_str(&format!(
                "<p class=gauges>{sessions} sessions, {pending} requests in flight on the \
                 server, {exchanges} exchanges open at the relay, {children} server \
                 processes, {restarts} restarts.</p>"
            ));
        }
        if !t.takeovers.is_empty() {
            b.push_str(
                "<h3>Takeover attempts</h3><p class=notice>Another connection claimed this \
                 tunnel with its bridge token. If these were not your own bridges, the token \
                 has leaked: revoke it.</p><table class=takeovers><tr><th>Time (UTC)</th>\
                 <th>What happened</th><th>From</th><th>Connected bridge</th></tr>",
            );
            for k in &t.takeovers {
                let (class, what) = if k.replaced {
                    (
                        "refused",
                        "replaced the connected bridge (it did not answer the relay's probe)",
                    )
                } else {
                    (
                        "ok",
                        "refused: the connected bridge answered the relay's probe",
                    )
                };
                b.push_str(&format!(
                    "<tr class=takeover><td class=t>{}</td><td class={class}>{what}</td>\
                     <td>{}</td><td>{}</td></tr>",
                    format_time(k.at_ms),
                    escape_html(&k.from),
                    escape_html(&k.holder),
                ));
            }
            b.push_str("</table>");
        }
        b.push_str("<h3>Authorized OAuth clients</h3>");
        if t.clients.is_empty() {
            b.push_str("<p class=empty>No client holds a token for this tunnel.</p>");
        } else {
            b.push_str(
                "<table class=clients><tr><th>Client</th><th>Redirects to</th>\
                 <th>First use (UTC)</th><th>Last use (UTC)</th><th></th></tr>",
            );
            for c in &t.clients {
                let name = match (&c.name, c.kind.as_deref()) {
                    (Some(n), Some("cimd")) => n.clone(),
                    (Some(n), _) => format!("{n} (name chosen by the client)"),
                    (None, _) => "unnamed client".into(),
                };
                let mut hosts: Vec<String> = c
                    .redirect_uris
                    .iter()
                    .map(|u| crate::util::html::host_of(u))
                    .collect();
                hosts.dedup();
                b.push_str(&format!(
                    "<tr class=client><td>{}<br><span class=id>{}</span></td><td>{}</td>\
                     <td>{}</td><td>{}</td><td>\
                     <form method=post action=\"/status\" class=inline>\
                     <input type=hidden name=op value=revoke>\
                     <input type=hidden name=csrf value=\"{csrf}\">\
                     <input type=hidden name=tunnel value=\"{tunnel}\">\
                     <input type=hidden name=client_id value=\"{id}\">\
                     <button>Revoke</button></form></td></tr>",
                    escape_html(&name),
                    escape_html(&c.client_id),
                    escape_html(&hosts.join(", ")),
                    when(c.first_used),
                    when(c.last_used),
                    tunnel = name_attr(&t.name),
                    id = escape_html(&c.client_id),
                ));
            }
            b.push_str("</table>");
        }
        b.push_str(&format!(
            "<h3>Recent calls (last {})</h3>",
            crate::observe::recent::KEEP
        ));
        if t.calls.is_empty() {
            b.push_str("<p class=empty>No call since the relay started.</p>");
        } else {
            b.push_str(
                "<table class=calls><tr><th>Time (UTC)</th><th>Call</th><th>Client</th>\
                 <th>Status</th><th>Duration</th></tr>",
            );
            for c in &t.calls {
                let call = match &c.tool {
                    Some(tool) => format!("{} {tool}", c.method),
                    None => c.method.clone(),
                };
                let mut status = c.status.to_string();
                let mut class = if c.status < 400 { "ok" } else { "refused" };
                if c.rpc_error == Some(true) {
                    status.push_str(" · JSON-RPC error");
                    class = "refused";
                }
                if !c.complete {
                    status.push_str(" · cut short");
                }
                b.push_str(&format!(
                    "<tr class=call><td class=t>{}</td><td>{}</td><td>{}</td><td class={class}>{}</td>\
                     <td>{} ms</td></tr>",
                    format_time(c.at_ms),
                    escape_html(&call),
                    escape_html(&caller(view, &c.principal)),
                    escape_html(&status),
                    c.duration_ms,
                ));
            }
            b.push_str("</table>");
        }
        b.push_str(&format!("<h3>OAuth trace (last {TRACE_SHOWN} events)</h3>"));
        b.push_str(&trace_rows(&t.trace));
        b.push_str("</section>");
    }
    if view.operator {
        b.push_str("<section id=relay-wide><h2>Relay-wide OAuth events</h2>");
        b.push_str(&trace_rows(&view.relay_wide));
        b.push_str("</section>");
    }
    document("Relay status", &b)
}

/// A tunnel name for an attribute (names are `[a-z0-9-]`; escaped all the same).
pub(super) fn name_attr(name: &str) -> String {
    escape_html(name)
}

#[cfg(test)]
mod tests {
    use super::super::view::TunnelView;
    use super::*;
    use crate::observe::recent::RecentCall;
    use crate::store::AuthorizedClient;
    use crate::tunnels::history::Takeover;
    use std::collections::HashMap;

    const EVIL: &str = "<script>alert(1)</script>\"'&";

    fn hostile_view() -> View {
        let mut trace = TraceEvent {
            id: 1,
            time_ms: 0,
            tunnel: Some("desk".into()),
            step: "token".into(),
            outcome: "refused".into(),
            error: Some("invalid_target".into()),
            reason: format!("the resource {EVIL} does not match"),
            client_id: Some(EVIL.into()),
            client_name: Some(EVIL.into()),
            ip: Some("203.0.113.1".into()),
            user_agent: Some(EVIL.into()),
            unverified: false,
        };
        trace.reason.push_str(" <img src=x onerror=alert(2)>");
        View {
            who: format!("the owner of bridge token \u{201c}{EVIL}\u{201d}"),
            operator: true,
            tunnels: vec![TunnelView {
                name: "desk".into(),
                owner_label: Some(EVIL.into()),
                connection: "connected".into(),
                connected: true,
                auth: "OAuth".into(),
                bridge_version: Some(EVIL.into()),
                gauges: Some([1, 2, 3, 4, 5]),
                clients: vec![AuthorizedClient {
                    client_id: EVIL.into(),
                    name: Some(EVIL.into()),
                    kind: Some("dcr".into()),
                    redirect_uris: vec!["https://claude.ai/api/mcp/auth_callback".into()],
                    first_used: Some(0),
                    last_used: None,
                }],
                calls: vec![RecentCall {
                    at_ms: 0,
                    method: "tools/call".into(),
                    tool: Some(EVIL.into()),
                    principal: format!("oauth:{EVIL}"),
                    status: 200,
                    rpc_error: Some(true),
                    duration_ms: 12,
                    complete: true,
                    owner: 1,
                }],
                trace: vec![trace.clone()],
                takeovers: vec![Takeover {
                    at_ms: 0,
                    replaced: true,
                    from: EVIL.into(),
                    holder: EVIL.into(),
                }],
                ..TunnelView::default()
            }],
            relay_wide: vec![trace],
            client_names: HashMap::from([(EVIL.to_owned(), EVIL.to_owned())]),
        }
    }

    #[test]
    fn everything_shown_is_escaped() {
        let html = render(&hostile_view(), "tok\"en", Some("<b>notice</b>"));
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "{html}");
        assert!(!lower.contains("<img"), "{html}");
        assert!(!lower.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(
            html.contains("value=\"tok&quot;en\""),
            "the CSRF token is escaped too"
        );
        // Every form posts to the page itself and carries the CSRF token.
        let forms = html.matches("<form ").count();
        assert_eq!(forms, 2, "log out and one revoke");
        assert_eq!(
            html.matches("name=csrf value=\"tok&quot;en\"").count(),
            forms
        );
        assert_eq!(html.matches("action=\"/status\"").count(), forms);
        for row in [
            "tr class=tunnel",
            "tr class=client",
            "tr class=call",
            "tr class=event",
        ] {
            assert!(html.contains(row), "{row}");
        }
        assert!(html.contains("200 · JSON-RPC error"));
        assert!(html.contains("(name chosen by the client)"));
    }
}
