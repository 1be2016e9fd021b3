//! The status page's HTML: the dashboard, the sign-in page, the pages that say a form was
//! refused, and the page's style sheet. Text goes in as [`Text`]; see [`crate::util::page`].

use askama::Template;

use crate::oauth::trace::{TraceEvent, format_time};
use crate::observe::recent::RecentCall;
use crate::store::AuthorizedClient;
use crate::util::html::{Text, filters};
use crate::util::page::Document;

use super::view::{TunnelView, View};

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

/// A page of the status page around `body`.
fn document<B: Template>(title: &str, body: B) -> Document<'_, B> {
    Document {
        title: Text(title),
        style: STYLE,
        viewport: true,
        refresh: None,
        body,
    }
}

/// A notice at the top of a page.
pub(super) struct Notice<'a> {
    /// The text.
    pub(super) text: &'a str,
    /// Whether it tells of a problem.
    pub(super) warn: bool,
}

/// The sign-in form.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Relay status</h1>\
        {% if let Some(n) = notice %}<p class={% if n.warn %}warn{% else %}notice{% endif %} id=notice>{{ n.text|text }}</p>{% endif %}\
        <p>Sign in with the relay operator password to see every tunnel, or with a bridge \
        token to see the tunnels it owns.</p>\
        <form method=post action=\"/status\" id=login>\
        <input type=hidden name=op value=login>\
        <input type=hidden name=csrf value=\"{{ csrf }}\">\
        <p><label>Operator password or bridge token \
        <input type=password name=secret autocomplete=current-password required></label></p>\
        <p><button>Sign in</button></p></form>"
)]
pub(super) struct SignIn<'a> {
    csrf: Text<&'a str>,
    notice: Option<Notice<'a>>,
}

/// The sign-in page.
pub(super) fn login_page<'a>(
    csrf: &'a str,
    notice: Option<Notice<'a>>,
) -> Document<'a, SignIn<'a>> {
    document(
        "Relay status: sign in",
        SignIn {
            csrf: Text(csrf),
            notice,
        },
    )
}

/// Why a form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The CSRF token did not match the session's.
    Csrf,
    /// An `op` the page does not have.
    UnknownAction,
    /// A tunnel the session may not act on.
    NotYours,
    /// The store failed.
    Unavailable,
}

/// A form refused.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Relay status</h1><p class=warn id=notice>\
        {% match refusal %}\
        {% when Refusal::Csrf %}Invalid form submission (CSRF check failed). <a href=\"/status\">Back to the status page</a>\
        {% when Refusal::UnknownAction %}Unknown action.\
        {% when Refusal::NotYours %}That tunnel is not yours. <a href=\"/status\">Back to the status page</a>\
        {% when Refusal::Unavailable %}The relay cannot revoke right now; try again.\
        {% endmatch %}</p>"
)]
pub(super) struct Refused {
    refusal: Refusal,
}

/// The page saying why a form was refused.
pub(super) fn refused_page(refusal: Refusal) -> Document<'static, Refused> {
    document("Relay status", Refused { refusal })
}

