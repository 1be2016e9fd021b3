// Real-client probe with the TypeScript SDK's 2.x client package (@modelcontextprotocol/client
// 2.3.1, pinned through the Inspector 2.12.0 that depends on it), which speaks every era.
//
// usage: node ts_client_v2.mjs URL [--era legacy|auto|modern] [--tool NAME] [--args JSON]
//                              [--resource URI] [--prompt NAME] [--elicit-answer TEXT]
//                              [--sampling-text TEXT] [--log-level LEVEL] [--calls JSON]
//                              [--timeout S]
// Run with $NODE22. The package is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh).
//
// --era is the client's `versionNegotiation`:
//   legacy  (the package's default) the `initialize` handshake, like a 1.x client;
//   auto    `server/discover` first; evidence of the stateless revision selects 2026-07-28
//           (requests with the `_meta` envelope), anything else falls back to `initialize`;
//   modern  `{ pin: '2026-07-28' }`: discover, and fail unless the server offers that version.
// (The option's values and the "era" reported are the package's own names: "legacy" for the
// handshake revisions, "modern" for the stateless one.)
// Over Streamable HTTP: connect, list tools, call --tool (default test_simple_text, args {}),
// read --resource (default test://static-text), get --prompt (default test_simple_prompt);
// an empty value skips that step. --elicit-answer TEXT declares the elicitation capability and
// accepts every form with each string property set to TEXT; --sampling-text TEXT declares
// sampling and answers TEXT. On a stateless connection the client fulfils InputRequiredResult
// rounds with these same handlers (its default `inputRequired` auto-fulfilment).
//
// --log-level LEVEL keeps every notifications/message in "logs" and, on a 2026-07-28
// connection, opts each --calls tool call in to log messages at LEVEL and above (the `_meta`
// logLevel key); on a handshake-era connection the server's own setting decides (no
// `logging/setLevel` is sent).
// --calls JSON runs more steps on the same connection after the ones above: a JSON array of
//   {"tool": NAME, "args": {...}, "progress": true|false}  a tools/call (with `onprogress` when
//                                                          "progress"); its error is recorded
//                                                          and the next step runs
//   {"pause": LABEL}                                       prints {"event":"paused","label":LABEL}
//                                                          and waits for a line on stdin
// Each step's record goes to "steps": a call as {"tool","is_error","texts","progress":
// [{"progress","total","message"}],"error":null|"<reason>","elapsed_ms"}, a pause as
// {"pause": LABEL}.
//
// env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.
//
// stdout: the last line is one JSON object
//   {"ok", "client": "ts-sdk-v2", "version", "era_option", "era": "modern"|"legacy",
//    "protocol", "server", "discover": <DiscoverResult>|null, "tools": [names],
//    "call": {"name","is_error","texts","types"}, "resource": [texts], "prompt": [texts],
//    "elicitations": [{"message","properties","answered"}]|null,
//    "samplings": [{"texts","answered"}]|null, "logs": [{"level","logger","data"}]|null,
//    "steps": [...]|null, "http": ["POST 200", ...]}
// On failure: "ok": false, "error", "failed_step", the reason on stderr, exit 1 (2 = bad usage).
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';
import { Probe, callSummary, clientInfo, errText, nodeModules, parseArgs, requestInit, textOf } from './ts_probe.mjs';

const SCRIPT = 'ts_client_v2.mjs';
const pkgRoot = path.join(nodeModules, '@modelcontextprotocol', 'client');

/** The stateless protocol revision `--era modern` pins. */
const STATELESS_VERSION = '2026-07-28';

const { url, opts, usage } = parseArgs(SCRIPT,
  'URL [--era legacy|auto|modern] [--tool NAME] [--args JSON] [--resource URI] [--prompt NAME] ' +
  '[--elicit-answer TEXT] [--sampling-text TEXT] [--log-level LEVEL] [--calls JSON] [--timeout S]',
  {
    '--era': ['era', 'text'], '--tool': ['tool', 'text'], '--args': ['args', 'json'],
    '--resource': ['resource', 'text'], '--prompt': ['prompt', 'text'],
    '--elicit-answer': ['elicitAnswer', 'text'], '--sampling-text': ['samplingText', 'text'],
    '--log-level': ['logLevel', 'text'], '--calls': ['calls', 'text'],
  },
  { era: 'auto', tool: 'test_simple_text', args: {}, resource: 'test://static-text', prompt: 'test_simple_prompt',
    elicitAnswer: null, samplingText: null, logLevel: null, calls: null });
