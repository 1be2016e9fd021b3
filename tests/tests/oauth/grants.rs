//! The relay's OAuth flows driven with a blocking HTTP client: registering clients,
//! authorization requests and their consent pages, approvals, code exchanges and refreshes,
//! and what the answers must look like.

use std::collections::HashMap;
use std::time::Duration;

use e2e::http::{Answer, BlockingHttp, between};
use e2e::relay::OAuthRelay;
use e2e::wait::eventually;
use e2e::{Bridge, unused_port};
use reqwest::Url;
use serde_json::json;

use crate::{CACHE_WINDOW, LOOPBACK_REDIRECT, PKCE_CHALLENGE, PKCE_VERIFIER};

/// The OAuth server's refusals, as a test expects them.
pub(crate) trait OAuthAnswer {
    /// Asserts an OAuth error answer (`{"error": …}`) with this status; its description.
    fn assert_oauth_error(&self, status: u16, error: &str, what: &str) -> String;
    /// Asserts an HTML error page (never a redirect) with this status and message.
    fn assert_error_page(&self, status: u16, message: &str, what: &str);
}

impl OAuthAnswer for Answer {
    fn assert_oauth_error(&self, status: u16, error: &str, what: &str) -> String {
        assert_eq!(
            (self.status, self.json()["error"].as_str()),
            (status, Some(error)),
            "{what}: {}",
            self.text()
        );
        assert_eq!(self.header("cache-control"), "no-store", "{what}");
        self.json()["error_description"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn assert_error_page(&self, status: u16, message: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        assert!(
            self.header("content-type").starts_with("text/html"),
            "{what}: {:?}",
            self.headers
        );
        assert_eq!(
            self.header("location"),
            "",
            "{what}: an error page never redirects"
        );
        assert!(self.text().contains(message), "{what}: {}", self.text());
        assert!(!self.text().contains("mcpc_"), "{what}: a code on the page");
    }
}

/// An MCP `initialize` POST with this bearer token (or none).
pub(crate) fn mcp_initialize(http: &BlockingHttp, mcp_url: &str, bearer: Option<&str>) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "oauth-e2e", "version": "0"}}});
    let mut req = http
        .client
        .post(mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    http.send(req)
}

/// A relay with the one bridge token `alice`, whose bridge serves `tunnel` with OAuth, and
/// a blocking HTTP client.
pub(crate) fn alice_serving(tunnel: &str) -> (OAuthRelay, Bridge, BlockingHttp) {
    let relay = OAuthRelay::start(&["alice"], false, &[]);
    let bridge = relay.bridge("alice", tunnel, false);
    (relay, bridge, BlockingHttp::new())
}

/// The OAuth flows of a relay with a data directory, driven with a blocking client.
pub(crate) trait Grants {
    /// The relay.
    fn oauth(&self) -> &OAuthRelay;

