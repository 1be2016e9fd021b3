// Drives the relay's OAuth consent page in headless Chromium (Debian's /usr/bin/chromium) with
// playwright-core (pinned in tests/deps/package.json), JavaScript disabled in the page.
//
// usage: node consent_browser.mjs MODE URL [--redirect PREFIX] [--password P]
//                                 [--wrong-password P] [--timeout S] [--screenshot FILE]
// Run with $NODE22. playwright-core is loaded from $TS_SDK_DIR (default:
// <repo>/.test-deps/node/node_modules, installed by tests/deps/install.sh); the browser is
// $CHROMIUM (default /usr/bin/chromium) and is never downloaded.
//
// MODE
//   approve   open URL (an authorization URL), report the consent page, then wait (without
//             touching the page) until its own meta refresh lands on the redirect URI: the
//             owner approves out of band, e.g. with `bridge approve <code>`.
//   deny      open URL, report the page, press Deny, wait for the redirect URI.
//   operator  open URL, report the page; with --wrong-password submit that first and report
//             the answer; then submit --password with "Approve as operator", wait for the
//             redirect URI.
//   frame     open URL (a page of another origin that embeds the consent page in an iframe)
//             and report what each frame shows.
//
// stdout: JSON lines.
//   {"event":"page", ...}   the consent page as loaded (modes approve, deny, operator):
//       status, headers (lower-case names), raw_html, title, body_text (innerText of body),
//       tunnel / redirect_host / client / client_html / code (the #ids), meta_refresh, scripts,
//       images, embedded (iframe, img, link, object, … elements), handler_attrs (on*
//       attributes), forms [{action, method, buttons, inputs}], requests (so far)
//   {"event":"wrong_password", "status", "notice", "url"}   (operator mode)
//   last line: {"ok":true, "mode", "final_url", "final_text", "requests", "documents",
//       "console", "frames" (frame mode)}; on failure {"ok":false, "error", "step", ...} and
//       exit 1 (2 = bad usage), the reason also on stderr.
// requests: every request of the browser context, [{method, url, type, navigation, main}].
// documents: every document response, [{url, status, headers}].
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules =
  process.env.TS_SDK_DIR || path.join(here, '..', '..', '.test-deps', 'node', 'node_modules');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags this machine needs (see the environment notes): no sandbox as root, no GPU, no
// QUIC, and no background traffic to Google's hosts (the network is closed).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// ---------------------------------------------------------------- arguments
const usage = (msg) => {
  console.error(`consent_browser.mjs: ${msg}\nusage: node consent_browser.mjs ` +
    'approve|deny|operator|frame URL [--redirect PREFIX] [--password P] [--wrong-password P] ' +
    '[--timeout S] [--screenshot FILE]');
  process.exit(2);
};
const argv = process.argv.slice(2);
const [mode, url] = argv;
if (!['approve', 'deny', 'operator', 'frame'].includes(mode)) usage(`unknown mode ${mode}`);
if (!url) usage('URL is missing');
const opts = { redirect: null, password: null, wrongPassword: null, timeout: 30, screenshot: null };
for (let i = 2; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  switch (a) {
    case '--redirect': opts.redirect = val(); break;
    case '--password': opts.password = val(); break;
    case '--wrong-password': opts.wrongPassword = val(); break;
    case '--timeout': opts.timeout = Number(val()); break;
    case '--screenshot': opts.screenshot = val(); break;
    default: usage(`unknown option ${a}`);
  }
}
if (mode !== 'frame' && !opts.redirect) usage(`${mode} needs --redirect`);
if (mode === 'operator' && opts.password === null) usage('operator needs --password');
if (!(opts.timeout > 0)) usage('--timeout must be positive');

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// ---------------------------------------------------------------- the run
let step = 'load playwright-core';
const requests = [];
const documents = [];
const consoleMessages = [];
let browser;

