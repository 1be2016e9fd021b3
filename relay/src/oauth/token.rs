//! The token endpoint (authorization code with PKCE S256, rotating refresh tokens) and
//! token revocation (RFC 7009).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use http::{HeaderMap, StatusCode, header};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::OAuthError;
use super::error::json_no_store;
use super::limits::REFRESH_TTL;
use crate::config::sha256;
use crate::oauth::state::OAuthState;
use crate::store::{Client, Grant, Issue, RefreshError, new_secret, now};
use std::sync::Arc;

/// Why a grant no longer holds: the tunnel's name went to another bridge token, or the
/// owner's bridge token was revoked.
const OWNER_GONE: &str =
    "the tunnel changed owner (or its owner's bridge token was revoked); sign in again";

/// Parses a (bounded) form body; a repeated parameter is an error.
fn form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    if body.len() > 16 * 1024 {
        return Err(OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request too large",
        ));
    }
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if map.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter appears twice",
            ));
        }
    }
    Ok(map)
}

/// Authenticates the client of a token request per its registered method.
async fn client_auth(
    state: &OAuthState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Client, OAuthError> {
    let invalid = OAuthError::invalid_client;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let dec = |x: &str| {
                url::form_urlencoded::parse(format!("a={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, dec(secret)?))
        });
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.clone())
        .or_else(|| params.get("client_id").cloned())
        .ok_or_else(|| invalid("client_id is missing"))?;
    let client = match state.store.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(invalid("unknown client")),
        Err(e) => return Err(unavailable(e)),
    };
    let presented = basic
        .map(|(_, s)| s)
        .or_else(|| params.get("client_secret").cloned());
    match (client.auth_method.as_str(), &client.secret_hash) {
        ("none", _) => Ok(client),
        (_, Some(hash)) => match presented {
            Some(s) if bool::from(sha256(s.as_bytes()).ct_eq(hash)) => Ok(client),
            _ => Err(invalid("client authentication failed")),
        },
        _ => Err(invalid("client authentication failed")),
    }
}

/// New tokens to issue: stored by the store's redemption or rotation in its own
/// transaction.
fn new_issue(state: &OAuthState) -> Issue {
    let t = now();
    Issue {
        access: new_secret("mcpat_"),
        access_expires: t + state.oauth.config.access_ttl.as_secs() as i64,
        refresh: new_secret("mcprt_"),
        refresh_expires: t + REFRESH_TTL.as_secs() as i64,
    }
}

/// The token response for tokens the store issued.
async fn issued(state: &OAuthState, g: &Grant, issue: Issue) -> Response {
    let ttl = state.oauth.config.access_ttl;
    let (access, refresh) = (issue.access, issue.refresh);
    crate::oauth::trace::issued(&state.trace, g).await;
    json_no_store(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "refresh_token": refresh,
            "scope": g.scope,
        }),
    )
}

fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
    valid && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A code that is unknown, expired or already used (recorded in the trace).
async fn code_refused(state: &OAuthState, code: &str) -> Result<Response, OAuthError> {
    crate::oauth::trace::code_refused(&state.trace, code).await;
    Err(OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "the code is unknown, expired or already used",
    ))
}

/// A code the store could not look up.
/// The store failed (a database unreachable for a moment): 503, which a client retries,
/// rather than `invalid_grant`, after which it would throw its refresh token away.
fn store_unavailable(e: crate::store::StoreError) -> Result<Response, OAuthError> {
    Err(unavailable(e))
}

/// The error of [`store_unavailable`].
fn unavailable(e: crate::store::StoreError) -> OAuthError {
    tracing::error!("token endpoint: {e}");
    OAuthError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the relay cannot check grants right now; retry",
    )
}

