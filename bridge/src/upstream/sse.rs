//! A decoder of `text/event-stream` bodies, as the HTML standard's event-stream
//! interpretation says, fed chunk by chunk, bounded: a line or an event's data longer than
//! the limit ends the stream with an error instead of growing without bound.

use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its type (`message` when the stream named none).
    pub event: String,
    /// Its data lines, joined with `\n`.
    pub data: String,
    /// The last event id the stream set, as of this event.
    pub id: Option<String>,
}

/// An event or line longer than the decoder's limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an event of the stream is longer than {0} bytes")]
pub struct TooLarge(pub usize);

/// Decodes an event stream incrementally.
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    line: Vec<u8>,
    /// The previous byte was a CR (a following LF belongs to that line end).
    after_cr: bool,
    /// At the very start of the stream (a byte-order mark is skipped there).
    at_start: bool,
    data: String,
    has_data: bool,
    event: String,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl Decoder {
    /// A decoder accepting lines and events up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            event: String::new(),
            last_id: None,
            retry: None,
        }
    }

    /// The last event id the stream set (for `Last-Event-ID` when resuming it).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay the stream asked for, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Feeds the next bytes of the body; returns the events they completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        if self.at_start && !chunk.is_empty() {
            // A leading byte-order mark may arrive split across chunks; only a whole one
            // at the very start is skipped.
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
            self.at_start = false;
        }
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.on_line(&line)? {
                        out.push(ev);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max {
                        return Err(TooLarge(self.max));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn on_line(&mut self, line: &[u8]) -> Result<Option<Event>, TooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(TooLarge(self.max));
                }
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = value.into_owned(),
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(Event {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder, chunks: &[&[u8]]) -> Vec<Event> {
        chunks.iter().flat_map(|c| d.feed(c).unwrap()).collect()
    }

    #[test]
    fn events_with_types_ids_and_multiline_data() {
        let mut d = Decoder::new(1 << 10);
        let evs = all(
            &mut d,
            &[b"event: endpoint\ndata: /messages?s=1\n\n: keep-alive\n\nid: 7\ndata: a\ndata:b\n\n"],
        );
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event, "endpoint");
        assert_eq!(evs[0].data, "/messages?s=1");
        assert_eq!(evs[0].id, None);
        assert_eq!(evs[1].event, "message");
        assert_eq!(evs[1].data, "a\nb");
        assert_eq!(evs[1].id.as_deref(), Some("7"));
        assert_eq!(d.last_event_id(), Some("7"));
    }

    #[test]
    fn any_line_ending_split_anywhere() {
        let text = b"\xEF\xBB\xBFdata: one\r\n\r\ndata: two\r\rdata: three\n\n";
        let whole = all(&mut Decoder::new(64), &[text]);
        assert_eq!(
            whole.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            let mut d = Decoder::new(64);
            let split = all(&mut d, &[a, b]);
            let data: Vec<_> = split.iter().map(|e| e.data.as_str()).collect();
            // A BOM split across chunks is kept as data: only whole ones are skipped.
            if cut > 0 && cut < 3 {
                continue;
            }
            assert_eq!(data, ["one", "two", "three"], "cut at {cut}");
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_but_sets_the_id() {
        let mut d = Decoder::new(64);
        assert!(all(&mut d, &[b"id: 3\n\nevent: x\n\n"]).is_empty());
        assert_eq!(d.last_event_id(), Some("3"));
        let evs = all(&mut d, &[b"data\n\n"]);
        assert_eq!(evs[0].data, "");
        assert_eq!(evs[0].id.as_deref(), Some("3"));
    }

    #[test]
    fn retry_takes_digits_only() {
        let mut d = Decoder::new(64);
        all(&mut d, &[b"retry: 1500\n\nretry: 1x\n\n"]);
        assert_eq!(d.retry(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn too_long_lines_and_events_are_errors() {
        let mut d = Decoder::new(16);
        assert_eq!(d.feed(&[b'x'; 17]), Err(TooLarge(16)));
        let mut d = Decoder::new(16);
        assert_eq!(
            d.feed(b"data: 0123456789\ndata: 0123456789\n"),
            Err(TooLarge(16))
        );
    }
}
