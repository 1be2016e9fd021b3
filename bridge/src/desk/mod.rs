//! The owner's desk: a dashboard on loopback for what the owner decides and watches while
//! the bridge runs, also as a service without a terminal.
//!
//! - `guard.rs`: who may use it (loopback, the printed secret exchanged for a cookie, `Host`
//!   and `Origin` checks, CSRF tokens);
//! - `view.rs`: what it shows, read from the bridge at each request (the tunnels' gauges,
//!   the consents waiting, the calls held by the confirmation hub);
//! - `page.rs`: the HTML (no script, strict CSP; it reloads itself);
//! - `address.rs`: where `bridge open` finds it;
//! - this file: the shared state, the routes and the server.
//!
//! One bridge process serves one dashboard for all its tunnels (several `bridge run`s on
//! one machine each have their own, on their own port: a dashboard acts on the calls and
//! consents its own process holds, and nothing else).

mod address;
mod audit_view;
mod guard;
mod notify;
mod page;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use protocol::ConsentRequest;
use protocol::sync::LockExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::status_line::Gauges;
use guard::{COOKIE, Keys};
use view::View;

pub use address::{remember_address, running_address};

/// A tunnel as the dashboard shows it.
pub struct DeskTunnel {
    /// Its name.
    pub name: String,
    /// How its clients authenticate (`OAuth`, `bearer token`, `none`).
    pub auth: &'static str,
    /// Its driver's gauges (and the core's view, as of the last tick).
    pub gauges: Arc<Gauges>,
    /// Its tool calls' figures.
    pub calls: Option<Arc<crate::calls::CallStats>>,
    /// Where the owner's commands to it go.
    pub commands: mpsc::Sender<crate::driver::Command>,
    /// Its audit log, if it writes one.
    pub audit_log: Option<PathBuf>,
}

/// An OAuth consent waiting for the owner.
#[derive(Debug, Clone)]
pub struct WaitingConsent {
    /// The tunnel it is for.
    pub tunnel: String,
    /// What the relay asked.
    pub request: ConsentRequest,
    /// Since when it waits.
    pub since: SystemTime,
}

/// What the dashboard reads and acts on.
pub struct DeskState {
    keys: Keys,
    tunnels: Vec<DeskTunnel>,
    consents: Mutex<Vec<WaitingConsent>>,
    /// The owner's consent decisions (consent id, approve), for whatever forwards them.
    decisions: mpsc::Sender<(String, bool)>,
    /// Announce what starts waiting with a desktop notification.
    notify: bool,
}

impl DeskState {
    /// The consents waiting now.
    pub fn consents(&self) -> Vec<WaitingConsent> {
        self.consents.locked().clone()
    }

    /// A consent now waits for the owner.
    pub fn add_consent(&self, c: WaitingConsent) {
        if self.notify {
            notify::announce(
                "A client asks for access",
                &format!(
                    "{} asks for tunnel {}: approve or deny it on the bridge's dashboard",
                    c.request.client, c.tunnel
                ),
            );
        }
        let mut all = self.consents.locked();
        all.retain(|x| x.request.id != c.request.id);
        all.push(c);
    }

    /// A consent no longer waits (decided, or expired).
    pub fn remove_consent(&self, id: &str) {
        self.consents.locked().retain(|c| c.request.id != id);
    }
}

/// A running dashboard.
pub struct Desk {
    /// Its state, shared with the bridge.
    pub state: Arc<DeskState>,
    /// The address to open (with the secret).
    pub url: String,
}

/// Binds the dashboard on `listen` (a loopback address) before the runtime starts, so a
/// taken port is an error at once.
pub fn bind(listen: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the dashboard listens on loopback only, not on {listen}"
    );
    let l = std::net::TcpListener::bind(listen)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves the dashboard on `listener` (from [`bind`]) for `tunnels`; consent decisions go
