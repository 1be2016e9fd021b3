// Real-client probe with the official TypeScript MCP SDK (pinned: @modelcontextprotocol/sdk 1.32.2).
//
// usage: node ts_client.mjs URL [--sse] [--tool NAME] [--args JSON] [--resource URI]
//                           [--progress-tool NAME] [--progress-args JSON] [--no-replay] [--timeout S]
// Run with $NODE22 (any Node >= 18 works). The SDK is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh).
//
// Streamable HTTP (default):
//   1. initialize (new session), list tools, call --tool (default test_simple_text, args {}),
//      read --resource (default test://static-text);
//   2. call --progress-tool (default test_tool_with_progress) with a progress token, recording
//      every progress notification and every SSE event id (onresumptiontoken);
//   3. drop that transport WITHOUT DELETE, open a new transport on the same Mcp-Session-Id
//      (session resumption: no second initialize) and call --tool again -> resumed_call;
//   4. unless --no-replay, and only if SSE event ids were seen: ask for the progress call again
//      by resuming its stream (GET with Last-Event-ID = first event id) -> replay (an
//      observation only: {attempted, ok, call|error}; 5 s limit; never fails the run);
//   5. terminateSession() (HTTP DELETE), then a request on a fresh transport with the old
//      session id must fail -> after_delete_error / after_delete_status (success = failure).
// Legacy SSE (--sse; URL is the SSE endpoint, e.g. http://host/sse): initialize, list tools,
//   call --tool, read --resource, close.
// Empty --resource / --progress-tool skips that step.
//
// env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.
//
// stdout: the last line is one JSON object
//   {"ok", "client":"ts-sdk", "transport", "server", "protocol", "session_id", "tools": n,
//    "tool_names", "call": {"name","is_error","texts","types"}, "resource": [texts],
//    "progress": [{"progress","total","message"}], "event_ids": [...], "progress_call",
//    "resumed_call", "replay", "delete_status", "after_delete_error", "after_delete_status",
//    "http": ["POST 200", ...]}
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
  progressTool: 'test_tool_with_progress', progressArgs: {}, replay: true, timeout: 60 };
let url;
const usage = (msg) => {
  console.error(`ts_client.mjs: ${msg}\nusage: node ts_client.mjs URL [--sse] [--tool NAME] [--args JSON] ` +
    '[--resource URI] [--progress-tool NAME] [--progress-args JSON] [--no-replay] [--timeout S]');
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
    case '--progress-tool': opts.progressTool = val(); break;
    case '--progress-args': opts.progressArgs = json(val(), '--progress-args'); break;
    case '--no-replay': opts.replay = false; break;
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
  ok: false, client: 'ts-sdk', transport: opts.sse ? 'sse' : 'streamable', server: null,
  protocol: null, session_id: null, tools: null, tool_names: null, call: null, resource: null,
};
let step = 'load-sdk';
const http = [];
let lastStatus = null;
const loggingFetch = async (input, init) => {
  const method = init?.method ?? 'GET';
  try {
    const r = await fetch(input, init);
    lastStatus = r.status;
    http.push(`${method} ${r.status}`);
    return r;
  } catch (e) {
    http.push(`${method} ERR`);
    throw e;
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
    step = 'close';
    await c.close();
    clearTimeout(timer);
    finish(0);
  }

  const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
  const newTransport = (extra = {}) =>
    new StreamableHTTPClientTransport(url, { requestInit, fetch: loggingFetch, ...extra });

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

  // 2. progress + SSE event ids
  out.progress = [];
  out.event_ids = [];
  if (opts.progressTool) {
    step = 'tools/call (progress)';
    const r = await c1.request(
      { method: 'tools/call', params: { name: opts.progressTool, arguments: opts.progressArgs } },
      CallToolResultSchema,
      {
        onprogress: (p) => out.progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null }),
        onresumptiontoken: (tok) => out.event_ids.push(tok),
        resetTimeoutOnProgress: true,
      });
    out.progress_call = summarize(opts.progressTool, r);
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

  // 4. optional stream replay via Last-Event-ID (observation only)
  out.replay = { attempted: false };
  if (opts.replay && opts.progressTool && out.event_ids.length) {
    step = 'replay (Last-Event-ID)';
    out.replay = { attempted: true, last_event_id: out.event_ids[0] };
    let to;
    try {
      const r = await Promise.race([
        c2.request(
          { method: 'tools/call', params: { name: opts.progressTool, arguments: opts.progressArgs } },
          CallToolResultSchema,
          { resumptionToken: out.event_ids[0], onresumptiontoken: () => {} }),
        new Promise((_, rej) => { to = setTimeout(() => rej(new Error('no replayed response within 5 s')), 5000); }),
      ]);
      out.replay.ok = true;
      out.replay.call = summarize(opts.progressTool, r);
    } catch (e) {
      out.replay.ok = false;
      out.replay.error = errText(e);
    } finally {
      clearTimeout(to);
    }
  }

  // 5. DELETE, then the old id must be dead
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