if (!['legacy', 'auto', 'modern'].includes(opts.era)) usage(`bad --era ${opts.era}`);
let steps = null;
if (opts.calls !== null) {
  try { steps = JSON.parse(opts.calls); } catch { /* reported below */ }
  const good = (x) => x && typeof x === 'object' && ('tool' in x || 'pause' in x);
  if (!Array.isArray(steps) || !steps.every(good)) usage('--calls must be a JSON array of {"tool": ...} or {"pause": ...}');
}

/** The next line on stdin (a --calls pause waits for one). */
const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const out = {
  ok: false, client: 'ts-sdk-v2', version: null, era_option: opts.era, era: null, protocol: null,
  server: null, discover: null, tools: null, call: null, resource: null, prompt: null,
  elicitations: opts.elicitAnswer === null ? null : [], samplings: opts.samplingText === null ? null : [],
  logs: opts.logLevel === null ? null : [], steps: null,
};
const probe = new Probe(SCRIPT, out, opts.timeout);

await probe.main(async () => {
  out.version = JSON.parse(fs.readFileSync(path.join(pkgRoot, 'package.json'), 'utf8')).version;
  const sdk = await import(pathToFileURL(path.join(pkgRoot, 'dist', 'index.mjs')).href);
  const { Client, StreamableHTTPClientTransport } = sdk;
  const versionNegotiation = opts.era === 'modern' ? { mode: { pin: STATELESS_VERSION } } : { mode: opts.era };

  const capabilities = {};
  if (opts.elicitAnswer !== null) capabilities.elicitation = { form: {} };
  if (opts.samplingText !== null) capabilities.sampling = {};
  const client = new Client(clientInfo('tunnel-e2e-ts-modern'), { capabilities, versionNegotiation });
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

  if (opts.logLevel !== null) {
    client.setNotificationHandler('notifications/message', async (n) => {
      out.logs.push({ level: n.params?.level ?? null, logger: n.params?.logger ?? null, data: n.params?.data ?? null });
    });
  }

  probe.step = 'connect';
  const transport = new StreamableHTTPClientTransport(url, { requestInit, fetch: (i, o) => probe.fetch(i, o) });
  await client.connect(transport);
  out.era = client.getProtocolEra() ?? null;
  out.protocol = client.getNegotiatedProtocolVersion() ?? null;
  out.server = client.getServerVersion()?.name ?? null;
  out.discover = client.getDiscoverResult() ?? null;

  out.tools = (await probe.listCallReadPrompt(client, opts)).map((t) => t.name);
  if (steps !== null) await runSteps(client, steps);
  probe.step = 'close';
  await client.close();
});

/** The --calls steps on the connected client, each recorded in out.steps. */
async function runSteps(client, list) {
  out.steps = [];
  for (const step of list) {
    if ('pause' in step) {
      probe.step = `pause ${step.pause}`;
      console.log(JSON.stringify({ event: 'paused', label: step.pause }));
      await stdinLines.next();
      out.steps.push({ pause: step.pause });
      continue;
    }
    probe.step = `step ${step.tool}`;
    const record = { tool: step.tool, is_error: null, texts: null, progress: [], error: null, elapsed_ms: null };
    const params = { name: step.tool, arguments: step.args ?? {} };
    if (opts.logLevel !== null && out.era === 'modern') {
      params._meta = { 'io.modelcontextprotocol/logLevel': opts.logLevel };
    }
    const options = step.progress
      ? { onprogress: (p) => record.progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null }) }
      : {};
    const started = Date.now();
    try {
      const r = callSummary(step.tool, await client.callTool(params, options));
      record.is_error = r.is_error;
      record.texts = r.texts;
    } catch (e) {
      record.error = errText(e);
    }
    record.elapsed_ms = Date.now() - started;
    out.steps.push(record);
  }
}
