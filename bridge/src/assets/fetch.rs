//! Answers the relay's asset requests from the published local origins: only those
//! origins (a path cannot name another host), `GET`/`HEAD` only, no redirects followed,
//! at most `max_body` bytes and [`FETCH_TIMEOUT`] per file.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::{AssetRequest, AssetResponse};
use url::Url;

use super::AssetOrigin;
use crate::upstream::address;

/// Longest wait for one file from the asset server (the relay gives up a little later).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(25);
/// Longest wait for a connection to the asset server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Response headers passed to the relay.
const PASSED: [&str; 9] = [
    "content-type",
    "cache-control",
    "etag",
    "last-modified",
    "content-range",
    "accept-ranges",
    "content-language",
    "location",
    "content-length",
];

/// One published origin with its client.
struct Mount {
    origin: AssetOrigin,
    client: reqwest::Client,
}

/// The asset origins of one tunnel, ready to fetch from.
pub struct AssetServer {
    mounts: Vec<Mount>,
    max_body: usize,
}

impl std::fmt::Debug for AssetServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origins: Vec<String> = self.mounts.iter().map(|m| m.origin.origin_str()).collect();
        f.debug_struct("AssetServer")
            .field("origins", &origins)
            .finish()
    }
}

impl AssetServer {
    /// Resolves and checks each origin's host (local addresses only unless
    /// `allow_remote`, as for upstreams); files larger than `max_body` are refused.
    pub fn new(
        origins: &[AssetOrigin],
        allow_remote: bool,
        max_body: usize,
    ) -> Result<Self, String> {
        let mut mounts = Vec::new();
        for o in origins {
            let (_, addrs) =
                address::resolve(&o.origin, allow_remote).map_err(|e| format!("assets: {e}"))?;
            let client = address::pinned_client(&o.origin, &addrs, CONNECT_TIMEOUT)?;
            mounts.push(Mount {
                origin: o.clone(),
                client,
            });
        }
        Ok(Self { mounts, max_body })
    }

    /// The answer to one asset request.
    pub async fn answer(&self, req: AssetRequest) -> AssetResponse {
        let exchange = req.exchange;
        let reply = |status: u16, text: &str| AssetResponse {
            exchange,
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(format!("{text}\n")),
        };
        let Some((mount, url)) = self.locate(&req.path) else {
            return reply(404, "Not found: no published asset origin has this path");
        };
        let method = if req.head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let mut request = mount.client.request(method, url).timeout(FETCH_TIMEOUT);
        for (name, value) in &req.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut resp = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return reply(504, "The local asset server did not answer in time");
            }
            Err(e) => {
                tracing::debug!("asset fetch failed: {}", crate::error_text::error_chain(&e));
                return reply(502, "The local asset server is not reachable");
            }
        };
        let status = resp.status().as_u16();
        let headers = passed_headers(&mount.origin, resp.headers());
        if req.head {
            return AssetResponse {
                exchange,
                status,
                headers,
                body: Bytes::new(),
            };
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return reply(502, &self.too_large());
        }
        let mut body = BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return reply(502, &self.too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return reply(504, "The local asset server did not answer in time");
                }
                Err(_) => return reply(502, "The local asset server broke off its answer"),
            }
        }
        let headers = headers
            .into_iter()
            .filter(|(n, _)| n != "content-length")
            .collect();
        AssetResponse {
            exchange,
            status,
            headers,
            body: body.freeze(),
        }
    }

    fn too_large(&self) -> String {
        format!(
            "The asset is larger than {} bytes, the most the tunnel carries",
            self.max_body
        )
    }

    /// The mount serving `path` (below `/<name>/assets`) and the URL on its origin.
    fn locate(&self, path: &str) -> Option<(&Mount, Url)> {
        let mount = self.mounts.iter().find(|m| match &m.origin.mount {
            None => true,
            Some(name) => path
                .strip_prefix('/')
                .and_then(|p| p.strip_prefix(name.as_str()))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?'])),
        })?;
        let rest = &path[mount.origin.mount_path().len()..];
        let rest = if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        };
        let origin = mount.origin.origin_str();
        let url = Url::parse(&format!("{origin}{rest}")).ok()?;
        // Whatever the path holds, the file comes from this origin.
        (url.origin() == mount.origin.origin.origin() && url.fragment().is_none())
            .then_some((mount, url))
    }
}

