// The alerts: firing and pending ones first (what someone has to look at), then the
// resolved history, a page at a time. Refreshed every few seconds. Operators acknowledge
// an alert (no more repeat notifications) or silence it (the form comes filled with the
// alert's labels). Each row opens its history in place.

import { api, flash, guarded, h, fill, fmtAgo, fmtTime, fmtValue } from './api.js';
import { silenceForm } from './silence.js';

const REFRESH_MS = 3000;
const PAGE = 50;
const main = document.querySelector('main');
const canWrite = main.dataset.canWrite === 'true';
const openBody = document.getElementById('open-body');
const resolvedBody = document.getElementById('resolved-body');
const stateBox = document.getElementById('alerts-state');
const filterBox = document.getElementById('alerts-filter');
const sinceBox = document.getElementById('resolved-since');
const moreButton = document.getElementById('resolved-more');

const SEVERITY_COLOUR = { critical: 'red', warning: 'yellow', info: 'blue' };
const STATE_COLOUR = { firing: 'red', pending: 'yellow', resolved: 'green' };
const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
/** Labels with a column of their own. */
const OWN_COLUMN = new Set(['alertname', 'severity', 'host']);

let open = [];
let resolved = [];
let moreResolved = false;
let resolvedLimit = PAGE;
/** Alerts whose history is open, and their history. */
const expanded = new Set();
const histories = new Map();

const showSilence = silenceForm(() => load());
/** The alert of `/alerts/{id}` (a notification's link): always listed, its history open
 * and focused at first. */
let pinned = main.dataset.openAlert ? Number(main.dataset.openAlert) : null;
let focusPinned = pinned !== null;
if (pinned !== null) expanded.add(pinned);

function otherLabels(a) {
  return Object.entries(a.labels).filter(([k]) => !OWN_COLUMN.has(k)).map(([k, v]) => `${k}=${v}`).join(' ');
}

function matches(a, f) {
  if (!f) return true;
  return [a.rule, a.state, ...Object.entries(a.labels).map(([k, v]) => `${k}=${v}`), ...Object.values(a.annotations)]
    .some((v) => v.toLowerCase().includes(f));
}

function badge(text, colour, field) {
  return h('span', { class: `badge ${colour || ''}`, 'data-field': field }, text);
}

function hostCell(a) {
  const host = a.labels.host;
  return h('td', {}, host ? h('a', { href: `/machines/${encodeURIComponent(host)}` }, host) : h('span', { class: 'dim' }, '-'));
}

async function ack(a) {
  const ok = await guarded(async () => {
    await api('POST', `/api/alerts/${a.id}/ack`);
    return true;
  });
  if (ok) flash(`${a.rule} acknowledged: no more repeat notifications for it.`, 'ok');
  load();
}

async function toggle(a) {
  if (expanded.has(a.id)) {
    expanded.delete(a.id);
  } else {
    expanded.add(a.id);
    await loadHistory(a.id);
  }
  render();
}

async function loadHistory(id) {
  const r = await guarded(() => api('GET', `/api/alerts/${id}`));
  if (r) histories.set(id, r.history);
}

function actions(a) {
  const open = expanded.has(a.id);
  return h('td', {},
    h('button', { type: 'button', 'aria-expanded': String(open), onclick: () => toggle(a) }, open ? 'Hide history' : 'History'),
    canWrite && a.state !== 'resolved' && !a.acked_by ? [' ', h('button', { type: 'button', onclick: () => ack(a) }, 'Acknowledge')] : '',
    canWrite && a.state !== 'resolved' && showSilence
      ? [' ', h('button', { type: 'button', onclick: () => showSilence(Object.entries(a.labels).map(([k, v]) => `${k}="${v}"`)) }, 'Silence')]
      : '');
}

