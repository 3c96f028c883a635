// The web UI in a real browser (Debian's Chromium driven by playwright-core), against a
// real server and agent started by `tests/e2e/web_ui.rs`. Each scenario is a named step
// that writes a full-page screenshot `<DCMON_SCREENSHOTS>/<name>.png`; the first failing
// step stops the run with its error and a `<name>-failed.png` screenshot. Uncaught
// errors in any page fail the run too.
//
// Environment: DCMON_URL, DCMON_ADMIN_USER, DCMON_ADMIN_PASSWORD, DCMON_HOST (the agent's
// host), DCMON_LOCKOUT_FAILURES, DCMON_SCREENSHOTS, DCMON_PLAYWRIGHT (playwright-core's
// index.mjs).

import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { check, envReader, launch, login as signIn, pageApi } from './lib.mjs';

const env = envReader('crates/dcmon/tests/e2e/web_ui.rs');
const BASE = env('DCMON_URL');
const ADMIN = { user: env('DCMON_ADMIN_USER'), password: env('DCMON_ADMIN_PASSWORD') };
const HOST = env('DCMON_HOST');
const LOCKOUT_FAILURES = Number(env('DCMON_LOCKOUT_FAILURES'));
const SHOTS = env('DCMON_SCREENSHOTS');
const run = await launch({ playwright: env('DCMON_PLAYWRIGHT'), shots: SHOTS });
const step = (name, fn) => run.step(name, fn);
const newPage = (viewport) => run.newPage(viewport);
const login = (page, who, options) => signIn(BASE, page, who, options);

async function logout(page) {
  await page.click('#logout');
  await page.waitForURL(/\/login/);
}

/** RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret at `counter`. */
function totp(secret, counter) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`secret is not base32: ${secret}`);
    bits += i.toString(2).padStart(5, '0');
  }
  const key = Buffer.alloc(Math.floor(bits.length / 8));
  for (let i = 0; i < key.length; i++) key[i] = parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const off = mac[mac.length - 1] & 0xf;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(n).padStart(6, '0');
}
const totpCounter = () => Math.floor(Date.now() / 30000);

/** The fleet row of `host` once it shows numbers (a real push reached the table). */
async function waitForFleetRow(page, host) {
  await page.waitForFunction((h) => {
    const row = document.querySelector(`.fleet-row[data-host="${h}"]`);
    return row && !row.hidden && [...row.querySelectorAll('.num')].some((c) => /\d/.test(c.textContent));
  }, host, { timeout: 60000 });
}

const admin = await newPage();
run.current = admin;

await step('login', async () => {
  await admin.goto(`${BASE}/`);
  await admin.waitForURL(/\/login\?next=/);
  await admin.fill('input[name="user"]', ADMIN.user);
  await admin.fill('input[name="password"]', 'not the password');
  await admin.click('button[type="submit"]');
  await admin.waitForSelector('#login-message .alert');
  await admin.screenshot({ path: join(SHOTS, 'login-page.png'), fullPage: true });
  await login(admin, ADMIN);
  check(await admin.locator('.whoami .name').textContent() === ADMIN.user, 'layout does not name the user');
  // Signed in, the login page sends the user on instead of asking again.
  await admin.goto(`${BASE}/login?next=${encodeURIComponent('/agents')}`);
  await admin.waitForURL(`${BASE}/agents`);
  await admin.goto(`${BASE}/`);
});

await step('fleet', async () => {
  await waitForFleetRow(admin, HOST);
  const online = Number(await admin.locator('#fleet-online').textContent());
  check(online >= 1, `online count ${online}`);
  const status = await admin.locator(`.fleet-row[data-host="${HOST}"] .dot`).getAttribute('class');
  check(status.includes('online'), `status dot ${status}`);
  const cpu = await admin.locator(`.fleet-row[data-host="${HOST}"] .num`).nth(1).textContent();
  check(/^\d+(\.\d)?$/.test(cpu), `CPU % cell ${JSON.stringify(cpu)}`);
  // Live: the stream patches the table without a reload.
  const version = await admin.evaluate(() => window.dcmon.fleet.version);
  await admin.waitForFunction((v) => window.dcmon.fleet.version > v, version, { timeout: 30000 });
});

