//! The OAuth trace: per tunnel, the steps OAuth clients go through and how each ended,
//! kept in the relay's database so an operator (`relay logs --tunnel NAME`) or the
//! tunnel's owner (the status page) can see why a connector fails, e.g. "ChatGPT's token
//! request was refused (invalid_target): the resource https://x/a/mcp does not match this
//! tunnel".
//!
//! Steps: protected-resource and authorization-server metadata fetched (which URL, by
//! which address and user agent), dynamic registration and client metadata documents,
//! the authorization request, the consent (shown, approved by whom, denied, expired), the
//! token endpoint (issued, refresh rotated, refused with its `error` and why), revocation,
//! and 401 answers of the MCP endpoint with their reason (and a bearer tunnel's 403 for a
//! wrong token).
//!
//! [`middleware`] wraps the OAuth and MCP routes. It gives each request a task-local
//! context that the handlers annotate with one-line calls ([`for_tunnel`], [`because`],
//! [`consent_finished`]…); when the handler has answered, it records one event per OAuth
//! request (and per refused MCP request), taking the outcome, the OAuth `error` and its
//! description from the answer unless the handler gave a more precise reason. Outside the
//! middleware the annotations do nothing.
//!
//! Events never hold a token, a code, a secret or a request body. Each tunnel keeps its
//! newest [`KEEP_PER_TUNNEL`] events (older ones are pruned on insert); events that cannot
//! be tied to a tunnel (server metadata, registrations) are kept as relay-wide events,
//! shown with a tunnel's trace when they concern its clients. Recording is bounded per
//! address, and repeated metadata fetches and 401s are recorded once per
//! [`REPEAT_WINDOW`].
//!
//! Anyone can name a tunnel: in a metadata URL, an MCP request without a valid token, the
//! `resource` of an authorization or token request, a consent page they started. Such
//! events are *unverified*: a tunnel keeps only its newest [`KEEP_UNVERIFIED`] of them,
//! apart from the others, so a flood of them never evicts the history the owner's
//! clients made. An event is verified when what ties it to the tunnel is something the
//! relay issued for it (an authorization code, a refresh or access token of the tunnel)
//! or a decision of its owner or the operator.

use protocol::sync::LockExt;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::config::RelayConfig;
use crate::net::client_addr::ClientAddr;
use crate::oauth::consents::Consent;
use crate::oauth::error::OAuthError;
use crate::store::Store;
use crate::store::{Client, Grant};
use crate::tunnels::registry::Registry;
use crate::util::rate::RateLimiter;

/// Events kept per tunnel (and for the relay-wide events).
pub const KEEP_PER_TUNNEL: usize = 500;
/// Unverified events kept per tunnel, besides those (module documentation).
pub const KEEP_UNVERIFIED: usize = 100;
/// A relay-wide event without a client (a metadata fetch) is shown with a tunnel's trace
/// when the same address appears in that trace within this many milliseconds.
pub const LINK_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Identical metadata fetches and 401s (same tunnel, address and reason) are recorded at
/// most once in this window.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);
/// Events recorded per client address and [`BUDGET_WINDOW`]; more are dropped.
const BUDGET_PER_ADDRESS: usize = 120;
/// Window of that budget.
const BUDGET_WINDOW: Duration = Duration::from_secs(60);
/// A client's last use of a tunnel is written at most this often.
const USE_INTERVAL: Duration = Duration::from_secs(60);
/// Longest stored reason, in characters.
const MAX_REASON: usize = 400;

pub use protocol::time::now_ms;

pub use crate::store::trace::{Outcome, Step, TraceEvent, short_id};

pub use protocol::time::readable_ms as format_time;

/// The trace as a table for people, oldest first: time, step, outcome, then what happened
/// and where the request came from.
pub fn render_table(events: &[TraceEvent]) -> String {
    let step_w = events
        .iter()
        .map(|e| e.step.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<20}  {:<step_w$}  {:<7}  WHAT\n",
        "TIME (UTC)", "STEP", "OUTCOME"
    );
    for e in events {
        let mut line = format!(
            "{:<20}  {:<step_w$}  {:<7}  {}",
            format_time(e.time_ms),
            e.step,
            e.outcome,
            e.summary()
        );
        let from = match (&e.ip, &e.user_agent) {
            (Some(ip), Some(ua)) => format!("{ip}, {ua}"),
            (Some(ip), None) => ip.clone(),
            (None, Some(ua)) => ua.clone(),
            (None, None) => String::new(),
        };
        if !from.is_empty() {
            line.push_str(&format!(" [from {from}]"));
        }
        if e.tunnel.is_none() {
            line.push_str(" (relay-wide)");
        }
        out.push_str(&printable(&line, usize::MAX));
        out.push('\n');
    }
    out
}

use protocol::text::printable;

// ------------------------------------------------------------------------------------------
// In-memory state.

/// Who decided a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The relay operator, with the operator password on the page.
    Operator,
    /// The owner, with `bridge approve <code>` (the bridge token).
    BridgeCommand,
    /// The person at the browser, with the page's Deny button.
    Page,
}

