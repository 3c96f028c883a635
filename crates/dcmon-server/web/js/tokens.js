// API tokens: create (the secret is shown once), list, revoke. Viewers and operators see
// their own tokens, admins everyone's.

import { api, flash, guarded, h, fill, fmtAgo, fmtTime } from './api.js';

const body = document.getElementById('tokens-body');

async function load() {
  const r = await guarded(() => api('GET', '/api/tokens'));
  if (!r) return;
  if (r.tokens.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: '7', class: 'dim' }, 'No API tokens yet.')));
    return;
  }
  fill(body, r.tokens.map((t) => h('tr', { 'data-id': t.id },
    h('td', {}, t.name),
    h('td', {}, t.role),
    h('td', {}, t.owner || '-'),
    h('td', {}, fmtTime(t.created_ms)),
    h('td', { title: fmtTime(t.last_used_ms) }, t.last_used_ms ? fmtAgo(t.last_used_ms) : 'never'),
    h('td', {}, t.revoked ? h('span', { class: 'badge red' }, 'revoked') : h('span', { class: 'badge green' }, 'active')),
    h('td', {}, t.revoked ? '' : h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!confirm(`Revoke token ${t.name}? Scripts using it stop working.`)) return;
      const ok = await guarded(async () => {
        await api('DELETE', `/api/tokens/${encodeURIComponent(t.id)}`);
        return true;
      });
      if (ok) flash(`Token ${t.name} revoked.`, 'ok');
      load();
    } }, 'Revoke')))));
}

const form = document.getElementById('token-form');
form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = form.elements;
  const r = await guarded(() => api('POST', '/api/tokens', { name: f.name.value.trim(), role: f.role.value }));
  if (!r) return;
  fill(document.getElementById('token-result'),
    h('p', {}, 'Copy the token now; it is not shown again.'),
    h('div', { class: 'secret-once', id: 'new-token' }, r.token));
  form.reset();
  load();
});

load();
