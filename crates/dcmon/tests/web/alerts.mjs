// The Alerts pages in a real browser (Debian's Chromium driven by playwright-core),
// against a real server that evaluates rules every second over a series written by
// `tests/e2e/web_alerts.rs`, and its webhook receiver. Each scenario is a named step
// that writes a full-page screenshot `<DCMON_SCREENSHOTS>/<name>.png`; the first failing
// step stops the run with its error and a `<name>-failed.png` screenshot. Uncaught
// errors in any page fail the run too. Step names start with `alerts`: the folder is
// shared with the other scenarios.
//
// Environment: DCMON_URL, DCMON_ADMIN_USER, DCMON_ADMIN_PASSWORD, DCMON_HOOK (the
// receiver's base URL: POST /hook, GET /received), DCMON_METRIC and DCMON_HOST (the
// series written, at DCMON_VALUE), DCMON_SCREENSHOTS, DCMON_PLAYWRIGHT.

import { check, envReader, launch, login as signIn, pageApi } from './lib.mjs';

const env = envReader('crates/dcmon/tests/e2e/web_alerts.rs');
const BASE = env('DCMON_URL');
const ADMIN = { user: env('DCMON_ADMIN_USER'), password: env('DCMON_ADMIN_PASSWORD') };
const HOOK = env('DCMON_HOOK');
const METRIC = env('DCMON_METRIC');
const HOST = env('DCMON_HOST');
const VALUE = env('DCMON_VALUE');
const run = await launch({ playwright: env('DCMON_PLAYWRIGHT'), shots: env('DCMON_SCREENSHOTS'), strictPages: true });
const step = (name, fn) => run.step(name, fn);
const login = (page, who) => signIn(BASE, page, who);
const RULE = 'WebGpuHot';
const CHANNEL = 'ops-hook';
const rule = `#rules-body tr[data-rule="${RULE}"]`;
const firing = `#open-body tr[data-rule="${RULE}"][data-state="firing"]`;

/** What the webhook receiver got so far. */
async function received() {
  const r = await fetch(`${HOOK}/received`);
  return r.json();
}

async function waitFor(what, cond, ms = 30000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    check(Date.now() < deadline, `${what} within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const admin = await run.newPage();
run.current = admin;
// Removing and expiring ask first; the scenario says yes.
admin.on('dialog', (d) => d.accept());

await step('alerts-nav', async () => {
  await login(admin, ADMIN);
  const nav = await admin.locator('nav .nav a').allTextContents();
  check(nav[0] === 'Fleet' && nav[1] === 'Alerts', `Alerts is not first after Fleet: ${nav}`);
  await admin.click('nav a[href="/alerts"]');
  await admin.waitForURL(`${BASE}/alerts`);
  await admin.waitForSelector('#open-body tr');
  const sub = await admin.locator('nav.subnav a').allTextContents();
  check(sub.join() === 'Alerts,Rules,Channels,Silences', `sub-navigation: ${sub}`);
});

await step('alerts-channels', async () => {
  await admin.click('nav.subnav a[href="/alerts/channels"]');
  await admin.waitForURL(`${BASE}/alerts/channels`);
  await admin.waitForSelector('#channels-body tr');
  // Only the chosen type's fields are offered.
  await admin.selectOption('#channel-form select[name="type"]', 'telegram');
  check(await admin.locator('#channel-form input[name="chat_id"]').isVisible(), 'telegram has no chat id field');
  check(!(await admin.locator('#channel-form input[name="url"]').isVisible()), 'telegram is offered a URL');
  await admin.selectOption('#channel-form select[name="type"]', 'email');
  check(await admin.locator('#channel-form select[name="smtp_tls"]').isVisible(), 'email has no TLS mode');
  await admin.selectOption('#channel-form select[name="type"]', 'webhook');
  // A refused URL comes back next to its field, in the server's words.
  await admin.fill('#channel-form input[name="name"]', CHANNEL);
  await admin.fill('#channel-form input[name="url"]', 'ftp://example.com/hook');
  await admin.click('#channel-form button[type="submit"]');
  const note = admin.locator('#channel-form [data-error-for="url"]');
  await note.filter({ hasText: 'needs its webhook URL' }).waitFor();
  check(await admin.getAttribute('#channel-form input[name="url"]', 'aria-invalid') === 'true', 'the URL is not marked');
  await admin.fill('#channel-form input[name="name"]', CHANNEL);
  await admin.fill('#channel-form input[name="url"]', `${HOOK}/hook`);
  await admin.click('#channel-form button[type="submit"]');
  const row = `#channels-body tr[data-channel="${CHANNEL}"]`;
  await admin.waitForSelector(row);
  check(await admin.locator('#channel-form [data-error-for="url"]').textContent() === '', 'the refusal stays');
  check(!(await admin.content()).includes(`${HOOK}/hook`), 'the webhook URL is shown back');
  await admin.click(`${row} button:has-text("Send test message")`);
  await admin.waitForSelector(`${row} [data-field="test"][data-ok="true"]`);
  const got = await received();
  check(got.some((b) => b.groupKey === 'test' && b.receiver === CHANNEL), `the receiver got no test message: ${JSON.stringify(got)}`);
});

