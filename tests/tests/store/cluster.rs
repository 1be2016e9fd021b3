//! Three relay nodes behind HAProxy with `deploy/cluster/haproxy.cfg` (only its addresses
//! changed), on one PostgreSQL database, with Debian's `haproxy`: each tunnel's bridge and
//! requests land on one node; an OAuth authorization goes through whichever nodes HAProxy
//! picks; when the node holding a tunnel is killed, its bridge reconnects through HAProxy
//! to another, where the client's token still works; when the node comes back the tunnel
//! is handed back to it; and a tunnel whose desktop and node are both gone is answered
//! offline by another node.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::http::BlockingHttp;
use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Proc, Relay, repo_root, unused_port};

/// The shipped configuration with test addresses: a plain loopback `bind` for the TLS
/// one (whose certificate directory is `certs` when given, for `haproxy -c`), the admin
/// socket in `dir`, and these relay ports.
pub(crate) fn haproxy_config(
    dir: &Path,
    listen: &str,
    certs: Option<&Path>,
    relays: &[u16],
) -> String {
    let shipped = std::fs::read_to_string(repo_root().join("deploy/cluster/haproxy.cfg"))
        .expect("deploy/cluster/haproxy.cfg");
    let mut out = String::new();
    let mut server = 0;
    for line in shipped.lines() {
        let t = line.trim_start();
        let line = if t.starts_with("bind :443") {
            match certs {
                Some(c) => line.replace("/etc/haproxy/certs/", &format!("{}/", c.display())),
                None => format!("    bind {listen}"),
            }
        } else if t.starts_with("bind :80") || t.starts_with("http-request redirect scheme") {
            if certs.is_some() {
                line.replace(":80", &format!("127.0.0.1:{}", unused_port()))
            } else {
                continue;
            }
        } else if t.starts_with("stats socket") {
            line.replace(
                "/run/haproxy/admin.sock",
                &dir.join("admin.sock").display().to_string(),
            )
        } else if t.starts_with("server r") {
            let port = relays[server];
            server += 1;
            format!("    server r{server} 127.0.0.1:{port} id {server}")
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(server, relays.len(), "one server line per relay");
    out
}

#[test]
fn the_shipped_haproxy_configuration_is_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    let cert = rcgen::generate_simple_self_signed(vec!["relay.example.com".to_owned()])
        .expect("certificate");
    std::fs::write(
        certs.join("relay.pem"),
        format!("{}{}", cert.cert.pem(), cert.signing_key.serialize_pem()),
    )
    .expect("write certificate");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        haproxy_config(dir.path(), "", Some(&certs), &[8081, 8082, 8083]),
    )
    .expect("write config");
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("haproxy (tests/deps/system.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which of `nodes` logged the bridge of `tunnel` connecting (the last one, if several).
pub(crate) fn holder(nodes: &[Option<Relay>], tunnel: &str) -> Option<usize> {
    let needle = format!("bridge connected tunnel={tunnel} ");
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
        .filter(|(_, n)| n.proc.log_text().lines().any(|l| l.contains(&needle)))
        .map(|(i, _)| i)
        .next_back()
}

#[test]
fn three_nodes_behind_haproxy() {
    let url = Postgres::shared().new_database();
    let token = crate::create_token(&url, "alice");
    let dir = tempfile::tempdir().expect("temp dir");
    let lb_port = unused_port();
    let public = format!("http://127.0.0.1:{lb_port}");
    let ports: Vec<u16> = (0..3).map(|_| unused_port()).collect();
    let mut nodes: Vec<Option<Relay>> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Some(Relay::start_with_token(
                &format!("127.0.0.1:{port}"),
                &token,
                &[
                    "--database-url",
                    &url,
                    "--public-url",
                    &public,
                    "--node-id",
                    &format!("r{}", i + 1),
                    "--trusted-proxy",
                    "127.0.0.1/32",
                ],
                &[],
            ))
        })
        .collect();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        haproxy_config(dir.path(), &format!("127.0.0.1:{lb_port}"), None, &ports),
    )
    .expect("write config");
    let mut lb = Command::new("haproxy");
    lb.arg("-db").arg("-f").arg(&cfg);
    let _lb = Proc::start(lb, "haproxy");
    let http = BlockingHttp::new();
    e2e::wait::eventually(Duration::from_secs(10), || {
        let r = http
            .try_send(http.client.get(format!("{public}/healthz")))
            .ok()?;
        (r.status == 200).then_some(())
    })
    .expect("HAProxy answering");

    // Six tunnels through HAProxy: each bridge on one node, spread over the nodes.
    let names: Vec<String> = (1..=6).map(|i| format!("lb-tunnel-{i}")).collect();
    let mut bridges: Vec<e2e::Bridge> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            BridgeOpts {
                piped_stdin: i == 0,
                ..BridgeOpts::default()
            }
            .via_url(&public, &token)
            .name(name)
            .args(&["--auth", "oauth"])
            .start()
        })
        .collect();
    let holders: Vec<usize> = names
        .iter()
        .map(|n| {
            e2e::wait::eventually(Duration::from_secs(10), || holder(&nodes, n))
                .unwrap_or_else(|| panic!("no node holds {n}"))
        })
        .collect();
    let mut used = holders.clone();
    used.sort_unstable();
    used.dedup();
    assert!(
        used.len() >= 2,
        "the tunnels spread over the nodes: {holders:?}"
    );

    // An authorization of the first tunnel through HAProxy: the consent shown in its
    // bridge's terminal, approved there, the page and the token endpoint wherever HAProxy
    // sends them.
    let resource = format!("{public}/{}/mcp", names[0]);
    crate::mint_grant(&url, &token, &names[0], &resource, &[]);
    let started = crate::authorize(&http, &public, &resource);
    bridges[0].proc.expect_log(
        "Access request for this tunnel",
        Duration::from_secs(10),
        "the bridge prompted",
    );
    bridges[0].proc.write_line(&started.code);
    let auth_code = started.finished_at(&http, &public);
    let access = crate::exchange(&http, &public, &auth_code);
    let mcp = format!("{public}/{}/mcp", names[0]);
    assert_eq!(crate::initialize(&http, &mcp, &access), 200);

    // The node holding it dies: the bridge reconnects through HAProxy to another node,
    // and the same token works there.
    let dead = holders[0];
    let killed = nodes[dead].take().expect("the holder");
    e2e::process::signal(killed.proc.pid(), libc::SIGKILL);
    drop(killed);
    let moved = e2e::wait::eventually(Duration::from_secs(20), || {
        holder(&nodes, &names[0]).filter(|&n| n != dead)
    })
    .expect("the bridge back on another node");
    assert_ne!(moved, dead);
    let answered = e2e::wait::eventually(Duration::from_secs(20), || {
        (crate::initialize(&http, &mcp, &access) == 200).then_some(())
    });
    assert!(
        answered.is_some(),
        "the tunnel answers through HAProxy again"
    );

    // The node comes back: HAProxy sends the tunnel's requests to it again, it asks for
    // the tunnel, the other node hands the bridge over, and it reconnects there.
    let back = Relay::start_with_token(
        &format!("127.0.0.1:{}", ports[dead]),
        &token,
        &[
            "--database-url",
            &url,
            "--public-url",
            &public,
            "--node-id",
            &format!("r{}", dead + 1),
            "--trusted-proxy",
            "127.0.0.1/32",
        ],
        &[],
    );
    let needle = format!("bridge connected tunnel={} ", names[0]);
    let returned = e2e::wait::eventually(Duration::from_secs(60), || {
        // Requests keep coming: they are what moves the tunnel back.
        let status = crate::initialize(&http, &mcp, &access);
        (back.proc.log_text().contains(&needle) && status == 200).then_some(())
    });
    assert!(
        returned.is_some(),
        "the tunnel back on its node:\n{}",
        back.proc.log_text()
    );
    let holder_log = nodes[moved].as_ref().expect("alive").proc.log_text();
    assert!(
        holder_log.contains("handing the tunnel over"),
        "{holder_log}"
    );

    // The tunnel's desktop goes offline, then its node dies: another node answers it
    // offline (initialize from its last snapshot), from the database.
    drop(bridges.remove(0));
    back.proc.expect_log(
        "bridge disconnected",
        Duration::from_secs(10),
        "the bridge gone from its node",
    );
    e2e::process::signal(back.proc.pid(), libc::SIGKILL);
    drop(back);
    let offline = e2e::wait::eventually(Duration::from_secs(40), || {
        (crate::initialize(&http, &mcp, &access) == 200).then_some(())
    });
    assert!(
        offline.is_some(),
        "the tunnel answered offline by a node that never held it"
    );
    bridges.truncate(0);
}

