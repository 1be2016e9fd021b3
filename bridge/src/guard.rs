//! The orphan guard: a tiny helper process that kills the servers' process groups when the
//! bridge dies, however it dies.
//!
//! The bridge kills its servers itself on a normal exit, and on Linux each server also gets
//! `SIGKILL` when the bridge dies (`PR_SET_PDEATHSIG`). Neither reaches a grandchild that a
//! server forked (`npx` shims, shells) if the bridge is killed with `SIGKILL`. So the bridge
//! starts `bridge __guard` in its own process group, tells it each server's process group
//! on its stdin (`+<pgid>` / `-<pgid>` lines), and never closes that pipe: when the bridge
//! is gone the kernel closes it, and the guard kills every group still registered.

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
    let mut groups: HashSet<u32> = HashSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (op, rest) = line.split_at(line.len().min(1));
        let Ok(pgid) = rest.trim().parse::<u32>() else {
            continue;
        };
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    #[cfg(unix)]
    for pgid in groups {
        if pgid > 1 {
            // SAFETY: plain syscall; the group was created by the bridge for a server.
            unsafe {
                libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}
