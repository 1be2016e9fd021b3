// Real-client probe with the official TypeScript MCP SDK (pinned: @modelcontextprotocol/sdk 1.32.2).
//
// usage: node ts_client.mjs URL [--sse] [--tool NAME] [--args JSON] [--resource URI] [--prompt NAME]
//                           [--progress-tool NAME] [--progress-args JSON] [--no-replay]
//                           [--interrupt] [--timeout S]
// Run with $NODE22 (any Node >= 18 works). The SDK is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh).
//
// The 1.x SDK only knows the initialize handshake (protocol versions up to 2025-11-25; no
// server/discover, no 2026-07-28), so "era" is always "legacy".
//
// Streamable HTTP (default):
//   1. initialize (new session), list tools, call --tool (default test_simple_text, args {}),
//      read --resource (default test://static-text), get --prompt (default test_simple_prompt);
//   2. call --progress-tool (default test_tool_with_progress) with a progress token, recording
//      every progress notification, every SSE event id (onresumptiontoken) and the raw SSE
//      events of that POST's response (progress_stream);
//   3. drop that transport WITHOUT DELETE, open a new transport on the same Mcp-Session-Id
//      (session resumption: no second initialize) and call --tool again -> resumed_call;
//   4. unless --no-replay, and only if SSE event ids were seen: ask for the progress call again
//      by resuming its stream (the SDK's resumptionToken: a GET with Last-Event-ID = the
//      stream's first event id, no new POST) -> replay: the Last-Event-ID the GET carried, the
//      raw events it got (the test compares them with progress_stream after that id) and the
//      result the SDK took from them (10 s limit; a failure is reported, not fatal);
//   5. with --interrupt: call --progress-tool once more and cut that POST's SSE stream
//      right after its first event carrying a message, as a network drop would (the bytes
//      of that event are delivered, then the body errors and the connection is closed). The
//      SDK reconnects by itself with GET + Last-Event-ID (its reconnection: 200 ms delay or the
//      server's retry:, 2 attempts) and must get the rest -> interrupted: the events before the
//      cut, every resume GET with its Last-Event-ID and events, the progress notifications
//      and the result (10 s limit; a failure is reported, not fatal);
//   6. terminateSession() (HTTP DELETE), then a request on a fresh transport with the old
//      session id must fail -> after_delete_error / after_delete_status (success = failure).
// Legacy SSE (--sse; URL is the SSE endpoint, e.g. http://host/sse): initialize, list tools,
//   call --tool, read --resource, get --prompt, close.
// Empty --resource / --prompt / --progress-tool skips that step.
//
// env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.
//
// stdout: the last line is one JSON object
//   {"ok", "client":"ts-sdk", "transport", "era": "legacy", "server", "protocol", "session_id",
//    "tools": n, "tool_names", "call": {"name","is_error","texts","types"}, "resource": [texts],
//    "prompt": [message texts], "progress": [{"progress","total","message"}], "event_ids": [...],
//    "progress_call", "progress_stream": [{"id","event","data"}],
//    "resumed_call",
//    "replay": {"attempted", "last_event_id", "sent_last_event_id", "status", "events", "ok",
//               "call"|"error"},
//    "interrupted": {"attempted", "cut", "cut_after_id", "events_before_cut", "resumes":
//                    [{"last_event_id","status","events"}], "event_ids", "progress", "ok",
//                    "call"|"error"},
//    "delete_status", "after_delete_error", "after_delete_status", "http": ["POST 200", ...]}
// Raw SSE events are {"id": <id or null>, "event": <type or null>, "data": <parsed JSON, the
// raw string if not JSON, or null when empty (a priming event)>}. The cut in step 5 comes after
// the first event with data, never after a priming event.
// On failure: "ok": false, "error", "failed_step", the reason on stderr, exit 1 (2 = bad usage).
// A tool result with isError=true is an observation (call.is_error), not a failure.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const sdkRoot = path.join(
  process.env.TS_SDK_DIR || path.join(here, '..', '..', '.test-deps', 'node', 'node_modules'),
  '@modelcontextprotocol', 'sdk', 'dist', 'esm');
const load = (p) => import(pathToFileURL(path.join(sdkRoot, p)).href);

// ---------------------------------------------------------------- arguments
const argv = process.argv.slice(2);
const opts = { sse: false, tool: 'test_simple_text', args: {}, resource: 'test://static-text',
  prompt: 'test_simple_prompt', progressTool: 'test_tool_with_progress', progressArgs: {}, replay: true,
  interrupt: false, timeout: 60 };
