//! The rest of `deploy/`: `relay.service` read as INI for the sandbox it promises, then
//! `systemd-analyze verify` and `security` (when systemd-analyze exists); `compose.yaml`
//! read as YAML (Debian's python3-yaml) with what it refers to; a lint of the `Dockerfile`
//! (no image is built: that needs a container engine); the guide covering every file; the
//! backup procedure of deploy/GUIDE.md (`sqlite3 relay.db ".backup …"` while the relay
//! runs gives a database another relay serves the same tokens from).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use e2e::{BridgeOpts, Proc, bin, repo_root, unused_port};
use serde_json::{Value, json};

use crate::{deploy, read, run, tool, wait_port, write};

/// A unit file's settings: section → key → values (in order).
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line}"));
        assert!(!section.is_empty(), "{line} outside a section");
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

#[test]
fn the_systemd_unit_is_sandboxed_and_verifies() {
    let text = read("relay.service");
    let unit = ini(&text);
    let service = &unit["Service"];
    let one = |k: &str| -> String {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("relay.service has no {k}="));
        v.last().expect("value").clone()
    };
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("SystemCallArchitectures", "native"),
        ("StateDirectory", "mcp-relay"),
    ] {
        assert_eq!(one(key), value, "relay.service {key}=");
    }
    assert!(
        service["SystemCallFilter"]
            .iter()
            .any(|v| v == "@system-service"),
        "SystemCallFilter=@system-service"
    );
    let families = one("RestrictAddressFamilies");
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
    let user = one("User");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(unit["Install"]["WantedBy"].contains(&"multi-user.target".to_owned()));

    // It runs the relay with the configuration file, whose data_dir is the state
    // directory.
    let exec = one("ExecStart");
    let config = exec
        .strip_prefix("/usr/local/bin/relay serve --config ")
        .unwrap_or_else(|| panic!("ExecStart={exec}"));
    assert_eq!(config, "/etc/mcp-relay/relay.toml");
    assert!(
        read("relay.example.toml").contains("data_dir = \"/var/lib/mcp-relay\""),
        "the example's data_dir is the unit's StateDirectory"
    );

    let analyze = "/usr/bin/systemd-analyze";
    if !Path::new(analyze).exists() {
        eprintln!("systemd-analyze is not installed: only the INI checks ran");
        return;
    }
    // `verify` checks the binary exists: point ExecStart at the one built here.
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = bin("relay");
    let local = text.replace("/usr/local/bin/relay", relay.to_str().expect("utf-8 path"));
    let unit_file = write(dir.path(), "relay.service", &local);
    let (ok, out) = run(Command::new(analyze).args(["verify", &unit_file]));
    assert!(ok, "systemd-analyze verify:\n{out}");
    assert!(
        !out.contains("relay.service"),
        "systemd-analyze verify complains about the unit:\n{out}"
    );
    let (ok, out) = run(Command::new(analyze).args([
        "security",
        "--offline=yes",
        "--threshold=20",
        &unit_file,
    ]));
    if out.contains("unrecognized option") {
        eprintln!("this systemd-analyze has no offline security check");
        return;
    }
    assert!(
        ok,
        "systemd-analyze security: exposure above 2.0 (or an error):\n{out}"
    );
}

