//! The measurements: sequential latency (c=1), sustained throughput (c=32) with CPU per
//! call, the direct pipe floor, and large results.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;

use crate::mcp::{ECHO_ARGS, Session, Target};
use crate::procs::{self, Cpu};

/// Latency percentiles of a series of sequential calls, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Calls measured.
    pub calls: usize,
}

impl Latency {
    /// Percentiles (nearest rank) of durations in nanoseconds.
    pub fn from_ns(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        let at = |q: f64| {
            if ns.is_empty() {
                return 0.0;
            }
            let rank = ((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len());
            ns[rank - 1] as f64 / 1e3
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            calls: ns.len(),
        }
    }
}

/// A process whose CPU time is charged to the system under test.
#[derive(Debug, Clone)]
pub struct Watch {
    /// What it is (`relay`, `bridge`, `child`, …).
    pub role: &'static str,
    /// Its pids (several for supergateway's per-session children).
    pub pids: Vec<u32>,
}

/// CPU used per role over a run.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    /// (role, CPU time used).
    pub by_role: Vec<(&'static str, Cpu)>,
    /// The load generator's own CPU time.
    pub client: Cpu,
    /// Share of the machine's CPU time (all cores, wall-clock window) used by processes
    /// other than the watched ones and the load generator, plus steal time, in percent:
    /// the noise indicator of a shared machine.
    pub noise_pct: f64,
}

impl CpuUse {
    /// µs per call of a role (utime+stime from `/proc/<pid>/stat`).
    pub fn per_call(&self, role: &str, calls: u64) -> Option<f64> {
        self.by_role
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, c)| c.stat_us / calls.max(1) as f64)
    }

    /// µs per call of a role, from schedstat.
    pub fn per_call_sched(&self, role: &str, calls: u64) -> Option<f64> {
        self.by_role
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, c)| c.sched_us / calls.max(1) as f64)
    }
}

