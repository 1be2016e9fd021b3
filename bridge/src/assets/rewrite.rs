//! Replaces local asset origins by their public address in what the servers send, so a
//! widget built for `http://127.0.0.1:4444` works from the relay:
//!
//! - in the widget CSP a server declares (`openai/widgetCSP`'s `resource_domains`,
//!   `connect_domains`, …, MCP Apps `ui.csp`'s `resourceDomains`, `connectDomains`, …) an
//!   entry naming the local origin becomes the relay's origin (CSP lists origins; one with
//!   a path becomes the public path);
//! - anywhere else (the widget HTML of a `resources/read`, a tool's `_meta`, text) a URL
//!   on the local origin becomes the same path under `https://relay/<name>/assets`.
//!
//! Only messages that mention an asset origin's host are parsed; the rest pass untouched.

use bytes::Bytes;
use serde_json::Value;
use url::Url;

use super::AssetOrigin;

/// Keys of the widget CSP lists (Apps SDK `openai/widgetCSP`, MCP Apps `ui.csp`).
const CSP_KEYS: &[&str] = &[
    "connect_domains",
    "resource_domains",
    "frame_domains",
    "redirect_domains",
    "connectDomains",
    "resourceDomains",
    "frameDomains",
    "baseUriDomains",
];

/// One local origin and where it is published.
#[derive(Debug)]
struct Rule {
    /// `http://127.0.0.1:4444` (no trailing slash).
    local: String,
    /// `https://relay.example/<name>/assets[/<member>]`.
    public: String,
}

/// Rewrites the local asset origins of one tunnel.
#[derive(Debug)]
pub struct Rewriter {
    rules: Vec<Rule>,
    /// The relay's origin (`https://relay.example`).
    public_origin: String,
    /// What a message must contain to be looked at (the origins' `host:port`).
    needles: Vec<String>,
}

impl Rewriter {
    /// The rewriter for `origins` of the tunnel whose public MCP endpoint is `mcp_url`
    /// (`https://relay.example/<name>/mcp`); `None` when there are none or the URL is not
    /// one.
    pub fn new(origins: &[AssetOrigin], mcp_url: &str) -> Option<Self> {
        if origins.is_empty() {
            return None;
        }
        let url = Url::parse(mcp_url).ok()?;
        let public_origin = url.origin().ascii_serialization();
        let root = format!("{}/assets", mcp_url.strip_suffix("/mcp")?);
        let mut rules: Vec<Rule> = Vec::new();
        let mut needles = Vec::new();
        for o in origins {
            let public = format!("{root}{}", o.mount_path());
            for local in spellings(&o.origin) {
                if rules.iter().any(|r| r.local == local) {
                    continue;
                }
                let authority = local.split_once("://").map_or("", |(_, a)| a).to_owned();
                if !needles.contains(&authority) {
                    needles.push(authority);
                }
                rules.push(Rule {
                    local,
                    public: public.clone(),
                });
            }
        }
        Some(Self {
            rules,
            public_origin,
            needles,
        })
    }

    /// `line` (JSON) with the local origins replaced, or `None` when it names none.
    pub fn rewrite(&self, line: &[u8]) -> Option<Bytes> {
        let mentions = self
            .needles
            .iter()
            .any(|n| memchr::memmem::find(line, n.as_bytes()).is_some());
        if !mentions {
            return None;
        }
        let mut v: Value = serde_json::from_slice(line).ok()?;
        if !self.walk(&mut v, false) {
            return None;
        }
        serde_json::to_vec(&v).ok().map(Bytes::from)
    }

