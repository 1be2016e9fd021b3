//! `bench`: the tunnel's performance benchmark, measured side by side with its floors and
//! with supergateway, against the budget in DESIGN.md ("Performance budget").
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--out FILE] [--runs N]
//! cargo run --release -p bench -- --cluster [--quick] [--out FILE] [--runs N]
//! ```
//!
//! # Method
//!
//! Everything runs on this machine over loopback, in one process tree, in one run, so the
//! floors and the tunnel see the same machine state:
//!
//! * **Pipe floor.** `echo-server` (this crate's fast stdio MCP server) is spoken to
//!   directly over its stdin/stdout: one `tools/call echo` line written, the answer line
//!   read, sequentially, with blocking I/O. p50/p90/p99 of those round trips.
//! * **HTTP floor.** `null-http` (axum, `current_thread`, `TCP_NODELAY`) answers every
//!   POST at once with a constant JSON-RPC result. It is driven by the same load generator
//!   as the tunnel: p50/p90/p99 at c=1, calls/s at c=32.
//! * **Tunnel.** `bridge run -- echo-server`, once with its embedded relay and once
//!   against a separate `relay serve` process. Every HTTP connection opens its own MCP
//!   session (`initialize`, `notifications/initialized`, then `Mcp-Session-Id` on every
//!   call) and sends `tools/call echo` (≈100-byte requests and answers). c=1: sequential
//!   calls on one session; c=32: 32 sessions on 32 keep-alive connections calling back to
//!   back for a fixed time after a warm-up. CPU per call is the utime+stime delta of each
//!   process (`/proc/<pid>/stat`) over the measured window divided by the calls completed
//!   in it; schedstat run time is read too as a cross-check. The embedded relay runs on a
//!   thread of the bridge process, so that mode reports one combined figure.
//! * **Large result.** `tools/call big` of 5,000,000 bytes, through the tunnels and over
//!   direct pipes, taking turns round by round (the first round only warms buffers up);
//!   the ratio of the medians.
//! * **Memory.** `VmRSS` of a fresh `relay serve` (idle); of a fresh relay + bridge before
//!   and after 1,000 sessions (each initialized on its own keep-alive connection, held
//!   open, then closed), next to a null HTTP server holding as many idle connections; of a
//!   fresh relay before and after 100 real `bridge run` processes (each with its own
//!   echo-server) connect to it; and of the bridges idle, after the load runs and after the
//!   large results. A bridge's figure is its own RSS plus the private (`RssAnon`) memory
//!   of its orphan-guard helper (`bridge __guard`, the same binary); its servers are not
//!   counted.
//! * **HTTP upstream.** `echo-server --http` (the same echo server over Streamable HTTP:
//!   `axum`, `current_thread`, JSON answers, `Mcp-Session-Id` on `initialize`, 202 for
//!   notifications), published by `bridge run --upstream URL` through a `relay serve` of its
//!   own; the bridge opens one upstream session per remote session. Its floor is the same
//!   server called directly: the same load generator POSTing the same `tools/call echo` to
//!   the server's `/mcp`, with a session. The same c=1 and c=32 runs, and CPU per call of
//!   relay + bridge, with the server's own CPU ("server") shown beside it.
//! * **supergateway** (`supergateway@4.0.0 --stateful --outputTransport streamableHttp`,
//!   logging off, kept on 127.0.0.1 by `tests/clients/loopback.cjs`) wrapping the same
//!   echo-server, installed with npm into `.test-deps/bench/`; the same c=1 and c=32 runs
//!   and CPU per call. Skipped with a note when node/npm are missing.
//!
//! Processes are found through `/proc` (a bridge's children are its servers and its
//! guard; supergateway's descendants are its per-session servers).
//!
//! `--cluster` runs only the cluster section instead (see `cluster.rs`): relay nodes on one
//! PostgreSQL database, alone and behind HAProxy, six tunnels each, at c=32 beside the
//! null HTTP server.
//!
//! `--url URL [--bearer T]` only drives an endpoint started by hand (c=1 then c=N), as a
//! load source for profiling.
//!
//! **Noise.** The machine may be shared. For every measured window the benchmark computes
//! how much of the machine other processes used (`/proc/stat` busy time minus the CPU of
//! the processes under test and of the load generator) plus the steal time the hypervisor
//! took; a window above `--max-noise` (10 %) is measured again, up to `--retries` times,
//! keeping the quietest attempt, and the figure is printed with every result.
//!
//! The load generator is Rust (`http.rs`: a minimal HTTP/1.1 keep-alive client, one write
//! per request, `TCP_NODELAY`) on a single-threaded tokio runtime, so it takes as little
//! of the two cores as possible. The c=1 and c=32 runs are repeated (`--runs`, default 3,
//! interleaved across targets) and medians are reported. Nothing here asserts a timing:
//! the table shows each figure next to its target with pass/miss, and the run always
//! completes.

