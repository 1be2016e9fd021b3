//! The owner's status page, `GET /status`: server-rendered HTML with plain forms, no
//! JavaScript and nothing loaded from anywhere (a strict CSP whose only allowance is the
//! page's own style sheet, by hash), never framed, never cached.
//!
//! Sign-in takes the relay operator password (Argon2, the hash of
//! `--operator-password-file`) or a bridge token; failures are rate-limited per address
//! together with the consent page's operator password, each attempt reserved before it is
//! checked ([`crate::util::gate`]). A sign-in opens a server-side
//! session named by an HttpOnly, SameSite=Strict cookie (`__Host-relay_status`, Secure,
//! when the public URL is https) that ends after [`IDLE`] without use or [`ABSOLUTE`] in
//! all; every form carries the session's CSRF token, and the sign-in form a token bound to
//! a cookie of its own.
//!
//! The page shows, per tunnel: its connection (connected, or offline since when), how its
//! clients authenticate, the bridge's version and gauges (sessions, requests in flight,
//! server processes, from its Status frames); the other connections that claimed it with
//! its bridge token (refused, or replacing a bridge that did not answer: when, from which
//! address); the OAuth clients holding tokens for it
//! (name, redirect host, first and last use) with a Revoke button; its recent calls
//! ([`crate::observe::recent`]); and the newest events of its OAuth trace ([`crate::oauth::trace`]). A
//! bridge token sees the tunnels it owns; the operator sees every tunnel, and the
//! relay-wide OAuth events.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use protocol::ClientAuth;

use crate::config::RelayConfig;
use crate::config::sha256;
use crate::oauth::state::OAuth;
use crate::oauth::trace::Recorder;
use crate::oauth::trace::{TraceEvent, format_time};
use crate::observe::recent::RecentCall;
use crate::observe::recent::RecentCalls;
use crate::store::Store;
use crate::store::{AuthorizedClient, new_secret};
use crate::tunnels::history::BridgeHistory;
use crate::tunnels::history::Takeover;
use crate::tunnels::registry::Registry;
use crate::util::html::escape_html;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once (the least recently used is dropped for a new one).
const MAX_SESSIONS: usize = 1_000;
/// How long the sign-in form's cookie lives.
const LOGIN_TTL: Duration = Duration::from_secs(30 * 60);
/// Trace events shown per tunnel.
const TRACE_SHOWN: usize = 50;
/// Largest form accepted.
const MAX_FORM: usize = 8 * 1024;

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The relay operator: every tunnel.
    Operator,
    /// The holder of a bridge token: the tunnels it owns.
    Owner {
        /// The token's store id.
        token_id: i64,
    },
}

struct Session {
    who: Who,
    csrf: String,
    created: Instant,
    seen: Instant,
}

impl Session {
    fn live(&self) -> bool {
        self.created.elapsed() < ABSOLUTE && self.seen.elapsed() < IDLE
    }
}

/// What the owner's pages need of the relay.
pub struct OwnerState {
    /// The relay's settings.
    pub config: Arc<RelayConfig>,
    /// Tunnel names and their connections.
    pub registry: Arc<Registry>,
    /// Bridge tokens, names and OAuth grants.
    pub store: Arc<Store>,
    /// Pending consents and the sign-in attempt limits.
    pub oauth: Arc<OAuth>,
    /// The newest calls of each tunnel.
    pub recent: Arc<RecentCalls>,
    /// What each tunnel's bridges announced and attempted.
    pub history: Arc<BridgeHistory>,
    /// Sessions of the status page.
    pub status_page: Arc<StatusPage>,
    /// The OAuth trace (the owner revokes clients; the page shows the trace).
    pub trace: Arc<Recorder>,
}

/// Sessions of the status page.
#[derive(Default)]
pub struct StatusPage {
    /// By the SHA-256 of the cookie's value.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

impl StatusPage {
    /// Opens a session; returns the cookie value and the CSRF token.
    fn open(&self, who: Who) -> (String, String) {
        let id = new_secret("");
        let csrf = new_secret("");
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.live());
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        let now = Instant::now();
        sessions.insert(
            sha256(id.as_bytes()),
            Session {
                who,
                csrf: csrf.clone(),
                created: now,
                seen: now,
            },
        );
        (id, csrf)
    }

