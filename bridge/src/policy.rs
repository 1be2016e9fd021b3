//! Desktop policy for one server: which tools remote clients see and may call, which
//! calls wait for the owner's approval, annotation overrides, local roots and the audit
//! log. Enforced in the bridge, so a compromised relay cannot widen it.
//! How users write a policy: `docs/guide/policy.md`.
//!
//! Tool patterns are globs matched against the whole tool name: `*` (any run of
//! characters), `?` (one character), `[abc]`, `[a-z]`, `[!abc]` / `[^abc]` (one character
//! of, or not of, a set) and `\x` (the character `x` itself). A `[` without its `]` is a
//! literal `[`, so every pattern is valid. Tool names are not paths: `/` is a character
//! like any other and `**` is `*`. The matcher is our own because path-glob libraries
//! differ on exactly that (`**/`, separators), match `?` and classes byte by byte rather
//! than by character, and reject patterns this syntax accepts (`{`, `[z-a]`, a final `\`).
//!
//! - A tool is *hidden* when `allow_tools` is not empty and matches none of its patterns,
//!   or when a `deny_tools` pattern matches it (deny wins). Hidden tools are removed from
//!   every `tools/list` answer, and calling one is refused as an unknown tool.
//! - `read_only_tools` / `destructive_tools` set the `readOnlyHint` / `destructiveHint`
//!   annotations of the tools they match in `tools/list` answers (destructive wins when a
//!   tool matches both). Hints only change whether clients ask their user before a call.
//! - `confirm_tools`: calls wait for the owner's `y`/`n` in the bridge's terminal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::roots::Root;

/// How long a call of a `confirm_tools` tool waits for the owner by default.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest confirmation timeout accepted (a day).
pub const MAX_CONFIRM_TIMEOUT_SECS: f64 = 86_400.0;
/// Size at which the audit log is rotated by default (10 MiB).
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 10 << 20;
/// Smallest rotation size accepted.
pub const MIN_AUDIT_MAX_BYTES: u64 = 1024;

/// A server's policy, as written in the bridge's configuration file (`[servers.NAME.policy]`)
/// or given with `bridge run` flags. Tool patterns are globs (`*`, `?`, `[abc]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Tools offered to clients (empty: all); others are hidden and refused when called.
    #[serde(default)]
    pub allow_tools: Vec<String>,
    /// Tools hidden from clients and refused when called (wins over `allow_tools`).
    #[serde(default)]
    pub deny_tools: Vec<String>,
    /// Tools whose calls wait until the owner approves them in the bridge's terminal.
    #[serde(default)]
    pub confirm_tools: Vec<String>,
    /// Tools announced with `readOnlyHint: true` (and `destructiveHint: false`).
    #[serde(default)]
    pub read_only_tools: Vec<String>,
    /// Tools announced with `destructiveHint: true` (and `readOnlyHint: false`).
    #[serde(default)]
    pub destructive_tools: Vec<String>,
    /// Directories reported to the server as its roots.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// Where the audit log (JSON lines) is written; none by default.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// Size at which the audit log is rotated, in bytes.
    #[serde(default)]
    pub audit_max_bytes: Option<u64>,
    /// How long a call of a `confirm_tools` tool waits for the owner, in seconds (120 by
    /// default); unanswered calls are declined.
    #[serde(default)]
    pub confirm_timeout_secs: Option<f64>,
}

/// A policy setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// `confirm_timeout_secs` out of range.
    #[error(
        "confirm_timeout_secs must be more than 0 and at most {MAX_CONFIRM_TIMEOUT_SECS} seconds"
    )]
    ConfirmTimeout,
    /// `audit_max_bytes` too small.
    #[error("audit_max_bytes must be at least {MIN_AUDIT_MAX_BYTES}")]
    AuditMaxBytes,
    /// The audit log cannot be opened for appending.
    #[error("audit log {}: {source}", path.display())]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A root directory that does not exist (or cannot be resolved).
    #[error("root {}: {source}", path.display())]
    Root {
        /// The directory as configured.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A root that cannot be written as a `file://` URI.
    #[error("root {} is not an absolute path", .0.display())]
    RootNotAbsolute(PathBuf),
}

