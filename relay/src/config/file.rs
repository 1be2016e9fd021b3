//! `relay serve --config FILE`: the settings of `relay serve` in a TOML file.
//!
//! Every key is the name of a `relay serve` flag in snake_case (`public_url` for
//! `--public-url`). The TLS, ACME and OAuth settings sit in tables named after them:
//! `[tls] cert` is `--tls-cert`, `[acme] domain` is `--acme-domain`, and `[oauth]` holds
//! `operator_password_file`, `allow_redirect_host` and `access_token_ttl_secs` under their
//! flag names. Repeatable flags take arrays. Relative paths are relative to the directory
//! of the file. [`KEYS`] lists them all.
//!
//! The file is the lowest layer above the defaults: a flag or an environment variable
//! given for an option wins over the file's value ([`RelayFile::args`] turns the file into
//! the flags for the options nobody else set). An unknown key or a value of the wrong type
//! is an error naming the file, the line and the key.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

/// Every key of the file (tables joined with a dot) and the `relay serve` option it sets
/// (clap's id: the long flag with `_` for `-`).
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "listen"),
    ("public_url", "public_url"),
    ("data_dir", "data_dir"),
    ("database_url", "database_url"),
    ("node_id", "node_id"),
    ("bridge_token", "bridge_token"),
    ("bridge_token_file", "bridge_token_file"),
    ("allow_unauthenticated", "allow_unauthenticated"),
    ("max_body", "max_body"),
    ("keepalive_secs", "keepalive_secs"),
    ("sse_poll_secs", "sse_poll_secs"),
    ("grace_secs", "grace_secs"),
    ("drain_delay_secs", "drain_delay_secs"),
    ("header_timeout_secs", "header_timeout_secs"),
    ("body_timeout_secs", "body_timeout_secs"),
    ("max_connections_per_address", "max_connections_per_address"),
    ("trusted_proxy", "trusted_proxy"),
    ("trusted_proxy_header", "trusted_proxy_header"),
    ("allowed_origin", "allowed_origin"),
    ("metrics", "metrics"),
    ("metrics_token_file", "metrics_token_file"),
    ("metrics_listen", "metrics_listen"),
    ("tls.cert", "tls_cert"),
    ("tls.key", "tls_key"),
    ("acme.domain", "acme_domain"),
    ("acme.email", "acme_email"),
    ("acme.directory", "acme_directory"),
    ("acme.ca_file", "acme_ca_file"),
    ("oauth.operator_password_file", "operator_password_file"),
    ("oauth.allow_redirect_host", "allow_redirect_host"),
    ("oauth.access_token_ttl_secs", "access_token_ttl_secs"),
];

/// The tables of the file.
const TABLES: &[&str] = &["tls", "acme", "oauth"];

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("{path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// The cause (part of the message).
        cause: std::io::Error,
    },
    /// The file is not valid TOML, or holds an unknown key or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The line (from 1) where the problem is.
        line: usize,
        /// The key concerned (tables joined with a dot), when there is one.
        key: Option<String>,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The `[tls]` table: a certificate from files.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTable {
    /// `--tls-cert`: the PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// `--tls-key`: its PEM private key.
    pub key: Option<PathBuf>,
}

/// The `[acme]` table: certificates obtained automatically.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeTable {
    /// `--acme-domain`: the domains of the certificate.
    pub domain: Option<Vec<String>>,
    /// `--acme-email`: contacts of the ACME account.
    pub email: Option<Vec<String>>,
    /// `--acme-directory`: the ACME directory URL.
    pub directory: Option<String>,
    /// `--acme-ca-file`: CA certificates for the ACME server's own HTTPS.
    pub ca_file: Option<PathBuf>,
}

/// The `[oauth]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthTable {
    /// `--operator-password-file`: the Argon2 hash of the operator password.
    pub operator_password_file: Option<PathBuf>,
    /// `--allow-redirect-host`: extra hosts allowed in redirect URIs.
    pub allow_redirect_host: Option<Vec<String>>,
    /// `--access-token-ttl-secs`: lifetime of access tokens.
    pub access_token_ttl_secs: Option<u64>,
}

