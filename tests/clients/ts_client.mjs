// Real-client probe with the official TypeScript MCP SDK (pinned: @modelcontextprotocol/sdk 1.32.2).
//
// usage: node ts_client.mjs URL [--sse] [--tool NAME] [--args JSON] [--resource URI] [--prompt NAME]
//                           [--progress-tool NAME] [--progress-args JSON] [--no-replay]
//                           [--interrupt] [--timeout S]
// Run with $NODE22 (any Node >= 18 works). The SDK is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh).
//
// The 1.x SDK only knows the initialize handshake (protocol versions up to 2025-11-25; no
// server/discover, no 2026-07-28), so "era" is always "legacy" (the handshake revisions; the
// value the other probes report for them).
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
// HTTP+SSE (--sse; URL is the SSE endpoint, e.g. http://host/sse): initialize, list tools,
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
import { pathToFileURL } from 'node:url';
import { parseJson, splitSseEvents } from './sse_events.mjs';
import { Probe, callSummary, clientInfo, errText, nodeModules, parseArgs, requestInit } from './ts_probe.mjs';

const SCRIPT = 'ts_client.mjs';
const sdkRoot = path.join(nodeModules, '@modelcontextprotocol', 'sdk', 'dist', 'esm');
const load = (p) => import(pathToFileURL(path.join(sdkRoot, p)).href);

const { url, opts } = parseArgs(SCRIPT,
  'URL [--sse] [--tool NAME] [--args JSON] [--resource URI] [--prompt NAME] [--progress-tool NAME] ' +
  '[--progress-args JSON] [--no-replay] [--interrupt] [--timeout S]',
  {
    '--sse': ['sse', true], '--tool': ['tool', 'text'], '--args': ['args', 'json'],
    '--resource': ['resource', 'text'], '--prompt': ['prompt', 'text'],
    '--progress-tool': ['progressTool', 'text'], '--progress-args': ['progressArgs', 'json'],
    '--no-replay': ['replay', false], '--interrupt': ['interrupt', true],
  },
  { sse: false, tool: 'test_simple_text', args: {}, resource: 'test://static-text', prompt: 'test_simple_prompt',
    progressTool: 'test_tool_with_progress', progressArgs: {}, replay: true, interrupt: false });

const out = {
  ok: false, client: 'ts-sdk', transport: opts.sse ? 'sse' : 'streamable', era: 'legacy', server: null,
  protocol: null, session_id: null, tools: null, tool_names: null, call: null, resource: null, prompt: null,
};
const probe = new Probe(SCRIPT, out, opts.timeout);
const info = clientInfo('tunnel-e2e-ts-client');

