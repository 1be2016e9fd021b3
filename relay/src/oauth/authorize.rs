//! The authorization endpoint: validates the request, then shows the owner-only consent
//! page. Until the client and its exact redirect URI are known, errors are shown as a page;
//! after that they go back to the client with `error`, `state` and `iss`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::StatusCode;
use protocol::{ConsentRequest, Frame};

use super::consent::{error_page, page, redirect_to_client};
use super::consents::{Consent, user_code};
use super::redirect::redirect_allowed;
use crate::oauth::state::OAuthState;
use crate::store::{Client, new_secret};
use crate::util::html::host_of;
use std::sync::Arc;

/// Shows a waiting consent in the terminal of the tunnel's bridge (it answers with the
/// decision, see `link::socket`).
pub fn prompt_bridge(tunnel: &crate::tunnels::tunnel::Tunnel, c: &Consent) {
    tunnel.try_send(Frame::ConsentRequest(ConsentRequest {
        id: c.id.clone(),
        code: c.code.clone(),
        client: c.client_display.clone(),
        redirect_host: host_of(&c.redirect_uri),
    }));
}

/// Loads the client named by `client_id`: registered, or a metadata document URL.
pub async fn load_client(state: &OAuthState, client_id: &str) -> Result<Client, String> {
    if client_id.starts_with("https://") {
        return state
            .oauth
            .cimd
            .client(
                &state.store,
                &state.oauth.config.extra_redirect_hosts,
                client_id,
            )
            .await;
    }
    match state.store.client(client_id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err("unknown client_id: register the client first".into()),
        Err(e) => {
            // The database's own words stay in the log, off the public page.
            tracing::error!("client lookup: {e}");
            Err("the relay cannot look up clients right now; try again in a moment".into())
        }
    }
}

/// What the consent page says about a client.
pub fn describe(client: &Client) -> String {
    if client.kind == "cimd" {
        format!(
            "described by a metadata document at {}",
            host_of(&client.client_id)
        )
    } else {
        match &client.name {
            Some(n) => format!(
                "registered itself with this relay, calling itself \u{201c}{}\u{201d} (unverified)",
                protocol::text::printable(n, 100)
            ),
            None => "registered itself with this relay (unverified)".into(),
        }
    }
}

/// The error description of an authorization request without `resource`. Clients that
/// find no protected-resource metadata (a tunnel started with a bearer token has none) fall
/// back to the relay's own authorization server and come here without one; the person who
/// lands here learns that such a tunnel takes its token instead.
const MISSING_RESOURCE: &str = "resource is required: no tunnel was named (send the \
     tunnel's MCP URL as resource). A tunnel started with a bearer token does not use OAuth: \
     send the token that `bridge run` printed (or its --client-token) as \
     `Authorization: Bearer <token>` instead";

/// The error description of an authorization request for a tunnel that does not use OAuth.
const NOT_OAUTH: &str = "that tunnel does not use OAuth on this relay: a tunnel started \
     with a bearer token takes the token that `bridge run` printed (or its --client-token) \
     as `Authorization: Bearer <token>`";

