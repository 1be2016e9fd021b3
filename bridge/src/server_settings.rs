//! The settings each published server can have its own value of (`--auth`, `--isolate`,
//! `--max-in-flight`…), declared once in [`with_server_settings!`]. That one table gives
//! each setting its `bridge run` flag and help, its key in the configuration file (at the
//! top level for every server, and in `[servers.NAME]` for one; see config.rs) and its
//! place in the merge: flags and environment variables > the server's own table > the
//! file's top level > the default, which run.rs applies where it builds the server's
//! core configuration.
//!
//! Adding a per-server setting means one entry in the table and its use in run.rs.

use crate::policy::PolicyConfig;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// OAuth 2.1 with the relay as authorization server (what ChatGPT and Claude.ai
    /// connectors use); each new client needs the owner's approval.
    Oauth,
    /// Clients send `Authorization: Bearer <token>` (a token generated, or given with
    /// --client-token).
    Bearer,
    /// No client authentication (refused by public relays unless they allow it).
    None,
}

/// Which protocol revisions a tunnel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolMode {
    /// Every revision: 2026-07-28 requests statelessly, 2025-03-26…2025-11-25 with
    /// sessions, 2024-11-05 over the HTTP+SSE endpoint.
    Auto,
    /// Only the initialize-era revisions: 2026-07-28 requests get "method not found", so
    /// clients fall back to `initialize`.
    #[value(name = "legacy")]
    #[serde(rename = "legacy")]
    Handshake,
}

/// Calls `$then! { [$($args)*] <the per-server settings> }`: the one list of the settings
/// each server can have its own value of, for the macros that declare what every
/// setting needs (the flags and the merge here, the file keys in config.rs).
///
/// An entry is the flag's help (its doc comment), its clap attributes, the setting's name
/// (the flag's field and the file key) and `flag type => setting type`: an `Option<T>`
/// flag is given when present, a `bool` switch when on (it cannot turn off what the file
/// turns on), a repeatable `Vec<T>` flag when given at least once (it replaces the file's
/// list).
///
/// The flags are part of `bridge run` ([`crate::run::RunArgs`]): each `display_order`
/// keeps its flag at its place among the other options of `bridge run --help`.
macro_rules! with_server_settings {
    ($then:ident ! { $($args:tt)* }) => {
        $then! {
            [$($args)*]
            /// How clients authenticate: `oauth` by default with a public relay, `bearer` with
            /// the in-process relay or a loopback one.
            #[arg(long, value_enum, display_order = 7)]
            auth: Option<$crate::server_settings::AuthMode> => $crate::server_settings::AuthMode,
            /// The bearer token clients must send. Default: with the in-process relay, the one
            /// generated for this tunnel's URL last time (generated and remembered the first time);
            /// otherwise generated.
            #[arg(long, env = "BRIDGE_CLIENT_TOKEN", hide_env_values = true, display_order = 8)]
            client_token: Option<String> => String,
            /// Give each session its own server process (and each client its own for
            /// requests without a session).
            #[arg(long, display_order = 10)]
            isolate: bool => bool,
            /// Most server processes under --isolate (default 16), or upstream sessions of
            /// an HTTP server (default 256).
            #[arg(long, display_order = 11)]
            max_children: Option<usize> => usize,
            /// Most sessions kept, least recently used evicted first (default 10000).
            #[arg(long, display_order = 12)]
            max_sessions: Option<usize> => usize,
            /// Most sessions kept per client principal, its least recently used evicted first
            /// (default 1000).
            #[arg(long, display_order = 13)]
            max_sessions_per_principal: Option<usize> => usize,
            /// Most requests in flight in one session (default 256).
            #[arg(long, display_order = 14)]
            max_in_flight: Option<usize> => usize,
            /// Seconds after which an unanswered request is cancelled on the server and answered
            /// with an error (default 600).
            #[arg(long, display_order = 15)]
            call_timeout_secs: Option<f64> => f64,
            /// A directory reported to the server as a root (repeatable). Remote clients' roots
            /// are not forwarded unless --client-roots is given.
            #[arg(long, value_name = "ROOTS", display_order = 17)]
            root: Vec<std::path::PathBuf> => Vec<std::path::PathBuf>,
            /// Let the server ask the remote clients for their roots (`roots/list` goes to a
            /// client that declared roots) instead of answering it from --root.
            #[arg(long, display_order = 18)]
            client_roots: bool => bool,
            /// Which protocol revisions the endpoint serves (default auto).
            #[arg(long, value_enum, display_order = 19)]
            protocol: Option<$crate::server_settings::ProtocolMode> => $crate::server_settings::ProtocolMode,
            /// Longest line accepted from the server's stdout, in bytes (default 32 MiB).
            #[arg(long, display_order = 23)]
            max_message: Option<usize> => usize,
        }
    };
}
pub(crate) use with_server_settings;

