//! The HTML shell the relay's pages share (the consent page and the status page): the
//! document around a page's body, the answer that carries it, and the protective headers
//! each page sets.
//!
//! Pages are [`askama`] templates, compiled with the crate: every value they show is escaped
//! unless its type says it is HTML already. Text goes in as [`Text`] (or through the `text`
//! filter), which also replaces control, bidirectional and invisible characters
//! ([`crate::util::html::escape_html`]).
//!
//! The templates hold the pages' markup exactly as it is served, unquoted attributes
//! included: clients read some of it from the raw HTML (the consent page's
//! `<p class=code id=code>`, its `http-equiv=refresh` target, every form's
//! `name=csrf value="…"`). Still written by hand, because they are not HTML: the style
//! sheets (written into the page verbatim, the status page's CSP allows its sheet by hash),
//! the CSPs, cookies and redirect locations.

use askama::Template;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::html::Text;

/// A whole HTML document around `body`, a page's own template.
#[derive(Template)]
#[template(
    ext = "html",
    source = "<!doctype html><html lang=en><head><meta charset=utf-8>\
        {% if viewport %}<meta name=viewport content=\"width=device-width, initial-scale=1\">{% endif %}\
        {% if let Some(r) = refresh %}<meta http-equiv=refresh content=\"{{ r.seconds }};url={{ r.to }}\">{% endif %}\
        <title>{{ title }}</title><style>{{ style|safe }}</style></head><body>{{ body|safe }}</body></html>"
)]
pub struct Document<'a, B: Template> {
    /// The title.
    pub title: Text<&'a str>,
    /// The style sheet, written as it is (a page's CSP may allow it by its hash).
    pub style: &'static str,
    /// Whether the page sets a viewport for small screens.
    pub viewport: bool,
    /// Where the page goes by itself, and after how long.
    pub refresh: Option<Refresh>,
    /// The page's body (a template: escaped as it renders).
    pub body: B,
}

/// A page that reloads itself (`<meta http-equiv=refresh>`).
pub struct Refresh {
    /// Seconds before the reload.
    pub seconds: u32,
    /// The URL it loads.
    pub to: Text<String>,
}

/// An HTML answer with its content type; the page adds its protective headers. A page
/// that fails to render (only a failing `Display` can do that) is answered
/// `500 Internal Server Error` without a body.
pub fn html_answer(status: StatusCode, page: &impl Template) -> Response {
    let (status, body) = match page.render() {
        Ok(html) => (status, Body::from(html)),
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, Body::empty())
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The protective headers of a page's answers: what every page sets (its CSP, never framed,
/// never stored, its referrer policy, no sniffing) and what only some add.
pub struct Protection<'a> {
    /// `Content-Security-Policy`.
    pub csp: &'a str,
    /// `Referrer-Policy`.
    pub referrer: &'static str,
    /// Also `Pragma: no-cache`, for HTTP/1.0 caches.
    pub pragma: bool,
    /// Also `Cross-Origin-Opener-Policy` and `Cross-Origin-Resource-Policy`: `same-origin`.
    pub same_origin: bool,
}

impl Protection<'_> {
    /// Sets the headers.
    pub fn apply(&self, h: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(self.csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.pragma {
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static(self.referrer),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if self.same_origin {
            h.insert(
                "cross-origin-opener-policy",
                HeaderValue::from_static("same-origin"),
            );
            h.insert(
                "cross-origin-resource-policy",
                HeaderValue::from_static("same-origin"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Template)]
    #[template(ext = "html", source = "<p>{{ text }}</p>")]
    struct Para<'a> {
        text: Text<&'a str>,
    }

    #[test]
    fn document_around_a_body() {
        let doc = Document {
            title: Text("a <title>\u{202E}"),
            style: "p>b{color:red}",
            viewport: true,
            refresh: Some(Refresh {
                seconds: 3,
                to: Text("/x?a=1&b=\"2\"".into()),
            }),
            body: Para { text: Text("<b>") },
        };
        assert_eq!(
            doc.render().unwrap(),
            "<!doctype html><html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <meta http-equiv=refresh content=\"3;url=/x?a=1&amp;b=&quot;2&quot;\">\
             <title>a &lt;title&gt;\u{FFFD}</title><style>p>b{color:red}</style></head>\
             <body><p>&lt;b&gt;</p></body></html>"
        );
        let bare = Document {
            title: Text("t"),
            style: "",
            viewport: false,
            refresh: None,
            body: Para { text: Text("") },
        };
        assert_eq!(
            bare.render().unwrap(),
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>t</title>\
             <style></style></head><body><p></p></body></html>"
        );
    }

    #[test]
    fn answers_and_headers() {
        let mut r = html_answer(StatusCode::FORBIDDEN, &Para { text: Text("no") });
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        Protection {
            csp: "default-src 'none'",
            referrer: "no-referrer",
            pragma: false,
            same_origin: false,
        }
        .apply(r.headers_mut());
        let names: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "content-security-policy",
                "x-frame-options",
                "cache-control",
                "referrer-policy",
                "x-content-type-options"
            ]
        );
        let mut h = HeaderMap::new();
        Protection {
            csp: "default-src 'none'",
            referrer: "same-origin",
            pragma: true,
            same_origin: true,
        }
        .apply(&mut h);
        assert_eq!(h[header::PRAGMA], "no-cache");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    }
}
