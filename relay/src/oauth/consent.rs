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

use crate::oauth::failures::Secret;
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
use crate::util::cookie::{cookie_of, same_secret};
use crate::util::html::Text;
use crate::util::html::host_of;
use crate::util::page::{Document, Protection, Refresh, html_answer};
use askama::Template;
use axum::response::IntoResponse;
use std::sync::Arc;

fn cookie_name(id: &str) -> String {
    format!("mcp_consent_{}", &id[..id.len().min(16)])
}

/// Adds the headers every page of the flow carries.
fn harden(r: &mut Response, form_target: Option<&str>) {
    let form_action = match form_target.and_then(|u| url::Url::parse(u).ok()) {
        Some(u) => format!("'self' {}", u.origin().ascii_serialization()),
        None => "'self'".into(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    Protection {
        csp: &csp,
        referrer: "no-referrer",
        pragma: false,
        same_origin: false,
    }
    .apply(r.headers_mut());
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}\
dt{font-weight:bold;margin-top:.6em}code,.code{font-family:ui-monospace,monospace}\
.code{font-size:2em;letter-spacing:.1em;padding:.3em .6em;border:2px solid #444;display:inline-block}\
.warn{color:#8a1c00}form{margin-top:1em}button{font-size:1em;padding:.4em 1em}";

/// A page of the flow around `body`.
fn document<'a, B: Template>(title: &'a str, refresh: Option<Refresh>, body: B) -> Document<'a, B> {
    Document {
        title: Text(title),
        style: STYLE,
        viewport: false,
        refresh,
        body,
    }
}

/// Why the flow stopped.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Authorization failed</h1><p>{{ message }}</p>"
)]
struct Failed<'a> {
    message: Text<&'a str>,
}

/// An HTML error page (used before the redirect URI is trusted).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    crate::oauth::trace::because_if_unset(message);
    let page = document(
        "Authorization error",
        None,
        Failed {
            message: Text(message),
        },
    );
    let mut r = html_answer(status, &page);
    harden(&mut r, None);
    r
}

/// What the consent page shows.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<h1>Allow access to the tunnel {{ tunnel }}?</h1>\
        {% if let Some(n) = notice %}<p class=warn>{{ n }}</p>{% endif %}\
        <dl><dt>Tunnel</dt><dd id=tunnel>{{ tunnel }}</dd>\
        <dt>The authorization code will be sent to</dt><dd id=redirect-host>{{ redirect_host }}</dd>\
        <dt>Client</dt><dd id=client>{{ client }}</dd></dl>\
        <p>Only the owner of this tunnel can approve. On the computer running the bridge, type \
        this code in the bridge's terminal, or run <code>bridge approve {{ code }}</code>:</p>\
        <p class=code id=code>{{ code }}</p>\
        <p>This page continues by itself once the request is approved.</p>\
        {% if operator %}\
        <form method=post action=\"/oauth/consent/{{ id }}\"><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <label>Relay operator password <input type=password name=password autocomplete=current-password></label> \
        <button name=action value=approve>Approve as operator</button></form>\
        {% endif %}\
        <form method=post action=\"/oauth/consent/{{ id }}\"><input type=hidden name=csrf value=\"{{ csrf }}\">\
        <button name=action value=deny>Deny</button></form>"
)]
struct ConsentBody<'a> {
    id: Text<&'a str>,
    csrf: Text<&'a str>,
    tunnel: Text<&'a str>,
    redirect_host: Text<String>,
    client: Text<&'a str>,
    code: Text<&'a str>,
    notice: Option<Text<&'a str>>,
    /// Whether the relay operator may approve here (with the operator password).
    operator: bool,
}