let url;
const usage = (msg) => {
  console.error(`ts_client.mjs: ${msg}\nusage: node ts_client.mjs URL [--sse] [--tool NAME] [--args JSON] ` +
    '[--resource URI] [--prompt NAME] [--progress-tool NAME] [--progress-args JSON] [--no-replay] ' +
    '[--interrupt] [--timeout S]');
  process.exit(2);
};
const json = (s, what) => {
  try { const v = JSON.parse(s); if (v && typeof v === 'object' && !Array.isArray(v)) return v; } catch {}
  return usage(`${what} must be a JSON object`);
};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  switch (a) {
    case '--sse': opts.sse = true; break;
    case '--tool': opts.tool = val(); break;
    case '--args': opts.args = json(val(), '--args'); break;
    case '--resource': opts.resource = val(); break;
    case '--prompt': opts.prompt = val(); break;
    case '--progress-tool': opts.progressTool = val(); break;
    case '--progress-args': opts.progressArgs = json(val(), '--progress-args'); break;
    case '--no-replay': opts.replay = false; break;
    case '--interrupt': opts.interrupt = true; break;
    case '--timeout': opts.timeout = Number(val()); break;
    default:
      if (a.startsWith('--') || url) usage(`unexpected argument ${a}`);
      url = a;
  }
}
if (!url) usage('URL is required');
try { url = new URL(url); } catch { usage(`bad URL ${url}`); }

// ---------------------------------------------------------------- state and helpers
const out = {
  ok: false, client: 'ts-sdk', transport: opts.sse ? 'sse' : 'streamable', era: 'legacy', server: null,
  protocol: null, session_id: null, tools: null, tool_names: null, call: null, resource: null, prompt: null,
};
let step = 'load-sdk';
const http = [];
let lastStatus = null;

// ---------------------------------------------------------------- SSE recording and cutting
// While `recording` is an array, every SSE response gets an entry {method, last_event_id,
// status, events} there, filled as its events arrive. While `cutNext` is set, the next POST
// answered with an SSE stream is cut after its first event that carries data.
let recording = null;
let cutNext = null;
const parseData = (d) => {
  if (d === null) return null;
  try { return JSON.parse(d); } catch { return d; }
};
/** Splits complete SSE events off `text`; returns [events with their end offsets, rest offset]. */
const sseEvents = (text) => {
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
};
/** A body stream that records the SSE events of `body` into `rec.events` and, with `cut`,
 *  delivers everything up to the end of the first event carrying data, then fails. */
