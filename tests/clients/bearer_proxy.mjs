// Tiny streaming reverse proxy on 127.0.0.1 for bearer-token plumbing in tests.
//
// usage: node bearer_proxy.mjs inject|require UPSTREAM_ORIGIN [LISTEN_PORT]
//   inject   set "Authorization: Bearer $MCP_BEARER" on every forwarded request (the
//            conformance CLI has no header option: conformance.sh puts this in front of an
//            OAuth/bearer-protected endpoint)
//   require  answer 401 (WWW-Authenticate: Bearer) unless the request carries exactly
//            "Authorization: Bearer $MCP_BEARER", else forward it (checks that a client sends
//            the token)
// LISTEN_PORT defaults to 0 (an ephemeral port). Once listening it prints one JSON line
// {"port": N} on stdout; then one JSON line per request on stderr
// {"method","url","authorization_ok","status"}.
// The Host header is passed through unchanged (so Host/Origin checks of the upstream still see
// what the client sent); responses, SSE included, are streamed through unbuffered.
import http from 'node:http';

const [mode, upstream, portArg] = process.argv.slice(2);
if (!['inject', 'require'].includes(mode) || !upstream) {
  console.error('usage: node bearer_proxy.mjs inject|require UPSTREAM_ORIGIN [LISTEN_PORT]');
  process.exit(2);
}
const token = process.env.MCP_BEARER;
if (!token) {
  console.error('bearer_proxy.mjs: MCP_BEARER is not set');
  process.exit(2);
}
const up = new URL(upstream);
const expected = `Bearer ${token}`;

const server = http.createServer((req, res) => {
  const authOk = req.headers.authorization === expected;
  const log = (status) => console.error(JSON.stringify({ method: req.method, url: req.url, authorization_ok: authOk, status }));
  if (mode === 'require' && !authOk) {
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
    res.end(JSON.stringify({ error: 'invalid_token', error_description: 'missing or wrong bearer token' }));
    log(401);
    req.resume();
    return;
  }
  const headers = { ...req.headers, authorization: expected };
  const p = http.request(
    { hostname: up.hostname, port: up.port || 80, path: req.url, method: req.method, headers },
    (r) => {
      res.writeHead(r.statusCode, r.headers);
      res.flushHeaders();
      r.pipe(res);
      log(r.statusCode);
    },
  );
  p.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(String(e));
    log(502);
  });
  req.pipe(p);
  res.on('close', () => p.destroy());
});
server.listen(Number(portArg ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
