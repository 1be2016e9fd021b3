//! Running a relay: the deployment files in `deploy/` checked with the real programs
//! (`relay_config`, `proxies`, `deploy_files`), HTTPS with certificate files and ACME
//! (`tls`), what an operator sees from outside: `/metrics` and the JSON logs
//! (`observability`), the documentation held against the binaries it describes
//! (`docs_reference`), and the throwaway PostgreSQL server of the shared-state tests
//! (`postgres_harness`).
//!
//! nginx, Caddy, sqlite3, python3-yaml, Pebble and PostgreSQL come from Debian
//! (`tests/deps/system.sh`).

mod deploy_files;
mod docs_reference;
mod observability;
mod postgres_harness;
mod proxies;
mod relay_config;
mod test_ca;
mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Proc, Relay, repo_root};

/// A file of `deploy/`.
fn deploy(name: &str) -> PathBuf {
    repo_root().join("deploy").join(name)
}

/// The text of a file of `deploy/`.
fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// Writes `text` to `dir/name`; the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p.to_str().expect("utf-8 path").to_owned()
}

/// Waits until a TCP port on 127.0.0.1 accepts connections.
fn wait_port(port: u16, what: &str, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of a Debian tool, or a panic saying how to install it.
fn tool(path: &str, package: &str) -> String {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run tests/deps/system.sh (apt-get install {package})"
    );
    path.to_owned()
}

/// Runs a command to completion: (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `relay serve` with the example configuration, on `listen`, with a fresh data
/// directory in `dir` and `flags` after the file.
fn relay_from_example(listen: &str, dir: &Path, flags: &[&str]) -> Relay {
    let example = deploy("relay.example.toml");
    let data = dir.join("data");
    let mut args = vec![
        "--config",
        example.to_str().expect("utf-8 path"),
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ];
    args.extend(flags);
    Relay::start_on(listen, &args)
}
