//! The audit log: one JSON line per finished (or refused, declined, cancelled) `tools/call`,
//! appended by a writer thread of its own so the bridge's event loop never waits for the
//! disk.
//!
//! A line holds the time (RFC 3339, UTC), the client (principal), the tool, the SHA-256 of
//! the `arguments` JSON exactly as the client sent it (`null` when absent) — never the
//! arguments themselves —, the outcome, the duration in milliseconds and the protocol
//! revision of the request:
//!
//! ```json
//! {"time":"2026-07-28T10:00:00.123Z","principal":"…","tool":"echo","args_sha256":"…","outcome":"ok","duration_ms":12,"era":"2025-06-18"}
//! ```
//!
//! The file is rotated when the next line would make it larger than the size limit: it
//! becomes `FILE.1`, `FILE.1` becomes `FILE.2` and so on; [`KEEP`] old files are kept. Lines
//! wait in a bounded queue; when it is full (the disk cannot keep up) a line is dropped,
//! counted, reported with a warning, and the writer adds an `audit_records_dropped` line
//! with the count to the log itself.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{error, warn};

/// Old files kept by rotation (`FILE.1` … `FILE.3`).
pub const KEEP: usize = 3;
/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;
/// Longest wait for the writer to finish at shutdown.
const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with a result.
    Ok,
    /// The server answered with a result marked `isError: true`.
    ToolError,
    /// The call was answered with a JSON-RPC error of this code.
    Error(i64),
    /// The policy hides the tool: the call never reached the server.
    Refused,
    /// The owner declined the call (or could not be asked: no terminal).
    Declined,
    /// The client cancelled the call or went away, or the bridge stopped.
    Cancelled,
    /// Nobody answered in time: the owner (confirmation) or the server (call timeout).
    Timeout,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::ToolError => f.write_str("tool_error"),
            Outcome::Error(code) => write!(f, "error:{code}"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Declined => f.write_str("declined"),
            Outcome::Cancelled => f.write_str("cancelled"),
            Outcome::Timeout => f.write_str("timeout"),
        }
    }
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The client.
    pub principal: &'a str,
    /// The tool called.
    pub tool: &'a str,
    /// Hex SHA-256 of the arguments' JSON.
    pub args_sha256: &'a str,
    /// How it ended.
    pub outcome: Outcome,
    /// From the request's arrival to its end.
    pub duration: Duration,
    /// The protocol revision of the request (e.g. `2026-07-28`, `2025-06-18`).
    pub era: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    principal: &'a str,
    tool: &'a str,
    args_sha256: &'a str,
    outcome: String,
    duration_ms: u64,
    era: &'a str,
}

/// Hex SHA-256 of some bytes (the arguments' JSON).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-07-28T10:00:00.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = protocol::time::rfc3339(t);
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!("{}.{millis:03}Z", secs.trim_end_matches('Z'))
}

/// Opens a file for appending, creating it (readable by its owner only) if needed.
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// The audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {}: {source}", path.display())]
pub struct AuditError {
    path: PathBuf,
    source: io::Error,
}

enum Msg {
    Line(Vec<u8>),
    Stop,
}

/// How many records were lost, shared by the senders and the writer.
struct LossCount {
    /// Records lost since the start (queue full, or the disk refused them).
    dropped: AtomicU64,
}

/// Hands records to the writer without waiting; cheap to clone.
#[derive(Clone)]
pub struct AuditSender {
    tx: SyncSender<Msg>,
    lost: Arc<LossCount>,
}

impl fmt::Debug for AuditSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditSender")
    }
}

