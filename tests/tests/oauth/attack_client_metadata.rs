//! Client metadata documents are fetched from the checked address only, and the refusal
//! tells nothing about what a name resolves to; a client's chosen name cannot reorder or
//! hide what the pages show.

use std::net::{Ipv4Addr, TcpListener};

use e2e::http::{between, form};
use e2e::raw_http::HttpAnswer;

use crate::attacker::{FORM, Setup, runtime, tokens_of};
use crate::{LOOPBACK_REDIRECT as REDIRECT, PKCE_CHALLENGE};

/// The error page's message (`<p>…</p>` after the heading).
fn error_message(a: &HttpAnswer) -> &str {
    between(&a.body, "<h1>Authorization failed</h1><p>", "</p>").unwrap_or(&a.body)
}

/// The query of an authorization request of `client_id` for `resource`.
fn authorize_query(client_id: &str, resource: &str) -> String {
    form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("state", "st"),
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", resource),
    ])
}

/// With `HTTPS_PROXY` set in the relay's environment, a client metadata document is not
/// fetched through the proxy (which would connect wherever it likes, past the address
/// check): nothing reaches the proxy.
#[test]
fn client_metadata_documents_are_not_fetched_through_a_proxy() {
    let proxy = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
    proxy.set_nonblocking(true).expect("nonblocking");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let s = Setup::start_with_env(
        &["owner"],
        &[],
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("https_proxy", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("NO_PROXY", ""),
        ],
    );
    let _bridge = s.bridge("owner", "proxy-desk");
    let rt = runtime();
    // A public address literal: it passes the address check; the fetch itself may fail
    // (no network here), but never through the proxy.
    let resource = s.mcp_url("proxy-desk");
    let q = authorize_query("https://1.1.1.1/client.json", &resource);
    let r = s.get(&rt, &format!("/oauth/authorize?{q}"), &[]);
    eprintln!(
        "CIMD fetch with a proxy set: HTTP {} {}",
        r.status,
        error_message(&r)
    );
    match proxy.accept() {
        Ok((_, from)) => panic!("the relay fetched the document through the proxy (from {from})"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }
}

/// The refusal of a client metadata document on a private or local address does not say
/// which address the name resolves to, and reads the same as for a name that does not
/// resolve at all.
#[test]
fn client_metadata_refusals_do_not_tell_what_a_name_resolves_to() {
    let (s, _bridge, rt) = Setup::owner_serving("cimd-desk");
    let resource = s.mcp_url("cimd-desk");
    let page = |client_id: &str| {
        let q = authorize_query(client_id, &resource);
        s.get(&rt, &format!("/oauth/authorize?{q}"), &[])
    };
    let local = page("https://localhost/client.json");
    let nowhere = page("https://no-such-host.invalid/client.json");
    let literal = page("https://[::1]/client.json");
    for (what, r) in [
        ("localhost", &local),
        ("unresolvable", &nowhere),
        ("[::1]", &literal),
    ] {
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        for address in ["127.0.0.1", "::1"] {
            assert!(
                !error_message(r).contains(address),
                "{what}: the page names {address}: {}",
                error_message(r)
            );
        }
    }
    assert_eq!(error_message(&local), error_message(&nowhere));
    assert_eq!(error_message(&local), error_message(&literal));
}

// ------------------------------------------------------------------------------------------
// Item: a client's chosen name cannot reorder or hide what the pages show.

/// Bidirectional controls, zero-width and other invisible characters, all in a client's
/// chosen name.
const TRICKY: &str = "\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}\u{2066}\u{2067}\u{2068}\u{2069}\
     \u{200B}\u{200C}\u{200D}\u{200E}\u{200F}\u{2028}\u{2029}\u{FEFF}\u{00AD}\u{061C}\u{2060}\
     \u{E0041}\u{180E}";

/// Asserts `html` carries none of [`TRICKY`].
fn assert_no_tricky(what: &str, html: &str) {
    for c in TRICKY.chars() {
        assert!(!html.contains(c), "{what} holds U+{:04X}: {html}", c as u32);
    }
}

/// A client registers with a name full of bidirectional overrides and invisible
/// characters: neither the consent page nor the owner's status page carries them.
#[test]
fn a_clients_name_cannot_reorder_or_hide_page_text() {
    const TUNNEL: &str = "bidi-desk";
    let (s, _bridge, rt) = Setup::owner_serving(TUNNEL);
    let mut name = String::from("Claude");
    for c in TRICKY.chars() {
        name.push(c);
        name.push('x');
    }
    let client = s.register(&rt, &name);
    let page = s.consent(&rt, &client, TUNNEL);
    assert!(page.html.contains("Claude"), "{}", page.html);
    assert_no_tricky("the consent page", &page.html);

    // Once the client holds tokens, the owner's status page names it.
    let code = s.code_for(&rt, &client, TUNNEL, "owner");
    tokens_of(&s.exchange(&rt, &client, &code));
    let (login_cookie, csrf) = s.login_form(&rt);
    let r = s.post(
        &rt,
        Ipv4Addr::LOCALHOST,
        "/status",
        &[FORM, ("Cookie", &login_cookie)],
        &form(&[
            ("op", "login"),
            ("csrf", &csrf),
            ("secret", s.token("owner")),
        ]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r.cookie("relay_status=");
    let dashboard = s.get(&rt, "/status", &[("Cookie", &session)]);
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(
        dashboard.body.contains("tr class=client") && dashboard.body.contains("Claude"),
        "{}",
        dashboard.body
    );
    assert_no_tricky("the status page", &dashboard.body);
}