await step('alerts-rule-refused', async () => {
  await admin.click('nav.subnav a[href="/alerts/rules"]');
  await admin.waitForURL(`${BASE}/alerts/rules`);
  await admin.waitForSelector('#rules-body tr[data-kind="builtin"]');
  check(await admin.locator('#rules-body tr[data-kind="builtin"] button').count() === 0, 'a built-in rule can be removed');
  // Two problems at once: each next to its own field.
  await admin.fill('#rule-form input[name="name"]', 'WebBad');
  await admin.fill('#rule-form input[name="expr"]', `rate(${METRIC}[5m]`);
  await admin.fill('#rule-form input[name="value"]', '90');
  await admin.fill('#rule-form input[name="resolve"]', '95');
  await admin.click('#rule-form button[type="submit"]');
  const expr = admin.locator('#rule-form [data-error-for="expr"]');
  await expr.filter({ hasText: 'expr:' }).waitFor();
  const resolve = await admin.locator('#rule-form [data-error-for="resolve"]').textContent();
  check(resolve.startsWith('resolve: 95 must lie on the good side of the threshold (> 90)'), `resolve refusal: ${resolve}`);
  check(await admin.locator('#rule-form [data-error-for="name"]').textContent() === '', 'the name is refused');
  check(await admin.getAttribute('#rule-form input[name="expr"]', 'aria-invalid') === 'true', 'expr is not marked');
  check(await admin.evaluate(() => document.activeElement.name) === 'expr', 'focus is not on the first refused field');
  const [status, rules] = await pageApi(admin, 'GET', '/api/rules');
  check(status === 200 && !rules.rules.some((r) => r.name === 'WebBad'), 'the refused rule was stored');
});

await step('alerts-rules', async () => {
  await admin.fill('#rule-form input[name="name"]', RULE);
  await admin.fill('#rule-form input[name="expr"]', METRIC);
  await admin.fill('#rule-form input[name="resolve"]', '85');
  await admin.fill('#rule-form input[name="for"]', '2s');
  await admin.selectOption('#rule-form select[name="severity"]', 'critical');
  await admin.fill('#rule-form input[name="summary"]', '{{ $labels.host }} at {{ $value }} C');
  await admin.click('#rule-form button[type="submit"]');
  await admin.waitForSelector(rule);
  check(await admin.locator('#rule-form .field-error:not(:empty)').count() === 0, 'refusals stay after the rule was added');
  const cells = await admin.locator(`${rule} td`).allTextContents();
  check(cells[1] === 'custom' && cells[4] === '> 90, resolves <= 85' && cells[5] === '2s' && cells[6] === 'critical',
    `rule row: ${cells}`);
  // The rules page shows the rule's state from its alerts: pending, then firing.
  await admin.waitForSelector(`${rule} [data-field="state"]:has-text("firing (1)")`, { timeout: 30000 });
});

