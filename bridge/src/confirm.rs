//! Approval of tool calls in the bridge's terminal (`confirm_tools`): the text shown for a
//! held call, the owner's answers (`y CODE` / `n CODE`, one short code per call so that
//! concurrent prompts cannot be confused), and whether there is a terminal to ask at all.
//!
//! One process may run several tunnels, each with its own core, and has one standard
//! input: the [`hub`] hands out codes unique in the process and routes each answer to the
//! driver whose call has that code. Whatever reads standard input passes every line to
//! [`Hub::on_line`] (the consent prompts do) and reports its end with [`Hub::on_closed`].
//! The owner's dashboard (`crate::desk`) is the other way to answer: it lists the
//! [`Hub::waiting`] calls and answers with [`Hub::answer`]. While it runs, a bridge
//! without a usable standard input (a service, `</dev/null`) holds calls for it instead of
//! declining them.
//!
//! Everything shown comes from the network (tool names, client names, arguments) and is
//! made safe for a terminal first: control characters, escape sequences and bidirectional
//! overrides are replaced, and the arguments are shown as a short preview next to their
//! SHA-256.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

/// Letters and digits of approval codes (no `0`/`O`, `1`/`I`).
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Length of an approval code.
const CODE_LEN: usize = 4;
/// Characters of the arguments shown in a prompt.
const PREVIEW_CHARS: usize = 160;

/// Something to tell the owner in the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A call waits for approval.
    Ask {
        /// The code to type.
        code: String,
        /// The tool called.
        tool: String,
        /// The client calling it.
        principal: String,
        /// Start of the arguments' JSON.
        preview: String,
        /// Hex SHA-256 of the arguments' JSON.
        digest: String,
        /// How long the call waits.
        timeout: Duration,
    },
    /// The owner approved; the call goes to the server.
    Approved {
        /// The call's code.
        code: String,
        /// The tool.
        tool: String,
    },
    /// The owner declined.
    Declined {
        /// The call's code.
        code: String,
        /// The tool.
        tool: String,
    },
    /// Nobody answered in time: declined.
    Expired {
        /// The call's code.
        code: String,
        /// The tool.
        tool: String,
    },
    /// The call ended before an answer (client cancelled or went away, shutdown).
    Withdrawn {
        /// The call's code.
        code: String,
        /// The tool.
        tool: String,
        /// Why.
        why: &'static str,
    },
    /// A call needs approval but there is no terminal to ask: declined.
    NoTerminal {
        /// The tool.
        tool: String,
    },
    /// An answer with a code no held call has.
    Unknown {
        /// The code typed.
        code: String,
    },
    /// `y` or `n` without a code while calls wait.
    CodeMissing,
}

impl Notice {
    /// The text shown in the terminal.
    pub fn render(&self) -> String {
        match self {
            Notice::Ask {
                code,
                tool,
                principal,
                preview,
                digest,
                timeout,
            } => format!(
                "\nTool call waiting for your approval [code {code}]\n  tool:      {}\n  client:    {}\n  arguments: {} (sha256 {})\nType `y {code}` to allow it or `n {code}` to decline it (declined without an answer in {} s).",
                printable(tool, 120),
                printable(principal, 120),
                preview,
                digest.get(..16).unwrap_or(digest),
                timeout.as_secs_f64().round()
            ),
            Notice::Approved { code, tool } => {
                format!(
                    "Allowed the call of {} [code {code}].",
                    printable(tool, 120)
                )
            }
            Notice::Declined { code, tool } => {
                format!(
                    "Declined the call of {} [code {code}].",
                    printable(tool, 120)
                )
            }
            Notice::Expired { code, tool } => format!(
                "No answer for the call of {} [code {code}] in time: declined.",
                printable(tool, 120)
            ),
            Notice::Withdrawn { code, tool, why } => format!(
                "The call of {} [code {code}] no longer waits: {why}.",
                printable(tool, 120)
            ),
            Notice::NoTerminal { tool } => format!(
                "Declined a call of {}: it needs your approval, but the bridge has no terminal to ask in and no dashboard (--no-dashboard). Run `bridge run` in a terminal, or with its dashboard, to approve such calls.",
                printable(tool, 120)
            ),
            Notice::Unknown { code } => {
                format!("No tool call waits with the code {code:?}.")
            }
            Notice::CodeMissing => {
                "Type the call's code too, e.g. `y K7QX` (each waiting call shows its own)."
                    .to_owned()
            }
        }
    }
}

