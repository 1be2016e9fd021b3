//! The dashboard's HTML: the page, the page for a browser without the dashboard's cookie,
//! and the protective headers. Built on the relay's page shell (askama templates: every
//! value escaped, names made safe as on the consent page); no script, no remote resource.

use std::sync::OnceLock;

use askama::Template;
use axum::response::Response;
use http::StatusCode;
use relay::util::html::{Text, filters};
use relay::util::page::{Document, Protection, Refresh, html_answer};

use super::view::View;

/// The style sheet (the CSP allows it by its hash).
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;\
padding:0 1em;color:#222}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}\
th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;vertical-align:top}\
th{font-weight:600;background:#f6f6f6}code,pre{font-family:ui-monospace,monospace;font-size:.9em}\
pre{background:#f6f6f6;padding:.5em;max-height:24em;overflow:auto;white-space:pre-wrap;word-break:break-all}\
.online{color:#1a6b1a}.offline{color:#8a1c00}.empty{color:#666}\
.call,.consent{border:1px solid #e0c080;background:#fffaf0;padding:.6em 1em;margin:.6em 0}\
form.inline{display:inline;margin:0 .4em 0 0}button{font-size:.95em;padding:.2em .8em}";

/// The page's Content-Security-Policy: its own style sheet and forms, nothing else.
fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(protocol::digest::sha256(STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// An HTML answer with the dashboard's protective headers.
fn answer(status: StatusCode, page: &impl Template) -> Response {
    let mut r = html_answer(status, page);
    Protection {
        csp: csp(),
        referrer: "same-origin",
        pragma: true,
        same_origin: true,
    }
    .apply(r.headers_mut());
    r
}

/// The dashboard.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Bridge dashboard</h1>\
        <h2>Waiting for you</h2>\
        {% if view.consents.is_empty() && view.calls.is_empty() %}\
        <p class=empty id=nothing-waits>Nothing waits for your approval.</p>{% endif %}\
        {% for c in view.consents %}<div class=consent id=\"consent-{{ c.id|text }}\">\
        <p><strong>A client asks for access</strong> to tunnel <code>{{ c.tunnel|text }}</code> \
        (waiting {{ c.waiting|text }}).</p>\
        <p>Client: <code class=client>{{ c.client|text }}</code><br>\
        It will be sent to: <code class=redirect>{{ c.redirect_host|text }}</code><br>\
        Code on its consent page: <code class=code>{{ c.code|text }}</code></p>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=id value=\"{{ c.id|text }}\"><button name=op value=consent-approve>Approve</button></form>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=id value=\"{{ c.id|text }}\"><button name=op value=consent-deny>Deny</button></form>\
        </div>{% endfor %}\
        {% for c in view.calls %}<div class=call id=\"call-{{ c.code|text }}\">\
        <p><strong>A tool call waits for your approval</strong> on tunnel <code>{{ c.tunnel|text }}</code> \
        (waiting {{ c.waiting|text }}, declined in {{ c.left|text }} without an answer).</p>\
        <p>Tool: <code class=tool>{{ c.tool|text }}</code><br>Client: <code class=client>{{ c.client|text }}</code></p>\
        <p>Arguments{% if c.cut %} (cut: too long to show whole){% endif %}:</p><pre class=args>{% for l in c.args %}{{ l|text }}
{% endfor %}</pre>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=code value=\"{{ c.code|text }}\"><button name=op value=allow-once>Allow once</button></form>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=code value=\"{{ c.code|text }}\"><button name=op value=allow-always>Allow this tool for this client until the bridge restarts</button></form>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=code value=\"{{ c.code|text }}\"><button name=op value=deny>Deny</button></form>\
        </div>{% endfor %}\
        {% if let Some(n) = notice %}<p id=notice>{{ n|text }}</p>{% endif %}\
        <h2>Tunnels</h2>\
        <table id=tunnels><tr><th>Tunnel</th><th>State</th><th>Public URL</th><th>Client auth</th>\
        <th>Sessions</th><th>In flight</th><th>Answered</th></tr>\
        {% for t in view.tunnels %}<tr class=tunnel><td>{{ t.name|text }}</td>\
        <td class={% if t.online %}online{% else %}offline{% endif %}>{{ t.state }}{% if !t.since.is_empty() %} for {{ t.since|text }}{% endif %}</td>\
        <td><code>{{ t.url|text }}</code></td><td>{{ t.auth }}</td><td>{{ t.sessions }}</td>\
        <td>{{ t.in_flight }}</td><td>{{ t.answered }}</td></tr>{% endfor %}</table>\
        {% for t in view.tunnels %}<section class=detail id=\"tunnel-{{ t.name|text }}\">\
        <h2>Tunnel {{ t.name|text }}</h2>\
        {% if t.paused %}<p class=offline id=\"paused-{{ t.name|text }}\">Paused: tool calls get \"paused by the owner\"; listing tools goes on.</p>{% endif %}\
        <p class=actions>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=tunnel value=\"{{ t.name|text }}\"><button name=op value=restart>Restart the server</button></form>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=tunnel value=\"{{ t.name|text }}\">\
        {% if t.paused %}<button name=op value=resume>Resume tool calls</button>{% else %}<button name=op value=pause>Pause tool calls</button>{% endif %}</form>\
        {% if !t.audit_href.is_empty() %}<a href=\"{{ t.audit_href|text }}\">Audit log</a>{% endif %}</p>\
        <h3>Tools</h3>{% if t.tools.is_empty() %}<p class=empty>No tool call yet.</p>{% else %}\
        <table class=tools><tr><th>Tool</th><th>Calls</th><th>Errors</th><th>p50</th><th>p95</th><th>Latency (p50, p95)</th></tr>\
        {% for l in t.tools %}<tr class=tool><td><code>{{ l.tool|text }}</code></td><td>{{ l.calls }}</td><td>{{ l.errors }}</td>\
        <td>{{ l.p50 }}</td><td>{{ l.p95 }}</td><td><meter min=0 max=1000 value={{ l.p50_bar }} title=p50>{{ l.p50 }}</meter> \
        <meter min=0 max=1000 value={{ l.p95_bar }} title=p95>{{ l.p95 }}</meter></td></tr>{% endfor %}</table>{% endif %}\
        <h3>Last calls</h3>{% if t.calls.is_empty() %}<p class=empty>No tool call yet.</p>{% else %}\
        <table class=calls><tr><th>When</th><th>Tool</th><th>Client</th><th>Outcome</th><th>Duration</th></tr>\
        {% for c in t.calls %}<tr class=call-row><td>{{ c.ago|text }} ago</td>\
        <td>{% if c.tool_href.is_empty() %}<code>{{ c.tool|text }}</code>{% else %}<a href=\"{{ c.tool_href|text }}\"><code>{{ c.tool|text }}</code></a>{% endif %}</td>\
        <td>{% if c.client_href.is_empty() %}{{ c.client|text }}{% else %}<a href=\"{{ c.client_href|text }}\">{{ c.client|text }}</a>{% endif %}</td><td class={% if c.ok %}online{% else %}offline{% endif %}>{{ c.outcome|text }}</td>\
        <td>{{ c.duration }}</td></tr>{% endfor %}</table>{% endif %}\
        <h3>Clients</h3>{% if t.clients.is_empty() %}<p class=empty>No session open.</p>{% else %}\
        <table class=clients><tr><th>Client</th><th>Sessions</th><th>In flight</th><th>Protocol</th><th></th></tr>\
        {% for c in t.clients %}<tr class=client-row><td>{{ c.principal|text }}\
        {% if !c.names.is_empty() %} <span class=empty>({{ c.names|text }})</span>{% endif %}</td><td>{{ c.sessions }}</td>\
        <td>{{ c.in_flight }}</td><td>{{ c.versions|text }}</td><td>\
        <form method=post action=\"/act\" class=inline><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <input type=hidden name=tunnel value=\"{{ t.name|text }}\"><input type=hidden name=principal value=\"{{ c.principal|text }}\">\
        <button name=op value=disconnect>Disconnect</button></form></td></tr>{% endfor %}</table>{% endif %}\
        <h3>Server</h3><p>{{ t.children }} running, restarted {{ t.restarts }} times.\
        {% if !t.pids.is_empty() %} Process ids: <code class=pids>{{ t.pids|text }}</code>.{% endif %}</p>\
        {% if !t.stderr.is_empty() %}<p>Its last lines on stderr (they stay on this computer):</p>\
        <pre class=stderr>{% for l in t.stderr %}{{ l|text }}\n{% endfor %}</pre>{% endif %}\
        </section>{% endfor %}\
        <p class=empty>This page reloads every 5 seconds.</p>"
)]
pub struct Dashboard<'a> {
    view: &'a View,
    csrf: Text<&'a str>,
    notice: Option<&'a str>,
}

/// The dashboard's answer.
pub fn dashboard(view: &View, csrf: &str, notice: Option<&str>) -> Response {
    let body = Dashboard {
        view,
        csrf: Text(csrf),
        notice,
    };
    answer(
        StatusCode::OK,
        &Document {
            title: Text("Bridge dashboard"),
            style: STYLE,
            viewport: true,
            refresh: Some(Refresh {
                seconds: 5,
                to: Text("/".to_owned()),
            }),
            body,
        },
    )
}

/// A tunnel's audit log, filtered.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Audit log of tunnel {{ tunnel|text }}</h1>\
        <p><a href=\"/\">Back to the dashboard</a>{% if let Some(t) = tool %} · tool <code>{{ t|text }}</code>{% endif %}\
        {% if let Some(c) = client %} · client <code>{{ c|text }}</code>{% endif %}</p>\
        {% if rows.is_empty() %}<p class=empty id=no-entries>No entry.</p>{% else %}\
        <table id=audit><tr><th>Time (UTC)</th><th>Tool</th><th>Client</th><th>Outcome</th><th>Duration</th>\
        <th>Protocol</th><th>Arguments (SHA-256)</th></tr>\
        {% for r in rows %}<tr class=entry><td>{{ r.time|text }}</td><td><code>{{ r.tool|text }}</code></td>\
        <td>{{ r.principal|text }}</td><td>{{ r.outcome|text }}</td><td>{{ r.duration_ms }} ms</td>\
        <td>{{ r.era|text }}</td><td><code>{{ r.args_sha256|text }}</code></td></tr>{% endfor %}</table>{% endif %}"
)]
pub struct Audit<'a> {
    tunnel: &'a str,
    tool: Option<&'a str>,
    client: Option<&'a str>,
    rows: &'a [super::audit_view::AuditRow],
}

/// The audit log page.
pub fn audit(
    tunnel: &str,
    tool: Option<&str>,
    client: Option<&str>,
    rows: &[super::audit_view::AuditRow],
) -> Response {
    answer(
        StatusCode::OK,
        &Document {
            title: Text("Bridge dashboard: audit log"),
            style: STYLE,
            viewport: true,
            refresh: None,
            body: Audit {
                tunnel,
                tool,
                client,
                rows,
            },
        },
    )
}

/// A page that says why the request was refused.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Bridge dashboard</h1><p id=refused>{{ text|text }}</p>"
)]
pub struct Refused<'a> {
    text: &'a str,
}

/// The answer refusing a request, with its reason.
pub fn refused(status: StatusCode, text: &str) -> Response {
    answer(
        status,
        &Document {
            title: Text("Bridge dashboard"),
            style: STYLE,
            viewport: true,
            refresh: None,
            body: Refused { text },
        },
    )
}
