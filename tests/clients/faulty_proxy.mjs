// A reverse proxy on 127.0.0.1 in front of a relay, optionally misconfigured the way
// real deployments go wrong, for `bridge doctor` tests.
//
//   faulty_proxy.mjs UPSTREAM_ORIGIN pass|buffer|buffer-body|issuer [--port N] [--prefix /P] [--issuer URL]
//
//   pass     forwards requests and streams answers unchanged (chunks flushed as they come)
//   buffer   holds every answer until the upstream ends it, then sends it whole (with
//            Content-Length): an event stream never reaches the client
//   buffer-body  sends the status and headers at once but holds the body until the
//            upstream ends it (nginx with `proxy_buffering on` ignoring X-Accel-Buffering)
//   issuer   like pass, but rewrites `issuer` in authorization server metadata
//            (/.well-known/oauth-authorization-server…, /.well-known/openid-configuration…)
//            to --issuer (default https://auth.example.invalid)
//   --prefix serve the upstream under /P (the prefix is stripped; other paths get 404)
//
// Prints {"port":N} once listening.

import http from "node:http";

const args = process.argv.slice(2);
const [upstreamArg, mode] = args;
if (!upstreamArg || !["pass", "buffer", "buffer-body", "issuer"].includes(mode)) {
  console.error("usage: faulty_proxy.mjs UPSTREAM_ORIGIN pass|buffer|buffer-body|issuer [--port N] [--prefix /P] [--issuer URL]");
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

const server = http.createServer((req, res) => {
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
  req.pipe(up);
});

server.listen(port, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