/// The dashboard.
#[derive(Template)]
#[template(
    ext = "html",
    source = "\
        {% macro trace_rows(events) %}\
        {% if events.is_empty() %}<p class=empty>No OAuth events yet.</p>\
        {% else %}<table class=trace><tr><th>Time (UTC)</th><th>Step</th><th>Outcome</th>\
        <th>What happened</th><th>From</th></tr>\
        {% for e in events %}<tr class=event><td class=t>{{ time(e.time_ms) }}</td>\
        <td>{{ e.step|text }}</td><td class=\"{{ e.outcome|text }}\">{{ e.outcome|text }}</td>\
        <td>{{ e.summary()|text }}</td><td>{{ trace_from(e) }}</td></tr>{% endfor %}</table>\
        {% endif %}\
        {% endmacro %}\
        <header><h1>Relay status</h1>\
        <form method=post action=\"/status\" class=inline id=logout>\
        <input type=hidden name=op value=logout><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <button>Log out</button></form></header>\
        <p id=who>Signed in as {{ view.who|text }}.</p>\
        {% if let Some(n) = notice %}<p class=notice id=notice>{{ n }}</p>{% endif %}\
        <h2>Tunnels</h2>\
        {% if view.tunnels.is_empty() %}\
        <p class=empty>No tunnel yet: a bridge claims one when it connects.</p>\
        {% else %}\
        <table id=tunnels><tr><th>Tunnel</th><th>State</th><th>Client auth</th>\
        <th>Bridge</th><th>Sessions</th><th>In flight</th>\
        {% if view.operator %}<th>Bridge token</th>{% endif %}</tr>\
        {% for t in view.tunnels %}\
        <tr class=tunnel><td><a href=\"#t-{{ t.name|text }}\">{{ t.name|text }}</a></td>\
        <td class={% if t.connected %}ok{% else %}pending{% endif %}>{{ t.connection|text }}</td>\
        <td>{{ t.auth|text }}</td><td>{{ bridge(t) }}</td>\
        {% if let Some(g) = t.gauges %}<td>{{ g[0] }}</td><td>{{ g[1] }}</td>\
        {% else %}<td>—</td><td>—</td>{% endif %}\
        {% if view.operator %}<td>{{ t.owner_label.as_deref().unwrap_or(\"?\")|text }}\
        {% if t.owner_revoked %} (revoked){% endif %}</td>{% endif %}\
        </tr>\
        {% endfor %}\
        </table>\
        {% endif %}\
        {% for t in view.tunnels %}\
        <section class=tunnel-detail id=\"t-{{ t.name|text }}\"><h2>Tunnel {{ t.name|text }}</h2>\
        {% if let Some(g) = t.gauges %}\
        <p class=gauges>{{ g[0] }} sessions, {{ g[1] }} requests in flight on the \
        server, {{ g[4] }} exchanges open at the relay, {{ g[2] }} server \
        processes, {{ g[3] }} restarts.</p>\
        {% endif %}\
        {% if !t.takeovers.is_empty() %}\
        <h3>Takeover attempts</h3><p class=notice>Another connection claimed this \
        tunnel with its bridge token. If these were not your own bridges, the token \
        has leaked: revoke it.</p><table class=takeovers><tr><th>Time (UTC)</th>\
        <th>What happened</th><th>From</th><th>Connected bridge</th></tr>\
        {% for k in t.takeovers %}\
        <tr class=takeover><td class=t>{{ time(k.at_ms) }}</td>\
        {% if k.replaced %}<td class=refused>replaced the connected bridge (it did not answer the relay's probe)</td>\
        {% else %}<td class=ok>refused: the connected bridge answered the relay's probe</td>{% endif %}\
        <td>{{ k.from|text }}</td><td>{{ k.holder|text }}</td></tr>\
        {% endfor %}\
        </table>\
        {% endif %}\
        <h3>Authorized OAuth clients</h3>\
        {% if t.clients.is_empty() %}\
        <p class=empty>No client holds a token for this tunnel.</p>\
        {% else %}\
        <table class=clients><tr><th>Client</th><th>Redirects to</th>\
        <th>First use (UTC)</th><th>Last use (UTC)</th><th></th></tr>\
        {% for c in t.clients %}\
        <tr class=client><td>{{ client_name(c) }}<br><span class=id>{{ c.client_id|text }}</span></td>\
        <td>{{ redirect_hosts(c) }}</td><td>{{ when(c.first_used) }}</td><td>{{ when(c.last_used) }}</td><td>\
        <form method=post action=\"/status\" class=inline>\
        <input type=hidden name=op value=revoke>\
        <input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=tunnel value=\"{{ t.name|text }}\">\
        <input type=hidden name=client_id value=\"{{ c.client_id|text }}\">\
        <button>Revoke</button></form></td></tr>\
        {% endfor %}\
        </table>\
        {% endif %}\
        <h3>Recent calls (last {{ crate::observe::recent::KEEP }})</h3>\
        {% if t.calls.is_empty() %}\
        <p class=empty>No call since the relay started.</p>\
        {% else %}\
        <table class=calls><tr><th>Time (UTC)</th><th>Call</th><th>Client</th>\
        <th>Status</th><th>Duration</th></tr>\
        {% for c in t.calls %}\
        <tr class=call><td class=t>{{ time(c.at_ms) }}</td><td>{{ call(c) }}</td><td>{{ called_by(c) }}</td>\
        <td class={% if call_failed(c) %}refused{% else %}ok{% endif %}>{{ call_status(c) }}</td>\
        <td>{{ c.duration_ms }} ms</td></tr>\
        {% endfor %}\
        </table>\
        {% endif %}\
        <h3>OAuth trace (last {{ super::view::TRACE_SHOWN }} events)</h3>\
        {% call trace_rows(t.trace.as_slice()) %}{% endcall %}\
        </section>\
        {% endfor %}\
        {% if view.operator %}\
        <section id=relay-wide><h2>Relay-wide OAuth events</h2>\
        {% call trace_rows(view.relay_wide.as_slice()) %}{% endcall %}\
        </section>\
        {% endif %}"
)]
pub(super) struct Dashboard<'a> {
    view: &'a View,
    csrf: Text<&'a str>,
    notice: Option<Text<&'a str>>,
}