/// The settings of a configuration file; `None` (or a table's `None`s) where the file is
/// silent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFile {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url` (`RELAY_DATABASE_URL`): state in PostgreSQL.
    pub database_url: Option<String>,
    /// `--node-id` (`RELAY_NODE_ID`).
    pub node_id: Option<String>,
    /// `--bridge-token` (`RELAY_BRIDGE_TOKENS`): bridge tokens in clear text.
    pub bridge_token: Option<Vec<String>>,
    /// `--bridge-token-file`.
    pub bridge_token_file: Option<PathBuf>,
    /// `--allow-unauthenticated`.
    pub allow_unauthenticated: Option<bool>,
    /// `--max-body`.
    pub max_body: Option<usize>,
    /// `--keepalive-secs`.
    pub keepalive_secs: Option<f64>,
    /// `--sse-poll-secs`.
    pub sse_poll_secs: Option<f64>,
    /// `--grace-secs`.
    pub grace_secs: Option<f64>,
    /// `--drain-delay-secs`.
    pub drain_delay_secs: Option<f64>,
    /// `--header-timeout-secs`.
    pub header_timeout_secs: Option<f64>,
    /// `--body-timeout-secs`.
    pub body_timeout_secs: Option<f64>,
    /// `--max-connections-per-address`.
    pub max_connections_per_address: Option<usize>,
    /// `--trusted-proxy`.
    pub trusted_proxy: Option<Vec<String>>,
    /// `--trusted-proxy-header`.
    pub trusted_proxy_header: Option<String>,
    /// `--allowed-origin`.
    pub allowed_origin: Option<Vec<String>>,
    /// `--metrics`.
    pub metrics: Option<bool>,
    /// `--metrics-token-file`.
    pub metrics_token_file: Option<PathBuf>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[tls]`.
    #[serde(default)]
    pub tls: TlsTable,
    /// `[acme]`.
    #[serde(default)]
    pub acme: AcmeTable,
    /// `[oauth]`.
    #[serde(default)]
    pub oauth: OAuthTable,
}

/// The value of one setting, as command-line values.
enum Value {
    /// A switch (`allow_unauthenticated`, `metrics`).
    Switch(bool),
    /// One value.
    One(OsString),
    /// A repeatable option's values.
    Many(Vec<OsString>),
}

impl RelayFile {
    /// Reads and checks the file at `path`; relative paths in it become relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigFileError::Read {
            path: path.display().to_string(),
            cause,
        })?;
        let mut file = Self::parse(&text, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        file.resolve_paths(&std::path::absolute(&dir).unwrap_or(dir));
        Ok(file)
    }

    /// Parses the text of a file (`path` only names it in errors; paths stay as written).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigFileError> {
        let name = path.display().to_string();
        let doc = DeTable::parse(text).map_err(|e| ConfigFileError::Invalid {
            path: name.clone(),
            line: line_of(text, e.span().map_or(0, |s| s.start)),
            key: None,
            message: e.message().trim_end().to_owned(),
        })?;
        let file: Self = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = locate(doc.get_ref(), &span, "");
            let message = match &key {
                Some(k) if e.message().starts_with("unknown field") => unknown_key(k),
                Some(k) => format!("{k}: {}", plain_expectations(e.message())),
                None => e.message().to_owned(),
            };
            ConfigFileError::Invalid {
                path: name.clone(),
                line: line_of(text, span.start),
                key,
                message,
            }
        })?;
        if let Some(url) = &file.public_url
            && let Err(e) = crate::config::parse_public_url(url)
        {
            let span = find_value(doc.get_ref(), "public_url").unwrap_or(0..0);
            return Err(ConfigFileError::Invalid {
                path: name,
                line: line_of(text, span.start),
                key: Some("public_url".into()),
                message: format!("public_url: {e}"),
            });
        }
        Ok(file)
    }

    /// Makes the relative paths of the file relative to `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let paths = [
            &mut self.data_dir,
            &mut self.bridge_token_file,
            &mut self.metrics_token_file,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.acme.ca_file,
            &mut self.oauth.operator_password_file,
        ];
        for p in paths.into_iter().flatten() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The keys the file sets (see [`KEYS`]).
    pub fn keys(&self) -> Vec<&'static str> {
        self.values().into_iter().map(|(k, _)| k).collect()
    }

    /// The file's settings as `relay serve` arguments (`--flag=value`), leaving out the
    /// options for which `is_set(id)` (a flag or an environment variable gave them). Also
    /// returns the keys left out that way (those with a value other than `false` or `[]`).
    pub fn args(&self, is_set: impl Fn(&str) -> bool) -> (Vec<OsString>, Vec<&'static str>) {
        let mut args = Vec::new();
        let mut overridden = Vec::new();
        for (key, value) in self.values() {
            let arg = arg_of(key);
            if is_set(arg) {
                let says_something = match &value {
                    Value::Switch(on) => *on,
                    Value::One(_) => true,
                    Value::Many(vs) => !vs.is_empty(),
                };
                if says_something {
                    overridden.push(key);
                }
                continue;
            }
            let flag = format!("--{}", arg.replace('_', "-"));
            let with_value = |v: &OsString| {
                let mut a = OsString::from(format!("{flag}="));
                a.push(v);
                a
            };
            match value {
                Value::Switch(true) => args.push(OsString::from(&flag)),
                Value::Switch(false) => {}
                Value::One(v) => args.push(with_value(&v)),
                Value::Many(vs) => args.extend(vs.iter().map(with_value)),
            }
        }
        (args, overridden)
    }

    /// The settings present in the file, by key.
    fn values(&self) -> Vec<(&'static str, Value)> {
        fn one(v: impl Into<OsString>) -> Value {
            Value::One(v.into())
        }
        fn many(v: &[String]) -> Value {
            Value::Many(v.iter().map(OsString::from).collect())
        }
        let mut out = Vec::new();
        let mut put = |key: &'static str, value: Option<Value>| {
            if let Some(v) = value {
                out.push((key, v));
            }
        };
        put("listen", self.listen.map(|a| one(a.to_string())));
        put("public_url", self.public_url.as_ref().map(one));
        put("data_dir", self.data_dir.as_ref().map(one));
        put("database_url", self.database_url.as_ref().map(one));
        put("node_id", self.node_id.as_ref().map(one));
        put("bridge_token", self.bridge_token.as_deref().map(many));
        put(
            "bridge_token_file",
            self.bridge_token_file.as_ref().map(one),
        );
        put(
            "allow_unauthenticated",
            self.allow_unauthenticated.map(Value::Switch),
        );
        put("max_body", self.max_body.map(|n| one(n.to_string())));
        put(
            "keepalive_secs",
            self.keepalive_secs.map(|s| one(s.to_string())),
        );
        put(
            "sse_poll_secs",
            self.sse_poll_secs.map(|s| one(s.to_string())),
        );
        put("grace_secs", self.grace_secs.map(|s| one(s.to_string())));
        put(
            "drain_delay_secs",
            self.drain_delay_secs.map(|s| one(s.to_string())),
        );
        put(
            "header_timeout_secs",
            self.header_timeout_secs.map(|s| one(s.to_string())),
        );
        put(
            "body_timeout_secs",
            self.body_timeout_secs.map(|s| one(s.to_string())),
        );
        put(
            "max_connections_per_address",
            self.max_connections_per_address.map(|n| one(n.to_string())),
        );
        put("trusted_proxy", self.trusted_proxy.as_deref().map(many));
        put(
            "trusted_proxy_header",
            self.trusted_proxy_header.as_ref().map(one),
        );
        put("allowed_origin", self.allowed_origin.as_deref().map(many));
        put("metrics", self.metrics.map(Value::Switch));
        put(
            "metrics_token_file",
            self.metrics_token_file.as_ref().map(one),
        );
        put(
            "metrics_listen",
            self.metrics_listen.map(|a| one(a.to_string())),
        );
        put("tls.cert", self.tls.cert.as_ref().map(one));
        put("tls.key", self.tls.key.as_ref().map(one));
        put("acme.domain", self.acme.domain.as_deref().map(many));
        put("acme.email", self.acme.email.as_deref().map(many));
        put("acme.directory", self.acme.directory.as_ref().map(one));
        put("acme.ca_file", self.acme.ca_file.as_ref().map(one));
        put(
            "oauth.operator_password_file",
            self.oauth.operator_password_file.as_ref().map(one),
        );
        put(
            "oauth.allow_redirect_host",
            self.oauth.allow_redirect_host.as_deref().map(many),
        );
        put(
            "oauth.access_token_ttl_secs",
            self.oauth.access_token_ttl_secs.map(|s| one(s.to_string())),
        );
        out
    }
}