/// A YAML file as JSON, read by Debian's python3-yaml.
fn yaml(path: &Path) -> Value {
    let python = tool("/usr/bin/python3", "python3-yaml");
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{} is not valid YAML (or python3-yaml is missing: run tests/deps/system.sh):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// `KEY=value` settings of the Dockerfile's `ENV` instructions (continued lines joined).
fn dockerfile_env(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, args)| args.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// The Dockerfile's instructions: (INSTRUCTION, arguments), continuations joined.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if t.starts_with('#') {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (i, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((i.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_the_relay_and_runs_it_unprivileged() {
    let ins = dockerfile();
    let all = |name: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    // Two stages: a named Rust builder, then the runtime, on the same Debian release.
    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "FROM: {froms:?}");
    let (builder_image, builder) = froms[0]
        .split_once(" AS ")
        .expect("the builder stage is named");
    assert!(builder_image.starts_with("rust:"), "{builder_image}");
    assert!(froms[1].starts_with("debian:"), "{}", froms[1]);
    assert!(
        builder_image.ends_with("-${DEBIAN_RELEASE}")
            && froms[1].starts_with("debian:${DEBIAN_RELEASE}-"),
        "both stages on one Debian release (glibc): {froms:?}"
    );
    // The builder's Rust is at least the workspace's rust-version.
    let args: BTreeMap<&str, &str> = all("ARG")
        .into_iter()
        .filter_map(|a| a.split_once('='))
        .collect();
    let rust = args["RUST_VERSION"];
    let workspace = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let needed = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let minor = |v: &str| -> u32 {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .expect("version")
    };
    assert!(minor(rust) >= minor(needed), "Rust {rust} < {needed}");

    // The build command, and the binary it makes is the one the image runs.
    let runs = all("RUN");
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("cargo build --release -p relay --locked"),
        "{build}"
    );
    let (_, installed) = build
        .split_once("target/release/relay ")
        .expect("the built binary is installed");
    let installed = installed.split_whitespace().next().expect("destination");
    let copy = all("COPY")
        .into_iter()
        .find(|c| c.starts_with("--from="))
        .expect("COPY --from the builder");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(
        parts,
        [
            &format!("--from={builder}"),
            installed,
            "/usr/local/bin/relay"
        ][..]
    );
    let entry = all("ENTRYPOINT");
    assert_eq!(entry, ["[\"/usr/local/bin/relay\"]"]);
    assert_eq!(all("CMD").last().copied(), Some("[\"serve\"]"));

    // Unprivileged, with the data volume, the ports and a health check.
    let user = all("USER").last().copied().expect("USER");
    let uid = user.split(':').next().expect("uid");
    assert!(uid != "root" && uid != "0", "USER {user}");
    let env = dockerfile_env(&ins);
    assert_eq!(env["RELAY_DATA_DIR"], "/data");
    assert!(all("VOLUME").iter().any(|v| v.contains("\"/data\"")));
    let runtime_setup = runs
        .iter()
        .find(|r| r.contains("useradd"))
        .expect("useradd");
    assert!(
        runtime_setup.contains(&format!("--uid {uid}")),
        "{runtime_setup}"
    );
    assert!(
        runtime_setup.contains("-o relay -g relay -m 0700 /data"),
        "{runtime_setup}"
    );
    let exposed: Vec<&str> = all("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&"443") && exposed.contains(&"8080"),
        "{exposed:?}"
    );
    let listen_port = env["RELAY_LISTEN"].rsplit(':').next().expect("port");
    assert!(exposed.contains(&listen_port));
    let health = all("HEALTHCHECK").last().copied().expect("HEALTHCHECK");
    assert!(
        health.contains("curl") && health.contains("$HEALTHCHECK_URL"),
        "{health}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("install") && r.contains("curl"))
    );
    assert_eq!(
        env["HEALTHCHECK_URL"],
        format!("http://127.0.0.1:{listen_port}/healthz")
    );

    // The build context (the repository root) leaves out build outputs.
    let ignore = read("Dockerfile.dockerignore");
    for path in ["target", ".git", ".test-deps"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            "{path} in the context"
        );
    }
}

