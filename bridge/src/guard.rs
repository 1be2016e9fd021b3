//! The orphan guard: a tiny helper process that kills the servers' process groups when the
//! bridge dies, however it dies.
//!
//! The bridge kills its servers itself on a normal exit, and on Linux each server also gets
//! `SIGKILL` when the bridge dies (`PR_SET_PDEATHSIG`). Neither reaches a grandchild that a
//! server forked (`npx` shims, shells) if the bridge is killed with `SIGKILL`. So the bridge
//! starts `bridge __guard` in its own process group, tells it each server's process group
//! on its stdin (`+<pgid>` / `-<pgid>` lines), and never closes that pipe: when the bridge
//! is gone the kernel closes it, and the guard kills every group still registered.
//!
//! Per system:
//!
//! - **Linux**: the parent-death signal kills each server as soon as the bridge dies, and
//!   the guard then kills what is left of its group.
//! - **macOS** (and the other Unix systems): there is no parent-death signal, and nothing
//!   here needs one: the guard only relies on process groups, `killpg` and a pipe closing
//!   when its writer dies, which every Unix has, so it takes down each server's whole group
//!   (the server included) by itself. Being in its own process group, the guard does not
//!   get the terminal's Ctrl+C or hang-up meant for the bridge. The one moment it cannot
//!   cover is between a server's start and its registration (one pipe write later): a
//!   bridge killed exactly then leaves that server running. A server that inherited the
//!   pipe's write end would keep the guard waiting; std marks it close-on-exec (on macOS
//!   just after creating it rather than atomically, which is why the guard is started
//!   before any server).
//! - **Windows**: there is no guard process ([`Guard::start`] does nothing); each server
//!   runs in a Job Object that the kernel kills when the bridge's handle to it closes,
//!   which happens however the bridge ends (see `bridge/src/win.rs`, the `child::win`
//!   module).

use std::collections::HashSet;
use std::io::BufRead;
#[cfg(unix)]
use std::io::Write;
#[cfg(unix)]
use std::process::{Child, ChildStdin, Command, Stdio};
#[cfg(unix)]
use std::sync::Mutex;

/// The bridge's end of the guard: registers process groups.
pub struct Guard {
    #[cfg(unix)]
    inner: Mutex<Option<(Child, ChildStdin)>>,
}

impl Guard {
    /// Starts the guard process. Without one (spawn failed, or not Unix) registering is a
    /// no-op and only the other protections apply.
    pub fn start() -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            let inner = std::env::current_exe().ok().and_then(|exe| {
                let mut child = Command::new(exe)
                    .arg("__guard")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .ok()?;
                let stdin = child.stdin.take()?;
                Some((child, stdin))
            });
            if inner.is_none() {
                tracing::warn!(
                    "could not start the orphan guard; servers' grandchildren may survive a crash of the bridge"
                );
            }
            Self {
                inner: Mutex::new(inner),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// A guard without a helper process (unit tests of code that never starts a server).
    #[cfg(test)]
    pub(crate) fn disabled() -> Self {
        Self {
            #[cfg(unix)]
            inner: Mutex::new(None),
        }
    }

    fn send(&self, line: &str) {
        #[cfg(unix)]
        if let Ok(mut g) = self.inner.lock()
            && let Some((_, stdin)) = g.as_mut()
        {
            let _ = stdin.write_all(line.as_bytes());
            let _ = stdin.flush();
        }
        #[cfg(not(unix))]
        let _ = line;
    }

    /// Registers a server's process group.
    pub fn watch(&self, pgid: u32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Unregisters a process group (the bridge killed it itself).
    pub fn forget(&self, pgid: u32) {
        self.send(&format!("-{pgid}\n"));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Ok(mut g) = self.inner.lock()
            && let Some((mut child, stdin)) = g.take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The guard process's main loop (`bridge __guard`): returns when its stdin closes, after
/// killing the groups still registered.
pub fn run_guard() {
    let groups = registered_until_eof(std::io::stdin().lock());
    #[cfg(unix)]
    for pgid in groups {
        // SAFETY: plain syscall; the group was created by the bridge for a server.
        unsafe {
            libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = groups;
}

/// Reads `+<pgid>` / `-<pgid>` lines until the end of `input` (or a read error) and
/// returns the process groups still registered then. Groups 0 and 1 are never kept.
fn registered_until_eof(input: impl BufRead) -> HashSet<u32> {
    let mut groups: HashSet<u32> = HashSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (op, rest) = line.split_at(line.len().min(1));
        let Ok(pgid) = rest.trim().parse::<u32>() else {
            continue;
        };
        match op {
            "+" if pgid > 1 => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_tracked() {
        let input: &[u8] = b"+100\n+200\n-100\n+0\n+1\n+x\n?300\n+400\n-999\n";
        let got = registered_until_eof(input);
        assert_eq!(got, HashSet::from([200, 400]));
    }

    /// What the guard does on every Unix without help from a parent-death signal (as on
    /// macOS): a server in its own process group, with a grandchild, both killed once the
    /// guard's input closes as it does when the bridge dies.
    #[cfg(unix)]
    #[test]
    fn kills_registered_groups_when_its_input_closes() {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};

        let mut server = Command::new("sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh");
        let mut out = server.stdout.take().expect("stdout");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let grandchild: i32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
        let pgid = server.id();

        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let guard = std::thread::spawn(move || {
            let groups = registered_until_eof(std::io::BufReader::new(reader));
            for pgid in groups {
                // SAFETY: plain syscall on the group this test created.
                unsafe {
                    libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
                }
            }
        });
        writer.write_all(format!("+{pgid}\n").as_bytes()).unwrap();
        drop(writer);
        guard.join().unwrap();

        // Both must be gone within seconds; whatever is left is killed before failing.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = server.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while status.is_some() && running(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let grandchild_left = running(grandchild);
        // SAFETY: plain syscalls on processes this test started.
        unsafe {
            libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
            libc::kill(grandchild, libc::SIGKILL);
        }
        let _ = server.wait();
        let status = status.expect("the server survived");
        assert!(!status.success(), "the server was not killed: {status}");
        assert!(!grandchild_left, "the grandchild {grandchild} survived");
    }

    /// Whether `pid` runs (exists and, where `/proc` tells, is not a zombie).
    #[cfg(unix)]
    fn running(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next()),
                Some('Z' | 'X')
            ),
            Err(_) => !cfg!(target_os = "linux"),
        }
    }
}