pub use protocol::text::printable;

/// The start of the arguments' JSON for a prompt: whitespace runs collapsed, made
/// [`printable`], at most [`PREVIEW_CHARS`] characters.
pub fn preview(args_json: &[u8]) -> String {
    // The raw text may be large: only its start is looked at.
    let head = &args_json[..args_json.len().min(PREVIEW_CHARS * 4 + 4)];
    let text = String::from_utf8_lossy(head);
    let mut collapsed = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !space {
                collapsed.push(' ');
            }
            space = true;
        } else {
            collapsed.push(c);
            space = false;
        }
    }
    let cut = head.len() < args_json.len();
    let mut shown = printable(collapsed.trim(), PREVIEW_CHARS);
    if cut && !shown.ends_with('…') {
        shown.push('…');
    }
    shown
}

/// A fresh approval code not in use (`taken` says which are).
pub fn new_code(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let code: String = crate::random::bytes::<CODE_LEN>()
            .iter()
            .map(|x| CODE_ALPHABET[*x as usize % CODE_ALPHABET.len()] as char)
            .collect();
        if !taken(&code) {
            return code;
        }
    }
}

/// What a line typed in the terminal means for tool-call approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `y CODE` / `n CODE` (also `yes`, `no`, `allow`, `deny`... see [`parse`]).
    Decision {
        /// Allow (`true`) or decline.
        approve: bool,
        /// The code, upper-case.
        code: String,
    },
    /// `y` or `n` alone.
    CodeMissing,
    /// Not about tool calls (perhaps an OAuth consent code).
    Other,
}

/// Reads a line typed by the owner: `y CODE`, `yes CODE`, `n CODE`, `no CODE` (any case).
/// `deny CODE` / `approve CODE` stay with the OAuth consent prompts.
pub fn parse(line: &str) -> Answer {
    let mut words = line.split_whitespace();
    let (Some(verb), code, None) = (words.next(), words.next(), words.next()) else {
        return Answer::Other;
    };
    let approve = match verb.to_ascii_lowercase().as_str() {
        "y" | "yes" => true,
        "n" | "no" => false,
        _ => return Answer::Other,
    };
    match code {
        None => Answer::CodeMissing,
        Some(code) => Answer::Decision {
            approve,
            code: code.to_ascii_uppercase(),
        },
    }
}

/// Whether the bridge's standard input can bring the owner's answers: a terminal, or a
/// pipe (a script answering for the owner). `/dev/null`, a file or a closed input cannot.
pub fn stdin_can_answer() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: isatty and fstat only read the state of descriptor 0 into our buffer.
        unsafe {
            if libc::isatty(0) == 1 {
                return true;
            }
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(0, &mut st) != 0 {
                return false;
            }
            let kind = st.st_mode & libc::S_IFMT;
            kind == libc::S_IFIFO || kind == libc::S_IFSOCK
        }
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// What the terminal (or the dashboard) tells a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalMsg {
    /// The owner answered the call with this code.
    Answer {
        /// The call's code.
        code: String,
        /// Allowed (`true`) or declined.
        approve: bool,
        /// Allowed, and the same tool is allowed for the same client from now on (until
        /// the bridge restarts).
        always: bool,
    },
    /// Standard input ended: nobody can answer any more.
    Closed,
}

/// Routes the owner's answers to the drivers holding the calls.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<HubInner>,
    /// Signalled when a call starts waiting (the dashboard's notifications wait on it).
    started_waiting: tokio::sync::Notify,
}

