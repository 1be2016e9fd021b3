//! Text for HTML pages.

use std::fmt;

/// Escapes text for HTML element content and attribute values; control, bidirectional
/// and invisible characters ([`protocol::text::unsafe_char`]) become `U+FFFD`, so text from
/// the network cannot reorder or hide what a page shows.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Writing to a `String` cannot fail.
    let _ = write_escaped(&mut out, s);
    out
}

/// Writes `s` as [`escape_html`] returns it.
fn write_escaped(out: &mut (impl fmt::Write + ?Sized), s: &str) -> fmt::Result {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            // Of ASCII, only control characters are unsafe: a shortcut for most text.
            c if c.is_ascii() && !c.is_ascii_control() => continue,
            c if protocol::text::unsafe_char(c) => "\u{FFFD}",
            _ => continue,
        };
        out.write_str(&s[plain..i])?;
        out.write_str(replacement)?;
        plain = i + c.len_utf8();
    }
    out.write_str(&s[plain..])
}

/// Text in a page template: written as [`escape_html`] escapes it, and not escaped again
/// by the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<S>(pub S);

impl<S: AsRef<str>> fmt::Display for Text<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0.as_ref())
    }
}

impl<S: AsRef<str>> askama::filters::HtmlSafe for Text<S> {}

// Templates write it straight into their output, without going through `fmt::Arguments`.
impl<S: AsRef<str>> askama::FastWritable for Text<S> {
    fn write_into(&self, dest: &mut dyn fmt::Write, _: &dyn askama::Values) -> askama::Result<()> {
        Ok(write_escaped(dest, self.0.as_ref())?)
    }
}

/// The templates' own filters.
pub mod filters {
    use super::Text;

    /// `{{ value|text }}`: the value as [`Text`].
    #[askama::filter_fn]
    pub fn text<S: AsRef<str>>(s: S, _: &dyn askama::Values) -> askama::Result<Text<S>> {
        Ok(Text(s))
    }
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
    use askama::Template;

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
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("plain é"), "plain é");
    }

    #[test]
    fn every_character_as_the_rule_says() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let expected = match c {
                '&' => "&amp;".to_owned(),
                '<' => "&lt;".to_owned(),
                '>' => "&gt;".to_owned(),
                '"' => "&quot;".to_owned(),
                '\'' => "&#39;".to_owned(),
                c if protocol::text::unsafe_char(c) => "\u{FFFD}".to_owned(),
                c => c.to_string(),
            };
            assert_eq!(
                escape_html(&format!("a{c}b")),
                format!("a{expected}b"),
                "{c:?}"
            );
        }
    }

    #[derive(Template)]
    #[template(
        ext = "html",
        source = "<p title=\"{{ field }}\">{{ field }}|{{ owned|text }}|{{ plain }}</p>"
    )]
    struct Probe<'a> {
        field: Text<&'a str>,
        owned: String,
        plain: &'a str,
    }

    #[test]
    fn templates_write_text_once() {
        let evil = "<b>\"it's\" & \u{202E}x</b>";
        let html = Probe {
            field: Text(evil),
            owned: evil.to_owned(),
            plain: evil,
        }
        .render()
        .unwrap();
        let escaped = escape_html(evil);
        // A value that is not `Text` is still escaped (the template's own way), but keeps
        // what `Text` would replace.
        assert_eq!(
            html,
            format!(
                "<p title=\"{escaped}\">{escaped}|{escaped}|\
                 &#60;b&#62;&#34;it&#39;s&#34; &#38; \u{202E}x&#60;/b&#62;</p>"
            )
        );
    }
}
