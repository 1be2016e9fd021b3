//! Checks applied to every public MCP request before it reaches a bridge: DNS-rebinding
//! protection (`Host`, `Origin`) and client authentication.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use protocol::ClientAuth;
use protocol::jsonrpc::INVALID_REQUEST;
use subtle::ConstantTimeEq;

use crate::config::sha256;
use crate::oauth::state::OAuthState;
use crate::util::http_error::McpError;
use axum::response::IntoResponse;

/// What a bearer tunnel answers a request without its token (401: a credential is needed).
const MISSING_BEARER: &str = "Unauthorized: this tunnel needs the bearer token that \
     `bridge run` printed (or its --client-token), sent as `Authorization: Bearer <token>`; \
     it does not use OAuth";

/// What a bearer tunnel answers a request with another token (403: the credential given is
/// not accepted, and signing in with OAuth cannot change that).
const WRONG_BEARER: &str = "Forbidden: wrong bearer token. This tunnel accepts only the \
     bearer token that `bridge run` printed (or its --client-token), not OAuth: check the \
     token in the `Authorization: Bearer` header";

/// Authenticates the client for a tunnel and names it (the *principal*).
///
/// A bearer tunnel answers a request without a token 401 with a challenge that names no
/// OAuth metadata, and a request with a wrong token 403: clients that can sign in with
/// OAuth start that only on a 401 (or a 403 with `error="insufficient_scope"`), and for a
/// static token that would only lead to the relay's authorization server, which this
/// tunnel does not use. OAuth tunnels answer as [`crate::oauth::access::check`] does.
pub async fn authenticate(
    state: &OAuthState,
    name: &str,
    auth: &ClientAuth,
    headers: &HeaderMap,
) -> Result<String, Response> {
    match auth {
        ClientAuth::None => Ok("anonymous".to_owned()),
        ClientAuth::OAuth => crate::oauth::access::check(state, name, headers).await,
        ClientAuth::Bearer { sha256: expected } => {
            let Some(token) = crate::util::bearer::presented(headers) else {
                crate::oauth::trace::unauthorized("no bearer token was sent");
                return Err(missing_bearer());
            };
            let digest = sha256(token.as_bytes());
            if bool::from(digest.ct_eq(expected)) {
                Ok(format!("bearer:{}", hex::encode(&digest[..6])))
            } else {
                crate::oauth::trace::unauthorized("a wrong bearer token was sent (answered 403)");
                Err(wrong_bearer())
            }
        }
    }
}

/// 401 for a bearer tunnel's request without a token: a plain Bearer challenge (no
/// `error`, as RFC 6750 asks when no credential was sent; no `resource_metadata`).
fn missing_bearer() -> Response {
    let mut r =
        McpError::new(StatusCode::UNAUTHORIZED, INVALID_REQUEST, MISSING_BEARER).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mcp\""),
    );
    r
}

/// 403 for a bearer tunnel's request with a wrong token. No challenge: there is nothing
/// else to authenticate with.
fn wrong_bearer() -> Response {
    McpError::new(StatusCode::FORBIDDEN, INVALID_REQUEST, WRONG_BEARER).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config as cfg, headers};

    async fn authenticate(auth: &ClientAuth, headers: &HeaderMap) -> Result<String, Response> {
        let state = crate::oauth::state::OAuthState::in_memory(cfg("http://127.0.0.1:1"));
        super::authenticate(&state, "abc", auth, headers).await
    }

    #[tokio::test]
    async fn bearer() {
        let auth = ClientAuth::Bearer {
            sha256: sha256(b"secret"),
        };
        assert!(
            authenticate(&auth, &headers(&[("authorization", "Bearer secret")]))
                .await
                .is_ok()
        );
        assert!(
            authenticate(&auth, &headers(&[("authorization", "bearer secret")]))
                .await
                .is_ok()
        );
        assert!(
            authenticate(&auth, &headers(&[("authorization", "Bearer nope")]))
                .await
                .is_err()
        );
        assert!(authenticate(&auth, &headers(&[])).await.is_err());
        assert!(authenticate(&ClientAuth::None, &headers(&[])).await.is_ok());
    }

    /// Status, `WWW-Authenticate` and JSON-RPC error message of a refusal.
    async fn refusal(r: Response) -> (StatusCode, Option<String>, String) {
        let status = r.status();
        let challenge = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let v = crate::testing::json_body(r).await;
        assert_eq!(v["error"]["code"], INVALID_REQUEST, "{v}");
        (
            status,
            challenge,
            v["error"]["message"].as_str().unwrap().to_owned(),
        )
    }

    #[tokio::test]
    async fn a_missing_bearer_token_is_challenged_without_oauth() {
        let auth = ClientAuth::Bearer {
            sha256: sha256(b"secret"),
        };
        for h in [
            headers(&[]),
            headers(&[("authorization", "Basic c2VjcmV0")]),
            headers(&[("authorization", "secret")]),
            headers(&[("authorization", "Bearer ")]),
        ] {
            let r = authenticate(&auth, &h).await.unwrap_err();
            let (status, challenge, message) = refusal(r).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{h:?}");
            assert_eq!(challenge.as_deref(), Some("Bearer realm=\"mcp\""), "{h:?}");
            assert_eq!(message, MISSING_BEARER);
            assert!(message.contains("bearer token that `bridge run` printed"));
        }
    }

    #[tokio::test]
    async fn a_wrong_bearer_token_is_forbidden_and_named() {
        let auth = ClientAuth::Bearer {
            sha256: sha256(b"secret"),
        };
        for token in ["Bearer nope", "Bearer secretx", "bearer SECRET"] {
            let r = authenticate(&auth, &headers(&[("authorization", token)]))
                .await
                .unwrap_err();
            let (status, challenge, message) = refusal(r).await;
            // 403, not 401: OAuth-capable clients sign in only on a 401.
            assert_eq!(status, StatusCode::FORBIDDEN, "{token}");
            assert_eq!(challenge, None, "{token}: no challenge to answer");
            assert_eq!(message, WRONG_BEARER);
            assert!(message.contains("wrong bearer token"));
            // Clients that sign in on any error mentioning "Unauthorized" (mcp-remote) must
            // not take this one for a request to sign in.
            assert!(!message.contains("Unauthorized"));
        }
    }

    #[tokio::test]
    async fn oauth_tunnels_still_point_at_their_metadata() {
        for h in [
            headers(&[]),
            headers(&[("authorization", "Bearer not-a-token")]),
        ] {
            let r = authenticate(&ClientAuth::OAuth, &h).await.unwrap_err();
            let (status, challenge, _) = refusal(r).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{h:?}");
            let challenge = challenge.unwrap();
            assert!(
                challenge.contains(
                    "resource_metadata=\"http://127.0.0.1:1/.well-known/oauth-protected-resource/abc/mcp\""
                ),
                "{challenge}"
            );
        }
    }
}
