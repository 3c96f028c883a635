// What the browser scenarios share: environment, Chromium through playwright-core, named
// steps with screenshots, sign-in and API calls from a page with its session.
//
// A step runs its scenario, then writes a full-page screenshot of `run.current` to
// `<shots>/<name>.png`; the first failing step stops the run with its error and a
// `<name>-failed.png` screenshot. Uncaught errors in any page fail the run at `finish()`
// (and after every step when `strictPages` is set).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A reader of required environment variables; `script` names the Rust test that sets them. */
export function envReader(script) {
  return (name) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set (run through ${script})`);
    return v;
  };
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Starts Chromium; the returned run opens pages, runs steps and finishes. */
export async function launch({ playwright, shots, strictPages = false }) {
  const { chromium } = await import(pathToFileURL(playwright).href);
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  const pageErrors = [];
  const run = {
    /** The page the next screenshot is taken of. */
    current: null,

    async newPage(viewport = { width: 1440, height: 900 }) {
      const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
      const page = await context.newPage();
      // Generous: CI runs these beside other end-to-end tests on two cores.
      page.setDefaultTimeout(30000);
      page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') console.log(`  [console] ${page.url()}: ${m.text()}`);
      });
      return page;
    },

    async step(name, fn) {
      const started = Date.now();
      try {
        await fn();
        if (strictPages) check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
        if (run.current) await run.current.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
        console.log(`ok   ${name} (${Date.now() - started} ms)`);
      } catch (e) {
        console.log(`FAIL ${name} (${Date.now() - started} ms): ${e.stack || e}`);
        if (run.current) {
          await run.current.screenshot({ path: join(shots, `${name}-failed.png`), fullPage: true }).catch(() => {});
        }
        await browser.close();
        process.exit(1);
      }
    },

    /** Closes the browser; uncaught errors in any page fail the run. */
    async finish(done) {
      await browser.close();
      if (pageErrors.length) {
        console.log(`FAIL uncaught errors in pages:\n${pageErrors.join('\n')}`);
        process.exit(1);
      }
      console.log(done);
    },
  };
  return run;
}

/** Signs in through the login page; without `expectTotp` waits for the fleet page. */
export async function login(base, page, who, { expectTotp = false } = {}) {
  await page.goto(`${base}/login`);
  await page.fill('input[name="user"]', who.user);
  await page.fill('input[name="password"]', who.password);
  await page.click('button[type="submit"]');
  if (expectTotp) return;
  await page.waitForURL(`${base}/`);
}

/** A JSON API call from the page, with its session and CSRF token: [status, body]. */
export async function pageApi(page, method, path, body) {
  return page.evaluate(async ([m, p, b]) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch(p, {
      method: m,
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: b === undefined ? undefined : JSON.stringify(b),
    });
    const text = await r.text();
    return [r.status, text ? JSON.parse(text) : null];
  }, [method, path, body]);
}
