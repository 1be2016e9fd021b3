// Drives the relay's OAuth consent page in headless Chromium (Debian's /usr/bin/chromium) with
// playwright-core (pinned in tests/deps/package.json), JavaScript disabled in the page.
//
// usage: node consent_browser.mjs MODE URL [--redirect PREFIX] [--password P]
//                                 [--wrong-password P] [--timeout S] [--screenshot FILE]
// Run with $NODE22; playwright-core and Chromium as browser_driver.mjs says.
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
import { Run, emit, embeddedCount, handlerAttributes, parseArgs } from './browser_driver.mjs';

// ---------------------------------------------------------------- arguments
const { mode, url, opts, usage } = parseArgs(
  'consent_browser.mjs',
  'approve|deny|operator|frame URL [--redirect PREFIX] [--password P] [--wrong-password P] ' +
    '[--timeout S] [--screenshot FILE]',
  ['approve', 'deny', 'operator', 'frame'],
  { '--redirect': 'redirect', '--password': 'password', '--wrong-password': 'wrongPassword' },
  { redirect: null, password: null, wrongPassword: null },
);
if (mode !== 'frame' && !opts.redirect) usage(`${mode} needs --redirect`);
if (mode === 'operator' && opts.password === null) usage('operator needs --password');

// ---------------------------------------------------------------- the run
const requests = [];
const documents = [];
const consoleMessages = [];
const r = new Run('consent_browser.mjs', mode, opts);

const run = async () => {
  const { context, page, left } = await r.launch();

  context.on('request', (q) => {
    requests.push({
      method: q.method(), url: q.url(), type: q.resourceType(),
      navigation: q.isNavigationRequest(), main: q.frame() === page.mainFrame(),
    });
  });
  context.on('response', async (q) => {
    if (q.request().resourceType() !== 'document') return;
    let headers = {};
    try { headers = await q.allHeaders(); } catch { /* the page went away */ }
    documents.push({ url: q.url(), status: q.status(), headers });
  });
  page.on('console', (m) => consoleMessages.push({ type: m.type(), text: m.text() }));

  const atRedirect = (u) => u.href.startsWith(opts.redirect);
  const waitForRedirect = async () => {
    r.step = 'wait for the redirect URI';
    await page.waitForURL(atRedirect, { timeout: left(), waitUntil: 'load' });
  };

  r.step = `open ${url}`;
  const response = await page.goto(url, { timeout: left() });
  if (!response) throw new Error('no response for the first navigation');

  if (mode === 'frame') return r.frames(page, '#code, #tunnel, #client, form', 'consent_markup');

  r.step = 'inspect the consent page';
  const page_ = await observe(page, response);
  emit({ event: 'page', ...page_, requests: [...requests] });
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
  if (mode === 'deny') {
    r.step = 'press Deny';
    await page.getByRole('button', { name: 'Deny' }).click({ timeout: left() });
    await waitForRedirect();
  } else if (mode === 'operator') {
    const field = () => page.locator('input[type=password][name=password]');
    const approve = () => page.getByRole('button', { name: 'Approve as operator' });
    if (opts.wrongPassword !== null) {
      r.step = 'submit a wrong operator password';
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
    r.step = 'submit the operator password';
    await field().fill(opts.password, { timeout: left() });
    await approve().click({ timeout: left() });
    await waitForRedirect();
  } else {
    await waitForRedirect();
  }
  r.step = 'read the landing page';
  const final_text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
  return { final_url: page.url(), final_text };
};

/** What the consent page shows and how it is built. */
async function observe(page, response) {
  const raw_html = await response.text();
  const dom = await page.evaluate(() => {
    const one = (sel, f) => { const e = document.querySelector(sel); return e ? f(e) : null; };
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
      forms: [...document.forms].map((f) => ({
        action: f.action,
        method: f.method,
        buttons: [...f.querySelectorAll('button')].map((b) => ({ text: b.innerText, name: b.name, value: b.value })),
        inputs: [...f.querySelectorAll('input')].map((i) => ({ type: i.type, name: i.name })),
      })),
    };
  });
  return {
    url: page.url(), status: response.status(), headers: await response.allHeaders(), raw_html,
    ...dom, embedded: await page.evaluate(embeddedCount),
    handler_attrs: await page.evaluate(handlerAttributes),
  };
}

await r.main(run, () => ({ requests, documents, console: consoleMessages }));
