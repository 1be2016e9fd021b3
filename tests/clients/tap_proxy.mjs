// Recording reverse proxy on 127.0.0.1: shows which MCP protocol era a client really spoke.
//
// usage: node tap_proxy.mjs UPSTREAM_ORIGIN --log FILE [--port N]
//        node tap_proxy.mjs --summarize FILE [--wait SECONDS]
// Proxy mode forwards every request to UPSTREAM_ORIGIN (e.g. http://127.0.0.1:7171) unchanged:
// same path, same headers (Host included, so the upstream's Host/Origin checks still see what
// the client sent), the request body as received; responses, SSE included, are streamed back
// unbuffered. Once listening it prints {"port": N} on stdout and "tap_proxy listening port=N"
// on stderr. For every exchange it appends JSON lines to FILE:
//   {"n", "phase": "request", "method", "path", "headers": {...}, "rpc": <request body>}
//     written as soon as the request body is in (before it is forwarded);
//   {"n", "phase": "done", "status", "content_type", "response_headers": {...},
//    "messages": [<JSON-RPC messages of the response>], "events": [{"id","event","data"}],
//    "aborted": bool}
//     written when the response ended or either side closed it.
// "headers" keeps the MCP-relevant request headers (mcp-protocol-version, mcp-session-id,
// mcp-method, mcp-name, last-event-id, accept, content-type); "response_headers" keeps
// mcp-session-id and cache-control. "rpc" is the parsed JSON body (a string if it is not
// JSON, null without a body). "messages" are the JSON-RPC messages of a JSON body or of the
// `data:` of every SSE event (SSE events also listed in "events" as {id, event, data}, data
// parsed as JSON when it is, null when empty, as in a priming event). At most
// 4 MiB of a body is recorded; the rest still flows through. One change is made to what
// flows: in the first event of an SSE response, an `endpoint` event (the older HTTP+SSE
// transport's POST URL), an absolute URL on UPSTREAM_ORIGIN is rewritten to this proxy's
// origin, so the client's POSTs pass through the tap too ("rewrote_endpoint": true).
//
// Summary mode reads such a log (with --wait, until every exchange is done or SECONDS passed)
// and prints one JSON object:
//   {"exchanges": N, "methods": ["POST server/discover 200", ...], "initialize": n,
//    "discover": {"status", "result"|"error"}|null, "era": "modern"|"legacy"|null,
//    "protocol": "<version>"|null, "session_ids": [...]}
// era/protocol: "legacy" with the protocolVersion of the last successful initialize; else
// "modern" with the io.modelcontextprotocol/protocolVersion of the last request that carried
// one, when a request other than server/discover did; else null.
import fs from 'node:fs';
import http from 'node:http';
import { SseParser, parseJson } from './sse_events.mjs';

const PROTOCOL_META = 'io.modelcontextprotocol/protocolVersion';
const MAX_RECORD = 4 * 1024 * 1024;
const KEEP_REQUEST_HEADERS = ['mcp-protocol-version', 'mcp-session-id', 'mcp-method', 'mcp-name',
  'last-event-id', 'accept', 'content-type'];
const KEEP_RESPONSE_HEADERS = ['mcp-session-id', 'cache-control'];

const usage = (msg) => {
  console.error(`tap_proxy.mjs: ${msg}\nusage: node tap_proxy.mjs UPSTREAM_ORIGIN --log FILE [--port N]\n` +
    '       node tap_proxy.mjs --summarize FILE [--wait SECONDS]');
  process.exit(2);
};

/** The records of a log file, merged per exchange (request fields + done fields). */
const readLog = (file) => {
  const byN = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let rec;
    try { rec = JSON.parse(line); } catch { continue; }
    const prev = byN.get(rec.n) ?? {};
    byN.set(rec.n, { ...prev, ...rec, phase: prev.phase === 'done' || rec.phase === 'done' ? 'done' : rec.phase });
  }
  return [...byN.values()].sort((a, b) => a.n - b.n);
};

/** One-object summary of a log (see the header comment). */
const summarize = (records) => {
  const rpcs = (r) => (Array.isArray(r.rpc) ? r.rpc : r.rpc && typeof r.rpc === 'object' ? [r.rpc] : []);
  const isAnswer = (m, id) => m && typeof m === 'object' && m.id === id && ('result' in m || 'error' in m);
  // Streamable HTTP answers in the request's own response; HTTP+SSE on the GET stream.
  const answer = (r, id) => (r.messages ?? []).find((m) => isAnswer(m, id))
    ?? records.flatMap((x) => x.messages ?? []).find((m) => isAnswer(m, id));
  const methods = [];
  let initialize = 0;
  let discover = null;
  let handshakeProtocol = null;
  let statelessProtocol = null;
  const sessionIds = new Set();
  for (const r of records) {
    const sid = r.headers?.['mcp-session-id'] ?? r.response_headers?.['mcp-session-id'];
    if (sid) sessionIds.add(sid);
    const calls = rpcs(r);
    const label = calls.length ? calls.map((m) => m.method ?? (m.id !== undefined ? 'response' : '?')).join(',') : '-';
    methods.push(`${r.method} ${label} ${r.status ?? '?'}`);
    for (const m of calls) {
      const a = m.id !== undefined ? answer(r, m.id) : undefined;
      if (m.method === 'initialize') {
        initialize += 1;
        if (a?.result?.protocolVersion) handshakeProtocol = a.result.protocolVersion;
      } else if (m.method === 'server/discover') {
        discover = { status: r.status ?? null, ...(a ? ('result' in a ? { result: a.result } : { error: a.error }) : {}) };
      } else if (m.params?._meta?.[PROTOCOL_META]) {
        statelessProtocol = m.params._meta[PROTOCOL_META];
      }
    }
  }
  const era = handshakeProtocol ? 'legacy' : statelessProtocol ? 'modern' : null;
  return {
    exchanges: records.length, methods, initialize, discover, era,
    protocol: handshakeProtocol ?? statelessProtocol ?? null, session_ids: [...sessionIds],
  };
};