/// The headers passed to the relay: a `Location` only on the same origin, as a path below
/// the mount (the relay puts `/<name>/assets` in front of it).
fn passed_headers(
    origin: &AssetOrigin,
    headers: &reqwest::header::HeaderMap,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in PASSED {
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if name == "location" {
            if let Some(path) = local_location(origin, value) {
                out.push((name.to_owned(), path));
            }
            continue;
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    if !out.iter().any(|(n, _)| n == "content-type") {
        out.push(("content-type".into(), "application/octet-stream".into()));
    }
    out
}

/// A redirect's target as a path below `/<name>/assets`, if it stays on the origin;
/// a relative one (`next/`) is kept as it is.
fn local_location(origin: &AssetOrigin, value: &str) -> Option<String> {
    if value.starts_with("//") {
        return None;
    }
    if value.starts_with('/') {
        return Some(format!("{}{value}", origin.mount_path()));
    }
    match Url::parse(value) {
        Ok(u) if u.origin() == origin.origin.origin() => {
            let mut path = u.path().to_owned();
            if let Some(q) = u.query() {
                path = format!("{path}?{q}");
            }
            Some(format!("{}{path}", origin.mount_path()))
        }
        Ok(_) => None,
        Err(_) => Some(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(mounts: &[(Option<&str>, &str)]) -> AssetServer {
        let origins: Vec<AssetOrigin> = mounts
            .iter()
            .map(|(m, u)| AssetOrigin {
                mount: m.map(str::to_owned),
                origin: super::super::parse_origin(u).unwrap(),
            })
            .collect();
        AssetServer::new(&origins, false, 1024).expect("local origins")
    }

    #[test]
    fn a_path_never_leaves_its_origin() {
        let s = server(&[(None, "http://127.0.0.1:4444")]);
        for (path, want) in [
            ("/app.js?v=2", "http://127.0.0.1:4444/app.js?v=2"),
            ("//evil.example/x", "http://127.0.0.1:4444//evil.example/x"),
            ("/@evil.example/x", "http://127.0.0.1:4444/@evil.example/x"),
            ("/../../etc/passwd", "http://127.0.0.1:4444/etc/passwd"),
            ("/", "http://127.0.0.1:4444/"),
        ] {
            let (_, url) = s.locate(path).expect(path);
            assert_eq!(url.as_str(), want, "{path}");
        }
        assert!(s.locate("/x#frag").is_none());
    }

    #[test]
    fn members_own_their_path_segment() {
        let s = server(&[
            (Some("maps"), "http://127.0.0.1:4444"),
            (Some("notes"), "http://localhost:5555"),
        ]);
        let (_, url) = s.locate("/maps/tiles/1.png").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4444/tiles/1.png");
        let (_, url) = s.locate("/notes").unwrap();
        assert_eq!(url.as_str(), "http://localhost:5555/");
        assert!(s.locate("/mapsx/a").is_none());
        assert!(s.locate("/other/a").is_none());
    }

    #[test]
    fn remote_origins_are_refused_by_default() {
        let o = [AssetOrigin {
            mount: None,
            origin: super::super::parse_origin("http://93.184.215.14").unwrap(),
        }];
        let err = AssetServer::new(&o, false, 1024).unwrap_err();
        assert!(
            err.contains("neither loopback nor a private network"),
            "{err}"
        );
        assert!(AssetServer::new(&o, true, 1024).is_ok());
    }

    #[test]
    fn redirects_stay_below_the_mount() {
        let o = AssetOrigin {
            mount: Some("maps".into()),
            origin: super::super::parse_origin("http://127.0.0.1:4444").unwrap(),
        };
        assert_eq!(local_location(&o, "/dir/").as_deref(), Some("/maps/dir/"));
        assert_eq!(
            local_location(&o, "http://127.0.0.1:4444/a?b=1").as_deref(),
            Some("/maps/a?b=1")
        );
        assert_eq!(local_location(&o, "next/").as_deref(), Some("next/"));
        assert_eq!(local_location(&o, "https://evil.example/"), None);
        assert_eq!(local_location(&o, "//evil.example/"), None);
    }
}
