//! The pinned third-party helpers (`tests/deps/env.sh`) and the client scripts of
//! `tests/clients/` run against a bridge: each prints a JSON summary on its last line.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::Value;

use crate::bridge::Bridge;
use crate::process::repo_root;

/// Paths of the pinned third-party test helpers (from `tests/deps/env.sh`).
pub struct Deps {
    vars: HashMap<String, String>,
}

impl Deps {
    /// Reads the helper paths; panics with instructions when they are not installed.
    pub fn get() -> Self {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/deps/env.sh"))
            .output()
            .expect("bash");
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        assert_eq!(
            vars.get("TEST_DEPS_READY").map(String::as_str),
            Some("1"),
            "the pinned test helpers are missing: run tests/deps/install.sh"
        );
        Self { vars }
    }

    /// One variable (e.g. `NODE22`, `PY_SDK`, `CONFORMANCE_JS`).
    pub fn var(&self, k: &str) -> String {
        self.vars
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} is not set by tests/deps/env.sh"))
    }

    /// Path of a client script under `tests/clients`.
    pub fn client(&self, name: &str) -> PathBuf {
        repo_root().join("tests/clients").join(name)
    }
}

/// The pinned helpers, read once per test binary.
pub fn deps() -> &'static Deps {
    static DEPS: OnceLock<Deps> = OnceLock::new();
    DEPS.get_or_init(Deps::get)
}

/// Waits for this test binary's turn to run a heavy client (a conformance suite: a burst of
/// sessions and a Node process); the turn lasts as long as the guard.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cmd` whatever its exit status: its output, and the JSON object on the last line
/// of its stdout that starts with `{` (a panic with the output when there is none).
pub fn summary_of(cmd: &mut Command) -> (Output, Value) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let summary = last_json(cmd, &out);
    (out, summary)
}

/// The JSON object on the last line of `out`'s stdout that starts with `{`; panics (with
/// the output) when there is none.
fn last_json(cmd: &Command, out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{cmd:?} printed no JSON summary ({e}):\nstdout:\n{stdout}\nstderr:\n{stderr}")
    })
}

/// Runs `cmd`; its output, and whether it succeeded as `succeed` says it should (else a
/// panic with its output).
fn run_expecting(cmd: &mut Command, succeed: bool) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success() == succeed,
        "{cmd:?} {} ({}):\nstdout:\n{}\nstderr:\n{}",
        if succeed {
            "failed"
        } else {
            "was expected to fail"
        },
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command and returns the JSON object on the last line of its stdout, panicking
/// (with its output) if it fails.
pub fn run_json(cmd: &mut Command) -> Value {
    let out = run_expecting(cmd, true);
    last_json(cmd, &out)
}

/// Runs a command that is expected to fail: its JSON summary (the last JSON line of its
/// stdout); panics if it succeeds or prints none.
pub fn run_json_failing(cmd: &mut Command) -> Value {
    let out = run_expecting(cmd, false);
    last_json(cmd, &out)
}

/// A command running `program` with `args`, carrying the bridge's bearer token (if any) in
/// `MCP_BEARER`, as every client script expects.
pub fn client<S: AsRef<OsStr>>(bridge: &Bridge, program: impl AsRef<OsStr>, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match &bridge.bearer {
        Some(t) => cmd.env("MCP_BEARER", t),
        None => cmd.env_remove("MCP_BEARER"),
    };
    cmd
}

/// The command running `tests/clients/<name>` under `interpreter` (a [`Deps`] variable,
/// or `bash`) with `args`, for `bridge`.
pub fn script(bridge: &Bridge, interpreter: &str, name: &str, args: &[&str]) -> Command {
    let program = match interpreter {
        "bash" => "bash".to_owned(),
        var => deps().var(var),
    };
    let mut cmd = client(bridge, program, &[deps().client(name).as_os_str()]);
    cmd.args(args);
    cmd
}

/// Runs a client script and returns its JSON summary; panics if it fails.
pub fn run_script(bridge: &Bridge, interpreter: &str, name: &str, args: &[&str]) -> Value {
    run_json(&mut script(bridge, interpreter, name, args))
}

/// Runs a client script that is expected to fail: its JSON summary.
pub fn run_script_failing(bridge: &Bridge, interpreter: &str, name: &str, args: &[&str]) -> Value {
    run_json_failing(&mut script(bridge, interpreter, name, args))
}

/// The strings of a JSON array (panics with the whole value otherwise).
pub fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| panic!("not a string: {x}")))
        .collect()
}

/// The command of `tests/clients/tools_server.py` (plain `python3`) serving `spec`: its
/// `serverInfo`, optional `instructions`, `tools`, and what a call answers (`"ok"`, or
/// `"arguments"`: the call's arguments as JSON).
pub fn tools_server(spec: &Value) -> Vec<String> {
    vec![
        "python3".into(),
        repo_root()
            .join("tests/clients/tools_server.py")
            .display()
            .to_string(),
        spec.to_string(),
    ]
}