struct CpuSnap {
    roles: Vec<(&'static str, Cpu)>,
    client: Cpu,
    machine_busy_us: f64,
    machine_steal_us: f64,
    at: Instant,
}

fn snapshot(watch: &[Watch]) -> CpuSnap {
    CpuSnap {
        roles: watch
            .iter()
            .map(|w| (w.role, procs::cpu_sum(&w.pids)))
            .collect(),
        client: procs::cpu(std::process::id()),
        machine_busy_us: procs::machine_busy_us(),
        machine_steal_us: procs::machine_steal_us(),
        at: Instant::now(),
    }
}

fn delta(a: &CpuSnap, b: &CpuSnap) -> CpuUse {
    let by_role: Vec<(&'static str, Cpu)> = a
        .roles
        .iter()
        .zip(&b.roles)
        .map(|((r, x), (_, y))| (*r, *y - *x))
        .collect();
    let client = b.client - a.client;
    let ours: f64 = by_role.iter().map(|(_, c)| c.stat_us).sum::<f64>() + client.stat_us;
    let capacity = (b.at - a.at).as_secs_f64() * 1e6 * procs::cpus() as f64;
    let others = (b.machine_busy_us - a.machine_busy_us - ours).max(0.0)
        + (b.machine_steal_us - a.machine_steal_us);
    CpuUse {
        by_role,
        client,
        noise_pct: 100.0 * others / capacity.max(1.0),
    }
}

/// Measures how much of the machine processes other than the given ones (and the load
/// generator) used over a window, plus the steal time.
pub struct NoiseMeter {
    pids: Vec<u32>,
    busy: f64,
    steal: f64,
    ours: f64,
    at: Instant,
}

impl NoiseMeter {
    fn ours(pids: &[u32]) -> f64 {
        procs::cpu_sum(pids).stat_us + procs::cpu(std::process::id()).stat_us
    }

    /// Starts a window; `pids` are the processes under test.
    pub fn start(pids: Vec<u32>) -> Self {
        Self {
            busy: procs::machine_busy_us(),
            steal: procs::machine_steal_us(),
            ours: Self::ours(&pids),
            at: Instant::now(),
            pids,
        }
    }

    /// Ends the window: the others' share of all cores plus steal, in percent.
    pub fn stop(self) -> f64 {
        let capacity = self.at.elapsed().as_secs_f64() * 1e6 * procs::cpus() as f64;
        let others = (procs::machine_busy_us() - self.busy) - (Self::ours(&self.pids) - self.ours);
        let steal = procs::machine_steal_us() - self.steal;
        100.0 * (others.max(0.0) + steal) / capacity.max(1.0)
    }
}

/// Result of a c=1 run.
#[derive(Debug, Clone, Default)]
pub struct LatencyRun {
    /// Percentiles.
    pub latency: Latency,
    /// CPU over the measured calls.
    pub cpu: CpuUse,
}

/// `n` sequential `echo` calls on one session (after `warmup` unmeasured ones).
pub async fn latency(
    target: &Arc<Target>,
    warmup: usize,
    n: usize,
    watch: impl Fn() -> Vec<Watch>,
) -> Result<LatencyRun> {
    let mut s = Session::open(target.clone()).await?;
    for _ in 0..warmup {
        s.echo().await?;
    }
    let w = watch();
    let mut ns = Vec::with_capacity(n);
    let before = snapshot(&w);
    for _ in 0..n {
        let t = Instant::now();
        s.echo().await?;
        ns.push(t.elapsed().as_nanos() as u64);
    }
    let after = snapshot(&w);
    s.close().await;
    Ok(LatencyRun {
        latency: Latency::from_ns(ns),
        cpu: delta(&before, &after),
    })
}

/// Result of a c=32 run.
#[derive(Debug, Clone, Default)]
pub struct ThroughputRun {
    /// Successful calls in the measured window.
    pub calls: u64,
    /// Percentiles of the calls that ended in the measured window, each timed from writing
    /// its request to the last byte of its answer (under the full load).
    pub latency: Latency,
    /// Length of the measured window, seconds.
    pub secs: f64,
    /// Failed calls (whole run).
    pub errors: u64,
    /// First error seen, if any.
    pub first_error: Option<String>,
    /// CPU over the measured window.
    pub cpu: CpuUse,
}

impl ThroughputRun {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.secs.max(1e-9)
    }
}

/// `conns` sessions, each on its own connection, calling `echo` back to back; counts
/// the calls completed between `warmup` and `warmup + measure`, and times them. Session
/// `i` goes to `targets[i % targets.len()]`, so the load is spread evenly over several
/// endpoints (tunnels).
pub async fn throughput(
    targets: &[Arc<Target>],
    conns: usize,
    warmup: Duration,
    measure: Duration,
    watch: impl Fn() -> Vec<Watch>,
) -> Result<ThroughputRun> {
    if targets.is_empty() {
        bail!("no target to load");
    }
    let mut opening = JoinSet::new();
    for i in 0..conns {
        let t = targets[i % targets.len()].clone();
        opening.spawn(async move { Session::open(t).await });
    }
    let mut sessions = Vec::with_capacity(conns);
    while let Some(r) = opening.join_next().await {
        sessions.push(r??);
    }
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let timing = Arc::new(AtomicBool::new(false));
    let mut running = JoinSet::new();
    for mut s in sessions {
        let (count, errors) = (count.clone(), errors.clone());
        let (stop, timing) = (stop.clone(), timing.clone());
        running.spawn(async move {
            let mut first_error = None;
            let mut ns = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match s.echo().await {
                    Ok(()) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        if timing.load(Ordering::Relaxed) {
                            ns.push(t.elapsed().as_nanos() as u64);
                        }
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        // A broken connection stays broken: reconnect.
                        match Session::open(s.target()).await {
                            Ok(n) => s = n,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
            }
            s.close().await;
            (first_error, ns)
        });
    }
    tokio::time::sleep(warmup).await;
    let w = watch();
    timing.store(true, Ordering::Relaxed);
    let (c0, s0, t0) = (count.load(Ordering::Relaxed), snapshot(&w), Instant::now());
    tokio::time::sleep(measure).await;
    let (c1, s1, t1) = (count.load(Ordering::Relaxed), snapshot(&w), Instant::now());
    timing.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut first_error = None;
    let mut ns = Vec::new();
    while let Some(r) = running.join_next().await {
        let (e, times) = r?;
        if let Some(e) = e {
            first_error.get_or_insert(e);
        }
        ns.extend(times);
    }
    Ok(ThroughputRun {
        calls: c1 - c0,
        latency: Latency::from_ns(ns),
        secs: (t1 - t0).as_secs_f64(),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        cpu: delta(&s0, &s1),
    })
}

/// Times one `tools/call big` of `bytes` bytes on a session; seconds.
pub async fn big(s: &mut Session, bytes: usize) -> Result<f64> {
    let t = Instant::now();
    s.big(bytes).await?;
    Ok(t.elapsed().as_secs_f64())
}

/// The direct pipe floor: the echo server spoken to over its stdin/stdout, one request
/// at a time (write the line, read the answer line), with blocking I/O.
pub struct Pipe {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
    next_id: u64,
    line: Vec<u8>,
    buf: Vec<u8>,
}

impl Pipe {
    /// Starts the echo server and initializes it.
    pub fn start(echo: &Path) -> Result<Self> {
        let mut child = Command::new(echo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", echo.display()))?;
        let input = child.stdin.take().context("stdin")?;
        let output = BufReader::with_capacity(256 * 1024, child.stdout.take().context("stdout")?);
        let mut p = Self {
            child,
            input,
            output,
            next_id: 1,
            line: Vec::with_capacity(256),
            buf: Vec::with_capacity(4096),
        };
        p.round_trip(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#
                .to_vec(),
        )?;
        p.input
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")?;
        Ok(p)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn round_trip(&mut self, mut line: Vec<u8>) -> Result<usize> {
        line.push(b'\n');
        self.input.write_all(&line)?;
        self.buf.clear();
        let n = self.output.read_until(b'\n', &mut self.buf)?;
        if n == 0 || memchr::memmem::find(&self.buf, b"\"result\"").is_none() {
            bail!(
                "bad answer from the echo server: {}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            );
        }
        Ok(n)
    }

    fn call(&mut self, tool: &str, args: &str) -> Result<usize> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        write!(
            line,
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        )?;
        let r = self.round_trip(line.clone());
        self.line = line;
        r
    }

    /// Sequential `echo` calls: percentiles, the child's CPU µs per call, and the share of
    /// the machine other processes and steal time took meanwhile (percent).
    pub fn latency(&mut self, warmup: usize, n: usize) -> Result<(Latency, f64, f64)> {
        for _ in 0..warmup {
            self.call("echo", ECHO_ARGS)?;
        }
        let noise = NoiseMeter::start(vec![self.pid()]);
        let c0 = procs::cpu(self.pid());
        let mut ns = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            self.call("echo", ECHO_ARGS)?;
            ns.push(t.elapsed().as_nanos() as u64);
        }
        let c1 = procs::cpu(self.pid());
        Ok((
            Latency::from_ns(ns),
            (c1 - c0).stat_us / n.max(1) as f64,
            noise.stop(),
        ))
    }

    /// Times one `big` of `bytes` bytes; seconds.
    pub fn big(&mut self, bytes: usize) -> Result<f64> {
        let args = format!(r#"{{"bytes":{bytes}}}"#);
        let t = Instant::now();
        let n = self.call("big", &args)?;
        let secs = t.elapsed().as_secs_f64();
        if n < bytes {
            bail!("big: only {n} bytes came back");
        }
        Ok(secs)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Median of a non-empty slice (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}