await step('alerts-import', async () => {
  // A Prometheus rule file: a refused one names the line and rule next to the text.
  const file = (name, expr) => `groups:\n  - name: web\n    rules:\n      - alert: ${name}\n        expr: ${expr}\n        for: 1m\n`;
  await admin.fill('#import-form textarea[name="yaml"]', file('WebImported', `rate(${METRIC}[5m]`));
  await admin.click('#import-form button[type="submit"]');
  const note = admin.locator('#import-form [data-error-for="yaml"]');
  await note.filter({ hasText: 'body:4: rule "WebImported": expr:' }).waitFor();
  await admin.fill('#import-form textarea[name="yaml"]', file('WebImported', `${METRIC} < 0`));
  await admin.click('#import-form button[type="submit"]');
  await admin.waitForSelector('#import-result .alert.ok:has-text("Imported 1 rule.")');
  check(await note.textContent() === '', 'the refusal stays after the import');
  const imported = '#rules-body tr[data-rule="WebImported"]';
  await admin.waitForSelector(imported);
  check((await admin.locator(`${imported} td`).nth(4).textContent()) === 'any series', 'an imported rule has a threshold');
  await admin.click(`${imported} button:has-text("Remove")`);
  await admin.waitForSelector(imported, { state: 'detached' });
});

await step('alerts-firing', async () => {
  await admin.click('nav.subnav a[href="/alerts"]');
  await admin.waitForSelector(firing);
  const cells = await admin.locator(`${firing} td`).allTextContents();
  check(cells[0] === 'critical' && cells[3] === HOST, `alert row: ${cells}`);
  check(cells[5] === VALUE, `value: ${cells[5]}`);
  check(cells[7] === `${HOST} at ${VALUE} C`, `summary: ${cells[7]}`);
  check(cells[8] === '-' && cells[9] === '-', `acked/silenced: ${cells}`);
  // The firing alert reached the channel (its route takes every alert).
  await waitFor('the firing notification', async () => (await received())
    .some((b) => b.status === 'firing' && b.alerts.some((a) => a.labels.alertname === RULE)));
  // Filters by state and text.
  await admin.selectOption('#alerts-state', 'pending');
  check(await admin.locator(firing).count() === 0 && await admin.locator('#resolved-section').isHidden(), 'the state filter');
  await admin.selectOption('#alerts-state', 'firing');
  await admin.fill('#alerts-filter', 'no-such-host');
  await admin.waitForSelector('#open-body td:has-text("No alert matches.")');
  await admin.fill('#alerts-filter', HOST);
  await admin.waitForSelector(firing);
  await admin.selectOption('#alerts-state', '');
  await admin.fill('#alerts-filter', '');
  await admin.click(`${firing} button:has-text("Acknowledge")`);
  await admin.waitForSelector(`${firing} td[data-field="acked"]:has-text("admin")`);
  check(await admin.locator(`${firing} button:has-text("Acknowledge")`).count() === 0, 'an acked alert offers Acknowledge');
});

await step('alerts-history', async () => {
  // Keyboard: the row's History button is reachable with Tab from the filter box and
  // opens with Enter.
  await admin.focus('#alerts-filter');
  let reached = false;
  for (let i = 0; i < 15 && !reached; i++) {
    await admin.keyboard.press('Tab');
    reached = await admin.evaluate(() => document.activeElement?.textContent === 'History');
  }
  check(reached, 'the History button is not reachable with Tab');
  await admin.keyboard.press('Enter');
  const detail = admin.locator('#open-body tr.detail-row');
  await detail.waitFor();
  // It stays open across refreshes, with the alert's changes of state.
  await admin.waitForTimeout(3500);
  const states = await detail.locator('table.history tbody td:nth-child(2)').allTextContents();
  check(states.includes('pending') && states.includes('firing'), `history: ${states}`);
  check((await detail.textContent()).includes('Acknowledged'), 'the detail does not say who acknowledged');
  // The detail has its own address, where notifications link.
  const id = await admin.getAttribute(firing, 'data-alert');
  await admin.goto(`${BASE}/alerts/${id}`);
  await admin.waitForSelector(`#open-body tr[data-detail="${id}"]`);
  check(await admin.evaluate(() => document.activeElement.textContent) === 'Hide history', 'the linked alert is not focused');
});

