//! The public URIs of an aggregated tunnel's resources: a URI one member lists is kept as
//! it is; when several members list the same URI, the first by name keeps it and the
//! others get one naming the member: `ui://<member>/<the original, percent-encoded>` for a
//! ChatGPT Apps / MCP Apps template (which must stay `ui://`), and
//! `mcp-tunnel://<member>/<the original, percent-encoded>` for any other. Reads,
//! subscriptions and updates are mapped both ways.

use std::collections::HashMap;

/// Public URI ↔ (member, the member's URI).
#[derive(Debug, Default, Clone)]
pub struct UriMap {
    to_member: HashMap<String, (usize, String)>,
    to_public: HashMap<(usize, String), String>,
}

impl UriMap {
    /// The public URIs of `entries` (member index, member name, URI), taken in the order
    /// given: the first to list a URI keeps it.
    pub fn new<'a>(entries: impl IntoIterator<Item = (usize, &'a str, &'a str)>) -> Self {
        let mut map = UriMap::default();
        for (m, name, uri) in entries {
            if map.to_public.contains_key(&(m, uri.to_owned())) {
                continue;
            }
            let public = if map.to_member.contains_key(uri) {
                member_uri(name, uri)
            } else {
                uri.to_owned()
            };
            map.to_member.insert(public.clone(), (m, uri.to_owned()));
            map.to_public.insert((m, uri.to_owned()), public);
        }
        map
    }

    /// The member and its own URI behind a public URI.
    pub fn member_of(&self, public: &str) -> Option<(usize, &str)> {
        self.to_member.get(public).map(|(m, u)| (*m, u.as_str()))
    }

    /// The public URI of a member's URI (the URI itself when the map does not know it).
    pub fn public<'a>(&'a self, member: usize, uri: &'a str) -> &'a str {
        self.to_public
            .get(&(member, uri.to_owned()))
            .map_or(uri, String::as_str)
    }
}

/// A URI naming `member` in front of `uri`.
fn member_uri(member: &str, uri: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(uri.as_bytes()).collect();
    if uri.starts_with("ui://") {
        format!("ui://{member}/{encoded}")
    } else {
        format!("mcp-tunnel://{member}/{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_one_member_lists_is_kept_and_a_shared_one_names_the_member() {
        let m = UriMap::new([
            (0, "a-docs", "file:///readme"),
            (0, "a-docs", "ui://widget/board.html"),
            (1, "b-notes", "file:///readme"),
            (1, "b-notes", "ui://widget/board.html"),
            (1, "b-notes", "note://1"),
        ]);
        assert_eq!(m.public(0, "file:///readme"), "file:///readme");
        assert_eq!(m.public(1, "note://1"), "note://1");
        let shared = m.public(1, "file:///readme").to_owned();
        assert_eq!(shared, "mcp-tunnel://b-notes/file%3A%2F%2F%2Freadme");
        assert_eq!(m.member_of(&shared), Some((1, "file:///readme")));
        assert_eq!(m.member_of("file:///readme"), Some((0, "file:///readme")));
        let widget = m.public(1, "ui://widget/board.html").to_owned();
        assert!(widget.starts_with("ui://b-notes/"), "{widget}");
        assert_eq!(m.member_of(&widget), Some((1, "ui://widget/board.html")));
        assert_eq!(m.public(5, "x://unknown"), "x://unknown");
        assert_eq!(m.member_of("x://unknown"), None);
    }
}
