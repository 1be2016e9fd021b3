//! The `relay` binary on PostgreSQL: a node serving bridges whose tokens the commands
//! created in the database, commands acting on a running node through it, a second node
//! refused for another public URL, and `relay db copy`.

use std::process::{Command, Output};
use std::time::Duration;

use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Relay, bin};

/// `relay ARGS` to completion.
fn relay(args: &[&str]) -> Output {
    Command::new(bin("relay"))
        .args(args)
        .env_remove("RELAY_DATA_DIR")
        .env_remove("RELAY_DATABASE_URL")
        .output()
        .expect("run relay")
}

/// `relay ARGS`, which must succeed: its standard output.
fn relay_ok(args: &[&str]) -> String {
    let out = relay(args);
    assert!(
        out.status.success(),
        "relay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_node_on_postgres_serves_the_tokens_the_commands_stored() {
    let url = Postgres::shared().new_database();
    let token = relay_ok(&["token", "create", "alice", "--database-url", &url])
        .trim()
        .to_owned();
    assert!(token.starts_with("brt_"), "{token}");

    // The token the command stored lets a bridge in; the name is claimed in PostgreSQL.
    let node = Relay::start_with_token(
        "127.0.0.1:0",
        &token,
        &["--database-url", &url, "--node-id", "node-a", "--metrics"],
        &[],
    );
    let log = node.proc.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("relay listening"))
        .expect("listening line");
    assert!(
        line.contains("node-a") && line.contains("PostgreSQL at postgres://"),
        "{line}"
    );
    let bridge = node.bridge(BridgeOpts::default().name("pg-files").no_auth());
    node.proc
        .expect_log("pg-files", Duration::from_secs(10), "the bridge's tunnel");
    let log = node.proc.log_text();
    let connected = log
        .lines()
        .find(|l| l.contains("bridge connected"))
        .expect("a bridge connected line");
    assert!(connected.starts_with("node=node-a "), "{connected}");
    let list = relay_ok(&["token", "list", "--database-url", &url]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice\tactive\t") && l.contains("pg-files")),
        "{list}"
    );
    let answer = e2e::http::BlockingHttp::new().get(&format!("{}/metrics", node.base), &[]);
    let metrics = String::from_utf8_lossy(&answer.body);
    assert!(
        metrics.contains("mcp_relay_node_info{node=\"node-a\"} 1"),
        "{metrics}"
    );
    assert!(
        relay_ok(&["logs", "--database-url", &url, "--json"])
            .lines()
            .count()
            < 1000
    );

    // Revoked through the database by a command: the node disconnects the bridge.
    relay_ok(&["token", "revoke", "alice", "--database-url", &url]);
    node.proc.expect_log(
        "its bridge token was revoked",
        Duration::from_secs(10),
        "the node seeing the revocation",
    );
    drop(bridge);
    assert!(
        relay_ok(&["name", "release", "pg-files", "--database-url", &url]).contains("released")
    );

    // A second node for another public URL is refused before it serves anything.
    let other = relay(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--public-url",
        "https://elsewhere.example",
        "--bridge-token",
        &token,
    ]);
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("belongs to the relay at"), "{err}");
    assert!(!err.contains("password"), "{err}");
}

#[test]
fn db_copy_moves_a_sqlite_relay_into_postgres() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let token = relay_ok(&["token", "create", "bob", "--data-dir", data])
        .trim()
        .to_owned();
    let url = Postgres::shared().new_database();
    let out = relay_ok(&["db", "copy", "--data-dir", data, "--database-url", &url]);
    assert!(out.contains("bridge_tokens\t1"), "{out}");
    let list = relay_ok(&["token", "list", "--database-url", &url]);
    assert!(list.starts_with("bob\tactive"), "{list}");
    // The copied token works on a node that has only the database.
    let node = Relay::start_with_token(
        "127.0.0.1:0",
        &token,
        &["--database-url", &url, "--log-format", "json"],
        &[],
    );
    let _bridge = node.bridge(BridgeOpts::default().name("copied").no_auth());
    node.proc
        .expect_log("copied", Duration::from_secs(10), "the bridge's tunnel");
    // In JSON every line names its node (the host's name by default).
    let lines: Vec<serde_json::Value> = node
        .proc
        .log_text()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2);
    for line in &lines {
        assert!(
            line["node"].as_str().is_some_and(|n| !n.is_empty()),
            "{line}"
        );
    }
    let again = relay(&["db", "copy", "--data-dir", data, "--database-url", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds relay state"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
