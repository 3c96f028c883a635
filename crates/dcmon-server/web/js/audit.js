// The audit log (admins only): a search over who did what, newest first, paged by id
// (keyset: "older" asks for entries before the last id shown).

import { api, guarded, h, fill, fmtTime } from './api.js';

const form = document.getElementById('audit-form');
const body = document.getElementById('audit-body');
const more = document.getElementById('audit-more');
let nextBefore = null;

function query(before) {
  const f = form.elements;
  const p = new URLSearchParams();
  for (const k of ['actor', 'action', 'q']) if (f[k].value.trim()) p.set(k, f[k].value.trim());
  if (f.since.value) p.set('since_ms', String(new Date(f.since.value).getTime()));
  if (f.until.value) p.set('until_ms', String(new Date(f.until.value).getTime()));
  p.set('limit', f.limit.value);
  if (before) p.set('before_id', String(before));
  return p;
}

async function search(append) {
  const r = await guarded(() => api('GET', `/api/audit?${query(append ? nextBefore : null)}`));
  if (!r) return;
  const rows = r.entries.map((e) => h('tr', {},
    h('td', {}, fmtTime(e.ts_ms)),
    h('td', {}, e.actor),
    h('td', {}, h('code', {}, e.action)),
    h('td', {}, e.target || ''),
    h('td', { class: 'wrap' }, typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail ?? '')),
    h('td', {}, e.remote || '')));
  if (append) body.append(...rows);
  else fill(body, rows.length ? rows : h('tr', {}, h('td', { colspan: '6', class: 'dim' }, 'No entries match.')));
  nextBefore = r.next_before_id ?? null;
  more.hidden = nextBefore === null;
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  search(false);
});
more.addEventListener('click', () => search(true));
search(false);