await step('machine', async () => {
  await admin.click(`.fleet-row[data-host="${HOST}"] a`);
  await admin.waitForURL(new RegExp(`/machines/${HOST}`));
  await admin.waitForFunction(() => document.querySelector('main').dataset.loaded);
  // The CPU panel is the first chart; the real agent's samples draw it.
  await admin.waitForSelector('#charts-system .chart-panel:first-child canvas');
  const titles = await admin.locator('.chart-panel h2').allTextContents();
  for (const t of ['CPU usage by mode', 'Memory', 'Filesystem used', 'Network received', 'Fans', 'NVMe temperature', 'APT upgrades pending']) {
    check(titles.includes(t), `no "${t}" panel in ${JSON.stringify(titles)}`);
  }
});

await step('machine-zoom', async () => {
  const before = await admin.evaluate(() => window.dcmon.charts[0].xRange());
  const loadedBefore = await admin.evaluate(() => document.querySelector('main').dataset.loaded);
  const over = admin.locator('#charts-system .chart-panel:first-child .u-over');
  const box = await over.boundingBox();
  const y = box.y + box.height / 2;
  // The newest tenth of the hour, up to past the right edge (the selection stops at
  // the edge): the agent started moments ago, so its samples are all there.
  await admin.mouse.move(box.x + box.width * 0.9, y);
  await admin.mouse.down();
  await admin.mouse.move(box.x + box.width + 20, y, { steps: 8 });
  await admin.mouse.up();
  await admin.waitForFunction((b) => {
    const r = window.dcmon.charts[0].xRange();
    return r && r[0] > b[0] && r[1] - r[0] < (b[1] - b[0]) / 2;
  }, before);
  // Every panel has been redrawn for the new range.
  await admin.waitForFunction((l) => document.querySelector('main').dataset.loaded !== l, loadedBefore);
  const after = await admin.evaluate(() => window.dcmon.charts[0].xRange());
  const wasSpan = before[1] - before[0];
  const span = after[1] - after[0];
  check(span < wasSpan * 0.2 && span > wasSpan * 0.05, `zoomed span ${span} s of ${wasSpan} s`);
  await admin.waitForSelector('#charts-system .chart-panel:first-child canvas');
  check((await admin.locator('#range-label').textContent()).includes('zoomed'), 'range label does not say zoomed');
  // Every panel follows the zoom.
  const spans = await admin.evaluate(() => window.dcmon.charts.map((c) => c.xRange()).filter(Boolean).map((r) => r[1] - r[0]));
  check(spans.every((s) => s === span), `panels disagree: ${spans}`);
});

await step('machine-hover', async () => {
  // The legend shows the values under the cursor. A chart refresh redraws the plot
  // under a resting cursor, so the hover is repeated until the legend answers.
  const over = admin.locator('#charts-system .chart-panel:first-child .u-over');
  const legendShowsValues = () => {
    const v = [...document.querySelectorAll('#charts-system .chart-panel:first-child .u-legend .u-value')].map((e) => e.textContent);
    // The hovered time (`--` without a cursor) and values beside it.
    return /\d:\d\d/.test(v[0]) && v.slice(1).some((x) => /\d/.test(x));
  };
  for (let attempt = 1; ; attempt++) {
    await over.scrollIntoViewIfNeeded();
    const box = await over.boundingBox();
    // Over a point that has a value: the one nearest the plot's middle. A point on the
    // very edge (a young agent has one) is hovered half a pixel inside it, where the
    // cursor still snaps to it rather than to its empty neighbour.
    const x = await admin.evaluate(() => {
      const u = window.dcmon.charts[0].plot;
      const width = u.over.clientWidth;
      let best = null;
      for (let i = 0; i < u.data[0].length; i++) {
        if (u.data.slice(1).every((s) => s[i] === null || s[i] === undefined)) continue;
        const px = Math.min(Math.max(u.valToPos(u.data[0][i], 'x'), 0.5), width - 0.5);
        if (best === null || Math.abs(px - width / 2) < Math.abs(best - width / 2)) best = px;
      }
      return best;
    });
    check(x !== null, 'the chart has no point with a value');
    await admin.mouse.move(box.x + 1, box.y + 1);
    await admin.mouse.move(box.x + x, box.y + box.height / 2, { steps: 4 });
    try {
      await admin.waitForFunction(legendShowsValues, null, { timeout: 5000 });
      break;
    } catch (e) {
      if (attempt === 5) {
        const state = await admin.evaluate(() => {
          const u = window.dcmon.charts[0].plot;
          return JSON.stringify({
            idx: u.cursor.idx, left: u.cursor.left, width: u.over.clientWidth,
            xs: u.data[0].slice(-5), ys: u.data.slice(1).map((d) => d.slice(-5)),
            scale: [u.scales.x.min, u.scales.x.max],
            legend: [...document.querySelectorAll('#charts-system .chart-panel:first-child .u-legend .u-value')].map((e) => e.textContent),
          });
        });
        throw new Error(`${e.message}; chart: ${state}`);
      }
    }
  }
});