mod cluster;
mod http;
mod load;
mod mcp;
mod postgres;
mod procs;
mod report;
mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use tokio::task::JoinSet;

use crate::load::{LatencyRun, NoiseMeter, ThroughputRun, Watch};
use crate::mcp::{Session, Target};
use crate::report::{Memory, ModeResults, Results};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Tunnel performance benchmark (floors, latency, throughput, CPU per call, memory, supergateway)"
)]
struct Args {
    /// Shorten every phase (a smoke run; figures are indicative only).
    #[arg(long)]
    quick: bool,
    /// Also write the results (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Repetitions of the c=1 and c=32 runs (medians are reported); default 3, 1 with --quick.
    #[arg(long)]
    runs: Option<usize>,
    /// Concurrent sessions (connections) in the throughput runs.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// Seconds of each throughput run (default 10, 2 with --quick).
    #[arg(long)]
    secs: Option<f64>,
    /// Do not run `cargo build` for bridge and relay first.
    #[arg(long)]
    no_build: bool,
    /// Skip the supergateway comparison.
    #[arg(long)]
    no_supergateway: bool,
    /// A measurement during which other processes (plus steal time) used more than this
    /// share of the machine (percent of all cores) is repeated, up to `--retries` times,
    /// keeping the quietest attempt.
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    max_noise: f64,
    /// Extra attempts per noisy measurement (default 4, 1 with --quick).
    #[arg(long)]
    retries: Option<usize>,
    /// Before measuring, wait up to this many seconds for a 3-second window in which the
    /// machine's CPUs are less than 15 % busy (a shared machine's other work distorts
    /// every figure); then start anyway.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    wait_idle: u64,
    /// Only the cluster section: the c=N throughput of one relay on PostgreSQL, of one
    /// relay behind HAProxy and of three relays behind HAProxy (six tunnels each), beside
    /// the null HTTP server. Needs PostgreSQL's and HAProxy's Debian packages.
    #[arg(long, conflicts_with = "url")]
    cluster: bool,
    /// Only drive this MCP endpoint (c=1 then c=N, `--runs` times) and print the figures:
    /// a load source for profiling a bridge or relay started by hand.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Bearer token for `--url`.
    #[arg(long, env = "BENCH_BEARER", hide_env_values = true)]
    bearer: Option<String>,
}

/// Sizes of every phase.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Repetitions of the latency and throughput runs.
    pub runs: usize,
    /// Unmeasured calls before a c=1 run.
    pub lat_warmup: usize,
    /// Measured calls of a c=1 run.
    pub lat_calls: usize,
    /// Unmeasured pipe round trips.
    pub pipe_warmup: usize,
    /// Measured pipe round trips.
    pub pipe_calls: usize,
    /// Connections of a throughput run.
    pub conns: usize,
    /// Warm-up of a throughput run.
    pub tput_warmup: Duration,
    /// Measured window of a throughput run.
    pub tput_secs: Duration,
    /// Size of the large result.
    pub big_bytes: usize,
    /// Repetitions of the large result.
    pub big_reps: usize,
    /// Idle sessions for the memory figure.
    pub sessions: usize,
    /// Connected bridges for the memory figure.
    pub bridges: usize,
    /// Largest share of the machine other processes may use during a kept measurement.
    pub max_noise: f64,
    /// Extra attempts per noisy measurement.
    pub retries: usize,
}