/// The option (clap id) a key sets.
#[expect(
    clippy::expect_used,
    reason = "KEYS lists every key RelayFile::values yields (a unit test reads every key)"
)]
fn arg_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, a)| *a)
        .expect("every key of RelayFile::values is in KEYS")
}

/// An example file with its commented-out settings switched on: a line `#key = value`
/// (a `#` directly followed by a key) becomes `key = value`; comments written `# text` stay.
/// Lets a test check that an example documents every key, with values of the right type.
pub fn uncommented(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let setting = line.strip_prefix('#').filter(|rest| {
            rest.starts_with(|c: char| c.is_ascii_lowercase())
                && rest
                    .split_once('=')
                    .is_some_and(|(k, _)| k.trim().chars().all(is_key_char))
        });
        out.push_str(setting.unwrap_or(line));
        out.push('\n');
    }
    out
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
}

/// The line (from 1) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key (dotted path) whose name or value covers `span`.
fn locate(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if covers(&k.span(), span) {
            return Some(path);
        }
        if let DeValue::Table(t) = v.get_ref()
            && let Some(p) = locate(t, span, &path)
        {
            return Some(p);
        }
        if covers(&v.span(), span) {
            return Some(path);
        }
    }
    None
}

/// Whether `outer` contains `inner` (an empty `inner` at its start counts).
fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// The span of a top-level key's value.
fn find_value(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v.span())
}