// ---------------------------------------------------------------- SSE recording and cutting
// While `recording` is an array, every SSE response gets an entry {method, last_event_id,
// status, events} there, filled as its events arrive. While `cutNext` is set, the next POST
// answered with an SSE stream is cut after its first event that carries data.
let recording = null;
let cutNext = null;
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
      const [events, rest] = splitSseEvents(text);
      let deliverTo = text.length;
      for (const ev of events) {
        rec.events.push({ id: ev.id, event: ev.event, data: ev.data === null ? null : parseJson(ev.data) });
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
          controller.error(new TypeError(`terminated: connection lost (simulated by ${SCRIPT})`));
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
  const r = await probe.fetch(input, init);
  const isSse = /^text\/event-stream/i.test(r.headers.get('content-type') ?? '');
  if (!isSse || !r.body || (!recording && !cutNext)) return r;
  const method = init?.method ?? 'GET';
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

// ---------------------------------------------------------------- run
await probe.main(async () => {
  const { Client } = await load('client/index.js');
  const { CallToolResultSchema } = await load('types.js');

  if (opts.sse) {
    const { SSEClientTransport } = await load('client/sse.js');
    probe.step = 'connect';
    const t = new SSEClientTransport(url, { requestInit, fetch: loggingFetch });
    const c = new Client(info, { capabilities: {} });
    await c.connect(t);
    out.server = c.getServerVersion()?.name ?? null;
    out.protocol = t.protocolVersion ?? t._protocolVersion ?? null;
    const tools = await probe.listCallReadPrompt(c, opts);
    out.tools = tools.length;
    out.tool_names = tools.map((x) => x.name);
    probe.step = 'close';
    await c.close();
    return;
  }

  const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
  const reconnectionOptions = { initialReconnectionDelay: 200, maxReconnectionDelay: 1000,
    reconnectionDelayGrowFactor: 1.5, maxRetries: 2 };
  const newTransport = (extra = {}) =>
    new StreamableHTTPClientTransport(url, { requestInit, fetch: loggingFetch, reconnectionOptions, ...extra });

  // 1. new session
  probe.step = 'connect';
  const t1 = newTransport();
  const c1 = new Client(info, { capabilities: {} });
  await c1.connect(t1);
  const sessionId = t1.sessionId;
  const protocolVersion = t1.protocolVersion;
  out.session_id = sessionId ?? null;
  out.protocol = protocolVersion ?? null;
  out.server = c1.getServerVersion()?.name ?? null;
  const tools = await probe.listCallReadPrompt(c1, opts);
  out.tools = tools.length;
  out.tool_names = tools.map((x) => x.name);

  // 2. progress + SSE event ids
  out.progress = [];
  out.event_ids = [];
  out.progress_stream = [];
  if (opts.progressTool) {
    probe.step = 'tools/call (progress)';
    recording = [];
    const r = await c1.request(
      { method: 'tools/call', params: { name: opts.progressTool, arguments: opts.progressArgs } },
      CallToolResultSchema,
      {
        onprogress: (p) => out.progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null }),
        onresumptiontoken: (tok) => out.event_ids.push(tok),
        resetTimeoutOnProgress: true,
      });
    out.progress_call = callSummary(opts.progressTool, r);
    out.progress_stream = recording.filter((x) => x.method === 'POST').flatMap((x) => x.events);
    recording = null;
  }

  // 3. drop the connection without DELETE, resume the session on a new transport
  probe.step = 'close first transport';
  await t1.close();
  if (!sessionId) throw new Error('server issued no Mcp-Session-Id: session resumption impossible');
  probe.step = 'resume session';
  const t2 = newTransport({ sessionId });
  const c2 = new Client(info, { capabilities: {} });
  await c2.connect(t2); // skips initialize because the transport already has a session id
  if (protocolVersion) t2.setProtocolVersion(protocolVersion);
  probe.step = 'tools/call (resumed session)';
  const resumedTool = opts.tool || 'test_simple_text';
  out.resumed_call = callSummary(resumedTool, await c2.callTool({ name: resumedTool, arguments: opts.tool ? opts.args : {} }));

  // 4. replay of the finished progress stream via Last-Event-ID (the SDK's resumptionToken)
  out.replay = { attempted: false };
  if (opts.replay && opts.progressTool && out.event_ids.length) {
    probe.step = 'replay (Last-Event-ID)';
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
      out.replay.call = callSummary(opts.progressTool, r);
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
    probe.step = 'interrupted stream';
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
      it.call = callSummary(opts.progressTool, r);
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
  probe.step = 'terminateSession (DELETE)';
  const before = probe.http.length;
  await t2.terminateSession();
  out.delete_status = probe.http.length > before ? Number(probe.http[probe.http.length - 1].split(' ')[1]) || null : null;
  await t2.close().catch(() => {});
  probe.step = 'request after DELETE';
  const t3 = newTransport({ sessionId });
  const c3 = new Client(info, { capabilities: {} });
  await c3.connect(t3);
  if (protocolVersion) t3.setProtocolVersion(protocolVersion);
  probe.lastStatus = null;
  let alive = false;
  try {
    await c3.listTools();
    alive = true;
  } catch (e) {
    out.after_delete_error = errText(e);
    out.after_delete_status = probe.lastStatus;
  }
  await t3.close().catch(() => {});
  if (alive) {
    out.after_delete_error = null;
    out.after_delete_status = probe.lastStatus;
    throw new Error(`a request with the deleted session id ${sessionId} still succeeded (HTTP ${probe.lastStatus})`);
  }
});