/// Authorization requests allowed per address in [`AUTHORIZE_WINDOW`].
const AUTHORIZE_PER_ADDRESS: usize = 30;
/// Window of that limit.
const AUTHORIZE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(state): State<Arc<OAuthState>>,
    peer: crate::net::client_addr::ClientAddr,
    RawQuery(query): RawQuery,
) -> Response {
    crate::observe::reqlog::note_oauth(crate::observe::metrics::OAuthStep::Authorize);
    if !state
        .oauth
        .authorizations
        .allow(peer.ip(), AUTHORIZE_PER_ADDRESS, AUTHORIZE_WINDOW)
    {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many authorization requests from this address; try again in a few minutes.",
        );
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            return error_page(StatusCode::BAD_REQUEST, "a parameter appears twice");
        }
    }
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());

    let Some(client_id) = get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "client_id is missing");
    };
    let client = match load_client(&state, client_id).await {
        Ok(c) => c,
        Err(e) => {
            crate::oauth::trace::client_lookup_failed(client_id, &e);
            return error_page(StatusCode::BAD_REQUEST, &e);
        }
    };
    crate::oauth::trace::for_client(&client);
    let redirect_uri = match get("redirect_uri") {
        Some(r) => r.to_owned(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return error_page(StatusCode::BAD_REQUEST, "redirect_uri is missing"),
    };
    if !client.redirect_uris.contains(&redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri does not exactly match one the client registered",
        );
    }
    if !redirect_allowed(&redirect_uri, &state.oauth.config.extra_redirect_hosts) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri points to a host this relay does not allow",
        );
    }
    // From here on the redirect URI is trusted: errors go back to the client.
    let client_state = get("state").map(str::to_owned);
    let fail = |error: &str, description: &str| {
        redirect_to_client(
            &state,
            &redirect_uri,
            client_state.as_deref(),
            &[("error", error), ("error_description", description)],
        )
    };
    if get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let Some(challenge) = get("code_challenge") else {
        return fail(
            "invalid_request",
            "PKCE is required: send code_challenge with S256",
        );
    };
    if get("code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "only the S256 code_challenge_method is supported",
        );
    }
    if challenge.len() < 43 || challenge.len() > 128 {
        return fail("invalid_request", "code_challenge has the wrong length");
    }
    let Some(resource) = get("resource") else {
        return fail("invalid_target", MISSING_RESOURCE);
    };
    let base = state.config.base();
    let tunnel = resource
        .strip_prefix(&format!("{base}/"))
        .and_then(|r| r.strip_suffix("/mcp"))
        .filter(|n| protocol::valid_tunnel_name(n))
        .map(str::to_owned);
    let Some(tunnel) = tunnel else {
        return fail("invalid_target", "resource is not a tunnel of this relay");
    };
    if !state.uses_oauth(&tunnel).await {
        return fail("invalid_target", NOT_OAUTH);
    }
    let consent = Consent {
        id: new_secret(""),
        code: user_code(),
        csrf: new_secret(""),
        tunnel: tunnel.clone(),
        client_id: client.client_id.clone(),
        client_display: super::authorize::describe(&client),
        redirect_uri: redirect_uri.clone(),
        state: client_state.clone(),
        challenge: challenge.to_owned(),
        resource: resource.to_owned(),
        scope: super::limits::SCOPE.to_owned(),
        created_ms: protocol::time::now_ms(),
        decision: None,
        approved_owner: None,
    };
    if !state
        .oauth
        .consents
        .insert(&consent, state.oauth.config.max_consents)
        .await
    {
        return fail(
            "temporarily_unavailable",
            "too many pending authorizations; retry later",
        );
    }
    // A store several nodes share announces the consent, and the node holding the
    // tunnel's bridge prompts it; otherwise this node holds it, if anyone does.
    if !state.store.announces()
        && let Some(t) = state.registry.get(&tunnel)
    {
        prompt_bridge(&t, &consent);
    }
    tracing::info!(tunnel = %tunnel, client = %client.client_id, "authorization waiting for the owner");
    crate::oauth::trace::consent_shown(&state.trace, &consent, &client).await;
    page(&state, &consent, true, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayConfig;
    use crate::net::client_addr::ClientAddr;
    use http::header;

    const REDIRECT: &str = "http://127.0.0.1:9/callback";

    fn state() -> Arc<OAuthState> {
        let config =
            RelayConfig::new("127.0.0.1:0".parse().unwrap(), "http://127.0.0.1:1").expect("config");
        let state = OAuthState::in_memory(config);
        #[allow(unreachable_patterns)]
        match &*state.store {
            crate::store::Store::Sqlite(db) => db
                .put_client(&Client {
                    client_id: "mcpcl_test".into(),
                    kind: "dcr".into(),
                    name: None,
                    redirect_uris: vec![REDIRECT.into()],
                    auth_method: "none".into(),
                    secret_hash: None,
                    metadata: "{}".into(),
                    created: 0,
                })
                .expect("client"),
            _ => unreachable!("an in-memory store is SQLite"),
        }
        state
    }

    /// The `error` and `error_description` the client's redirect carries.
    async fn refused(state: &Arc<OAuthState>, extra: &str) -> (String, String) {
        let query = format!(
            "response_type=code&client_id=mcpcl_test&redirect_uri={}&state=s\
             &code_challenge={}&code_challenge_method=S256{extra}",
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
            "a".repeat(43),
        );
        let r = authorize(
            State(state.clone()),
            ClientAddr("127.0.0.1".parse().unwrap()),
            RawQuery(Some(query)),
        )
        .await;
        let location = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
        assert!(location.starts_with(REDIRECT), "{location}");
        let query = location.split_once('?').unwrap().1;
        let mut error = String::new();
        let mut description = String::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "error" => error = v.into_owned(),
                "error_description" => description = v.into_owned(),
                _ => {}
            }
        }
        (error, description)
    }

    #[tokio::test]
    async fn without_a_resource_the_error_names_the_bearer_token() {
        let state = state();
        let (error, description) = refused(&state, "").await;
        assert_eq!(error, "invalid_target");
        assert_eq!(description, MISSING_RESOURCE);
        assert!(description.contains("no tunnel was named"));
        assert!(description.contains("bearer token does not use OAuth"));
        assert!(description.contains("`bridge run` printed"));
    }

    #[tokio::test]
    async fn a_tunnel_without_oauth_is_named_as_such() {
        let state = state();
        let resource = url::form_urlencoded::byte_serialize(b"http://127.0.0.1:1/abcde/mcp")
            .collect::<String>();
        let (error, description) = refused(&state, &format!("&resource={resource}")).await;
        assert_eq!(error, "invalid_target");
        assert_eq!(description, NOT_OAUTH);
        assert!(description.contains("bearer token"));
    }
}