    /// The live session named by a cookie value (marked as used): who, and its CSRF token.
    fn get(&self, id: &str) -> Option<(Who, String)> {
        let key = sha256(id.as_bytes());
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&key) {
            Some(s) if s.live() => {
                s.seen = Instant::now();
                Some((s.who, s.csrf.clone()))
            }
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        lock(&self.sessions).remove(&sha256(id.as_bytes()));
    }
}

// ------------------------------------------------------------------------------------------
// Cookies and headers.

/// Cookie names and whether cookies are `Secure` (an https public URL).
struct Cookies {
    session: &'static str,
    login: &'static str,
    secure: bool,
}

fn cookies(state: &OwnerState) -> Cookies {
    if state.config.public_url.scheme() == "https" {
        Cookies {
            session: "__Host-relay_status",
            login: "__Host-relay_login",
            secure: true,
        }
    } else {
        Cookies {
            session: "relay_status",
            login: "relay_login",
            secure: false,
        }
    }
}

impl Cookies {
    fn set(&self, name: &str, value: &str, max_age: Duration) -> String {
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            max_age.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name`, if it looks like one of ours.
fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| {
            (20..=100).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;\
padding:0 1em;color:#222}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}\
th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;vertical-align:top}\
th{font-weight:600;background:#f6f6f6}code,.id{font-family:ui-monospace,monospace;font-size:.9em}\
.id{color:#666}.ok{color:#1a6b1a}.refused,.error,.warn{color:#8a1c00}.pending{color:#875d00}\
.notice{background:#eef6ee;padding:.5em}.warn{background:#fbeeea;padding:.5em}\
form.inline{display:inline;margin:0}button{font-size:.95em;padding:.2em .8em}\
header{display:flex;justify-content:space-between;align-items:center}td.t{white-space:nowrap}";

/// The Content-Security-Policy of every page: nothing but the page and its own style.
fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha256(STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// An HTML answer with the page's protective headers.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(h);
    r
}

fn harden(h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// `303 See Other` to `location` (after a form), with cookies to set.
fn see_other(location: &str, set_cookies: &[String]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    harden(h);
    r
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape_html(title)
    )
}

// ------------------------------------------------------------------------------------------
// The sign-in page.

/// The sign-in page, with a notice (`warn`: shown as a problem).
fn login_page(csrf: &str, notice: Option<(&str, bool)>) -> String {
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

/// Answers the sign-in page, setting its cookie unless the browser has one.
fn login_response(
    state: &OwnerState,
    headers: &HeaderMap,
    status: StatusCode,
    notice: Option<(&str, bool)>,
) -> Response {
    let names = cookies(state);
    let (csrf, fresh) = match cookie_of(headers, names.login) {
        Some(v) => (v, false),
        None => (new_secret(""), true),
    };
    let mut r = html(status, login_page(&csrf, notice));
    if fresh && let Ok(v) = HeaderValue::from_str(&names.set(names.login, &csrf, LOGIN_TTL)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ------------------------------------------------------------------------------------------
// What the dashboard shows.

/// One tunnel as shown.
#[derive(Debug, Clone, Default)]
pub struct TunnelView {
    /// The name.
    pub name: String,
    /// The label of the owning bridge token (shown to the operator).
    pub owner_label: Option<String>,
    /// Whether the owning token was revoked.
    pub owner_revoked: bool,
    /// Connection state, in words.
    pub connection: String,
    /// Whether a bridge is connected.
    pub connected: bool,
    /// How clients authenticate, in words.
    pub auth: String,
    /// The bridge's version, if it connected since the relay started.
    pub bridge_version: Option<String>,
    /// Sessions, requests in flight, server processes, restarts (from Status frames) and
    /// exchanges open at the relay.
    pub gauges: Option<[u64; 5]>,
    /// Clients holding tokens.
    pub clients: Vec<AuthorizedClient>,
    /// Recent calls, newest first.
    pub calls: Vec<RecentCall>,
    /// Trace events, newest first.
    pub trace: Vec<TraceEvent>,
    /// Takeover attempts and replacements, newest first.
    pub takeovers: Vec<Takeover>,
}

/// The whole dashboard as shown.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Who is signed in, in words.
    pub who: String,
    /// Whether it is the operator.
    pub operator: bool,
    /// The tunnels.
    pub tunnels: Vec<TunnelView>,
    /// Relay-wide trace events (operator only), newest first.
    pub relay_wide: Vec<TraceEvent>,
    /// Names of clients by id (for recent calls).
    pub client_names: HashMap<String, String>,
}

fn auth_words(auth: &ClientAuth) -> &'static str {
    match auth {
        ClientAuth::OAuth => "OAuth",
        ClientAuth::Bearer { .. } => "static bearer token",
        ClientAuth::None => "none (public)",
    }
}

/// Gathers what `who` may see.
fn collect(state: &OwnerState, who: Who) -> View {
    crate::oauth::trace::sweep_expired_consents(&state.trace);
    let tokens = state.store.list_tokens().unwrap_or_default();
    let mut view = View {
        operator: who == Who::Operator,
        ..View::default()
    };
    view.who = match who {
        Who::Operator => "the relay operator".into(),
        Who::Owner { token_id } => {
            let label = tokens
                .iter()
                .find(|t| t.id == token_id)
                .map(|t| t.label.as_str())
                .unwrap_or("?");
            format!("the owner of bridge token \u{201c}{label}\u{201d}")
        }
    };
    let versions = state.history.versions();
    let takeovers = state.history.takeovers();
    for t in &tokens {
        if let Who::Owner { token_id } = who
            && t.id != token_id
        {
            continue;
        }
        for name in &t.names {
            let mut tv = TunnelView {
                name: name.clone(),
                owner_label: view.operator.then(|| t.label.clone()),
                owner_revoked: t.revoked.is_some(),
                ..TunnelView::default()
            };
            match state.registry.status(name) {
                Some((auth, s)) => {
                    tv.connected = s.connected;
                    tv.connection = match (s.connected, s.connected_since, s.offline_since) {
                        (true, Some(t), _) => {
                            format!("connected since {}", format_time(t as i64 * 1000))
                        }
                        (true, None, _) => "connected".into(),
                        (false, _, Some(t)) => {
                            format!("offline since {}", format_time(t as i64 * 1000))
                        }
                        (false, _, None) => "offline".into(),
                    };
                    tv.auth = auth_words(&auth).into();
                    let b = s.bridge;
                    tv.gauges = Some([
                        b.sessions.into(),
                        b.pending.into(),
                        b.children.into(),
                        b.restarts.into(),
                        s.exchanges as u64,
                    ]);
                    tv.bridge_version = versions.get(name).cloned();
                }
                None => {
                    tv.connection = "not connected since the relay started".into();
                    tv.auth = "—".into();
                }
            }
            tv.takeovers = takeovers
                .get(name)
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default();
            tv.clients = state.store.authorized_clients(name).unwrap_or_default();
            tv.calls = state.recent.list(name, t.id);
            tv.trace = state
                .store
                .trace_for_tunnel(name, TRACE_SHOWN, crate::oauth::trace::LINK_WINDOW_MS)
                .unwrap_or_default();
            for c in &tv.calls {
                if let Some(id) = crate::oauth::access::client_of(&c.principal)
                    && !view.client_names.contains_key(id)
                    && let Ok(Some(client)) = state.store.client(id)
                    && let Some(n) = client.name
                {
                    view.client_names.insert(id.to_owned(), n);
                }
            }
            view.tunnels.push(tv);
        }
    }
    view.tunnels.sort_by(|a, b| a.name.cmp(&b.name));
    if view.operator {
        view.relay_wide = state.store.trace_all(TRACE_SHOWN, true).unwrap_or_default();
    }
    view
}

// ------------------------------------------------------------------------------------------
// Rendering.

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
fn name_attr(name: &str) -> String {
    escape_html(name)
}

// ------------------------------------------------------------------------------------------
// Handlers.

/// The notice a redirect asks for (fixed texts only: nothing is reflected).
fn notice_of(query: Option<&str>) -> Option<&'static str> {
    let done = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned());
    match done.as_deref() {
        Some("revoked") => Some(
            "Access revoked: that client's tokens for the tunnel no longer work; it must be \
             authorized again.",
        ),
        Some("none") => Some("That client held no live token for the tunnel."),
        Some("out") => Some("Signed out."),
        _ => None,
    }
}

/// The signed-in session of a request, if any: its cookie value, who, and its CSRF token.
fn session(state: &OwnerState, headers: &HeaderMap) -> Option<(String, Who, String)> {
    let id = cookie_of(headers, cookies(state).session)?;
    let (who, csrf) = state.status_page.get(&id)?;
    if let Who::Owner { token_id } = who
        && !matches!(state.store.token_live(token_id), Ok(true))
    {
        state.status_page.close(&id);
        return None;
    }
    Some((id, who, csrf))
}

/// `GET /status`: the dashboard, or the sign-in page.
pub async fn show(
    State(state): State<Arc<OwnerState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = crate::config::origin::check_origin(&state.config, &headers) {
        return r;
    }
    let notice = notice_of(query.as_deref());
    match session(&state, &headers) {
        Some((_, who, csrf)) => {
            let view = collect(&state, who);
            html(StatusCode::OK, render(&view, &csrf, notice))
        }
        None => login_response(
            &state,
            &headers,
            StatusCode::OK,
            notice
                .filter(|n| n.starts_with("Signed out"))
                .map(|n| (n, false)),
        ),
    }
}

/// `POST /status`: sign in, log out, or revoke a client (the form's `op`; a field named
/// `action` would hide the form's own `action` in the DOM).
pub async fn act(
    State(state): State<Arc<OwnerState>>,
    peer: crate::net::client_addr::ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = crate::config::origin::check_origin(&state.config, &headers) {
        return r;
    }
    let mut form: HashMap<String, String> = HashMap::new();
    let duplicate = body.len() > MAX_FORM
        || url::form_urlencoded::parse(&body)
            .any(|(k, v)| form.insert(k.into_owned(), v.into_owned()).is_some());
    if duplicate {
        return login_response(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some(("Invalid form.", true)),
        );
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("op") == "login" {
        return login(&state, peer, &headers, field("csrf"), field("secret")).await;
    }
    let Some((id, who, csrf)) = session(&state, &headers) else {
        return login_response(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some(("Your session has ended; sign in again.", true)),
        );
    };
    if !same_secret(field("csrf"), &csrf) {
        return html(
            StatusCode::FORBIDDEN,
            document(
                "Relay status",
                "<h1>Relay status</h1><p class=warn id=notice>Invalid form submission (CSRF \
                 check failed). <a href=\"/status\">Back to the status page</a></p>",
            ),
        );
    }
    match field("op") {
        "logout" => {
            state.status_page.close(&id);
            let names = cookies(&state);
            see_other(
                "/status?done=out",
                &[names.set(names.session, "", Duration::ZERO)],
            )
        }
        "revoke" => revoke(&state, peer, who, field("tunnel"), field("client_id")),
        _ => html(
            StatusCode::BAD_REQUEST,
            document(
                "Relay status",
                "<h1>Relay status</h1><p class=warn id=notice>Unknown action.</p>",
            ),
        ),
    }
}

async fn login(
    state: &OwnerState,
    peer: crate::net::client_addr::ClientAddr,
    headers: &HeaderMap,
    form_csrf: &str,
    secret: &str,
) -> Response {
    let names = cookies(state);
    let bound = cookie_of(headers, names.login).is_some_and(|c| same_secret(&c, form_csrf));
    if !bound {
        return login_response(
            state,
            headers,
            StatusCode::FORBIDDEN,
            Some(("The sign-in form expired; try again.", true)),
        );
    }
    let ip = peer.ip();
    let refused = |why: crate::util::gate::Refused| {
        use crate::util::gate::Refused;
        let (status, text) = match why {
            Refused::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins from this address; try again later.",
            ),
            Refused::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                "Another sign-in from this address is being checked; try again.",
            ),
            Refused::Saturated => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The relay is busy checking passwords; try again in a moment.",
            ),
        };
        login_response(state, headers, status, Some((text, true)))
    };
    // The attempt is reserved before the secret is checked.
    let attempt = match state.oauth.passwords.begin(ip) {
        Ok(a) => a,
        Err(why) => return refused(why),
    };
    let mut who = None;
    if !secret.is_empty() && secret.len() <= 512 {
        attempt.evaluate();
        if let Ok(Some(token_id)) = state.store.token_id(secret) {
            who = Some(Who::Owner { token_id });
        } else if let Some(hash) = state.oauth.config.operator_password_hash.clone() {
            match attempt.verify_password(hash, secret.to_owned()).await {
                Ok(true) => who = Some(Who::Operator),
                Ok(false) => {}
                Err(why) => return refused(why),
            }
        }
    }
    let Some(who) = who else {
        drop(attempt);
        tracing::warn!(%ip, "failed sign-in on the status page");
        return login_response(
            state,
            headers,
            StatusCode::FORBIDDEN,
            Some(("Wrong password or bridge token.", true)),
        );
    };
    attempt.succeeded();
    tracing::info!(ip = %peer.ip(), operator = who == Who::Operator, "signed in on the status page");
    let (id, _) = state.status_page.open(who);
    see_other(
        "/status",
        &[
            names.set(names.session, &id, ABSOLUTE),
            names.set(names.login, "", Duration::ZERO),
        ],
    )
}

fn revoke(
    state: &OwnerState,
    peer: crate::net::client_addr::ClientAddr,
    who: Who,
    tunnel: &str,
    client_id: &str,
) -> Response {
    let owner = state.store.name_owner(tunnel).ok().flatten();
    let allowed = match who {
        Who::Operator => owner.is_some(),
        Who::Owner { token_id } => owner == Some(token_id),
    };
    if !allowed || client_id.is_empty() {
        return html(
            StatusCode::FORBIDDEN,
            document(
                "Relay status",
                "<h1>Relay status</h1><p class=warn id=notice>That tunnel is not yours. \
                 <a href=\"/status\">Back to the status page</a></p>",
            ),
        );
    }
    let revoked = match state.store.revoke_client(tunnel, client_id) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("revoking a client: {e}");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                document(
                    "Relay status",
                    "<h1>Relay status</h1><p class=warn id=notice>The relay cannot revoke \
                     right now; try again.</p>",
                ),
            );
        }
    };
    // Validated tokens are cached for a few seconds: forget them so this takes effect now.
    state.oauth.tokens.clear();
    let by = match who {
        Who::Operator => "the relay operator",
        Who::Owner { .. } => "the tunnel's owner",
    };
    let client_name = state
        .store
        .client(client_id)
        .ok()
        .flatten()
        .and_then(|c| c.name);
    crate::oauth::trace::record(
        &state.trace,
        TraceEvent {
            tunnel: Some(tunnel.to_owned()),
            step: crate::oauth::trace::Step::Revoke.as_str().into(),
            outcome: crate::oauth::trace::Outcome::Ok.as_str().into(),
            reason: format!("access revoked on the status page by {by} ({revoked} tokens)"),
            client_id: Some(client_id.to_owned()),
            client_name,
            ip: Some(peer.ip().to_string()),
            ..TraceEvent::default()
        },
    );
    tracing::info!(
        tunnel,
        client = client_id,
        revoked,
        "client revoked on the status page"
    );
    let done = if revoked > 0 { "revoked" } else { "none" };
    see_other(&format!("/status?done={done}#t-{}", name_attr(tunnel)), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn pages_are_hardened() {
        let r = html(StatusCode::OK, login_page("abc", Some(("<x>", true))));
        let h = r.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        // The style sheet's hash is the one the CSP allows.
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha256(STYLE.as_bytes()));
        assert!(csp.contains(&format!("'sha256-{hash}'")));
        let page = login_page("abc", Some(("<x>", true)));
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.contains("&lt;x&gt;") && !page.contains("<x>"));
    }

    #[test]
    fn sessions_expire_and_close() {
        let p = StatusPage::default();
        let (id, csrf) = p.open(Who::Owner { token_id: 3 });
        assert_eq!(p.get(&id), Some((Who::Owner { token_id: 3 }, csrf)));
        assert_eq!(p.get("nope"), None);
        // (The monotonic clock may not reach that far back right after boot.)
        if let Some(idle) = Instant::now().checked_sub(IDLE + Duration::from_secs(1)) {
            lock(&p.sessions).values_mut().for_each(|s| s.seen = idle);
            assert_eq!(p.get(&id), None, "idle too long");
        }
        let (id, _) = p.open(Who::Operator);
        p.close(&id);
        assert_eq!(p.get(&id), None);
        for _ in 0..(MAX_SESSIONS + 5) {
            p.open(Who::Operator);
        }
        assert_eq!(lock(&p.sessions).len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_and_notices() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; relay_status=abcdefghijklmnopqrstuvwxyz0123; x=y"),
        );
        assert_eq!(
            cookie_of(&h, "relay_status").as_deref(),
            Some("abcdefghijklmnopqrstuvwxyz0123")
        );
        assert_eq!(cookie_of(&h, "a"), None, "too short to be ours");
        let c = Cookies {
            session: "__Host-relay_status",
            login: "__Host-relay_login",
            secure: true,
        };
        let set = c.set(c.session, "v", ABSOLUTE);
        assert!(set.starts_with("__Host-relay_status=v; Path=/; HttpOnly; SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
        assert_eq!(
            notice_of(Some("done=revoked")).map(|n| &n[..14]),
            Some("Access revoked")
        );
        assert_eq!(
            notice_of(Some("done=%3Cscript%3E")),
            None,
            "nothing is reflected"
        );
    }
}
