#!/usr/bin/env node
// The Windows MCP server of the Wine tests (tests/tests/wine): run by Node for Windows
// (node.exe) behind an npx-style .cmd shim, it stands in for a server's entry point and then
// runs the real @modelcontextprotocol/server-everything in this process.
//
// Before serving it
// - writes the arguments it got, as JSON, to %ARGV_FILE% (what the shim passed on);
// - starts a detached child process that runs until it is killed, with %WINE_TEST_MARKER%
//   in its command line (so the test can see whether the server's whole tree is gone);
// - appends the method of every JSON-RPC message it reads to %REQUESTS_FILE% (so the test
//   can wait for a call to be in flight).
import { appendFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const marker = process.env.WINE_TEST_MARKER ?? 'wine-test-grandchild';
// Detached: Node on Windows puts the children it spawns in a job of its own that ends
// with it, unless they are detached, as helpers that outlive their parent are.
spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)', marker], {
  stdio: 'ignore',
  detached: true,
}).unref();
writeFileSync(process.env.ARGV_FILE, JSON.stringify(args));

// Watches what the server reads without reading it: a 'data' listener of our own would
// start the stream flowing before server-everything listens, and it would miss messages.
let pending = '';
const emit = process.stdin.emit.bind(process.stdin);
process.stdin.emit = (event, ...rest) => {
  if (event === 'data') {
    pending += rest[0].toString('utf8');
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      try {
        const method = JSON.parse(line).method;
        if (method) appendFileSync(process.env.REQUESTS_FILE, method + '\n');
      } catch {
        // not JSON: server-everything answers it
      }
    }
  }
  return emit(event, ...rest);
};

// server-everything reads its transport from argv: give it none of ours (stdio).
process.argv = process.argv.slice(0, 2);
await import(pathToFileURL(process.env.SERVER_EVERYTHING_JS).href);