/// `POST /oauth/token`.
pub async fn token(
    State(state): State<Arc<OAuthState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Token);
    let params = form(&body)?;
    crate::oauth::trace::token_request(&state.trace, &params);
    let client = client_auth(&state, &headers, &params).await?;
    let grant_error = |d: &str| Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", d));
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let (Some(code), Some(verifier)) = (params.get("code"), params.get("code_verifier"))
            else {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code and code_verifier are required",
                ));
            };
            // Check everything before using the code: a refused request (another client, a
            // wrong verifier or redirect URI) must not burn it for the client it was issued
            // to. Its first successful use consumes it; any later use revokes what it bought.
            let c = match state.store.peek_code(code).await {
                Ok(Some((c, false))) if c.expires > now() => c,
                Ok(found) => {
                    if found.is_some_and(|(_, used)| used) {
                        // A reused code revokes what its first use issued.
                        if let Err(e) = state.store.take_code(code).await {
                            tracing::error!("revoking a reused code's tokens: {e}");
                        }
                        state.oauth.tokens.clear();
                    }
                    return code_refused(&state, code).await;
                }
                Err(e) => return store_unavailable(e),
            };
            crate::oauth::trace::for_tunnel(&c.grant.tunnel);
            if c.grant.client_id != client.client_id {
                return grant_error("the code was issued to another client");
            }
            if params
                .get("redirect_uri")
                .is_some_and(|r| *r != c.redirect_uri)
                || (!params.contains_key("redirect_uri") && client.redirect_uris.len() > 1)
            {
                return grant_error("redirect_uri does not match the authorization request");
            }
            if !pkce_ok(verifier, &c.challenge) {
                return grant_error("the code_verifier does not match the code_challenge");
            }
            match state.store.live_owner(&c.grant.tunnel).await {
                Ok(owner) if owner == Some(c.grant.owner_token) => {}
                Ok(_) => return grant_error(OWNER_GONE),
                Err(e) => return store_unavailable(e),
            }
            if params
                .get("resource")
                .is_some_and(|r| *r != c.grant.resource)
            {
                crate::oauth::trace::wrong_resource(params.get("resource"), &c.grant.resource);
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource differs from the authorization request",
                ));
            }
            let issue = new_issue(&state);
            let (c, _) = match state.store.redeem_code(code, &issue).await {
                Ok(Some(v)) => v,
                Ok(None) => {
                    // Used by a concurrent request: this second use revoked what it bought.
                    state.oauth.tokens.clear();
                    return code_refused(&state, code).await;
                }
                Err(e) => return store_unavailable(e),
            };
            Ok(issued(&state, &c.grant, issue).await)
        }
        Some("refresh_token") => {
            crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Refresh);
            crate::oauth::trace::step(crate::oauth::trace::Step::Refresh);
            let Some(rt) = params.get("refresh_token") else {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                ));
            };
            // Check everything before using the token: a refused request must not
            // consume (and so revoke) a valid refresh token.
            let peek = match state.store.peek_refresh(rt).await {
                Ok(Some(peek)) => peek,
                Ok(None) => {
                    return grant_error("the refresh token is unknown, expired or revoked");
                }
                Err(e) => return store_unavailable(e),
            };
            crate::oauth::trace::for_tunnel(&peek.tunnel);
            if peek.client_id != client.client_id {
                return grant_error("the refresh token was issued to another client");
            }
            if params.get("resource").is_some_and(|r| *r != peek.resource) {
                crate::oauth::trace::wrong_resource(params.get("resource"), &peek.resource);
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource differs from the grant",
                ));
            }
            match state.store.live_owner(&peek.tunnel).await {
                Ok(owner) if owner == Some(peek.owner_token) => {}
                Ok(_) => return grant_error(OWNER_GONE),
                Err(e) => return store_unavailable(e),
            }
            let issue = new_issue(&state);
            let (g, _) = match state.store.rotate_refresh(rt, &issue).await {
                Ok(Ok(v)) => v,
                Ok(Err(RefreshError::Reused)) => {
                    tracing::warn!(client = %client.client_id, "a refresh token was reused; its family is revoked");
                    state.oauth.tokens.clear();
                    crate::oauth::trace::because(
                        "the refresh token was already used: the reuse revoked its whole family",
                    );
                    return grant_error("the refresh token was already used; sign in again");
                }
                Ok(Err(RefreshError::Invalid)) => {
                    return grant_error("the refresh token is unknown, expired or revoked");
                }
                Err(e) => return store_unavailable(e),
            };
            Ok(issued(&state, &g, issue).await)
        }
        Some(other) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {other:?} is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// `POST /oauth/revoke` (RFC 7009): always 200 for a well-formed request.
pub async fn revoke(
    State(state): State<Arc<OAuthState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Revoke);
    let params = form(&body)?;
    let client = client_auth(&state, &headers, &params).await?;
    let Some(token) = params.get("token") else {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        ));
    };
    match state.store.token_client(token).await {
        Ok(Some(owner)) if owner != client.client_id => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "that token was issued to another client",
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(unavailable(e)),
    }
    if let Err(e) = state.store.revoke(token).await {
        tracing::error!("revocation: {e}");
    }
    state.oauth.tokens.clear();
    Ok(json_no_store(StatusCode::OK, &json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(verifier, challenge));
        assert!(!pkce_ok("short", challenge));
        assert!(!pkce_ok(&verifier.replace('d', "e"), challenge));
    }
}