/// The consent page.
pub fn page(state: &OAuthState, c: &Consent, set_cookie: bool, notice: Option<&str>) -> Response {
    let title = format!("Allow access to {}?", c.tunnel);
    let page = document(
        &title,
        Some(Refresh {
            seconds: 3,
            to: Text(format!("/oauth/consent/{}", c.id)),
        }),
        ConsentBody {
            id: Text(&c.id),
            csrf: Text(&c.csrf),
            tunnel: Text(&c.tunnel),
            redirect_host: Text(host_of(&c.redirect_uri)),
            client: Text(&c.client_display),
            code: Text(&c.code),
            notice: notice.map(Text),
            operator: state.oauth.config.operator_password_hash.is_some(),
        },
    );
    let mut r = html_answer(StatusCode::OK, &page);
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
async fn finish(state: &OAuthState, c: Consent) -> Response {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Consent);
    crate::oauth::trace::consent_finished(&state.trace, &c).await;
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
    let owner = match state.store.live_owner(&c.tunnel).await {
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
    if let Err(e) = state.store.put_code(&code, &grant).await {
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

/// Records a decision made on the page (`owner`: approved while that bridge token owned
/// the tunnel; `None`: denied) and finishes the consent.
async fn settle(
    state: &OAuthState,
    id: &str,
    c: &Consent,
    by: crate::oauth::trace::DecidedBy,
    owner: Option<i64>,
) -> Response {
    crate::oauth::trace::consent_decided_by(&state.trace, c, by, owner.is_some());
    state.oauth.consents.decide(id, &c.tunnel, owner).await;
    match state.oauth.consents.take(id).await {
        Some(c) => finish(state, c).await,
        None => error_page(StatusCode::BAD_REQUEST, "already used"),
    }
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
    let Some(c) = state.oauth.consents.get(&id).await else {
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
        match state.oauth.consents.take(&id).await {
            Some(c) => finish(&state, c).await,
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
    let Some(c) = state.oauth.consents.get(&id).await else {
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
        "deny" => settle(&state, &id, &c, crate::oauth::trace::DecidedBy::Page, None).await,
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
            if state.oauth.failures.too_many(Secret::Password, ip).await {
                return refused(crate::util::gate::Refused::TooMany);
            }
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
                state.oauth.failures.failed(Secret::Password, ip);
                crate::oauth::trace::consent_refused(&c, "wrong operator password");
                tracing::warn!(%ip, "wrong operator password on a consent page");
                let mut r = page(&state, &c, false, Some("Wrong operator password."));
                *r.status_mut() = StatusCode::FORBIDDEN;
                return r;
            }
            attempt.succeeded();
            let owner = state.store.live_owner(&c.tunnel).await.ok().flatten();
            if owner.is_none() {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "The tunnel no longer exists, or its owner's bridge token was revoked.",
                );
            }
            settle(
                &state,
                &id,
                &c,
                crate::oauth::trace::DecidedBy::Operator,
                owner,
            )
            .await
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
    let shared_refusal = state.oauth.failures.too_many(Secret::Approval, ip).await;
    let attempt = match state.oauth.approvals.begin(ip) {
        Ok(a) if !shared_refusal => Some(a),
        _ => None,
    };
    let Some(attempt) = attempt else {
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
    let token_id = state.store.token_id(token).await.ok().flatten();
    let consent = state.oauth.consents.by_code(&body.code).await;
    let (token_id, c) = match (token_id, consent) {
        (Some(t), Some(c)) if state.store.live_owner(&c.tunnel).await.ok().flatten() == Some(t) => {
            (t, c)
        }
        _ => {
            drop(attempt);
            state.oauth.failures.failed(Secret::Approval, ip);
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
    if !state
        .oauth
        .consents
        .decide(&c.id, &c.tunnel, decision)
        .await
    {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayConfig;

    const EVIL: &str = "<script>alert(1)</script>\"'&\u{202E}";

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    fn consent() -> Consent {
        Consent {
            id: "id\"1".into(),
            code: "ABCD-EFGH".into(),
            csrf: "cs<rf".into(),
            tunnel: "desk".into(),
            client_id: "mcpcl_x".into(),
            client_display: format!("\u{201c}{EVIL}\u{201d} (unverified)"),
            redirect_uri: "https://claude.ai/api/mcp/auth_callback".into(),
            state: None,
            challenge: String::new(),
            resource: String::new(),
            scope: String::new(),
            created_ms: protocol::time::now_ms(),
            decision: None,
            approved_owner: None,
        }
    }

    #[tokio::test]
    async fn the_page_escapes_what_it_shows() {
        let mut config =
            RelayConfig::new("127.0.0.1:0".parse().unwrap(), "https://relay.example").unwrap();
        config.oauth.operator_password_hash = Some("hash".into());
        let state = OAuthState::in_memory(config);
        let r = page(&state, &consent(), true, Some("Wrong <operator> password."));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("form-action 'self' https://claude.ai;")
        );
        let html = body(r).await;
        assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
        assert!(!html.chars().any(protocol::text::unsafe_char), "{html}");
        assert!(html.contains(
            "<dd id=client>\u{201c}&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;\u{FFFD}\
             \u{201d} (unverified)</dd>"
        ));
        assert!(
            html.contains("<meta http-equiv=refresh content=\"3;url=/oauth/consent/id&quot;1\">")
        );
        assert!(html.contains("<p class=code id=code>ABCD-EFGH</p>"));
        assert!(html.contains("<dd id=redirect-host>claude.ai</dd>"));
        assert!(html.contains("<p class=warn>Wrong &lt;operator&gt; password.</p>"));
        assert_eq!(
            html.matches("<input type=hidden name=csrf value=\"cs&lt;rf\">")
                .count(),
            2,
            "the operator's form and the deny form"
        );
        assert!(html.contains("<input type=password name=password "));
    }

    #[tokio::test]
    async fn without_an_operator_password_only_deny() {
        let config =
            RelayConfig::new("127.0.0.1:0".parse().unwrap(), "http://127.0.0.1:1").unwrap();
        let state = OAuthState::in_memory(config);
        let html = body(page(&state, &consent(), false, None)).await;
        assert!(!html.contains("type=password"), "{html}");
        assert_eq!(html.matches("<form ").count(), 1);
        assert!(!html.contains("class=warn"));
    }

    #[tokio::test]
    async fn error_pages_escape_the_message() {
        let r = error_page(StatusCode::BAD_REQUEST, EVIL);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        let html = body(r).await;
        assert!(html.ends_with(
            "<h1>Authorization failed</h1><p>&lt;script&gt;alert(1)&lt;/script&gt;\
             &quot;&#39;&amp;\u{FFFD}</p></body></html>"
        ));
    }
}
