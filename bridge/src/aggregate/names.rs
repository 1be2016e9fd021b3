//! The public names of an aggregated tunnel's tools and prompts: each member's names
//! prefixed with the member's name, in the form every hosted client accepts (OpenAI
//! function names: `[a-zA-Z0-9_-]`, 1 to 64 characters), and the way back from a public
//! name to its member and the member's own name.
//!
//! The rules, deterministic whatever order the members answer in:
//! - the public name is `<member>_<name>`, every character outside `[a-zA-Z0-9_-]`
//!   replaced by `_`;
//! - entries are taken in the order of (member, name); the first to claim a public name
//!   keeps it, and a later entry with the same public name (two names that differ only in
//!   replaced characters), or a name longer than 64 characters, gets a shortened name
//!   ending in `_` and 8 hex digits of a SHA-256 of the member and the original name, which
//!   is unique for all practical purposes;
//! - every such change is reported ([`Renamed`]), for the owner's log and `bridge doctor`.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// Longest public name (OpenAI's limit for function names).
pub const MAX_NAME: usize = 64;

/// Why a public name is not simply `<member>_<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renamed {
    /// `<member>_<name>` (with characters replaced) is longer than [`MAX_NAME`].
    TooLong {
        /// The member.
        member: String,
        /// The member's name for it.
        name: String,
        /// The public name given instead.
        public: String,
    },
    /// Another entry took `<member>_<name>` first.
    Collision {
        /// The member.
        member: String,
        /// The member's name for it.
        name: String,
        /// The public name of the entry that took it.
        taken: String,
        /// The public name given instead.
        public: String,
    },
}

/// The public names of one kind of entries (tools, or prompts) of all members.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NameMap {
    /// Public name → (member, the member's name).
    to_member: BTreeMap<String, (String, String)>,
    /// (member, the member's name) → public name.
    to_public: BTreeMap<(String, String), String>,
    /// What was not simply prefixed.
    renamed: Vec<Renamed>,
}

impl NameMap {
    /// The public names of `entries` (member, the member's name); duplicates of the same
    /// entry count once.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let sorted: BTreeSet<(&str, &str)> = entries.into_iter().collect();
        let mut map = NameMap::default();
        for (member, name) in sorted {
            let plain = format!("{}_{}", clean(member), clean(name));
            let public = if plain.len() > MAX_NAME {
                let public = hashed(&plain, member, name);
                map.renamed.push(Renamed::TooLong {
                    member: member.to_owned(),
                    name: name.to_owned(),
                    public: public.clone(),
                });
                public
            } else if map.to_member.contains_key(&plain) {
                let public = hashed(&plain, member, name);
                map.renamed.push(Renamed::Collision {
                    member: member.to_owned(),
                    name: name.to_owned(),
                    taken: plain,
                    public: public.clone(),
                });
                public
            } else {
                plain
            };
            map.to_member
                .insert(public.clone(), (member.to_owned(), name.to_owned()));
            map.to_public
                .insert((member.to_owned(), name.to_owned()), public);
        }
        map
    }

    /// The member and the member's own name behind a public name.
    pub fn member_of(&self, public: &str) -> Option<(&str, &str)> {
        self.to_member
            .get(public)
            .map(|(m, n)| (m.as_str(), n.as_str()))
    }

    /// The public name of a member's entry.
    pub fn public(&self, member: &str, name: &str) -> Option<&str> {
        self.to_public
            .get(&(member.to_owned(), name.to_owned()))
            .map(String::as_str)
    }

    /// The entries that were not simply prefixed, in the order of (member, name).
    pub fn renamed(&self) -> &[Renamed] {
        &self.renamed
    }
}

/// `s` with every character outside `[a-zA-Z0-9_-]` replaced by `_`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `plain` cut to leave room for `_` and 8 hex digits of the SHA-256 of the member and the
/// original name.
fn hashed(plain: &str, member: &str, name: &str) -> String {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    let digest = hex::encode(&h.finalize()[..4]);
    // `plain` is ASCII: any byte index is a character boundary.
    let keep = plain.len().min(MAX_NAME - 1 - digest.len());
    format!("{}_{digest}", &plain[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (1..=MAX_NAME).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn names_are_prefixed_and_found_again() {
        let m = NameMap::new([("files", "read_file"), ("github", "create-issue")]);
        assert_eq!(m.public("files", "read_file"), Some("files_read_file"));
        assert_eq!(
            m.public("github", "create-issue"),
            Some("github_create-issue")
        );
        assert_eq!(
            m.member_of("github_create-issue"),
            Some(("github", "create-issue"))
        );
        assert_eq!(m.member_of("create-issue"), None);
        assert!(m.renamed().is_empty());
    }

    #[test]
    fn characters_other_clients_refuse_are_replaced() {
        let m = NameMap::new([("notes", "search.notes v2/ü")]);
        let public = m.public("notes", "search.notes v2/ü").unwrap();
        assert_eq!(public, "notes_search_notes_v2__");
        assert_eq!(m.member_of(public), Some(("notes", "search.notes v2/ü")));
    }

    #[test]
    fn collisions_are_resolved_the_same_whatever_the_order() {
        let a = NameMap::new([("db", "query.run"), ("db", "query_run")]);
        let b = NameMap::new([("db", "query_run"), ("db", "query.run")]);
        assert_eq!(a, b, "the order of the answers does not matter");
        // "query.run" sorts first and keeps the plain name.
        assert_eq!(a.public("db", "query.run"), Some("db_query_run"));
        let other = a.public("db", "query_run").unwrap();
        assert_ne!(other, "db_query_run");
        assert!(valid(other), "{other}");
        assert_eq!(a.member_of(other), Some(("db", "query_run")));
        assert!(matches!(
            a.renamed(),
            [Renamed::Collision { taken, .. }] if taken == "db_query_run"
        ));
    }

    #[test]
    fn long_names_are_shortened_uniquely_and_reported() {
        let long = "x".repeat(80);
        let longer = format!("{long}y");
        let m = NameMap::new([("server", long.as_str()), ("server", longer.as_str())]);
        let (p1, p2) = (
            m.public("server", &long).unwrap(),
            m.public("server", &longer).unwrap(),
        );
        assert!(valid(p1) && valid(p2), "{p1} {p2}");
        assert_eq!(p1.len(), MAX_NAME);
        assert_ne!(p1, p2, "two long names stay apart");
        assert_eq!(m.member_of(p2), Some(("server", longer.as_str())));
        assert_eq!(m.renamed().len(), 2);
        // A name of exactly 64 characters is kept.
        let fits = "y".repeat(MAX_NAME - "server_".len());
        let m = NameMap::new([("server", fits.as_str())]);
        assert_eq!(m.public("server", &fits).unwrap().len(), MAX_NAME);
        assert!(m.renamed().is_empty());
    }

    #[test]
    fn every_public_name_is_valid_and_maps_back() {
        let members = ["a", "files", "my-server", "Ω"];
        let names = ["", "t", "read file", "x/y/z", &"n".repeat(70), "ünï", "a_b"];
        let entries: Vec<(&str, &str)> = members
            .iter()
            .flat_map(|m| names.iter().map(move |n| (*m, *n)))
            .collect();
        let m = NameMap::new(entries.iter().copied());
        let mut seen = BTreeSet::new();
        for (member, name) in &entries {
            let p = m.public(member, name).unwrap();
            assert!(valid(p), "{p:?}");
            assert!(seen.insert(p.to_owned()), "{p} given twice");
            assert_eq!(m.member_of(p), Some((*member, *name)));
        }
    }
}
