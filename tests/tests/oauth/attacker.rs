//! The attacker's side of the OAuth attacks: a relay with an operator password and bridge
//! tokens, spoken to over plain HTTP/1.1 from any loopback address (every 127.0.0.0/8
//! address is local on Linux, so one test can be many clients, each with its own limits).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use e2e::Bridge;
use e2e::http::{between, form};
use e2e::raw_http::{HttpAnswer as Answer, request_from};
use e2e::relay::OAuthRelay;
use serde_json::json;

use crate::{LOOPBACK_REDIRECT as REDIRECT, PKCE_CHALLENGE, PKCE_VERIFIER};

/// Failed password attempts the relay allows per address.
pub(crate) const PASSWORD_LIMIT: usize = 5;
/// Longest wait for an answer (a safety net against a hang, not a timing: an unbounded
/// relay takes minutes to check a burst of passwords in a debug build).
const REPLY_WAIT: Duration = Duration::from_secs(600);
/// The content type of a form.
pub(crate) const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A runtime for the requests of one test.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `n`-th loopback address after 127.0.0.1 (127.0.0.2, …).
pub(crate) fn loopback(n: usize) -> Ipv4Addr {
    let n = n + 2;
    Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250) as u8 + 1)
}

/// Statuses of answers, counted.
pub(crate) fn tally(answers: &[Answer]) -> HashMap<u16, usize> {
    let mut t = HashMap::new();
    for a in answers {
        *t.entry(a.status).or_default() += 1;
    }
    t
}

/// One POST from `from` to the relay on `port`.
pub(crate) async fn post_from(
    from: Ipv4Addr,
    port: u16,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    request_from(from, port, ("POST", target), headers, body, REPLY_WAIT).await
}

/// `n` POSTs at once, the `i`-th from `from(i)` with `body(i)` and `headers(i)` to
/// `target`; their answers, in order.
pub(crate) fn burst(
    rt: &tokio::runtime::Runtime,
    port: u16,
    n: usize,
    target: &str,
    request: impl Fn(usize) -> (Ipv4Addr, Vec<(String, String)>, String),
) -> Vec<Answer> {
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (from, headers, body) = request(i);
                let target = target.to_owned();
                tokio::spawn(async move {
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    post_from(from, port, &target, &headers, &body).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    })
}

/// A relay whose data directory holds bridge tokens, with an operator password.
pub(crate) struct Setup {
    /// The relay.
    pub(crate) relay: OAuthRelay,
    /// The port it listens on.
    pub(crate) port: u16,
}

impl Setup {
    /// A relay whose data directory holds the bridge tokens `labels`.
    pub(crate) fn start(labels: &[&str]) -> Self {
        Self::start_with(labels, &[])
    }

    /// The same, with more flags for `relay serve`.
    pub(crate) fn start_with(labels: &[&str], extra: &[&str]) -> Self {
        Self::start_with_env(labels, extra, &[])
    }

