//! The browser driver: a `tests/clients/*_browser.mjs` script driving Debian's chromium
//! (headless, through the pinned playwright-core) against a page the relay serves, and
//! reporting one JSON line per step.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::deps;
use crate::process::{Proc, repo_root};

/// A driver script running in the background, and its JSON lines.
pub struct Browser {
    proc: Proc,
    wait: Duration,
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
        let deps = deps();
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
        let mut cmd = Command::new(deps.var("NODE22"));
        cmd.arg(repo_root().join("tests/clients").join(script))
            .arg(mode)
            .arg(url)
            .args(args)
            .args(["--timeout", &timeout_secs.to_string()])
            .env("TS_SDK_DIR", &node_modules)
            .env("CHROMIUM", &chromium);
        Self {
            proc: Proc::start(cmd, "driver"),
            wait,
        }
    }

    /// The next JSON line; panics with the driver's stderr on timeout or a failure report.
    pub fn report(&mut self) -> Value {
        let line = self.proc.next_line(self.wait).unwrap_or_else(|| {
            panic!(
                "the browser driver said nothing more; stderr: {}",
                self.proc.log_text()
            )
        });
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("driver printed a non-JSON line ({e}): {line}"));
        assert_ne!(
            v["ok"],
            json!(false),
            "the browser driver failed: {v:#}\nstderr: {}",
            self.proc.log_text()
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
        match self.proc.wait_exit(Duration::from_secs(15)) {
            Some(0) => v,
            Some(code) => panic!("the driver exited with {code}"),
            None => panic!("the browser driver did not exit after its report"),
        }
    }
}

/// Where a test keeps a file for people to look at after the run (screenshots):
/// `target/test-artifacts/<name>`, its folder created.
pub fn artifact(name: &str) -> PathBuf {
    let dir = crate::process::repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("target/test-artifacts");
    dir.join(name)
}

/// A response header from a driver report (`headers` with lower-case names), `""` when
/// absent.
pub fn header<'a>(doc: &'a Value, name: &str) -> &'a str {
    doc["headers"][name].as_str().unwrap_or("")
}

/// The frame called `name` in the report of a driver's `frame` mode, which must also show
/// its `control` frame rendered (frames do render in this browser).
pub fn frame<'a>(done: &'a Value, name: &str) -> &'a Value {
    let frames = done["frames"].as_array().expect("frames");
    let named = |name: &str| {
        frames
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no frame {name}: {done:#}"))
    };
    assert!(
        named("control")["text"]
            .as_str()
            .is_some_and(|t| t.contains("control frame rendered")),
        "frames render in this browser: {done:#}"
    );
    named(name)
}

/// The document the browser fetched from `url`, from a driver's report.
pub fn document<'a>(done: &'a Value, url: &str) -> &'a Value {
    done["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["url"] == url)
        .unwrap_or_else(|| panic!("the browser did not fetch {url}: {done:#}"))
}

/// Of the forms `forms` (from a driver's report), the `field` (`type`, `name`, `text`) of
/// every entry in their `list` (`inputs`, `buttons`).
pub fn form_values<'a>(
    forms: impl IntoIterator<Item = &'a Value>,
    list: &str,
    field: &str,
) -> Vec<&'a str> {
    forms
        .into_iter()
        .flat_map(|f| f[list].as_array().into_iter().flatten())
        .filter_map(|entry| entry[field].as_str())
        .collect()
}
