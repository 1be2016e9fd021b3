//! A real, throwaway PostgreSQL server for the tests of `relay serve --database-url
//! postgres://…`, with a fresh database for each test.
//!
//! [`Postgres::start`] runs Debian's `initdb` into a new temporary directory and then
//! `postgres` itself (not `pg_ctl`) as a child process: trust authentication, listening on
//! 127.0.0.1 only, on a port of [`crate::unused_port`], durability off (`fsync`,
//! `synchronous_commit`, `full_page_writes`). [`Postgres::shared`] is one such server per
//! test process. The binaries come from `/usr/lib/postgresql/<highest version>/bin` (the
//! `postgresql` package, installed by `tests/deps/system.sh`), else from `PATH`.
//!
//! The server never outlives the tests: it is started with `PR_SET_PDEATHSIG` (SIGKILL when
//! the test process dies, however it dies) from a thread that lives as long as the server
//! does, it is stopped when a [`Postgres`] is dropped, and the shared one when the test
//! process exits (`atexit`). Its directory goes with it; directories left by a test process
//! that was killed are removed by the next start.
//!
//! PostgreSQL refuses to run as root: as root (the test machine), `initdb` and `postgres`
//! run as the `postgres` system user of Debian's package, in a directory that user owns.
//!
//! With [`DATABASE_URL_VAR`] set, no server is started: the databases are created in the
//! server it names.

use std::fs::OpenOptions;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable naming an existing server to use instead of starting one: the
/// URL of a role allowed to create databases, e.g. `postgres://me:secret@db:5432/postgres`.
pub const DATABASE_URL_VAR: &str = "RELAY_TEST_DATABASE_URL";

/// The superuser `initdb` creates (no password: trust authentication on loopback).
const SUPERUSER: &str = "relay_test";
/// How long a started server has to answer `select 1`.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a signal to the server has to end it.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// How many ports to try when the one picked is taken before the server binds it.
const PORT_ATTEMPTS: usize = 3;

/// A PostgreSQL server for the tests: one started for them (stopped when dropped), or the
/// one of [`DATABASE_URL_VAR`].
pub struct Postgres {
    /// The URL of the superuser on its `postgres` database.
    admin_url: String,
    /// The `psql` that creates databases (and runs [`Postgres::psql`]).
    psql: PathBuf,
    /// The server started for the tests and its directory; `None` for
    /// [`DATABASE_URL_VAR`]'s.
    own: Option<(Server, tempfile::TempDir)>,
    /// The databases made in [`DATABASE_URL_VAR`]'s server, dropped at the end.
    made_elsewhere: Mutex<Vec<String>>,
}