/// to `decisions`. Must run inside the runtime.
pub fn start(
    listener: std::net::TcpListener,
    tunnels: Vec<DeskTunnel>,
    decisions: mpsc::Sender<(String, bool)>,
    notify: bool,
) -> anyhow::Result<Desk> {
    let addr = listener.local_addr()?;
    let keys = Keys::new(guard::secret(), addr.port());
    let url = format!("http://{addr}/?token={}", keys.token());
    let state = Arc::new(DeskState {
        keys,
        tunnels,
        consents: Mutex::new(Vec::new()),
        decisions,
        notify,
    });
    let router = Router::new()
        .route("/", get(show))
        .route("/act", post(act))
        .route("/audit", get(audit))
        .fallback(not_found)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            warn!("the dashboard stopped: {e}");
        }
    });
    crate::confirm::hub().open_desk();
    if notify {
        tokio::spawn(announce_held_calls());
    }
    info!(%addr, "the owner's dashboard is listening");
    Ok(Desk { state, url })
}

/// Announces each call that starts waiting for the owner.
async fn announce_held_calls() {
    let hub = crate::confirm::hub();
    let mut seen = std::collections::HashSet::new();
    loop {
        hub.next_waiting().await;
        let waiting = hub.waiting();
        for w in &waiting {
            if seen.insert(w.code.clone()) {
                notify::announce(
                    "A tool call waits for your approval",
                    &format!(
                        "{} wants to run {} (tunnel {}): allow or deny it on the bridge's dashboard",
                        w.principal, w.tool, w.tunnel
                    ),
                );
            }
        }
        seen.retain(|c| waiting.iter().any(|w| &w.code == c));
    }
}

#[derive(Deserialize)]
struct ShowQuery {
    token: Option<String>,
    done: Option<String>,
}

/// `GET /`: the dashboard; with `?token=` the secret, exchanged for a cookie.
async fn show(
    State(state): State<Arc<DeskState>>,
    headers: HeaderMap,
    query: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.ok().map(|Query(q)| q);
    if let Some(token) = query.as_ref().and_then(|q| q.token.as_deref()) {
        if !state.keys.host_ok(&headers) {
            return page::refused(
                StatusCode::MISDIRECTED_REQUEST,
                "Wrong host: open the dashboard at the address the bridge printed.",
            );
        }
        if !state.keys.is_token(token) {
            return page::refused(
                StatusCode::FORBIDDEN,
                "This is not the dashboard's address: open the address the bridge printed, or run `bridge open`.",
            );
        }
        let id = state.keys.open_session();
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let csrf = match admit(&state, &headers, false) {
        Ok(csrf) => csrf,
        Err((status, text)) => return page::refused(status, text),
    };
    let notice = match query.as_ref().and_then(|q| q.done.as_deref()) {
        Some("allowed") => Some("Allowed the call."),
        Some("allowed-always") => {
            Some("Allowed the call, and this tool for this client until the bridge restarts.")
        }
        Some("denied") => Some("Denied the call."),
        Some("approved") => Some("Approved the client."),
        Some("refused") => Some("Denied the client."),
        Some("gone") => Some("It no longer waits (answered elsewhere, timed out, or withdrawn)."),
        Some("restarted") => Some("The server is being restarted."),
        Some("paused") => {
            Some("Paused: tool calls get \"paused by the owner\"; listing tools goes on.")
        }
        Some("resumed") => Some("Resumed: tool calls run again."),
        Some("disconnected") => Some("Ended the client's sessions."),
        _ => None,
    };
    page::dashboard(&View::now(&state), &csrf, notice)
}

/// Whether a request may use the dashboard: its own `Host`, a browser session (and for a
/// form, `posted`, the dashboard's own `Origin`). The session's CSRF token, or the status
/// and text refusing the request.
fn admit(
    state: &DeskState,
    headers: &HeaderMap,
    posted: bool,
) -> Result<String, (StatusCode, &'static str)> {
    if !state.keys.host_ok(headers) {
        return Err((
            StatusCode::MISDIRECTED_REQUEST,
            "Wrong host: open the dashboard at the address the bridge printed.",
        ));
    }
    if posted && !state.keys.origin_ok(headers) {
        return Err((
            StatusCode::FORBIDDEN,
            "Refused: the form did not come from the dashboard.",
        ));
    }
    state.keys.session(headers).ok_or((
        StatusCode::UNAUTHORIZED,
        "Open the dashboard with the address the bridge printed (it carries a secret), or run `bridge open`.",
    ))
}

#[derive(Deserialize)]
struct Act {
    csrf: Option<String>,
    op: String,
    code: Option<String>,
    id: Option<String>,
    tunnel: Option<String>,
    principal: Option<String>,
}

/// `POST /act`: the owner's decision on a held call or a consent.
async fn act(
    State(state): State<Arc<DeskState>>,
    headers: HeaderMap,
    form: Result<Form<Act>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = match admit(&state, &headers, true) {
        Ok(csrf) => csrf,
        Err((status, text)) => return page::refused(status, text),
    };
    let Ok(Form(form)) = form else {
        return page::refused(StatusCode::BAD_REQUEST, "Invalid form.");
    };
    if !form
        .csrf
        .as_deref()
        .is_some_and(|c| relay::util::cookie::same_secret(c, &csrf))
    {
        return page::refused(
            StatusCode::FORBIDDEN,
            "Invalid form submission (CSRF check failed).",
        );
    }
    let hub = crate::confirm::hub();
    let done = match (form.op.as_str(), form.code.as_deref(), form.id.as_deref()) {
        ("allow-once", Some(code), _) => outcome(hub.answer(code, true, false), "allowed"),
        ("allow-always", Some(code), _) => outcome(hub.answer(code, true, true), "allowed-always"),
        ("deny", Some(code), _) => outcome(hub.answer(code, false, false), "denied"),
        (op @ ("consent-approve" | "consent-deny"), _, Some(id)) => {
            let approve = op == "consent-approve";
            let waiting = state.consents().iter().any(|c| c.request.id == id);
            state.remove_consent(id);
            let sent = waiting && state.decisions.send((id.to_owned(), approve)).await.is_ok();
            outcome(sent, if approve { "approved" } else { "refused" })
        }
        (op @ ("restart" | "pause" | "resume" | "disconnect"), _, _) => {
            let Some(t) = form
                .tunnel
                .as_deref()
                .and_then(|name| state.tunnels.iter().find(|t| t.name == name))
            else {
                return page::refused(StatusCode::BAD_REQUEST, "No such tunnel.");
            };
            use crate::core::OwnerCommand;
            let cmd = match op {
                "restart" => OwnerCommand::Restart,
                "pause" => OwnerCommand::Pause(true),
                "resume" => OwnerCommand::Pause(false),
                _ => match form.principal.clone() {
                    Some(p) => OwnerCommand::Disconnect(p),
                    None => return page::refused(StatusCode::BAD_REQUEST, "Which client?"),
                },
            };
            // Answered once the driver carried it out, so the next page shows it.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let sent = t.commands.send((cmd, done_tx)).await.is_ok() && done_rx.await.is_ok();
            outcome(
                sent,
                match op {
                    "restart" => "restarted",
                    "pause" => "paused",
                    "resume" => "resumed",
                    _ => "disconnected",
                },
            )
        }
        _ => return page::refused(StatusCode::BAD_REQUEST, "Unknown action."),
    };
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/?done={done}"))],
    )
        .into_response()
}

