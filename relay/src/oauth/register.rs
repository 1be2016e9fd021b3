//! Dynamic client registration (RFC 7591). Registered clients never expire silently;
//! registrations are capped in total and per address.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::error::OAuthError;
use super::error::json_no_store;
use super::redirect::redirect_allowed;
use crate::config::sha256;
use crate::oauth::state::OAuthState;
use crate::store::{Client, new_secret, now};
use std::sync::Arc;

/// Registrations allowed per address and hour.
const PER_ADDRESS: usize = 20;
/// Largest registration document.
const MAX_DOC: usize = 16 * 1024;

/// `POST /oauth/register`.
pub async fn register(
    State(state): State<Arc<OAuthState>>,
    peer: crate::net::client_addr::ClientAddr,
    body: Bytes,
) -> Result<Response, OAuthError> {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Register);
    if body.len() > MAX_DOC {
        return Err(OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "registration document too large",
        ));
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the body must be a JSON object",
        ));
    };
    let Some(obj) = doc.as_object() else {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the body must be a JSON object",
        ));
    };
    let uris: Vec<String> = match obj.get("redirect_uris").and_then(Value::as_array) {
        Some(a) if !a.is_empty() && a.len() <= 10 => {
            let strs: Option<Vec<String>> =
                a.iter().map(|v| v.as_str().map(str::to_owned)).collect();
            match strs {
                Some(s) => s,
                None => {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_redirect_uri",
                        "redirect_uris must be strings",
                    ));
                }
            }
        }
        _ => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_redirect_uri",
                "redirect_uris must list 1 to 10 URIs",
            ));
        }
    };
    let extra = &state.oauth.config.extra_redirect_hosts;
    if let Some(bad) = uris.iter().find(|u| !redirect_allowed(u, extra)) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            format!(
                "redirect URI {bad:?} is not allowed: this relay accepts ChatGPT's and Claude's \
                 callbacks and loopback addresses (the operator can allow more hosts)"
            ),
        ));
    }
    let method = match obj
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
    {
        None | Some("none") => "none",
        Some("client_secret_post") => "client_secret_post",
        Some("client_secret_basic") => "client_secret_basic",
        Some(other) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                format!("token_endpoint_auth_method {other:?} is not supported"),
            ));
        }
    };
    let grants_ok = obj
        .get("grant_types")
        .and_then(Value::as_array)
        .is_none_or(|a| {
            a.iter().all(|g| {
                matches!(
                    g.as_str(),
                    Some("authorization_code") | Some("refresh_token")
                )
            })
        });
    let responses_ok = obj
        .get("response_types")
        .and_then(Value::as_array)
        .is_none_or(|a| a.iter().all(|r| r.as_str() == Some("code")));
    if !grants_ok || !responses_ok {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "only the authorization_code and refresh_token grants with response type code are supported",
        ));
    }
    match state.store.dcr_client_count().await {
        Ok(n) if n >= state.oauth.config.max_clients => {
            return Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "this relay holds its maximum number of registered clients",
            ));
        }
        Err(e) => {
            tracing::error!("client count: {e}");
            return Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the relay cannot register clients right now",
            ));
        }
        _ => {}
    }
    if !state
        .oauth
        .registrations
        .allow(peer.ip(), PER_ADDRESS, Duration::from_secs(3600))
    {
        return Err(OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many registrations from this address; retry later",
        ));
    }
    let client_id = new_secret("mcpcl_");
    let secret = (method != "none").then(|| new_secret("mcpcs_"));
    // Control, bidirectional and invisible characters are replaced: the name is shown on
    // the consent page, the status page and the owner's terminal.
    let name = obj
        .get("client_name")
        .and_then(Value::as_str)
        .map(|s| protocol::text::printable(s, 100));
    let issued = now();
    let client = Client {
        client_id: client_id.clone(),
        kind: "dcr".into(),
        name: name.clone(),
        redirect_uris: uris.clone(),
        auth_method: method.into(),
        secret_hash: secret.as_ref().map(|s| sha256(s.as_bytes())),
        metadata: String::from_utf8_lossy(&body).into_owned(),
        created: issued,
    };
    if let Err(e) = state.store.put_client(&client).await {
        tracing::error!("storing a client: {e}");
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the relay cannot register clients right now",
        ));
    }
    tracing::info!(client = %client_id, "registered an OAuth client");
    crate::oauth::trace::registered(&client);
    let mut answer = json!({
        "client_id": client_id,
        "client_id_issued_at": issued,
        "redirect_uris": uris,
        "token_endpoint_auth_method": method,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    if let Some(n) = name {
        answer["client_name"] = n.into();
    }
    if let Some(s) = secret {
        answer["client_secret"] = s.into();
        answer["client_secret_expires_at"] = 0.into();
    }
    Ok(json_no_store(StatusCode::CREATED, &answer))
}
