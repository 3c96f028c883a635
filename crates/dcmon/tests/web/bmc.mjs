// The BMC pages in a real browser (Debian's Chromium driven by playwright-core), against a
// real server and a `dcmon bmc-sim` Supermicro BMC started by `tests/e2e/web_bmc.rs`.
// Each scenario is a named step that writes a full-page screenshot
// `<DCMON_SCREENSHOTS>/<name>.png`; the first failing step stops the run with its error
// and a `<name>-failed.png` screenshot. Uncaught errors in any page fail the run too.
// Step names start with `bmc`: the folder is shared with `ui.mjs`.
//
// Environment: DCMON_URL, DCMON_ADMIN_USER, DCMON_ADMIN_PASSWORD, DCMON_BMC (the name to
// add the BMC under), DCMON_HPE_BMC (a BMC added as an HPE iLO), DCMON_BMC_PORT, DCMON_BMC_USER, DCMON_BMC_PASSWORD (the
// simulator's, on 127.0.0.1), DCMON_DUTY (the flat duty of the curve to save),
// DCMON_SCREENSHOTS, DCMON_PLAYWRIGHT (playwright-core's index.mjs).

import { check, envReader, launch, login as signIn, pageApi } from './lib.mjs';

const env = envReader('crates/dcmon/tests/e2e/web_bmc.rs');
const BASE = env('DCMON_URL');
const ADMIN = { user: env('DCMON_ADMIN_USER'), password: env('DCMON_ADMIN_PASSWORD') };
const BMC = env('DCMON_BMC');
const HPE_BMC = env('DCMON_HPE_BMC');
const BMC_PORT = env('DCMON_BMC_PORT');
const BMC_USER = env('DCMON_BMC_USER');
const BMC_PASSWORD = env('DCMON_BMC_PASSWORD');
const DUTY = Number(env('DCMON_DUTY'));
const SHOTS = env('DCMON_SCREENSHOTS');
const run = await launch({ playwright: env('DCMON_PLAYWRIGHT'), shots: SHOTS, strictPages: true });
const step = (name, fn) => run.step(name, fn);
const newPage = (viewport) => run.newPage(viewport);
const login = (page, who) => signIn(BASE, page, who);

const row = `#bmcs-body tr[data-bmc="${BMC}"]`;
const admin = await newPage();
run.current = admin;

await step('bmcs-add', async () => {
  await login(admin, ADMIN);
  const nav = await admin.locator('nav .nav a').allTextContents();
  check(nav.indexOf('BMCs') === nav.indexOf('Agents') + 1 && nav.indexOf('Users') === nav.indexOf('BMCs') + 1,
    `BMCs is not between Agents and Users: ${nav}`);
  await admin.click('nav a[href="/bmcs"]');
  await admin.waitForURL(`${BASE}/bmcs`);
  await admin.waitForSelector('#bmcs-body tr');
  // A refused field comes back with the server's message next to the form.
  await admin.fill('#bmc-form input[name="name"]', 'bad name!');
  await admin.fill('#bmc-form input[name="address"]', '127.0.0.1');
  await admin.fill('#bmc-form input[name="user"]', BMC_USER);
  await admin.fill('#bmc-form input[name="password"]', BMC_PASSWORD);
  await admin.click('#bmc-form button[type="submit"]');
  await admin.waitForSelector('#bmc-form-error .alert:has-text("is not a BMC name")');
  check(await admin.inputValue('#bmc-form input[name="password"]') === '', 'the password stays in the form');
  await admin.fill('#bmc-form input[name="name"]', BMC);
  await admin.fill('#bmc-form input[name="address"]', '127.0.0.1');
  await admin.fill('#bmc-form input[name="port"]', BMC_PORT);
  await admin.fill('#bmc-form input[name="user"]', BMC_USER);
  await admin.fill('#bmc-form input[name="password"]', BMC_PASSWORD);
  await admin.fill('#bmc-form input[name="interval_s"]', '60');
  await admin.click('#bmc-form button[type="submit"]');
  await admin.waitForSelector(row);
  check(await admin.locator(`${row} td.mono`).textContent() === `127.0.0.1:${BMC_PORT}`, 'address column');
  check(!(await admin.content()).includes(BMC_PASSWORD), 'the BMC password is shown back');
  const [status, list] = await pageApi(admin, 'GET', '/api/bmcs');
  check(status === 200 && !JSON.stringify(list).includes(BMC_PASSWORD), 'the API answers with the password');
});