const pick = (headers, keys) => {
  const out = {};
  for (const k of keys) if (headers[k] !== undefined) out[k] = headers[k];
  return out;
};

const argv = process.argv.slice(2);
if (argv[0] === '--summarize') {
  if (!argv[1]) usage('--summarize needs a FILE');
  const wait = argv[2] === '--wait' ? Number(argv[3]) : 0;
  const deadline = Date.now() + wait * 1000;
  let records = readLog(argv[1]);
  while (records.some((r) => r.phase !== 'done') && Date.now() < deadline) {
    await new Promise((ok) => setTimeout(ok, 50));
    records = readLog(argv[1]);
  }
  console.log(JSON.stringify(summarize(records)));
  process.exit(0);
}

let upstream;
let logFile;
let port = 0;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--log') logFile = argv[++i];
  else if (a === '--port') port = Number(argv[++i]);
  else if (a.startsWith('--') || upstream) usage(`unexpected argument ${a}`);
  else upstream = a;
}
if (!upstream || !logFile) usage('UPSTREAM_ORIGIN and --log FILE are required');
const up = new URL(upstream);
if (up.protocol !== 'http:') usage('UPSTREAM_ORIGIN must be http://');
const log = fs.openSync(logFile, 'a');
const write = (rec) => fs.writeSync(log, `${JSON.stringify(rec)}\n`);
let seq = 0;

const server = http.createServer((req, res) => {
  const n = ++seq;
  const chunks = [];
  let size = 0;
  req.on('data', (c) => { chunks.push(c); size += c.length; });
  req.on('end', () => {
    const body = Buffer.concat(chunks, size);
    const text = body.subarray(0, MAX_RECORD).toString('utf8');
    write({ n, phase: 'request', method: req.method, path: req.url,
      headers: pick(req.headers, KEEP_REQUEST_HEADERS), rpc: size ? parseJson(text) : null });

    const done = { n, phase: 'done', status: null, content_type: null, response_headers: {},
      messages: [], events: [], aborted: false };
    let finished = false;
    const finish = (aborted) => {
      if (finished) return;
      finished = true;
      done.aborted = aborted;
      write(done);
    };
    const p = http.request(
      { hostname: up.hostname, port: up.port || 80, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        done.status = r.statusCode;
        done.content_type = r.headers['content-type'] ?? null;
        done.response_headers = pick(r.headers, KEEP_RESPONSE_HEADERS);
        res.writeHead(r.statusCode, r.headers);
        res.flushHeaders();
        const sse = /^text\/event-stream/i.test(done.content_type ?? '') ? new SseParser() : null;
        const jsonParts = [];
        let recorded = 0;
        // The HTTP+SSE transport names its POST URL in a first `endpoint` event; an
        // absolute URL on the upstream's origin is pointed at this proxy instead, so the
        // client's messages pass here too (and clients that insist on one origin accept it).
        let head = sse ? '' : null;
        const forward = (c) => {
          if (head === null) {
            res.write(c);
            return;
          }
          head += c.toString('latin1');
          const end = head.replace(/\r\n?/g, '\n').indexOf('\n\n');
          if (end === -1 && head.length < 65536) return;
          const text = head;
          head = null;
          const rewritten = /^event:\s*endpoint\s*$/m.test(text)
            ? text.split(`${up.protocol}//${up.host}/`).join(`http://127.0.0.1:${server.address().port}/`)
            : text;
          if (rewritten !== text) done.rewrote_endpoint = true;
          res.write(Buffer.from(rewritten, 'latin1'));
        };
        r.on('data', (c) => {
          if (recorded < MAX_RECORD) {
            const part = c.subarray(0, MAX_RECORD - recorded);
            recorded += part.length;
            if (sse) {
              for (const ev of sse.feed(part.toString('utf8'))) {
                const data = ev.data === null ? null : parseJson(ev.data);
                done.events.push({ id: ev.id, event: ev.event, data });
                if (data && typeof data === 'object') done.messages.push(data);
              }
            } else {
              jsonParts.push(part);
            }
          }
          forward(c);
        });
        r.on('end', () => {
          if (head) res.write(Buffer.from(head, 'latin1'));
          if (!sse && jsonParts.length) {
            const v = parseJson(Buffer.concat(jsonParts).toString('utf8'));
            if (Array.isArray(v)) done.messages.push(...v);
            else if (v && typeof v === 'object') done.messages.push(v);
          }
          res.end();
          finish(false);
        });
        r.on('error', () => { res.destroy(); finish(true); });
        r.on('aborted', () => { res.destroy(); finish(true); });
      },
    );
    p.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(e));
      done.status = done.status ?? 502;
      finish(true);
    });
    res.on('close', () => {
      if (!res.writableFinished) {
        p.destroy();
        finish(true);
      }
    });
    p.end(body);
  });
});
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  console.log(JSON.stringify({ port: actual }));
  console.error(`tap_proxy listening port=${actual}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