#[derive(Deserialize)]
struct AuditQuery {
    tunnel: String,
    tool: Option<String>,
    client: Option<String>,
}

/// `GET /audit?tunnel=…[&tool=…][&client=…]`: a tunnel's audit log, filtered.
async fn audit(
    State(state): State<Arc<DeskState>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err((status, text)) = admit(&state, &headers, false) {
        return page::refused(status, text);
    }
    let Ok(Query(q)) = query else {
        return page::refused(StatusCode::BAD_REQUEST, "Which tunnel?");
    };
    let Some(t) = state.tunnels.iter().find(|t| t.name == q.tunnel) else {
        return page::refused(StatusCode::NOT_FOUND, "No such tunnel.");
    };
    let Some(path) = &t.audit_log else {
        return page::refused(
            StatusCode::NOT_FOUND,
            "This tunnel writes no audit log (see `audit_log` in the desktop policy).",
        );
    };
    let rows = match audit_view::read(path, q.tool.as_deref(), q.client.as_deref()) {
        Ok(rows) => rows,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warn!("reading the audit log for the dashboard: {e}");
            return page::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The audit log cannot be read.",
            );
        }
    };
    page::audit(&t.name, q.tool.as_deref(), q.client.as_deref(), &rows)
}

fn outcome(found: bool, done: &'static str) -> &'static str {
    if found { done } else { "gone" }
}

async fn not_found() -> Response {
    page::refused(StatusCode::NOT_FOUND, "Not found.")
}
