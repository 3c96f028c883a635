// Silences: those in force (or all, ended ones too) with their matchers, author, comment
// and end. Operators expire one now or make a new one.

import { api, flash, guarded, h, fill, fmtIn, fmtTime } from './api.js';
import { silenceForm } from './silence.js';

const REFRESH_MS = 5000;
const main = document.querySelector('main');
const canWrite = main.dataset.canWrite === 'true';
const body = document.getElementById('silences-body');
const allBox = document.getElementById('silences-all');
const columns = document.querySelectorAll('#silences-table thead th').length;

async function expire(s) {
  if (!confirm(`Expire silence ${s.id} now? Its alerts are notified again.`)) return;
  const ok = await guarded(async () => {
    await api('DELETE', `/api/silences/${s.id}`);
    return true;
  });
  if (ok) flash(`Silence ${s.id} expired.`, 'ok');
  load();
}

function row(s, now) {
  const active = s.starts_ms <= now && now < s.ends_ms;
  return h('tr', { 'data-silence': String(s.id), 'data-active': String(active) },
    h('td', {}, String(s.id)),
    h('td', { class: 'wrap' }, s.matchers.flatMap((m, i) => [i ? ' ' : '', h('code', {}, m)])),
    h('td', {}, s.author),
    h('td', { class: 'wrap' }, s.comment || h('span', { class: 'dim' }, '-')),
    h('td', {}, fmtTime(s.starts_ms)),
    h('td', { title: fmtTime(s.ends_ms) }, `${fmtTime(s.ends_ms)} (${fmtIn(s.ends_ms, now)})`),
    canWrite ? h('td', {}, s.ends_ms > now
      ? h('button', { type: 'button', class: 'danger', onclick: () => expire(s) }, 'Expire')
      : '') : '');
}

async function load() {
  const r = await guarded(() => api('GET', `/api/silences${allBox.checked ? '?all=true' : ''}`));
  if (!r) return;
  const now = Date.now();
  const active = r.silences.filter((s) => s.starts_ms <= now && now < s.ends_ms).length;
  document.getElementById('silences-count').textContent = `${active} in force`;
  fill(body, r.silences.length
    ? r.silences.map((s) => row(s, now))
    : h('tr', {}, h('td', { colspan: String(columns), class: 'dim' }, 'No silence.')));
}

silenceForm(() => load());
allBox.addEventListener('change', load);
load();
setInterval(() => {
  if (!document.hidden) load();
}, REFRESH_MS);
