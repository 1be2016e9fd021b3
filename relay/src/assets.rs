//! The public asset route: `GET`/`HEAD /<name>/assets/<path>` serves the files of the local
//! asset origin the tunnel's bridge publishes (a ChatGPT Apps widget's scripts, styles and
//! images). The bridge fetches them from that one origin; the relay passes the answer on
//! with the few headers a browser needs, and the headers that keep the files from acting
//! on the relay's own origin.
//!
//! Assets are public, as a widget loads them without credentials: whatever the asset origin
//! serves, anyone with the URL can fetch. Only `GET` and `HEAD` are routed, the path and
//! the request headers passed on are bounded, one tunnel has at most
//! [`MAX_ASSET_FETCHES`](crate::tunnels::assets::MAX_ASSET_FETCHES) fetches in flight, and
//! a fetch ends after [`ASSET_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use protocol::AssetRequest;

use crate::mcp::state::McpState;
use crate::tunnels::registry::Lookup;
use crate::tunnels::tunnel::{AssetFetch, OpenError};

/// Longest wait for the bridge's answer to one asset fetch.
pub const ASSET_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest path and query below `/<name>/assets`, in bytes.
pub const MAX_ASSET_PATH: usize = 2048;
/// Longest value of a request header passed on.
const MAX_HEADER_VALUE: usize = 512;

/// Request headers passed on to the asset origin (conditional and range requests).
const REQUEST_HEADERS: [HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
    header::ACCEPT,
];

/// Response headers passed back from the asset origin.
const RESPONSE_HEADERS: [HeaderName; 9] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::CONTENT_LANGUAGE,
    header::LOCATION,
    header::CONTENT_LENGTH,
];

/// The asset routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<McpState>: FromRef<S>,
{
    Router::new()
        .route("/{name}/assets/", get(get_asset))
        .route("/{name}/assets/{*path}", get(get_asset))
}

/// `GET`/`HEAD /<name>/assets/<path>` (axum routes `HEAD` here too).
async fn get_asset(
    State(state): State<Arc<McpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some((name, path)) = split(&uri) else {
        return text(StatusCode::NOT_FOUND, "Not found: no such tunnel");
    };
    if path.len() > MAX_ASSET_PATH {
        return text(StatusCode::URI_TOO_LONG, "The asset path is too long");
    }
    let tunnel = match state.registry.settled(name, state.config.grace).await {
        Lookup::Live(t) => t,
        Lookup::Offline(_) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The desktop that serves this tunnel's assets is offline",
            );
        }
        Lookup::Away { .. } | Lookup::Unknown => {
            return text(StatusCode::NOT_FOUND, "Not found: no such tunnel");
        }
    };
    if !tunnel.serves_assets {
        return text(StatusCode::NOT_FOUND, "This tunnel publishes no assets");
    }
    let request = AssetRequest {
        exchange: 0,
        head: method == Method::HEAD,
        path: path.to_owned(),
        headers: passed_on(&headers),
    };
    let mut fetch = match AssetFetch::open(&tunnel, request).await {
        Ok(f) => f,
        Err(OpenError::Gone) => {
            return text(StatusCode::BAD_GATEWAY, "The bridge went away");
        }
        Err(OpenError::Busy | OpenError::PrincipalBusy) => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many asset requests on this tunnel; try again",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    match tokio::time::timeout(ASSET_TIMEOUT, fetch.answer()).await {
        Ok(Some(answer)) => respond(name, answer),
        Ok(None) => text(StatusCode::BAD_GATEWAY, "The bridge went away"),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            "The local asset server did not answer in time",
        ),
    }
}

/// The tunnel name and the path (with its query) below `/<name>/assets`, as sent (still
/// percent-encoded: the asset origin decodes it).
fn split(uri: &Uri) -> Option<(&str, String)> {
    let rest = uri.path().strip_prefix('/')?;
    let (name, tail) = rest.split_once('/')?;
    if !protocol::valid_tunnel_name(name) {
        return None;
    }
    let below = tail.strip_prefix("assets")?;
    if !below.starts_with('/') {
        return None;
    }
    Some(match uri.query() {
        Some(q) => (name, format!("{below}?{q}")),
        None => (name, below.to_owned()),
    })
}

