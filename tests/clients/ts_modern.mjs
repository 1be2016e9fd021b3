// Real-client probe with the TypeScript SDK's 2.x client package (@modelcontextprotocol/client
// 2.3.1, pinned through the Inspector 2.12.0 that depends on it), which speaks every era.
//
// usage: node ts_modern.mjs URL [--era legacy|auto|modern] [--tool NAME] [--args JSON]
//                           [--resource URI] [--prompt NAME] [--elicit-answer TEXT]
//                           [--sampling-text TEXT] [--timeout S]
// Run with $NODE22. The package is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh).
//
// --era is the client's `versionNegotiation`:
//   legacy  (the package's default) the `initialize` handshake, like a 1.x client;
//   auto    `server/discover` first; modern evidence selects 2026-07-28 (stateless requests
//           with the `_meta` envelope), anything else falls back to `initialize`;
//   modern  `{ pin: '2026-07-28' }`: discover, and fail unless the server offers that version.
// Over Streamable HTTP: connect, list tools, call --tool (default test_simple_text, args {}),
// read --resource (default test://static-text), get --prompt (default test_simple_prompt);
// an empty value skips that step. --elicit-answer TEXT declares the elicitation capability and
// accepts every form with each string property set to TEXT; --sampling-text TEXT declares
// sampling and answers TEXT. On a modern connection the client fulfils InputRequiredResult
// rounds with these same handlers (its default `inputRequired` auto-fulfilment).
//
// env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.
//
// stdout: the last line is one JSON object
//   {"ok", "client": "ts-sdk-v2", "version", "era_option", "era": "modern"|"legacy",
//    "protocol", "server", "discover": <DiscoverResult>|null, "tools": [names],
//    "call": {"name","is_error","texts","types"}, "resource": [texts], "prompt": [texts],
//    "elicitations": [{"message","properties","answered"}]|null,
//    "samplings": [{"texts","answered"}]|null, "http": ["POST 200", ...]}
// On failure: "ok": false, "error", "failed_step", the reason on stderr, exit 1 (2 = bad usage).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgRoot = path.join(
  process.env.TS_SDK_DIR || path.join(here, '..', '..', '.test-deps', 'node', 'node_modules'),
  '@modelcontextprotocol', 'client');

/** The stateless protocol revision `--era modern` pins. */
const MODERN_VERSION = '2026-07-28';

// ---------------------------------------------------------------- arguments
const argv = process.argv.slice(2);
const opts = { era: 'auto', tool: 'test_simple_text', args: {}, resource: 'test://static-text',
  prompt: 'test_simple_prompt', elicitAnswer: null, samplingText: null, timeout: 60 };
let url;
const usage = (msg) => {
  console.error(`ts_modern.mjs: ${msg}\nusage: node ts_modern.mjs URL [--era legacy|auto|modern] [--tool NAME] ` +
    '[--args JSON] [--resource URI] [--prompt NAME] [--elicit-answer TEXT] [--sampling-text TEXT] [--timeout S]');
  process.exit(2);
};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  switch (a) {
    case '--era': opts.era = val(); break;
    case '--tool': opts.tool = val(); break;
    case '--args':
      try { opts.args = JSON.parse(val()); } catch { usage('--args must be a JSON object'); }
      if (!opts.args || typeof opts.args !== 'object' || Array.isArray(opts.args)) usage('--args must be a JSON object');
      break;
    case '--resource': opts.resource = val(); break;
    case '--prompt': opts.prompt = val(); break;
    case '--elicit-answer': opts.elicitAnswer = val(); break;
    case '--sampling-text': opts.samplingText = val(); break;
    case '--timeout': opts.timeout = Number(val()); break;
    default:
      if (a.startsWith('--') || url) usage(`unexpected argument ${a}`);
      url = a;
  }
}
if (!url) usage('URL is required');
if (!['legacy', 'auto', 'modern'].includes(opts.era)) usage(`bad --era ${opts.era}`);
try { url = new URL(url); } catch { usage(`bad URL ${url}`); }

