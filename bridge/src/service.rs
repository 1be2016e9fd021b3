//! `bridge service install`: runs `bridge run` as a user service that starts at login and
//! restarts on failure — a systemd user unit on Linux, a launchd agent on macOS.
//!
//! The unit holds no secret: the service reads the login stored by `bridge login` when it
//! starts. It has no terminal, so OAuth clients are approved with `bridge approve <code>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// `bridge service` commands.
#[derive(clap::Subcommand)]
pub enum ServiceCommand {
    /// Write a user service that runs `bridge run` for a server:
    /// `bridge service install [--name NAME] -- <cmd> [args…]` (or `--upstream URL`, or
    /// `--config FILE`).
    Install(InstallArgs),
}

/// Kinds of service definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd agent property list (macOS).
    Launchd,
}

/// `bridge service install` options.
#[derive(clap::Args)]
pub struct InstallArgs {
    /// The tunnel name, also naming the service (`mcp-bridge-NAME`). Default: the name
    /// remembered for this command on the stored relay, or a new random one (remembered).
    #[arg(long)]
    pub name: Option<String>,
    /// Serve the servers of this configuration file (`bridge run --config FILE`) instead of
    /// a command.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve the local HTTP MCP server at this URL (`bridge run --upstream URL`) instead of
    /// a command.
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "command"])]
    pub upstream: Option<url::Url>,
    /// Print the service definition of this kind instead of writing it.
    #[arg(long, value_enum)]
    pub print: Option<Kind>,
    /// The server command and its arguments (after `--`).
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// Runs a `bridge service` command.
pub fn run(command: ServiceCommand) -> Result<ExitCode> {
    match command {
        ServiceCommand::Install(args) => install(args),
    }
}

/// What the service runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Tunnel (and service) name.
    pub name: String,
    /// The full command line: the bridge binary, `run`, its options, the server.
    pub argv: Vec<String>,
    /// Environment variables of the service.
    pub env: Vec<(String, String)>,
    /// Where launchd writes the service's output.
    pub log_file: PathBuf,
}

