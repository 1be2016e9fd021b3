// Shows a ChatGPT Apps / MCP Apps widget the way a hosted client does, in headless Chromium
// (Debian's /usr/bin/chromium) with playwright-core (pinned in tests/deps/package.json),
// JavaScript on: the widget HTML (a `resources/read` text) goes into a sandboxed iframe
// (`sandbox="allow-scripts"`, so an opaque origin, as on the client's sandbox domain) under
// a Content-Security-Policy built from the widget CSP the server declared
// (`openai/widgetCSP`: `resource_domains` for scripts, styles, images and fonts,
// `connect_domains` for fetch).
//
// usage: node widget_browser.mjs show WIDGET_JSON [--expect TEXT] [--timeout S]
//                                [--screenshot FILE]
// Run with $NODE22; playwright-core and Chromium as browser_driver.mjs says.
//
// WIDGET_JSON: a file holding {"html": "...", "csp": {"resource_domains": [..],
// "connect_domains": [..]}}.
//
// MODE
//   show   write the host page next to WIDGET_JSON, open it, wait until the widget's
//          #board says TEXT (--expect; default: anything but its initial text) or the
//          deadline, and report.
//
// stdout: one JSON line, {"ok":true, "mode", "board" (#board's text), "board_color" (its
//   computed colour), "loaded" (the URLs of the files the widget loaded, from its
//   Resource Timing entries), "csp" (the policy the frame got), "requests" [{url, status,
//   type}] (what the browser saw answered),
//   "console" (console messages, CSP violations among them)}; on failure {"ok":false,
//   "error", "step", ...} and exit 1 (2 = bad usage), the reason also on stderr.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Run, parseArgs } from './browser_driver.mjs';

const { mode, url: widgetJson, opts } = parseArgs(
  'widget_browser.mjs',
  'show WIDGET_JSON [--expect TEXT] [--timeout S] [--screenshot FILE]',
  ['show'],
  { '--expect': 'expect' },
  { expect: null },
);

const requests = [];
const consoleLines = [];
let csp = '';
const r = new Run('widget_browser.mjs', mode, opts);

/** An attribute value, escaped for double quotes. */
const attr = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

const run = async () => {
  r.step = 'read the widget';
  const widget = JSON.parse(fs.readFileSync(widgetJson, 'utf8'));
  const list = (k) => (widget.csp && Array.isArray(widget.csp[k]) ? widget.csp[k] : []).join(' ');
  const res = list('resource_domains');
  csp = `default-src 'none'; script-src ${res}; style-src ${res}; img-src ${res} data:; `
    + `font-src ${res}; connect-src ${list('connect_domains')}`;
  const doc = `<!doctype html><html><head><meta charset="utf-8">`
    + `<meta http-equiv="Content-Security-Policy" content="${attr(csp)}"></head>`
    + `<body>${widget.html}</body></html>`;
  const host = path.join(path.dirname(widgetJson), 'host.html');
  fs.writeFileSync(host, `<!doctype html><title>host</title>`
    + `<iframe name="widget" sandbox="allow-scripts" style="width:600px;height:200px" `
    + `srcdoc="${attr(doc)}"></iframe>`);

  const { context, page, left } = await r.launch({ javaScript: true });
  context.on('response', (q) => {
    requests.push({ url: q.url(), status: q.status(), type: q.request().resourceType() });
  });
  context.on('requestfailed', (q) => {
    requests.push({ url: q.url(), status: null, type: q.resourceType(), failure: q.failure()?.errorText });
  });
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));

  r.step = 'open the host page';
  await page.goto(pathToFileURL(host).href, { timeout: left() });
  const frame = () => page.frames().find((f) => f.name() === 'widget');
  r.step = 'wait for the widget';
  let board = null;
  let color = null;
  while (Date.now() < r.deadline) {
    const f = frame();
    if (f) {
      try {
        ({ board, color } = await f.evaluate(() => {
          const b = document.getElementById('board');
          return { board: b ? b.innerText : null, color: b ? getComputedStyle(b).color : null };
        }));
      } catch { /* the frame is still loading */ }
      const done = opts.expect === null
        ? board !== null && board !== 'waiting for board.js'
        : board === opts.expect;
      if (done) break;
    }
    await page.waitForTimeout(50);
  }
  // Let the last requests finish (a style applied after the script).
  await page.waitForTimeout(200);
  let loaded = [];
  try {
    ({ color, loaded } = await frame().evaluate(() => ({
      color: getComputedStyle(document.getElementById('board')).color,
      loaded: performance.getEntriesByType('resource').map((e) => e.name),
    })));
  } catch { /* reported as it was */ }
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
  return { board, board_color: color, loaded };
};

r.main(run, () => ({ csp, requests, console: consoleLines }));
