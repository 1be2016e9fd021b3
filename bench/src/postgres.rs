//! A throwaway PostgreSQL server for the cluster section, started the way the tests'
//! `e2e::postgres` starts one: Debian's `initdb` into a fresh directory, then `postgres`
//! itself (not `pg_ctl`) as a child process, with trust authentication, listening on
//! 127.0.0.1 only, on a free port, durability off (`fsync`, `synchronous_commit`,
//! `full_page_writes`). The binaries come from `/usr/lib/postgresql/<highest version>/bin`
//! (the `postgresql` package), else from `PATH`.
//!
//! PostgreSQL refuses to run as root: as root, `initdb` and `postgres` run as the
//! `postgres` system user of Debian's package, in a directory that user owns. The
//! directory is `<tmp>/bench-postgres-<pid>`, removed when the server is dropped;
//! directories left by benchmark processes no longer alive are removed by the next start.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procs::Proc;
use crate::setup::READY;

/// The superuser `initdb` creates (no password: trust authentication on loopback).
const SUPERUSER: &str = "bench";
/// How many ports to try when the one picked is taken before the server binds it.
const PORT_ATTEMPTS: usize = 3;

/// A running PostgreSQL server of the benchmark's own, stopped (and its directory
/// removed) when dropped.
pub struct Postgres {
    proc: Option<Proc>,
    dir: PathBuf,
    psql: PathBuf,
    admin_url: String,
    /// `postgres --version`.
    pub version: String,
}

impl Postgres {
    /// Runs `initdb` into a fresh directory, starts the server on a free port (its log in
    /// `logs/postgres.log`) and waits until it answers `select 1`.
    pub fn start(logs: &Path) -> Result<Self> {
        let [initdb, postgres, psql] = ["initdb", "postgres", "psql"].map(find_bin);
        let (Some(initdb), Some(postgres), Some(psql)) = (initdb, postgres, psql) else {
            bail!(
                "PostgreSQL is not installed (no initdb, postgres and psql in \
                 /usr/lib/postgresql/*/bin or PATH): apt-get install postgresql"
            );
        };
        let version = Command::new(&postgres)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let owner = server_user()?;
        let dir = server_dir(owner)?;
        let data = dir.join("data");
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args(["--auth=trust", "--username", SUPERUSER])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .current_dir(&dir)
            .stdin(Stdio::null());
        run_as(&mut cmd, owner);
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", initdb.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}):\n{}{}",
                initdb.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut server = Self {
            proc: None,
            dir,
            psql,
            admin_url: String::new(),
            version,
        };
        for _ in 0..PORT_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut cmd = Command::new(&postgres);
            cmd.arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&server.dir)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F"])
                .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=200"])
                .current_dir(&server.dir);
            run_as(&mut cmd, owner);
            let proc = Proc::spawn("postgres", cmd, logs)?;
            server.admin_url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
            server.proc = Some(proc);
            match server.ready(port) {
                Ok(()) => return Ok(server),
                Err(e) if format!("{e:#}").contains("Address already in use") => {
                    server.proc = None;
                }
                Err(e) => return Err(e),
            }
        }
        bail!("PostgreSQL found {PORT_ATTEMPTS} free ports taken when it started")
    }

    /// Waits until the server accepts connections on `port` and answers `select 1`.
    fn ready(&mut self, port: u16) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + READY;
        let mut last = String::new();
        loop {
            if !self.proc.as_mut().is_some_and(Proc::running) {
                bail!("postgres ended before it was ready:\n{}", self.log_tail());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                match self.psql(&self.admin_url, "select 1") {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "postgres did not answer on {addr} within {READY:?} ({last}):\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql(&self.admin_url, &format!("CREATE DATABASE \"{name}\""))?;
        self.admin_url
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/{name}"))
            .context("admin URL without a database")
    }

    /// The server's pid (its per-connection backends are its children).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Runs `sql` with `psql` on the database at `url`: its rows, unaligned.
    fn psql(&self, url: &str, sql: &str) -> Result<String> {
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-d", url, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.psql.display()))?;
        if !out.status.success() {
            bail!(
                "psql {url} -c {sql:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stops the server and its backends first.
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL program: in Debian's `/usr/lib/postgresql/<version>/bin`, the highest
/// version first, else on `PATH`.
fn find_bin(name: &str) -> Option<PathBuf> {
    let mut debian: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    debian.sort_by(|a, b| b.0.cmp(&a.0));
    let path = std::env::var_os("PATH").unwrap_or_default();
    debian
        .into_iter()
        .map(|(_, dir)| dir)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The user to run PostgreSQL as, `(uid, gid)`: `None` for the current one, the `postgres`
/// user of `/etc/passwd` when running as root (which PostgreSQL refuses).
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: a plain syscall without arguments.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres"))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .context(
            "running as root, which PostgreSQL refuses, and there is no `postgres` user to \
             run it as: apt-get install postgresql",
        )
}

fn run_as(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

/// A fresh `<tmp>/bench-postgres-<pid>`, owned by `owner` (if any); the directories of
/// benchmark processes no longer alive are removed first.
fn server_dir(owner: Option<(u32, u32)>) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("bench-postgres-"))
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("bench-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .with_context(|| format!("giving {} to postgres", dir.display()))?;
    }
    Ok(dir)
}