fn install(args: InstallArgs) -> Result<ExitCode> {
    let given = [
        args.config.is_some(),
        args.upstream.is_some(),
        !args.command.is_empty(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        bail!(
            "give the server command after `--`, --upstream URL or --config FILE: \
             `bridge service install [--name NAME] -- <cmd> [args…]`"
        );
    }
    // How the server is named and remembered: its command line, or its URL.
    let words: Vec<String> = match &args.upstream {
        Some(u) => vec![u.to_string()],
        None => args.command.clone(),
    };
    let creds = crate::login::load_credentials()?;
    let bridge = std::env::current_exe()
        .context("cannot find the bridge binary's path")?
        .canonicalize()
        .context("cannot find the bridge binary's path")?;
    let mut argv = vec![bridge.display().to_string(), "run".into()];
    let name = match (&args.name, &args.config) {
        (Some(n), _) => {
            if !protocol::valid_tunnel_name(n) {
                bail!("invalid --name {n:?}: use 3-40 characters a-z, 0-9 and '-'");
            }
            n.clone()
        }
        (None, Some(config)) => config
            .file_stem()
            .map(|s| crate::config::sanitize_name(&s.to_string_lossy()))
            .unwrap_or_else(|| "servers".into()),
        (None, None) => match &creds {
            Some(c) => {
                let relay = c.relay_url()?;
                match crate::login::remembered_name(&relay, &words) {
                    Some(n) => n,
                    None => {
                        let n = crate::run::random_name();
                        crate::login::remember_name(&relay, &words, &n)?;
                        n
                    }
                }
            }
            None => crate::run::random_name(),
        },
    };
    match &args.config {
        Some(config) => {
            let config = config
                .canonicalize()
                .with_context(|| format!("--config {}", config.display()))?;
            argv.push("--config".into());
            argv.push(config.display().to_string());
            if args.name.is_some() {
                argv.push("--name".into());
                argv.push(name.clone());
            }
        }
        None => {
            argv.push("--name".into());
            argv.push(name.clone());
        }
    }
    argv.push("--quiet".into());
    if let Some(u) = &args.upstream {
        argv.push("--upstream".into());
        argv.push(u.to_string());
    }
    if !args.command.is_empty() {
        argv.push("--".into());
        let mut command = args.command.clone();
        // The service's PATH may differ: name the program by its absolute path when it is
        // found now.
        if let Some(abs) = which(&command[0]) {
            command[0] = abs.display().to_string();
        }
        argv.extend(command);
    }
    let mut env = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".to_owned(), path.to_string_lossy().into_owned()));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        env.push((
            "XDG_CONFIG_HOME".to_owned(),
            x.to_string_lossy().into_owned(),
        ));
    }
    let home = crate::login::home_dir()?;
    let plan = Plan {
        log_file: home
            .join("Library/Logs")
            .join(format!("mcp-bridge-{name}.log")),
        name: name.clone(),
        argv,
        env,
    };
    if let Some(kind) = args.print {
        print!("{}", render(kind, &plan));
        return Ok(ExitCode::SUCCESS);
    }
    let kind = if cfg!(target_os = "macos") {
        Kind::Launchd
    } else if cfg!(target_os = "linux") {
        Kind::Systemd
    } else {
        bail!("no service manager is known on this system: use --print systemd|launchd");
    };
    let path = match kind {
        Kind::Systemd => home
            .join(".config/systemd/user")
            .join(format!("mcp-bridge-{name}.service")),
        Kind::Launchd => home
            .join("Library/LaunchAgents")
            .join(format!("mcp-bridge-{name}.plist")),
    };
    write_file(&path, render(kind, &plan).as_bytes())?;
    println!("Wrote {}.", path.display());
    match kind {
        Kind::Systemd => {
            println!("Start it now and at every login with:");
            println!(
                "  systemctl --user daemon-reload && systemctl --user enable --now mcp-bridge-{name}.service"
            );
            println!("Its output (with the URL): journalctl --user -u mcp-bridge-{name} -f");
            println!(
                "To keep it running while you are logged out: loginctl enable-linger {}",
                std::env::var("USER").unwrap_or_else(|_| "$USER".into())
            );
        }
        Kind::Launchd => {
            println!("Start it now and at every login with:");
            println!("  launchctl load -w {}", path.display());
            println!("Its output (with the URL): {}", plan.log_file.display());
        }
    }
    match &creds {
        Some(c) => {
            if args.config.is_none() {
                println!(
                    "It publishes {}/{name}/mcp with the login stored by `bridge login` (read at \
                     each start; the unit holds no token).",
                    c.relay.trim_end_matches('/')
                );
            }
        }
        None => println!(
            "Note: you are not logged in, so it will use the in-process relay on 127.0.0.1:7171. \
             Run `bridge login <relay>` first to publish through your relay."
        ),
    }
    println!(
        "A service has no terminal: approve OAuth clients with `bridge approve <code>` (the code \
         the consent page shows; it uses the stored login)."
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a service definition (mode 0644), creating its directory.
fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The program's absolute path, looked up in PATH like a shell does.
fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return std::fs::canonicalize(program).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// The service definition of `kind` for `plan`.
pub fn render(kind: Kind, plan: &Plan) -> String {
    match kind {
        Kind::Systemd => systemd_unit(plan),
        Kind::Launchd => launchd_plist(plan),
    }
}

/// One word of a systemd `ExecStart=` line: quoted when needed, `%` and `$` escaped.
fn systemd_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@+=:,./-_~".contains(&b));
    if plain {
        return w.to_owned();
    }
    let mut out = String::from("\"");
    for c in w.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value of a systemd `Environment=` assignment, quoted as a whole.
fn systemd_env(key: &str, value: &str) -> String {
    let mut out = String::from("\"");
    out.push_str(key);
    out.push('=');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd user unit.
pub fn systemd_unit(plan: &Plan) -> String {
    let exec: Vec<String> = plan.argv.iter().map(|w| systemd_word(w)).collect();
    let mut s = format!(
        "# Written by `bridge service install`. No token is stored here: the bridge reads the\n\
         # login stored by `bridge login` when it starts.\n\
         [Unit]\n\
         Description=MCP bridge {name} (bridge run)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n",
        name = plan.name
    );
    for (k, v) in &plan.env {
        s.push_str(&format!("Environment={}\n", systemd_env(k, v)));
    }
    s.push_str(&format!(
        "ExecStart={}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # Exit code 2: the relay refused the tunnel (token or name); restarting cannot help.\n\
         RestartPreventExitStatus=2\n\
         KillMode=mixed\n\
         TimeoutStopSec=20\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec.join(" ")
    ));
    s
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\t' && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// The launchd agent property list.
pub fn launchd_plist(plan: &Plan) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `bridge service install`. No token is stored here: the bridge reads\n     \
         the login stored by `bridge login` when it starts. -->\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    s.push_str(&format!(
        "  <key>Label</key>\n  <string>mcp-bridge-{}</string>\n",
        xml_escape(&plan.name)
    ));
    s.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    for w in &plan.argv {
        s.push_str(&format!("    <string>{}</string>\n", xml_escape(w)));
    }
    s.push_str("  </array>\n");
    if !plan.env.is_empty() {
        s.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (k, v) in &plan.env {
            s.push_str(&format!(
                "    <key>{}</key>\n    <string>{}</string>\n",
                xml_escape(k),
                xml_escape(v)
            ));
        }
        s.push_str("  </dict>\n");
    }
    let log = xml_escape(&plan.log_file.display().to_string());
    s.push_str(&format!(
        "  <key>RunAtLoad</key>\n  <true/>\n\
         \x20 <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n\
         \x20 <key>ThrottleInterval</key>\n  <integer>5</integer>\n\
         \x20 <key>StandardOutPath</key>\n  <string>{log}</string>\n\
         \x20 <key>StandardErrorPath</key>\n  <string>{log}</string>\n\
         </dict>\n</plist>\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            name: "files".into(),
            argv: vec![
                "/usr/local/bin/bridge".into(),
                "run".into(),
                "--name".into(),
                "files".into(),
                "--".into(),
                "/usr/bin/npx".into(),
                "a b".into(),
                "100%".into(),
                "$HOME".into(),
                "<x>&".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            log_file: "/Users/me/Library/Logs/mcp-bridge-files.log".into(),
        }
    }

    #[test]
    fn systemd() {
        let u = systemd_unit(&plan());
        assert!(u.contains(
            "ExecStart=/usr/local/bin/bridge run --name files -- /usr/bin/npx \"a b\" \"100%%\" \"$$HOME\" \"<x>&\"\n"
        ), "{u}");
        assert!(u.contains("Restart=on-failure\n"));
        assert!(u.contains("Environment=\"PATH=/usr/bin:/bin\"\n"));
        assert!(u.contains("WantedBy=default.target"));
    }

    #[test]
    fn launchd() {
        let p = launchd_plist(&plan());
        assert!(p.contains("<string>mcp-bridge-files</string>"));
        assert!(p.contains("<string>&lt;x&gt;&amp;</string>"));
        assert!(
            p.contains("<key>RunAtLoad</key>\n  <true/>\n  <key>KeepAlive</key>"),
            "{p}"
        );
        assert!(p.ends_with("</dict>\n</plist>\n"));
    }
}