await step('alerts-silence', async () => {
  await admin.click(`${firing} button:has-text("Silence")`);
  const matchers = await admin.inputValue('#silence-form textarea[name="matchers"]');
  check(matchers.includes(`alertname="${RULE}"`) && matchers.includes(`host="${HOST}"`), `prefilled matchers: ${matchers}`);
  // A matcher the server cannot read is refused next to the matchers.
  await admin.fill('#silence-form textarea[name="matchers"]', `${matchers}\nnonsense`);
  await admin.click('#silence-form button[type="submit"]');
  await admin.locator('#silence-form [data-error-for="matchers"]').filter({ hasText: 'nonsense' }).waitFor();
  await admin.fill('#silence-form textarea[name="matchers"]', matchers);
  await admin.fill('#silence-form input[name="duration"]', '1h');
  await admin.fill('#silence-form input[name="comment"]', 'replacing the fan');
  await admin.click('#silence-form button[type="submit"]');
  await admin.waitForSelector(`${firing} td[data-field="silenced"]:has-text("silence ")`);
  check(await admin.locator('#silence-panel').isHidden(), 'the silence form stays open');
});

await step('alerts-silences', async () => {
  await admin.click(`${firing} td[data-field="silenced"] a`);
  await admin.waitForURL(`${BASE}/alerts/silences`);
  const row = '#silences-body tr[data-active="true"]';
  await admin.waitForSelector(row);
  const cells = await admin.locator(`${row} td`).allTextContents();
  check(cells[1].includes(`host="${HOST}"`) && cells[2] === ADMIN.user && cells[3] === 'replacing the fan', `silence row: ${cells}`);
  check(cells[5].includes('in 60 min') || cells[5].includes('in 59 min'), `ends: ${cells[5]}`);
  await run.current.screenshot({ path: `${env('DCMON_SCREENSHOTS')}/alerts-silences-active.png`, fullPage: true });
  await admin.click(`${row} button:has-text("Expire")`);
  await admin.waitForSelector('#silences-body td:has-text("No silence.")');
  await admin.check('#silences-all');
  await admin.waitForSelector('#silences-body tr[data-active="false"]');
});

await step('alerts-notifications', async () => {
  await admin.goto(`${BASE}/alerts/channels`);
  const sent = `#notifications-body tr[data-status="sent"]`;
  await admin.waitForSelector(sent);
  const text = await admin.locator(sent).first().textContent();
  check(text.includes(CHANNEL) && text.includes(`[firing] 1 alert: ${RULE}`), `notification row: ${text}`);
});

await step('alerts-viewer', async () => {
  const [status] = await pageApi(admin, 'POST', '/api/users', { name: 'viewer1', role: 'viewer', password: 'viewer-password-1' });
  check(status === 201, `creating a viewer: ${status}`);
  const viewer = await run.newPage();
  run.current = viewer;
  await login(viewer, { user: 'viewer1', password: 'viewer-password-1' });
  check((await viewer.locator('nav .nav a').allTextContents()).includes('Alerts'), 'a viewer has no Alerts entry');
  await viewer.goto(`${BASE}/alerts`);
  await viewer.waitForSelector(firing);
  check(await viewer.locator(`${firing} button`).allTextContents().then((b) => b.join()) === 'History', 'a viewer is offered alert actions');
  check(await viewer.locator('#silence-form').count() === 0, 'a viewer is offered a silence form');
  for (const [path, rows, form] of [
    ['/alerts/rules', rule, '#rule-form'],
    ['/alerts/channels', `#channels-body tr[data-channel="${CHANNEL}"]`, '#channel-form'],
    ['/alerts/silences', '#silences-body tr', '#silence-form'],
  ]) {
    await viewer.goto(`${BASE}${path}`);
    await viewer.waitForSelector(rows);
    check(await viewer.locator(form).count() === 0, `a viewer is offered ${form} on ${path}`);
    check(await viewer.locator('main table button').count() === 0, `a viewer is offered buttons on ${path}`);
  }
  check(await viewer.locator('#import-form').count() === 0, 'a viewer is offered the import');
  await viewer.goto(`${BASE}/alerts`);
  await viewer.waitForSelector(firing);
});

await step('alerts-phone', async () => {
  const phone = await run.newPage({ width: 390, height: 844 });
  run.current = phone;
  await login(phone, ADMIN);
  for (const path of ['/alerts/rules', '/alerts/channels', '/alerts']) {
    await phone.goto(`${BASE}${path}`);
    await phone.waitForSelector('main table tbody tr');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `${path} is ${overflow} px wider than the phone`);
  }
  await phone.waitForSelector(firing);
});

await run.finish('all Alerts page scenarios passed');
