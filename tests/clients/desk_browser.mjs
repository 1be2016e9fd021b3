// Drives the bridge's dashboard (the owner's desk) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core (pinned in tests/deps/package.json), JavaScript
// disabled in the page: only its plain forms and its own reload work.
//
// usage: node desk_browser.mjs MODE URL [--op OP] [--then PATH] [--timeout S]
//                              [--screenshot FILE]
// Run with $NODE22; playwright-core and Chromium as browser_driver.mjs says.
//
// MODE
//   show    open URL (the address the bridge printed, with its secret), report the page;
//           with --then PATH, then open PATH on the dashboard and report that page.
//   decide  open URL, reload until a held call is shown, report it, press its button OP
//           (allow-once, allow-always or deny), report the page it lands on.
//   press   open URL, reload until a button OP is shown (restart, pause, resume,
//           disconnect, consent-approve, consent-deny), press the first, report the page it
//           lands on.
//
// stdout: JSON lines.
//   {"event":"page"|"waiting"|"decided", ...}  the page as shown: url, status, headers
//       (lower-case names) of its response, cookies (name, httpOnly, sameSite, secure, path;
//       never the value), title, body_text, notice (#notice), nothing_waits (whether
//       #nothing-waits is shown), tunnels (innerText of tr.tunnel), tool_rows and call_rows
//       (innerText of each tunnel's tools and last calls), meters (their values), calls [{id, tool, client,
//       args, buttons}], consents [{id, client, redirect, code}], scripts, embedded
//       (iframe, img, link, object, … elements), handler_attrs (on* attributes)
//   last line: {"ok":true, "mode", "final_url", "requests"}; on failure {"ok":false,
//       "error", "step", ...} and exit 1 (2 = bad usage), the reason also on stderr.
import { Run, emit, embeddedCount, handlerAttributes, parseArgs } from './browser_driver.mjs';

const { mode, url, opts, usage } = parseArgs(
  'desk_browser.mjs',
  'show|decide|press URL [--op OP] [--then PATH] [--timeout S] [--screenshot FILE]',
  ['show', 'decide', 'press'],
  { '--op': 'op', '--then': 'then' },
  { op: null, then: null },
);
if (mode === 'press' && !opts.op) usage('press needs --op');
if (mode === 'decide' && !['allow-once', 'allow-always', 'deny'].includes(opts.op)) {
  usage('decide needs --op allow-once|allow-always|deny');
}

const requests = [];
const r = new Run('desk_browser.mjs', mode, opts);

const run = async () => {
  const { context, page, left } = await r.launch();
  context.on('request', (q) => requests.push({ method: q.method(), url: q.url(), type: q.resourceType() }));

  /** The page as shown, with its response's status and headers. */
  const observe = async (response) => {
    const headers = response ? await response.allHeaders() : {};
    const dom = await page.evaluate(() => {
      const all = (sel) => [...document.querySelectorAll(sel)];
      const text = (e, sel) => { const x = e.querySelector(sel); return x ? x.innerText : null; };
      return {
        title: document.title,
        body_text: document.body ? document.body.innerText : '',
        notice: document.querySelector('#notice')?.innerText ?? null,
        nothing_waits: Boolean(document.querySelector('#nothing-waits')),
        tunnels: all('tr.tunnel').map((e) => e.innerText),
        tool_rows: all('tr.tool').map((e) => e.innerText),
        client_rows: all('tr.client-row').map((e) => e.innerText),
        audit_rows: all('tr.entry').map((e) => e.innerText),
        paused: Boolean(document.querySelector('[id^="paused-"]')),
        links: all('a').map((e) => e.getAttribute('href')),
        call_rows: all('tr.call-row').map((e) => e.innerText),
        meters: all('meter').map((e) => e.value),
        calls: all('div.call').map((e) => ({
          id: e.id, tool: text(e, '.tool'), client: text(e, '.client'), args: text(e, '.args'),
          buttons: [...e.querySelectorAll('button')].map((b) => b.value),
        })),
        consents: all('div.consent').map((e) => ({
          id: e.id, client: text(e, '.client'), redirect: text(e, '.redirect'), code: text(e, '.code'),
        })),
        scripts: document.scripts.length,
      };
    });
    const cookies = (await context.cookies()).map((c) => ({
      name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure, path: c.path,
    }));
    return {
      url: page.url(), status: response ? response.status() : null, headers, cookies, ...dom,
      embedded: await page.evaluate(embeddedCount), handler_attrs: await page.evaluate(handlerAttributes),
    };
  };

  r.step = 'open the dashboard';
  let response = await page.goto(url, { timeout: left() });
  if (mode === 'show') {
    if (opts.then) {
      r.step = `open ${opts.then}`;
      response = await page.goto(new URL(opts.then, page.url()).href, { timeout: left() });
    }
    emit({ event: 'page', ...(await observe(response)) });
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    return { final_url: page.url() };
  }
  if (mode === 'press') {
    r.step = `wait for a ${opts.op} button`;
    const button = `button[value="${opts.op}"]`;
    while (!(await page.$(button))) {
      if (r.left() <= 1) throw new Error(`no ${opts.op} button was shown`);
      await page.waitForTimeout(200);
      await page.reload({ timeout: left() });
    }
    r.step = `press ${opts.op}`;
    const [answer] = await Promise.all([
      page.waitForResponse((q) => q.request().method() === 'POST', { timeout: left() }),
      page.locator(`button[value="${opts.op}"] >> nth=0`).click({ timeout: left() }),
    ]);
    await page.waitForLoadState('load', { timeout: left() });
    emit({ event: 'pressed', post_status: answer.status(), ...(await observe(null)) });
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    return { final_url: page.url() };
  }
  r.step = 'wait for a held call';
  while (!(await page.$('div.call'))) {
    if (r.left() <= 1) throw new Error('no held call was shown');
    await page.waitForTimeout(200);
    response = await page.reload({ timeout: left() });
  }
  emit({ event: 'waiting', ...(await observe(response)) });
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
  r.step = `press ${opts.op}`;
  const [answer] = await Promise.all([
    page.waitForResponse((q) => q.request().method() === 'POST', { timeout: left() }),
    page.locator(`div.call >> nth=0 >> button[value="${opts.op}"]`).click({ timeout: left() }),
  ]);
  await page.waitForLoadState('load', { timeout: left() });
  emit({ event: 'decided', post_status: answer.status(), ...(await observe(null)) });
  return { final_url: page.url() };
};

r.main(run, () => ({ requests }));
