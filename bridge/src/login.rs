//! A stable identity for the desktop: `bridge login` / `bridge logout` and the files behind
//! them.
//!
//! `bridge login <relay>` checks a bridge token against the relay and stores the relay URL
//! and the token in `credentials.toml` in the user's configuration directory
//! (`$XDG_CONFIG_HOME/mcp-tunnel`, else `~/.config/mcp-tunnel`; on macOS
//! `~/Library/Application Support/mcp-tunnel`): mode 0600 in a 0700 directory, written
//! atomically. `bridge run` uses them when no flag or environment variable names a relay.
//!
//! Next to them, `state.toml` remembers the tunnel name chosen for each server command line
//! on each relay, so a server keeps its public URL across restarts (and `local.toml`, see
//! local_state.rs, the names and client tokens of the in-process relay).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientAuth, Frame, Hello, Limits, RefuseReason};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use url::Url;

/// Name of the directory under the user's configuration directory.
const APP_DIR: &str = "mcp-tunnel";
/// The stored login.
const CREDENTIALS_FILE: &str = "credentials.toml";
/// Tunnel names remembered by `bridge run`.
const STATE_FILE: &str = "state.toml";
/// Longest wait for the relay while checking a token.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// The tunnel path used to check a token. The `Hello` names a different, invalid tunnel:
/// the relay checks the token before the name, so a good token gets "invalid tunnel name"
/// and no name is ever claimed by a check.
const CHECK_PATH_NAME: &str = "login-check";
const CHECK_HELLO_NAME: &str = "login-check!";

/// `bridge login` options.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// Relay base URL (e.g. https://relay.example.com).
    pub relay: Url,
    /// The bridge token (from `relay token create` on the relay's host). Prefer the
    /// BRIDGE_TOKEN environment variable, or leave both out to be asked for it.
    #[arg(long, env = "BRIDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file with the CA certificates to trust for an https relay; remembered with the
    /// login.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Store the token without checking it against the relay.
    #[arg(long)]
    pub no_check: bool,
}

/// The stored login: where the relay is and the bridge token it knows.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Relay base URL.
    pub relay: String,
    /// Bridge token.
    pub token: String,
    /// CA certificates to trust for the relay (absolute path), if not the web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("relay", &self.relay)
            .field("token", &"<hidden>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Credentials {
    /// The relay URL, parsed.
    pub fn relay_url(&self) -> Result<Url> {
        Url::parse(&self.relay).with_context(|| {
            format!(
                "{} holds an invalid relay URL: run `bridge login <relay>` again",
                credentials_path()
                    .map_or_else(|_| CREDENTIALS_FILE.into(), |p| p.display().to_string())
            )
        })
    }
}

/// The user's configuration directory for the bridge: `$XDG_CONFIG_HOME/mcp-tunnel` when
/// that variable holds an absolute path, else `~/Library/Application Support/mcp-tunnel`
/// on macOS and `~/.config/mcp-tunnel` elsewhere (on Windows `~` is the user profile when
/// HOME is not set).
pub fn config_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from)
        && x.is_absolute()
    {
        return Ok(x.join(APP_DIR));
    }
    let home = home_dir()?;
    if cfg!(target_os = "macos") {
        Ok(home.join("Library/Application Support").join(APP_DIR))
    } else {
        Ok(home.join(".config").join(APP_DIR))
    }
}

/// The user's home directory: `$HOME`, else on Windows the user profile (`%USERPROFILE%`).
pub fn home_dir() -> Result<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
    };
    if let Some(h) = absolute("HOME") {
        return Ok(h);
    }
    if cfg!(windows)
        && let Some(h) = absolute("USERPROFILE")
    {
        return Ok(h);
    }
    bail!("HOME is not set (or not an absolute path): cannot find the configuration directory")
}

/// Path of `credentials.toml`.
pub fn credentials_path() -> Result<PathBuf> {
    Ok(config_dir()?.join(CREDENTIALS_FILE))
}

/// Path of `state.toml`.
pub fn state_path() -> Result<PathBuf> {
    Ok(config_dir()?.join(STATE_FILE))
}

/// The stored login, if there is one.
pub fn load_credentials() -> Result<Option<Credentials>> {
    // Without a home directory nothing can have been stored.
    let Ok(path) = credentials_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    warn_if_readable_by_others(&path);
    let creds: Credentials = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}; run `bridge login <relay>` again",
            path.display(),
            e.message()
        )
    })?;
    Ok(Some(creds))
}