impl Plan {
    fn new(a: &Args) -> Self {
        let quick = a.quick;
        let secs = a.secs.unwrap_or(if quick { 2.0 } else { 10.0 });
        Self {
            runs: a.runs.unwrap_or(if quick { 1 } else { 3 }).max(1),
            lat_warmup: if quick { 100 } else { 500 },
            lat_calls: if quick { 1000 } else { 5000 },
            pipe_warmup: if quick { 200 } else { 1000 },
            pipe_calls: if quick { 2000 } else { 20000 },
            conns: a.conns.max(1),
            tput_warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
            tput_secs: Duration::from_secs_f64(secs.max(0.2)),
            big_bytes: 5_000_000,
            big_reps: if quick { 2 } else { 5 },
            sessions: if quick { 200 } else { 1000 },
            bridges: if quick { 20 } else { 100 },
            max_noise: a.max_noise,
            retries: a.retries.unwrap_or(if quick { 1 } else { 4 }),
        }
    }
}

fn note(notes: &mut Vec<String>, what: &str, e: anyhow::Error) {
    let msg = format!("{what}: {e:#}");
    eprintln!("bench: {msg}");
    notes.push(msg);
}

fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// One system under test during the latency/throughput phase.
struct Mode {
    target: Arc<Target>,
    watch: Box<dyn Fn() -> Vec<Watch>>,
    /// Whether the large result is measured through it.
    big: bool,
    results: ModeResults,
}

impl Mode {
    async fn run(&mut self, plan: &Plan, notes: &mut Vec<String>) {
        let label = self.target.label.clone();
        let mut best: Option<LatencyRun> = None;
        for attempt in 0..=plan.retries {
            eprintln!("bench: {label}: c=1 latency");
            match load::latency(&self.target, plan.lat_warmup, plan.lat_calls, &self.watch).await {
                Ok(r) => {
                    let noise = r.cpu.noise_pct;
                    if best.as_ref().is_none_or(|b| noise < b.cpu.noise_pct) {
                        best = Some(r);
                    }
                    if noise <= plan.max_noise {
                        break;
                    }
                    noisy(&label, "c=1", noise, attempt, plan);
                }
                Err(e) => {
                    note(notes, &format!("{label} c=1"), e);
                    break;
                }
            }
        }
        self.results.lat.extend(best);

        let best = measure_throughput(
            std::slice::from_ref(&self.target),
            &label,
            plan,
            &self.watch,
            notes,
        )
        .await;
        self.results.tput.extend(best);
    }
}

/// A c=`plan.conns` throughput run over `targets` (sessions spread evenly over them),
/// measured again while the machine is noisy (up to `plan.retries` times); the quietest
/// attempt, or `None` when every attempt failed (noted).
async fn measure_throughput(
    targets: &[Arc<Target>],
    label: &str,
    plan: &Plan,
    watch: &dyn Fn() -> Vec<Watch>,
    notes: &mut Vec<String>,
) -> Option<ThroughputRun> {
    let mut best: Option<ThroughputRun> = None;
    for attempt in 0..=plan.retries {
        eprintln!("bench: {label}: c={} throughput", plan.conns);
        match load::throughput(targets, plan.conns, plan.tput_warmup, plan.tput_secs, watch).await {
            Ok(r) => {
                if r.errors > 0 {
                    notes.push(format!(
                        "{label} c={}: {} failed calls (first: {})",
                        plan.conns,
                        r.errors,
                        r.first_error.clone().unwrap_or_default()
                    ));
                }
                let noise = r.cpu.noise_pct;
                if best.as_ref().is_none_or(|b| noise < b.cpu.noise_pct) {
                    best = Some(r);
                }
                if noise <= plan.max_noise {
                    break;
                }
                noisy(label, "throughput", noise, attempt, plan);
            }
            Err(e) => {
                note(notes, &format!("{label} c={}", plan.conns), e);
                break;
            }
        }
    }
    best
}

