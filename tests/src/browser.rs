//! The browser driver: a `tests/clients/*_browser.mjs` script driving Debian's chromium
//! (headless, through the pinned playwright-core) against a page the relay serves, and
//! reporting one JSON line per step.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Deps, repo_root};

/// Sends SIGKILL to a process group this test created (with `process_group(0)`).
pub fn kill_group(pid: u32) {
    // SAFETY: signalling a process group the test created.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

/// Reads a child's stdout lines on a thread.
pub fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A driver script running in the background, and its JSON lines.
pub struct Browser {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    wait: Duration,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts `tests/clients/<script>` in `mode` on `url` with more arguments; the script
    /// gives up after `timeout_secs`, the test waits `wait` for each line.
    pub fn start(
        script: &str,
        mode: &str,
        url: &str,
        args: &[&str],
        timeout_secs: u32,
        wait: Duration,
    ) -> Self {
        let deps = Deps::get();
        let node_modules = PathBuf::from(deps.var("TS_SDK_DIR"));
        assert!(
            node_modules.join("playwright-core/package.json").exists(),
            "playwright-core is not in {}: run tests/deps/install.sh",
            node_modules.display()
        );
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: run tests/deps/system.sh (Debian's chromium)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = dir.path().join("driver.err");
        let mut cmd = Command::new(deps.var("NODE22"));
        cmd.arg(repo_root().join("tests/clients").join(script))
            .arg(mode)
            .arg(url)
            .args(args)
            .args(["--timeout", &timeout_secs.to_string()])
            .env("TS_SDK_DIR", &node_modules)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("driver stderr"));
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().expect("start the browser driver");
        let lines = line_reader(&mut child);
        Self {
            child,
            lines,
            stderr,
            wait,
            _dir: dir,
        }
    }

    /// The next JSON line; panics with the driver's stderr on timeout or a failure report.
    pub fn report(&mut self) -> Value {
        let line = self.lines.recv_timeout(self.wait).unwrap_or_else(|e| {
            panic!(
                "the browser driver said nothing more ({e}); stderr: {}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            )
        });
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("driver printed a non-JSON line ({e}): {line}"));
        assert_ne!(
            v["ok"],
            json!(false),
            "the browser driver failed: {v:#}\nstderr: {}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        v
    }

    /// The next line, which must be the event `name`.
    pub fn event(&mut self, name: &str) -> Value {
        let v = self.report();
        assert_eq!(v["event"], json!(name), "expected the {name} report: {v:#}");
        v
    }

    /// The final report (`"ok": true`), then the driver's exit.
    pub fn finish(mut self) -> Value {
        let v = self.report();
        assert_eq!(v["ok"], json!(true), "expected the final report: {v:#}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the driver exited with {status}");
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the browser driver did not exit after its report");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