await step('bmcs', async () => {
  // The poller's first polls (every 2 s here) turn the state ok and read the fan mode.
  await admin.waitForSelector(`${row}[data-state="ok"]`, { timeout: 60000 });
  await admin.waitForFunction((sel) => {
    const cell = document.querySelector(`${sel} td[data-field="mode"]`);
    return cell && cell.textContent === 'standard';
  }, row, { timeout: 30000 });
  const cells = await admin.locator(`${row} td`).allTextContents();
  check(cells[2] === 'supermicro', `vendor column: ${cells}`);
  check(cells[5] === '0', `failures column: ${cells}`);
  await admin.click(`${row} button:has-text("Check connectivity")`);
  await admin.waitForSelector(`#flash .alert.ok:has-text("${BMC}: answered; supermicro")`);
  // Keyboard: the name link is reachable with Tab from the filter box.
  await admin.focus('#bmcs-filter');
  let reached = false;
  for (let i = 0; i < 10 && !reached; i++) {
    await admin.keyboard.press('Tab');
    reached = await admin.evaluate((name) => document.activeElement?.textContent === name, BMC);
  }
  check(reached, 'the BMC link is not reachable with Tab');
});

await step('bmc-fans', async () => {
  await admin.keyboard.press('Enter');
  await admin.waitForURL(`${BASE}/bmcs/${BMC}`);
  await admin.waitForSelector('#fans-table tr[data-fan="FAN1"]', { timeout: 30000 });
  const fans = await admin.$$eval('#fans-table tbody tr[data-fan]', (rows) => rows.map((r) => ({
    name: r.dataset.fan,
    rpm: Number(r.querySelector('td.rpm').textContent),
    critical: Number(r.children[4].textContent),
  })));
  check(fans.length >= 2 && fans.every((f) => f.rpm > 0 && f.critical > 0 && f.critical < f.rpm), `fans: ${JSON.stringify(fans)}`);
  check(await admin.locator('#fan-mode').textContent() === 'standard', 'fan mode');
  check(await admin.locator('#zone-duty-0').count() === 1, 'zone 0 duty');
  const followed = await admin.locator('#temps-table tr[data-sensor="CPU Temp"]').textContent();
  check(followed.includes('CPU'), `CPU Temp row: ${followed}`);
  // Both charts draw the poller's samples of this BMC.
  await admin.waitForFunction(() => document.querySelector('main').dataset.chartsLoaded);
  await admin.waitForSelector('#charts-bmc .chart-panel:nth-child(1) canvas');
  await admin.waitForSelector('#charts-bmc .chart-panel:nth-child(2) canvas');
  const titles = await admin.locator('#charts-bmc .chart-panel h2').allTextContents();
  check(titles.join() === 'Fan speeds,Temperatures', `chart titles: ${titles}`);
});

const duty = (n) => `input[aria-label="Zone 0 point ${n} duty"]`;
const temp = (n) => `input[aria-label="Zone 0 point ${n} temperature"]`;

await step('bmc-curve-refused', async () => {
  await admin.waitForSelector('#no-curve');
  await admin.click('#curve-body button:has-text("New curve")');
  await admin.fill('input[name="interval_s"]', '2');
  await admin.fill(duty(1), '15');
  await admin.click('#curve-body button:has-text("Save")');
  // The server's message sits in the row right under the refused point.
  const note = admin.locator('tr[data-path="zones[0].points[0]"] + tr.error-row .field-error');
  await note.waitFor();
  const text = await note.textContent();
  check(text.startsWith("duty 15 % is below Supermicro's minimum of 20 %"), `refusal: ${text}`);
  check(await admin.getAttribute(duty(1), 'aria-invalid') === 'true', 'the refused field is not marked');
  check(await admin.getAttribute(temp(1), 'aria-invalid') === null, 'the temperature is marked as refused');
  check(await admin.evaluate(() => document.activeElement.getAttribute('aria-label')) === 'Zone 0 point 1 duty', 'focus is not on the refused field');
  check((await admin.locator('#curve-errors').textContent()).includes('refused'), 'no summary');
  const [status] = await pageApi(admin, 'GET', `/api/bmcs/${BMC}/curve`);
  check(status === 404, `a refused curve was stored (${status})`);
});

