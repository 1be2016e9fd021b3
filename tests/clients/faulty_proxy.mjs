// A reverse proxy on 127.0.0.1 in front of a relay, optionally misconfigured the way
// real deployments go wrong, for `bridge doctor` tests.
//
//   faulty_proxy.mjs UPSTREAM_ORIGIN pass|buffer|buffer-body|issuer|refuse-envelope
//                    [--port N] [--prefix /P] [--issuer URL]
//
//   pass     forwards requests and streams answers unchanged (chunks flushed as they come)
//   buffer   holds every answer until the upstream ends it, then sends it whole (with
//            Content-Length): an event stream never reaches the client
//   buffer-body  sends the status and headers at once but holds the body until the
//            upstream ends it (nginx with `proxy_buffering on` ignoring X-Accel-Buffering)
//   issuer   like pass, but rewrites `issuer` in authorization server metadata
//            (/.well-known/oauth-authorization-server…, /.well-known/openid-configuration…)
//            to --issuer (default https://auth.example.invalid)
//   refuse-envelope  like pass, but answers every request carrying the 2026-07-28 `_meta`
//            envelope other than server/discover itself with the error a Python SDK 2.x
//            server gives on a connection opened with initialize (what bridges that passed
//            the envelope on to such a server answered)
//   --prefix serve the upstream under /P (the prefix is stripped; other paths get 404)
//
// Prints {"port":N} once listening.

import http from "node:http";

const args = process.argv.slice(2);
const [upstreamArg, mode] = args;
const MODES = ["pass", "buffer", "buffer-body", "issuer", "refuse-envelope"];
if (!upstreamArg || !MODES.includes(mode)) {
  console.error(`usage: faulty_proxy.mjs UPSTREAM_ORIGIN ${MODES.join("|")} [--port N] [--prefix /P] [--issuer URL]`);
  process.exit(2);
}
const upstream = new URL(upstreamArg);
let port = 0;
let prefix = "";
let issuer = "https://auth.example.invalid";
for (let i = 2; i < args.length; i++) {
  if (args[i] === "--port") port = Number(args[++i]);
  else if (args[i] === "--prefix") prefix = args[++i].replace(/\/+$/, "");
  else if (args[i] === "--issuer") issuer = args[++i];
}

const AS_METADATA = /^\/\.well-known\/(oauth-authorization-server|openid-configuration)(\/|$)/;

const ENVELOPE_VERSION = "io.modelcontextprotocol/protocolVersion";

const server = http.createServer((req, res) => {
  if (mode === "refuse-envelope" && req.method === "POST") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      let msg = null;
      try { msg = JSON.parse(body.toString("utf8")); } catch { /* forwarded as is */ }
      if (msg && msg.method && msg.method !== "server/discover" && msg.params?._meta?.[ENVELOPE_VERSION]) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id ?? null, error: { code: -32600,
          message: "this connection serves the handshake protocol era; requests carrying the 2026-07-28 envelope are not accepted on it" } }));
        return;
      }
      forward(req, res, body);
    });
    return;
  }
  forward(req, res, null);
});

/** Forwards `req` upstream; `body` is its already-read body, or null to stream it. */
function forward(req, res, body) {
  let path = req.url;
  if (prefix) {
    if (path !== prefix && !path.startsWith(prefix + "/")) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
      return;
    }
    path = path.slice(prefix.length) || "/";
  }
  const headers = { ...req.headers, host: upstream.host };
  const up = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path, headers },
    (ures) => {
      const rewrite = mode === "issuer" && ures.statusCode === 200 && AS_METADATA.test(path.split("?")[0]);
      if (mode === "buffer" || rewrite) {
        const chunks = [];
        ures.on("data", (c) => chunks.push(c));
        ures.on("end", () => {
          let body = Buffer.concat(chunks);
          if (rewrite) {
            const doc = JSON.parse(body.toString("utf8"));
            doc.issuer = issuer;
            body = Buffer.from(JSON.stringify(doc));
          }
          const h = { ...ures.headers };
          delete h["transfer-encoding"];
          h["content-length"] = String(body.length);
          res.writeHead(ures.statusCode, h);
          res.end(body);
        });
      } else if (mode === "buffer-body") {
        res.writeHead(ures.statusCode, ures.headers);
        res.flushHeaders();
        const chunks = [];
        ures.on("data", (c) => chunks.push(c));
        ures.on("end", () => res.end(Buffer.concat(chunks)));
      } else {
        res.writeHead(ures.statusCode, ures.headers);
        res.flushHeaders();
        ures.on("data", (c) => res.write(c));
        ures.on("end", () => res.end());
      }
    },
  );
  up.on("error", () => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end();
  });
  res.on("close", () => up.destroy());
  if (body === null) req.pipe(up);
  else up.end(body);
}

server.listen(port, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