/** The row under an open alert: its labels, annotations and every change of state. */
function detail(a, columns) {
  const history = histories.get(a.id) || [];
  return h('tr', { class: 'detail-row', 'data-detail': String(a.id) },
    h('td', { colspan: String(columns) },
      h('div', { class: 'alert-detail' },
        h('dl', { class: 'kv' },
          h('dt', {}, 'ID'), h('dd', {}, String(a.id)),
          h('dt', {}, 'Active since'), h('dd', {}, fmtTime(a.active_since_ms)),
          a.acked_by ? [h('dt', {}, 'Acknowledged'), h('dd', {}, `${a.acked_by}, ${fmtTime(a.acked_ms)}`)] : '',
          a.notified_state ? [h('dt', {}, 'Last notified'), h('dd', {}, `${a.notified_state}, ${fmtTime(a.notified_ms)}`)] : '',
          h('dt', {}, 'Channels'), h('dd', {}, a.channels.length ? a.channels.join(', ') : 'by route'),
          ...Object.entries(a.labels).map(([k, v]) => [h('dt', {}, h('code', {}, k)), h('dd', { class: 'mono' }, v)]),
          ...Object.entries(a.annotations).map(([k, v]) => [h('dt', {}, k), h('dd', { class: 'wrap' }, v)])),
        h('table', { class: 'list history' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Value'))),
          h('tbody', {}, history.length
            ? history.map((e) => h('tr', {},
              h('td', {}, fmtTime(e.ts_ms)),
              h('td', {}, badge(e.state, STATE_COLOUR[e.state])),
              h('td', { class: 'num' }, fmtValue(e.value))))
            : h('tr', {}, h('td', { colspan: '3', class: 'dim' }, 'No history yet.')))))));
}

function openRow(a) {
  return h('tr', { 'data-alert': String(a.id), 'data-state': a.state, 'data-rule': a.rule },
    h('td', {}, badge(a.labels.severity || '-', SEVERITY_COLOUR[a.labels.severity])),
    h('td', {}, badge(a.state, STATE_COLOUR[a.state], 'state')),
    h('td', {}, a.rule),
    hostCell(a),
    h('td', { class: 'wrap mono' }, otherLabels(a)),
    h('td', { class: 'num' }, fmtValue(a.value)),
    h('td', { title: fmtTime(a.fired_ms ?? a.active_since_ms) }, fmtAgo(a.fired_ms ?? a.active_since_ms)),
    h('td', { class: 'wrap' }, a.annotations.summary || ''),
    h('td', { 'data-field': 'acked', title: a.acked_ms ? fmtTime(a.acked_ms) : undefined }, a.acked_by || h('span', { class: 'dim' }, '-')),
    h('td', { 'data-field': 'silenced' }, a.silenced_by
      ? h('a', { href: '/alerts/silences' }, `silence ${a.silenced_by}`)
      : h('span', { class: 'dim' }, '-')),
    actions(a));
}

function resolvedRow(a) {
  return h('tr', { 'data-alert': String(a.id), 'data-state': a.state, 'data-rule': a.rule },
    h('td', {}, badge(a.labels.severity || '-', SEVERITY_COLOUR[a.labels.severity])),
    h('td', {}, a.rule),
    hostCell(a),
    h('td', { class: 'wrap mono' }, otherLabels(a)),
    h('td', { class: 'num' }, fmtValue(a.value)),
    h('td', {}, fmtTime(a.fired_ms)),
    h('td', {}, fmtTime(a.resolved_ms)),
    h('td', { class: 'wrap' }, a.annotations.summary || ''),
    h('td', {}, a.acked_by || h('span', { class: 'dim' }, '-')),
    actions(a));
}

function rows(list, rowOf, body, empty) {
  const columns = body.closest('table').querySelectorAll('thead th').length;
  if (list.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: String(columns), class: 'dim' }, empty)));
    return;
  }
  fill(body, list.flatMap((a) => (expanded.has(a.id) ? [rowOf(a), detail(a, columns)] : [rowOf(a)])));
}

function render() {
  const f = filterBox.value.trim().toLowerCase();
  const state = stateBox.value;
  const firing = open.filter((a) => a.state === 'firing').length;
  document.getElementById('alerts-count').textContent = `${firing} firing, ${open.length - firing} pending`;
  document.getElementById('open-section').hidden = state === 'resolved';
  document.getElementById('resolved-section').hidden = state === 'firing' || state === 'pending';
  const shownOpen = open.filter((a) => (!state || a.state === state) && matches(a, f));
  // Firing before pending, the worst first, the newest first.
  shownOpen.sort((a, b) => (a.state === b.state ? 0 : a.state === 'firing' ? -1 : 1)
    || (SEVERITY_RANK[a.labels.severity] ?? 3) - (SEVERITY_RANK[b.labels.severity] ?? 3)
    || b.active_since_ms - a.active_since_ms);
  rows(shownOpen, openRow, openBody, open.length ? 'No alert matches.' : 'Nothing is firing or pending.');
  rows(resolved.filter((a) => matches(a, f)), resolvedRow, resolvedBody, 'No alert resolved in this time.');
  moreButton.hidden = !moreResolved;
}

async function load() {
  const since = Date.now() - Number(sinceBox.value);
  const r = await guarded(() => Promise.all([
    api('GET', '/api/alerts?state=firing&limit=10000'),
    api('GET', '/api/alerts?state=pending&limit=10000'),
    api('GET', `/api/alerts?state=resolved&since_ms=${since}&limit=${resolvedLimit + 1}`),
  ]));
  if (!r) return;
  open = [...r[0].alerts, ...r[1].alerts];
  moreResolved = r[2].alerts.length > resolvedLimit;
  resolved = r[2].alerts.slice(0, resolvedLimit);
  if (pinned !== null && ![...open, ...resolved].some((a) => a.id === pinned)) {
    // Resolved before the window shown: listed first among the resolved ones.
    try {
      resolved.unshift((await api('GET', `/api/alerts/${pinned}`)).alert);
    } catch (e) {
      // Said once: an unknown alert is not asked for again on every refresh.
      flash(e.message);
      pinned = null;
    }
  }
  const shown = new Set([...open, ...resolved].map((a) => a.id));
  for (const id of [...expanded]) if (!shown.has(id)) expanded.delete(id);
  await Promise.all([...expanded].map(loadHistory));
  // Keep the keyboard focus when the tables are rebuilt under it.
  const el = document.activeElement;
  const focused = el && main.contains(el) && el.closest('tr[data-alert]')
    ? [el.closest('tr[data-alert]').dataset.alert, el.textContent] : null;
  render();
  if (focused) {
    const again = [...main.querySelectorAll(`tr[data-alert="${focused[0]}"] button, tr[data-alert="${focused[0]}"] a`)]
      .find((b) => b.textContent === focused[1]);
    if (again) again.focus();
  }
  if (focusPinned) {
    const button = main.querySelector(`tr[data-alert="${pinned}"] button`);
    if (button) {
      button.closest('tr').scrollIntoView({ block: 'center' });
      button.focus();
    }
    focusPinned = false;
  }
  document.getElementById('alerts-updated').textContent = `updated ${fmtTime(Date.now())}`;
}

filterBox.addEventListener('input', render);
stateBox.addEventListener('change', render);
sinceBox.addEventListener('change', () => {
  resolvedLimit = PAGE;
  load();
});
moreButton.addEventListener('click', () => {
  resolvedLimit += PAGE;
  load();
});

load();
setInterval(() => {
  if (!document.hidden) load();
}, REFRESH_MS);