/// Warns when `path` can be read by other users.
#[cfg(unix)]
pub(crate) fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} can be read by other users; restrict it with `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}

/// Warns when `path` can be read by other users (not checked on this system).
#[cfg(not(unix))]
pub(crate) fn warn_if_readable_by_others(_: &Path) {}

/// Creates `dir` (and its parents) and makes it private to the user (0700).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private (chmod 700)", dir.display()))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

/// Writes `data` to `path` atomically (a private temporary file in the same directory,
/// synced, then renamed over `path`), readable by the user only (0600).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    ensure_private_dir(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Stores the login; the path written.
pub fn save_credentials(creds: &Credentials) -> Result<PathBuf> {
    let path = credentials_path()?;
    let mut text =
        String::from("# Written by `bridge login`; `bridge logout` removes it. Keep it private.\n");
    text.push_str(&toml::to_string(creds).context("encoding the credentials")?);
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// One remembered tunnel name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RememberedName {
    relay: String,
    command: String,
    name: String,
}

/// `state.toml`: tunnel names by relay and server command line.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    #[serde(default)]
    tunnel: Vec<RememberedName>,
}

/// A relay URL as a stable key (no trailing slash).
fn relay_key(relay: &Url) -> String {
    relay.as_str().trim_end_matches('/').to_owned()
}

/// A command line as one string, each word quoted for a POSIX shell when needed.
pub fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_~".contains(&b));
    if plain {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn read_state(path: &Path) -> State {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(
                "{} is unreadable ({}); tunnel names will be chosen again",
                path.display(),
                e.message()
            );
            State::default()
        }),
        Err(_) => State::default(),
    }
}

/// The tunnel name remembered for `command` on `relay`.
pub fn remembered_name(relay: &Url, command: &[String]) -> Option<String> {
    let path = state_path().ok()?;
    let (relay, command) = (relay_key(relay), command_line(command));
    read_state(&path)
        .tunnel
        .into_iter()
        .find(|t| t.relay == relay && t.command == command)
        .map(|t| t.name)
        .filter(|n| protocol::valid_tunnel_name(n))
}

/// Remembers `name` for `command` on `relay` (under a lock, so bridges starting at the same
/// moment do not lose each other's names).
pub fn remember_name(relay: &Url, command: &[String], name: &str) -> Result<()> {
    let path = state_path()?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent directory", path.display()))?;
    ensure_private_dir(dir)?;
    let _lock = FileLock::acquire(&dir.join(".state.lock"))?;
    let mut state = read_state(&path);
    let (relay, command) = (relay_key(relay), command_line(command));
    state
        .tunnel
        .retain(|t| !(t.relay == relay && t.command == command));
    state.tunnel.push(RememberedName {
        relay,
        command,
        name: name.to_owned(),
    });
    let mut text = String::from(
        "# Tunnel names chosen by `bridge run`, by relay and server command line, so that a\n\
         # server keeps its URL across restarts. Delete an entry to get a new name.\n",
    );
    text.push_str(&toml::to_string(&state).context("encoding the state")?);
    write_private(&path, text.as_bytes())
}

/// An exclusive advisory lock on a file, released when dropped.
pub(crate) struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Opens (creating it) and locks `path`, waiting for another holder to let go.
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; the lock goes with the file.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
        #[cfg(windows)]
        {
            use std::os::windows::io::AsRawHandle;
            use windows_sys::Win32::Storage::FileSystem::{LOCKFILE_EXCLUSIVE_LOCK, LockFileEx};
            use windows_sys::Win32::System::IO::OVERLAPPED;
            // SAFETY: a zeroed OVERLAPPED (offset 0) for a blocking LockFileEx on a handle we
            // own; the lock goes with the handle.
            let locked = unsafe {
                let mut at: OVERLAPPED = std::mem::zeroed();
                LockFileEx(
                    file.as_raw_handle(),
                    LOCKFILE_EXCLUSIVE_LOCK,
                    0,
                    u32::MAX,
                    u32::MAX,
                    &mut at,
                )
            };
            if locked == 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
        Ok(Self { _file: file })
    }
}

/// `bridge login`: checks the token against the relay and stores the login.
pub fn login(args: LoginArgs) -> Result<ExitCode> {
    if !matches!(args.relay.scheme(), "http" | "https") || args.relay.host_str().is_none() {
        bail!(
            "{} is not a relay URL: give its base URL, e.g. https://relay.example.com",
            args.relay
        );
    }
    crate::cleartext::check(&args.relay)?;
    let ca_file = match &args.ca_file {
        Some(p) => {
            Some(std::fs::canonicalize(p).with_context(|| format!("--ca-file {}", p.display()))?)
        }
        None => None,
    };
    let token = match args.token.clone().filter(|t| !t.trim().is_empty()) {
        Some(t) => t.trim().to_owned(),
        None => read_token()?,
    };
    if !args.no_check {
        let tls = crate::link::tls_config(ca_file.as_deref())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let checked = rt.block_on(check_token(&args.relay, &token, tls));
        match checked {
            Ok(()) => {}
            Err(TokenCheck::Refused(RefuseReason::BadToken, _)) => {
                eprintln!(
                    "error: the relay refused the bridge token: run `bridge login {}` again \
                     with a valid one, or create one with `relay token create NAME` on the VPS",
                    args.relay.as_str().trim_end_matches('/')
                );
                return Ok(ExitCode::from(2));
            }
            Err(TokenCheck::Refused(_, message)) => {
                eprintln!("error: the relay refused the check: {message}");
                return Ok(ExitCode::from(2));
            }
            Err(TokenCheck::Unreachable(message)) => {
                bail!(
                    "{message}\n  check the URL, DNS and the firewall (or store the token unchecked \
                     with --no-check)"
                );
            }
        }
    }
    let path = save_credentials(&Credentials {
        relay: args.relay.as_str().trim_end_matches('/').to_owned(),
        token,
        ca_file,
    })?;
    println!(
        "Logged in to {} ({}the token is stored in {}, readable by you only).",
        args.relay.as_str().trim_end_matches('/'),
        if args.no_check { "not checked; " } else { "" },
        path.display()
    );
    println!("`bridge run -- <command>` now publishes through this relay, with no flags.");
    Ok(ExitCode::SUCCESS)
}

/// `bridge logout`: removes the stored login (remembered tunnel names stay).
pub fn logout() -> Result<ExitCode> {
    let path = credentials_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => {
            println!("Removed {}.", path.display());
            if let Ok(state) = state_path()
                && state.exists()
            {
                println!(
                    "Tunnel names remembered in {} are kept (delete it to forget them).",
                    state.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("Not logged in ({} does not exist).", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The token, asked for on the terminal without echo, or read from a piped standard input.
fn read_token() -> Result<String> {
    let stdin = std::io::stdin();
    let token = if stdin.is_terminal() {
        eprint!("Bridge token (input hidden): ");
        let _ = std::io::stderr().flush();
        let line = {
            let _echo_off = EchoOff::new();
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line
        };
        eprintln!();
        line
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!(
            "no bridge token given: pass --token, set BRIDGE_TOKEN, or type it when asked \
             (create one with `relay token create NAME` on the VPS)"
        );
    }
    Ok(token)
}

/// Turns the terminal's echo off on standard input while it lives.
struct EchoOff {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> Self {
        #[cfg(unix)]
        {
            // SAFETY: termios calls on standard input with a zeroed, then filled, struct.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) != 0 {
                    return Self { saved: None };
                }
                let saved = t;
                t.c_lflag &= !libc::ECHO;
                if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                    return Self { saved: None };
                }
                Self { saved: Some(saved) }
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(t) = self.saved {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

/// Why a token check failed.
#[derive(Debug)]
pub enum TokenCheck {
    /// The relay refused the handshake for this reason (with its message).
    Refused(RefuseReason, String),
    /// The relay could not be reached or did not speak the bridge protocol.
    Unreachable(String),
}

/// Checks `token` with a bridge handshake: the relay checks the token first, then the
/// (deliberately invalid) tunnel name, so a good token is refused only for the name and
/// nothing is claimed.
pub async fn check_token(
    relay: &Url,
    token: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(), TokenCheck> {
    match tokio::time::timeout(CHECK_TIMEOUT, handshake(relay, token, tls)).await {
        Err(_) => Err(TokenCheck::Unreachable(format!(
            "the relay at {relay} did not answer within {CHECK_TIMEOUT:?}"
        ))),
        Ok(Err(e)) => Err(TokenCheck::Unreachable(e)),
        Ok(Ok(Frame::Welcome(_))) => Ok(()),
        Ok(Ok(Frame::Refused(r))) => match r.reason {
            RefuseReason::BadName => Ok(()),
            reason => Err(TokenCheck::Refused(reason, r.message)),
        },
        Ok(Ok(_)) => Err(TokenCheck::Unreachable(format!(
            "{relay} answered the handshake with an unexpected frame: is it an mcp-tunnel relay?"
        ))),
    }
}

async fn handshake(
    relay: &Url,
    token: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Frame, String> {
    let shown = relay.as_str().trim_end_matches('/');
    let url = crate::link::connect_url(relay, CHECK_PATH_NAME).map_err(|e| e.to_string())?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{relay} has no host"))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot reach the relay at {shown} ({host}:{port}): {e}"))?;
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if url.scheme() == "wss" {
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("invalid relay host name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                format!(
                    "TLS with the relay at {shown} failed: {e} (for a private CA, pass --ca-file)"
                )
            })?;
        hello(stream, request, token, relay).await
    } else {
        hello(tcp, request, token, relay).await
    }
}

async fn hello<S>(
    stream: S,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    token: &str,
    relay: &Url,
) -> Result<Frame, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| crate::link::upgrade_error(relay, &e))?;
    let hello = Frame::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        bridge_version: env!("CARGO_PKG_VERSION").to_owned(),
        token: token.to_owned(),
        tunnel: CHECK_HELLO_NAME.to_owned(),
        client_auth: ClientAuth::OAuth,
    });
    ws.send(Message::Binary(hello.encode()))
        .await
        .map_err(|e| e.to_string())?;
    let limits = Limits::default();
    let answer = loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                break Frame::decode(b, &limits).map_err(|e| e.to_string())?;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | None => {
                return Err(format!(
                    "{relay} closed the connection during the handshake: is it an mcp-tunnel relay?"
                ));
            }
            Some(Err(e)) => return Err(e.to_string()),
        }
    };
    let _ = ws.close(None).await;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let words: Vec<String> = ["npx", "-y", "@scope/pkg", "/a b", "it's", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&words),
            r"npx -y @scope/pkg '/a b' 'it'\''s' ''"
        );
    }
}