    /// Registers a public client (RFC 7591) with these redirect URIs; its `client_id`.
    fn register(&self, http: &BlockingHttp, redirect_uris: &[&str]) -> String {
        let r = http.post_json(
            &self.oauth().url("/oauth/register"),
            &json!({"client_name": "oauth-e2e", "redirect_uris": redirect_uris,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"]}),
        );
        assert_eq!(r.status, 201, "registration: {}", r.text());
        let doc = r.json();
        assert_eq!(doc["token_endpoint_auth_method"], "none");
        assert_eq!(doc["redirect_uris"], json!(redirect_uris));
        doc["client_id"].as_str().expect("client_id").to_owned()
    }

    /// The authorization URL of a standard request (PKCE S256 with [`PKCE_CHALLENGE`]).
    fn authorize_url(&self, client_id: &str, redirect: &str, tunnel: &str, state: &str) -> String {
        let resource = self.oauth().mcp_url(tunnel);
        self.authorize_url_with(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("state", state),
            ("code_challenge", PKCE_CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", &resource),
            ("scope", "mcp"),
        ])
    }

    /// The authorization URL with exactly these query parameters.
    fn authorize_url_with(&self, params: &[(&str, &str)]) -> String {
        Url::parse_with_params(&self.oauth().url("/oauth/authorize"), params)
            .expect("authorization URL")
            .to_string()
    }

    /// A whole authorization (redirect URI [`LOOPBACK_REDIRECT`]) approved by the token
    /// `owner` with `bridge approve`: the code.
    fn code_for(&self, http: &BlockingHttp, client_id: &str, tunnel: &str, owner: &str) -> String {
        let redirect = LOOPBACK_REDIRECT;
        let state = format!("st-{}", unused_port());
        let consent = Consent::open(
            http,
            &self.authorize_url(client_id, redirect, tunnel, &state),
        );
        self.oauth().approve(owner, &consent.code, tunnel);
        let r = consent.poll(http);
        let q = redirect_params(&r, redirect, &self.oauth().base, "approved consent");
        assert_eq!(q["state"], [state.as_str()]);
        q["code"][0].clone()
    }

    /// Exchanges a code (verifier [`PKCE_VERIFIER`]).
    fn exchange(&self, http: &BlockingHttp, client_id: &str, code: &str, redirect: &str) -> Answer {
        http.post_form(
            &self.oauth().url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
                ("client_id", client_id),
                ("code_verifier", PKCE_VERIFIER),
            ],
            &[],
        )
    }

    /// A refresh-token request.
    fn refresh(&self, http: &BlockingHttp, client_id: &str, refresh_token: &str) -> Answer {
        self.refresh_for(http, client_id, refresh_token, None)
    }

    /// A refresh-token request naming `resource`, when given.
    fn refresh_for(
        &self,
        http: &BlockingHttp,
        client_id: &str,
        refresh_token: &str,
        resource: Option<&str>,
    ) -> Answer {
        let mut fields = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ];
        fields.extend(resource.map(|r| ("resource", r)));
        http.post_form(&self.oauth().url("/oauth/token"), &fields, &[])
    }

    /// A grant for `tunnel` (redirect URI [`LOOPBACK_REDIRECT`]) approved by `owner`:
    /// (access token, refresh token).
    fn tokens_for(
        &self,
        http: &BlockingHttp,
        client_id: &str,
        tunnel: &str,
        owner: &str,
    ) -> (String, String) {
        let code = self.code_for(http, client_id, tunnel, owner);
        let r = self.exchange(http, client_id, &code, LOOPBACK_REDIRECT);
        tokens_of(&r)
    }

    /// Waits until the tunnel's bridge is connected (its metadata is published).
    fn wait_tunnel(&self, http: &BlockingHttp, tunnel: &str) {
        eventually(Duration::from_secs(30), || {
            let r = http
                .try_send(http.client.get(self.oauth().prm_url(tunnel)))
                .ok()?;
            (r.status == 200).then_some(())
        })
        .unwrap_or_else(|| panic!("tunnel {tunnel} did not come back"));
    }
}

impl Grants for OAuthRelay {
    fn oauth(&self) -> &OAuthRelay {
        self
    }
}