#[test]
fn compose_builds_the_image_and_mounts_the_configuration_and_the_data() {
    let compose = yaml(&deploy("compose.yaml"));
    let relay = &compose["services"]["relay"];
    assert!(relay.is_object(), "services.relay: {compose}");

    // The build refers to this Dockerfile, from the repository root.
    let context = deploy("").join(relay["build"]["context"].as_str().expect("context"));
    let dockerfile = context.join(relay["build"]["dockerfile"].as_str().expect("dockerfile"));
    assert_eq!(
        dockerfile.canonicalize().expect("the Dockerfile exists"),
        deploy("Dockerfile").canonicalize().expect("Dockerfile")
    );
    assert_eq!(
        context.canonicalize().expect("context"),
        repo_root().canonicalize().expect("root")
    );

    let env = &relay["environment"];
    let config_path = env["RELAY_CONFIG"].as_str().expect("RELAY_CONFIG");
    let data_dir = env["RELAY_DATA_DIR"].as_str().expect("RELAY_DATA_DIR");
    let volumes = relay["volumes"].as_array().expect("volumes");
    let config_mount = volumes
        .iter()
        .find(|v| v["target"] == config_path)
        .unwrap_or_else(|| panic!("nothing mounted at {config_path}: {volumes:?}"));
    assert_eq!(config_mount["type"], "bind");
    assert_eq!(config_mount["read_only"], true);
    assert_eq!(config_mount["bind"]["create_host_path"], false);
    // The file mounted is a copy of the example, as deploy/GUIDE.md says.
    let source = config_mount["source"].as_str().expect("source");
    assert_eq!(source, "./relay.toml");
    assert!(read("GUIDE.md").contains("cp deploy/relay.example.toml deploy/relay.toml"));
    let data_mount = volumes
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.ends_with(&format!(":{data_dir}")))
        .unwrap_or_else(|| panic!("no volume at {data_dir}: {volumes:?}"));
    let volume = data_mount.split(':').next().expect("volume name");
    assert!(
        compose["volumes"].get(volume).is_some(),
        "volume {volume} declared"
    );

    // The port the relay listens on is published, and the health check asks it.
    let listen = env["RELAY_LISTEN"].as_str().expect("RELAY_LISTEN");
    let port = listen.rsplit(':').next().expect("port");
    let ports: Vec<&str> = relay["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{ports:?} publish {port}"
    );
    let health = env["HEALTHCHECK_URL"].as_str().expect("HEALTHCHECK_URL");
    assert!(
        health.ends_with(&format!("127.0.0.1:{port}/healthz")),
        "{health}"
    );
    assert_eq!(relay["restart"], "unless-stopped");
    assert!(
        relay["security_opt"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("no-new-privileges:true")))
    );
}

#[test]
fn the_guide_covers_every_deploy_file() {
    let guide = read("GUIDE.md");
    for entry in std::fs::read_dir(deploy("")).expect("deploy/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_str().expect("utf-8 name");
        if name == "GUIDE.md" {
            continue;
        }
        assert!(
            guide.contains(&format!("deploy/{name}")),
            "GUIDE.md never mentions deploy/{name}"
        );
    }
    for topic in [
        "sqlite3",
        ".backup",
        "relay token create",
        "ChatGPT",
        "Claude",
        "--config",
        "acme",
        "AAAA",
    ] {
        assert!(guide.contains(topic), "GUIDE.md does not cover {topic}");
    }
}

#[test]
fn an_online_sqlite_backup_restores_the_tokens() {
    let sqlite3 = tool("/usr/bin/sqlite3", "sqlite3");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let relay_cli = |args: &[&str], data: &Path| {
        let out = Command::new(bin("relay"))
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .output()
            .expect("relay");
        assert!(out.status.success(), "relay {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let token = relay_cli(&["token", "create", "laptop"], &data);

    // `relay serve` on a data directory, once it listens: the process and its port.
    let serve = |data: &Path| {
        let port = unused_port();
        let mut cmd = Command::new(bin("relay"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data);
        let relay = Proc::start(cmd, "relay");
        wait_port(port, "relay", &relay);
        (relay, port)
    };

    // The relay runs (with the WAL open) while the backup is taken.
    let (relay, _) = serve(&data);
    let backup = dir.path().join("backup.db");
    let (ok, out) = run(Command::new(&sqlite3)
        .arg(data.join("relay.db"))
        .arg(format!(".backup '{}'", backup.display())));
    assert!(ok, "sqlite3 .backup: {out}");
    drop(relay);

    // Restored into a new data directory, it holds the token, which a relay accepts.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).expect("dir");
    std::fs::copy(&backup, restored.join("relay.db")).expect("copy");
    let list = relay_cli(&["token", "list"], &restored);
    assert!(list.starts_with("laptop\tactive"), "{list}");
    let (_relay, port) = serve(&restored);
    let bridge = BridgeOpts::default()
        .via_url(&format!("http://127.0.0.1:{port}"), &token)
        .name("restored")
        .start();
    assert!(
        bridge.mcp_url.ends_with("/restored/mcp"),
        "{}",
        bridge.mcp_url
    );
}