impl DecidedBy {
    fn describe(by: Option<DecidedBy>) -> &'static str {
        match by {
            Some(DecidedBy::Operator) => "the relay operator (operator password)",
            Some(DecidedBy::BridgeCommand) => "the owner with `bridge approve`",
            Some(DecidedBy::Page) => "the person at the consent page",
            None => "the owner in the bridge's terminal",
        }
    }
}

/// A consent shown and not yet finished.
struct ConsentNote {
    tunnel: String,
    client_id: String,
    client_name: Option<String>,
    created: Instant,
    decided_by: Option<DecidedBy>,
}

/// What records the trace: where events go, what ties them to a tunnel, and what it keeps
/// in memory. Every recording function takes it.
pub struct Recorder {
    /// The relay's settings (its base URL, trusted proxies, token lifetimes).
    pub config: Arc<RelayConfig>,
    /// Where events are kept.
    pub store: Arc<Store>,
    /// The tunnels, to tell whether a named tunnel exists.
    pub registry: Arc<Registry>,
    /// Budgets, repeats and consents in progress.
    pub trace: Tracer,
}

impl Recorder {
    /// A recorder over these parts of the relay.
    pub fn new(config: Arc<RelayConfig>, store: Arc<Store>, registry: Arc<Registry>) -> Self {
        Self {
            config,
            store,
            registry,
            trace: Tracer::default(),
        }
    }
}