    /// The same, with environment variables for `relay serve`.
    pub(crate) fn start_with_env(labels: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Self {
        let relay = OAuthRelay::start_with_env(labels, true, extra, env);
        let port = relay.port;
        Self { relay, port }
    }

    /// A relay with the one bridge token `owner`, whose bridge serves `tunnel`, and a
    /// runtime for the requests.
    pub(crate) fn owner_serving(tunnel: &str) -> (Self, Bridge, tokio::runtime::Runtime) {
        let s = Self::start(&["owner"]);
        let bridge = s.bridge("owner", tunnel);
        (s, bridge, runtime())
    }

    /// The bridge token made for `label`.
    pub(crate) fn token(&self, label: &str) -> &str {
        self.relay.token(label)
    }

    /// A bridge of the token `label` serving the fixture as tunnel `name` with OAuth.
    pub(crate) fn bridge(&self, label: &str, name: &str) -> Bridge {
        self.relay.bridge(label, name, false)
    }

    pub(crate) fn mcp_url(&self, tunnel: &str) -> String {
        self.relay.mcp_url(tunnel)
    }

    /// One request from 127.0.0.1.
    pub(crate) fn get(
        &self,
        rt: &tokio::runtime::Runtime,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        rt.block_on(request_from(
            Ipv4Addr::LOCALHOST,
            self.port,
            ("GET", target),
            headers,
            "",
            REPLY_WAIT,
        ))
    }

    pub(crate) fn post(
        &self,
        rt: &tokio::runtime::Runtime,
        from: Ipv4Addr,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        rt.block_on(post_from(from, self.port, target, headers, body))
    }

    /// Registers a public client named `name`; its `client_id`.
    pub(crate) fn register(&self, rt: &tokio::runtime::Runtime, name: &str) -> String {
        let body = json!({"client_name": name, "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none"})
        .to_string();
        let r = self.post(
            rt,
            Ipv4Addr::LOCALHOST,
            "/oauth/register",
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(r.status, 201, "registration: {}", r.body);
        r.json()["client_id"]
            .as_str()
            .expect("client_id")
            .to_owned()
    }

    /// Opens a consent page for `client` on `tunnel`.
    pub(crate) fn consent(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &str,
        tunnel: &str,
    ) -> ConsentPage {
        let resource = self.mcp_url(tunnel);
        let q = form(&[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("state", "st"),
            ("code_challenge", PKCE_CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", &resource),
            ("scope", "mcp"),
        ]);
        let r = self.get(rt, &format!("/oauth/authorize?{q}"), &[]);
        assert_eq!(r.status, 200, "consent page: {}", r.body);
        let id = between(&r.body, "url=/oauth/consent/", "\"")
            .expect("meta refresh")
            .to_owned();
        ConsentPage {
            path: format!("/oauth/consent/{id}"),
            code: between(&r.body, "<p class=code id=code>", "</p>")
                .expect("code")
                .to_owned(),
            csrf: between(&r.body, "name=csrf value=\"", "\"")
                .expect("csrf")
                .to_owned(),
            cookie: r.cookie("mcp_consent_"),
            html: r.body,
        }
    }

    /// `relay token <args…> --data-dir DIR` while the relay runs; its stdout.
    pub(crate) fn relay_cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(e2e::bin("relay"))
            .args(args)
            .arg("--data-dir")
            .arg(self.relay.data_dir())
            .env_remove("RELAY_DATA_DIR")
            .output()
            .expect("relay");
        assert!(out.status.success(), "relay {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `POST /oauth/approve` with this bearer token, from `from`.
    pub(crate) fn approve(
        &self,
        rt: &tokio::runtime::Runtime,
        from: Ipv4Addr,
        token: &str,
        code: &str,
    ) -> Answer {
        let auth = format!("Bearer {token}");
        self.post(
            rt,
            from,
            "/oauth/approve",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &json!({ "code": code }).to_string(),
        )
    }

    /// A code for `client` on `tunnel`, approved by the bridge token `owner`.
    pub(crate) fn code_for(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &str,
        tunnel: &str,
        owner: &str,
    ) -> String {
        let page = self.consent(rt, client, tunnel);
        let r = self.approve(rt, Ipv4Addr::LOCALHOST, self.token(owner), &page.code);
        assert_eq!(r.status, 200, "approval: {}", r.body);
        let r = self.get(rt, &page.path, &[("Cookie", &page.cookie)]);
        assert_eq!(r.status, 302, "{}", r.body);
        let location = reqwest::Url::parse(r.header("location")).expect("Location");
        location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"))
    }

    /// `POST /oauth/token` with these form fields.
    pub(crate) fn token_request(
        &self,
        rt: &tokio::runtime::Runtime,
        fields: &[(&str, &str)],
    ) -> Answer {
        self.post(
            rt,
            Ipv4Addr::LOCALHOST,
            "/oauth/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form(fields),
        )
    }

    /// Exchanges a code (verifier [`PKCE_VERIFIER`]).
    pub(crate) fn exchange(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &str,
        code: &str,
    ) -> Answer {
        self.token_request(
            rt,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("client_id", client),
                ("code_verifier", PKCE_VERIFIER),
            ],
        )
    }

    /// An MCP request (`initialize`, `tools/list`, or `tools/call` of `test_simple_text`)
    /// with this access token.
    pub(crate) fn mcp(
        &self,
        rt: &tokio::runtime::Runtime,
        tunnel: &str,
        access: &str,
        method: &str,
    ) -> Answer {
        let params = match method {
            "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {},
                                   "clientInfo": {"name": "attack", "version": "0"}}),
            "tools/call" => json!({"name": "test_simple_text", "arguments": {}}),
            _ => json!({}),
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let auth = format!("Bearer {access}");
        self.post(
            rt,
            Ipv4Addr::LOCALHOST,
            &format!("/{tunnel}/mcp"),
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("Authorization", &auth),
                ("MCP-Protocol-Version", "2025-06-18"),
            ],
            &body.to_string(),
        )
    }

    /// The status page's sign-in form: its cookie and CSRF field.
    pub(crate) fn login_form(&self, rt: &tokio::runtime::Runtime) -> (String, String) {
        let r = self.get(rt, "/status", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let csrf = between(&r.body, "name=csrf value=\"", "\"")
            .expect("csrf")
            .to_owned();
        (r.cookie("relay_login="), csrf)
    }
}

/// A consent page as its browser sees it.
pub(crate) struct ConsentPage {
    pub(crate) path: String,
    pub(crate) code: String,
    pub(crate) csrf: String,
    pub(crate) cookie: String,
    pub(crate) html: String,
}

/// The access and refresh tokens of a successful token response.
pub(crate) fn tokens_of(r: &Answer) -> (String, String) {
    assert_eq!(r.status, 200, "token response: {}", r.body);
    let doc = r.json();
    let token = |k: &str| {
        doc[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k}"))
            .to_owned()
    };
    (token("access_token"), token("refresh_token"))
}
