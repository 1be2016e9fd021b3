// Preload (NODE_OPTIONS="--require /path/to/loopback.cjs") that forces a Node server's
// listen(port[, cb]) / listen({port}) without an explicit host onto 127.0.0.1, for third-party
// servers that have no bind-address option (e.g. @modelcontextprotocol/server-everything's
// streamableHttp / sse modes, which otherwise listen on all interfaces).
'use strict';
const net = require('net');
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && !args[0].host && !args[0].path) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return orig.apply(this, args);
};