await step('machine-zoom-reset', async () => {
  await admin.dblclick('#charts-system .chart-panel:first-child .u-over');
  await admin.waitForFunction(() => {
    const r = window.dcmon.charts[0].xRange();
    return r && r[1] - r[0] >= 3600;
  });
});

await step('collect-now', async () => {
  await admin.selectOption('#command-form select[name="kind"]', 'collect_now');
  await admin.click('#command-form button[type="submit"]');
  await admin.waitForSelector('#commands-body tr[data-kind="collect_now"][data-status="succeeded"]', { timeout: 60000 });
});

const viewer = { user: 'viewer1', password: 'viewer-password-1' };
const locked = { user: 'locked1', password: 'locked-password-1' };

await step('users', async () => {
  await admin.click('nav a[href="/users"]');
  await admin.waitForURL(`${BASE}/users`);
  for (const u of [{ ...viewer, role: 'viewer' }, { ...locked, role: 'viewer' }]) {
    await admin.fill('#user-form input[name="name"]', u.user);
    await admin.selectOption('#user-form select[name="role"]', u.role);
    await admin.fill('#user-form input[name="password"]', u.password);
    await admin.click('#user-form button[type="submit"]');
    await admin.waitForSelector(`#users-body tr[data-user="${u.user}"]`);
  }
});

await step('tokens', async () => {
  await admin.click('nav a[href="/tokens"]');
  await admin.fill('#token-form input[name="name"]', 'grafana');
  await admin.selectOption('#token-form select[name="role"]', 'viewer');
  await admin.click('#token-form button[type="submit"]');
  const token = await admin.locator('#new-token').textContent();
  check(token.length > 20, `token shown: ${token}`);
  await admin.waitForSelector('#tokens-body tr:has-text("grafana")');
});

await step('agents', async () => {
  await admin.click('nav a[href="/agents"]');
  await admin.waitForSelector(`#agents-body tr[data-host="${HOST}"]`);
  await admin.click('#enroll-form button[type="submit"]');
  const join = await admin.locator('#enroll-command').textContent();
  check(join.startsWith('dcmon-agent register --server https://') && join.includes('--fingerprint SHA256:'), join);
});

await step('audit', async () => {
  await admin.click('nav a[href="/audit"]');
  await admin.waitForSelector('#audit-body tr');
  await admin.fill('#audit-form input[name="actor"]', ADMIN.user);
  await admin.click('#audit-form button[type="submit"]');
  await admin.waitForFunction(() => document.querySelectorAll('#audit-body tr td').length > 1);
});

await step('settings', async () => {
  await admin.click('nav a[href="/settings"]');
  await admin.waitForSelector('#totp-start');
  check((await admin.locator('#server-settings').textContent()).includes('listen'), 'no server settings');
});