impl PolicyConfig {
    /// Whether the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.allow_tools.is_empty()
            && self.deny_tools.is_empty()
            && self.confirm_tools.is_empty()
            && self.read_only_tools.is_empty()
            && self.destructive_tools.is_empty()
            && self.roots.is_empty()
            && self.audit_log.is_none()
    }

    /// The confirmation timeout ([`DEFAULT_CONFIRM_TIMEOUT`] when unset or out of range).
    pub fn confirm_timeout(&self) -> Duration {
        match self.confirm_timeout_secs {
            Some(s) if valid_timeout(s) => Duration::from_secs_f64(s),
            _ => DEFAULT_CONFIRM_TIMEOUT,
        }
    }

    /// The audit log's rotation size ([`DEFAULT_AUDIT_MAX_BYTES`] when unset).
    pub fn audit_max_bytes(&self) -> u64 {
        self.audit_max_bytes
            .unwrap_or(DEFAULT_AUDIT_MAX_BYTES)
            .max(MIN_AUDIT_MAX_BYTES)
    }

    /// Checks what can go wrong before the bridge starts serving: the numbers, the roots
    /// (they must exist), and that the audit log can be opened for appending (it is
    /// created if missing).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.confirm_timeout_secs.is_some_and(|s| !valid_timeout(s)) {
            return Err(PolicyError::ConfirmTimeout);
        }
        if self
            .audit_max_bytes
            .is_some_and(|n| n < MIN_AUDIT_MAX_BYTES)
        {
            return Err(PolicyError::AuditMaxBytes);
        }
        self.resolve_roots()?;
        if let Some(path) = &self.audit_log {
            crate::audit::open_append(path).map_err(|source| PolicyError::AuditLog {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// This policy with the settings `flags` gives replacing its own: a list given by
    /// flags replaces this one's list, a value given replaces this one's value.
    pub fn overridden_by(mut self, flags: &PolicyConfig) -> PolicyConfig {
        let lists = [
            (&flags.allow_tools, &mut self.allow_tools),
            (&flags.deny_tools, &mut self.deny_tools),
            (&flags.confirm_tools, &mut self.confirm_tools),
            (&flags.read_only_tools, &mut self.read_only_tools),
            (&flags.destructive_tools, &mut self.destructive_tools),
        ];
        for (given, list) in lists {
            if !given.is_empty() {
                list.clone_from(given);
            }
        }
        if !flags.roots.is_empty() {
            self.roots.clone_from(&flags.roots);
        }
        if flags.audit_log.is_some() {
            self.audit_log.clone_from(&flags.audit_log);
        }
        self.audit_max_bytes = flags.audit_max_bytes.or(self.audit_max_bytes);
        self.confirm_timeout_secs = flags.confirm_timeout_secs.or(self.confirm_timeout_secs);
        self
    }

    /// The `roots` as the bridge reports them (canonical `file://` URIs).
    pub fn resolve_roots(&self) -> Result<Vec<Root>, PolicyError> {
        self.roots.iter().map(|p| root_of(p)).collect()
    }
}

fn valid_timeout(s: f64) -> bool {
    s.is_finite() && s > 0.0 && s <= MAX_CONFIRM_TIMEOUT_SECS
}

/// A directory as a root: canonicalized, as a `file://` URI, named by its last component.
pub fn root_of(path: &Path) -> Result<Root, PolicyError> {
    let abs = std::fs::canonicalize(path).map_err(|source| PolicyError::Root {
        path: path.to_path_buf(),
        source,
    })?;
    let uri = Url::from_file_path(&abs).map_err(|_| PolicyError::RootNotAbsolute(abs.clone()))?;
    Ok(Root {
        uri: uri.to_string(),
        name: abs.file_name().map(|n| n.to_string_lossy().into_owned()),
    })
}

/// Adds `extra` roots to `roots`, skipping those already there (same URI).
pub fn merge_roots(roots: &mut Vec<Root>, extra: Vec<Root>) {
    for r in extra {
        if !roots.iter().any(|x| x.uri == r.uri) {
            roots.push(r);
        }
    }
}

/// The policy flags of `bridge run` (one server).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// Offer only the tools matching this glob (repeatable; default: all tools). Other
    /// tools are hidden from tools/list and refused when called.
    #[arg(long = "allow-tool", value_name = "GLOB")]
    pub allow_tools: Vec<String>,
    /// Hide the tools matching this glob and refuse their calls (repeatable; wins over
    /// --allow-tool).
    #[arg(long = "deny-tool", value_name = "GLOB")]
    pub deny_tools: Vec<String>,
    /// Hold calls of the tools matching this glob until you approve them in this terminal
    /// (repeatable).
    #[arg(long = "confirm-tool", value_name = "GLOB")]
    pub confirm_tools: Vec<String>,
    /// Announce the tools matching this glob as read-only (readOnlyHint), so clients such
    /// as ChatGPT do not ask their user before calling them (repeatable). Does not limit
    /// what the tool does.
    #[arg(long = "read-only-tool", value_name = "GLOB")]
    pub read_only_tools: Vec<String>,
    /// Announce the tools matching this glob as destructive (destructiveHint), so clients
    /// ask their user before calling them (repeatable).
    #[arg(long = "destructive-tool", value_name = "GLOB")]
    pub destructive_tools: Vec<String>,
    /// Append one JSON line per tool call to this file (never the arguments, only their
    /// SHA-256).
    #[arg(long, value_name = "FILE", value_parser = parse_audit_log)]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log when it reaches this size in bytes (default 10 MiB; three old
    /// files are kept as FILE.1 … FILE.3).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(MIN_AUDIT_MAX_BYTES..))]
    pub audit_max_bytes: Option<u64>,
    /// Seconds a call of a --confirm-tool tool waits for your answer before it is declined
    /// (default 120).
    #[arg(long, value_name = "S", value_parser = parse_timeout)]
    pub confirm_timeout_secs: Option<f64>,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if valid_timeout(v) {
        Ok(v)
    } else {
        Err(format!(
            "must be more than 0 and at most {MAX_CONFIRM_TIMEOUT_SECS}"
        ))
    }
}

fn parse_audit_log(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    crate::audit::open_append(&path).map_err(|e| format!("cannot open it for appending: {e}"))?;
    Ok(path)
}

impl PolicyArgs {
    /// The policy these flags describe.
    pub fn into_config(self) -> PolicyConfig {
        PolicyConfig {
            allow_tools: self.allow_tools,
            deny_tools: self.deny_tools,
            confirm_tools: self.confirm_tools,
            read_only_tools: self.read_only_tools,
            destructive_tools: self.destructive_tools,
            roots: Vec::new(),
            audit_log: self.audit_log,
            audit_max_bytes: self.audit_max_bytes,
            confirm_timeout_secs: self.confirm_timeout_secs,
        }
    }
}

// ----- globs ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// One given character.
    Lit(char),
    /// `?`: any one character.
    One,
    /// `*`: any run of characters.
    Star,
    /// `[…]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Tok {
    /// Whether this single-character token matches `c` (never called for `Star`).
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Lit(l) => *l == c,
            Tok::One => true,
            Tok::Star => false,
            Tok::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// A compiled tool-name pattern (see the module documentation for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Compiles a pattern; every pattern is valid.
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                    i += 1;
                }
                '?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                '\\' if i + 1 < chars.len() => {
                    toks.push(Tok::Lit(chars[i + 1]));
                    i += 2;
                }
                '[' => match class(&chars, i + 1) {
                    Some((tok, next)) => {
                        toks.push(tok);
                        i = next;
                    }
                    None => {
                        toks.push(Tok::Lit('['));
                        i += 1;
                    }
                },
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        Self { toks }
    }

    /// Whether the whole of `name` matches. Walks `name` by characters without copying
    /// it (this runs for every pattern on every `tools/call`); on a mismatch after a `*`,
    /// the `*` takes one more character and matching resumes after it, so a match costs
    /// at most name × pattern steps.
    pub fn matches(&self, name: &str) -> bool {
        let t = &self.toks;
        // `p`: the next token; `i`: the byte offset of the next character of `name`.
        let (mut p, mut i) = (0usize, 0usize);
        // Where to resume after the last `*`: (token after it, offset it took up to).
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = name[i..].chars().next() {
            match t.get(p) {
                Some(Tok::Star) => {
                    star = Some((p + 1, i));
                    p += 1;
                }
                Some(tok) if tok.matches(c) => {
                    p += 1;
                    i += c.len_utf8();
                }
                _ => match star {
                    Some((after, took)) => {
                        let one_more = name[took..].chars().next().map_or(1, char::len_utf8);
                        p = after;
                        i = took + one_more;
                        star = Some((after, i));
                    }
                    None => return false,
                },
            }
        }
        t[p..].iter().all(|tok| *tok == Tok::Star)
    }
}

