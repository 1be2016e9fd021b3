// Drives the relay's status page (GET /status) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core (pinned in tests/deps/package.json), JavaScript
// disabled in the page: only its plain forms and links work.
//
// usage: node status_browser.mjs MODE URL [--secret S] [--revoke TEXT] [--timeout S]
//                                [--screenshot FILE]
// Run with $NODE22. playwright-core is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh); the browser is
// $CHROMIUM (default /usr/bin/chromium) and is never downloaded.
//
// MODE
//   session  open URL (the status page), report the sign-in page, sign in with --secret,
//            report the dashboard; with --revoke press the Revoke button of the client row
//            whose text contains TEXT and report the page it lands on; then press "Log out"
//            and report the page after it.
//   wrong    open URL, sign in with --secret (a wrong one), report the answer.
//   frame    open URL (a page of another origin that embeds the status page in an iframe)
//            and report what each frame shows.
//
// stdout: JSON lines.
//   {"event":"login"|"dashboard"|"revoked"|"logged_out"|"refused", ...}  a page as shown:
//       url, status, headers (lower-case names) of the document's response, title,
//       body_text (innerText of body), notice (#notice), who (#who), rows {tunnels, clients,
//       calls, events} (innerText of tr.tunnel, tr.client, tr.call, tr.event), scripts,
//       embedded (iframe, img, link, object, … elements), handler_attrs (on* attributes),
//       forms [{action, method, buttons, inputs}], cookies (the context's cookies: name,
//       httpOnly, sameSite, secure, path; never the value), raw_html
//   last line: {"ok":true, "mode", "final_url", "requests", "documents", "frames" (frame
//       mode)}; on failure {"ok":false, "error", "step", ...} and exit 1 (2 = bad usage),
//       the reason also on stderr.
// requests: every request of the browser context, [{method, url, type}].
// documents: every document response, [{url, method, status, headers}].
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules =
  process.env.TS_SDK_DIR || path.join(here, '..', '..', '.test-deps', 'node', 'node_modules');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags this machine needs: no sandbox as root, no GPU, no QUIC, and no background
// traffic (the network is closed).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// ---------------------------------------------------------------- arguments
const usage = (msg) => {
  console.error(`status_browser.mjs: ${msg}\nusage: node status_browser.mjs ` +
    'session|wrong|frame URL [--secret S] [--revoke TEXT] [--timeout S] [--screenshot FILE]');
  process.exit(2);
};
const argv = process.argv.slice(2);
const [mode, url] = argv;
if (!['session', 'wrong', 'frame'].includes(mode)) usage(`unknown mode ${mode}`);
if (!url) usage('URL is missing');
const opts = { secret: null, revoke: null, timeout: 30, screenshot: null };
for (let i = 2; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  switch (a) {
    case '--secret': opts.secret = val(); break;
    case '--revoke': opts.revoke = val(); break;
    case '--timeout': opts.timeout = Number(val()); break;
    case '--screenshot': opts.screenshot = val(); break;
    default: usage(`unknown option ${a}`);
  }
}
if (mode !== 'frame' && opts.secret === null) usage(`${mode} needs --secret`);
if (!(opts.timeout > 0)) usage('--timeout must be positive');

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// ---------------------------------------------------------------- the run
let step = 'load playwright-core';
const requests = [];
const documents = [];
let browser;