fn noisy(label: &str, what: &str, noise: f64, attempt: usize, plan: &Plan) {
    if attempt < plan.retries {
        eprintln!(
            "bench: {label} {what}: noise {noise:.0} % of the machine (other processes, steal); measuring again"
        );
    }
}

fn watch_bridge(pid: u32) -> Box<dyn Fn() -> Vec<Watch>> {
    Box::new(move || {
        vec![
            Watch {
                role: "bridge",
                pids: procs::bridge_family(pid),
            },
            Watch {
                role: "child",
                pids: procs::bridge_servers(pid),
            },
        ]
    })
}

/// Opens `n` sessions, each on its own connection, at most 32 at a time.
async fn open_sessions(target: &Arc<Target>, n: usize) -> Result<Vec<Session>> {
    let mut out = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    while out.len() < n {
        while started < n && set.len() < 32 {
            let t = target.clone();
            set.spawn(async move { Session::open(t).await });
            started += 1;
        }
        if let Some(r) = set.join_next().await {
            out.push(r??);
        }
    }
    Ok(out)
}

fn kib(pid: u32) -> f64 {
    procs::rss_kib(pid).unwrap_or(0) as f64
}

/// Memory of a bridge: its RSS plus the private memory of its orphan guard process (which
/// runs the same binary, so its file pages are shared), not its servers.
fn bridge_kib(pid: u32) -> f64 {
    kib(pid)
        + procs::bridge_guards(pid)
            .into_iter()
            .map(|g| procs::rss_anon_kib(g).unwrap_or(0) as f64)
            .sum::<f64>()
}