/// What the trace keeps in memory: recording budgets, repeats, consents in progress.
#[derive(Default)]
pub struct Tracer {
    budget: RateLimiter,
    repeats: Mutex<HashMap<u64, Instant>>,
    uses: Mutex<HashMap<(String, String), Instant>>,
    consents: Mutex<HashMap<String, ConsentNote>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

impl Tracer {
    /// Whether an event from `ip` may be recorded now (repeats of the same `key` within
    /// [`REPEAT_WINDOW`] may not when `dedupe`).
    fn admit(&self, ip: Option<&str>, key: u64, dedupe: bool) -> bool {
        if dedupe {
            let mut repeats = lock(&self.repeats);
            if repeats.len() > 10_000 {
                repeats.retain(|_, at| at.elapsed() < REPEAT_WINDOW);
            }
            match repeats.get(&key) {
                Some(at) if at.elapsed() < REPEAT_WINDOW => return false,
                _ => {
                    repeats.insert(key, Instant::now());
                }
            }
        }
        let ip = ip
            .and_then(|i| i.parse().ok())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.budget.allow(ip, BUDGET_PER_ADDRESS, BUDGET_WINDOW)
    }
}

// ------------------------------------------------------------------------------------------
// The request context.

/// What a request's handler told about it.
#[derive(Default)]
struct Context {
    step: Option<Step>,
    /// Record the request's event whatever happens (else only if annotated or refused).
    always: bool,
    /// The URL fetched, for metadata steps.
    url: Option<String>,
    /// The client's address ([`crate::net::client_addr`]).
    ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    tunnel: Option<String>,
    /// The tunnel was proven by a grant, code or token of it, or by its owner's decision
    /// (otherwise the events are unverified).
    proven: bool,
    client_id: Option<String>,
    client_name: Option<String>,
    error: Option<String>,
    reason: Option<String>,
    /// More events the request produced.
    extra: Vec<Extra>,
}

/// An extra event of a request.
struct Extra {
    step: Step,
    outcome: Outcome,
    reason: String,
    tunnel: Option<String>,
    client_id: Option<String>,
    client_name: Option<String>,
}

tokio::task_local! {
    static CONTEXT: RefCell<Context>;
}

fn with(f: impl FnOnce(&mut Context)) {
    let _ = CONTEXT.try_with(|c| f(&mut c.borrow_mut()));
}

/// Sets the step of the current request's event (e.g. a refresh at the token endpoint).
pub fn step(step: Step) {
    with(|c| c.step = Some(step));
}

/// Ties the current request's events to a tunnel, as proven by something the relay issued
/// for it (an authorization code, a refresh or access token).
pub fn for_tunnel(name: &str) {
    with(|c| {
        c.tunnel = Some(name.to_owned());
        c.proven = true;
    });
}

/// Ties the current request's events to the tunnel it names, unverified.
fn claim_tunnel(name: &str) {
    with(|c| {
        c.tunnel = Some(name.to_owned());
        c.proven = false;
    });
}

/// The tie to the current tunnel is proven (or not).
fn proven(yes: bool) {
    with(|c| c.proven = yes);
}

/// Ties the current request's events to a client.
pub fn for_client(client: &Client) {
    with(|c| {
        c.client_id = Some(client.client_id.clone());
        c.client_name = client.name.clone();
    });
}

/// Says why the current request ended as it did (replaces the answer's description).
pub fn because(reason: impl Into<String>) {
    let reason = reason.into();
    with(|c| c.reason = Some(reason));
}

/// Like [`because`], unless a reason was already given.
pub fn because_if_unset(reason: &str) {
    with(|c| {
        if c.reason.is_none() {
            c.reason = Some(reason.to_owned());
        }
    });
}

/// Adds an event to the current request's (with its tunnel and client).
pub fn push(step: Step, outcome: Outcome, reason: impl Into<String>) {
    let reason = reason.into();
    with(|c| {
        c.extra.push(Extra {
            step,
            outcome,
            reason,
            tunnel: None,
            client_id: None,
            client_name: None,
        })
    });
}

/// The tunnel named by a resource URL of this relay (`<base>/<name>/mcp`).
fn tunnel_of_resource(state: &Recorder, resource: &str) -> Option<String> {
    resource
        .strip_prefix(&format!("{}/", state.config.base()))
        .and_then(|r| r.strip_suffix("/mcp"))
        .filter(|n| protocol::valid_tunnel_name(n))
        .map(str::to_owned)
}

// ------------------------------------------------------------------------------------------
// Annotations of the OAuth handlers.

/// A client registered itself.
pub fn registered(client: &Client) {
    for_client(client);
    because(format!(
        "registered as {} (redirect to {})",
        client
            .name
            .as_deref()
            .map(|n| format!("\u{201c}{n}\u{201d}"))
            .unwrap_or_else(|| "a client without a name".into()),
        redirect_hosts(&client.redirect_uris)
    ));
}

/// The hosts of redirect URIs, for display.
fn redirect_hosts(uris: &[String]) -> String {
    let mut hosts: Vec<String> = uris.iter().map(|u| crate::util::html::host_of(u)).collect();
    hosts.dedup();
    hosts.join(", ")
}

/// A client metadata document was fetched and accepted.
pub fn client_document_fetched(client: &Client) {
    for_client(client);
    push(
        Step::ClientDocument,
        Outcome::Ok,
        format!(
            "fetched the client metadata document {} (redirect to {})",
            client.client_id,
            redirect_hosts(&client.redirect_uris)
        ),
    );
}

/// The authorization endpoint could not load the client (`error` is what the page says).
pub fn client_lookup_failed(client_id: &str, error: &str) {
    with(|c| {
        c.client_id = Some(client_id.to_owned());
        if client_id.starts_with("https://") {
            c.step = Some(Step::ClientDocument);
        }
        c.reason = Some(error.to_owned());
    });
}

/// The authorization endpoint showed the consent page.
pub async fn consent_shown(state: &Recorder, consent: &Consent, client: &Client) {
    // Anyone may start an authorization for any tunnel: unverified.
    claim_tunnel(&consent.tunnel);
    for_client(client);
    let host = crate::util::html::host_of(&consent.redirect_uri);
    because(format!("valid request; the code will go to {host}"));
    push(
        Step::Consent,
        Outcome::Pending,
        format!("consent page shown, waiting for the owner (the code will go to {host})"),
    );
    let expired = {
        let mut notes = lock(&state.trace.consents);
        let expired = sweep_consents(&mut notes);
        if notes.len() < 10_000 {
            notes.insert(
                consent.id.clone(),
                ConsentNote {
                    tunnel: consent.tunnel.clone(),
                    client_id: consent.client_id.clone(),
                    client_name: client.name.clone(),
                    created: Instant::now(),
                    decided_by: None,
                },
            );
        }
        expired
    };
    for e in expired {
        store_event(state, e, None).await;
    }
}

/// Forgets the consents that expired unfinished; returns their events (of their tunnels)
/// to record once the notes are unlocked.
fn sweep_consents(notes: &mut HashMap<String, ConsentNote>) -> Vec<TraceEvent> {
    let ttl = crate::oauth::limits::CONSENT_TTL;
    let expired: Vec<String> = notes
        .iter()
        .filter(|(_, n)| n.created.elapsed() >= ttl)
        .map(|(id, _)| id.clone())
        .collect();
    let mut events = Vec::new();
    for id in expired {
        if let Some(n) = notes.remove(&id) {
            events.push(TraceEvent {
                time_ms: now_ms(),
                tunnel: Some(n.tunnel),
                step: Step::Consent.as_str().into(),
                outcome: Outcome::Refused.as_str().into(),
                reason: expired_reason(n.decided_by),
                client_id: Some(n.client_id),
                client_name: n.client_name,
                // Nobody the relay knows decided it.
                unverified: !matches!(
                    n.decided_by,
                    Some(DecidedBy::Operator | DecidedBy::BridgeCommand)
                ),
                ..TraceEvent::default()
            });
        }
    }
    events
}

fn expired_reason(decided_by: Option<DecidedBy>) -> String {
    match decided_by {
        None => format!(
            "the consent expired: nobody approved it within {} minutes",
            crate::oauth::limits::CONSENT_TTL.as_secs() / 60
        ),
        Some(by) => format!(
            "the consent expired: it was decided by {}, but the browser did not come back to \
             the consent page in time",
            DecidedBy::describe(Some(by))
        ),
    }
}

/// Records consents that expired unfinished (the status page calls it).
pub async fn sweep_expired_consents(state: &Recorder) {
    let expired = sweep_consents(&mut lock(&state.trace.consents));
    for e in expired {
        store_event(state, e, None).await;
    }
}

/// Someone decided a consent (the operator or the Deny button on the page, or the owner
/// with `bridge approve`); the browser learns it on its next visit.
pub fn consent_decided_by(state: &Recorder, c: &Consent, by: DecidedBy, approve: bool) {
    with(|x| {
        x.tunnel = Some(c.tunnel.clone());
        x.client_id = Some(c.client_id.clone());
        // The Deny button is anyone's who holds the page.
        x.proven = by != DecidedBy::Page;
    });
    let name = {
        let mut notes = lock(&state.trace.consents);
        notes.get_mut(&c.id).and_then(|n| {
            n.decided_by = Some(by);
            n.client_name.clone()
        })
    };
    with(|x| x.client_name = name);
    if by == DecidedBy::BridgeCommand {
        because(format!(
            "{} by {}; the browser continues on its next refresh",
            if approve { "approved" } else { "denied" },
            DecidedBy::describe(Some(by))
        ));
    }
}

/// A consent's browser came back after the decision (the code or the denial goes to the
/// client now).
pub async fn consent_finished(state: &Recorder, c: &Consent) {
    let note = lock(&state.trace.consents).remove(&c.id);
    let by = note.as_ref().and_then(|n| n.decided_by);
    with(|x| {
        x.step = Some(Step::Consent);
        x.tunnel = Some(c.tunnel.clone());
        x.client_id = Some(c.client_id.clone());
        x.client_name = note.and_then(|n| n.client_name);
        x.proven = c.decision.is_some() && by != Some(DecidedBy::Page);
    });
    let host = crate::util::html::host_of(&c.redirect_uri);
    let owner = state.store.live_owner(&c.tunnel).await.ok().flatten();
    because(match c.decision {
        Some(true) if owner.is_some() && owner == c.approved_owner => format!(
            "approved by {}; the authorization code went to {host}",
            DecidedBy::describe(by)
        ),
        Some(true) => {
            "approved, but the tunnel changed owner since; the client must start again".to_owned()
        }
        _ => format!("denied by {}", DecidedBy::describe(by)),
    });
}

/// The consent page or form of a consent that is gone was used: tells an expired consent
/// from a used one.
pub fn consent_missing(state: &Recorder, id: &str) {
    let note = {
        let mut notes = lock(&state.trace.consents);
        match notes.get(id) {
            Some(n) if n.created.elapsed() >= crate::oauth::limits::CONSENT_TTL => notes.remove(id),
            _ => None,
        }
    };
    if let Some(n) = note {
        with(|x| {
            x.step = Some(Step::Consent);
            x.tunnel = Some(n.tunnel);
            x.client_id = Some(n.client_id);
            x.client_name = n.client_name;
            x.reason = Some(expired_reason(n.decided_by));
        });
    }
}

/// A consent was refused on its page (`why`: e.g. a wrong operator password).
pub fn consent_refused(c: &Consent, why: &str) {
    with(|x| {
        x.step = Some(Step::Consent);
        x.tunnel = Some(c.tunnel.clone());
        x.client_id = Some(c.client_id.clone());
        x.reason = Some(why.to_owned());
    });
}

/// A token request's parameters: its client and the tunnel its `resource` names (an
/// unverified tie until a code or refresh token of the tunnel proves it).
pub fn token_request(state: &Recorder, params: &HashMap<String, String>) {
    let tunnel = params
        .get("resource")
        .and_then(|r| tunnel_of_resource(state, r));
    if let Some(t) = tunnel {
        claim_tunnel(&t);
    }
    with(|c| {
        if let Some(id) = params.get("client_id") {
            c.client_id = Some(id.clone());
        }
    });
}

/// A token request sent a `resource` other than its grant's.
pub fn wrong_resource(sent: Option<&String>, granted: &str) {
    because(format!(
        "the resource {} does not match this tunnel ({granted})",
        sent.map(String::as_str).unwrap_or("?")
    ));
}

/// An authorization code was refused by the store: unknown, expired, or reused.
pub async fn code_refused(state: &Recorder, code: &str) {
    let reason = match state.store.peek_code(code).await {
        Ok(Some((c, _))) if c.expires <= crate::store::now() => {
            for_tunnel(&c.grant.tunnel);
            "the authorization code expired (codes live 2 minutes)"
        }
        Ok(Some((c, _))) => {
            for_tunnel(&c.grant.tunnel);
            "the authorization code was already used: the reuse revoked the tokens it bought"
        }
        _ => "unknown authorization code (not issued by this relay, or swept after expiry)",
    };
    because(reason);
}

/// Tokens were issued for a grant (a code exchanged, or a refresh token rotated).
pub async fn issued(state: &Recorder, g: &Grant) {
    for_tunnel(&g.tunnel);
    let t = crate::store::now();
    if let Err(e) = state.store.client_used(&g.tunnel, &g.client_id, t).await {
        tracing::warn!("noting a client's use of a tunnel: {e}");
    }
    let ttl = state.config.oauth.access_ttl.as_secs();
    let mut refresh = false;
    with(|c| refresh = c.step == Some(Step::Refresh));
    because(if refresh {
        format!("refresh token rotated; new access token for {ttl} s")
    } else {
        format!("code exchanged; access token for {ttl} s and a refresh token issued")
    });
}

/// An MCP request answered 401 for this reason.
pub fn unauthorized(reason: &str) {
    because(reason);
}

/// An MCP request of tunnel `name` presented an access token the store does not accept.
pub async fn unknown_token(state: &Recorder, name: &str, token: &str) {
    let reason = match state.store.token_state(token).await {
        Ok(Some(t)) => {
            with(|c| c.client_id = Some(t.grant.client_id.clone()));
            proven(t.grant.tunnel == name);
            if t.kind != "access" {
                "a refresh token was sent as an access token".to_owned()
            } else if t.revoked {
                "the access token was revoked (by its owner, by the client, or because a code or \
                 refresh token was reused)"
                    .to_owned()
            } else if t.expires <= crate::store::now() {
                format!(
                    "the access token expired at {}; the client must refresh it",
                    format_time(t.expires * 1000)
                )
            } else if t.grant.tunnel != name {
                format!(
                    "the access token is for tunnel {}, not this one",
                    t.grant.tunnel
                )
            } else {
                "the access token is not valid".to_owned()
            }
        }
        _ => "unknown access token (not issued by this relay)".to_owned(),
    };
    because(reason);
}

/// An MCP request of tunnel `name` presented a live access token that is not good here.
pub fn rejected_token(
    state: &Recorder,
    name: &str,
    grant: &Grant,
    expires: i64,
    audience_ok: bool,
) {
    with(|c| c.client_id = Some(grant.client_id.clone()));
    proven(grant.tunnel == name);
    because(if expires <= crate::store::now() {
        "the access token expired; the client must refresh it".to_owned()
    } else if !audience_ok {
        format!(
            "wrong audience: the access token was issued for {} (tunnel {}), not {}",
            grant.resource,
            grant.tunnel,
            state.config.resource_url(name)
        )
    } else {
        "the tunnel changed owner (or its owner's bridge token was revoked) since the token \
         was granted; the client must sign in again"
            .to_owned()
    });
}

/// A client's access token was accepted on `tunnel`: notes its last use (at most once a
/// minute per client and tunnel).
pub fn used(state: &Recorder, tunnel: &str, client_id: &str) {
    {
        let mut uses = lock(&state.trace.uses);
        let key = (tunnel.to_owned(), client_id.to_owned());
        if uses.get(&key).is_some_and(|at| at.elapsed() < USE_INTERVAL) {
            return;
        }
        if uses.len() > 10_000 {
            uses.retain(|_, at| at.elapsed() < USE_INTERVAL);
        }
        uses.insert(key, Instant::now());
    }
    // Off the request's path: a shared database is a round trip away.
    let store = state.store.clone();
    let (tunnel, client_id) = (tunnel.to_owned(), client_id.to_owned());
    tokio::spawn(async move {
        if let Err(e) = store
            .client_used(&tunnel, &client_id, crate::store::now())
            .await
        {
            tracing::warn!("noting a client's use of a tunnel: {e}");
        }
    });
}

/// Records an event now, outside any request's context (e.g. a revocation on the status
/// page).
pub async fn record(state: &Recorder, event: TraceEvent) {
    store_event(state, event, None).await;
}

// ------------------------------------------------------------------------------------------
// Recording.

/// Whether a tunnel name exists on this relay (so events may be tied to it).
async fn tunnel_known(state: &Recorder, name: &str) -> bool {
    protocol::valid_tunnel_name(name)
        && (state.registry.status(name).is_some()
            || matches!(state.store.name_owner(name).await, Ok(Some(_))))
}

/// Stores an event: ties it to its tunnel only if that tunnel exists, cleans its texts,
/// and applies the budget (`dedupe`: the key of a repeatable event).
async fn store_event(state: &Recorder, mut e: TraceEvent, dedupe: Option<u64>) {
    // The budget first: a flood costs no store lookup.
    if !state
        .trace
        .admit(e.ip.as_deref(), dedupe.unwrap_or(0), dedupe.is_some())
    {
        return;
    }
    if let Some(t) = e.tunnel.as_deref()
        && !tunnel_known(state, t).await
    {
        e.tunnel = None;
    }
    // Relay-wide events have one history.
    e.unverified &= e.tunnel.is_some();
    if e.time_ms == 0 {
        e.time_ms = now_ms();
    }
    e.reason = printable(&e.reason, MAX_REASON);
    e.error = e.error.map(|x| printable(&x, 64));
    e.client_id = e.client_id.map(|x| printable(&x, 200));
    e.client_name = e.client_name.map(|x| printable(&x, 100));
    e.user_agent = e.user_agent.map(|x| printable(&x, 160));
    let keep = if e.unverified {
        KEEP_UNVERIFIED
    } else {
        KEEP_PER_TUNNEL
    };
    if let Err(err) = state.store.trace_add(&e, keep).await {
        tracing::warn!("recording an OAuth trace event: {err}");
    }
}

/// How the middleware treats a path.
struct Route {
    step: Step,
    always: bool,
    tunnel: Option<String>,
}

fn route_of(path: &str) -> Option<Route> {
    let route = |step, always, tunnel: Option<&str>| {
        Some(Route {
            step,
            always,
            tunnel: tunnel.map(str::to_owned),
        })
    };
    match path {
        "/.well-known/oauth-authorization-server" => route(Step::ServerMetadata, true, None),
        "/oauth/register" => route(Step::Register, true, None),
        "/oauth/authorize" => route(Step::Authorize, true, None),
        "/oauth/token" => route(Step::Token, true, None),
        "/oauth/revoke" => route(Step::Revoke, true, None),
        "/oauth/approve" => route(Step::Consent, false, None),
        p if p.starts_with("/oauth/consent/") => route(Step::Consent, false, None),
        p => {
            if let Some(name) = p
                .strip_prefix("/.well-known/oauth-protected-resource/")
                .and_then(|r| r.strip_suffix("/mcp"))
            {
                return route(Step::ResourceMetadata, true, Some(name));
            }
            let (name, last) = p.strip_prefix('/')?.split_once('/')?;
            match last {
                "mcp" | "sse" | "messages" if !name.is_empty() => {
                    route(Step::Unauthorized, false, Some(name))
                }
                _ => None,
            }
        }
    }
}

/// The OAuth `error` and `error_description` of a redirect's `Location`, if it carries
/// one (never anything else of it: a success carries the code).
fn redirect_error(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    let query = location.split_once('?')?.1;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    error.map(|e| (e, description))
}

/// What an answer says when the handler said nothing.
fn default_reason(step: Step, status: StatusCode, url: Option<&str>) -> String {
    let url = url.unwrap_or("");
    match (step, status.as_u16()) {
        (Step::ResourceMetadata, 404) => format!(
            "{url}: no tunnel of this name is connected with OAuth (its bridge must run with \
             --auth oauth)"
        ),
        (Step::ResourceMetadata | Step::ServerMetadata, _) => format!("fetched {url}"),
        (Step::Authorize, 429) => "too many authorization requests from this address".into(),
        (Step::Consent, 403) => {
            "the consent page was used from another browser, or with a wrong CSRF field".into()
        }
        (Step::Consent, 429) => "too many wrong operator passwords from this address".into(),
        (Step::Revoke, 200) => "the client revoked a token".into(),
        (Step::Unauthorized, 401) => "the request's bearer token is missing or wrong".into(),
        (_, s) => format!("answered HTTP {s}"),
    }
}

/// Whether an MCP request's answer is recorded: every 401, and a 403 whose handler gave a
/// reason (a bearer tunnel's wrong token; not a refused `Host` or `Origin`).
fn refusal_recorded(status: StatusCode, has_reason: bool) -> bool {
    status == StatusCode::UNAUTHORIZED || (status == StatusCode::FORBIDDEN && has_reason)
}

/// Records the OAuth trace of the relay's OAuth and MCP requests (module documentation).
pub async fn middleware(State(state): State<Arc<Recorder>>, req: Request, next: Next) -> Response {
    let Some(route) = route_of(req.uri().path()) else {
        return next.run(req).await;
    };
    let mut ctx = Context {
        step: Some(route.step),
        always: route.always,
        tunnel: route.tunnel,
        ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| ClientAddr::of(&state.config.trusted_proxies, c.0, req.headers()).ip()),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        ..Context::default()
    };
    if matches!(route.step, Step::ResourceMetadata | Step::ServerMetadata) {
        ctx.url = Some(format!("{}{}", state.config.base(), req.uri().path()));
    }
    if route.step == Step::Authorize {
        // Who asks, for which tunnel (the claim is checked by the handler; events are
        // tied only to tunnels that exist).
        for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "resource" => ctx.tunnel = tunnel_of_resource(&state, &v),
                "client_id" => ctx.client_id = Some(v.into_owned()),
                _ => {}
            }
        }
    }
    let (resp, ctx) = CONTEXT
        .scope(RefCell::new(ctx), async move {
            let resp = next.run(req).await;
            (resp, CONTEXT.with(|c| c.take()))
        })
        .await;
    let status = resp.status();
    let step = ctx.step.unwrap_or(route.step);
    let main = match step {
        _ if ctx.always => true,
        Step::Unauthorized => refusal_recorded(status, ctx.reason.is_some()),
        _ => ctx.reason.is_some() || status.is_client_error() || status.is_server_error(),
    };
    if !main && ctx.extra.is_empty() {
        return resp;
    }
    let body_error = resp
        .extensions()
        .get::<OAuthError>()
        .map(|e| (e.error.clone(), Some(e.description.clone())));
    let found_error = body_error.or_else(|| {
        status
            .is_redirection()
            .then(|| redirect_error(resp.headers()))
            .flatten()
    });
    let ip = ctx.ip.map(|ip| ip.to_string());
    let user_agent = ctx
        .user_agent
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut client_name = ctx.client_name.clone();
    if client_name.is_none()
        && let Some(id) = &ctx.client_id
        && let Ok(Some(c)) = state.store.client(id).await
    {
        client_name = c.name;
    }
    let base = TraceEvent {
        time_ms: now_ms(),
        tunnel: ctx.tunnel.clone(),
        client_id: ctx.client_id.clone(),
        client_name,
        ip,
        user_agent,
        unverified: !ctx.proven,
        ..TraceEvent::default()
    };
    let (before, after): (Vec<Extra>, Vec<Extra>) = ctx
        .extra
        .into_iter()
        .partition(|x| x.step == Step::ClientDocument);
    let extra_event = |x: Extra| TraceEvent {
        step: x.step.as_str().into(),
        outcome: x.outcome.as_str().into(),
        reason: x.reason,
        tunnel: x.tunnel.or_else(|| base.tunnel.clone()),
        client_id: x.client_id.or_else(|| base.client_id.clone()),
        client_name: x.client_name.or_else(|| base.client_name.clone()),
        ..base.clone()
    };
    for x in before {
        store_event(&state, extra_event(x), None).await;
    }
    if main {
        let outcome = if status.is_server_error() {
            Outcome::Error
        } else if status.is_client_error() || found_error.is_some() {
            Outcome::Refused
        } else {
            Outcome::Ok
        };
        let (error, description) = match (ctx.error, found_error) {
            (Some(e), _) => (Some(e), None),
            (None, Some((e, d))) => (Some(e), d),
            (None, None) => (None, None),
        };
        let reason = ctx
            .reason
            .or(description)
            .unwrap_or_else(|| default_reason(step, status, ctx.url.as_deref()));
        let repeatable = matches!(
            step,
            Step::ResourceMetadata | Step::ServerMetadata | Step::Unauthorized
        );
        let dedupe = repeatable.then(|| {
            let mut h = DefaultHasher::new();
            (&base.tunnel, step, &base.ip, &reason).hash(&mut h);
            h.finish()
        });
        let e = TraceEvent {
            step: step.as_str().into(),
            outcome: outcome.as_str().into(),
            error,
            reason,
            ..base.clone()
        };
        store_event(&state, e, dedupe).await;
    }
    for x in after {
        store_event(&state, extra_event(x), None).await;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tunnel: Option<&str>, reason: &str) -> TraceEvent {
        TraceEvent {
            time_ms: now_ms(),
            tunnel: tunnel.map(str::to_owned),
            step: Step::Token.as_str().into(),
            outcome: Outcome::Refused.as_str().into(),
            error: Some("invalid_grant".into()),
            reason: reason.into(),
            client_id: Some("mcpcl_abc".into()),
            client_name: Some("ChatGPT".into()),
            ip: Some("203.0.113.9".into()),
            user_agent: Some("test".into()),
            ..TraceEvent::default()
        }
    }

    #[test]
    fn unverified_events_never_evict_the_others() {
        let s = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        for i in 0..50 {
            s.trace_add(&event(Some("mine"), &format!("real{i}")), KEEP_PER_TUNNEL)
                .unwrap();
        }
        for i in 0..(3 * KEEP_PER_TUNNEL) {
            let flood = TraceEvent {
                unverified: true,
                ..event(Some("mine"), &format!("flood{i}"))
            };
            s.trace_add(&flood, KEEP_UNVERIFIED).unwrap();
        }
        let all = s.trace_for_tunnel("mine", 10_000, 0).unwrap();
        let real = all.iter().filter(|e| e.reason.starts_with("real")).count();
        let flood: Vec<&TraceEvent> = all.iter().filter(|e| e.unverified).collect();
        assert_eq!(real, 50, "the verified history is whole");
        assert_eq!(flood.len(), KEEP_UNVERIFIED);
        assert_eq!(
            flood[0].reason,
            format!("flood{}", 3 * KEEP_PER_TUNNEL - 1),
            "the newest unverified ones are kept"
        );
    }

    #[test]
    fn pruning_keeps_the_newest_events_of_each_tunnel() {
        let s = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        for i in 0..(KEEP_PER_TUNNEL + 37) {
            s.trace_add(&event(Some("alpha"), &format!("a{i}")), KEEP_PER_TUNNEL)
                .unwrap();
            if i % 100 == 0 {
                s.trace_add(&event(Some("beta"), &format!("b{i}")), KEEP_PER_TUNNEL)
                    .unwrap();
            }
        }
        for i in 0..7 {
            let mut wide = event(None, &format!("w{i}"));
            wide.client_id = Some("mcpcl_someone_else".into());
            s.trace_add(&wide, 5).unwrap();
        }
        let alpha = s.trace_for_tunnel("alpha", 10_000, 0).unwrap();
        assert_eq!(alpha.len(), KEEP_PER_TUNNEL);
        assert_eq!(
            alpha[0].reason,
            format!("a{}", KEEP_PER_TUNNEL + 36),
            "newest first"
        );
        assert_eq!(
            alpha.last().unwrap().reason,
            "a37",
            "the oldest 37 were pruned"
        );
        assert!(alpha.windows(2).all(|w| w[0].id > w[1].id));
        let beta = s.trace_for_tunnel("beta", 10_000, 0).unwrap();
        assert_eq!(beta.len(), 6, "another tunnel keeps its own events");
        let wide = s.trace_all(100, true).unwrap();
        assert_eq!(
            wide.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
            ["w6", "w5", "w4", "w3", "w2"],
            "relay-wide events are pruned as one more tunnel"
        );
        assert_eq!(s.trace_all(3, false).unwrap().len(), 3);
        assert_eq!(s.trace_for_tunnel("alpha", 10, 0).unwrap().len(), 10);
    }

    #[test]
    fn relay_wide_events_of_a_tunnels_clients_are_shown_with_it() {
        let s = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        let mut reg = event(None, "registered");
        reg.client_id = Some("mcpcl_mine".into());
        s.trace_add(&reg, 10).unwrap();
        let mut other = event(None, "someone else registered");
        other.client_id = Some("mcpcl_other".into());
        s.trace_add(&other, 10).unwrap();
        let mut meta = event(None, "fetched metadata");
        meta.client_id = None;
        meta.ip = Some("198.51.100.7".into());
        s.trace_add(&meta, 10).unwrap();
        let mut far = meta.clone();
        far.reason = "fetched long ago".into();
        far.time_ms -= 3 * LINK_WINDOW_MS;
        s.trace_add(&far, 10).unwrap();
        let mut shared = event(None, "a shared document client elsewhere");
        shared.client_id = Some("https://chatgpt.com/oauth/client.json".into());
        s.trace_add(&shared, 10).unwrap();
        let mut auth = event(Some("mine"), "authorized");
        auth.client_id = Some("mcpcl_mine".into());
        auth.ip = Some("198.51.100.7".into());
        s.trace_add(&auth, 10).unwrap();
        let mut doc = event(Some("mine"), "document client here");
        doc.client_id = Some("https://chatgpt.com/oauth/client.json".into());
        s.trace_add(&doc, 10).unwrap();
        let got: Vec<String> = s
            .trace_for_tunnel("mine", 100, LINK_WINDOW_MS)
            .unwrap()
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(
            got,
            [
                "document client here",
                "authorized",
                "fetched metadata",
                "registered"
            ]
        );
    }

    #[test]
    fn times_and_sentences() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(format_time(1_709_251_199_999), "2024-02-29 23:59:59Z");
        assert_eq!(format_time(4_102_444_800_000), "2100-01-01 00:00:00Z");
        assert_eq!(format_time(-1000), "1969-12-31 23:59:59Z");
        let mut e = event(
            Some("a"),
            "the resource https://x/a/mcp does not match this tunnel",
        );
        e.error = Some("invalid_target".into());
        assert_eq!(
            e.summary(),
            "ChatGPT's token request was refused (invalid_target): the resource \
             https://x/a/mcp does not match this tunnel"
        );
        e.client_name = None;
        e.client_id = Some("mcpcl_0123456789abcdefghij".into());
        assert!(
            e.summary()
                .starts_with("Client mcpcl_01234567…'s token request")
        );
        let table = render_table(&[e.clone()]);
        assert!(table.starts_with("TIME (UTC)"), "{table}");
        assert!(table.contains("[from 203.0.113.9, test]"), "{table}");
        e.reason = "line\nbreak\u{1b}[31m".into();
        assert!(!render_table(&[e.clone()]).contains('\u{1b}'));
        let j = e.to_json();
        assert_eq!(j["step"], "token");
        assert_eq!(j["outcome"], "refused");
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn routes_and_addresses() {
        assert_eq!(route_of("/oauth/token").unwrap().step, Step::Token);
        let prm = route_of("/.well-known/oauth-protected-resource/files/mcp").unwrap();
        assert_eq!(
            (prm.step, prm.tunnel.as_deref()),
            (Step::ResourceMetadata, Some("files"))
        );
        let mcp = route_of("/files/mcp").unwrap();
        assert_eq!((mcp.step, mcp.always), (Step::Unauthorized, false));
        assert!(refusal_recorded(StatusCode::UNAUTHORIZED, false));
        assert!(
            refusal_recorded(StatusCode::FORBIDDEN, true),
            "a wrong bearer token"
        );
        assert!(
            !refusal_recorded(StatusCode::FORBIDDEN, false),
            "a foreign Host or Origin"
        );
        assert!(!refusal_recorded(StatusCode::OK, false));
        assert!(route_of("/healthz").is_none());
        assert!(route_of("/status").is_none());
        assert!(route_of("/files/connect").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("https://c.example/cb?code=secret&state=s"),
        );
        assert_eq!(redirect_error(&h), None, "a success is not an error");
        h.insert(
            header::LOCATION,
            HeaderValue::from_static(
                "https://c.example/cb?error=access_denied&error_description=no+way&state=s",
            ),
        );
        assert_eq!(
            redirect_error(&h),
            Some(("access_denied".into(), Some("no way".into())))
        );
    }

    #[test]
    fn repeats_and_budgets() {
        let t = Tracer::default();
        assert!(t.admit(Some("192.0.2.1"), 7, true));
        assert!(
            !t.admit(Some("192.0.2.1"), 7, true),
            "a repeat within the window"
        );
        assert!(t.admit(Some("192.0.2.1"), 8, true));
        let mut admitted = 2;
        while t.admit(Some("192.0.2.1"), 0, false) {
            admitted += 1;
            assert!(admitted <= BUDGET_PER_ADDRESS);
        }
        assert_eq!(admitted, BUDGET_PER_ADDRESS);
        assert!(t.admit(Some("192.0.2.2"), 0, false), "per address");
    }
}
