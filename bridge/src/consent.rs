//! OAuth consent in the bridge's terminal: the relay asks (a `ConsentRequest` frame), the
//! bridge shows who asks and where codes would go, and the owner approves by typing the
//! code the consent page shows (or `deny <code>`). `bridge approve <code>` does the same
//! from another terminal or a service.

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use protocol::{ConsentRequest, Frame};
use tokio::sync::mpsc;

/// How long a prompt stays answerable (the relay's consents expire after 10 minutes).
const PROMPT_TTL: Duration = Duration::from_secs(600);

/// Text from the network, made safe for a terminal.
pub fn printable(s: &str) -> String {
    protocol::text::printable(s, 200)
}

fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Consent requests shown in the terminal and not yet answered.
#[derive(Default)]
pub struct Prompts {
    pending: HashMap<String, (String, Instant)>,
}

impl Prompts {
    /// Shows a request and remembers it.
    pub fn show(&mut self, c: &ConsentRequest) {
        self.pending.retain(|_, (_, at)| at.elapsed() < PROMPT_TTL);
        // Shown already (a relay of several nodes shows a reconnected bridge what waits).
        if self.pending.len() >= 100 || self.pending.contains_key(&normalize(&c.code)) {
            return;
        }
        // The code is deliberately not printed: typing it proves the owner is looking at
        // the consent page of this very request (one they started themselves).
        eprintln!(
            "\nAccess request for this tunnel: a client {}; its authorization code would go to {}.\n\
             If you started this from ChatGPT, Claude or another client of yours, type the code \
             the consent page shows and press Enter to approve (or `deny <code>`).",
            printable(&c.client),
            printable(&c.redirect_host)
        );
        self.pending
            .insert(normalize(&c.code), (c.id.clone(), Instant::now()));
    }

    /// Interprets a line typed by the owner; a decision frame if it answers a prompt.
    pub fn on_line(&mut self, line: &str) -> Option<Frame> {
        let line = line.trim();
        let (approve, code) = match line.split_once(char::is_whitespace) {
            Some((verb, rest)) if verb.eq_ignore_ascii_case("deny") => (false, rest),
            Some((verb, rest)) if verb.eq_ignore_ascii_case("approve") => (true, rest),
            _ => (true, line),
        };
        let key = normalize(code);
        if key.is_empty() {
            return None;
        }
        match self.pending.remove(&key) {
            Some((id, at)) if at.elapsed() < PROMPT_TTL => {
                eprintln!(
                    "{} the request with code {}.",
                    if approve { "Approved" } else { "Denied" },
                    code.trim()
                );
                Some(Frame::ConsentDecision { id, approve })
            }
            _ => {
                eprintln!("No pending access request has the code {:?}.", code.trim());
                None
            }
        }
    }
}

/// Lines typed on the bridge's standard input (read on a thread of its own; the channel
/// closes at end of input). Answers to tool calls held for approval (`y CODE`, `n CODE`)
/// are routed to their calls by [`crate::confirm::hub`] instead.
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut buf = String::new();
            loop {
                buf.clear();
                match lock.read_line(&mut buf) {
                    Ok(0) | Err(_) => {
                        crate::confirm::hub().on_closed();
                        break;
                    }
                    Ok(_) => {
                        // Answers to tool calls held for approval go to their calls.
                        if buf.len() <= 1024 && crate::confirm::hub().on_line(&buf) {
                            continue;
                        }
                        if buf.len() <= 1024 && tx.blocking_send(buf.clone()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let mut p = Prompts::default();
        p.show(&ConsentRequest {
            id: "id1".into(),
            code: "ABCD-EFGH".into(),
            client: "x".into(),
            redirect_host: "chatgpt.com".into(),
        });
        assert!(p.on_line("nope").is_none());
        assert_eq!(printable("a\x1b[2J\rb"), "a\u{FFFD}[2J\u{FFFD}b");
        assert_eq!(
            p.on_line(" abcd-efgh \n"),
            Some(Frame::ConsentDecision {
                id: "id1".into(),
                approve: true
            })
        );
        assert!(p.on_line("ABCD-EFGH").is_none(), "answered once");
        p.show(&ConsentRequest {
            id: "id2".into(),
            code: "WXYZ-2345".into(),
            client: "x".into(),
            redirect_host: "h".into(),
        });
        assert_eq!(
            p.on_line("deny WXYZ2345"),
            Some(Frame::ConsentDecision {
                id: "id2".into(),
                approve: false
            })
        );
    }
}