/// Memory: relay and bridge RSS around idle sessions, relay RSS around connected bridges.
async fn memory(bins: &setup::Bins, plan: &Plan, mem: &mut Memory) -> Result<()> {
    // 1,000 idle sessions through a fresh relay + bridge.
    let relay = setup::relay(bins, "relay-mem")?;
    settle();
    mem.relay_idle_kib = Some(kib(relay.proc.pid()));
    let bridge = setup::bridge(bins, "bridge-mem", Some(&relay), "bench-mem")?;
    settle();
    let (r0, b0) = (kib(relay.proc.pid()), bridge_kib(bridge.proc.pid()));
    mem.bridge_idle_kib = Some(b0);
    mem.relay_one_bridge_kib = Some(r0);
    eprintln!("bench: memory: opening {} idle sessions", plan.sessions);
    let sessions = open_sessions(&bridge.target, plan.sessions).await?;
    settle();
    let (r1, b1) = (kib(relay.proc.pid()), bridge_kib(bridge.proc.pid()));
    drop(sessions);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (r2, b2) = (kib(relay.proc.pid()), bridge_kib(bridge.proc.pid()));
    mem.sessions = plan.sessions;
    mem.relay_sessions_open_kib = Some((r0, r1));
    mem.bridge_sessions_kib = Some((b0, b1, b2));
    mem.relay_sessions_closed_kib = Some(r2);
    drop(bridge);
    drop(relay);

    // The same number of idle keep-alive connections on the null HTTP server (each used
    // once): what hyper/axum cost per connection, for comparison with the relay.
    let null = setup::null_server(bins)?;
    settle();
    let n0 = kib(null.proc.pid());
    let mut conns = open_sessions(&null.target, plan.sessions).await?;
    for c in &mut conns {
        c.echo().await?;
    }
    settle();
    mem.null_conns_kib = Some((n0, kib(null.proc.pid())));
    drop(conns);
    drop(null);

    // Connected bridges on a fresh relay. The first connections page in the code that
    // serves them (the relay's text, about 0.9 MB), once: a first batch is connected
    // before the baseline, so that the figure is what each further bridge costs.
    let relay = setup::relay(bins, "relay-bridges")?;
    let mut bridges = Vec::with_capacity(plan.bridges + WARM_BRIDGES);
    for i in 0..WARM_BRIDGES {
        bridges.push(setup::bridge(
            bins,
            &format!("bridge-warm-{i:02}"),
            Some(&relay),
            &format!("bench-w{i:02}"),
        )?);
    }
    settle();
    let r0 = kib(relay.proc.pid());
    eprintln!(
        "bench: memory: connecting {} bridges (after {WARM_BRIDGES})",
        plan.bridges
    );
    let t = Instant::now();
    for i in 0..plan.bridges {
        bridges.push(setup::bridge(
            bins,
            &format!("bridge-{i:03}"),
            Some(&relay),
            &format!("bench-b{i:03}"),
        )?);
    }
    eprintln!(
        "bench: memory: {} bridges connected in {:.1} s",
        plan.bridges,
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r1 = kib(relay.proc.pid());
    let mut each: Vec<f64> = bridges[WARM_BRIDGES..]
        .iter()
        .map(|b| bridge_kib(b.proc.pid()))
        .collect();
    each.sort_by(f64::total_cmp);
    mem.bridges = plan.bridges;
    mem.relay_bridges_kib = Some((r0, r1));
    mem.bridge_median_kib = Some(load::median(&each));
    Ok(())
}

/// Bridges connected before the memory baseline of "relay RSS per connected bridge".
const WARM_BRIDGES: usize = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let plan = Plan::new(&args);
    if let Some(url) = &args.url {
        return drive(url, args.bearer.clone(), &plan).await;
    }
    let bins = setup::Bins::locate(!args.no_build)?;
    if args.wait_idle > 0 {
        wait_idle(Duration::from_secs(args.wait_idle)).await;
    }
    if args.cluster {
        eprintln!(
            "bench: cluster section, plan {plan:?}; logs in {}",
            bins.logs.display()
        );
        let text = cluster::run(&bins, &plan, args.quick).await?;
        println!("{text}");
        if let Some(out) = &args.out {
            std::fs::write(out, &text)?;
            eprintln!("bench: wrote {}", out.display());
        }
        return Ok(());
    }
    let mut res = Results::new(&plan, args.quick);
    let started = Instant::now();
    let ticks0 = procs::machine_ticks();
    eprintln!("bench: plan {plan:?}; logs in {}", bins.logs.display());

    // The systems under test, all started up front and idle between their runs.
    let null = setup::null_server(&bins)?;
    let relay = setup::relay(&bins, "relay")?;
    let embedded = setup::bridge(&bins, "bridge-embedded", None, "bench-embedded")?;
    let separate = setup::bridge(&bins, "bridge-separate", Some(&relay), "bench-separate")?;
    // The HTTP upstream: the echo server over Streamable HTTP, called directly (its floor)
    // and through a relay of its own and a bridge.
    let echo_http = setup::http_echo(&bins)?;
    let http_relay = setup::relay(&bins, "relay-http")?;
    let http_bridge = setup::bridge_upstream(
        &bins,
        "bridge-http",
        &http_relay,
        "bench-http",
        &echo_http.url,
    )?;
    let gateway = if args.no_supergateway {
        res.notes
            .push("supergateway skipped (--no-supergateway)".into());
        None
    } else {
        match setup::install_supergateway().and_then(|entry| setup::supergateway(&bins, &entry)) {
            Ok(g) => Some(g),
            Err(e) => {
                note(&mut res.notes, "supergateway skipped", e);
                None
            }
        }
    };
    settle();
    res.memory.embedded_idle_kib = Some(bridge_kib(embedded.proc.pid()));
    res.memory.http_idle_kib = Some(bridge_kib(http_bridge.proc.pid()));
    res.memory.gateway_idle_kib = gateway.as_ref().map(|g| kib(g.proc.pid()));

    let null_pid = null.proc.pid();
    let relay_pid = relay.proc.pid();
    let sep_pid = separate.proc.pid();
    let echo_http_pid = echo_http.proc.pid();
    let http_relay_pid = http_relay.proc.pid();
    let http_bridge_pid = http_bridge.proc.pid();
    let server = move |pid: u32| Watch {
        role: "server",
        pids: vec![pid],
    };
    let mut modes = vec![
        Mode {
            target: null.target.clone(),
            watch: Box::new(move || vec![server(null_pid)]),
            big: false,
            results: ModeResults::default(),
        },
        Mode {
            target: embedded.target.clone(),
            watch: watch_bridge(embedded.proc.pid()),
            big: true,
            results: ModeResults::default(),
        },
        Mode {
            target: separate.target.clone(),
            watch: Box::new(move || {
                let mut w = watch_bridge(sep_pid)();
                w.insert(
                    0,
                    Watch {
                        role: "relay",
                        pids: vec![relay_pid],
                    },
                );
                w
            }),
            big: true,
            results: ModeResults::default(),
        },
        Mode {
            target: echo_http.target.clone(),
            watch: Box::new(move || vec![server(echo_http_pid)]),
            big: false,
            results: ModeResults::default(),
        },
        Mode {
            target: http_bridge.target.clone(),
            watch: Box::new(move || {
                vec![
                    Watch {
                        role: "relay",
                        pids: vec![http_relay_pid],
                    },
                    Watch {
                        role: "bridge",
                        pids: procs::bridge_family(http_bridge_pid),
                    },
                    server(echo_http_pid),
                ]
            }),
            big: false,
            results: ModeResults::default(),
        },
    ];
    if let Some(g) = &gateway {
        let pid = g.proc.pid();
        modes.push(Mode {
            target: g.target.clone(),
            watch: Box::new(move || {
                vec![
                    Watch {
                        role: "gateway",
                        pids: vec![pid],
                    },
                    Watch {
                        role: "child",
                        pids: procs::descendants(pid),
                    },
                ]
            }),
            big: true,
            results: ModeResults::default(),
        });
    }

    let mut pipe = load::Pipe::start(&bins.echo)?;
    for run in 0..plan.runs {
        eprintln!("bench: run {}/{}: pipe floor", run + 1, plan.runs);
        let mut best: Option<(load::Latency, f64, f64)> = None;
        for attempt in 0..=plan.retries {
            match pipe.latency(plan.pipe_warmup, plan.pipe_calls) {
                Ok(r) => {
                    let noise = r.2;
                    if best.as_ref().is_none_or(|b| noise < b.2) {
                        best = Some(r);
                    }
                    if noise <= plan.max_noise {
                        break;
                    }
                    noisy("pipe floor", "c=1", noise, attempt, &plan);
                }
                Err(e) => {
                    note(&mut res.notes, "pipe floor", e);
                    break;
                }
            }
        }
        if let Some((l, cpu, noise)) = best {
            res.pipe.push(l);
            res.pipe_child_cpu.push(cpu);
            res.pipe_noise.push(noise);
        }
        for m in &mut modes {
            m.run(&plan, &mut res.notes).await;
        }
    }

    res.memory.embedded_load_kib = Some(bridge_kib(embedded.proc.pid()));
    res.memory.separate_load_kib = Some((kib(relay_pid), bridge_kib(sep_pid)));
    res.memory.http_load_kib = Some((kib(http_relay_pid), bridge_kib(http_bridge_pid)));
    res.memory.gateway_load_kib = gateway.as_ref().map(|g| kib(g.proc.pid()));

    // Large results: the pipe and every tunnel take turns, so they see the same machine
    // state; the first round warms buffers up and is not counted.
    eprintln!("bench: {} byte results", plan.big_bytes);
    let mut big_sessions = Vec::new();
    for m in modes.iter().filter(|m| m.big) {
        match Session::open(m.target.clone()).await {
            Ok(s) => big_sessions.push(Some(s)),
            Err(e) => {
                note(
                    &mut res.notes,
                    &format!("big through {}", m.target.label),
                    e,
                );
                big_sessions.push(None);
            }
        }
    }
    // Rounds until `big_reps` quiet ones (or three times as many rounds); the quietest
    // `big_reps` are kept.
    let mut rounds: Vec<(f64, f64, Vec<Option<f64>>)> = Vec::new();
    let mut pids = vec![pipe.pid()];
    for m in modes.iter().filter(|m| m.big) {
        pids.extend((m.watch)().into_iter().flat_map(|w| w.pids));
    }
    let mut attempts = 0;
    'rounds: while rounds.iter().filter(|r| r.0 <= plan.max_noise).count() < plan.big_reps
        && attempts < 3 * plan.big_reps + 1
    {
        attempts += 1;
        let meter = NoiseMeter::start(pids.clone());
        let pipe_t = match pipe.big(plan.big_bytes) {
            Ok(t) => t,
            Err(e) => {
                note(&mut res.notes, "big over pipes", e);
                break 'rounds;
            }
        };
        let mut times = Vec::new();
        for (m, slot) in modes.iter().filter(|m| m.big).zip(big_sessions.iter_mut()) {
            let Some(s) = slot else {
                times.push(None);
                continue;
            };
            match load::big(s, plan.big_bytes).await {
                Ok(t) => times.push(Some(t)),
                Err(e) => {
                    note(
                        &mut res.notes,
                        &format!("big through {}", m.target.label),
                        e,
                    );
                    *slot = None;
                    times.push(None);
                }
            }
        }
        let noise = meter.stop();
        // The first round only warms buffers up.
        if attempts > 1 {
            rounds.push((noise, pipe_t, times));
        }
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    rounds.truncate(plan.big_reps);
    for (noise, pipe_t, times) in rounds {
        res.big_pipe.push(pipe_t);
        res.big_noise.push(noise);
        for (m, t) in modes.iter_mut().filter(|m| m.big).zip(times) {
            m.results.big.extend(t);
        }
    }
    for s in big_sessions.into_iter().flatten() {
        s.close().await;
    }
    drop(pipe);
    res.memory.embedded_big_kib = Some(bridge_kib(embedded.proc.pid()));
    res.memory.separate_big_kib = Some((kib(relay_pid), bridge_kib(sep_pid)));

    let mut modes = modes.into_iter();
    res.null = take(&mut modes);
    res.embedded = take(&mut modes);
    res.separate = take(&mut modes);
    res.http_direct = take(&mut modes);
    res.http_upstream = take(&mut modes);
    res.gateway = modes.next().map(|m| m.results);
    drop((null, embedded, separate, relay, gateway));
    drop((http_bridge, http_relay, echo_http));

    if let Err(e) = memory(&bins, &plan, &mut res.memory).await {
        note(&mut res.notes, "memory phase", e);
    }

    let ticks1 = procs::machine_ticks();
    res.finish(ticks0, ticks1, started.elapsed());
    let text = report::render(&res);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
        eprintln!("bench: wrote {}", out.display());
    }
    Ok(())
}

