//! Results, their medians, and the markdown table with the DESIGN.md targets.

use std::fmt::Write;
use std::time::Duration;

use crate::Plan;
use crate::load::{Latency, LatencyRun, ThroughputRun, median};

/// DESIGN.md targets.
mod target {
    /// c=1 p50 at most this far above (HTTP floor + pipe floor), µs.
    pub const P50_OVER_FLOORS_US: f64 = 100.0;
    /// c=1 p99, µs.
    pub const P99_US: f64 = 1000.0;
    /// Calls/s at c=32.
    pub const CALLS_PER_S: f64 = 30_000.0;
    /// Throughput relative to supergateway.
    pub const VS_SUPERGATEWAY: f64 = 7.0;
    /// Bridge + relay CPU per call at c=32, µs.
    pub const CPU_US: f64 = 25.0;
    /// 5 MB result time relative to direct pipes.
    pub const BIG_RATIO: f64 = 2.0;
    /// Idle relay RSS, KiB.
    pub const RELAY_IDLE_KIB: f64 = 20.0 * 1024.0;
    /// Per idle session and per connected bridge, KiB.
    pub const PER_ITEM_KIB: f64 = 20.0;
    /// Bridge RSS besides its child, KiB.
    pub const BRIDGE_KIB: f64 = 15.0 * 1024.0;
}

/// The measurements of one system under test.
#[derive(Debug, Clone, Default)]
pub struct ModeResults {
    /// c=1 runs.
    pub lat: Vec<LatencyRun>,
    /// c=32 runs.
    pub tput: Vec<ThroughputRun>,
    /// Large-result times, seconds.
    pub big: Vec<f64>,
}

