// What the TypeScript SDK probes (ts_client.mjs for the 1.x SDK, ts_client_v2.mjs for the 2.x
// client package) share: their command line, where the SDK is installed, the bearer token,
// the HTTP log, the list/call/read/prompt steps and their summaries, and the one JSON line
// they end with.
//
// The SDK is loaded from $TS_SDK_DIR (default: <repo>/.test-deps/node/node_modules, installed
// by tests/deps/install.sh).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The node_modules folder the SDK packages are installed in. */
export const nodeModules =
  process.env.TS_SDK_DIR || path.join(here, '..', '..', '.test-deps', 'node', 'node_modules');

/** The client's name and version in `initialize` / `_meta`. */
export const clientInfo = (name) => ({ name, version: '0.1.0' });

/** The transport's `requestInit`: "Authorization: Bearer $MCP_BEARER" when that is set. */
export const requestInit = process.env.MCP_BEARER
  ? { headers: { Authorization: `Bearer ${process.env.MCP_BEARER}` } } : undefined;

/**
 * Parses `URL [options]`. `options` maps each option to [key, kind]: kind 'text' (a value),
 * 'json' (a JSON object), 'number', or a constant the flag stores without a value.
 * `defaults` gives the initial values (`timeout` always 60). Exits 2 with the usage on a
 * mistake.
 */
export function parseArgs(script, usageLine, options, defaults) {
  const usage = (msg) => {
    console.error(`${script}: ${msg}\nusage: node ${script} ${usageLine}`);
    process.exit(2);
  };
  const argv = process.argv.slice(2);
  const opts = { timeout: 60, ...defaults };
  const all = { ...options, '--timeout': ['timeout', 'number'] };
  let url;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!(a in all)) {
      if (a.startsWith('--') || url) usage(`unexpected argument ${a}`);
      url = a;
      continue;
    }
    const [key, kind] = all[a];
    if (!['text', 'json', 'number'].includes(kind)) {
      opts[key] = kind;
      continue;
    }
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    const value = argv[++i];
    if (kind === 'number') opts[key] = Number(value);
    else if (kind === 'text') opts[key] = value;
    else {
      let v;
      try { v = JSON.parse(value); } catch { /* reported below */ }
      if (!v || typeof v !== 'object' || Array.isArray(v)) usage(`${a} must be a JSON object`);
      opts[key] = v;
    }
  }
  if (!url) usage('URL is required');
  try { url = new URL(url); } catch { usage(`bad URL ${url}`); }
  return { url, opts, usage };
}

/** An error as one line: name, message, the cause's code and the JSON-RPC code. */
export function errText(e) {
  let s = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  if (e?.cause) s += ` (cause: ${e.cause.code ?? e.cause.message ?? e.cause})`;
  return e?.code !== undefined && !s.includes(String(e.code)) ? `${s} (code ${e.code})` : s;
}

/** The text of a content block: its text, an embedded resource's text, or `[type]`. */
export const textOf = (c) => (typeof c?.text === 'string' ? c.text
  : typeof c?.resource?.text === 'string' ? c.resource.text : `[${c?.type}]`);

/** A tools/call result as {name, is_error, texts, types}. */
export const callSummary = (name, r) => ({
  name,
  is_error: Boolean(r.isError),
  texts: (r.content ?? []).filter((c) => typeof c.text === 'string').map((c) => c.text),
  types: (r.content ?? []).map((c) => c.type),
});

/**
 * A run of a probe: `out` is the JSON object it reports, `step` what it is doing (for the
 * failure report), `http` every request's method and status (`fetch` records them). The
 * run ends by itself after the timeout.
 */
export class Probe {
  constructor(script, out, timeoutS) {
    Object.assign(this, { script, out, step: 'load-sdk', http: [], lastStatus: null });
    this.timer = setTimeout(() => this.finish(1, `timeout after ${timeoutS}s`), timeoutS * 1000);
    process.on('unhandledRejection', (e) => this.finish(1, `unhandled rejection: ${errText(e)}`));
  }

  /** fetch() that records "METHOD status" (or "METHOD ERR") in `http`. */
  async fetch(input, init) {
    const method = init?.method ?? 'GET';
    try {
      const r = await fetch(input, init);
      this.lastStatus = r.status;
      this.http.push(`${method} ${r.status}`);
      return r;
    } catch (e) {
      this.http.push(`${method} ERR`);
      throw e;
    }
  }

  /**
   * The steps every probe makes on a connected client: tools/list (returned), tools/call
   * of opts.tool with opts.args, resources/read of opts.resource, prompts/get of
   * opts.prompt (an empty name skips the step) into out.call, out.resource, out.prompt.
   */
  async listCallReadPrompt(client, opts) {
    this.step = 'tools/list';
    const tools = (await client.listTools()).tools;
    if (opts.tool) {
      this.step = 'tools/call';
      this.out.call = callSummary(opts.tool, await client.callTool({ name: opts.tool, arguments: opts.args }));
    }
    if (opts.resource) {
      this.step = 'resources/read';
      this.out.resource = (await client.readResource({ uri: opts.resource })).contents
        .map((c) => (typeof c.text === 'string' ? c.text : `[blob ${c.blob ? c.blob.length : 0} base64 chars]`));
    }
    if (opts.prompt) {
      this.step = 'prompts/get';
      this.out.prompt = (await client.getPrompt({ name: opts.prompt })).messages.map((m) => textOf(m.content));
    }
    return tools;
  }

  /** Runs `body`, then reports (exit 0), or reports its error at the current step (exit 1). */
  async main(body) {
    try {
      await body();
      this.finish(0);
    } catch (e) {
      this.finish(1, errText(e));
    }
  }

  /** Prints `out` with the HTTP log as the last line and exits with `code`. */
  finish(code, error) {
    clearTimeout(this.timer);
    this.out.http = this.http;
    if (error !== undefined) {
      this.out.ok = false;
      this.out.failed_step = this.step;
      this.out.error = error;
      console.error(`${this.script}: failed at ${this.step}: ${error}`);
    } else {
      this.out.ok = true;
    }
    console.log(JSON.stringify(this.out));
    process.exit(code);
  }
}