/// Parses a `[…]` class whose body starts at `i`; the token and the index after `]`.
fn class(chars: &[char], mut i: usize) -> Option<(Tok, usize)> {
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        first = false;
        let (lo, next) = if c == '\\' {
            (*chars.get(i + 1)?, i + 2)
        } else {
            (c, i + 1)
        };
        if chars.get(next) == Some(&'-') && chars.get(next + 1).is_some_and(|c| *c != ']') {
            let hi = chars[next + 1];
            ranges.push((lo.min(hi), lo.max(hi)));
            i = next + 2;
        } else {
            ranges.push((lo, lo));
            i = next;
        }
    }
}

/// A list of patterns; matches when any of them does.
#[derive(Debug, Clone, Default)]
pub struct Globs(Vec<Glob>);

impl Globs {
    /// Compiles the patterns.
    pub fn new(patterns: &[String]) -> Self {
        Self(patterns.iter().map(|p| Glob::new(p)).collect())
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any pattern matches `name`.
    pub fn any(&self, name: &str) -> bool {
        self.0.iter().any(|g| g.matches(name))
    }
}

// ----- the compiled policy ----------------------------------------------------------------

/// An annotation override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// `readOnlyHint: true`, `destructiveHint: false`.
    ReadOnly,
    /// `destructiveHint: true`, `readOnlyHint: false`.
    Destructive,
}

