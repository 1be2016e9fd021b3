//! Text for HTML pages.

/// Escapes text for HTML element content and attribute values; control, bidirectional
/// and invisible characters ([`protocol::text::unsafe_char`]) become `U+FFFD`, so text from
/// the network cannot reorder or hide what a page shows.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if protocol::text::unsafe_char(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The host of a URI, for display.
pub fn host_of(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape_html("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(
            escape_html("Claude\u{202E}lanretni\u{202C}\u{200B}\u{2066}x\u{2069}\u{FEFF}\u{2028}é"),
            "Claude\u{FFFD}lanretni\u{FFFD}\u{FFFD}\u{FFFD}x\u{FFFD}\u{FFFD}\u{FFFD}é"
        );
    }
}
