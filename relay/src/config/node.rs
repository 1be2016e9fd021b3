//! A relay node's name, for logs and metrics when several nodes share one database:
//! `--node-id`, else the host's name.

/// Longest node id kept (a DNS label's length).
pub const MAX_NODE_ID: usize = 63;

/// The host's name as a node id, or `relay` when it has none.
pub fn default_node_id() -> String {
    clean_node_id(&host_name()).unwrap_or_else(|| "relay".to_owned())
}

/// `raw` as a node id: letters, digits, `.`, `_` and `-` kept (others become `-`), at
/// most [`MAX_NODE_ID`] characters; `None` if nothing is left.
pub fn clean_node_id(raw: &str) -> Option<String> {
    let id: String = raw
        .trim()
        .chars()
        .take(MAX_NODE_ID)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    (!id.trim_matches('-').is_empty()).then_some(id)
}

#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many
    // bytes and the result is read only up to its first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_and_plain() {
        assert_eq!(clean_node_id("relay-1").as_deref(), Some("relay-1"));
        assert_eq!(
            clean_node_id("eu west 1\n").as_deref(),
            Some("eu-west-1"),
            "whitespace inside becomes a dash; around it is dropped"
        );
        assert_eq!(
            clean_node_id("a\u{1b}[31mb").as_deref(),
            Some("a--31mb"),
            "no terminal escapes in logs"
        );
        assert_eq!(clean_node_id("x".repeat(100).as_str()).unwrap().len(), 63);
        assert_eq!(clean_node_id("  "), None);
        assert_eq!(clean_node_id("///"), None);
        assert!(!default_node_id().is_empty());
    }
}