// ---------------------------------------------------------------- state and helpers
const out = {
  ok: false, client: 'ts-sdk-v2', version: null, era_option: opts.era, era: null, protocol: null,
  server: null, discover: null, tools: null, call: null, resource: null, prompt: null,
  elicitations: opts.elicitAnswer === null ? null : [], samplings: opts.samplingText === null ? null : [],
};
let step = 'load-sdk';
const http = [];
const loggingFetch = async (input, init) => {
  const method = init?.method ?? 'GET';
  try {
    const r = await fetch(input, init);
    http.push(`${method} ${r.status}`);
    return r;
  } catch (e) {
    http.push(`${method} ERR`);
    throw e;
  }
};
const errText = (e) => {
  let s = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  if (e?.cause) s += ` (cause: ${e.cause.code ?? e.cause.message ?? e.cause})`;
  return e?.code !== undefined && !s.includes(String(e.code)) ? `${s} (code ${e.code})` : s;
};
const textOf = (c) => (typeof c?.text === 'string' ? c.text
  : typeof c?.resource?.text === 'string' ? c.resource.text : `[${c?.type}]`);
const finish = (code, error) => {
  out.http = http;
  if (error !== undefined) {
    out.ok = false;
    out.failed_step = step;
    out.error = error;
    console.error(`ts_modern.mjs: failed at ${step}: ${error}`);
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
  out.version = JSON.parse(fs.readFileSync(path.join(pkgRoot, 'package.json'), 'utf8')).version;
  const sdk = await import(pathToFileURL(path.join(pkgRoot, 'dist', 'index.mjs')).href);
  const { Client, StreamableHTTPClientTransport } = sdk;
  const versionNegotiation = opts.era === 'modern' ? { mode: { pin: MODERN_VERSION } } : { mode: opts.era };

  const capabilities = {};
  if (opts.elicitAnswer !== null) capabilities.elicitation = { form: {} };
  if (opts.samplingText !== null) capabilities.sampling = {};
  const client = new Client({ name: 'tunnel-e2e-ts-modern', version: '0.1.0' }, { capabilities, versionNegotiation });
  if (opts.elicitAnswer !== null) {
    client.setRequestHandler('elicitation/create', async (request) => {
      const props = request.params?.requestedSchema?.properties ?? {};
      const content = {};
      for (const [name, prop] of Object.entries(props)) {
        if (prop?.type === undefined || prop.type === 'string') content[name] = opts.elicitAnswer;
      }
      out.elicitations.push({ message: request.params?.message ?? null, properties: Object.keys(props).sort(), answered: content });
      return { action: 'accept', content };
    });
  }
  if (opts.samplingText !== null) {
    client.setRequestHandler('sampling/createMessage', async (request) => {
      const texts = (request.params?.messages ?? []).flatMap((m) => (Array.isArray(m.content) ? m.content : [m.content]).map(textOf));
      out.samplings.push({ texts, answered: opts.samplingText });
      return { role: 'assistant', content: { type: 'text', text: opts.samplingText }, model: 'ts-modern-test-model', stopReason: 'endTurn' };
    });
  }

  step = 'connect';
  const requestInit = process.env.MCP_BEARER
    ? { headers: { Authorization: `Bearer ${process.env.MCP_BEARER}` } } : undefined;
  const transport = new StreamableHTTPClientTransport(url, { requestInit, fetch: loggingFetch });
  await client.connect(transport);
  out.era = client.getProtocolEra() ?? null;
  out.protocol = client.getNegotiatedProtocolVersion() ?? null;
  out.server = client.getServerVersion()?.name ?? null;
  out.discover = client.getDiscoverResult() ?? null;

  step = 'tools/list';
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  if (opts.tool) {
    step = 'tools/call';
    const r = await client.callTool({ name: opts.tool, arguments: opts.args });
    out.call = {
      name: opts.tool,
      is_error: Boolean(r.isError),
      texts: (r.content ?? []).filter((c) => typeof c.text === 'string').map((c) => c.text),
      types: (r.content ?? []).map((c) => c.type),
    };
  }
  if (opts.resource) {
    step = 'resources/read';
    out.resource = (await client.readResource({ uri: opts.resource })).contents
      .map((c) => (typeof c.text === 'string' ? c.text : `[blob ${c.blob ? c.blob.length : 0} base64 chars]`));
  }
  if (opts.prompt) {
    step = 'prompts/get';
    out.prompt = (await client.getPrompt({ name: opts.prompt })).messages.map((m) => textOf(m.content));
  }
  step = 'close';
  await client.close();
  clearTimeout(timer);
  finish(0);
} catch (e) {
  clearTimeout(timer);
  finish(1, errText(e));
}