/// The tokens of a successful token response.
pub(crate) fn tokens_of(r: &Answer) -> (String, String) {
    assert_eq!(r.status, 200, "token response: {}", r.text());
    assert_eq!(r.header("cache-control"), "no-store");
    let doc = r.json();
    assert!(
        doc["token_type"]
            .as_str()
            .unwrap_or("")
            .eq_ignore_ascii_case("bearer")
    );
    assert_eq!(doc["scope"], "mcp");
    (
        doc["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        doc["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    )
}

/// Asserts a 302 to `redirect` (with `iss` = the issuer, each parameter once); its query.
pub(crate) fn redirect_params(
    r: &Answer,
    redirect: &str,
    issuer: &str,
    what: &str,
) -> HashMap<String, Vec<String>> {
    assert_eq!(r.status, 302, "{what}: {}", r.text());
    let location = r.header("location");
    assert!(
        location.starts_with(&format!("{redirect}?")),
        "{what}: redirected to {location:?}"
    );
    let mut q: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in Url::parse(location).expect("Location URL").query_pairs() {
        q.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    assert!(q.values().all(|v| v.len() == 1), "{what}: {q:?}");
    assert_eq!(q["iss"], [issuer], "{what}");
    q
}

/// Asserts the 401 of an MCP endpoint: JSON-RPC error body, `WWW-Authenticate` pointing at
/// the tunnel's metadata, with `error="invalid_token"` when a token was sent.
pub(crate) fn assert_unauthorized(
    r: &Answer,
    relay: &OAuthRelay,
    tunnel: &str,
    with_token: bool,
    what: &str,
) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let challenge = r.header("www-authenticate");
    let mut expected = format!(
        "Bearer resource_metadata=\"{}\", scope=\"mcp\"",
        relay.prm_url(tunnel)
    );
    if with_token {
        expected.push_str(", error=\"invalid_token\"");
    }
    assert_eq!(challenge, expected, "{what}");
    let body = r.json();
    assert_eq!(body["jsonrpc"], "2.0", "{what}");
    assert!(body["error"]["code"].is_i64(), "{what}: {body}");
}

/// Waits until this access token is refused on `tunnel` (the relay caches a validated
/// token for up to 5 s); panics if it still works after [`CACHE_WINDOW`].
pub(crate) fn assert_token_dies(
    http: &BlockingHttp,
    relay: &OAuthRelay,
    tunnel: &str,
    access: &str,
    what: &str,
) {
    let url = relay.mcp_url(tunnel);
    let r = eventually(CACHE_WINDOW, || {
        let r = mcp_initialize(http, &url, Some(access));
        (r.status != 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("{what}: the access token still works after {CACHE_WINDOW:?}"));
    assert_unauthorized(&r, relay, tunnel, true, what);
}

/// One authorization request in progress, seen from the browser that made it.
pub(crate) struct Consent {
    /// Absolute URL of its consent page (`/oauth/consent/<id>`).
    pub(crate) url: String,
    /// The code the page shows.
    pub(crate) code: String,
    /// The forms' CSRF field.
    pub(crate) csrf: String,
    /// `name=value` of the cookie binding it to this browser.
    pub(crate) cookie: String,
}

impl Consent {
    /// GETs the authorization URL: the consent page, its code, cookie and forms.
    pub(crate) fn open(http: &BlockingHttp, authorize_url: &str) -> Self {
        let r = http.get(authorize_url, &[]);
        assert_eq!(r.status, 200, "consent page: {}", r.text());
        assert_eq!(r.header("location"), "");
        assert!(r.header("content-type").starts_with("text/html"));
        let body = r.text();
        let code = between(&body, "<p class=code id=code>", "</p>").expect("code on the page");
        assert!(
            code.len() == 9 && code.as_bytes()[4] == b'-',
            "code {code:?}"
        );
        let id = between(&body, "url=/oauth/consent/", "\"").expect("meta refresh");
        let csrf = between(&body, "name=csrf value=\"", "\"").expect("csrf field");
        let set_cookie = r.header("set-cookie");
        assert!(
            set_cookie.contains(&format!("Path=/oauth/consent/{id};"))
                && set_cookie.contains("HttpOnly"),
            "{set_cookie}"
        );
        let cookie = set_cookie.split(';').next().unwrap_or("").to_owned();
        assert!(cookie.contains('='), "{set_cookie}");
        let base = Url::parse(authorize_url).expect("URL");
        Self {
            url: base
                .join(&format!("/oauth/consent/{id}"))
                .expect("consent URL")
                .to_string(),
            code: code.to_owned(),
            csrf: csrf.to_owned(),
            cookie,
        }
    }

    /// The page's self-refresh, from the browser that holds the cookie.
    pub(crate) fn poll(&self, http: &BlockingHttp) -> Answer {
        http.get(&self.url, &[("cookie", &self.cookie)])
    }

    /// Asserts the consent is still undecided: the page again, no redirect, no code.
    pub(crate) fn assert_pending(&self, http: &BlockingHttp, what: &str) {
        let r = self.poll(http);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert_eq!(r.header("location"), "", "{what}");
        assert!(r.text().contains(&self.code), "{what}");
    }

    /// POSTs the page's approval with the operator `password` (and this browser's cookie,
    /// if `cookie`).
    pub(crate) fn approve_with(&self, http: &BlockingHttp, password: &str, cookie: bool) -> Answer {
        let fields = [
            ("csrf", self.csrf.as_str()),
            ("action", "approve"),
            ("password", password),
        ];
        self.submit(http, &fields, cookie)
    }

    /// POSTs the page's form with these fields (and this browser's cookie, if `cookie`).
    pub(crate) fn submit(
        &self,
        http: &BlockingHttp,
        fields: &[(&str, &str)],
        cookie: bool,
    ) -> Answer {
        let headers: Vec<(&str, &str)> = if cookie {
            vec![("cookie", self.cookie.as_str())]
        } else {
            vec![]
        };
        http.post_form(&self.url, fields, &headers)
    }
}
