//! Server-sent events as MCP's Streamable HTTP and HTTP+SSE transports carry them: event
//! blocks cut off a byte buffer, their `id`, `retry` and `data` fields, and the JSON-RPC
//! message in the data.

use serde_json::Value;

/// One server-sent event (comments dropped).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Event {
    /// Its `id:` field.
    pub id: Option<String>,
    /// Its `retry:` field.
    pub retry: Option<String>,
    /// Its `event:` field.
    pub event: Option<String>,
    /// Its `data:` lines, joined with line breaks.
    pub data: String,
}

impl Event {
    /// The JSON-RPC message it carries (none for a priming event, whose data is empty);
    /// an error when the data is not JSON.
    pub fn try_message(&self) -> Result<Option<Value>, String> {
        if self.data.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&self.data)
            .map(Some)
            .map_err(|e| format!("an event whose data is not JSON ({e}): {self:?}"))
    }

    /// [`Event::try_message`], panicking on data that is not JSON.
    pub fn message(&self) -> Option<Value> {
        self.try_message().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Cuts the next complete event block (up to a blank line) off `buf`.
pub fn next_block(buf: &mut Vec<u8>) -> Option<String> {
    let pos = buf.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buf.drain(..pos + 2).collect();
    Some(String::from_utf8_lossy(&block[..pos]).replace('\r', ""))
}

/// Parses an event block; `None` when it holds only comments (keep-alives).
pub fn parse_block(block: &str) -> Option<Event> {
    let mut ev = Event::default();
    let mut data = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        any = true;
        match field {
            "id" => ev.id = Some(value.to_owned()),
            "retry" => ev.retry = Some(value.to_owned()),
            "event" => ev.event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    ev.data = data.join("\n");
    any.then_some(ev)
}

/// Every event of a complete SSE body.
pub fn events(body: &[u8]) -> Vec<Event> {
    let mut buf: Vec<u8> = body.iter().copied().filter(|b| *b != b'\r').collect();
    buf.extend_from_slice(b"\n\n");
    let mut out = Vec::new();
    while let Some(block) = next_block(&mut buf) {
        out.extend(parse_block(&block));
    }
    out
}

/// The JSON-RPC messages of a complete SSE body (priming events skipped); an error when an
/// event's data is not JSON.
pub fn messages(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for ev in events(body) {
        out.extend(ev.try_message()?);
    }
    Ok(out)
}