/// Waits until the machine is nearly idle for 3 s, or `limit` has passed.
async fn wait_idle(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (b0, t0) = (procs::machine_busy_us(), Instant::now());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let capacity = t0.elapsed().as_secs_f64() * 1e6 * procs::cpus() as f64;
        let busy = 100.0 * (procs::machine_busy_us() - b0) / capacity;
        if busy < 15.0 {
            eprintln!("bench: machine {busy:.0} % busy; starting");
            return;
        }
        if Instant::now() > deadline {
            eprintln!("bench: machine still {busy:.0} % busy; starting anyway");
            return;
        }
        eprintln!("bench: machine {busy:.0} % busy; waiting");
    }
}

/// `--url`: load only, no processes of our own.
async fn drive(url: &str, bearer: Option<String>, plan: &Plan) -> Result<()> {
    let target = Arc::new(Target {
        label: url.to_owned(),
        endpoint: http::Endpoint::parse(url)?,
        bearer,
        handshake: true,
    });
    for run in 0..plan.runs {
        let l = load::latency(&target, plan.lat_warmup, plan.lat_calls, Vec::new).await?;
        let t = load::throughput(
            std::slice::from_ref(&target),
            plan.conns,
            plan.tput_warmup,
            plan.tput_secs,
            Vec::new,
        )
        .await?;
        println!(
            "run {}: c=1 p50 {:.1} p90 {:.1} p99 {:.1} µs; c={} {:.0} calls/s, {} errors",
            run + 1,
            l.latency.p50,
            l.latency.p90,
            l.latency.p99,
            plan.conns,
            t.rate(),
            t.errors
        );
    }
    Ok(())
}

fn take(modes: &mut impl Iterator<Item = Mode>) -> ModeResults {
    modes.next().map(|m| m.results).unwrap_or_default()
}
