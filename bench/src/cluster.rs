//! The cluster section (`--cluster`): relay nodes on one PostgreSQL database, alone and
//! behind HAProxy, under the same load as the rest of the benchmark.
//!
//! Three configurations run side by side, each with its own database in one throwaway
//! PostgreSQL server (see [`crate::postgres`]) and its own six tunnels (`bridge run --
//! echo-server`, one per tunnel):
//!
//! * **(a)** one `relay serve --database-url`, called directly;
//! * **(b)** one such relay behind HAProxy;
//! * **(c)** three such relays (one public URL, one database, a `--node-id` each) behind
//!   HAProxy.
//!
//! HAProxy runs `deploy/cluster/haproxy.cfg` with only its addresses changed (a plain
//! loopback `bind`, the admin socket in the run's log directory, one `server` line per
//! relay): every request of a tunnel, and its bridge's WebSocket, go to the node its name
//! hashes to (`balance hash`, `hash-type consistent`), and `/readyz` is its health check.
//! The relays trust HAProxy's `X-Forwarded-For` (`--trusted-proxy 127.0.0.1/32`). Six names
//! rarely hash evenly over three nodes, so with several nodes a name whose node already
//! holds its share (two) is given up for the next one: every node carries two tunnels,
//! and the report lists the names given up.
//!
//! Every configuration, and the null HTTP server (the floor), gets the same c=`--conns`
//! throughput run: the sessions are spread evenly over the six tunnels (session `i` on
//! tunnel `i % 6`). Calls/s, the latency of the calls of the measured window, and CPU µs
//! per call of relays + HAProxy + bridges (utime+stime from `/proc`, the echo servers
//! shown apart) are reported; runs are repeated (`--runs`), interleaved, medians reported,
//! and a noisy window is measured again as everywhere else.

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Plan;
use crate::load::{ThroughputRun, Watch, median};
use crate::mcp::Target;
use crate::postgres::Postgres;
use crate::procs::{self, Proc};
use crate::report::{machine, thousands, us};
use crate::setup::{self, Bins, BridgeProc, READY, RelayProc};

/// Tunnels (bridges) per configuration.
pub const TUNNELS: usize = 6;

/// The CPU roles of the relay nodes, in node order.
const RELAY_ROLES: [&str; 3] = ["relay r1", "relay r2", "relay r3"];

/// One configuration under test: its relays, its HAProxy (if any) and its six bridges.
struct Setup {
    label: &'static str,
    /// Declared first so they stop before the relays they are connected to.
    bridges: Vec<BridgeProc>,
    lb: Option<Haproxy>,
    relays: Vec<RelayProc>,
    targets: Vec<Arc<Target>>,
    /// For each tunnel, its name and the node (index into `relays`) holding its bridge.
    holders: Vec<(String, usize)>,
    /// Names given up because their node already held its share, with that node.
    skipped: Vec<(String, usize)>,
    runs: Vec<ThroughputRun>,
}

impl Setup {
    /// (a): one relay on the database, called directly.
    fn direct(bins: &Bins, pg: &Postgres, label: &'static str, key: &str) -> Result<Self> {
        let db = pg.create_database(&format!("bench_{key}"))?;
        let relay = setup::relay_with(bins, &format!("relay-{key}1"), &node_args(&db, key, 1))?;
        Self::finish(bins, label, key, vec![relay], None)
    }