#[derive(Default)]
struct HubInner {
    closed: bool,
    /// The dashboard runs: it can answer whatever standard input is.
    desk: bool,
    next: u64,
    subscribers: HashMap<u64, mpsc::UnboundedSender<TerminalMsg>>,
    /// Codes of waiting calls, and the subscriber holding each.
    codes: HashMap<String, u64>,
    /// What each waiting call is, for the dashboard.
    waiting: HashMap<String, Waiting>,
}

/// A call waiting for the owner, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Its code.
    pub code: String,
    /// The tunnel it came through.
    pub tunnel: String,
    /// The tool called.
    pub tool: String,
    /// The client calling it.
    pub principal: String,
    /// Its arguments (JSON as the client sent it, at most [`MAX_SHOWN_ARGS`] bytes).
    pub args: String,
    /// Whether the arguments were cut to fit.
    pub args_cut: bool,
    /// When it started waiting.
    pub since: std::time::SystemTime,
    /// How long it waits.
    pub timeout: Duration,
}

/// Most bytes of a held call's arguments kept for the dashboard.
pub const MAX_SHOWN_ARGS: usize = 64 * 1024;

/// The process's hub.
pub fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(Hub::default)
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.locked()
    }

    /// A driver's place at the hub: its answers arrive on the receiver.
    pub fn subscribe(&'static self) -> (Subscription, mpsc::UnboundedReceiver<TerminalMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        if inner.closed {
            let _ = tx.send(TerminalMsg::Closed);
        }
        inner.subscribers.insert(id, tx);
        (Subscription { hub: self, id }, rx)
    }

    /// Whether the owner can answer: the dashboard runs, or standard input is a terminal
    /// or a pipe and has not ended.
    pub fn can_answer(&self) -> bool {
        static PROBE: OnceLock<bool> = OnceLock::new();
        let inner = self.lock();
        inner.desk || (!inner.closed && *PROBE.get_or_init(stdin_can_answer))
    }

    /// The dashboard runs from now on: calls wait for it even without a terminal.
    pub fn open_desk(&self) {
        self.lock().desk = true;
    }

    /// Resolves when a call started waiting since the last time it resolved.
    pub async fn next_waiting(&self) {
        self.started_waiting.notified().await;
    }

    /// The calls waiting for the owner, oldest first.
    pub fn waiting(&self) -> Vec<Waiting> {
        let mut all: Vec<Waiting> = self.lock().waiting.values().cloned().collect();
        all.sort_by_key(|w| w.since);
        all
    }

    /// The owner's answer to the call with `code` from the dashboard; `false` when no
    /// call waits with it (answered already, or gone).
    pub fn answer(&self, code: &str, approve: bool, always: bool) -> bool {
        let mut inner = self.lock();
        inner.waiting.remove(code);
        let Some(sub) = inner.codes.remove(code) else {
            return false;
        };
        inner.subscribers.get(&sub).is_some_and(|tx| {
            tx.send(TerminalMsg::Answer {
                code: code.to_owned(),
                approve,
                always: approve && always,
            })
            .is_ok()
        })
    }

    /// A line typed by the owner; whether it was about tool calls (then it is handled:
    /// routed to its call, or answered with a hint). Other lines are left to the caller
    /// (OAuth consent codes).
    pub fn on_line(&self, line: &str) -> bool {
        let mut inner = self.lock();
        if inner.subscribers.is_empty() {
            return false;
        }
        match parse(line) {
            Answer::Other => false,
            Answer::CodeMissing => {
                if inner.codes.is_empty() {
                    return false;
                }
                eprintln!("{}", Notice::CodeMissing.render());
                true
            }
            Answer::Decision { approve, code } => {
                inner.waiting.remove(&code);
                let sent = inner
                    .codes
                    .remove(&code)
                    .and_then(|sub| inner.subscribers.get(&sub))
                    .is_some_and(|tx| {
                        tx.send(TerminalMsg::Answer {
                            code: code.clone(),
                            approve,
                            always: false,
                        })
                        .is_ok()
                    });
                if !sent {
                    eprintln!("{}", Notice::Unknown { code }.render());
                }
                true
            }
        }
    }

    /// Standard input ended. Without the dashboard nobody can answer any more.
    pub fn on_closed(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        if inner.desk {
            return;
        }
        inner.codes.clear();
        inner.waiting.clear();
        for tx in inner.subscribers.values() {
            let _ = tx.send(TerminalMsg::Closed);
        }
    }
}