await step('viewer', async () => {
  await logout(admin);
  await login(admin, viewer);
  const nav = await admin.locator('nav .nav a').allTextContents();
  check(!nav.includes('Users') && !nav.includes('Audit'), `viewer sees ${nav}`);
  check(nav.includes('Fleet') && nav.includes('Settings'), `viewer sees ${nav}`);
  await waitForFleetRow(admin, HOST);
  await admin.goto(`${BASE}/machines/${HOST}`);
  await admin.waitForSelector('#commands-body tr');
  check(await admin.locator('#command-form').count() === 0, 'viewer is offered the command form');
  // The session may read but not write, even with its CSRF token.
  const [status] = await pageApi(admin, 'POST', '/api/commands', { host: HOST, kind: 'collect_now' });
  check(status === 403, `viewer's command write answered ${status}`);
});

await step('viewer-forbidden', async () => {
  const resp = await admin.goto(`${BASE}/users`);
  check(resp.status() === 403, `viewer's /users answered ${resp.status()}`);
  const nav = await admin.locator('nav .nav a').allTextContents();
  check(nav.includes('Fleet') && !nav.includes('Users'), `403 page navigation: ${nav}`);
});

let confirmedAt = 0;
await step('totp-enrol', async () => {
  await admin.goto(`${BASE}/settings`);
  await admin.click('#totp-start');
  await admin.waitForSelector('.qr svg');
  const secret = (await admin.locator('#totp-secret').textContent()).trim();
  confirmedAt = totpCounter();
  await admin.fill('#totp-confirm-form input[name="code"]', totp(secret, confirmedAt));
  await admin.click('#totp-confirm-form button[type="submit"]');
  await admin.waitForSelector('#recovery-codes');
  const codes = await admin.locator('#recovery-codes div').count();
  check(codes === 10, `${codes} recovery codes`);
  viewer.secret = secret;
});

await step('totp-login', async () => {
  await logout(admin);
  await login(admin, viewer, { expectTotp: true });
  await admin.waitForSelector('#totp-step:not([hidden]) input[name="totp"]');
  // A code is accepted once: wait for the next 30 s period after the one used to confirm.
  while (totpCounter() <= confirmedAt) await admin.waitForTimeout(500);
  await admin.fill('input[name="totp"]', totp(viewer.secret, totpCounter()));
  await admin.screenshot({ path: join(SHOTS, 'totp-step.png'), fullPage: true });
  await admin.click('button[type="submit"]');
  await admin.waitForURL(`${BASE}/`);
});

await step('lockout', async () => {
  await logout(admin);
  for (let i = 0; i < LOCKOUT_FAILURES; i++) {
    await admin.fill('input[name="user"]', locked.user);
    await admin.fill('input[name="password"]', `wrong-${i}`);
    await admin.click('button[type="submit"]');
    await admin.waitForSelector('#login-message .alert');
    await admin.waitForFunction(() => !document.querySelector('#login-form button[type="submit"]').disabled);
  }
  // Locked now: even the right password is refused, and the page says why.
  await admin.fill('input[name="user"]', locked.user);
  await admin.fill('input[name="password"]', locked.password);
  await admin.click('button[type="submit"]');
  await admin.waitForFunction(() => /lock/i.test(document.querySelector('#login-message').textContent));
  check(admin.url().includes('/login'), 'a locked user got in');
});

await step('keyboard', async () => {
  await login(admin, ADMIN);
  await waitForFleetRow(admin, HOST);
  const reached = [];
  for (let i = 0; i < 40; i++) {
    await admin.keyboard.press('Tab');
    reached.push(await admin.evaluate(() => {
      const el = document.activeElement;
      return { tag: el.tagName, href: el.getAttribute('href'), key: el.dataset.key || null, text: el.textContent.trim().slice(0, 30) };
    }));
    if (reached.at(-1).key === 'cpu_temp') break;
  }
  check(reached.some((r) => r.href === '/agents'), `Tab never reached the navigation: ${JSON.stringify(reached)}`);
  const header = reached.at(-1);
  check(header.key === 'cpu_temp', `Tab never reached the CPU °C sort header: ${JSON.stringify(reached)}`);
  await admin.keyboard.press('Enter');
  const sort = await admin.locator('.fleet-head button[data-key="cpu_temp"]').getAttribute('aria-sort');
  check(sort === 'descending', `Enter on the header sorted ${sort}`);
  await admin.keyboard.press('Enter');
  check(await admin.locator('.fleet-head button[data-key="cpu_temp"]').getAttribute('aria-sort') === 'ascending', 'second Enter did not reverse');
});

