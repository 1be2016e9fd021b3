//! Checking OAuth access tokens on MCP requests: the token must be live, issued for this
//! tunnel's resource (its audience), and its grant made while the current owner held the
//! name, whose bridge token must not have been revoked since. Validated tokens are cached for a few seconds to keep the database off the hot
//! path.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use protocol::jsonrpc::INVALID_REQUEST;

use crate::config::sha256;
use crate::oauth::state::OAuthState;
use crate::store::{AccessGrant, now};
use crate::util::bearer::bearer;
use crate::util::http_error::McpError;
use axum::response::IntoResponse;

/// A 401 that points clients at the tunnel's metadata.
pub fn challenge(state: &OAuthState, name: &str, error: Option<&str>) -> Response {
    let mut r = McpError::new(
        StatusCode::UNAUTHORIZED,
        INVALID_REQUEST,
        match error {
            Some(_) => "Unauthorized: the access token is invalid, expired or not for this tunnel",
            None => "Unauthorized: this tunnel needs an OAuth access token",
        },
    )
    .into_response();
    let mut v = format!(
        "Bearer resource_metadata=\"{}\", scope=\"{}\"",
        state.config.metadata_url(name),
        super::limits::SCOPE
    );
    if let Some(e) = error {
        v.push_str(&format!(", error=\"{e}\""));
    }
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The store failed: 503 (retry), never a 401 that would send the client to sign in again.
fn unavailable(e: crate::store::StoreError) -> Response {
    tracing::error!("token lookup failed: {e}");
    McpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        protocol::jsonrpc::UNAVAILABLE,
        "the relay cannot check tokens right now; retry",
    )
    .into_response()
}

/// Checks the request's access token for tunnel `name`; the principal on success.
pub async fn check(
    state: &OAuthState,
    name: &str,
    headers: &HeaderMap,
) -> Result<String, Response> {
    let Some(token) = bearer(headers) else {
        crate::oauth::trace::unauthorized("no access token was sent (a client's first request)");
        return Err(challenge(state, name, None));
    };
    let hash = sha256(token.as_bytes());
    let cache = &state.oauth.tokens;
    let (AccessGrant { grant, expires, .. }, who) = match cache.token(&hash) {
        Some(v) => v,
        None => match state.store.access_token(token).await {
            Ok(Some(g)) => {
                let who = principal(&g.grant.client_id, &g.family);
                cache.put_token(hash, g.clone(), who.clone());
                (g, who)
            }
            Ok(None) => {
                crate::oauth::trace::unknown_token(&state.trace, name, token).await;
                return Err(challenge(state, name, Some("invalid_token")));
            }
            Err(e) => return Err(unavailable(e)),
        },
    };
    let audience_ok = grant.tunnel == name && grant.resource == state.config.resource_url(name);
    let owner_ok = match cache.owner(&state.store, name).await {
        Ok(owner) => owner == Some(grant.owner_token),
        Err(e) => return Err(unavailable(e)),
    };
    if expires <= now() || !audience_ok || !owner_ok {
        crate::oauth::trace::rejected_token(&state.trace, name, &grant, expires, audience_ok);
        return Err(challenge(state, name, Some("invalid_token")));
    }
    crate::oauth::trace::used(&state.trace, name, &grant.client_id);
    Ok(who)
}

/// The principal of an OAuth client's requests: its client id and its authorization (the
/// token family a consent started, kept across refreshes). Every user of one client whose
/// id is a metadata document URL (all of ChatGPT, say) authorizes separately, so each is a
/// principal of their own: sessions, their caps and server→client requests never cross
/// between them. Client ids never contain `#` (a metadata document URL has no fragment,
/// registered ids are the relay's own).
pub fn principal(client_id: &str, family: &str) -> String {
    let grant = hex::encode(&sha256(family.as_bytes())[..4]);
    format!("oauth:{client_id}#{grant}")
}

/// The client id of an OAuth principal (see [`principal`]).
pub fn client_of(principal: &str) -> Option<&str> {
    let rest = principal.strip_prefix("oauth:")?;
    Some(rest.rsplit_once('#').map_or(rest, |(id, _)| id))
}

#[cfg(test)]
mod principal_tests {
    use super::*;

    #[test]
    fn each_authorization_is_its_own_principal() {
        let cimd = "https://chatgpt.com/oauth/client.json";
        let alice = principal(cimd, "family-of-alice");
        let bob = principal(cimd, "family-of-bob");
        assert_ne!(alice, bob, "two users of one client");
        assert_eq!(
            alice,
            principal(cimd, "family-of-alice"),
            "stable across refreshes"
        );
        assert_eq!(client_of(&alice), Some(cimd));
        assert_eq!(client_of(&principal("mcpcl_x", "f")), Some("mcpcl_x"));
        assert_eq!(client_of("oauth:mcpcl_old"), Some("mcpcl_old"));
        assert_eq!(client_of("bearer:abc"), None);
    }
}
