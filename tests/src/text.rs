//! Checks on text the tests read: pages, logs, configuration files.

/// Asserts that `text` contains every one of `needles`; `what` names the text in the
/// failure.
pub fn assert_contains_all(text: &str, needles: &[&str], what: &str) {
    let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
    assert!(missing.is_empty(), "{what} lacks {missing:?}");
}