/// A [`PolicyConfig`] compiled for the bridge's use.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Globs,
    deny: Globs,
    confirm: Globs,
    read_only: Globs,
    destructive: Globs,
    confirm_timeout: Duration,
}

impl Policy {
    /// Compiles a configuration.
    pub fn new(cfg: &PolicyConfig) -> Self {
        Self {
            allow: Globs::new(&cfg.allow_tools),
            deny: Globs::new(&cfg.deny_tools),
            confirm: Globs::new(&cfg.confirm_tools),
            read_only: Globs::new(&cfg.read_only_tools),
            destructive: Globs::new(&cfg.destructive_tools),
            confirm_timeout: cfg.confirm_timeout(),
        }
    }

    /// Whether `tools/list` answers are rewritten (tools hidden or annotated).
    pub fn rewrites_lists(&self) -> bool {
        !(self.allow.is_empty()
            && self.deny.is_empty()
            && self.read_only.is_empty()
            && self.destructive.is_empty())
    }

    /// Whether `tools/call` requests are checked (tools hidden or confirmed).
    pub fn checks_calls(&self) -> bool {
        !(self.allow.is_empty() && self.deny.is_empty() && self.confirm.is_empty())
    }

    /// Whether some calls wait for the owner's approval.
    pub fn confirms_calls(&self) -> bool {
        !self.confirm.is_empty()
    }

    /// Whether the policy does anything to requests and answers.
    pub fn is_active(&self) -> bool {
        self.rewrites_lists() || self.checks_calls()
    }

    /// Whether clients may see and call this tool.
    pub fn is_visible(&self, tool: &str) -> bool {
        (self.allow.is_empty() || self.allow.any(tool)) && !self.deny.any(tool)
    }

    /// Whether calls of this tool wait for the owner's approval.
    pub fn needs_confirmation(&self, tool: &str) -> bool {
        self.confirm.any(tool)
    }

    /// How long a call waits for the owner's approval.
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// The annotation override of a tool, if any.
    pub fn hint(&self, tool: &str) -> Option<Hint> {
        if self.destructive.any(tool) {
            Some(Hint::Destructive)
        } else if self.read_only.any(tool) {
            Some(Hint::ReadOnly)
        } else {
            None
        }
    }

