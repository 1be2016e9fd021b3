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

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
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
}