/// Declares [`ServerFlags`] and [`ServerOptions`] from the table.
macro_rules! flags_and_options {
    ([] $( $(#[doc = $doc:literal])* #[arg($($arg:tt)*)] $name:ident : $flag:ty => $value:ty, )*) => {
        /// The per-server flags of `bridge run`: for the server given after `--`, or for
        /// every server of the configuration files.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ServerFlags {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                pub $name: $flag,
            )*
        }

        /// One layer of per-server settings: the flags, a server's table or the file's top
        /// level. `None` is not set there.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct ServerOptions {
            $(
                $(#[doc = $doc])*
                pub $name: Option<$value>,
            )*
            /// The server's policy (the `policy` table; the policy flags merge with it setting
            /// by setting, see [`ServerOptions::merge`]).
            pub policy: Option<PolicyConfig>,
        }

        impl ServerFlags {
            /// The settings these flags give.
            pub fn given(&self) -> ServerOptions {
                ServerOptions {
                    $( $name: <$flag as Given<$value>>::given(&self.$name), )*
                    policy: None,
                }
            }
        }

        impl ServerOptions {
            /// This layer over `lower`: each setting from here when it is set here, else
            /// from `lower`.
            pub fn or(self, lower: ServerOptions) -> ServerOptions {
                ServerOptions {
                    $( $name: self.$name.or(lower.$name), )*
                    policy: self.policy.or(lower.policy),
                }
            }
        }
    };
}

with_server_settings!(flags_and_options! {});

/// Whether a flag was given, and its setting if so.
trait Given<T> {
    /// The setting, when the flag was given.
    fn given(&self) -> Option<T>;
}

/// A flag with a value: given when present.
impl<T: Clone> Given<T> for Option<T> {
    fn given(&self) -> Option<T> {
        self.clone()
    }
}

/// A switch: given when on.
impl Given<bool> for bool {
    fn given(&self) -> Option<bool> {
        self.then_some(true)
    }
}

/// A repeatable flag: given when it is there at least once.
impl<T: Clone> Given<Vec<T>> for Vec<T> {
    fn given(&self) -> Option<Vec<T>> {
        (!self.is_empty()).then(|| self.clone())
    }
}

impl ServerOptions {
    /// The settings of one server: `flags` > the server's own table (`server`) > the file's
    /// top level (`top`). The policy is the server's `policy` table, else the top-level
    /// one (a whole table, not merged key by key), with `policy_flags` replacing its
    /// settings one by one.
    pub fn merge(
        flags: &ServerOptions,
        server: &ServerOptions,
        top: &ServerOptions,
        policy_flags: &PolicyConfig,
    ) -> ServerOptions {
        let mut merged = flags.clone().or(server.clone()).or(top.clone());
        merged.policy = Some(
            merged
                .policy
                .unwrap_or_default()
                .overridden_by(policy_flags),
        );
        merged
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::test_flags;

    fn flags(words: &[&str]) -> ServerOptions {
        test_flags::parse::<ServerFlags>(words).given()
    }

    #[test]
    fn flags_give_only_what_is_on_the_command_line() {
        assert_eq!(flags(&[]), ServerOptions::default());
        let given = flags(&[
            "--auth",
            "bearer",
            "--isolate",
            "--max-in-flight",
            "8",
            "--root",
            "/a",
            "--root",
            "/b",
            "--protocol",
            "legacy",
        ]);
        assert_eq!(given.auth, Some(AuthMode::Bearer));
        assert_eq!(given.isolate, Some(true));
        assert_eq!(given.max_in_flight, Some(8));
        assert_eq!(
            given.root,
            Some(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
        assert_eq!(given.protocol, Some(ProtocolMode::Handshake));
        assert_eq!(given.client_roots, None, "a switch left off is not given");
        assert_eq!(given.max_children, None);
    }

    #[test]
    fn flags_win_over_the_server_which_wins_over_the_top_level() {
        let flags = ServerOptions {
            max_in_flight: Some(1),
            ..Default::default()
        };
        let server = ServerOptions {
            max_in_flight: Some(2),
            max_sessions: Some(20),
            root: Some(vec![PathBuf::from("/server")]),
            ..Default::default()
        };
        let top = ServerOptions {
            max_in_flight: Some(3),
            max_sessions: Some(30),
            max_children: Some(300),
            root: Some(vec![PathBuf::from("/top")]),
            isolate: Some(true),
            ..Default::default()
        };
        let m = ServerOptions::merge(&flags, &server, &top, &PolicyConfig::default());
        assert_eq!(m.max_in_flight, Some(1));
        assert_eq!(m.max_sessions, Some(20));
        assert_eq!(m.max_children, Some(300));
        assert_eq!(m.root, Some(vec![PathBuf::from("/server")]), "not joined");
        assert_eq!(m.isolate, Some(true), "a switch left off keeps the file's");
        assert_eq!(m.call_timeout_secs, None, "the default applies later");
        assert_eq!(m.policy, Some(PolicyConfig::default()));
    }

    #[test]
    fn the_policy_table_is_taken_whole_and_its_flags_replace_settings() {
        let top = ServerOptions {
            policy: Some(PolicyConfig {
                deny_tools: vec!["top".into()],
                confirm_timeout_secs: Some(5.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let server = ServerOptions {
            policy: Some(PolicyConfig {
                allow_tools: vec!["a*".into()],
                confirm_tools: vec!["c".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let policy_flags = PolicyConfig {
            confirm_tools: vec!["flag".into()],
            audit_max_bytes: Some(4096),
            ..Default::default()
        };
        let none = ServerOptions::default();

        let m = ServerOptions::merge(&none, &server, &top, &policy_flags);
        let p = m.policy.unwrap();
        assert_eq!(p.allow_tools, ["a*"]);
        assert!(
            p.deny_tools.is_empty(),
            "the top-level table is not merged in"
        );
        assert_eq!(p.confirm_tools, ["flag"]);
        assert_eq!(p.audit_max_bytes, Some(4096));
        assert_eq!(p.confirm_timeout_secs, None);

        let m = ServerOptions::merge(&none, &none, &top, &PolicyConfig::default());
        assert_eq!(m.policy, top.policy);
    }
}
