//! `tests/clients/py_oauth.py`, the Python SDK's OAuth client: its events on stdout, what
//! the person at the browser does on its stdin.

use std::process::Command;
use std::time::Duration;

use e2e::Proc;
use e2e::clients::deps;
use serde_json::Value;

/// A running `py_oauth.py`.
pub(crate) struct PyOAuth {
    proc: Proc,
}

impl PyOAuth {
    /// Starts the client on `mcp_url` with this redirect URI; with `pause`, it waits for
    /// `resume` after its first phase.
    pub(crate) fn start(mcp_url: &str, redirect: &str, pause: bool) -> Self {
        let mut cmd = Command::new(deps().var("PY_SDK"));
        cmd.arg(deps().client("py_oauth.py"))
            .arg(mcp_url)
            .args(["--redirect-uri", redirect]);
        if pause {
            cmd.arg("--pause");
        }
        Self {
            proc: Proc::start_piped(cmd, "py_oauth"),
        }
    }

    /// Its stderr so far.
    pub(crate) fn log(&self) -> String {
        self.proc.log_text()
    }

    /// The next line it prints, as JSON; panics after a minute without one.
    pub(crate) fn next_event(&mut self) -> Value {
        let line = self
            .proc
            .next_line(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("py_oauth.py said nothing more; stderr:\n{}", self.log()));
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"))
    }

    /// The next event, which must be `name` (`{"event": name, …}`).
    pub(crate) fn event(&mut self, name: &str) -> Value {
        let v = self.next_event();
        assert_eq!(
            v["event"],
            name,
            "py_oauth.py: {v}\nstderr:\n{}",
            self.log()
        );
        v
    }

    /// Writes a line to its stdin (`poll`, `password PW`, `resume`, …).
    pub(crate) fn send(&mut self, line: &str) {
        self.proc.write_line(line);
    }

    /// Waits for the summary (the last line) and the exit; asserts the run succeeded, or
    /// returns why it failed.
    pub(crate) fn try_finish(mut self) -> Result<Value, String> {
        let mut last = String::new();
        while let Some(line) = self.proc.next_line(Duration::from_secs(90)) {
            last = line;
        }
        let status = self.proc.wait_exit(Duration::from_secs(90));
        let v: Value = serde_json::from_str(&last)
            .map_err(|_| format!("py_oauth.py: {last}\nstderr:\n{}", self.log()))?;
        if status == Some(0) && v["ok"] == true {
            Ok(v)
        } else {
            Err(format!(
                "py_oauth.py failed: {}\nstderr:\n{}",
                v["error"],
                self.log()
            ))
        }
    }

    /// [`PyOAuth::try_finish`], panicking when the run failed.
    pub(crate) fn finish(self) -> Value {
        self.try_finish().unwrap_or_else(|e| panic!("{e}"))
    }
}
