//! The relay's owner status page over HTTP (reqwest): its sign-in form's cookie and CSRF
//! field, signing in, and posting its forms. The browser's view of it is
//! [`crate::browser`]'s.

use crate::http::{between, form};

/// The `name=value` part of the first `Set-Cookie` of `resp` that starts with `prefix`
/// (`""`: the first one).
pub fn cookie_of(resp: &reqwest::Response, prefix: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// The value of the page's hidden `csrf` field.
pub fn csrf_of(html: &str) -> String {
    between(html, "name=csrf value=\"", "\"")
        .expect("csrf field")
        .to_owned()
}

/// Sends `get` (a `GET /status` without a session), which must answer 200: the sign-in
/// form's cookie and CSRF field.
pub async fn sign_in_form(get: reqwest::RequestBuilder) -> (String, String) {
    let login = get.send().await.expect("GET /status");
    assert_eq!(login.status(), 200, "GET /status: the sign-in page");
    let cookie = cookie_of(&login, "").expect("login cookie");
    let csrf = csrf_of(&login.text().await.expect("login page"));
    (cookie, csrf)
}

/// Sends `post` with `cookie` and the URL-encoded form `fields`: the answer.
pub async fn post_form(
    post: reqwest::RequestBuilder,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    post.header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(form(fields))
        .send()
        .await
        .expect("POST /status")
}

/// Signs in at `url` (the status page) with `secret` through `http` (which must not follow
/// redirects): the session cookie.
pub async fn sign_in(http: &reqwest::Client, url: &str, secret: &str) -> String {
    let (cookie, csrf) = sign_in_form(http.get(url)).await;
    let fields = [("op", "login"), ("csrf", csrf.as_str()), ("secret", secret)];
    let signed = post_form(http.post(url), &cookie, &fields).await;
    assert_eq!(signed.status(), 303, "sign-in at {url}");
    cookie_of(&signed, "relay_status=").expect("session cookie")
}

/// The dashboard at `url` of the signed-in `session`: its HTML.
pub async fn dashboard(http: &reqwest::Client, url: &str, session: &str) -> String {
    http.get(url)
        .header("cookie", session)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("dashboard body")
}
