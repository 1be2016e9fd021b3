// The text/event-stream framing the JavaScript drivers read (tap_proxy.mjs records it,
// ts_client.mjs records and cuts it): events split off a buffer at blank lines, comments
// skipped, `data:` lines joined.

/**
 * Splits the complete events off `text` (line ends already `\n`): returns the events as
 * {id, event, data, end} (`data` null when empty, as in a priming event; `end` the offset
 * after the event) and the offset where the unfinished rest starts.
 */
export function splitSseEvents(text) {
  const events = [];
  let start = 0;
  let cut;
  while ((cut = text.indexOf('\n\n', start)) !== -1) {
    let id = null;
    let event = null;
    const data = [];
    let any = false;
    for (const line of text.slice(start, cut).split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      any = true;
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    start = cut + 2;
    // An empty data buffer is no message (a priming event; EventSource dispatches nothing).
    const joined = data.join('\n');
    if (any) events.push({ id, event, data: joined === '' ? null : joined, end: start });
  }
  return [events, start];
}

/** Incremental parser: feed() text as it arrives, get whole events {id, event, data} back. */
export class SseParser {
  constructor() { this.buf = ''; }

  feed(text) {
    this.buf += text.replace(/\r\n?/g, '\n');
    const [events, rest] = splitSseEvents(this.buf);
    this.buf = this.buf.slice(rest);
    return events.map(({ id, event, data }) => ({ id, event, data }));
  }
}

/** `text` parsed as JSON, or `text` itself when it is not JSON. */
export function parseJson(text) {
  try { return JSON.parse(text); } catch { return text; }
}