await step('fleet-10k', async () => {
  await admin.selectOption('#fleet-interval', 'off');
  // Synthetic rows through the table's own render path. A live update already on its
  // way when the stream was turned off may replace them once, so they are fed again
  // until the table holds them.
  const inject = () => admin.evaluate(() => {
    const t = window.dcmon.fleet;
    const columns = t.columns;
    const rows = [];
    for (let i = 0; i < 10000; i++) {
      rows.push({
        host: `node${String(i).padStart(5, '0')}`, agent_id: `a${i}`,
        status: i % 50 === 0 ? 'offline' : i % 20 === 0 ? 'stale' : 'online',
        last_seen_ms: Date.now(),
        v: columns.map((c, j) => (i * 7 + j * 13) % 100),
      });
    }
    t.load({ version: 1, total: 10000, online: 9300, columns, thresholds: t.thresholds, rows });
    return rows.length;
  });
  for (let attempt = 1; ; attempt++) {
    check(await inject() === 10000, 'rows not generated');
    try {
      await admin.waitForFunction(() => document.querySelector('#fleet-total').textContent === '10000', null, { timeout: 5000 });
      await admin.waitForTimeout(500);
      if (await admin.evaluate(() => document.querySelector('#fleet-total').textContent) === '10000') break;
    } catch (e) {
      if (attempt === 3) throw e;
    }
    if (attempt === 3) throw new Error('the table did not keep the 10,000 rows');
  }
  await admin.click('.fleet-head button[data-key="host"]');
  // The view is rebuilt on the next animation frame.
  await admin.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const inDom = await admin.locator('.fleet-row').count();
  check(inDom < 200, `${inDom} row elements for 10,000 rows`);
  const last = await admin.evaluate(() => window.dcmon.fleet.view.at(-1).host);
  await admin.evaluate(() => {
    const b = document.querySelector('.fleet-body');
    b.scrollTop = b.scrollHeight;
  });
  await admin.waitForFunction((h) => {
    const row = document.querySelector(`.fleet-row[data-host="${h}"]`);
    if (!row || row.hidden) return false;
    const body = document.querySelector('.fleet-body').getBoundingClientRect();
    const r = row.getBoundingClientRect();
    return r.top >= body.top - 1 && r.bottom <= body.bottom + 1;
  }, last);
  check(await admin.locator('.fleet-row').count() < 200, 'row elements grew while scrolling');
});

await step('audit-paging', async () => {
  // By now the sign-ins, lock-out and changes above are well over one page of 20.
  await admin.goto(`${BASE}/audit`);
  await admin.waitForSelector('#audit-body tr');
  await admin.selectOption('#audit-form select[name="limit"]', '20');
  await admin.click('#audit-form button[type="submit"]');
  await admin.waitForFunction(() => document.querySelectorAll('#audit-body tr').length === 20);
  await admin.click('#audit-more');
  await admin.waitForFunction(() => document.querySelectorAll('#audit-body tr').length > 20);
  const times = await admin.locator('#audit-body tr td:first-child').allTextContents();
  check(times.every((t, i) => i === 0 || times[i - 1] >= t), `entries not newest first: ${times}`);
  const locks = await admin.locator('#audit-body tr:has-text("login.lockout")').count();
  check(locks >= 1, 'the lock-out is not in the audit log');
});

await step('fleet-phone', async () => {
  const phone = await newPage({ width: 390, height: 844 });
  run.current = phone;
  await login(phone, ADMIN);
  await waitForFleetRow(phone, HOST);
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 390, `the page is ${width} px wide on a 390 px screen`);
});

await step('machine-phone', async () => {
  await run.current.goto(`${BASE}/machines/${HOST}`);
  await run.current.waitForFunction(() => document.querySelector('main').dataset.loaded);
  await run.current.waitForSelector('#charts-system .chart-panel:first-child canvas');
  const width = await run.current.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 390, `the machine page is ${width} px wide on a 390 px screen`);
});

await run.finish('all web UI scenarios passed');
