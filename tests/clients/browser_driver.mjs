// What the browser drivers (consent_browser.mjs, status_browser.mjs, widget_browser.mjs)
// share: their command line, headless Chromium (Debian's /usr/bin/chromium) through
// playwright-core with JavaScript disabled in the page (unless a driver asks for it), the frames of a page of another origin, and the JSON
// lines they report with.
//
// playwright-core is loaded from $TS_SDK_DIR (default: <repo>/.test-deps/node/node_modules,
// installed by tests/deps/install.sh); the browser is $CHROMIUM (default /usr/bin/chromium)
// and is never downloaded.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules =
  process.env.TS_SDK_DIR || path.join(here, '..', '..', '.test-deps', 'node', 'node_modules');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags this machine needs: no sandbox as root, no GPU, no QUIC, and no background
// traffic to Google's hosts (the network is closed).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Writes one JSON line on stdout. */
export const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/**
 * Parses `MODE URL [options]`: `modes` are the allowed modes, `options` maps each option
 * (`--redirect`) to its key in the result (`redirect`), `defaults` gives the initial values
 * (`timeout` always 30). Exits 2 with the usage on a mistake.
 */
export function parseArgs(script, usageLine, modes, options, defaults) {
  const usage = (msg) => {
    console.error(`${script}: ${msg}\nusage: node ${script} ${usageLine}`);
    process.exit(2);
  };
  const argv = process.argv.slice(2);
  const [mode, url] = argv;
  if (!modes.includes(mode)) usage(`unknown mode ${mode}`);
  if (!url) usage('URL is missing');
  const opts = { timeout: 30, screenshot: null, ...defaults };
  const all = { ...options, '--timeout': 'timeout', '--screenshot': 'screenshot' };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (!(a in all)) usage(`unknown option ${a}`);
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    opts[all[a]] = argv[++i];
  }
  opts.timeout = Number(opts.timeout);
  if (!(opts.timeout > 0)) usage('--timeout must be positive');
  return { mode, url, opts, usage };
}

/**
 * A run of a driver: `step` says what it is doing (for the failure report), `launch` opens
 * a page of a fresh context with JavaScript off unless `javaScript` (and hands out `left` too), `left` is the
 * time left before the deadline.
 */
export class Run {
  constructor(script, mode, opts) {
    Object.assign(this, { script, mode, opts, step: 'load playwright-core', browser: null });
    this.deadline = Date.now() + opts.timeout * 1000;
  }

  left() {
    return Math.max(1, this.deadline - Date.now());
  }

  async launch({ javaScript = false } = {}) {
    const { chromium } = await import(
      pathToFileURL(path.join(nodeModules, 'playwright-core', 'index.mjs')).href);
    this.step = 'launch chromium';
    // Playwright gives every launch a new, empty --user-data-dir and removes it afterwards.
    this.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const context = await this.browser.newContext({ javaScriptEnabled: javaScript });
    const page = await context.newPage();
    page.setDefaultTimeout(this.opts.timeout * 1000);
    return { context, page, left: () => this.left() };
  }

  /**
   * The frames of a page of another origin that embeds the page under test, once the
   * first subframe has loaded: each frame's URL, name, text, and whether `markup` (a
   * selector of the page under test) matched, reported as `key`.
   */
  async frames(page, markup, key) {
    this.step = 'wait for the iframe';
    const sub = () => page.frames().find((f) => f !== page.mainFrame() && f.url() !== 'about:blank');
    while (!sub() && Date.now() < this.deadline) await page.waitForTimeout(50);
    await page.waitForLoadState('load', { timeout: this.left() });
    // Give a (wrongly) rendered frame time to paint.
    await page.waitForTimeout(300);
    if (this.opts.screenshot) await page.screenshot({ path: this.opts.screenshot });
    this.step = 'inspect the frames';
    const frames = [];
    for (const f of page.frames()) {
      const entry = { url: f.url(), main: f === page.mainFrame(), name: f.name() };
      try {
        Object.assign(entry, await f.evaluate(([sel, k]) => ({
          text: document.body ? document.body.innerText : '',
          [k]: Boolean(document.querySelector(sel)),
        }), [markup, key]));
      } catch (e) {
        entry.eval_error = String(e.message || e).split('\n')[0];
      }
      frames.push(entry);
    }
    return { frames, final_url: page.url() };
  }

  /**
   * Runs `body` under the deadline and reports: its result merged with `report()` on the
   * last line (`"ok": true`), or the failure (`"ok": false`, the step, the error) and exit 1.
   */
  async main(body, report) {
    let failed = false;
    const fail = async (e) => {
      if (failed) return;
      failed = true;
      const error = String((e && e.message) || e).split('\n')[0];
      console.error(`${this.script}: ${this.step}: ${error}`);
      emit({ ok: false, mode: this.mode, step: this.step, error, ...report() });
      try { if (this.browser) await this.browser.close(); } catch { /* already gone */ }
      process.exit(1);
    };
    const timer = setTimeout(() => {
      fail(new Error(`timed out after ${this.opts.timeout} s`));
    }, this.opts.timeout * 1000 + 5000);
    try {
      const result = await body();
      clearTimeout(timer);
      emit({ ok: true, mode: this.mode, ...result, ...report() });
      await this.browser.close();
    } catch (e) {
      clearTimeout(timer);
      await fail(e);
    }
  }
}

/** Run in the page: the `on*` attributes of every element, as `tag[attribute]`. */
export function handlerAttributes() {
  const handlers = [];
  for (const e of document.querySelectorAll('*')) {
    for (const a of e.attributes) {
      if (/^on/i.test(a.name)) handlers.push(`${e.tagName.toLowerCase()}[${a.name}]`);
    }
  }
  return handlers;
}

/** Run in the page: how many elements embed or load something. */
export function embeddedCount() {
  return document.querySelectorAll(
    'iframe, frame, object, embed, img, picture, video, audio, source, link, svg, base').length;
}
