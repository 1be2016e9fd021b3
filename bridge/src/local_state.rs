//! What `bridge run` remembers for the in-process relay, so that a server keeps its URL and
//! its client token across restarts and client configurations need no edit.
//!
//! It lives in `local.toml` in the configuration directory (next to `credentials.toml` and
//! `state.toml`, see login.rs). The file holds client tokens, so it is private to the user
//! (mode 0600 in a 0700 directory on Unix; on Windows, the user profile) and written
//! atomically, under a lock, so that bridges starting at the same moment do not lose each
//! other's entries.
//!
//! The rules:
//! - the tunnel name the bridge picks is remembered per listen address and server command
//!   line; a name that is given (`--name`, `BRIDGE_NAME`, a configuration file) is used as
//!   is and not remembered for the command line;
//! - the client token the bridge picks is remembered per listen address and tunnel name,
//!   that is per URL; a token that is given (`--client-token`, `BRIDGE_CLIENT_TOKEN`, a
//!   configuration file) is used as is and never stored, and the remembered one stays;
//! - `--new-token` replaces the remembered token with a new one;
//! - with port 0 nothing is remembered (the URL changes with every run anyway);
//! - deleting an entry (or the file) forgets it; an unreadable file is reported, never
//!   stops a run, and is moved aside (`local.toml.bad`) when new values are stored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::login;

/// The file, in the configuration directory.
const LOCAL_FILE: &str = "local.toml";
/// The lock taken while the file is rewritten, in the same directory.
const LOCK_FILE: &str = ".local.lock";
/// The first lines of the file.
const HEADER: &str = "\
# Written by `bridge run` with the in-process relay: the tunnel name picked for each server
# command line, and the client token picked for each URL, by listen address, so that the
# URL and the token stay the same across restarts. Keep it private: it holds the tokens.
# `bridge run --new-token -- <command>` makes a new token; delete an entry (or this file)
# to forget it.
";

/// Path of `local.toml`.
pub fn path() -> Result<PathBuf> {
    Ok(login::config_dir()?.join(LOCAL_FILE))
}

/// One remembered tunnel of the in-process relay.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The listen address.
    listen: String,
    /// The server command line the bridge picked `name` for (absent for a given name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    /// The tunnel name.
    name: String,
    /// The client token the bridge picked for this URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("listen", &self.listen)
            .field("command", &self.command)
            .field("name", &self.name)
            .field("client_token", &hidden(&self.client_token))
            .finish()
    }
}