await step('bmc-preview', async () => {
  // Editing clears the refusal.
  await admin.fill(duty(1), '30');
  check(await admin.locator('.field-error').count() === 0, 'the refusal stays after an edit');
  await admin.fill(temp(1), '20');
  await admin.fill(duty(1), String(DUTY));
  await admin.fill(temp(2), '90');
  await admin.fill(duty(2), String(DUTY));
  await admin.click('#curve-body button:has-text("Preview")');
  const preview = admin.locator('#preview-decision');
  await preview.waitFor();
  const text = await preview.textContent();
  check(text.includes(`zone 0 ${DUTY} %`), `preview: ${text}`);
  check(text.includes('CPU Temp'), `the preview does not say why: ${text}`);
  const [status] = await pageApi(admin, 'GET', `/api/bmcs/${BMC}/curve`);
  check(status === 404, `a preview stored the curve (${status})`);
});

await step('bmc-detail', async () => {
  await admin.click('#curve-body button:has-text("Save")');
  await admin.waitForSelector('#flash .alert.ok:has-text("Curve saved")');
  // The server's loop writes the duty within a cycle or two; the live status, asked of
  // the BMC every 5 s, shows it.
  await admin.waitForSelector(`#zone-duty-0[data-duty="${DUTY}"]`, { timeout: 60000 });
  check(await admin.locator('#fan-mode').textContent() === 'full', 'Supermicro needs Full mode for a set duty');
  await admin.waitForSelector('#current-decision');
  check(await admin.locator('#curve-body button:has-text("Remove curve")').count() === 1, 'no Remove curve');
  await admin.evaluate(() => window.scrollTo(0, 0));
});

await step('bmc-hpe', async () => {
  await admin.goto(`${BASE}/bmcs`);
  await admin.waitForSelector(`#bmcs-body tr[data-bmc="${HPE_BMC}"]`);
  const vendor = await admin.locator(`#bmcs-body tr[data-bmc="${HPE_BMC}"] td`).nth(2).textContent();
  check(vendor === 'hpe (set)', `iLO vendor column: ${vendor}`);
  await admin.click(`#bmcs-body tr[data-bmc="${HPE_BMC}"] a`);
  await admin.waitForSelector('#hpe-note');
  const note = await admin.locator('#hpe-note').textContent();
  check(note.includes('not offered over IPMI on HPE iLO'), `HPE note: ${note}`);
  check(await admin.locator('#curve-body button').count() === 0, 'an iLO is offered a curve editor');
  // Its sensors are still shown.
  await admin.waitForSelector('#fans-table tr[data-fan="FAN1"]', { timeout: 30000 });
});

await step('bmc-viewer', async () => {
  const [status] = await pageApi(admin, 'POST', '/api/users', { name: 'viewer1', role: 'viewer', password: 'viewer-password-1' });
  check(status === 201, `creating a viewer: ${status}`);
  const viewer = await newPage();
  run.current = viewer;
  await login(viewer, { user: 'viewer1', password: 'viewer-password-1' });
  await viewer.goto(`${BASE}/bmcs`);
  await viewer.waitForSelector(row);
  check(await viewer.locator('#bmc-form').count() === 0, 'a viewer is offered Add BMC');
  check(await viewer.locator(`${row} button`).count() === 0, 'a viewer is offered BMC actions');
  await viewer.goto(`${BASE}/bmcs/${BMC}`);
  await viewer.waitForSelector(duty(1));
  check(await viewer.locator(duty(1)).isDisabled(), 'a viewer may edit the curve');
  check(await viewer.inputValue(duty(1)) === String(DUTY), 'the viewer does not see the stored curve');
  check(await viewer.locator('#curve-body button').count() === 0, 'a viewer is offered curve buttons');
  await viewer.context().close();
  run.current = admin;
});

await step('bmc-phone', async () => {
  const phone = await newPage({ width: 390, height: 844 });
  run.current = phone;
  await login(phone, ADMIN);
  await phone.goto(`${BASE}/bmcs/${BMC}`);
  await phone.waitForSelector('#fans-table tr[data-fan="FAN1"]', { timeout: 30000 });
  await phone.waitForSelector(duty(1));
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the page is ${overflow} px wider than the phone`);
});

await run.finish('all BMC page scenarios passed');