/// The request headers passed on, lowercase, with values a bounded length.
fn passed_on(headers: &HeaderMap) -> Vec<(String, String)> {
    REQUEST_HEADERS
        .iter()
        .filter_map(|name| {
            let v = headers.get(name)?.to_str().ok()?;
            (v.len() <= MAX_HEADER_VALUE).then(|| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// The HTTP answer for the bridge's asset answer. A redirect's `Location` comes as a path
/// below `/<name>/assets` (or relative); any other is dropped.
fn respond(tunnel: &str, answer: protocol::AssetResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = Response::new(Body::from(answer.body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (name, value) in &answer.headers {
        let Some(known) = RESPONSE_HEADERS.iter().find(|k| k.as_str() == name) else {
            continue;
        };
        let value = if *known == header::LOCATION {
            match value.as_bytes() {
                [b'/', b'/', ..] => continue,
                [b'/', ..] => format!("/{tunnel}/assets{value}"),
                _ if value.contains(':') => continue,
                _ => value.clone(),
            }
        } else {
            value.clone()
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(known.clone(), v);
        }
    }
    secure(h);
    r
}

/// The headers every asset answer carries: the browser must not guess types, a document
/// opened from here gets no access to the relay's origin (its pages and cookies), and a
/// widget on another origin may load it (scripts of `type=module` and fonts need CORS).
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn text(status: StatusCode, message: &'static str) -> Response {
    let mut r = (status, message).into_response();
    secure(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn the_path_below_assets_is_kept_as_sent() {
        let u = uri("/my-app/assets/js/app.js?v=3");
        assert_eq!(split(&u), Some(("my-app", "/js/app.js?v=3".into())));
        let u = uri("/my-app/assets/");
        assert_eq!(split(&u), Some(("my-app", "/".into())));
        let u = uri("/my-app/assets/a%20b/..%2f..%2fx");
        assert_eq!(split(&u), Some(("my-app", "/a%20b/..%2f..%2fx".into())));
        for bad in ["/my-app/assetsx/a", "/NOPE!/assets/a", "/my-app/mcp", "/"] {
            assert_eq!(split(&uri(bad)), None, "{bad}");
        }
    }

    #[test]
    fn only_known_headers_pass_and_the_answer_is_fenced() {
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"v1\""));
        req.insert(
            header::COOKIE,
            HeaderValue::from_static("relay_session=secret"),
        );
        req.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert_eq!(
            passed_on(&req),
            vec![("if-none-match".to_owned(), "\"v1\"".to_owned())]
        );

        let moved = respond(
            "my-app",
            protocol::AssetResponse {
                exchange: 1,
                status: 301,
                headers: vec![("location".into(), "/dir/".into())],
                body: bytes::Bytes::new(),
            },
        );
        assert_eq!(moved.headers()[header::LOCATION], "/my-app/assets/dir/");
        for elsewhere in ["//evil.example/", "https://evil.example/"] {
            let r = respond(
                "my-app",
                protocol::AssetResponse {
                    exchange: 1,
                    status: 302,
                    headers: vec![("location".into(), elsewhere.into())],
                    body: bytes::Bytes::new(),
                },
            );
            assert!(r.headers().get(header::LOCATION).is_none(), "{elsewhere}");
        }

        let r = respond(
            "my-app",
            protocol::AssetResponse {
                exchange: 1,
                status: 200,
                headers: vec![
                    ("content-type".into(), "text/html".into()),
                    ("set-cookie".into(), "relay_session=evil".into()),
                    ("access-control-allow-credentials".into(), "true".into()),
                    ("etag".into(), "bad\nvalue".into()),
                ],
                body: bytes::Bytes::from_static(b"<script>alert(1)</script>"),
            },
        );
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html");
        assert!(h.get(header::SET_COOKIE).is_none());
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(h.get(header::ETAG).is_none(), "an invalid value is dropped");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "sandbox");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