    /// Applies the policy to a `tools/list` result (`{"tools": […], …}`): hidden tools
    /// are removed, overrides set. Returns whether anything changed.
    pub fn rewrite_tools(&self, result: &mut Value) -> bool {
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return false;
        };
        let before = tools.len();
        // A tool without a string name cannot be matched: it is kept only when nothing
        // is hidden by an allow list.
        tools.retain(|t| match t.get("name").and_then(Value::as_str) {
            Some(name) => self.is_visible(name),
            None => self.allow.is_empty(),
        });
        let mut changed = tools.len() != before;
        for t in tools.iter_mut() {
            let Some(hint) = t
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| self.hint(n))
            else {
                continue;
            };
            let Some(obj) = t.as_object_mut() else {
                continue;
            };
            let ann = obj
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if !ann.is_object() {
                *ann = Value::Object(Default::default());
            }
            let (ro, de) = match hint {
                Hint::ReadOnly => (true, false),
                Hint::Destructive => (false, true),
            };
            ann["readOnlyHint"] = Value::Bool(ro);
            ann["destructiveHint"] = Value::Bool(de);
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    use crate::test_flags::Only;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).matches(s)
    }

    #[test]
    fn globs() {
        assert!(m("echo", "echo"));
        assert!(!m("echo", "echo2"));
        assert!(!m("echo", "ech"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("test_*", "test_simple_text"));
        assert!(!m("test_*", "echo"));
        assert!(m("*_text", "test_simple_text"));
        assert!(m("*simple*", "test_simple_text"));
        assert!(m("t*t*t", "test_simple_text"));
        assert!(!m("t*t*x", "test_simple_text"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(m("ec?o", "echo"));
        assert!(!m("ec?o", "eco"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[ab]x", "cx"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[!a-c]x", "ax"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[", "["));
        assert!(m("x[y", "x[y"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("**a**", "a"));
        assert!(m("wr?te_*", "write_file"));
        assert!(m("ünï*", "ünïcode"));
        assert!(m("?", "é"));
        // Pathological patterns stay linear enough.
        let long = "a".repeat(2000);
        assert!(!m("*a*a*a*a*a*b", &long));
    }

    #[test]
    fn globs_are_case_sensitive() {
        assert!(!m("Echo", "echo"));
        assert!(!m("echo", "ECHO"));
        assert!(!m("[a-z]*", "Echo"));
        assert!(m("[A-Z]*", "Echo"));
    }

    #[test]
    fn globs_know_no_path_separators() {
        // `*` and `?` match `/` and `\` like any other character.
        assert!(m("a*", "a/b/c"));
        assert!(m("*", "x/y\\z"));
        assert!(m("a?c", "a/c"));
        assert!(m("a?c", "a\\c"));
        assert!(m("a/*/c", "a/b/c"));
        assert!(!m("a/*/c", "a/c"));
        // `**` is `*`: no "any number of directories".
        assert!(m("a/**/c", "a/b/x/c"));
        assert!(!m("a/**/c", "a/c"));
        assert!(!m("**/c", "c"));
        assert!(m("**/c", "x/c"));
        assert!(m("a/**", "a/"));
        assert!(!m("a/**", "a"));
        assert!(m("a***b", "ab"));
        // `/` and `\` are different characters.
        assert!(m("a\\\\b", "a\\b"));
        assert!(!m("a/b", "a\\b"));
        assert!(!m("a\\\\b", "a/b"));
        assert!(m("[/]", "/") && !m("[/]", "\\"));
    }

    #[test]
    fn globs_have_no_other_syntax() {
        // No alternatives, no POSIX classes: `{`, `,` and `}` are plain characters, and
        // `[[:alpha:]]` is the class of `[`, `:`, `a`, `l`, `p`, `h` followed by `]`.
        assert!(m("{a,b}", "{a,b}"));
        assert!(!m("{a,b}", "a"));
        assert!(m("x,y", "x,y"));
        assert!(m("[[:alpha:]]", "a]"));
        assert!(m("[[:alpha:]]", ":]"));
        assert!(!m("[[:alpha:]]", "a"));
        // `!` and `^` only negate at the start of a class.
        assert!(m("!a", "!a") && m("^a", "^a"));
        assert!(m("[a!]", "!") && m("[a^]", "^"));
    }

    #[test]
    fn every_pattern_is_valid() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        // A reversed range is the same range.
        assert!(m("[z-a]", "m"));
        assert!(!m("[z-a]", "A"));
        // A `\` at the end is itself.
        assert!(m("a\\", "a\\"));
        // Escapes inside a class.
        assert!(m("[\\]]", "]"));
        assert!(!m("[\\]]", "\\"));
        assert!(m("[\\-]", "-"));
        assert!(m("[-a]", "-") && m("[-a]", "a"));
        // Classes that never close are literal text.
        assert!(m("[]", "[]"));
        assert!(m("[!]", "[!]"));
        assert!(m("a[\\", "a[\\"));
        assert!(m("[a-", "[a-"));
    }

    #[test]
    fn globs_match_characters_not_bytes() {
        assert!(m("?", "é"));
        assert!(!m("??", "é"));
        assert!(m("caf?", "café"));
        assert!(m("*é", "café"));
        assert!(m("[!a]", "é"));
        assert!(!m("[!a][!a]", "é"));
        assert!(m("[à-ü]", "é"));
        assert!(!m("[à-ü]", "e"));
        assert!(m("?", "\u{1F600}"));
        // Control characters are characters too.
        assert!(m("a*b", "a\nb"));
        assert!(m("?", "\n"));
        assert!(m("*", "\0"));
    }

    /// Matching by the definition, trying every split at each `*`: slow, but obviously
    /// right.
    fn reference(toks: &[Tok], name: &[char]) -> bool {
        match toks.split_first() {
            None => name.is_empty(),
            Some((Tok::Star, rest)) => (0..=name.len()).any(|k| reference(rest, &name[k..])),
            Some((tok, rest)) => {
                name.first().is_some_and(|c| tok.matches(*c)) && reference(rest, &name[1..])
            }
        }
    }

    #[test]
    fn the_matcher_agrees_with_the_definition() {
        const PATTERN: [&str; 12] = [
            "a", "b", "é", "*", "?", "[a-b]", "[!é]", "\\*", "[", "]", "-", "/",
        ];
        const NAME: [&str; 7] = ["a", "b", "é", "*", "[", "-", "/"];
        // xorshift: the same cases on every run.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let pattern: String = (0..next(7)).map(|_| PATTERN[next(PATTERN.len())]).collect();
            let name: String = (0..next(8)).map(|_| NAME[next(NAME.len())]).collect();
            let glob = Glob::new(&pattern);
            let chars: Vec<char> = name.chars().collect();
            assert_eq!(
                glob.matches(&name),
                reference(&glob.toks, &chars),
                "{pattern:?} on {name:?}"
            );
        }
    }

    fn policy(cfg: PolicyConfig) -> Policy {
        Policy::new(&cfg)
    }

    #[test]
    fn visibility() {
        let p = policy(PolicyConfig::default());
        assert!(!p.is_active());
        assert!(p.is_visible("anything"));
        let p = policy(PolicyConfig {
            allow_tools: vec!["read_*".into(), "echo".into()],
            deny_tools: vec!["read_secret*".into()],
            ..Default::default()
        });
        assert!(p.is_active() && p.checks_calls() && p.rewrites_lists());
        assert!(p.is_visible("read_file"));
        assert!(p.is_visible("echo"));
        assert!(!p.is_visible("write_file"));
        assert!(!p.is_visible("read_secrets"), "deny wins over allow");
        let p = policy(PolicyConfig {
            deny_tools: vec!["exit".into()],
            ..Default::default()
        });
        assert!(p.is_visible("echo") && !p.is_visible("exit"));
        let p = policy(PolicyConfig {
            confirm_tools: vec!["write_*".into()],
            ..Default::default()
        });
        assert!(p.checks_calls() && !p.rewrites_lists());
        assert!(p.needs_confirmation("write_file") && !p.needs_confirmation("read_file"));
    }

    #[test]
    fn rewrites_lists() {
        let p = policy(PolicyConfig {
            deny_tools: vec!["exit".into(), "slow".into()],
            read_only_tools: vec!["echo".into(), "big".into()],
            destructive_tools: vec!["big".into(), "touch_*".into()],
            ..Default::default()
        });
        let mut r = json!({
            "tools": [
                {"name": "echo", "inputSchema": {}},
                {"name": "exit", "inputSchema": {}},
                {"name": "slow", "inputSchema": {}},
                {"name": "big", "annotations": {"title": "Big", "readOnlyHint": true}},
                {"name": "touch_resource", "annotations": null},
                {"name": "other", "annotations": {"readOnlyHint": true}},
                {"inputSchema": {}},
            ],
            "nextCursor": "c"
        });
        assert!(p.rewrite_tools(&mut r));
        let names: Vec<&str> = r["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(names, ["echo", "big", "touch_resource", "other", "-"]);
        assert_eq!(r["tools"][0]["annotations"]["readOnlyHint"], true);
        assert_eq!(r["tools"][0]["annotations"]["destructiveHint"], false);
        assert_eq!(r["tools"][1]["annotations"]["title"], "Big", "kept");
        assert_eq!(r["tools"][1]["annotations"]["readOnlyHint"], false);
        assert_eq!(r["tools"][1]["annotations"]["destructiveHint"], true);
        assert_eq!(r["tools"][2]["annotations"]["destructiveHint"], true);
        assert_eq!(r["tools"][3]["annotations"], json!({"readOnlyHint": true}));
        assert_eq!(r["nextCursor"], "c");

        // An allow list hides unnamed tools too; nothing to change is reported as such.
        let p = policy(PolicyConfig {
            allow_tools: vec!["*".into()],
            ..Default::default()
        });
        let mut r = json!({"tools": [{"name": "a"}]});
        assert!(!p.rewrite_tools(&mut r));
        let mut r = json!({"tools": [{"name": "a"}, {"title": "no name"}]});
        assert!(p.rewrite_tools(&mut r));
        assert_eq!(r, json!({"tools": [{"name": "a"}]}));
        assert!(!p.rewrite_tools(&mut json!({"prompts": []})));
    }

    type Cli = Only<PolicyArgs>;

    #[test]
    fn flags() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let cli = Cli::try_parse_from([
            "x",
            "--allow-tool",
            "a*",
            "--allow-tool",
            "b",
            "--deny-tool",
            "ab",
            "--confirm-tool",
            "c",
            "--read-only-tool",
            "r",
            "--destructive-tool",
            "d",
            "--audit-log",
            log.to_str().unwrap(),
            "--audit-max-bytes",
            "4096",
            "--confirm-timeout-secs",
            "2.5",
        ])
        .unwrap();
        let cfg = cli.flags.into_config();
        assert_eq!(cfg.allow_tools, ["a*", "b"]);
        assert_eq!(cfg.deny_tools, ["ab"]);
        assert_eq!(cfg.confirm_tools, ["c"]);
        assert_eq!(cfg.read_only_tools, ["r"]);
        assert_eq!(cfg.destructive_tools, ["d"]);
        assert_eq!(cfg.audit_log.as_deref(), Some(log.as_path()));
        assert!(
            log.exists(),
            "the audit log is created when the flag is parsed"
        );
        assert_eq!(cfg.audit_max_bytes, Some(4096));
        assert_eq!(cfg.confirm_timeout(), Duration::from_millis(2500));
        assert!(cfg.validate().is_ok());
        assert!(!cfg.is_empty());

        assert!(Cli::try_parse_from(["x", "--confirm-timeout-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--confirm-timeout-secs", "NaN"]).is_err());
        assert!(Cli::try_parse_from(["x", "--audit-max-bytes", "10"]).is_err());
        assert!(
            Cli::try_parse_from(["x", "--audit-log", "/nonexistent-dir/x/audit.jsonl"]).is_err()
        );
        let none = Cli::try_parse_from(["x"]).unwrap().flags.into_config();
        assert!(none.is_empty());
        assert_eq!(none, PolicyConfig::default());
        assert_eq!(none.confirm_timeout(), DEFAULT_CONFIRM_TIMEOUT);
        assert_eq!(none.audit_max_bytes(), DEFAULT_AUDIT_MAX_BYTES);
    }

    #[test]
    fn config_file_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
            allow_tools = ["read_*"]
            confirm_tools = ["write_*"]
            roots = [{:?}]
            audit_log = {:?}
            audit_max_bytes = 2048
            confirm_timeout_secs = 30
            "#,
            dir.path().display().to_string(),
            dir.path().join("a.jsonl").display().to_string()
        );
        let cfg: PolicyConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg.confirm_timeout(), Duration::from_secs(30));
        cfg.validate().unwrap();
        let roots = cfg.resolve_roots().unwrap();
        assert_eq!(roots.len(), 1);
        assert!(roots[0].uri.starts_with("file:///"), "{}", roots[0].uri);
        let mut all = roots.clone();
        merge_roots(&mut all, cfg.resolve_roots().unwrap());
        assert_eq!(all.len(), 1, "merged, not duplicated");
        assert!(toml::from_str::<PolicyConfig>("allow_tool = []").is_err());

        let bad = PolicyConfig {
            roots: vec![dir.path().join("missing")],
            ..Default::default()
        };
        assert!(matches!(bad.validate(), Err(PolicyError::Root { .. })));
        let bad = PolicyConfig {
            confirm_timeout_secs: Some(-1.0),
            ..Default::default()
        };
        assert!(matches!(bad.validate(), Err(PolicyError::ConfirmTimeout)));
        assert_eq!(bad.confirm_timeout(), DEFAULT_CONFIRM_TIMEOUT);
        let bad = PolicyConfig {
            audit_max_bytes: Some(1),
            ..Default::default()
        };
        assert!(matches!(bad.validate(), Err(PolicyError::AuditMaxBytes)));
    }
}