impl Dashboard<'_> {
    /// A time in milliseconds since the Unix epoch.
    fn time(&self, ms: &i64) -> Text<String> {
        Text(format_time(*ms))
    }

    /// A time in seconds since the Unix epoch, if known.
    fn when(&self, epoch_secs: &Option<i64>) -> Text<String> {
        Text(
            epoch_secs
                .map(|s| format_time(s * 1000))
                .unwrap_or_else(|| "—".into()),
        )
    }

    /// The bridge's version.
    fn bridge(&self, t: &TunnelView) -> Text<String> {
        Text(
            t.bridge_version
                .as_deref()
                .map(|v| format!("bridge {v}"))
                .unwrap_or_else(|| "—".into()),
        )
    }

    /// A client's name, and whether the client chose it.
    fn client_name(&self, c: &AuthorizedClient) -> Text<String> {
        Text(match (&c.name, c.kind.as_deref()) {
            (Some(n), Some("cimd")) => n.clone(),
            (Some(n), _) => format!("{n} (name chosen by the client)"),
            (None, _) => "unnamed client".into(),
        })
    }

    /// The hosts a client's redirect URIs go to.
    fn redirect_hosts(&self, c: &AuthorizedClient) -> Text<String> {
        let mut hosts: Vec<String> = c
            .redirect_uris
            .iter()
            .map(|u| crate::util::html::host_of(u))
            .collect();
        hosts.dedup();
        Text(hosts.join(", "))
    }

    /// A call: its method, and its tool.
    fn call(&self, c: &RecentCall) -> Text<String> {
        Text(match &c.tool {
            Some(tool) => format!("{} {tool}", c.method),
            None => c.method.clone(),
        })
    }

    /// Who made a call.
    fn called_by(&self, c: &RecentCall) -> Text<String> {
        let principal = c.principal.as_str();
        Text(
            if let Some(id) = crate::oauth::access::client_of(principal) {
                match self.view.client_names.get(id) {
                    Some(n) => format!("{n} ({})", crate::oauth::trace::short_id(id)),
                    None => format!("OAuth client {}", crate::oauth::trace::short_id(id)),
                }
            } else if principal.starts_with("bearer:") {
                "bearer-token client".into()
            } else {
                principal.to_owned()
            },
        )
    }

    /// Whether a call failed (an HTTP error or a JSON-RPC error).
    fn call_failed(&self, c: &RecentCall) -> bool {
        c.status >= 400 || c.rpc_error == Some(true)
    }

    /// How a call ended.
    fn call_status(&self, c: &RecentCall) -> Text<String> {
        let mut status = c.status.to_string();
        if c.rpc_error == Some(true) {
            status.push_str(" · JSON-RPC error");
        }
        if !c.complete {
            status.push_str(" · cut short");
        }
        Text(status)
    }

    /// Where a trace event came from.
    fn trace_from(&self, e: &TraceEvent) -> Text<String> {
        Text(
            [e.ip.as_deref(), e.user_agent.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
        )
    }
}

/// The dashboard page.
pub(super) fn render<'a>(
    view: &'a View,
    csrf: &'a str,
    notice: Option<&'a str>,
) -> Document<'a, Dashboard<'a>> {
    document(
        "Relay status",
        Dashboard {
            view,
            csrf: Text(csrf),
            notice: notice.map(Text),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::view::TunnelView;
    use super::*;
    use crate::observe::recent::RecentCall;
    use crate::store::AuthorizedClient;
    use crate::tunnels::history::Takeover;
    use std::collections::HashMap;

    const EVIL: &str = "<script>alert(1)</script>\"'&\u{202E}\u{200B}";

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
        let html = render(&hostile_view(), "tok\"en", Some("<b>notice</b>"))
            .render()
            .unwrap();
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "{html}");
        assert!(!lower.contains("<img"), "{html}");
        assert!(!lower.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;\u{FFFD}\u{FFFD}")
        );
        // Every text shown replaces control, bidirectional and invisible characters.
        assert!(!html.chars().any(protocol::text::unsafe_char), "{html}");
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

    #[test]
    fn refusals_and_sign_in() {
        let csrf = refused_page(Refusal::Csrf).render().unwrap();
        assert!(csrf.ends_with(
            "<body><h1>Relay status</h1><p class=warn id=notice>Invalid form submission (CSRF \
             check failed). <a href=\"/status\">Back to the status page</a></p></body></html>"
        ));
        let unknown = refused_page(Refusal::UnknownAction).render().unwrap();
        assert!(unknown.contains("<p class=warn id=notice>Unknown action.</p>"));
        let page = login_page(
            "c\"s",
            Some(Notice {
                text: "Signed out.",
                warn: false,
            }),
        )
        .render()
        .unwrap();
        assert!(page.contains("<title>Relay status: sign in</title>"));
        assert!(page.contains("<p class=notice id=notice>Signed out.</p>"));
        assert!(page.contains("<input type=hidden name=csrf value=\"c&quot;s\">"));
        assert!(page.contains("<input type=password name=secret "));
    }
}