impl AuditSender {
    /// Queues one record; never blocks. A record that does not fit is counted and
    /// reported (see the module documentation).
    pub fn record(&self, e: &Entry<'_>) {
        let line = Line {
            time: timestamp(SystemTime::now()),
            principal: e.principal,
            tool: e.tool,
            args_sha256: e.args_sha256,
            outcome: e.outcome.to_string(),
            duration_ms: u64::try_from(e.duration.as_millis()).unwrap_or(u64::MAX),
            era: e.era,
        };
        // (A record of plain strings and numbers always serializes.)
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        match self.tx.try_send(Msg::Line(bytes)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.lost.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        dropped = n,
                        "the audit log cannot keep up: {n} records dropped so far"
                    );
                }
            }
        }
    }

    /// Records lost so far.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.lost.dropped.load(Ordering::Relaxed)
    }
}

/// The open audit log and its writer thread; dropping it writes what is queued and
/// stops the writer.
pub struct AuditLog {
    sender: AuditSender,
    done: Option<Receiver<()>>,
}

impl AuditLog {
    /// Opens (creates) the file and starts the writer; `max_bytes` is the rotation size.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, AuditError> {
        let file = open_append(path).map_err(|source| AuditError {
            path: path.to_path_buf(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let lost = Arc::new(LossCount {
            dropped: AtomicU64::new(0),
        });
        let (done_tx, done_rx) = mpsc::channel();
        let mut writer = Writer {
            path: path.to_path_buf(),
            file: Some(BufWriter::new(file)),
            size,
            max_bytes: max_bytes.max(1),
            lost: lost.clone(),
            reported: 0,
            failing: false,
        };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                writer.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(|source| AuditError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            sender: AuditSender { tx, lost },
            done: Some(done_rx),
        })
    }

    /// A handle for queueing records.
    pub fn sender(&self) -> AuditSender {
        self.sender.clone()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Records queued before the stop are written first (the queue is ordered).
        if self.sender.tx.send(Msg::Stop).is_ok()
            && let Some(done) = self.done.take()
            && let Err(RecvTimeoutError::Timeout) = done.recv_timeout(FINISH_TIMEOUT)
        {
            error!("the audit log writer did not finish within {FINISH_TIMEOUT:?}");
        }
    }
}

struct Writer {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    size: u64,
    max_bytes: u64,
    lost: Arc<LossCount>,
    /// Dropped records already noted in the file.
    reported: u64,
    /// Writing failed last time (warn once per failure streak).
    failing: bool,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            let mut stop = false;
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Line(line) => self.write(&line),
                    Msg::Stop => {
                        stop = true;
                        break;
                    }
                }
                next = rx.try_recv().ok();
            }
            self.note_dropped();
            self.flush();
            if stop {
                return;
            }
        }
        self.flush();
    }

    /// Adds a line saying how many records were lost since the last such line.
    fn note_dropped(&mut self) {
        let total = self.lost.dropped.load(Ordering::Relaxed);
        if total == self.reported {
            return;
        }
        let line = serde_json::json!({
            "time": timestamp(SystemTime::now()),
            "event": "audit_records_dropped",
            "count": total - self.reported,
            "total": total,
        });
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        self.reported = total;
        self.write(&bytes);
    }

    fn write(&mut self, line: &[u8]) {
        let len = line.len() as u64;
        let result = (|| {
            if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
                self.rotate()?;
            }
            let file = match &mut self.file {
                Some(f) => f,
                None => {
                    self.size = 0;
                    self.file.insert(BufWriter::new(open_append(&self.path)?))
                }
            };
            file.write_all(line)?;
            self.size += len;
            Ok::<(), io::Error>(())
        })();
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                // The record is lost: counted like a dropped one, so the file says so once
                // writing works again.
                self.lost.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    error!(path = %self.path.display(), "cannot write the audit log: {e}");
                }
                self.failing = true;
                self.file = None;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.flush()
        {
            if !self.failing {
                error!(path = %self.path.display(), "cannot write the audit log: {e}");
            }
            self.failing = true;
            self.file = None;
        }
    }

    /// `FILE` → `FILE.1` → … → `FILE.KEEP` (the oldest is overwritten); a new `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        for i in (1..KEEP).rev() {
            match std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = Some(BufWriter::new(open_append(&self.path)?));
        self.size = 0;
        Ok(())
    }
}