const run = async () => {
  const { chromium } = await import(
    pathToFileURL(path.join(nodeModules, 'playwright-core', 'index.mjs')).href);
  step = 'launch chromium';
  // Playwright gives every launch a new, empty --user-data-dir and removes it afterwards.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const deadline = Date.now() + opts.timeout * 1000;
  const left = () => Math.max(1, deadline - Date.now());
  page.setDefaultTimeout(opts.timeout * 1000);

  context.on('request', (r) => {
    requests.push({
      method: r.method(), url: r.url(), type: r.resourceType(),
      navigation: r.isNavigationRequest(), main: r.frame() === page.mainFrame(),
    });
  });
  context.on('response', async (r) => {
    if (r.request().resourceType() !== 'document') return;
    let headers = {};
    try { headers = await r.allHeaders(); } catch { /* the page went away */ }
    documents.push({ url: r.url(), status: r.status(), headers });
  });
  page.on('console', (m) => consoleMessages.push({ type: m.type(), text: m.text() }));

  const atRedirect = (u) => u.href.startsWith(opts.redirect);
  const waitForRedirect = async () => {
    step = 'wait for the redirect URI';
    await page.waitForURL(atRedirect, { timeout: left(), waitUntil: 'load' });
  };

  step = `open ${url}`;
  const response = await page.goto(url, { timeout: left() });
  if (!response) throw new Error('no response for the first navigation');

  if (mode === 'frame') {
    step = 'wait for the iframe';
    const sub = () => page.frames().find((f) => f !== page.mainFrame() && f.url() !== 'about:blank');
    while (!sub() && Date.now() < deadline) await page.waitForTimeout(50);
    await page.waitForLoadState('load', { timeout: left() });
    // Give a (wrongly) rendered frame time to paint.
    await page.waitForTimeout(300);
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
    step = 'inspect the frames';
    const frames = [];
    for (const f of page.frames()) {
      const entry = { url: f.url(), main: f === page.mainFrame(), name: f.name() };
      try {
        Object.assign(entry, await f.evaluate(() => ({
          text: document.body ? document.body.innerText : '',
          consent_markup: Boolean(document.querySelector('#code, #tunnel, #client, form')),
        })));
      } catch (e) {
        entry.eval_error = String(e.message || e).split('\n')[0];
      }
      frames.push(entry);
    }
    return { frames, final_url: page.url() };
  }

  step = 'inspect the consent page';
  const page_ = await observe(page, response);
  emit({ event: 'page', ...page_, requests: [...requests] });
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });

  if (mode === 'deny') {
    step = 'press Deny';
    await page.getByRole('button', { name: 'Deny' }).click({ timeout: left() });
    await waitForRedirect();
  } else if (mode === 'operator') {
    const field = () => page.locator('input[type=password][name=password]');
    const approve = () => page.getByRole('button', { name: 'Approve as operator' });
    if (opts.wrongPassword !== null) {
      step = 'submit a wrong operator password';
      await field().fill(opts.wrongPassword, { timeout: left() });
      const [answer] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST', { timeout: left() }),
        approve().click({ timeout: left() }),
      ]);
      await page.waitForLoadState('load', { timeout: left() });
      emit({
        event: 'wrong_password', status: answer.status(), url: page.url(),
        notice: await page.evaluate(() => document.querySelector('.warn')?.innerText ?? null),
      });
    }
    step = 'submit the operator password';
    await field().fill(opts.password, { timeout: left() });
    await approve().click({ timeout: left() });
    await waitForRedirect();
  } else {
    await waitForRedirect();
  }
  step = 'read the landing page';
  const final_text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
  return { final_url: page.url(), final_text };
};

/** What the consent page shows and how it is built. */
async function observe(page, response) {
  const raw_html = await response.text();
  const dom = await page.evaluate(() => {
    const one = (sel, f) => { const e = document.querySelector(sel); return e ? f(e) : null; };
    const handlers = [];
    for (const e of document.querySelectorAll('*')) {
      for (const a of e.attributes) {
        if (/^on/i.test(a.name)) handlers.push(`${e.tagName.toLowerCase()}[${a.name}]`);
      }
    }
    return {
      title: document.title,
      body_text: document.body ? document.body.innerText : '',
      tunnel: one('#tunnel', (e) => e.innerText),
      redirect_host: one('#redirect-host', (e) => e.innerText),
      client: one('#client', (e) => e.innerText),
      client_html: one('#client', (e) => e.innerHTML),
      client_children: one('#client', (e) => e.children.length),
      code: one('#code', (e) => e.innerText),
      meta_refresh: one('meta[http-equiv="refresh" i]', (e) => e.content),
      scripts: document.scripts.length,
      images: document.images.length,
      embedded: document.querySelectorAll(
        'iframe, frame, object, embed, img, picture, video, audio, source, link, svg, base').length,
      handler_attrs: handlers,
      forms: [...document.forms].map((f) => ({
        action: f.action,
        method: f.method,
        buttons: [...f.querySelectorAll('button')].map((b) => ({ text: b.innerText, name: b.name, value: b.value })),
        inputs: [...f.querySelectorAll('input')].map((i) => ({ type: i.type, name: i.name })),
      })),
    };
  });
  return { url: page.url(), status: response.status(), headers: await response.allHeaders(), raw_html, ...dom };
}

const timer = setTimeout(() => {
  fail(new Error(`timed out after ${opts.timeout} s`));
}, opts.timeout * 1000 + 5000);

let failed = false;
async function fail(e) {
  if (failed) return;
  failed = true;
  const error = String((e && e.message) || e).split('\n')[0];
  console.error(`consent_browser.mjs: ${step}: ${error}`);
  emit({ ok: false, mode, step, error, requests, documents, console: consoleMessages });
  try { if (browser) await browser.close(); } catch { /* already gone */ }
  process.exit(1);
}

try {
  const result = await run();
  clearTimeout(timer);
  emit({ ok: true, mode, ...result, requests, documents, console: consoleMessages });
  await browser.close();
} catch (e) {
  clearTimeout(timer);
  await fail(e);
}