/// A token as debug output shows it: whether there is one, not what it is.
fn hidden(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<hidden>")
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalFile {
    #[serde(default)]
    tunnel: Vec<Entry>,
}

/// What reading the file gave.
enum Read {
    /// No file (or no configuration directory): nothing remembered yet.
    Missing,
    /// The entries.
    Entries(LocalFile),
    /// The file exists but cannot be read or parsed: why.
    Unreadable(String),
}

fn read(path: &Path) -> Read {
    match std::fs::read_to_string(path) {
        Ok(text) => match toml::from_str(&text) {
            Ok(f) => Read::Entries(f),
            Err(e) => Read::Unreadable(e.message().to_owned()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Read::Missing,
        Err(e) => Read::Unreadable(e.to_string()),
    }
}

/// A client token as stored: something a client can send in a header.
fn usable_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
}

/// The values remembered for one listen address of the in-process relay, read when a run
/// starts.
pub struct LocalMemory {
    path: PathBuf,
    listen: String,
    entries: Vec<Entry>,
}

impl LocalMemory {
    /// The memory of `local.toml` for `listen`; `None` for port 0 (nothing is remembered)
    /// or when there is no configuration directory.
    pub fn open(listen: SocketAddr) -> Option<Self> {
        if listen.port() == 0 {
            return None;
        }
        match path() {
            Ok(p) => Some(Self::load(p, listen)),
            Err(e) => {
                tracing::warn!(
                    "tunnel names and client tokens of the in-process relay are not remembered: {e:#}"
                );
                None
            }
        }
    }

    /// The memory kept in `path` for `listen`. An unreadable file is reported and read as
    /// empty.
    pub fn load(path: PathBuf, listen: SocketAddr) -> Self {
        let entries = match read(&path) {
            Read::Missing => Vec::new(),
            Read::Entries(f) => {
                login::warn_if_readable_by_others(&path);
                f.tunnel
            }
            Read::Unreadable(why) => {
                tracing::warn!(
                    "{} is unreadable ({why}); new tunnel names and client tokens are picked \
                     (the file is moved aside when they are stored)",
                    path.display()
                );
                Vec::new()
            }
        };
        let listen = listen.to_string();
        let entries = entries.into_iter().filter(|e| e.listen == listen).collect();
        Self {
            path,
            listen,
            entries,
        }
    }

    /// Where the memory is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tunnel name picked earlier for `command`.
    pub fn name_for(&self, command: &[String]) -> Option<String> {
        let command = login::command_line(command);
        self.entries
            .iter()
            .find(|e| e.command.as_deref() == Some(command.as_str()))
            .map(|e| e.name.clone())
            .filter(|n| protocol::valid_tunnel_name(n))
    }

    /// The client token picked earlier for the tunnel `name`.
    pub fn token_for(&self, name: &str) -> Option<String> {
        let token = self
            .entries
            .iter()
            .find(|e| e.name == name)?
            .client_token
            .clone()?;
        if usable_token(&token) {
            Some(token)
        } else {
            tracing::warn!(
                "{}: the client token of tunnel {name} is not usable; a new one is picked",
                self.path.display()
            );
            None
        }
    }

    /// What to store for the tunnel `name` once it is up.
    pub fn picked(&self, name: &str) -> Picked {
        Picked {
            path: self.path.clone(),
            listen: self.listen.clone(),
            name: name.to_owned(),
            command: None,
            client_token: None,
        }
    }
}

/// Values the bridge picked for one tunnel, to be remembered once the tunnel is up.
#[derive(Clone)]
pub struct Picked {
    path: PathBuf,
    listen: String,
    name: String,
    /// The command line the name was picked for.
    pub command: Option<Vec<String>>,
    /// The client token picked.
    pub client_token: Option<String>,
}

impl std::fmt::Debug for Picked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picked")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .field("name", &self.name)
            .field("command", &self.command)
            .field("client_token", &hidden(&self.client_token))
            .finish()
    }
}

