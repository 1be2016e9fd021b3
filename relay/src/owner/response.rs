//! The status page's answers: HTML and redirects, each with the page's protective headers.

use std::sync::OnceLock;

use askama::Template;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::config::sha256;
use crate::util::page::{Protection, html_answer};

use super::render::STYLE;

/// The Content-Security-Policy of every page: nothing but the page and its own style.
fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha256(STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// An HTML answer with the page's protective headers.
pub(super) fn html(status: StatusCode, page: &impl Template) -> Response {
    let mut r = html_answer(status, page);
    harden(r.headers_mut());
    r
}

/// The headers every answer of the page carries.
fn harden(h: &mut HeaderMap) {
    Protection {
        csp: csp(),
        referrer: "same-origin",
        pragma: true,
        same_origin: true,
    }
    .apply(h);
}

/// `303 See Other` to `location` (after a form), with cookies to set.
pub(super) fn see_other(location: &str, set_cookies: &[String]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    harden(h);
    r
}

#[cfg(test)]
mod tests {
    use super::super::render::{Notice, login_page};
    use super::*;

    #[test]
    fn pages_are_hardened() {
        let notice = || {
            Some(Notice {
                text: "<x>",
                warn: true,
            })
        };
        let r = html(StatusCode::OK, &login_page("abc", notice()));
        let h = r.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        // The style sheet's hash is the one the CSP allows.
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha256(STYLE.as_bytes()));
        assert!(csp.contains(&format!("'sha256-{hash}'")));
        let page = login_page("abc", notice()).render().unwrap();
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.contains("&lt;x&gt;") && !page.contains("<x>"));
    }
}