const instrumentSse = (body, rec, cut) => {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let pending = '';
  let stopped = false;
  return new ReadableStream({
    async pull(controller) {
      if (stopped) return new Promise(() => {});
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        controller.error(e);
        return undefined;
      }
      if (chunk.done) {
        controller.close();
        return undefined;
      }
      const fresh = decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, '\n');
      const text = pending + fresh;
      const [events, rest] = sseEvents(text);
      let deliverTo = text.length;
      for (const ev of events) {
        rec.events.push({ id: ev.id, event: ev.event, data: parseData(ev.data) });
        if (cut && !stopped && ev.data !== null) {
          stopped = true;
          deliverTo = ev.end;
          cut.cut = true;
          cut.cut_after_id = ev.id;
          break;
        }
      }
      controller.enqueue(encoder.encode(text.slice(pending.length, deliverTo)));
      if (stopped) {
        // Let the SDK's parser take that event first, then drop the connection.
        setTimeout(() => {
          controller.error(new TypeError('terminated: connection lost (simulated by ts_client.mjs)'));
          reader.cancel().catch(() => {});
        }, 150);
        return undefined;
      }
      pending = text.slice(rest);
      return undefined;
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
};
const loggingFetch = async (input, init) => {
  const method = init?.method ?? 'GET';
  let r;
  try {
    r = await fetch(input, init);
    lastStatus = r.status;
    http.push(`${method} ${r.status}`);
  } catch (e) {
    http.push(`${method} ERR`);
    throw e;
  }
  const isSse = /^text\/event-stream/i.test(r.headers.get('content-type') ?? '');
  if (!isSse || !r.body || (!recording && !cutNext)) return r;
  const headers = new Headers(init?.headers);
  const rec = { method, last_event_id: headers.get('last-event-id'), status: r.status, events: [] };
  recording?.push(rec);
  let cut = null;
  if (cutNext && method === 'POST') {
    cut = cutNext;
    cutNext = null;
  }
  return new Response(instrumentSse(r.body, rec, cut), { status: r.status, statusText: r.statusText, headers: r.headers });
};
/** Races `p` against a `ms` deadline (the timer is cleared either way). */
const within = async (p, ms, what) => {
  let to;
  try {
    return await Promise.race([p, new Promise((_, rej) => { to = setTimeout(() => rej(new Error(`${what} within ${ms / 1000} s`)), ms); })]);
  } finally {
    clearTimeout(to);
  }
};
const requestInit = process.env.MCP_BEARER
  ? { headers: { Authorization: `Bearer ${process.env.MCP_BEARER}` } } : undefined;
const info = { name: 'tunnel-e2e-ts-client', version: '0.1.0' };
const summarize = (name, r) => ({
  name,
  is_error: Boolean(r.isError),
  texts: (r.content ?? []).filter((c) => typeof c.text === 'string').map((c) => c.text),
  types: (r.content ?? []).map((c) => c.type),
});
const resourceTexts = (rr) => rr.contents.map((c) =>
  typeof c.text === 'string' ? c.text : `[blob ${c.blob ? c.blob.length : 0} base64 chars]`);
const promptTexts = (pr) => pr.messages.map((m) =>
  typeof m.content?.text === 'string' ? m.content.text
    : typeof m.content?.resource?.text === 'string' ? m.content.resource.text : `[${m.content?.type}]`);
const errText = (e) => {
  let s = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  if (e?.cause) s += ` (cause: ${e.cause.code ?? e.cause.message ?? e.cause})`;
  return e?.code !== undefined && !s.includes(String(e.code)) ? `${s} (code ${e.code})` : s;
};
const finish = (code, error) => {
  out.http = http;
  if (error !== undefined) {
    out.ok = false;
    out.failed_step = step;
    out.error = error;
    console.error(`ts_client.mjs: failed at ${step}: ${error}`);
  } else {
    out.ok = true;
  }
  console.log(JSON.stringify(out));
  process.exit(code);
};
const timer = setTimeout(() => finish(1, `timeout after ${opts.timeout}s`), opts.timeout * 1000);
process.on('unhandledRejection', (e) => finish(1, `unhandled rejection: ${errText(e)}`));

// ---------------------------------------------------------------- run
try {
  const { Client } = await load('client/index.js');
  const { CallToolResultSchema } = await load('types.js');

  if (opts.sse) {
    const { SSEClientTransport } = await load('client/sse.js');
    step = 'connect';
    const t = new SSEClientTransport(url, { requestInit, fetch: loggingFetch });
    const c = new Client(info, { capabilities: {} });
    await c.connect(t);
    out.server = c.getServerVersion()?.name ?? null;
    out.protocol = t.protocolVersion ?? t._protocolVersion ?? null;
    step = 'tools/list';
    const tools = (await c.listTools()).tools;
    out.tools = tools.length;
    out.tool_names = tools.map((x) => x.name);
    if (opts.tool) {
      step = 'tools/call';
      out.call = summarize(opts.tool, await c.callTool({ name: opts.tool, arguments: opts.args }));
    }
    if (opts.resource) {
      step = 'resources/read';
      out.resource = resourceTexts(await c.readResource({ uri: opts.resource }));
    }
    if (opts.prompt) {
      step = 'prompts/get';
      out.prompt = promptTexts(await c.getPrompt({ name: opts.prompt }));
    }
    step = 'close';
    await c.close();
    clearTimeout(timer);
    finish(0);
  }

  const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
  const reconnectionOptions = { initialReconnectionDelay: 200, maxReconnectionDelay: 1000,
    reconnectionDelayGrowFactor: 1.5, maxRetries: 2 };
  const newTransport = (extra = {}) =>
    new StreamableHTTPClientTransport(url, { requestInit, fetch: loggingFetch, reconnectionOptions, ...extra });

  // 1. new session
  step = 'connect';
  const t1 = newTransport();
  const c1 = new Client(info, { capabilities: {} });
  await c1.connect(t1);
  const sessionId = t1.sessionId;
  const protocolVersion = t1.protocolVersion;
  out.session_id = sessionId ?? null;
  out.protocol = protocolVersion ?? null;
  out.server = c1.getServerVersion()?.name ?? null;
  step = 'tools/list';
  const tools = (await c1.listTools()).tools;
  out.tools = tools.length;
  out.tool_names = tools.map((x) => x.name);
  if (opts.tool) {
    step = 'tools/call';
    out.call = summarize(opts.tool, await c1.callTool({ name: opts.tool, arguments: opts.args }));
  }
  if (opts.resource) {
    step = 'resources/read';
    out.resource = resourceTexts(await c1.readResource({ uri: opts.resource }));
  }
  if (opts.prompt) {
    step = 'prompts/get';
    out.prompt = promptTexts(await c1.getPrompt({ name: opts.prompt }));
  }

  // 2. progress + SSE event ids
  out.progress = [];
  out.event_ids = [];
  out.progress_stream = [];
  if (opts.progressTool) {
    step = 'tools/call (progress)';
    recording = [];
    const r = await c1.request(
      { method: 'tools/call', params: { name: opts.progressTool, arguments: opts.progressArgs } },
      CallToolResultSchema,
      {
        onprogress: (p) => out.progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null }),
        onresumptiontoken: (tok) => out.event_ids.push(tok),
        resetTimeoutOnProgress: true,
      });
    out.progress_call = summarize(opts.progressTool, r);
    out.progress_stream = recording.filter((x) => x.method === 'POST').flatMap((x) => x.events);
    recording = null;
  }

  // 3. drop the connection without DELETE, resume the session on a new transport
  step = 'close first transport';
  await t1.close();
  if (!sessionId) throw new Error('server issued no Mcp-Session-Id: session resumption impossible');
  step = 'resume session';
  const t2 = newTransport({ sessionId });
  const c2 = new Client(info, { capabilities: {} });
  await c2.connect(t2); // skips initialize because the transport already has a session id
  if (protocolVersion) t2.setProtocolVersion(protocolVersion);
  step = 'tools/call (resumed session)';
  const resumedTool = opts.tool || 'test_simple_text';
  out.resumed_call = summarize(resumedTool, await c2.callTool({ name: resumedTool, arguments: opts.tool ? opts.args : {} }));

  // 4. replay of the finished progress stream via Last-Event-ID (the SDK's resumptionToken)
  out.replay = { attempted: false };
  if (opts.replay && opts.progressTool && out.event_ids.length) {
    step = 'replay (Last-Event-ID)';
    out.replay = { attempted: true, last_event_id: out.event_ids[0] };
    recording = [];
    try {
      const r = await within(
        c2.request(
          { method: 'tools/call', params: { name: opts.progressTool, arguments: opts.progressArgs } },
          CallToolResultSchema,
          { resumptionToken: out.event_ids[0], onresumptiontoken: () => {} }),
        10000, 'no replayed response');
      out.replay.ok = true;
      out.replay.call = summarize(opts.progressTool, r);
    } catch (e) {
      out.replay.ok = false;
      out.replay.error = errText(e);
    }
    const gets = recording.filter((x) => x.method === 'GET');
    out.replay.sent_last_event_id = gets[0]?.last_event_id ?? null;
    out.replay.status = gets[0]?.status ?? null;
    out.replay.events = gets.flatMap((x) => x.events);
    recording = null;
  }

  // 5. a progress call whose stream is cut after its first message: the SDK resumes it
  out.interrupted = { attempted: false };
  if (opts.interrupt && opts.progressTool) {
    step = 'interrupted stream';
    const it = { attempted: true, cut: false, cut_after_id: null, event_ids: [], progress: [] };
    out.interrupted = it;
    recording = [];
    cutNext = it;
    // A stream cut after an event without an id cannot be resumed: the SDK never retries it.
    let poll;
    const unresumable = new Promise((_, rej) => {
      poll = setInterval(() => {
        if (it.cut && it.cut_after_id === null) rej(new Error('the stream was cut after an event without an id: nothing to resume from'));
      }, 500);
    });
    try {
      const r = await within(Promise.race([
        c2.request(
          { method: 'tools/call', params: { name: opts.progressTool, arguments: opts.progressArgs } },
          CallToolResultSchema,
          {
            onprogress: (p) => it.progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null }),
            onresumptiontoken: (tok) => it.event_ids.push(tok),
          }),
        unresumable]),
        10000, 'no result after the cut');
      it.ok = true;
      it.call = summarize(opts.progressTool, r);
    } catch (e) {
      it.ok = false;
      it.error = errText(e);
    } finally {
      clearInterval(poll);
    }
    cutNext = null;
    it.events_before_cut = recording.filter((x) => x.method === 'POST').flatMap((x) => x.events);
    it.resumes = recording.filter((x) => x.method === 'GET')
      .map((x) => ({ last_event_id: x.last_event_id, status: x.status, events: x.events }));
    recording = null;
  }

  // 6. DELETE, then the old id must be dead
  step = 'terminateSession (DELETE)';
  const before = http.length;
  await t2.terminateSession();
  out.delete_status = http.length > before ? Number(http[http.length - 1].split(' ')[1]) || null : null;
  await t2.close().catch(() => {});
  step = 'request after DELETE';
  const t3 = newTransport({ sessionId });
  const c3 = new Client(info, { capabilities: {} });
  await c3.connect(t3);
  if (protocolVersion) t3.setProtocolVersion(protocolVersion);
  lastStatus = null;
  let alive = false;
  try {
    await c3.listTools();
    alive = true;
  } catch (e) {
    out.after_delete_error = errText(e);
    out.after_delete_status = lastStatus;
  }
  await t3.close().catch(() => {});
  if (alive) {
    out.after_delete_error = null;
    out.after_delete_status = lastStatus;
    throw new Error(`a request with the deleted session id ${sessionId} still succeeded (HTTP ${lastStatus})`);
  }
  clearTimeout(timer);
  finish(0);
} catch (e) {
  clearTimeout(timer);
  finish(1, errText(e));
}