    /// Rewrites the strings of `v`; `csp`: `v` is a CSP list. Whether anything changed.
    fn walk(&self, v: &mut Value, csp: bool) -> bool {
        match v {
            Value::String(s) => {
                let new = if csp {
                    self.csp_entry(s)
                } else {
                    self.replace_urls(s)
                };
                match new {
                    Some(n) => {
                        *s = n;
                        true
                    }
                    None => false,
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.walk(item, csp) | changed),
            Value::Object(map) => map.iter_mut().fold(false, |changed, (k, item)| {
                let csp = CSP_KEYS.contains(&k.as_str()) && item.is_array();
                self.walk(item, csp) | changed
            }),
            _ => false,
        }
    }

    /// A CSP entry on a local origin: the relay's origin (the public path if it has one).
    fn csp_entry(&self, entry: &str) -> Option<String> {
        let bare = entry.strip_suffix('/').unwrap_or(entry);
        for r in &self.rules {
            if bare == r.local {
                return Some(self.public_origin.clone());
            }
            if let Some(path) = entry.strip_prefix(&r.local)
                && path.starts_with('/')
            {
                return Some(format!("{}{path}", r.public));
            }
        }
        None
    }

    /// `s` with every URL on a local origin moved under its public path.
    fn replace_urls(&self, s: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for r in &self.rules {
            let current = out.as_deref().unwrap_or(s);
            if let Some(replaced) = replace_origin(current, &r.local, &r.public) {
                out = Some(replaced);
            }
        }
        out
    }
}

/// `s` with `local` replaced by `public` where it stands as a whole origin (not the start
/// of `http://127.0.0.1:44445` or `http://localhost.example`).
fn replace_origin(s: &str, local: &str, public: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    let mut changed = false;
    while let Some(at) = rest.find(local) {
        let after = &rest[at + local.len()..];
        let whole = after
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || ".:-_@".contains(c)));
        out.push_str(&rest[..at]);
        out.push_str(if whole { public } else { local });
        changed |= whole;
        rest = after;
    }
    if !changed {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// How pages may spell `origin`: as configured, and for loopback also by the other name
/// (`localhost` and `127.0.0.1`).
fn spellings(origin: &Url) -> Vec<String> {
    let written = origin.origin().ascii_serialization();
    let mut all = vec![written.clone()];
    let host = origin.host_str().unwrap_or_default();
    let other = match host {
        "localhost" => Some("127.0.0.1"),
        "127.0.0.1" => Some("localhost"),
        _ => None,
    };
    if let Some(other) = other {
        let mut u = origin.clone();
        if u.set_host(Some(other)).is_ok() {
            all.push(u.origin().ascii_serialization());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin(mount: Option<&str>, url: &str) -> AssetOrigin {
        AssetOrigin {
            mount: mount.map(str::to_owned),
            origin: super::super::parse_origin(url).unwrap(),
        }
    }

    fn rewriter() -> Rewriter {
        Rewriter::new(
            &[origin(None, "http://127.0.0.1:4444")],
            "https://relay.example/my-app/mcp",
        )
        .unwrap()
    }

    fn rewritten(r: &Rewriter, v: Value) -> Value {
        let line = serde_json::to_vec(&v).unwrap();
        serde_json::from_slice(&r.rewrite(&line).expect("changed")).unwrap()
    }

    #[test]
    fn widget_csp_domains_become_the_relay_origin() {
        let r = rewriter();
        let read = json!({"jsonrpc": "2.0", "id": 4, "result": {"contents": [{
            "uri": "ui://widget/board.html",
            "mimeType": "text/html+skybridge",
            "text": "<script type=\"module\" src=\"http://127.0.0.1:4444/app.js\"></script><link href='http://localhost:4444/app.css'>",
            "_meta": {
                "openai/widgetCSP": {
                    "resource_domains": ["http://127.0.0.1:4444", "https://cdn.example"],
                    "connect_domains": ["http://localhost:4444/"]
                },
                "ui": {"csp": {"resourceDomains": ["http://127.0.0.1:4444"],
                               "connectDomains": ["http://127.0.0.1:4444/api/"]}}
            }
        }]}});
        let out = rewritten(&r, read);
        let c = &out["result"]["contents"][0];
        assert_eq!(
            c["text"],
            "<script type=\"module\" src=\"https://relay.example/my-app/assets/app.js\"></script><link href='https://relay.example/my-app/assets/app.css'>"
        );
        let csp = &c["_meta"]["openai/widgetCSP"];
        assert_eq!(
            csp["resource_domains"],
            json!(["https://relay.example", "https://cdn.example"])
        );
        assert_eq!(csp["connect_domains"], json!(["https://relay.example"]));
        let ui = &c["_meta"]["ui"]["csp"];
        assert_eq!(ui["resourceDomains"], json!(["https://relay.example"]));
        assert_eq!(
            ui["connectDomains"],
            json!(["https://relay.example/my-app/assets/api/"])
        );
        assert_eq!(c["uri"], "ui://widget/board.html", "the rest is kept");
    }

    #[test]
    fn other_origins_and_unrelated_messages_are_left_alone() {
        let r = rewriter();
        for untouched in [
            json!({"id": 1, "result": {"tools": []}}),
            json!({"id": 1, "result": {"text": "http://127.0.0.1:44445/x and http://127.0.0.1:4444.evil.example/"}}),
            json!({"id": 1, "result": {"text": "127.0.0.1:4444 without a scheme"}}),
        ] {
            let line = serde_json::to_vec(&untouched).unwrap();
            assert_eq!(r.rewrite(&line), None, "{untouched}");
        }
        assert_eq!(r.rewrite(b"not json 127.0.0.1:4444"), None);
    }

    #[test]
    fn each_member_origin_goes_under_its_member() {
        let r = Rewriter::new(
            &[
                origin(Some("maps"), "http://127.0.0.1:4444"),
                origin(Some("notes"), "http://127.0.0.1:5555"),
                origin(Some("again"), "http://127.0.0.1:5555"),
            ],
            "http://127.0.0.1:8080/desk/mcp",
        )
        .unwrap();
        let out = rewritten(
            &r,
            json!({"text": "http://127.0.0.1:4444/a.js http://localhost:5555/b.js",
                   "resource_domains": ["http://127.0.0.1:5555"]}),
        );
        assert_eq!(
            out["text"],
            "http://127.0.0.1:8080/desk/assets/maps/a.js http://127.0.0.1:8080/desk/assets/notes/b.js"
        );
        assert_eq!(out["resource_domains"], json!(["http://127.0.0.1:8080"]));
    }

    #[test]
    fn nothing_to_rewrite_without_origins_or_a_public_url() {
        assert!(Rewriter::new(&[], "https://relay.example/x/mcp").is_none());
        let o = [origin(None, "http://127.0.0.1:4444")];
        assert!(Rewriter::new(&o, "not a url").is_none());
    }
}