const run = async () => {
  const { chromium } = await import(
    pathToFileURL(path.join(nodeModules, 'playwright-core', 'index.mjs')).href);
  step = 'launch chromium';
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const deadline = Date.now() + opts.timeout * 1000;
  const left = () => Math.max(1, deadline - Date.now());
  page.setDefaultTimeout(opts.timeout * 1000);

  context.on('request', (r) => {
    requests.push({ method: r.method(), url: r.url(), type: r.resourceType() });
  });
  // Each document response, in order; `pending` resolves with the body of the last one.
  context.on('response', async (r) => {
    if (r.request().resourceType() !== 'document') return;
    const entry = { url: r.url(), method: r.request().method(), status: r.status(), headers: {} };
    documents.push(entry);
    try { entry.headers = await r.allHeaders(); } catch { /* the page went away */ }
    try { entry.body = await r.text(); } catch { entry.body = null; }
  });

  /** The page as shown now, with the last document response's status and headers. */
  const observe = async (event) => {
    await page.waitForLoadState('load', { timeout: left() });
    // Let the response handler finish reading the last document.
    await page.waitForTimeout(50);
    const last = documents[documents.length - 1] || {};
    const dom = await page.evaluate(() => {
      const one = (sel) => { const e = document.querySelector(sel); return e ? e.innerText : null; };
      const all = (sel) => [...document.querySelectorAll(sel)].map((e) => e.innerText);
      const handlers = [];
      for (const e of document.querySelectorAll('*')) {
        for (const a of e.attributes) {
          if (/^on/i.test(a.name)) handlers.push(`${e.tagName.toLowerCase()}[${a.name}]`);
        }
      }
      return {
        title: document.title,
        body_text: document.body ? document.body.innerText : '',
        notice: one('#notice'),
        who: one('#who'),
        rows: {
          tunnels: all('tr.tunnel'), clients: all('tr.client'),
          calls: all('tr.call'), events: all('tr.event'),
        },
        scripts: document.scripts.length,
        embedded: document.querySelectorAll(
          'iframe, frame, object, embed, img, picture, video, audio, source, link, svg, base').length,
        handler_attrs: handlers,
        forms: [...document.forms].map((f) => ({
          action: f.action,
          method: f.method,
          buttons: [...f.querySelectorAll('button')].map((b) => b.innerText),
          inputs: [...f.querySelectorAll('input')].map((i) => ({ type: i.type, name: i.name })),
        })),
      };
    });
    const cookies = (await context.cookies()).map((c) => ({
      name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure, path: c.path,
    }));
    const report = {
      event, url: page.url(), status: last.status, headers: last.headers || {},
      ...dom, cookies, raw_html: last.body,
    };
    emit(report);
    return report;
  };

  /** Clicks `button` (a form's submit) and waits for the page the form leads to. */
  const submit = async (button) => {
    const before = documents.length;
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'load', timeout: left() }),
      button.click({ timeout: left() }),
    ]);
    while (documents.length === before && Date.now() < deadline) await page.waitForTimeout(20);
  };

  step = `open ${url}`;
  const response = await page.goto(url, { timeout: left() });
  if (!response) throw new Error('no response for the first navigation');

  if (mode === 'frame') {
    step = 'wait for the iframe';
    const sub = () => page.frames().find((f) => f !== page.mainFrame() && f.url() !== 'about:blank');
    while (!sub() && Date.now() < deadline) await page.waitForTimeout(50);
    await page.waitForLoadState('load', { timeout: left() });
    await page.waitForTimeout(300);
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
    step = 'inspect the frames';
    const frames = [];
    for (const f of page.frames()) {
      const entry = { url: f.url(), main: f === page.mainFrame(), name: f.name() };
      try {
        Object.assign(entry, await f.evaluate(() => ({
          text: document.body ? document.body.innerText : '',
          status_markup: Boolean(document.querySelector('form, #tunnels, #who')),
        })));
      } catch (e) {
        entry.eval_error = String(e.message || e).split('\n')[0];
      }
      frames.push(entry);
    }
    return { frames, final_url: page.url() };
  }

  step = 'read the sign-in page';
  await observe('login');
  step = 'sign in';
  await page.locator('form#login input[name=secret]').fill(opts.secret, { timeout: left() });
  await submit(page.getByRole('button', { name: 'Sign in' }));
  if (mode === 'wrong') {
    step = 'read the refusal';
    await observe('refused');
    return { final_url: page.url() };
  }
  step = 'read the dashboard';
  await observe('dashboard');
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });

  if (opts.revoke !== null) {
    step = `press Revoke for ${opts.revoke}`;
    const row = page.locator('tr.client', { hasText: opts.revoke });
    if ((await row.count()) !== 1) throw new Error(`${await row.count()} client rows show ${opts.revoke}`);
    await submit(row.getByRole('button', { name: 'Revoke' }));
    step = 'read the page after revoking';
    await observe('revoked');
  }
  step = 'log out';
  await submit(page.getByRole('button', { name: 'Log out' }));
  step = 'read the page after logging out';
  await observe('logged_out');
  return { final_url: page.url() };
};

const timer = setTimeout(() => {
  fail(new Error(`timed out after ${opts.timeout} s`));
}, opts.timeout * 1000 + 5000);

let failed = false;
async function fail(e) {
  if (failed) return;
  failed = true;
  const error = String((e && e.message) || e).split('\n')[0];
  console.error(`status_browser.mjs: ${step}: ${error}`);
  emit({ ok: false, mode, step, error, requests, documents: documents.map(({ body, ...d }) => d) });
  try { if (browser) await browser.close(); } catch { /* already gone */ }
  process.exit(1);
}

try {
  const result = await run();
  clearTimeout(timer);
  emit({ ok: true, mode, ...result, requests, documents: documents.map(({ body, ...d }) => d) });
  await browser.close();
} catch (e) {
  clearTimeout(timer);
  await fail(e);
}
