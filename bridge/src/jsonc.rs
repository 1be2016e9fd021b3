//! JSON with comments, as editors write their settings (VS Code's `mcp.json` is "JSONC"):
//! `//` and `/* */` comments and commas before a closing `}` or `]` are blanked out, so that
//! a strict JSON parser reads the rest. Text inside strings is never touched, and every
//! removed byte becomes a space (a line break stays a line break), so the line and column
//! of a parse error are those of the file. Plain JSON comes out unchanged.

/// `text` without its comments and trailing commas, and without a leading byte order mark.
pub fn strip(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = text.as_bytes().to_vec();
    let bytes = text.as_bytes();
    // The last comma outside strings, while only blanks and comments follow it.
    let mut comma: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                comma = None;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| *b == b'\n' || *b == b'\r')
                    .map_or(bytes.len(), |n| i + n);
                blank(&mut out[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let Some(n) = bytes[i + 2..].windows(2).position(|w| w == b"*/") else {
                    // Left as it is: the parser reports where the comment starts.
                    break;
                };
                let end = i + 2 + n + 2;
                blank(&mut out[i..end]);
                i = end;
            }
            b',' => {
                comma = Some(i);
                i += 1;
            }
            b'}' | b']' => {
                if let Some(at) = comma.take() {
                    out[at] = b' ';
                }
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                comma = None;
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced, each by a space, and every byte of a comment was: the
    // text is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// Spaces in place of `bytes`, line breaks kept.
fn blank(bytes: &mut [u8]) {
    for b in bytes {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> serde_json::Value {
        serde_json::from_str(&strip(text)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn comments_and_trailing_commas_go() {
        let text = r#"{
  // the servers
  "servers": {
    "a": { "command": "npx", /* inline */ "args": ["-y", "x",], },
    /* a block
       over lines */
    "b": { "url": "http://127.0.0.1:1/mcp" }, // last
  },
  "inputs": [],
}
"#;
        let v = value(text);
        assert_eq!(v["servers"]["a"]["args"], serde_json::json!(["-y", "x"]));
        assert_eq!(v["servers"]["b"]["url"], "http://127.0.0.1:1/mcp");
        assert_eq!(strip(text).lines().count(), text.lines().count());
        assert_eq!(strip(text).len(), text.len());
    }

    #[test]
    fn strings_are_left_alone() {
        let text = r#"{"a": "http://x//y /* not a comment */", "b": "quote \" // still", "c": "\\", "d": ",]"}"#;
        assert_eq!(strip(text), text);
        let v = value(text);
        assert_eq!(v["a"], "http://x//y /* not a comment */");
        assert_eq!(v["b"], "quote \" // still");
        assert_eq!(v["c"], "\\");
        assert_eq!(v["d"], ",]");
    }

    #[test]
    fn plain_json_is_unchanged_and_errors_keep_their_place() {
        let text = "{\"a\": [1, 2], \"b\": {\"c\": null}}";
        assert_eq!(strip(text), text);
        assert_eq!(strip("\u{feff}{}"), "{}");
        // A comma not followed by a closing bracket is an error the parser still sees.
        assert!(serde_json::from_str::<serde_json::Value>(&strip("{\"a\": 1,, }")).is_err());
        let e = serde_json::from_str::<serde_json::Value>(&strip("{\n  // x\n  \"a\": 1 2\n}"))
            .unwrap_err();
        assert_eq!((e.line(), e.column()), (3, 10));
        // An unclosed comment is left for the parser to report.
        assert!(serde_json::from_str::<serde_json::Value>(&strip("{} /* open")).is_err());
        // Non-ASCII text inside comments.
        assert_eq!(value("{\"a\": 1 // é ü\n}")["a"], 1);
    }
}