/// A driver's registration at the [`Hub`]; dropping it withdraws its codes.
pub struct Subscription {
    hub: &'static Hub,
    id: u64,
}

impl Subscription {
    /// A fresh code for a held call, routed to this subscriber.
    pub fn claim_code(&self) -> String {
        let mut inner = self.hub.lock();
        let code = new_code(|c| inner.codes.contains_key(c));
        inner.codes.insert(code.clone(), self.id);
        code
    }

    /// A fresh code for a held call, routed to this subscriber and shown on the dashboard
    /// as `waiting` (whose `code` is set here).
    pub fn claim_code_for(&self, mut waiting: Waiting) -> String {
        let code = self.claim_code();
        waiting.code = code.clone();
        self.hub.lock().waiting.insert(code.clone(), waiting);
        self.hub.started_waiting.notify_one();
        code
    }

    /// The call with this code no longer waits.
    pub fn release(&self, code: &str) {
        let mut inner = self.hub.lock();
        if inner.codes.get(code) == Some(&self.id) {
            inner.codes.remove(code);
            inner.waiting.remove(code);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        inner.subscribers.remove(&self.id);
        let id = self.id;
        inner.codes.retain(|_, sub| *sub != id);
        let codes = &inner.codes;
        let gone: Vec<String> = inner
            .waiting
            .keys()
            .filter(|c| !codes.contains_key(*c))
            .cloned()
            .collect();
        for c in gone {
            inner.waiting.remove(&c);
        }
    }
}

/// The next message of an optional receiver (pending forever without one, for
/// `select!` branches guarded by `rx.is_some()`).
pub async fn next_msg(
    rx: &mut Option<mpsc::UnboundedReceiver<TerminalMsg>>,
) -> Option<TerminalMsg> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse(" y k7qx \n"),
            Answer::Decision {
                approve: true,
                code: "K7QX".into()
            }
        );
        assert_eq!(
            parse("NO AB2C"),
            Answer::Decision {
                approve: false,
                code: "AB2C".into()
            }
        );
        assert_eq!(parse("y"), Answer::CodeMissing);
        assert_eq!(parse("n\n"), Answer::CodeMissing);
        assert_eq!(parse("K7QX-9M2P"), Answer::Other, "an OAuth consent code");
        assert_eq!(parse("deny K7QX-9M2P"), Answer::Other);
        assert_eq!(parse("y a b"), Answer::Other);
        assert_eq!(parse(""), Answer::Other);
    }

    #[test]
    fn safe_text() {
        assert_eq!(printable("a\x1b[2J\rb", 50), "a\u{FFFD}[2J\u{FFFD}b");
        assert_eq!(printable("x\u{9b}31m", 50), "x\u{FFFD}31m", "C1 CSI");
        assert_eq!(
            printable("ab\u{202E}cd", 50),
            "ab\u{FFFD}cd",
            "bidi override"
        );
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("é漢字", 10), "é漢字");
        let p = preview(b"{\n  \"path\": \"/tmp/x\",\n  \"text\": \"a\\u001b\"\n}");
        assert_eq!(p, r#"{ "path": "/tmp/x", "text": "a\u001b" }"#);
        let big = format!("{{\"t\":\"{}\"}}", "x".repeat(10_000));
        let p = preview(big.as_bytes());
        assert!(
            p.ends_with('…') && p.chars().count() <= PREVIEW_CHARS + 1,
            "{p}"
        );
        // Raw control bytes inside a (malformed) preview are replaced too.
        assert!(!preview(b"{\"a\":\"\x1b]0;x\x07\"}").contains('\x1b'));
    }

    #[test]
    fn hub_routes_answers() {
        let hub: &'static Hub = Box::leak(Box::default());
        assert!(
            !hub.on_line("y ABCD"),
            "no subscriber: left to the consent prompts"
        );
        let (a, mut rx_a) = hub.subscribe();
        let (b, mut rx_b) = hub.subscribe();
        let ca = a.claim_code();
        let cb = b.claim_code();
        assert_ne!(ca, cb);
        assert!(hub.on_line(&format!("y {}", cb.to_lowercase())));
        assert_eq!(
            rx_b.try_recv().unwrap(),
            TerminalMsg::Answer {
                code: cb.clone(),
                approve: true,
                always: false
            }
        );
        assert!(rx_a.try_recv().is_err());
        assert!(hub.on_line(&format!("y {cb}")), "answered once; told so");
        assert!(rx_b.try_recv().is_err());
        assert!(hub.on_line("y"), "a hint while a call waits");
        a.release(&ca);
        assert!(!hub.on_line("n"), "nothing waits");
        assert!(!hub.on_line("K7QX-9M2P"));
        let ca = a.claim_code();
        assert!(hub.on_line(&format!("n {ca}")));
        assert_eq!(
            rx_a.try_recv().unwrap(),
            TerminalMsg::Answer {
                code: ca,
                approve: false,
                always: false
            }
        );
        let cb = b.claim_code();
        drop(b);
        assert!(hub.on_line(&format!("y {cb}")));
        hub.on_closed();
        assert_eq!(rx_a.try_recv().unwrap(), TerminalMsg::Closed);
        assert!(!hub.can_answer());
        let (_c, mut rx_c) = hub.subscribe();
        assert_eq!(rx_c.try_recv().unwrap(), TerminalMsg::Closed);
        drop(a);
    }

    #[test]
    fn the_dashboard_sees_waiting_calls_and_answers_them_past_a_closed_input() {
        let hub: &'static Hub = Box::leak(Box::default());
        hub.open_desk();
        let (a, mut rx) = hub.subscribe();
        let waiting = |tool: &str| Waiting {
            code: String::new(),
            tunnel: "files".into(),
            tool: tool.into(),
            principal: "client".into(),
            args: "{\"path\":\"/tmp\"}".into(),
            args_cut: false,
            since: std::time::SystemTime::now(),
            timeout: Duration::from_secs(120),
        };
        let code = a.claim_code_for(waiting("write"));
        hub.on_closed();
        assert!(hub.can_answer(), "the dashboard still answers");
        assert!(rx.try_recv().is_err(), "nothing is declined");
        let shown = hub.waiting();
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].code.as_str(), shown[0].tool.as_str()),
            (code.as_str(), "write")
        );
        assert!(hub.answer(&code, true, true));
        assert_eq!(
            rx.try_recv().unwrap(),
            TerminalMsg::Answer {
                code: code.clone(),
                approve: true,
                always: true
            }
        );
        assert!(hub.waiting().is_empty());
        assert!(!hub.answer(&code, true, false), "answered once");
        let other = a.claim_code_for(waiting("delete"));
        assert!(hub.answer(&other, false, true));
        assert_eq!(
            rx.try_recv().unwrap(),
            TerminalMsg::Answer {
                code: other,
                approve: false,
                always: false
            },
            "a declined call sets no rule"
        );
        let gone = a.claim_code_for(waiting("move"));
        a.release(&gone);
        assert!(hub.waiting().is_empty());
        drop(a);
    }

    #[test]
    fn codes() {
        let c = new_code(|_| false);
        assert_eq!(c.len(), CODE_LEN);
        assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        let again = new_code(|x| x == c);
        assert_ne!(again, c);
        let text = Notice::Ask {
            code: c.clone(),
            tool: "write\x1b[31m".into(),
            principal: "client".into(),
            preview: "{}".into(),
            digest: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
            timeout: Duration::from_secs(120),
        }
        .render();
        assert!(
            text.contains(&format!("y {c}")) && text.contains("120 s"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        assert!(text.contains("44136fa355b3678a"));
    }
}
