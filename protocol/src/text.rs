//! Text from the network made safe to show (terminals, logs, the status page).

/// `s` made safe for a terminal or a log line: control characters (C0, DEL, C1, so escape
/// sequences and carriage returns), bidirectional overrides and invisible formatting
/// characters are replaced with `�`; at most `max` characters are kept (`…` marks a cut).
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        out.push(if unsafe_char(c) { '\u{FFFD}' } else { c });
    }
    out
}

/// Whether a character must not be shown as it is: control characters (Cc), format
/// characters (Cf: bidirectional embeddings, overrides and isolates, zero-width characters,
/// the byte order mark, soft hyphen, tags…), line and paragraph separators, and characters
/// that draw nothing (Hangul fillers, the combining grapheme joiner).
pub fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_what_a_terminal_would_act_on() {
        assert_eq!(printable("a\x1b[2J\rb", 50), "a\u{FFFD}[2J\u{FFFD}b");
        assert_eq!(printable("x\u{9b}31m", 50), "x\u{FFFD}31m", "C1 CSI");
        assert_eq!(printable("a\u{202E}b", 50), "a\u{FFFD}b", "bidi override");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("é漢字", 10), "é漢字");
    }

    #[test]
    fn invisible_and_reordering_characters_are_replaced() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2028}',
            '\u{2029}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{180E}',
            '\u{2060}',
            '\u{2064}',
            '\u{206F}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
            '\u{1D173}',
            '\u{3164}',
            '\u{115F}',
            '\u{034F}',
            '\u{0600}',
            '\u{FFFB}',
            '\u{0085}',
            '\u{0000}',
        ] {
            assert!(unsafe_char(c), "U+{:04X}", c as u32);
            assert_eq!(
                printable(&format!("a{c}b"), 10),
                "a\u{FFFD}b",
                "U+{:04X}",
                c as u32
            );
        }
        for c in [
            'a',
            'é',
            '漢',
            '\u{1F600}',
            '\u{FE0F}',
            ' ',
            '\u{00A0}',
            '\u{05D0}',
        ] {
            assert!(!unsafe_char(c), "U+{:04X}", c as u32);
        }
    }
}