/// `deploy/cluster/compose.yaml` as JSON (python3-yaml reads it; `<<` merges resolved).
fn compose() -> serde_json::Value {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(repo_root().join("deploy/cluster/compose.yaml"))
        .output()
        .expect("python3 (tests/deps/system.sh installs python3-yaml)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn the_compose_kit_runs_three_nodes_on_one_database_behind_haproxy() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    let mut ids = Vec::new();
    for name in ["relay1", "relay2", "relay3"] {
        let env = &services[name]["environment"];
        for key in [
            "RELAY_DATABASE_URL",
            "RELAY_PUBLIC_URL",
            "RELAY_OPERATOR_PASSWORD_FILE",
            "RELAY_TRUSTED_PROXY",
        ] {
            assert_eq!(
                env[key], services["relay1"]["environment"][key],
                "{name}: {key} the same on every node"
            );
        }
        assert!(
            env["RELAY_DATABASE_URL"]
                .as_str()
                .is_some_and(|u| u.starts_with("postgres://") && u.contains("@postgres/")),
            "{env}"
        );
        assert_eq!(env["RELAY_LISTEN"], "0.0.0.0:8080");
        ids.push(env["RELAY_NODE_ID"].as_str().expect("node id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "a node id each");
    // HAProxy's configuration names these services, on the port they listen on.
    let cfg = std::fs::read_to_string(repo_root().join("deploy/cluster/haproxy.cfg"))
        .expect("haproxy.cfg");
    for (i, name) in ["relay1", "relay2", "relay3"].iter().enumerate() {
        assert!(
            cfg.contains(&format!("server r{} {name}:8080 id {}", i + 1, i + 1)),
            "{name} in haproxy.cfg"
        );
    }
    let mounts = services["haproxy"]["volumes"].as_array().expect("volumes");
    assert!(mounts.iter().any(|m| m["source"] == "./haproxy.cfg"));
    assert!(services["postgres"]["healthcheck"].is_object());
}

#[test]
fn a_stopping_node_says_so_on_readyz_before_it_stops() {
    let node = Relay::start(&["--drain-delay-secs", "2"]);
    let base = format!("http://{}", node.listen_addr());
    let http = BlockingHttp::new();
    assert_eq!(http.get(&format!("{base}/readyz"), &[]).status, 200);
    node.proc.terminate();
    // Taken out of the balancer while it still serves.
    let draining = e2e::wait::eventually(Duration::from_secs(10), || {
        let ready = http
            .try_send(http.client.get(format!("{base}/readyz")))
            .ok()?;
        (ready.status == 503).then_some(())
    });
    assert!(draining.is_some(), "/readyz answers 503 once SIGTERM came");
    let health = http.get(&format!("{base}/healthz"), &[]);
    assert_eq!(health.status, 200, "still serving during the delay");
    let mut node = node;
    assert!(
        node.proc.wait_exit(Duration::from_secs(20)).is_some(),
        "stops after the delay"
    );
}