    /// (b), (c): `nodes` relays on one database behind one HAProxy, whose address is their
    /// public URL.
    fn balanced(
        bins: &Bins,
        pg: &Postgres,
        label: &'static str,
        key: &str,
        nodes: usize,
    ) -> Result<Self> {
        if nodes > RELAY_ROLES.len() {
            bail!("at most {} relay nodes", RELAY_ROLES.len());
        }
        let db = pg.create_database(&format!("bench_{key}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut relays = Vec::with_capacity(nodes);
        for i in 1..=nodes {
            let mut args = node_args(&db, key, i);
            args.extend(
                [
                    "--public-url",
                    &format!("http://{listen}"),
                    "--trusted-proxy",
                    "127.0.0.1/32",
                ]
                .map(String::from),
            );
            relays.push(setup::relay_with(bins, &format!("relay-{key}{i}"), &args)?);
        }
        let addrs: Vec<String> = relays.iter().map(|r| r.addr.clone()).collect();
        let lb = Haproxy::start(bins, &format!("haproxy-{key}"), &listen, &addrs)?;
        Self::finish(bins, label, key, relays, Some(lb))
    }

    /// Connects the six bridges (through HAProxy when there is one), each to the node its
    /// name hashes to. With several nodes, a name whose node already holds its share
    /// (six tunnels over the nodes, evenly) is given up and the next one tried, so that
    /// every node carries the same load; the names given up are kept for the report.
    fn finish(
        bins: &Bins,
        label: &'static str,
        key: &str,
        relays: Vec<RelayProc>,
        lb: Option<Haproxy>,
    ) -> Result<Self> {
        let share = TUNNELS.div_ceil(relays.len());
        let mut held = vec![0; relays.len()];
        let mut bridges = Vec::with_capacity(TUNNELS);
        let mut holders = Vec::with_capacity(TUNNELS);
        let mut skipped = Vec::new();
        let mut i = 0;
        while bridges.len() < TUNNELS {
            i += 1;
            if i > 20 * TUNNELS {
                bail!(
                    "{label}: no even spread of the tunnels after {} names",
                    i - 1
                );
            }
            let name = format!("bench-{key}-{i}");
            let bridge =
                setup::bridge(bins, &format!("bridge-{key}-{i}"), Some(&relays[0]), &name)?;
            let node = holder(&relays, &name)?;
            if held[node] >= share {
                skipped.push((name, node));
                continue;
            }
            held[node] += 1;
            bridges.push(bridge);
            holders.push((name, node));
        }
        Ok(Self {
            label,
            targets: bridges.iter().map(|b| b.target.clone()).collect(),
            bridges,
            lb,
            relays,
            holders,
            skipped,
            runs: Vec::new(),
        })
    }

    /// The processes whose CPU is charged to this configuration: each relay node, HAProxy,
    /// the bridges (with their guards) and, apart, their echo servers and the PostgreSQL
    /// server `pg` with its backends.
    fn watch(&self, pg: Option<u32>) -> impl Fn() -> Vec<Watch> + use<> {
        let relays: Vec<u32> = self.relays.iter().map(|r| r.proc.pid()).collect();
        let lb = self.lb.as_ref().map(|l| l.proc.pid());
        let bridges: Vec<u32> = self.bridges.iter().map(|b| b.proc.pid()).collect();
        move || {
            let mut w: Vec<Watch> = relays
                .iter()
                .zip(RELAY_ROLES)
                .map(|(pid, role)| Watch {
                    role,
                    pids: vec![*pid],
                })
                .collect();
            if let Some(pid) = lb {
                w.push(Watch {
                    role: "haproxy",
                    pids: vec![pid],
                });
            }
            w.push(Watch {
                role: "bridge",
                pids: bridges
                    .iter()
                    .flat_map(|b| procs::bridge_family(*b))
                    .collect(),
            });
            w.push(Watch {
                role: "child",
                pids: bridges
                    .iter()
                    .flat_map(|b| procs::bridge_servers(*b))
                    .collect(),
            });
            if let Some(pid) = pg {
                let mut pids = vec![pid];
                pids.extend(procs::descendants(pid));
                w.push(Watch {
                    role: "postgres",
                    pids,
                });
            }
            w
        }
    }
}

/// `relay serve` arguments of node `i` of configuration `key` on database `db`.
fn node_args(db: &str, key: &str, i: usize) -> Vec<String> {
    [
        "--database-url",
        db,
        "--node-id",
        &format!("{key}{i}"),
        "--drain-delay-secs",
        "0",
    ]
    .map(String::from)
    .to_vec()
}

/// The node (index into `relays`) whose log says the bridge of `name` connected, waiting
/// a moment for the line to be written.
fn holder(relays: &[RelayProc], name: &str) -> Result<usize> {
    let needle = format!("tunnel={name} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let node = relays.iter().position(|r| {
            strip_ansi(&std::fs::read_to_string(&r.proc.log).unwrap_or_default())
                .lines()
                .any(|l| l.contains("bridge connected") && l.contains(&needle))
        });
        if let Some(node) = node {
            return Ok(node);
        }
        if Instant::now() > deadline {
            bail!("no relay logged the bridge of {name} connecting");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `text` without its terminal colour sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running HAProxy with a configuration derived from `deploy/cluster/haproxy.cfg`.
struct Haproxy {
    proc: Proc,
    sock: PathBuf,
}

impl Haproxy {
    /// Writes the configuration into `<logs>/<name>/haproxy.cfg`, starts `haproxy -db`
    /// and waits until every relay has passed its `/readyz` check.
    fn start(bins: &Bins, name: &str, listen: &str, relays: &[String]) -> Result<Self> {
        let dir = bins.logs.join(name);
        std::fs::create_dir_all(&dir)?;
        let shipped_path = setup::repo_root().join("deploy/cluster/haproxy.cfg");
        let shipped = std::fs::read_to_string(&shipped_path)
            .with_context(|| format!("reading {}", shipped_path.display()))?;
        let sock = dir.join("admin.sock");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(&shipped, listen, &sock, relays)?)?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg);
        let proc = Proc::spawn(name, cmd, &bins.logs)
            .context("HAProxy is needed for --cluster (apt-get install haproxy)")?;
        let mut lb = Self { proc, sock };
        lb.wait_ready(relays.len())?;
        Ok(lb)
    }

    /// `show stat` on the admin socket: `(server, status, check status)` of every server
    /// of the `relays` backend.
    fn servers(&self) -> Result<Vec<(String, String, String)>> {
        let mut s = UnixStream::connect(&self.sock)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"show stat\n")?;
        let mut csv = String::new();
        s.read_to_string(&mut csv)?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .context("show stat without a header")?
            .split(',')
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .with_context(|| format!("show stat without {name}"))
        };
        let (px, sv, status, check) = (
            col("pxname")?,
            col("svname")?,
            col("status")?,
            col("check_status")?,
        );
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<&str>>())
            .filter(|f| {
                f.get(px) == Some(&"relays")
                    && !matches!(f.get(sv), Some(&"FRONTEND") | Some(&"BACKEND"))
            })
            .map(|f| {
                let get = |i: usize| f.get(i).copied().unwrap_or("").to_owned();
                (get(sv), get(status), get(check))
            })
            .collect())
    }

    /// Waits until the `n` relays are UP with a passed HTTP check (`L7OK`).
    fn wait_ready(&mut self, n: usize) -> Result<()> {
        let deadline = Instant::now() + READY;
        loop {
            if !self.proc.running() {
                bail!("haproxy ended:\n{}", self.proc.log_tail());
            }
            let last = match self.servers() {
                Ok(s)
                    if s.len() == n && s.iter().all(|(_, st, chk)| st == "UP" && chk == "L7OK") =>
                {
                    return Ok(());
                }
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "HAProxy's relays not all up within {READY:?} ({last}); its log:\n{}",
                    self.proc.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The shipped configuration with the benchmark's addresses: a plain `bind listen` for the
/// TLS one (no redirect, no port 80), the admin socket at `sock`, and one `server` line per
/// relay address (the shipped ids, in order).
fn haproxy_config(shipped: &str, listen: &str, sock: &Path, relays: &[String]) -> Result<String> {
    let mut out = String::new();
    let mut server = 0;
    for line in shipped.lines() {
        let t = line.trim_start();
        let line = if t.starts_with("bind :443") {
            format!("    bind {listen}")
        } else if t.starts_with("bind :80") || t.starts_with("http-request redirect scheme") {
            continue;
        } else if t.starts_with("stats socket") {
            line.replace("/run/haproxy/admin.sock", &sock.display().to_string())
        } else if t.starts_with("server r") {
            if server == relays.len() {
                continue;
            }
            server += 1;
            format!("    server r{server} {} id {server}", relays[server - 1])
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    if server != relays.len() {
        bail!(
            "deploy/cluster/haproxy.cfg has {server} server lines, {} needed",
            relays.len()
        );
    }
    Ok(out)
}

/// CPU µs per call of the roles `pick` selects, summed.
fn cpu(r: &ThroughputRun, pick: impl Fn(&str) -> bool) -> f64 {
    r.cpu
        .by_role
        .iter()
        .filter(|(role, _)| pick(role))
        .map(|(_, c)| c.stat_us)
        .sum::<f64>()
        / r.calls.max(1) as f64
}

/// The median over runs of `f`, if there was a run.
fn med(runs: &[ThroughputRun], f: impl Fn(&ThroughputRun) -> f64) -> Option<f64> {
    let v: Vec<f64> = runs.iter().map(f).collect();
    (!v.is_empty()).then(|| median(&v))
}

fn is_relay(role: &str) -> bool {
    role.starts_with("relay")
}

fn is_tunnel(role: &str) -> bool {
    is_relay(role) || role == "haproxy" || role == "bridge"
}

/// First line of `cmd --version`-like output.
fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{cmd}: unknown version"))
}

/// Runs the section and returns its markdown.
pub async fn run(bins: &Bins, plan: &Plan, quick: bool) -> Result<String> {
    let started = Instant::now();
    let ticks0 = procs::machine_ticks();
    let load_start = procs::loadavg();
    let mut notes = Vec::new();

    let pg = Postgres::start(&bins.logs)?;
    let null = setup::null_server(bins)?;
    eprintln!("bench: cluster: starting (a) one relay");
    let a = Setup::direct(bins, &pg, "(a) 1 relay direct (PostgreSQL)", "a")?;
    eprintln!("bench: cluster: starting (b) one relay behind HAProxy");
    let b = Setup::balanced(bins, &pg, "(b) 1 relay behind HAProxy", "b", 1)?;
    eprintln!("bench: cluster: starting (c) three relays behind HAProxy");
    let c = Setup::balanced(bins, &pg, "(c) 3 relays behind HAProxy", "c", 3)?;
    let mut setups = [a, b, c];

    let null_pid = null.proc.pid();
    let null_watch = move || {
        vec![Watch {
            role: "server",
            pids: vec![null_pid],
        }]
    };
    let mut floor = Vec::new();
    for run in 0..plan.runs {
        eprintln!("bench: cluster: run {}/{}", run + 1, plan.runs);
        let targets = std::slice::from_ref(&null.target);
        floor.extend(
            crate::measure_throughput(targets, "null HTTP server", plan, &null_watch, &mut notes)
                .await,
        );
        for s in &mut setups {
            let watch = s.watch(pg.pid());
            let r = crate::measure_throughput(&s.targets, s.label, plan, &watch, &mut notes).await;
            s.runs.extend(r);
        }
    }
    for s in &setups {
        if let Some(lb) = &s.lb
            && let Ok(servers) = lb.servers()
            && servers.iter().any(|(_, st, _)| st != "UP")
        {
            notes.push(format!(
                "{}: HAProxy's servers at the end: {servers:?}",
                s.label
            ));
        }
    }
    let ticks1 = procs::machine_ticks();
    let elapsed = started.elapsed();
    let load_end = procs::loadavg();

    let mut o = String::new();
    let _ = writeln!(o, "### Several nodes behind HAProxy\n");
    let _ = writeln!(o, "- Machine: {}", machine());
    let busy = ticks1.0.saturating_sub(ticks0.0) as f64;
    let idle = ticks1.1.saturating_sub(ticks0.1) as f64;
    let steal = ticks1.2.saturating_sub(ticks0.2) as f64;
    let total = (busy + idle + steal).max(1.0);
    let _ = writeln!(
        o,
        "- Load average (1/5/15 min) at start {load_start}, at end {load_end}; machine CPU busy {:.0} %, steal {:.1} % over the {:.0} s section",
        100.0 * busy / total,
        100.0 * steal / total,
        elapsed.as_secs_f64()
    );
    let mut noise: Vec<f64> = floor
        .iter()
        .chain(setups.iter().flat_map(|s| s.runs.iter()))
        .map(|r| r.cpu.noise_pct)
        .collect();
    noise.sort_by(f64::total_cmp);
    if !noise.is_empty() {
        let _ = writeln!(
            o,
            "- Noise during the kept windows (others' CPU plus steal, share of all cores): median {:.0} %, worst {:.0} % (a window above {:.0} % is measured again, up to {} times)",
            median(&noise),
            noise.last().copied().unwrap_or(0.0),
            plan.max_noise,
            plan.retries
        );
    }
    let _ = writeln!(
        o,
        "- Software: {}; {}",
        version("haproxy", "-v"),
        pg.version
    );
    let _ = writeln!(
        o,
        "- Plan{}: {} run(s) per configuration, interleaved, medians reported; c={} sessions spread over {TUNNELS} tunnels (the floor: one endpoint); {} s window after {} s warm-up",
        if quick {
            " (--quick: indicative only)"
        } else {
            ""
        },
        plan.runs,
        plan.conns,
        plan.tput_secs.as_secs_f64(),
        plan.tput_warmup.as_secs_f64(),
    );
    let c = &setups[2];
    let by_node = |v: &[(String, usize)]| {
        v.iter()
            .map(|(name, n)| format!("{name} → r{}", n + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        o,
        "- (c): tunnels by node (HAProxy's consistent hash of the name): {}; names given up because their node already held {} tunnels: {}\n",
        by_node(&c.holders),
        TUNNELS.div_ceil(c.relays.len()),
        if c.skipped.is_empty() {
            "none".to_owned()
        } else {
            by_node(&c.skipped)
        }
    );

    let _ = writeln!(
        o,
        "| Configuration | calls/s, c={} | latency p50 / p99 (µs), c={} | CPU µs per call: relays + HAProxy + bridges | relays | HAProxy | bridges | echo servers (apart) | PostgreSQL (apart) | calls/s vs (a) |",
        plan.conns, plan.conns
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    let pair = |runs: &[ThroughputRun]| {
        format!(
            "{} / {}",
            us(med(runs, |r| r.latency.p50)),
            us(med(runs, |r| r.latency.p99))
        )
    };
    let rate = |runs: &[ThroughputRun]| {
        med(runs, ThroughputRun::rate)
            .map(thousands)
            .unwrap_or_else(|| "n/a".into())
    };
    let _ = writeln!(
        o,
        "| Floor: null HTTP server | {} | {} | server {} | — | — | — | — | — | |",
        rate(&floor),
        pair(&floor),
        us(med(&floor, |r| cpu(r, |role| role == "server"))),
    );
    let base = med(&setups[0].runs, ThroughputRun::rate);
    for s in &setups {
        let relays = if s.relays.len() > 1 {
            let each: Vec<String> = RELAY_ROLES[..s.relays.len()]
                .iter()
                .map(|role| {
                    format!(
                        "{} {}",
                        role.trim_start_matches("relay "),
                        us(med(&s.runs, |r| cpu(r, |x| x == *role)))
                    )
                })
                .collect();
            format!(
                "{} ({})",
                us(med(&s.runs, |r| cpu(r, is_relay))),
                each.join(" + ")
            )
        } else {
            us(med(&s.runs, |r| cpu(r, is_relay)))
        };
        let vs = med(&s.runs, ThroughputRun::rate)
            .zip(base)
            .map(|(r, b)| format!("{:.2}×", r / b.max(1e-9)))
            .unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {relays} | {} | {} | {} | {} | {vs} |",
            s.label,
            rate(&s.runs),
            pair(&s.runs),
            us(med(&s.runs, |r| cpu(r, is_tunnel))),
            if s.lb.is_some() {
                us(med(&s.runs, |r| cpu(r, |x| x == "haproxy")))
            } else {
                "—".into()
            },
            us(med(&s.runs, |r| cpu(r, |x| x == "bridge"))),
            us(med(&s.runs, |r| cpu(r, |x| x == "child"))),
            us(med(&s.runs, |r| cpu(r, |x| x == "postgres"))),
        );
    }

    let _ = writeln!(o, "\n#### Per-run details\n");
    let _ = writeln!(
        o,
        "CPU is µs per call from `/proc/<pid>/stat` (schedstat in brackets); \"client\" is the load generator.\n"
    );
    let _ = writeln!(
        o,
        "| Configuration | run | calls/s | p50 / p90 / p99 µs | CPU µs per call | errors | noise |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    let rows = std::iter::once(("Floor: null HTTP server", &floor))
        .chain(setups.iter().map(|s| (s.label, &s.runs)));
    for (label, runs) in rows {
        for (i, r) in runs.iter().enumerate() {
            let mut parts: Vec<String> = r
                .cpu
                .by_role
                .iter()
                .map(|(role, _)| {
                    format!(
                        "{role} {} [{}]",
                        us(r.cpu.per_call(role, r.calls)),
                        us(r.cpu.per_call_sched(role, r.calls))
                    )
                })
                .collect();
            parts.push(format!(
                "client {}",
                us(Some(r.cpu.client.stat_us / r.calls.max(1) as f64))
            ));
            let _ = writeln!(
                o,
                "| {label} | {} | {} | {:.0} / {:.0} / {:.0} | {} | {} | {:.0} % |",
                i + 1,
                thousands(r.rate()),
                r.latency.p50,
                r.latency.p90,
                r.latency.p99,
                parts.join(", "),
                r.errors,
                r.cpu.noise_pct
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(o, "\nNotes from the run:\n");
        for n in &notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    drop(setups);
    drop(null);
    drop(pg);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_haproxy_configuration_with_the_benchmark_addresses() {
        let shipped =
            std::fs::read_to_string(setup::repo_root().join("deploy/cluster/haproxy.cfg")).unwrap();
        let relays = ["127.0.0.1:7001".to_owned(), "127.0.0.1:7002".to_owned()];
        let sock = Path::new("/tmp/lb/admin.sock");
        let cfg = haproxy_config(&shipped, "127.0.0.1:9000", sock, &relays).unwrap();
        assert!(cfg.contains("\n    bind 127.0.0.1:9000\n"), "{cfg}");
        assert!(!cfg.contains(":443") && !cfg.contains("bind :80"), "{cfg}");
        assert!(!cfg.contains("redirect scheme"), "{cfg}");
        assert!(cfg.contains("stats socket /tmp/lb/admin.sock "), "{cfg}");
        assert!(cfg.contains("    server r1 127.0.0.1:7001 id 1\n"), "{cfg}");
        assert!(cfg.contains("    server r2 127.0.0.1:7002 id 2\n"), "{cfg}");
        assert!(!cfg.contains("server r3"), "{cfg}");
        // The balancing itself is the shipped one.
        assert!(cfg.contains("balance hash var(txn.tunnel)"), "{cfg}");
        assert!(cfg.contains("hash-type consistent"), "{cfg}");
        assert!(cfg.contains("option httpchk GET /readyz"), "{cfg}");
        let four = vec!["127.0.0.1:1".to_owned(); 4];
        assert!(haproxy_config(&shipped, "127.0.0.1:9000", sock, &four).is_err());
    }

    #[test]
    fn colour_sequences_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2mnode\u{1b}[0m \u{1b}[3mtunnel\u{1b}[0m\u{1b}[2m=\u{1b}[0mx y"),
            "node tunnel=x y"
        );
    }
}
