//! The dashboard's view of a tunnel's audit log: its newest entries, filtered by tool or
//! client. Reads at most the last [`TAIL`] bytes of the file (the log is rotated by size,
//! so this is most of it) and shows at most [`ROWS`] entries, newest first.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

/// Most bytes read from the end of the log.
const TAIL: u64 = 1 << 20;
/// Most entries shown.
const ROWS: usize = 200;

/// One entry, as written by `crate::audit`.
#[derive(Debug, Deserialize)]
pub struct AuditRow {
    pub time: String,
    pub principal: String,
    pub tool: String,
    pub args_sha256: String,
    pub outcome: String,
    pub duration_ms: u64,
    pub era: String,
}

/// The newest entries of the log at `path` matching `tool` and `client` (when given).
pub fn read(
    path: &Path,
    tool: Option<&str>,
    client: Option<&str>,
) -> std::io::Result<Vec<AuditRow>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.take(TAIL).read_to_end(&mut bytes)?;
    // A cut in the middle of a character (the first line) is read lossily.
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may be cut.
        lines.remove(0);
    }
    Ok(lines
        .into_iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<AuditRow>(l).ok())
        .filter(|r| tool.is_none_or(|t| r.tool == t))
        .filter(|r| client.is_none_or(|c| r.principal == c))
        .take(ROWS)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_filtered_and_broken_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let line = |tool: &str, who: &str, n: u64| {
            format!(
                "{{\"time\":\"2026-12-07T10:00:0{n}.000Z\",\"principal\":\"{who}\",\"tool\":\"{tool}\",\
                 \"args_sha256\":\"ab\",\"outcome\":\"ok\",\"duration_ms\":{n},\"era\":\"2025-06-18\"}}\n"
            )
        };
        let text = [
            line("read", "alice", 1),
            "not json\n".to_owned(),
            line("write", "bob", 2),
            line("read", "bob", 3),
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let all = read(&path, None, None).unwrap();
        assert_eq!(
            all.iter().map(|r| r.duration_ms).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        let reads = read(&path, Some("read"), None).unwrap();
        assert_eq!(reads.len(), 2);
        let bobs_reads = read(&path, Some("read"), Some("bob")).unwrap();
        assert_eq!(bobs_reads.len(), 1);
        assert!(read(&dir.path().join("none"), None, None).is_err());
    }
}