/// Serde's expectations in words a configuration file's author uses.
fn plain_expectations(message: &str) -> String {
    let mut m = message.trim_end().to_owned();
    for (from, to) in [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected struct TlsTable", "expected a table"),
        ("expected struct AcmeTable", "expected a table"),
        ("expected struct OAuthTable", "expected a table"),
    ] {
        m = m.replace(from, to);
    }
    m
}

/// The message for an unknown key, with the nearest known key when one is close.
fn unknown_key(key: &str) -> String {
    match suggestion(key) {
        Some(s) => format!("unknown key \"{key}\" (did you mean \"{s}\"?)"),
        None => {
            let (table, _) = key.rsplit_once('.').unwrap_or(("", key));
            let known: Vec<&str> = KEYS
                .iter()
                .filter_map(|(k, _)| match k.rsplit_once('.') {
                    Some((t, name)) if t == table => Some(name),
                    None if table.is_empty() => Some(*k),
                    _ => None,
                })
                .chain(TABLES.iter().copied().filter(|_| table.is_empty()))
                .collect();
            if known.is_empty() {
                format!("unknown key \"{key}\"")
            } else {
                format!("unknown key \"{key}\" (known keys: {})", known.join(", "))
            }
        }
    }
}

/// The known key (dotted) someone writing `key` most likely meant.
fn suggestion(key: &str) -> Option<&'static str> {
    let norm = key.to_ascii_lowercase().replace('-', "_");
    let flat = norm.replace('.', "_");
    // The flag's own name, in the wrong case or table: `public-url`, `tls_cert`,
    // `operator_password_file` outside `[oauth]`, `acme.domains`.
    for (k, arg) in KEYS {
        if *k == norm || *arg == flat || k.replace('.', "_") == flat {
            return Some(k);
        }
        if flat.strip_suffix('s') == Some(*arg) {
            return Some(k);
        }
    }
    // A typo: the nearest key, if it is close enough.
    let candidates = KEYS.iter().map(|(k, _)| *k).chain(TABLES.iter().copied());
    let (best, distance) = candidates
        .map(|k| (k, edit_distance(&norm, k)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= (norm.len() / 4).max(1)).then_some(best)
}

