//! Desktop notifications when something waits for the owner (a held tool call, an OAuth
//! consent): `notify-send` on Linux and the BSDs, `osascript` on macOS, a PowerShell balloon
//! on Windows; nothing where none is installed. Names in them come from the network: they
//! are made printable, cut short, and passed as arguments (never through a shell or as
//! markup).

use std::process::{Command, Stdio};

/// Longest text of a notification.
const MAX_TEXT: usize = 200;

/// Announces `body` under `title`, without waiting for the notifier.
pub fn announce(title: &str, body: &str) {
    let title = clean(title);
    let body = clean(body);
    let Some(mut cmd) = notifier(&title, &body) else {
        return;
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        Ok(mut child) => {
            // Reaped beside the bridge; a notifier that hangs holds nothing else.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::debug!("no desktop notification: {e}"),
    }
}

/// Text safe for any notifier: printable, no markup characters, short.
fn clean(s: &str) -> String {
    crate::confirm::printable(s, MAX_TEXT)
        .chars()
        .map(|c| match c {
            '<' | '>' | '&' | '"' | '\'' | '`' | '$' | '\\' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(target_os = "macos")]
fn notifier(title: &str, body: &str) -> Option<Command> {
    // The text goes in as arguments of the script, not into its source.
    let mut c = Command::new("osascript");
    c.args([
        "-e",
        "on run argv",
        "-e",
        "display notification (item 2 of argv) with title (item 1 of argv)",
        "-e",
        "end run",
        title,
        body,
    ]);
    Some(c)
}

#[cfg(windows)]
fn notifier(title: &str, body: &str) -> Option<Command> {
    let script = "Add-Type -AssemblyName System.Windows.Forms; \
        $n = New-Object System.Windows.Forms.NotifyIcon; \
        $n.Icon = [System.Drawing.SystemIcons]::Information; $n.Visible = $true; \
        $n.ShowBalloonTip(10000, $env:BRIDGE_NOTE_TITLE, $env:BRIDGE_NOTE_BODY, 'Info'); \
        Start-Sleep -Seconds 10; $n.Dispose()";
    let mut c = Command::new("powershell");
    c.args(["-NoProfile", "-NonInteractive", "-Command", script])
        .env("BRIDGE_NOTE_TITLE", title)
        .env("BRIDGE_NOTE_BODY", body);
    Some(c)
}

#[cfg(not(any(target_os = "macos", windows)))]
fn notifier(title: &str, body: &str) -> Option<Command> {
    let mut c = Command::new("notify-send");
    c.args(["--app-name=bridge", "--", title, body]);
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_network_lose_markup_and_controls() {
        assert_eq!(
            clean("<b>x</b> & $(rm) `y`\x1b[2J"),
            " b x /b     (rm)  y \u{FFFD}[2J"
        );
        assert!(clean(&"z".repeat(500)).chars().count() <= MAX_TEXT + 1);
    }
}
