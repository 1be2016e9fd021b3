//! Child processes of the benchmark and what `/proc` says about them (CPU time, RSS).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A process started by the benchmark, with its stdout lines on a channel and its stderr
/// in a log file. Dropping it stops it and everything it started.
pub struct Proc {
    child: Child,
    name: String,
    lines: mpsc::Receiver<String>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` in its own process group, stdout piped, stderr to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let log = log_dir.join(format!("{name}.log"));
        let err = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            name: name.to_owned(),
            lines: rx,
            log,
        })
    }

    /// Waits (up to `timeout`) for a stdout line starting with `prefix`; returns the rest.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(_) => bail!(
                    "{} printed no {prefix:?} line within {timeout:?}; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                ),
            }
        }
    }

    /// Operating-system pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: a plain syscall on processes (or a process group) the benchmark started.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id();
        // Ask politely first (supergateway stops its children on SIGTERM), then make sure:
        // every descendant (some run in process groups of their own) and the group.
        let family = descendants(pid);
        kill(pid as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for d in family.iter().chain(descendants(pid).iter()) {
            kill(*d as i32, libc::SIGKILL);
        }
        kill(-(pid as i32), libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(1)?.parse().ok()
}

/// Direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| ppid(*p) == Some(pid))
        .collect()
}

/// The command line of `pid`, arguments separated by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// A bridge's orphan guard processes (`bridge __guard`).
pub fn bridge_guards(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|c| cmdline(*c).contains("__guard"))
        .collect()
}

/// A bridge's own processes: itself and its orphan guard, if any.
pub fn bridge_family(pid: u32) -> Vec<u32> {
    let mut v = vec![pid];
    v.extend(bridge_guards(pid));
    v
}

/// A bridge's servers: its children except the orphan guard.
pub fn bridge_servers(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|c| !cmdline(*c).contains("__guard"))
        .collect()
}

/// All descendants of `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for c in children(p) {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// utime + stime from `/proc/<pid>/stat`, in microseconds (clock-tick resolution;
    /// includes threads that have exited).
    pub stat_us: f64,
    /// Sum over live threads of `/proc/<pid>/task/*/schedstat` run time, in microseconds
    /// (nanosecond resolution).
    pub sched_us: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            stat_us: self.stat_us - o.stat_us,
            sched_us: self.sched_us - o.sched_us,
        }
    }
}

impl std::ops::Add for Cpu {
    type Output = Cpu;
    fn add(self, o: Cpu) -> Cpu {
        Cpu {
            stat_us: self.stat_us + o.stat_us,
            sched_us: self.sched_us + o.sched_us,
        }
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Reads the CPU time of `pid` (zero if it is gone).
pub fn cpu(pid: u32) -> Cpu {
    let stat_us = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            // Fields 14 and 15 of stat; `after` starts at field 3.
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) as f64 * 1e6 / clock_ticks())
        })
        .unwrap_or(0.0);
    let mut sched_ns = 0u64;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                sched_ns += s
                    .split(' ')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Cpu {
        stat_us,
        sched_us: sched_ns as f64 / 1e3,
    }
}

/// Total CPU time of several processes.
pub fn cpu_sum(pids: &[u32]) -> Cpu {
    pids.iter()
        .map(|p| cpu(*p))
        .fold(Cpu::default(), |a, b| a + b)
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for process {pid}"))
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Private anonymous resident memory of `pid` in KiB (`RssAnon`): what a helper process
/// running the same binary adds on top of the pages it shares.
pub fn rss_anon_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "RssAnon:")
}

/// Online CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Busy CPU time of the whole machine so far (all cores), in microseconds.
pub fn machine_busy_us() -> f64 {
    machine_ticks().0 as f64 * 1e6 / clock_ticks()
}

/// Steal time of the whole machine so far (all cores: time the hypervisor gave the vCPUs
/// to someone else while they wanted to run), in microseconds.
pub fn machine_steal_us() -> f64 {
    machine_ticks().2 as f64 * 1e6 / clock_ticks()
}

/// Whole-machine CPU counters from the first line of `/proc/stat`, in clock ticks:
/// (busy, idle, steal).
pub fn machine_ticks() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let idle = get(3) + get(4);
    let steal = get(7);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    (busy, idle, steal)
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