/// `FILE.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn entry(tool: &str, outcome: Outcome) -> Entry<'_> {
        Entry {
            principal: "client-1",
            tool,
            args_sha256: "ab",
            outcome,
            duration: Duration::from_millis(1500),
            era: "2026-07-28",
        }
    }

    /// Opens the log at `path` (rotated at `max_bytes`), records `calls` and closes it.
    fn write_log(path: &Path, max_bytes: u64, calls: &[(&str, Outcome)]) {
        let log = AuditLog::open(path, max_bytes).unwrap();
        let tx = log.sender();
        for &(tool, outcome) in calls {
            tx.record(&entry(tool, outcome));
        }
        drop(log);
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn outcomes_and_times() {
        assert_eq!(Outcome::Error(-32602).to_string(), "error:-32602");
        assert_eq!(Outcome::ToolError.to_string(), "tool_error");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_042);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.042Z");
        assert_eq!(
            sha256_hex(b"{}"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            rotated(Path::new("/x/a.jsonl"), 2),
            PathBuf::from("/x/a.jsonl.2")
        );
    }

    #[test]
    fn writes_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(
            &path,
            1 << 20,
            &[("echo", Outcome::Ok), ("exit", Outcome::Refused)],
        );
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["tool"], "echo");
        assert_eq!(got[0]["outcome"], "ok");
        assert_eq!(got[0]["principal"], "client-1");
        assert_eq!(got[0]["duration_ms"], 1500);
        assert_eq!(got[0]["era"], "2026-07-28");
        assert_eq!(got[0]["args_sha256"], "ab");
        assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(got[1]["outcome"], "refused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Reopened: appended to.
        write_log(&path, 1 << 20, &[("slow", Outcome::Timeout)]);
        assert_eq!(lines(&path).len(), 3);
    }

    #[test]
    fn rotates_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let one = {
            write_log(&path, 1 << 20, &[("echo", Outcome::Ok)]);
            let n = std::fs::metadata(&path).unwrap().len();
            std::fs::remove_file(&path).unwrap();
            n
        };
        // Room for three lines per file; each line as long as the measured one.
        let calls: Vec<_> = (0..20)
            .map(|i| (["echo", "slow"][i % 2], Outcome::Ok))
            .collect();
        write_log(&path, one * 3 + 1, &calls);
        for p in [
            path.clone(),
            rotated(&path, 1),
            rotated(&path, 2),
            rotated(&path, 3),
        ] {
            let n = std::fs::metadata(&p).unwrap().len();
            assert!(n <= one * 3 + 1, "{} has {n} bytes", p.display());
            assert!(!lines(&p).is_empty());
        }
        assert!(!rotated(&path, 4).exists(), "three old files are kept");
        // 20 lines: 2 in the current file, 3 in each of .1 … .3, the rest gone.
        assert_eq!(lines(&path).len(), 2);
        assert_eq!(lines(&rotated(&path, 1)).len(), 3);
        assert_eq!(lines(&rotated(&path, 3)).len(), 3);
    }

    #[test]
    fn counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, 1 << 30).unwrap();
        let tx = log.sender();
        // Far more than the queue holds, as fast as possible: some may be dropped, and
        // then the file says how many.
        for _ in 0..(QUEUE * 8) {
            tx.record(&entry("echo", Outcome::Ok));
        }
        let dropped = tx.dropped();
        drop(log);
        let got = lines(&path);
        let written = got.iter().filter(|l| l["tool"] == "echo").count() as u64;
        assert_eq!(written + dropped, (QUEUE * 8) as u64);
        let noted: u64 = got
            .iter()
            .filter(|l| l["event"] == "audit_records_dropped")
            .map(|l| l["count"].as_u64().unwrap())
            .sum();
        assert_eq!(noted, dropped);
    }
}
