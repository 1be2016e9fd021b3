//! `POST /status`: sign in, log out, or revoke a client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use crate::oauth::trace::TraceEvent;
use crate::util::html::escape_html;

use super::page::{login_response, session};
use super::render::{Refusal, refused_page};
use super::response::{html, see_other};
use super::session::{ABSOLUTE, Cookies, Who};
use super::state::OwnerState;
use crate::util::cookie::{cookie_of, same_secret};

/// Largest form accepted.
const MAX_FORM: usize = 8 * 1024;

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
    let Some((id, who, csrf)) = session(&state, &headers).await else {
        return login_response(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some(("Your session has ended; sign in again.", true)),
        );
    };
    if !same_secret(field("csrf"), &csrf) {
        return html(StatusCode::FORBIDDEN, &refused_page(Refusal::Csrf));
    }
    match field("op") {
        "logout" => {
            state.status_page.close(&id).await;
            let names = Cookies::of(&state.config);
            see_other(
                "/status?done=out",
                &[names.set(names.session, "", Duration::ZERO)],
            )
        }
        "revoke" => revoke(&state, peer, who, field("tunnel"), field("client_id")).await,
        _ => html(
            StatusCode::BAD_REQUEST,
            &refused_page(Refusal::UnknownAction),
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
    let names = Cookies::of(&state.config);
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
    use crate::oauth::failures::Secret;
    if state.oauth.failures.too_many(Secret::Password, ip).await {
        return refused(crate::util::gate::Refused::TooMany);
    }
    // The attempt is reserved before the secret is checked.
    let attempt = match state.oauth.passwords.begin(ip) {
        Ok(a) => a,
        Err(why) => return refused(why),
    };
    let mut who = None;
    if !secret.is_empty() && secret.len() <= 512 {
        attempt.evaluate();
        if let Ok(Some(token_id)) = state.store.token_id(secret).await {
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
        state.oauth.failures.failed(Secret::Password, ip);
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
    let Some((id, _)) = state.status_page.open(who).await else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            &refused_page(Refusal::Unavailable),
        );
    };
    see_other(
        "/status",
        &[
            names.set(names.session, &id, ABSOLUTE),
            names.set(names.login, "", Duration::ZERO),
        ],
    )
}

async fn revoke(
    state: &OwnerState,
    peer: crate::net::client_addr::ClientAddr,
    who: Who,
    tunnel: &str,
    client_id: &str,
) -> Response {
    let owner = state.store.name_owner(tunnel).await.ok().flatten();
    let allowed = match who {
        Who::Operator => owner.is_some(),
        Who::Owner { token_id } => owner == Some(token_id),
    };
    if !allowed || client_id.is_empty() {
        return html(StatusCode::FORBIDDEN, &refused_page(Refusal::NotYours));
    }
    let revoked = match state.store.revoke_client(tunnel, client_id).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("revoking a client: {e}");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                &refused_page(Refusal::Unavailable),
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
        .await
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
    )
    .await;
    tracing::info!(
        tunnel,
        client = client_id,
        revoked,
        "client revoked on the status page"
    );
    let done = if revoked > 0 { "revoked" } else { "none" };
    // (Names are `[a-z0-9-]`; escaped all the same.)
    see_other(
        &format!("/status?done={done}#t-{}", escape_html(tunnel)),
        &[],
    )
}
