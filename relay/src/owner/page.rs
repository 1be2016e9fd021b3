//! `GET /status`: the dashboard, or the sign-in page.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::store::new_secret;

use super::render::{Notice, login_page, render};
use super::response::html;
use super::session::{Cookies, LOGIN_TTL, Who};
use super::state::OwnerState;
use super::view::collect;
use crate::util::cookie::cookie_of;

/// Answers the sign-in page, setting its cookie unless the browser has one.
pub(super) fn login_response(
    state: &OwnerState,
    headers: &HeaderMap,
    status: StatusCode,
    notice: Option<(&str, bool)>,
) -> Response {
    let names = Cookies::of(&state.config);
    let (csrf, fresh) = match cookie_of(headers, names.login) {
        Some(v) => (v, false),
        None => (new_secret(""), true),
    };
    let notice = notice.map(|(text, warn)| Notice { text, warn });
    let mut r = html(status, &login_page(&csrf, notice));
    if fresh && let Ok(v) = HeaderValue::from_str(&names.set(names.login, &csrf, LOGIN_TTL)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

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
pub(super) async fn session(
    state: &OwnerState,
    headers: &HeaderMap,
) -> Option<(String, Who, String)> {
    state
        .status_page
        .signed_in(&Cookies::of(&state.config), &state.store, headers)
        .await
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
    match session(&state, &headers).await {
        Some((_, who, csrf)) => {
            let view = collect(&state, who).await;
            html(StatusCode::OK, &render(&view, &csrf, notice))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices() {
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
