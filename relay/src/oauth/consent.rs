//! Consent that needs the tunnel's owner.
//!
//! The authorization endpoint creates a pending consent and shows a page (plain HTML, no
//! JavaScript) naming the tunnel, the redirect host and where the client's description
//! comes from, with a short code. It is approved by proof of ownership only: the owner
//! types the code in the bridge's terminal (a `ConsentDecision` frame), or runs
//! `bridge approve <code>` (which presents the bridge token to `/oauth/approve`), or the
//! relay operator enters the operator password on the page (Argon2, rate-limited per
//! address with the attempt reserved before the check, verifications bounded in
//! concurrency: [`crate::util::gate`]). The page refreshes itself and, once approved, redirects with `code`, `state`
//! and `iss`. The consent is bound to the browser that started it by a cookie, and the
//! forms carry the same value as a CSRF token.

use axum::body::Body;
use axum::extract::{Form, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::consents::Consent;
use super::error::OAuthError;
use super::limits::CODE_TTL;
use super::limits::CONSENT_TTL;
use crate::oauth::state::OAuthState;
use crate::store::{CodeGrant, Grant, new_secret, now};
use crate::util::html::escape_html;
use crate::util::html::host_of;
use axum::response::IntoResponse;
use std::sync::Arc;

fn cookie_name(id: &str) -> String {
    format!("mcp_consent_{}", &id[..id.len().min(16)])
}

fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Adds the headers every page of the flow carries.
fn harden(r: &mut Response, form_target: Option<&str>) {
    let h = r.headers_mut();
    let form_action = match form_target.and_then(|u| url::Url::parse(u).ok()) {
        Some(u) => format!("'self' {}", u.origin().ascii_serialization()),
        None => "'self'".into(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}\
dt{font-weight:bold;margin-top:.6em}code,.code{font-family:ui-monospace,monospace}\
.code{font-size:2em;letter-spacing:.1em;padding:.3em .6em;border:2px solid #444;display:inline-block}\
.warn{color:#8a1c00}form{margin-top:1em}button{font-size:1em;padding:.4em 1em}";

/// An HTML error page (used before the redirect URI is trusted).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    crate::oauth::trace::because_if_unset(message);
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Authorization error</title>\
         <style>{STYLE}</style></head><body><h1>Authorization failed</h1><p>{}</p></body></html>",
        escape_html(message)
    );
    let mut r = Response::new(Body::from(html));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(&mut r, None);
    r
}

/// The consent page.
pub fn page(state: &OAuthState, c: &Consent, set_cookie: bool, notice: Option<&str>) -> Response {
    let operator = state.oauth.config.operator_password_hash.is_some();
    let id = escape_html(&c.id);
    let csrf = escape_html(&c.csrf);
    let operator_form = if operator {
        format!(
            "<form method=post action=\"/oauth/consent/{id}\"><input type=hidden name=csrf value=\"{csrf}\">\
             <label>Relay operator password <input type=password name=password autocomplete=current-password></label> \
             <button name=action value=approve>Approve as operator</button></form>"
        )
    } else {
        String::new()
    };
    let notice = notice
        .map(|n| format!("<p class=warn>{}</p>", escape_html(n)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=refresh content=\"3;url=/oauth/consent/{id}\">\
         <title>Allow access to {tunnel}?</title><style>{STYLE}</style></head><body>\
         <h1>Allow access to the tunnel {tunnel}?</h1>{notice}\
         <dl><dt>Tunnel</dt><dd id=tunnel>{tunnel}</dd>\
         <dt>The authorization code will be sent to</dt><dd id=redirect-host>{redirect_host}</dd>\
         <dt>Client</dt><dd id=client>{client}</dd></dl>\
         <p>Only the owner of this tunnel can approve. On the computer running the bridge, type \
         this code in the bridge's terminal, or run <code>bridge approve {code}</code>:</p>\
         <p class=code id=code>{code}</p>\
         <p>This page continues by itself once the request is approved.</p>\
         {operator_form}\
         <form method=post action=\"/oauth/consent/{id}\"><input type=hidden name=csrf value=\"{csrf}\">\
         <button name=action value=deny>Deny</button></form></body></html>",
        tunnel = escape_html(&c.tunnel),
        redirect_host = escape_html(&host_of(&c.redirect_uri)),
        client = escape_html(&c.client_display),
        code = escape_html(&c.code),
    );
    let mut r = Response::new(Body::from(html));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if set_cookie {
        let secure = if state.config.public_url.scheme() == "https" {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{}={}; Path=/oauth/consent/{}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            cookie_name(&c.id),
            c.csrf,
            c.id,
            CONSENT_TTL.as_secs()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    harden(&mut r, Some(&c.redirect_uri));
    r
}

/// Redirects to the client with the given parameters plus `state` and `iss`.
pub fn redirect_to_client(
    state: &OAuthState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
) -> Response {
    let mut u = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "invalid redirect URI"),
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = client_state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &state.config.base());
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(u.as_str()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    harden(&mut r, Some(redirect_uri));
    r
}

/// Ends an approved consent: issues the code and redirects.
fn finish(state: &OAuthState, c: Consent) -> Response {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Consent);
    crate::oauth::trace::consent_finished(&state.trace, &c);
    if c.decision != Some(true) {
        return redirect_to_client(
            state,
            &c.redirect_uri,
            c.state.as_deref(),
            &[
                ("error", "access_denied"),
                ("error_description", "the tunnel owner denied the request"),
            ],
        );
    }
    let owner = match state.store.live_owner(&c.tunnel) {
        Ok(Some(o)) if Some(o) == c.approved_owner => o,
        _ => {
            return redirect_to_client(
                state,
                &c.redirect_uri,
                c.state.as_deref(),
                &[
                    ("error", "access_denied"),
                    (
                        "error_description",
                        "the tunnel changed owner since the approval; start again",
                    ),
                ],
            );
        }
    };
    let code = new_secret("mcpc_");
    let grant = CodeGrant {
        grant: Grant {
            client_id: c.client_id.clone(),
            tunnel: c.tunnel.clone(),
            resource: c.resource.clone(),
            owner_token: owner,
            scope: c.scope.clone(),
        },
        redirect_uri: c.redirect_uri.clone(),
        challenge: c.challenge.clone(),
        expires: now() + CODE_TTL.as_secs() as i64,
    };
    if let Err(e) = state.store.put_code(&code, &grant) {
        tracing::error!("storing a code: {e}");
        return redirect_to_client(
            state,
            &c.redirect_uri,
            c.state.as_deref(),
            &[("error", "server_error")],
        );
    }
    tracing::info!(tunnel = %c.tunnel, client = %c.client_id, "authorization approved");
    redirect_to_client(
        state,
        &c.redirect_uri,
        c.state.as_deref(),
        &[("code", &code)],
    )
}

/// Checks that the request comes from the browser the consent was shown to.
fn bound(c: &Consent, headers: &HeaderMap) -> bool {
    cookie_of(headers, &cookie_name(&c.id)).is_some_and(|v| same_secret(&v, &c.csrf))
}

/// `GET /oauth/consent/<id>`: the page's self-refresh; redirects once decided.
pub async fn poll(
    State(state): State<Arc<OAuthState>>,
    crate::util::path::PathParam(id): crate::util::path::PathParam,
    headers: HeaderMap,
) -> Response {
    let Some(c) = state.oauth.consents.get(&id) else {
        crate::oauth::trace::consent_missing(&state.trace, &id);
        return error_page(
            StatusCode::BAD_REQUEST,
            "This authorization request has expired or was already used. Start again from the client.",
        );
    };
    if !bound(&c, &headers) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This authorization request belongs to another browser.",
        );
    }
    if c.decision.is_some() {
        match state.oauth.consents.take(&id) {
            Some(c) => finish(&state, c),
            None => error_page(
                StatusCode::BAD_REQUEST,
                "This authorization request was already used.",
            ),
        }
    } else {
        page(&state, &c, false, None)
    }
}

/// Form of the consent page.
#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: String,
    action: String,
    #[serde(default)]
    password: String,
}

/// `POST /oauth/consent/<id>`: deny, or approve with the operator password.
pub async fn decide(
    State(state): State<Arc<OAuthState>>,
    peer: crate::net::client_addr::ClientAddr,
    crate::util::path::PathParam(id): crate::util::path::PathParam,
    headers: HeaderMap,
    Form(form): Form<DecisionForm>,
) -> Response {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Consent);
    let Some(c) = state.oauth.consents.get(&id) else {
        crate::oauth::trace::consent_missing(&state.trace, &id);
        return error_page(
            StatusCode::BAD_REQUEST,
            "This authorization request has expired or was already used.",
        );
    };
    if !bound(&c, &headers) || !same_secret(&form.csrf, &c.csrf) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Invalid form submission (CSRF check failed).",
        );
    }
    match form.action.as_str() {
        "deny" => {
            crate::oauth::trace::consent_decided_by(
                &state.trace,
                &c,
                crate::oauth::trace::DecidedBy::Page,
                false,
            );
            state.oauth.consents.decide(&id, &c.tunnel, None);
            match state.oauth.consents.take(&id) {
                Some(c) => finish(&state, c),
                None => error_page(StatusCode::BAD_REQUEST, "already used"),
            }
        }
        "approve" => {
            let Some(hash) = state.oauth.config.operator_password_hash.clone() else {
                return page(
                    &state,
                    &c,
                    false,
                    Some("This relay has no operator password."),
                );
            };
            let ip = peer.ip();
            let refused = |why: crate::util::gate::Refused| {
                use crate::util::gate::Refused;
                let (status, text) = match why {
                    Refused::TooMany => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many wrong passwords from this address; try again later.",
                    ),
                    Refused::Busy => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "Another password from this address is being checked; try again.",
                    ),
                    Refused::Saturated => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The relay is busy checking passwords; try again in a moment.",
                    ),
                };
                let mut r = page(&state, &c, false, Some(text));
                *r.status_mut() = status;
                r
            };
            // The attempt is reserved before the password is checked.
            let attempt = match state.oauth.passwords.begin(ip) {
                Ok(a) => a,
                Err(why) => return refused(why),
            };
            let ok = match attempt.verify_password(hash, form.password.clone()).await {
                Ok(ok) => ok,
                Err(why) => return refused(why),
            };
            if !ok {
                drop(attempt);
                crate::oauth::trace::consent_refused(&c, "wrong operator password");
                tracing::warn!(%ip, "wrong operator password on a consent page");
                let mut r = page(&state, &c, false, Some("Wrong operator password."));
                *r.status_mut() = StatusCode::FORBIDDEN;
                return r;
            }
            attempt.succeeded();
            let owner = state.store.live_owner(&c.tunnel).ok().flatten();
            if owner.is_none() {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "The tunnel no longer exists, or its owner's bridge token was revoked.",
                );
            }
            crate::oauth::trace::consent_decided_by(
                &state.trace,
                &c,
                crate::oauth::trace::DecidedBy::Operator,
                true,
            );
            state.oauth.consents.decide(&id, &c.tunnel, owner);
            match state.oauth.consents.take(&id) {
                Some(c) => finish(&state, c),
                None => error_page(StatusCode::BAD_REQUEST, "already used"),
            }
        }
        _ => error_page(StatusCode::BAD_REQUEST, "unknown action"),
    }
}