impl Picked {
    /// Whether there is anything to store.
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.client_token.is_none()
    }

    /// Where it is stored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores the picked values, under a lock: the file is read again, updated and
    /// replaced atomically, so concurrent bridges keep each other's entries. An unreadable
    /// file is moved aside (`local.toml.bad`) first.
    pub fn store(&self) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let dir = self
            .path
            .parent()
            .with_context(|| format!("{} has no parent directory", self.path.display()))?;
        login::ensure_private_dir(dir)?;
        let _lock = login::FileLock::acquire(&dir.join(LOCK_FILE))?;
        let mut file = match read(&self.path) {
            Read::Missing => LocalFile::default(),
            Read::Entries(f) => f,
            Read::Unreadable(why) => {
                let mut bad = self.path.clone().into_os_string();
                bad.push(".bad");
                let bad = PathBuf::from(bad);
                std::fs::rename(&self.path, &bad).with_context(|| {
                    format!(
                        "{} is unreadable ({why}) and cannot be moved aside",
                        self.path.display()
                    )
                })?;
                tracing::warn!(
                    "{} was unreadable ({why}): moved to {}, and a new one is written",
                    self.path.display(),
                    bad.display()
                );
                LocalFile::default()
            }
        };
        self.apply(&mut file);
        let mut text = String::from(HEADER);
        text.push_str(&toml::to_string(&file).context("encoding the remembered tunnels")?);
        login::write_private(&self.path, text.as_bytes())
    }

    /// Updates the entries with the picked values.
    fn apply(&self, file: &mut LocalFile) {
        let command = self.command.as_deref().map(login::command_line);
        if let Some(c) = &command {
            // The command line now goes with this name only.
            for e in &mut file.tunnel {
                if e.listen == self.listen && e.command.as_ref() == Some(c) && e.name != self.name {
                    e.command = None;
                }
            }
            file.tunnel
                .retain(|e| e.command.is_some() || e.client_token.is_some());
        }
        let entry = match file
            .tunnel
            .iter()
            .position(|e| e.listen == self.listen && e.name == self.name)
        {
            Some(i) => &mut file.tunnel[i],
            None => {
                let i = file.tunnel.len();
                file.tunnel.push(Entry {
                    listen: self.listen.clone(),
                    command: None,
                    name: self.name.clone(),
                    client_token: None,
                });
                &mut file.tunnel[i]
            }
        };
        if command.is_some() {
            entry.command = command;
        }
        if self.client_token.is_some() {
            entry.client_token.clone_from(&self.client_token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    const HERE: &str = "127.0.0.1:7171";

    /// Stores `name`, with the command line and the token given, for a bridge at `at`.
    fn store(path: &Path, at: &str, name: &str, command: Option<&str>, token: Option<&str>) {
        let m = LocalMemory::load(path.to_owned(), listen(at));
        let mut p = m.picked(name);
        p.command = command.map(words);
        p.client_token = token.map(str::to_owned);
        p.store().unwrap();
    }

    /// Picks a name for `command` and a token, and stores both, as a first run does.
    fn first_run(path: &Path, at: &str, command: &str, name: &str, token: &str) {
        let m = LocalMemory::load(path.to_owned(), listen(at));
        assert_eq!(m.name_for(&words(command)), None);
        store(path, at, name, Some(command), Some(token));
    }

    /// The file as a bridge at [`HERE`] reads it.
    fn here(path: &Path) -> LocalMemory {
        LocalMemory::load(path.to_owned(), listen(HERE))
    }

    /// What a bridge at [`HERE`] finds in the file: the name for `command` and its token.
    fn assert_remembers(path: &Path, command: &str, name: &str, token: Option<&str>) {
        let m = here(path);
        assert_eq!(m.name_for(&words(command)).as_deref(), Some(name));
        assert_eq!(m.token_for(name).as_deref(), token);
    }

    #[test]
    fn a_picked_name_and_token_come_back_for_the_same_command_and_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/local.toml");
        first_run(&path, HERE, "npx -y server /a b", "abcdefghij", "tok-1");

        let m = LocalMemory::load(path.clone(), listen(HERE));
        assert_eq!(
            m.name_for(&words("npx -y server /a b")).as_deref(),
            Some("abcdefghij")
        );
        assert_eq!(m.token_for("abcdefghij").as_deref(), Some("tok-1"));
        // Another command line, another address: nothing.
        assert_eq!(m.name_for(&words("npx -y server /a")), None);
        let other = LocalMemory::load(path.clone(), listen("127.0.0.1:7172"));
        assert_eq!(other.name_for(&words("npx -y server /a b")), None);
        assert_eq!(other.token_for("abcdefghij"), None);
        // Stored nothing new: the file is left as it is.
        let before = std::fs::read_to_string(&path).unwrap();
        m.picked("abcdefghij").store().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn port_zero_remembers_nothing() {
        assert!(LocalMemory::open(listen("127.0.0.1:0")).is_none());
    }

    #[test]
    fn a_given_name_is_not_remembered_for_the_command_but_its_token_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        store(&path, HERE, "my-files", None, Some("tok-given-name"));

        assert_eq!(here(&path).name_for(&words("server")), None);
        assert_eq!(
            here(&path).token_for("my-files").as_deref(),
            Some("tok-given-name")
        );
    }

    #[test]
    fn a_new_token_replaces_the_old_one_and_keeps_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        first_run(&path, HERE, "server", "abcdefghij", "tok-old");
        first_run(&path, "[::1]:7171", "server", "klmnopqrst", "tok-v6");

        store(&path, HERE, "abcdefghij", None, Some("tok-new"));

        assert_remembers(&path, "server", "abcdefghij", Some("tok-new"));
        let v6 = LocalMemory::load(path.clone(), listen("[::1]:7171"));
        assert_eq!(v6.token_for("klmnopqrst").as_deref(), Some("tok-v6"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("tok-old"), "{text}");
    }

    /// After a first run for `server`, a run without a token stores `name` for `command`:
    /// that name is remembered without a token, and the first name keeps its own.
    fn a_later_run_without_a_token(command: &str, name: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        first_run(&path, HERE, "server", "abcdefghij", "tok-1");
        store(&path, HERE, name, Some(command), None);
        assert_remembers(&path, command, name, None);
        assert_eq!(
            here(&path).token_for("abcdefghij").as_deref(),
            Some("tok-1")
        );
    }

    #[test]
    fn a_run_without_a_token_keeps_the_remembered_one() {
        // `--auth none` remembers the name only; a token stored before stays.
        a_later_run_without_a_token("other", "zzzzzzzzzz");
    }

    #[test]
    fn a_command_line_goes_with_one_name() {
        // A new name picked for the same command (the old entry was edited away, say):
        // the command line follows it, the old name keeps its token.
        a_later_run_without_a_token("server", "klmnopqrst");
    }

    #[test]
    fn unusable_entries_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        std::fs::write(
            &path,
            "[[tunnel]]\nlisten = \"127.0.0.1:7171\"\ncommand = \"server\"\nname = \"NO!\"\n\
             client_token = \"has space\"\n",
        )
        .unwrap();
        assert_eq!(here(&path).name_for(&words("server")), None);
        assert_eq!(here(&path).token_for("NO!"), None);
    }

    #[test]
    fn a_corrupt_file_is_read_as_empty_and_moved_aside_when_storing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        std::fs::write(&path, "this is [not toml").unwrap();
        first_run(&path, HERE, "server", "abcdefghij", "tok-1");

        let bad = dir.path().join("local.toml.bad");
        assert_eq!(std::fs::read_to_string(bad).unwrap(), "this is [not toml");
        assert_remembers(&path, "server", "abcdefghij", Some("tok-1"));

        // Unknown keys (a file from another version, or a typo) count as unreadable too.
        let path = dir.path().join("other.toml");
        std::fs::write(
            &path,
            "[[tunnel]]\nlisten = \"x\"\nname = \"abc\"\nextra = 1\n",
        )
        .unwrap();
        assert!(LocalMemory::load(path, listen(HERE)).entries.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/local.toml");
        first_run(&path, HERE, "server", "abcdefghij", "tok-1");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn concurrent_stores_keep_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let m = LocalMemory::load(path, listen(HERE));
                    let mut p = m.picked(&format!("tunnel-{i}"));
                    p.command = Some(vec![format!("server-{i}")]);
                    p.client_token = Some(format!("tok-{i}"));
                    p.store().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let m = LocalMemory::load(path, listen(HERE));
        for i in 0..8 {
            assert_eq!(
                m.name_for(&[format!("server-{i}")]),
                Some(format!("tunnel-{i}"))
            );
            assert_eq!(
                m.token_for(&format!("tunnel-{i}")),
                Some(format!("tok-{i}"))
            );
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let m = LocalMemory::load(PathBuf::from("/nonexistent/local.toml"), listen(HERE));
        let mut p = m.picked("abcdefghij");
        p.client_token = Some("secret-token".into());
        assert!(!format!("{p:?}").contains("secret-token"));
    }
}
