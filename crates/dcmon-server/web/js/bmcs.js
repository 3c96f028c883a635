// The BMC inventory: every BMC the server polls, with its poll state and fan mode,
// refreshed every few seconds. Admins add and remove BMCs; operators check that the
// server can log in to one. The buttons exist only for those roles (the API refuses
// the others anyway).

import { api, ApiError, flash, guarded, h, fill, fmtAgo, fmtTime } from './api.js';

const REFRESH_MS = 5000;
const main = document.querySelector('main');
const canCheck = main.dataset.canCheck === 'true';
const canAdmin = main.dataset.canAdmin === 'true';
const body = document.getElementById('bmcs-body');
const filterBox = document.getElementById('bmcs-filter');
const columns = document.querySelectorAll('#bmcs-table thead th').length;

const STATE_COLOUR = { ok: 'green', degraded: 'yellow', unreachable: 'red', auth_failed: 'red' };

let bmcs = [];
/** Fan mode by BMC name, from the poller's `dcmon_bmc_fan_mode` series (Supermicro). */
let modes = new Map();

function fmtInterval(s) {
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

function vendorOf(b) {
  if (b.vendor_override) return `${b.vendor_override} (set)`;
  return b.vendor || 'not known yet';
}

async function check(b, button) {
  button.disabled = true;
  button.textContent = 'Checking...';
  try {
    const r = await api('POST', `/api/bmcs/${encodeURIComponent(b.name)}/check`);
    flash(`${b.name}: answered; ${r.vendor}, firmware ${r.firmware}, IPMI ${r.ipmi_version}.`, 'ok');
  } catch (e) {
    flash(e instanceof ApiError ? e.message : String(e));
  } finally {
    button.disabled = false;
    button.textContent = 'Check connectivity';
  }
  load();
}

async function remove(b) {
  if (!confirm(`Remove BMC ${b.name}? Its fan curve goes with it; its history stays.`)) return;
  const ok = await guarded(async () => {
    await api('DELETE', `/api/bmcs/${encodeURIComponent(b.name)}`);
    return true;
  });
  if (ok) flash(`${b.name} removed.`, 'ok');
  load();
}

function row(b) {
  const state = b.last_state || 'not polled yet';
  const checkButton = h('button', { type: 'button' }, 'Check connectivity');
  checkButton.addEventListener('click', () => check(b, checkButton));
  return h('tr', { 'data-bmc': b.name, 'data-state': b.last_state || '' },
    h('td', {}, h('a', { href: `/bmcs/${encodeURIComponent(b.name)}` }, b.name)),
    h('td', { class: 'mono' }, b.address.includes(':') ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`),
    h('td', {}, vendorOf(b)),
    h('td', {}, b.agent_host ? h('a', { href: `/machines/${encodeURIComponent(b.agent_host)}` }, b.agent_host) : h('span', { class: 'dim' }, 'none')),
    h('td', {}, h('span', { class: `badge ${STATE_COLOUR[b.last_state] || ''}`, 'data-field': 'state' }, state)),
    h('td', { class: 'num' }, String(b.consecutive_failures)),
    h('td', { title: fmtTime(b.last_poll_ms) }, fmtAgo(b.last_poll_ms)),
    h('td', { 'data-field': 'mode' }, modes.get(b.name) || h('span', { class: 'dim' }, '-')),
    h('td', {}, fmtInterval(b.interval_s)),
    canCheck ? h('td', {},
      checkButton,
      canAdmin ? ' ' : '',
      canAdmin ? h('button', { type: 'button', class: 'danger', onclick: () => remove(b) }, 'Remove') : '') : '');
}

function render() {
  const f = filterBox.value.trim().toLowerCase();
  const shown = bmcs.filter((b) => !f || [b.name, b.address, b.agent_host || '', b.last_state || '', b.vendor || '']
    .some((v) => v.toLowerCase().includes(f)));
  const failing = bmcs.filter((b) => b.last_state && b.last_state !== 'ok').length;
  document.getElementById('bmcs-count').textContent = `${bmcs.length} BMC${bmcs.length === 1 ? '' : 's'}${failing ? `, ${failing} not ok` : ''}`;
  if (shown.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: String(columns), class: 'dim' }, bmcs.length ? 'No BMC matches.' : 'No BMC yet.')));
    return;
  }
  // Failing BMCs first: they are what someone has to look at.
  const bad = (b) => (b.last_state && b.last_state !== 'ok' ? 0 : 1);
  shown.sort((a, b) => bad(a) - bad(b) || a.name.localeCompare(b.name, undefined, { numeric: true }));
  fill(body, shown.map(row));
}

async function loadModes() {
  try {
    const r = await api('GET', `/api/v1/query?${new URLSearchParams({ query: 'dcmon_bmc_fan_mode' })}`);
    modes = new Map(r.data.result.filter((s) => s.metric.bmc).map((s) => [s.metric.bmc, s.metric.mode]));
  } catch {
    // The mode column is a convenience; the inventory is shown without it.
    modes = new Map();
  }
}

async function load() {
  const [r] = await Promise.all([guarded(() => api('GET', '/api/bmcs')), loadModes()]);
  if (!r) return;
  bmcs = r.bmcs;
  // Keep the keyboard focus when the table is rebuilt under it.
  const focused = document.activeElement && body.contains(document.activeElement)
    ? [document.activeElement.closest('tr')?.dataset.bmc, document.activeElement.textContent] : null;
  render();
  if (focused) {
    const again = [...body.querySelectorAll(`tr[data-bmc] a, tr[data-bmc] button`)]
      .find((el) => el.closest('tr').dataset.bmc === focused[0] && el.textContent === focused[1]);
    if (again) again.focus();
  }
  document.getElementById('bmcs-updated').textContent = `updated ${fmtTime(Date.now())}`;
}

filterBox.addEventListener('input', render);

const form = document.getElementById('bmc-form');
if (form) {
  const errorBox = document.getElementById('bmc-form-error');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = form.elements;
    const host = f.address.value.trim();
    const port = f.port.value.trim() || '623';
    const bmc = {
      name: f.name.value.trim(),
      // The API takes HOST[:PORT]; an IPv6 address needs brackets before a port.
      address: host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`,
      user: f.user.value,
      password: f.password.value,
      interval: `${Number(f.interval_s.value || 300)}s`,
    };
    fill(errorBox);
    try {
      await api('POST', '/api/bmcs', bmc);
      flash(`BMC ${bmc.name} added; the first poll follows shortly.`, 'ok');
      form.reset();
    } catch (err) {
      fill(errorBox, h('div', { class: 'alert', role: 'alert' }, err instanceof ApiError ? err.message : String(err)));
    } finally {
      // The password is not kept in the page once sent.
      f.password.value = '';
    }
    load();
  });
}

load();
setInterval(() => {
  if (!document.hidden) load();
}, REFRESH_MS);