impl ModeResults {
    fn lat_med(&self, f: impl Fn(&Latency) -> f64) -> Option<f64> {
        let v: Vec<f64> = self.lat.iter().map(|r| f(&r.latency)).collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// Median p50 at c=1, µs.
    pub fn p50(&self) -> Option<f64> {
        self.lat_med(|l| l.p50)
    }

    /// Median p90 at c=1, µs.
    pub fn p90(&self) -> Option<f64> {
        self.lat_med(|l| l.p90)
    }

    /// Median p99 at c=1, µs.
    pub fn p99(&self) -> Option<f64> {
        self.lat_med(|l| l.p99)
    }

    /// Median calls/s at c=32.
    pub fn rate(&self) -> Option<f64> {
        let v: Vec<f64> = self.tput.iter().map(ThroughputRun::rate).collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// Median CPU µs per call of the given roles (summed) at c=32.
    pub fn cpu_tput(&self, roles: &[&str]) -> Option<f64> {
        let v: Vec<f64> = self
            .tput
            .iter()
            .filter_map(|r| {
                roles
                    .iter()
                    .map(|role| r.cpu.per_call(role, r.calls))
                    .sum::<Option<f64>>()
            })
            .collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// Median CPU µs per call of the given roles (summed) at c=1.
    pub fn cpu_lat(&self, roles: &[&str]) -> Option<f64> {
        let v: Vec<f64> = self
            .lat
            .iter()
            .filter_map(|r| {
                roles
                    .iter()
                    .map(|role| r.cpu.per_call(role, r.latency.calls as u64))
                    .sum::<Option<f64>>()
            })
            .collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// Median large-result time, seconds.
    pub fn big(&self) -> Option<f64> {
        (!self.big.is_empty()).then(|| median(&self.big))
    }
}

/// Memory figures (KiB).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Fresh `relay serve`, nothing connected.
    pub relay_idle_kib: Option<f64>,
    /// The same relay with one bridge connected.
    pub relay_one_bridge_kib: Option<f64>,
    /// That bridge, idle (its child is a separate process).
    pub bridge_idle_kib: Option<f64>,
    /// Sessions opened for the session figure.
    pub sessions: usize,
    /// Relay before / with the sessions' connections open.
    pub relay_sessions_open_kib: Option<(f64, f64)>,
    /// Relay after the sessions' connections closed.
    pub relay_sessions_closed_kib: Option<f64>,
    /// Bridge before / with the sessions (connections open) / after the connections closed.
    pub bridge_sessions_kib: Option<(f64, f64, f64)>,
    /// Bridges connected for the bridge figure.
    pub bridges: usize,
    /// Relay before / after the bridges connected.
    pub relay_bridges_kib: Option<(f64, f64)>,
    /// Median RSS of those bridges.
    pub bridge_median_kib: Option<f64>,
    /// Embedded-mode bridge (relay inside) right after start.
    pub embedded_idle_kib: Option<f64>,
    /// Embedded-mode bridge after the c=1/c=32 runs.
    pub embedded_load_kib: Option<f64>,
    /// Embedded-mode bridge after the large results.
    pub embedded_big_kib: Option<f64>,
    /// Separate relay and its bridge after the c=1/c=32 runs.
    pub separate_load_kib: Option<(f64, f64)>,
    /// Separate relay and its bridge after the large results.
    pub separate_big_kib: Option<(f64, f64)>,
    /// supergateway (node) right after start.
    pub gateway_idle_kib: Option<f64>,
    /// supergateway after the c=1/c=32 runs.
    pub gateway_load_kib: Option<f64>,
    /// Null HTTP server before / with `sessions` idle keep-alive connections.
    pub null_conns_kib: Option<(f64, f64)>,
    /// The bridge in front of the HTTP server, right after start.
    pub http_idle_kib: Option<f64>,
    /// The relay and the bridge of the HTTP upstream after the c=1/c=32 runs.
    pub http_load_kib: Option<(f64, f64)>,
}

/// Everything one run of the benchmark measured.
#[derive(Debug, Clone)]
pub struct Results {
    plan: Plan,
    quick: bool,
    /// Pipe floor runs.
    pub pipe: Vec<Latency>,
    /// Echo server CPU µs per call over pipes.
    pub pipe_child_cpu: Vec<f64>,
    /// Noise (others' CPU plus steal, percent of the machine) during each pipe floor run.
    pub pipe_noise: Vec<f64>,
    /// Large result over pipes, seconds.
    pub big_pipe: Vec<f64>,
    /// Noise during each kept large-result round.
    pub big_noise: Vec<f64>,
    /// Null HTTP server.
    pub null: ModeResults,
    /// Bridge with its embedded relay.
    pub embedded: ModeResults,
    /// Bridge + `relay serve`.
    pub separate: ModeResults,
    /// The echo server over Streamable HTTP, called directly: the HTTP upstream's floor.
    pub http_direct: ModeResults,
    /// That server published by `bridge run --upstream` through `relay serve`.
    pub http_upstream: ModeResults,
    /// supergateway, if it ran.
    pub gateway: Option<ModeResults>,
    /// Memory.
    pub memory: Memory,
    /// Problems and skipped parts.
    pub notes: Vec<String>,
    machine: String,
    load_start: String,
    load_end: String,
    busy_pct: f64,
    steal_pct: f64,
    elapsed: Duration,
}

/// The machine: CPUs, CPU model, kernel, memory.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|k| k / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cpus} vCPU ({model}), Linux {kernel}, {mem_gib:.0} GiB RAM")
}

impl Results {
    /// Empty results; records the machine and the load average at the start.
    pub fn new(plan: &Plan, quick: bool) -> Self {
        Self {
            plan: plan.clone(),
            quick,
            pipe: Vec::new(),
            pipe_child_cpu: Vec::new(),
            pipe_noise: Vec::new(),
            big_pipe: Vec::new(),
            big_noise: Vec::new(),
            null: ModeResults::default(),
            embedded: ModeResults::default(),
            separate: ModeResults::default(),
            http_direct: ModeResults::default(),
            http_upstream: ModeResults::default(),
            gateway: None,
            memory: Memory::default(),
            notes: Vec::new(),
            machine: machine(),
            load_start: crate::procs::loadavg(),
            load_end: String::new(),
            busy_pct: 0.0,
            steal_pct: 0.0,
            elapsed: Duration::ZERO,
        }
    }

    /// Records machine-wide CPU use over the run and the final load average.
    pub fn finish(&mut self, t0: (u64, u64, u64), t1: (u64, u64, u64), elapsed: Duration) {
        let busy = t1.0.saturating_sub(t0.0) as f64;
        let idle = t1.1.saturating_sub(t0.1) as f64;
        let steal = t1.2.saturating_sub(t0.2) as f64;
        let total = (busy + idle + steal).max(1.0);
        self.busy_pct = 100.0 * busy / total;
        self.steal_pct = 100.0 * steal / total;
        self.load_end = crate::procs::loadavg();
        self.elapsed = elapsed;
    }

    fn pipe_med(&self, f: impl Fn(&Latency) -> f64) -> Option<f64> {
        let v: Vec<f64> = self.pipe.iter().map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    }
}

/// A µs figure (one decimal below 100), or `n/a`.
pub(crate) fn us(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "n/a".into(),
    }
}

/// A count with thousands separators.
pub(crate) fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(v: Option<f64>) -> String {
    v.map(thousands).unwrap_or_else(|| "n/a".into())
}

fn mib(kib: Option<f64>) -> String {
    kib.map(|k| format!("{:.1} MB", k / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "pass",
        Some(false) => "**miss**",
        None => "n/a",
    }
}

fn pair(a: Option<bool>, b: Option<bool>) -> String {
    format!("{} / {}", verdict(a), verdict(b))
}

fn triple(l: &ModeResults) -> String {
    format!("{} / {} / {}", us(l.p50()), us(l.p90()), us(l.p99()))
}

/// Renders the results section (markdown).
pub fn render(r: &Results) -> String {
    let mut o = String::new();
    let e = &r.embedded;
    let s = &r.separate;
    let g = r.gateway.as_ref();
    let gm = |f: &dyn Fn(&ModeResults) -> String| g.map(f).unwrap_or_else(|| "skipped".into());

    let _ = writeln!(o, "### Machine and run\n");
    let _ = writeln!(o, "- Machine: {}", r.machine);
    let _ = writeln!(
        o,
        "- Load average (1/5/15 min) at start {}, at end {}; machine CPU busy {:.0} %, steal {:.1} % over the {:.0} s run",
        r.load_start,
        r.load_end,
        r.busy_pct,
        r.steal_pct,
        r.elapsed.as_secs_f64()
    );
    let mut others: Vec<f64> = [
        &r.null,
        &r.embedded,
        &r.separate,
        &r.http_direct,
        &r.http_upstream,
    ]
    .into_iter()
    .chain(r.gateway.as_ref())
    .flat_map(|m| {
        m.lat
            .iter()
            .map(|l| l.cpu.noise_pct)
            .chain(m.tput.iter().map(|t| t.cpu.noise_pct))
    })
    .chain(r.pipe_noise.iter().copied())
    .chain(r.big_noise.iter().copied())
    .collect();
    others.sort_by(f64::total_cmp);
    if !others.is_empty() {
        let _ = writeln!(
            o,
            "- Noise during the kept measurement windows (CPU used by processes outside the benchmark plus steal time, as a share of all cores): median {:.0} %, worst {:.0} % (a window above {:.0} % is measured again, up to {} times, keeping the quietest)",
            median(&others),
            others.last().copied().unwrap_or(0.0),
            r.plan.max_noise,
            r.plan.retries,
        );
    }
    let p = &r.plan;
    let _ = writeln!(
        o,
        "- Plan{}: {} run(s) of each c=1/c={} measurement, medians reported; c=1: {} calls after {} warm-up; c={}: {} s after {} s warm-up; pipe floor: {} round trips after {}; large result: {} bytes × {} (after one unmeasured round; pipe and tunnels take turns); {} idle sessions; {} bridges\n",
        if r.quick {
            " (--quick: indicative only)"
        } else {
            ""
        },
        p.runs,
        p.conns,
        p.lat_calls,
        p.lat_warmup,
        p.conns,
        p.tput_secs.as_secs_f64(),
        p.tput_warmup.as_secs_f64(),
        p.pipe_calls,
        p.pipe_warmup,
        p.big_bytes,
        p.big_reps,
        p.sessions,
        p.bridges,
    );

    // Floors and derived targets.
    let pipe_p50 = r.pipe_med(|l| l.p50);
    let http_p50 = r.null.p50();
    let floor_sum = pipe_p50.zip(http_p50).map(|(a, b)| a + b);
    let over = |m: &ModeResults| m.p50().zip(floor_sum).map(|(p, f)| p - f);
    let over_s = |v: Option<f64>| {
        v.map(|d| format!("{}{}", if d >= 0.0 { "+" } else { "−" }, us(Some(d.abs()))))
            .unwrap_or_else(|| "n/a".into())
    };
    let g_rate = g.and_then(ModeResults::rate);
    let vs_g = |m: &ModeResults| m.rate().zip(g_rate).map(|(a, b)| a / b);
    let x = |v: Option<f64>| {
        v.map(|v| format!("{v:.1}×"))
            .unwrap_or_else(|| "n/a".into())
    };
    let e_cpu = e.cpu_tput(&["bridge"]);
    let s_cpu = s.cpu_tput(&["relay", "bridge"]);
    let g_cpu = g.and_then(|g| g.cpu_tput(&["gateway"]));
    let big_pipe = (!r.big_pipe.is_empty()).then(|| median(&r.big_pipe));
    let big_ratio = |m: &ModeResults| m.big().zip(big_pipe).map(|(a, b)| a / b);
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{:.1} ms", v * 1e3))
            .unwrap_or_else(|| "n/a".into())
    };

    let _ = writeln!(o, "### Results\n");
    let _ = writeln!(
        o,
        "| Figure | Floor | Embedded relay | Separate relay | supergateway | Target | Verdict (embedded / separate) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        o,
        "| c=1 latency p50 / p90 / p99 (µs) | pipe {} / {} / {}; HTTP {} | {} | {} | {} | — | |",
        us(pipe_p50),
        us(r.pipe_med(|l| l.p90)),
        us(r.pipe_med(|l| l.p99)),
        triple(&r.null),
        triple(e),
        triple(s),
        gm(&triple),
    );
    let _ = writeln!(
        o,
        "| c=1 p50 above pipe + HTTP floors (µs) | {} | {} | {} | {} | ≤ +{:.0} | {} |",
        us(floor_sum),
        over_s(over(e)),
        over_s(over(s)),
        gm(&|g| over_s(over(g))),
        target::P50_OVER_FLOORS_US,
        pair(
            over(e).map(|d| d <= target::P50_OVER_FLOORS_US),
            over(s).map(|d| d <= target::P50_OVER_FLOORS_US)
        ),
    );
    let _ = writeln!(
        o,
        "| c=1 p99 (µs) | HTTP {} | {} | {} | {} | ≤ {:.0} | {} |",
        us(r.null.p99()),
        us(e.p99()),
        us(s.p99()),
        gm(&|g| us(g.p99())),
        target::P99_US,
        pair(
            e.p99().map(|v| v <= target::P99_US),
            s.p99().map(|v| v <= target::P99_US)
        ),
    );
    let _ = writeln!(
        o,
        "| calls/s, c={} sessions | HTTP {} | {} | {} | {} | ≥ {} | {} |",
        p.conns,
        rate(r.null.rate()),
        rate(e.rate()),
        rate(s.rate()),
        rate(g_rate),
        thousands(target::CALLS_PER_S),
        pair(
            e.rate().map(|v| v >= target::CALLS_PER_S),
            s.rate().map(|v| v >= target::CALLS_PER_S)
        ),
    );
    let _ = writeln!(
        o,
        "| calls/s relative to supergateway | — | {} | {} | 1× | ≥ {:.0}× | {} |",
        x(vs_g(e)),
        x(vs_g(s)),
        target::VS_SUPERGATEWAY,
        pair(
            vs_g(e).map(|v| v >= target::VS_SUPERGATEWAY),
            vs_g(s).map(|v| v >= target::VS_SUPERGATEWAY)
        ),
    );
    let _ = writeln!(
        o,
        "| CPU µs per call, c={}, bridge + relay | null server {} | {} (one process) | {} (relay {} + bridge {}) | {} (node) | ≤ {:.0} | {} |",
        p.conns,
        us(r.null.cpu_tput(&["server"])),
        us(e_cpu),
        us(s_cpu),
        us(s.cpu_tput(&["relay"])),
        us(s.cpu_tput(&["bridge"])),
        us(g_cpu),
        target::CPU_US,
        pair(
            e_cpu.map(|v| v <= target::CPU_US),
            s_cpu.map(|v| v <= target::CPU_US)
        ),
    );
    let less = |v: Option<f64>| {
        v.zip(g_cpu)
            .map(|(a, b)| format!("{:.1}× less", b / a))
            .unwrap_or_else(|| "n/a".into())
    };
    let _ = writeln!(
        o,
        "| CPU per call relative to supergateway, c={} | — | {} | {} | 1× | (reported) | |",
        p.conns,
        less(e_cpu),
        less(s_cpu),
    );
    let _ = writeln!(
        o,
        "| CPU µs per call, c=1, bridge + relay | null server {}; echo child over pipes {} | {} | {} | {} | (reported) | |",
        us(r.null.cpu_lat(&["server"])),
        us((!r.pipe_child_cpu.is_empty()).then(|| median(&r.pipe_child_cpu))),
        us(e.cpu_lat(&["bridge"])),
        us(s.cpu_lat(&["relay", "bridge"])),
        gm(&|g| us(g.cpu_lat(&["gateway"]))),
    );
    let big_s = |m: &ModeResults| format!("{} ({})", ms(m.big()), x(big_ratio(m)));
    let _ = writeln!(
        o,
        "| {} MB tool result, time (× pipes) | pipe {} | {} | {} | {} | ≤ {:.0}× | {} |",
        p.big_bytes / 1_000_000,
        ms(big_pipe),
        big_s(e),
        big_s(s),
        gm(&big_s),
        target::BIG_RATIO,
        pair(
            big_ratio(e).map(|v| v <= target::BIG_RATIO),
            big_ratio(s).map(|v| v <= target::BIG_RATIO)
        ),
    );

    let m = &r.memory;
    let per = |pair: Option<(f64, f64)>, n: usize| pair.map(|(a, b)| (b - a) / n.max(1) as f64);
    let kb = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} KB"))
            .unwrap_or_else(|| "n/a".into())
    };
    let _ = writeln!(
        o,
        "| relay RSS, idle | — | — | {} | — | < {:.0} MB | — / {} |",
        mib(m.relay_idle_kib),
        target::RELAY_IDLE_KIB / 1024.0,
        verdict(m.relay_idle_kib.map(|v| v < target::RELAY_IDLE_KIB)),
    );
    let session_bridge = m
        .bridge_sessions_kib
        .map(|(a, _, c)| (c - a) / m.sessions.max(1) as f64);
    let _ = writeln!(
        o,
        "| bridge RSS per idle session ({} sessions) | — | — | {} | — | < {:.0} KB | — / {} |",
        m.sessions,
        kb(session_bridge),
        target::PER_ITEM_KIB,
        verdict(session_bridge.map(|v| v < target::PER_ITEM_KIB)),
    );
    let conn_relay = per(m.relay_sessions_open_kib, m.sessions);
    let _ = writeln!(
        o,
        "| relay RSS per idle keep-alive connection (one per session) | null server {} | — | {} | — | (reported; the relay keeps no session state) | |",
        kb(per(m.null_conns_kib, m.sessions)),
        kb(conn_relay),
    );
    let per_bridge = per(m.relay_bridges_kib, m.bridges);
    let _ = writeln!(
        o,
        "| relay RSS per connected bridge ({} real bridges, after {} connected first) | — | — | {} | — | < {:.0} KB | — / {} |",
        m.bridges,
        crate::WARM_BRIDGES,
        kb(per_bridge),
        target::PER_ITEM_KIB,
        verdict(per_bridge.map(|v| v < target::PER_ITEM_KIB)),
    );
    let max = |vals: &[Option<f64>]| {
        vals.iter()
            .flatten()
            .copied()
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    };
    let sep_bridge = max(&[
        m.bridge_idle_kib,
        m.bridge_sessions_kib.map(|t| t.1.max(t.2)),
        m.separate_load_kib.map(|t| t.1),
        m.bridge_median_kib,
    ]);
    let emb_bridge = max(&[m.embedded_idle_kib, m.embedded_load_kib]);
    let _ = writeln!(
        o,
        "| bridge RSS besides its child (+ its guard process's private memory): idle; after the c=1/c={} runs | — | {}; {} (relay inside) | {}; {} | node {}; {} | < {:.0} MB | {} / {} |",
        p.conns,
        mib(m.embedded_idle_kib),
        mib(m.embedded_load_kib),
        mib(m.bridge_idle_kib),
        mib(m.separate_load_kib.map(|t| t.1)),
        mib(m.gateway_idle_kib),
        mib(m.gateway_load_kib),
        target::BRIDGE_KIB / 1024.0,
        verdict(emb_bridge.map(|v| v < target::BRIDGE_KIB)),
        verdict(sep_bridge.map(|v| v < target::BRIDGE_KIB)),
    );
    let _ = writeln!(
        o,
        "| bridge RSS after the {} MB results (retained) | — | {} | {} | — | (reported) | |",
        p.big_bytes / 1_000_000,
        mib(m.embedded_big_kib),
        mib(m.separate_big_kib.map(|t| t.1)),
    );

    render_http(&mut o, r);

    // Per-run details.
    let _ = writeln!(o, "\n### Per-run details\n");
    let _ = writeln!(
        o,
        "CPU columns are µs per call from `/proc/<pid>/stat` (schedstat in brackets); \"child\" is the echo server(s), \"server\" the null or HTTP echo server, \"client\" the load generator.\n"
    );
    let _ = writeln!(
        o,
        "| Target | run | c=1 p50 / p90 / p99 µs | c=1 CPU µs/call | c={} calls/s | c={} CPU µs/call | errors | noise (others' CPU + steal), c=1 / c={} |",
        p.conns, p.conns, p.conns
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for (i, l) in r.pipe.iter().enumerate() {
        let _ = writeln!(
            o,
            "| pipe floor | {} | {:.1} / {:.1} / {:.1} | child {} | — | — | 0 | {} / — |",
            i + 1,
            l.p50,
            l.p90,
            l.p99,
            us(r.pipe_child_cpu.get(i).copied()),
            r.pipe_noise
                .get(i)
                .map(|n| format!("{n:.0} %"))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    let mut modes: Vec<(&str, &ModeResults)> = vec![
        ("null HTTP", &r.null),
        ("embedded relay", e),
        ("separate relay", s),
        ("HTTP server direct", &r.http_direct),
        ("HTTP upstream", &r.http_upstream),
    ];
    if let Some(g) = g {
        modes.push(("supergateway", g));
    }
    for (name, mr) in modes {
        let n = mr.lat.len().max(mr.tput.len());
        for i in 0..n {
            let lat = mr.lat.get(i);
            let tp = mr.tput.get(i);
            let lat_s = lat
                .map(|l| {
                    format!(
                        "{:.1} / {:.1} / {:.1}",
                        l.latency.p50, l.latency.p90, l.latency.p99
                    )
                })
                .unwrap_or_else(|| "n/a".into());
            let cpu_lat = lat
                .map(|l| {
                    let calls = l.latency.calls as u64;
                    let mut parts: Vec<String> = l
                        .cpu
                        .by_role
                        .iter()
                        .map(|(role, _)| format!("{role} {}", us(l.cpu.per_call(role, calls))))
                        .collect();
                    parts.push(format!(
                        "client {}",
                        us(Some(l.cpu.client.stat_us / calls.max(1) as f64))
                    ));
                    parts.join(", ")
                })
                .unwrap_or_default();
            let others = format!(
                "{} / {}",
                lat.map(|l| format!("{:.0} %", l.cpu.noise_pct))
                    .unwrap_or_else(|| "n/a".into()),
                tp.map(|t| format!("{:.0} %", t.cpu.noise_pct))
                    .unwrap_or_else(|| "n/a".into())
            );
            let (rate_s, cpu_tp, errs) = tp
                .map(|t| {
                    let mut parts: Vec<String> = t
                        .cpu
                        .by_role
                        .iter()
                        .map(|(role, _)| {
                            format!(
                                "{role} {} [{}]",
                                us(t.cpu.per_call(role, t.calls)),
                                us(t.cpu.per_call_sched(role, t.calls))
                            )
                        })
                        .collect();
                    parts.push(format!(
                        "client {}",
                        us(Some(t.cpu.client.stat_us / t.calls.max(1) as f64))
                    ));
                    (thousands(t.rate()), parts.join(", "), t.errors)
                })
                .unwrap_or_else(|| ("n/a".into(), String::new(), 0));
            let _ = writeln!(
                o,
                "| {name} | {} | {lat_s} | {cpu_lat} | {rate_s} | {cpu_tp} | {errs} | {others} |",
                i + 1
            );
        }
    }
    let fmt_times = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{:.1}", t * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        o,
        "\nLarge result, ms per call (rounds with noise at [{}] %): pipe [{}]; embedded [{}]; separate [{}]; supergateway [{}].",
        r.big_noise
            .iter()
            .map(|n| format!("{n:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        fmt_times(&r.big_pipe),
        fmt_times(&e.big),
        fmt_times(&s.big),
        g.map(|g| fmt_times(&g.big)).unwrap_or_default(),
    );
    let _ = writeln!(
        o,
        "\nMemory (RSS): relay idle {}, with one bridge {}; relay before/with {} open session connections {} → {}, after they closed {}; bridge before/with/after {} → {} → {}; relay before/after {} bridges {} → {}.",
        mib(m.relay_idle_kib),
        mib(m.relay_one_bridge_kib),
        m.sessions,
        mib(m.relay_sessions_open_kib.map(|t| t.0)),
        mib(m.relay_sessions_open_kib.map(|t| t.1)),
        mib(m.relay_sessions_closed_kib),
        mib(m.bridge_sessions_kib.map(|t| t.0)),
        mib(m.bridge_sessions_kib.map(|t| t.1)),
        mib(m.bridge_sessions_kib.map(|t| t.2)),
        m.bridges,
        mib(m.relay_bridges_kib.map(|t| t.0)),
        mib(m.relay_bridges_kib.map(|t| t.1)),
    );
    let _ = writeln!(
        o,
        "Separate relay RSS after the c=1/c={} runs {}, after the large results {}; null HTTP server before/with {} idle connections {} → {}.",
        p.conns,
        mib(m.separate_load_kib.map(|t| t.0)),
        mib(m.separate_big_kib.map(|t| t.0)),
        m.sessions,
        mib(m.null_conns_kib.map(|t| t.0)),
        mib(m.null_conns_kib.map(|t| t.1)),
    );
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\nNotes from the run:\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// The HTTP-upstream table: the echo server over Streamable HTTP through relay + bridge,
/// beside the same server called directly.
fn render_http(o: &mut String, r: &Results) {
    let d = &r.http_direct;
    let h = &r.http_upstream;
    let conns = r.plan.conns;
    let times = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .map(|(a, b)| format!("{:.2}×", a / b))
            .unwrap_or_else(|| "n/a".into())
    };
    let plus = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .map(|(a, b)| {
                let d = a - b;
                format!(
                    "{}{} µs",
                    if d >= 0.0 { "+" } else { "−" },
                    us(Some(d.abs()))
                )
            })
            .unwrap_or_else(|| "n/a".into())
    };
    let tunnel_cpu = h.cpu_tput(&["relay", "bridge"]);
    let floor_cpu = d.cpu_tput(&["server"]);
    let m = &r.memory;
    let _ = writeln!(o, "\n### HTTP upstream\n");
    let _ = writeln!(
        o,
        "`echo-server --http` (Streamable HTTP, JSON answers) published by `bridge run --upstream` through `relay serve`, beside the same server called directly by the same load generator (with a session).\n"
    );
    let _ = writeln!(
        o,
        "| Figure | Floor: the server called directly | Through relay + bridge | Relative to the floor |"
    );
    let _ = writeln!(o, "|---|---|---|---|");
    let _ = writeln!(
        o,
        "| c=1 latency p50 / p90 / p99 (µs) | {} | {} | p50 {}, p99 {} |",
        triple(d),
        triple(h),
        plus(h.p50(), d.p50()),
        plus(h.p99(), d.p99()),
    );
    let _ = writeln!(
        o,
        "| calls/s, c={conns} sessions | {} | {} | {} |",
        rate(d.rate()),
        rate(h.rate()),
        times(h.rate(), d.rate()),
    );
    let _ = writeln!(
        o,
        "| CPU µs per call, c={conns}, relay + bridge | server {} | {} (relay {} + bridge {}) | {} the server's |",
        us(floor_cpu),
        us(tunnel_cpu),
        us(h.cpu_tput(&["relay"])),
        us(h.cpu_tput(&["bridge"])),
        times(tunnel_cpu, floor_cpu),
    );
    let _ = writeln!(
        o,
        "| the server's own CPU µs per call, c={conns} | {} | {} (called by the bridge) | {} |",
        us(floor_cpu),
        us(h.cpu_tput(&["server"])),
        times(h.cpu_tput(&["server"]), floor_cpu),
    );
    let _ = writeln!(
        o,
        "| CPU µs per call, c=1, relay + bridge | server {} | {} | (reported) |",
        us(d.cpu_lat(&["server"])),
        us(h.cpu_lat(&["relay", "bridge"])),
    );
    let _ = writeln!(
        o,
        "| bridge RSS (+ its guard process's private memory): idle; after the c=1/c={conns} runs | — | {}; {} (relay {}) | (reported) |",
        mib(m.http_idle_kib),
        mib(m.http_load_kib.map(|t| t.1)),
        mib(m.http_load_kib.map(|t| t.0)),
    );
}
