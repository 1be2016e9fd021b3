// Drives the relay's status page (GET /status) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core (pinned in tests/deps/package.json), JavaScript
// disabled in the page: only its plain forms and links work.
//
// usage: node status_browser.mjs MODE URL [--secret S] [--revoke TEXT] [--timeout S]
//                                [--screenshot FILE]
// Run with $NODE22; playwright-core and Chromium as browser_driver.mjs says.
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
import { Run, emit, embeddedCount, handlerAttributes, parseArgs } from './browser_driver.mjs';

// ---------------------------------------------------------------- arguments
const { mode, url, opts, usage } = parseArgs(
  'status_browser.mjs',
  'session|wrong|frame URL [--secret S] [--revoke TEXT] [--timeout S] [--screenshot FILE]',
  ['session', 'wrong', 'frame'],
  { '--secret': 'secret', '--revoke': 'revoke' },
  { secret: null, revoke: null },
);
if (mode !== 'frame' && opts.secret === null) usage(`${mode} needs --secret`);

// ---------------------------------------------------------------- the run
const requests = [];
const documents = [];
const r = new Run('status_browser.mjs', mode, opts);

const run = async () => {
  const { context, page, left } = await r.launch();
  const deadline = r.deadline;
  context.on('request', (q) => {
    requests.push({ method: q.method(), url: q.url(), type: q.resourceType() });
  });
  // Each document response, in order; `pending` resolves with the body of the last one.
  context.on('response', async (q) => {
    if (q.request().resourceType() !== 'document') return;
    const entry = { url: q.url(), method: q.request().method(), status: q.status(), headers: {} };
    documents.push(entry);
    try { entry.headers = await q.allHeaders(); } catch { /* the page went away */ }
    try { entry.body = await q.text(); } catch { entry.body = null; }
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
      ...dom, embedded: await page.evaluate(embeddedCount),
      handler_attrs: await page.evaluate(handlerAttributes), cookies, raw_html: last.body,
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

  r.step = `open ${url}`;
  const response = await page.goto(url, { timeout: left() });
  if (!response) throw new Error('no response for the first navigation');

  if (mode === 'frame') return r.frames(page, 'form, #tunnels, #who', 'status_markup');

  r.step = 'read the sign-in page';
  await observe('login');
  r.step = 'sign in';
  await page.locator('form#login input[name=secret]').fill(opts.secret, { timeout: left() });
  await submit(page.getByRole('button', { name: 'Sign in' }));
  if (mode === 'wrong') {
    r.step = 'read the refusal';
    await observe('refused');
    return { final_url: page.url() };
  }
  r.step = 'read the dashboard';
  await observe('dashboard');
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });

  if (opts.revoke !== null) {
    r.step = `press Revoke for ${opts.revoke}`;
    const row = page.locator('tr.client', { hasText: opts.revoke });
    if ((await row.count()) !== 1) throw new Error(`${await row.count()} client rows show ${opts.revoke}`);
    await submit(row.getByRole('button', { name: 'Revoke' }));
    r.step = 'read the page after revoking';
    await observe('revoked');
  }
  r.step = 'log out';
  await submit(page.getByRole('button', { name: 'Log out' }));
  r.step = 'read the page after logging out';
  await observe('logged_out');
  return { final_url: page.url() };
};

await r.main(run, () => ({ requests, documents: documents.map(({ body, ...d }) => d) }));