impl Postgres {
    /// Starts a server of its own in a fresh directory, and waits until it answers; or,
    /// with [`DATABASE_URL_VAR`] set, checks that that server answers.
    ///
    /// Errors say what is missing (PostgreSQL not installed, no `postgres` user as root)
    /// or what failed, with the output of `initdb` or the server's log.
    pub fn start() -> Result<Postgres, String> {
        match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Self::elsewhere(url.trim().to_owned()),
            _ => Self::own(None),
        }
    }

    /// Starts a server of its own that also speaks TLS (`ssl=on`) with this certificate
    /// chain and key (PEM), for the tests of encrypted and verified connections. Plain
    /// connections still work on it.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Postgres, String> {
        Self::own(Some((cert_pem, key_pem)))
    }

    /// The server of this test process, started by its first caller and stopped when the
    /// process exits; panics with [`Postgres::start`]'s error (for every caller) if it
    /// cannot start.
    pub fn shared() -> &'static Postgres {
        let started = SHARED.get_or_init(|| {
            let pg = Postgres::start();
            if pg.is_ok() {
                // SAFETY: registers a plain function, which only reads an initialized static.
                unsafe {
                    libc::atexit(stop_shared);
                }
            }
            pg
        });
        match started {
            Ok(pg) => pg,
            Err(e) => panic!("{e}"),
        }
    }

    /// Creates a new, empty database (`t_<pid>_<time>_<n>`) and returns its URL,
    /// `postgres://relay_test@127.0.0.1:<port>/<name>` for a server of its own; panics if
    /// it cannot.
    pub fn new_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "t_{}_{secs}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut url = reqwest::Url::parse(&self.admin_url)
            .unwrap_or_else(|e| panic!("the server URL {:?}: {e}", self.admin_url));
        url.set_path(&format!("/{name}"));
        if self.own.is_none() {
            lock(&self.made_elsewhere).push(name.clone());
        }
        if let Err(e) = self.psql(&self.admin_url, &format!("CREATE DATABASE \"{name}\"")) {
            panic!("cannot create a database: {e}\n{}", self.log_text());
        }
        url.into()
    }

    /// The URL of the superuser on the server's `postgres` database (for
    /// [`DATABASE_URL_VAR`], its value).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Runs `sql` with `psql` on the database at `url`: its rows, unaligned (`|` between
    /// columns, one line each, no header), or psql's error.
    pub fn psql(&self, url: &str, sql: &str) -> Result<String, String> {
        run_psql(&self.psql, url, sql)
    }

    /// The server's log (empty for [`DATABASE_URL_VAR`]'s server).
    pub fn log_text(&self) -> String {
        self.own
            .as_ref()
            .map(|(s, _)| std::fs::read_to_string(&s.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// With [`DATABASE_URL_VAR`]: checks that the server answers.
    fn elsewhere(url: String) -> Result<Postgres, String> {
        let psql = find_bin("psql").ok_or_else(|| {
            format!(
                "{DATABASE_URL_VAR} is set but there is no psql (in /usr/lib/postgresql/*/bin \
                 or PATH): run tests/deps/system.sh (apt-get install postgresql)"
            )
        })?;
        run_psql(&psql, &url, "select 1")
            .map_err(|e| format!("the server of {DATABASE_URL_VAR} does not answer: {e}"))?;
        Ok(Postgres {
            admin_url: url,
            psql,
            own: None,
            made_elsewhere: Mutex::new(Vec::new()),
        })
    }

    /// `initdb` into a fresh directory, then the server on a free port (with TLS when
    /// given a certificate chain and key).
    fn own(tls: Option<(&str, &str)>) -> Result<Postgres, String> {
        let [initdb, postgres, psql] = ["initdb", "postgres", "psql"].map(find_bin);
        let (Some(initdb), Some(postgres), Some(psql)) = (initdb, postgres, psql) else {
            return Err(format!(
                "PostgreSQL is not installed (no initdb, postgres and psql in \
                 /usr/lib/postgresql/*/bin or PATH) and {DATABASE_URL_VAR} is not set: \
                 run tests/deps/system.sh (apt-get install postgresql)"
            ));
        };
        let owner = server_user()?;
        let dir = server_dir(owner)?;
        let data = dir.path().join("data");
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args(["--auth=trust", "--username", SUPERUSER])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .current_dir(dir.path())
            .stdin(Stdio::null());
        run_as(&mut cmd, owner);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", initdb.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}{}",
                initdb.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut settings: Vec<String> = Vec::new();
        if let Some((cert, key)) = tls {
            for (name, text) in [("server.crt", cert), ("server.key", key)] {
                private_file(&data.join(name), text, owner)?;
            }
            settings.extend(
                [
                    "ssl=on",
                    "ssl_cert_file=server.crt",
                    "ssl_key_file=server.key",
                ]
                .map(String::from),
            );
        }
        let log = dir.path().join("postgres.log");
        let mut tried = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::unused_port();
            let admin_url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
            let mut cmd = Command::new(&postgres);
            cmd.arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .current_dir(dir.path());
            for setting in &settings {
                cmd.arg("-c").arg(setting);
            }
            run_as(&mut cmd, owner);
            let server = Server::spawn(cmd, &log)?;
            match server.ready(port, &psql, &admin_url) {
                Ok(()) => {
                    return Ok(Postgres {
                        admin_url,
                        psql,
                        own: Some((server, dir)),
                        made_elsewhere: Mutex::new(Vec::new()),
                    });
                }
                Err(e) if e.contains("Address already in use") => tried.push(port),
                Err(e) => return Err(e),
            }
        }
        Err(format!(
            "PostgreSQL found ports {tried:?} taken when it started:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }

    /// Drops the databases made in [`DATABASE_URL_VAR`]'s server, or stops the server of
    /// its own and removes its directory. Once is enough; again does nothing.
    fn stop(&self) {
        match &self.own {
            Some((server, dir)) => {
                server.stop();
                let _ = std::fs::remove_dir_all(dir.path());
            }
            None => {
                for name in std::mem::take(&mut *lock(&self.made_elsewhere)) {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = self.psql(&self.admin_url, &drop);
                }
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server of [`Postgres::shared`].
static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();

/// Stops the shared server when the test process exits (registered with `atexit`).
extern "C" fn stop_shared() {
    if let Some(Ok(pg)) = SHARED.get() {
        pg.stop();
    }
}

/// A `postgres` process, stopped when dropped.
struct Server {
    pid: u32,
    /// Set when the process has ended.
    ended: Arc<Ended>,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` (output appended to `log`) from a thread that waits for it, so that the
    /// parent-death signal only comes with the end of the test process: it is tied to the
    /// thread that started the child, and test threads end with their test.
    fn spawn(mut cmd: Command, log: &Path) -> Result<Server, String> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let ended = Arc::new(Ended::default());
        let keeper = Arc::clone(&ended);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres".to_owned())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(child.id()));
                let how = match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("cannot wait for it: {e}"),
                };
                *lock(&keeper.how) = Some(how);
                keeper.cond.notify_all();
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let pid = rx
            .recv()
            .map_err(|_| "the thread starting postgres ended".to_owned())?
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        Ok(Server {
            pid,
            ended,
            log: log.to_owned(),
        })
    }

    /// Waits until the server accepts connections on `port` and answers `select 1`, for
    /// [`READY_WITHIN`]; else stops it and returns its log.
    fn ready(&self, port: u16, psql: &Path, admin_url: &str) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::new();
        loop {
            if let Some(how) = self.ended.wait(Duration::ZERO) {
                return Err(format!(
                    "postgres ended ({how}) before it was ready:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                match run_psql(psql, admin_url, "select 1") {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "postgres did not answer on 127.0.0.1:{port} within {READY_WITHIN:?} \
                     ({last}):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends the server: immediate shutdown, then SIGKILL.
    fn stop(&self) {
        if self.ended.wait(Duration::ZERO).is_none() {
            crate::process::signal(self.pid, libc::SIGQUIT);
            if self.ended.wait(STOP_WITHIN).is_none() {
                crate::process::signal(self.pid, libc::SIGKILL);
                self.ended.wait(STOP_WITHIN);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a process ended, once it has.
#[derive(Default)]
struct Ended {
    how: Mutex<Option<String>>,
    cond: Condvar,
}

impl Ended {
    /// How the process ended, waiting up to `within` for it to.
    fn wait(&self, within: Duration) -> Option<String> {
        let how = lock(&self.how);
        let (how, _) = self
            .cond
            .wait_timeout_while(how, within, |how| how.is_none())
            .unwrap_or_else(|e| e.into_inner());
        how.clone()
    }
}

/// Locks `m`, also after a panic in another test.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `sql` with `psql` on `url`: its rows, unaligned, or psql's error.
fn run_psql(psql: &Path, url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(format!(
            "psql {url} -c {sql:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
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

/// The user to run PostgreSQL as, `(uid, gid)`: `None` for the current one, Debian's
/// `postgres` user when running as root (which PostgreSQL refuses).
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam_r fills `pw` with pointers into `buf`, both alive for the call; only
    // the numeric ids are read afterwards.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            c"postgres".as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() {
            let why = "running as root, which PostgreSQL refuses, and there is no `postgres` \
                 user to run it as: run tests/deps/system.sh (apt-get install postgresql)";
            return Err(why.to_owned());
        }
        Ok(Some((pw.pw_uid, pw.pw_gid)))
    }
}

/// Makes `cmd` run as `owner` (if any).
/// Writes `text` to `path`, readable by the server's user only (PostgreSQL refuses a key
/// file others can read).
fn private_file(path: &Path, text: &str, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: io::Error| format!("cannot write {}: {e}", path.display());
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

fn run_as(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        // std drops the supplementary groups of root too.
        cmd.uid(uid).gid(gid);
    }
}

/// Makes the child get SIGKILL when the thread that started it ends (Linux).
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec (after the uid change, which would
        // clear the setting) and only makes async-signal-safe syscalls, without allocating.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test process ended before the setting took.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// A fresh directory for a server, `<tmp>/e2e-postgres-<euid>/<pid>-XXXXXX`, owned by
/// `owner` (if any). Directories there of test processes no longer alive are removed first.
fn server_dir(owner: Option<(u32, u32)>) -> Result<tempfile::TempDir, String> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: a plain syscall.
    let euid = unsafe { libc::geteuid() };
    let base = std::env::temp_dir().join(format!("e2e-postgres-{euid}"));
    std::fs::create_dir_all(&base)
        .and_then(|()| {
            // The server's user (not root) must get through to its directory.
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| format!("cannot make {}: {e}", base.display()))?;
    let me = std::process::id();
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != me && !crate::process::alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{me}-"))
        .tempdir_in(&base)
        .map_err(|e| format!("cannot make a directory in {}: {e}", base.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to postgres: {e}", dir.path().display()))?;
    }
    Ok(dir)
}