/// Body of `POST /oauth/approve`.
#[derive(Deserialize)]
pub struct ApproveBody {
    code: String,
    #[serde(default)]
    deny: bool,
}

/// `POST /oauth/approve` (from `bridge approve <code>`): the bridge token proves ownership.
///
/// Refused presentations are limited per address and in total ([`super::limits::APPROVE_ATTEMPTS`],
/// [`super::limits::APPROVE_ATTEMPTS_TOTAL`]), and an unknown token, an unknown code and a token
/// that does not own the code's tunnel get the same answer: none of them tells whether
/// the token is valid.
pub async fn approve_with_bridge_token(
    State(state): State<Arc<OAuthState>>,
    peer: crate::net::client_addr::ClientAddr,
    headers: HeaderMap,
    axum::Json(body): axum::Json<ApproveBody>,
) -> Response {
    let ip = peer.ip();
    let Some(token) = crate::util::bearer::bearer(&headers) else {
        return OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "send the bridge token as a bearer token",
        )
        .into_response();
    };
    let Ok(attempt) = state.oauth.approvals.begin(ip) else {
        tracing::warn!(%ip, "too many refused bridge tokens on /oauth/approve");
        return OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many refused approvals; try again later (or type the code in the bridge's \
             terminal)",
        )
        .into_response();
    };
    attempt.evaluate();
    let token_id = state.store.token_id(token).ok().flatten();
    let consent = state.oauth.consents.by_code(&body.code);
    let (token_id, c) = match (token_id, consent) {
        (Some(t), Some(c)) if state.store.live_owner(&c.tunnel).ok().flatten() == Some(t) => (t, c),
        _ => {
            drop(attempt);
            return OAuthError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "refused: the bridge token is unknown or revoked, or no pending authorization \
                 shows this code (it may have expired), or the bridge token does not own the \
                 tunnel of that request",
            )
            .into_response();
        }
    };
    attempt.succeeded();
    let decision = (!body.deny).then_some(token_id);
    if !state.oauth.consents.decide(&c.id, &c.tunnel, decision) {
        return OAuthError::new(
            StatusCode::CONFLICT,
            "already_decided",
            "that request was already decided",
        )
        .into_response();
    }
    crate::oauth::trace::consent_decided_by(
        &state.trace,
        &c,
        crate::oauth::trace::DecidedBy::BridgeCommand,
        !body.deny,
    );
    super::error::json_no_store(
        StatusCode::OK,
        &serde_json::json!({
            "tunnel": c.tunnel,
            "client": c.client_display,
            "redirect_host": host_of(&c.redirect_uri),
            "approved": !body.deny,
        }),
    )
}