/// Edit distance between two strings (insertions, deletions, substitutions and swaps of
/// two neighbours each count one).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../deploy/relay.example.toml");

    fn parse(text: &str) -> Result<RelayFile, ConfigFileError> {
        RelayFile::parse(text, Path::new("relay.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("an error").to_string()
    }

    /// A file setting every key.
    const FULL: &str = r#"
listen = "0.0.0.0:443"
public_url = "https://relay.example.com"
data_dir = "data"
database_url = "postgres://relay@db/relay"
node_id = "relay-2"
bridge_token = ["a", "b"]
bridge_token_file = "/etc/tokens"
allow_unauthenticated = true
max_body = 1024
keepalive_secs = 2.5
sse_poll_secs = 30
grace_secs = 0
drain_delay_secs = 3
header_timeout_secs = 5
body_timeout_secs = 30.5
max_connections_per_address = 64
trusted_proxy = ["127.0.0.1/32", "10.0.0.0/8"]
trusted_proxy_header = "forwarded"
allowed_origin = ["https://app.example.com"]
metrics = true
metrics_token_file = "metrics.token"
metrics_listen = "127.0.0.1:9464"

[tls]
cert = "cert.pem"
key = "key.pem"

[acme]
domain = ["relay.example.com", "-odd.example.com"]
email = ["ops@example.com"]
directory = "https://acme.example/dir"
ca_file = "ca.pem"

[oauth]
operator_password_file = "../secrets/operator"
allow_redirect_host = ["agent.example.com"]
access_token_ttl_secs = 600
"#;

    #[test]
    fn every_key_is_read_and_becomes_its_flag() {
        let file = parse(FULL).expect("parses");
        let keys = file.keys();
        for (k, _) in KEYS {
            assert!(keys.contains(k), "{k} not read");
        }
        assert_eq!(keys.len(), KEYS.len());
        let (args, overridden) = file.args(|_| false);
        assert!(overridden.is_empty());
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        for expected in [
            "--listen=0.0.0.0:443",
            "--database-url=postgres://relay@db/relay",
            "--node-id=relay-2",
            "--bridge-token=a",
            "--bridge-token=b",
            "--allow-unauthenticated",
            "--keepalive-secs=2.5",
            "--sse-poll-secs=30",
            "--grace-secs=0",
            "--drain-delay-secs=3",
            "--header-timeout-secs=5",
            "--body-timeout-secs=30.5",
            "--max-connections-per-address=64",
            "--trusted-proxy=127.0.0.1/32",
            "--trusted-proxy=10.0.0.0/8",
            "--trusted-proxy-header=forwarded",
            "--metrics-listen=127.0.0.1:9464",
            "--tls-cert=cert.pem",
            "--acme-domain=-odd.example.com",
            "--acme-ca-file=ca.pem",
            "--operator-password-file=../secrets/operator",
            "--allow-redirect-host=agent.example.com",
            "--access-token-ttl-secs=600",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        // One argument per value, switches without a value.
        assert_eq!(args.len(), KEYS.len() + 3);
        assert!(args.iter().any(|a| a == "--metrics"));
    }

    #[test]
    fn options_given_otherwise_are_left_out() {
        let file = parse(FULL).expect("parses");
        let (args, overridden) = file.args(|id| id == "listen" || id == "acme_domain");
        assert_eq!(overridden, ["listen", "acme.domain"]);
        assert!(
            !args
                .iter()
                .any(|a| a.to_string_lossy().starts_with("--listen")
                    || a.to_string_lossy().starts_with("--acme-domain"))
        );
        let off = parse("allow_unauthenticated = false\nallowed_origin = []").expect("parses");
        assert!(off.args(|_| false).0.is_empty());
        assert!(
            off.args(|_| true).1.is_empty(),
            "nothing of the file is replaced"
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let mut file = parse(FULL).expect("parses");
        file.resolve_paths(Path::new("/etc/mcp-relay"));
        assert_eq!(file.data_dir, Some(PathBuf::from("/etc/mcp-relay/data")));
        assert_eq!(
            file.tls.cert,
            Some(PathBuf::from("/etc/mcp-relay/cert.pem"))
        );
        assert_eq!(
            file.acme.ca_file,
            Some(PathBuf::from("/etc/mcp-relay/ca.pem"))
        );
        assert_eq!(
            file.oauth.operator_password_file,
            Some(PathBuf::from("/etc/mcp-relay/../secrets/operator"))
        );
        assert_eq!(file.bridge_token_file, Some(PathBuf::from("/etc/tokens")));

        let dir = std::env::temp_dir().join(format!("relay-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("relay.toml");
        std::fs::write(
            &path,
            "data_dir = \"state\"\n[tls]\nkey = \"/abs/key.pem\"\n",
        )
        .expect("write");
        let loaded = RelayFile::load(&path).expect("loads");
        assert_eq!(loaded.data_dir, Some(dir.join("state")));
        assert_eq!(loaded.tls.key, Some(PathBuf::from("/abs/key.pem")));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_nearest_key() {
        assert_eq!(
            error("listn = \"127.0.0.1:1\"\n"),
            "relay.toml:1: unknown key \"listn\" (did you mean \"listen\"?)"
        );
        assert_eq!(
            error("listen = \"127.0.0.1:1\"\npublic-url = \"https://x.example\"\n"),
            "relay.toml:2: unknown key \"public-url\" (did you mean \"public_url\"?)"
        );
        assert_eq!(
            error("\n[tls]\ncrt = \"c.pem\"\n"),
            "relay.toml:3: unknown key \"tls.crt\" (did you mean \"tls.cert\"?)"
        );
        assert_eq!(
            error("tls_cert = \"c.pem\"\n"),
            "relay.toml:1: unknown key \"tls_cert\" (did you mean \"tls.cert\"?)"
        );
        assert_eq!(
            error("operator_password_file = \"p\"\n"),
            "relay.toml:1: unknown key \"operator_password_file\" (did you mean \
             \"oauth.operator_password_file\"?)"
        );
        assert_eq!(
            error("[acme]\ndomains = [\"a.example\"]\n"),
            "relay.toml:2: unknown key \"acme.domains\" (did you mean \"acme.domain\"?)"
        );
        assert_eq!(
            error("[tsl]\ncert = \"c.pem\"\n"),
            "relay.toml:1: unknown key \"tsl\" (did you mean \"tls\"?)"
        );
        let far = error("[oauth]\ncolour = \"blue\"\n");
        assert_eq!(
            far,
            "relay.toml:2: unknown key \"oauth.colour\" (known keys: operator_password_file, \
             allow_redirect_host, access_token_ttl_secs)"
        );
        let e = parse("[oauth]\ncolour = \"blue\"\n").expect_err("unknown");
        assert!(
            matches!(e, ConfigFileError::Invalid { key: Some(ref k), line: 2, .. } if k == "oauth.colour")
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert_eq!(
            error("max_body = \"16M\"\n"),
            "relay.toml:1: max_body: invalid type: string \"16M\", expected a non-negative integer"
        );
        assert_eq!(
            error("\n\n[acme]\ndomain = \"relay.example.com\"\n"),
            "relay.toml:4: acme.domain: invalid type: string \"relay.example.com\", expected an \
             array"
        );
        let e = error("[oauth]\naccess_token_ttl_secs = -5\n");
        assert!(
            e.starts_with("relay.toml:2: oauth.access_token_ttl_secs: invalid value: integer `-5`"),
            "{e}"
        );
        let e = error("listen = \"example.com\"\n");
        assert!(e.starts_with("relay.toml:1: listen: "), "{e}");
        let e = error("allowed_origin = [\"a\", 5]\n");
        assert!(
            e.starts_with("relay.toml:1: allowed_origin: invalid type: integer"),
            "{e}"
        );
        let e = error("keepalive_secs = true\n");
        assert!(
            e.contains("keepalive_secs: invalid type: boolean `true`, expected a number"),
            "{e}"
        );
        let e = error("tls = 5\n");
        assert!(
            e.contains("tls: invalid type: integer `5`, expected a table"),
            "{e}"
        );
        let e = error("grace_secs = 1\npublic_url = \"ftp://x.example\"\n");
        assert!(
            e.starts_with("relay.toml:2: public_url: invalid public URL"),
            "{e}"
        );
        // Integers are fine where seconds are fractional.
        assert_eq!(
            parse("grace_secs = 3").expect("parses").grace_secs,
            Some(3.0)
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = error("listen = \"127.0.0.1:1\"\nmax_body = \n");
        assert!(e.starts_with("relay.toml:2: "), "{e}");
        let e = error("listen = 1\nlisten = 2\n");
        assert!(e.starts_with("relay.toml:2: "), "{e}");
        let e = RelayFile::load(Path::new("/nonexistent/relay.toml")).expect_err("missing");
        assert!(
            e.to_string().starts_with("/nonexistent/relay.toml: "),
            "{e}"
        );
    }

    #[test]
    fn the_example_parses_and_documents_every_key() {
        let path = Path::new("deploy/relay.example.toml");
        let active = RelayFile::parse(EXAMPLE, path).expect("the example parses");
        // Ready to serve behind a reverse proxy once the public URL is changed.
        assert!(active.listen.is_some() && active.public_url.is_some());
        assert!(active.tls.cert.is_none() && active.acme.domain.is_none());
        let all = RelayFile::parse(&uncommented(EXAMPLE), path)
            .expect("the example with every setting switched on parses");
        let keys = all.keys();
        for (k, _) in KEYS {
            assert!(
                keys.contains(k),
                "deploy/relay.example.toml does not document {k}"
            );
        }
    }

    #[test]
    fn uncommenting_keeps_prose() {
        let text = "# a comment = not a setting\n#listen = \"1.2.3.4:5\"\n#[tls]\n  #x = 1\n";
        assert_eq!(
            uncommented(text),
            "# a comment = not a setting\nlisten = \"1.2.3.4:5\"\n#[tls]\n  #x = 1\n"
        );
    }
}
