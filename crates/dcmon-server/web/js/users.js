// Users (admins only): create, change role, reset password, unlock, remove.

import { api, flash, guarded, h, fill, fmtTime } from './api.js';

const ROLES = ['viewer', 'operator', 'admin'];
const body = document.getElementById('users-body');

async function update(user, change, done) {
  const ok = await guarded(async () => {
    await api('PUT', `/api/users/${encodeURIComponent(user.name)}`, change);
    return true;
  });
  if (ok) flash(`${user.name}: ${done}.`, 'ok');
  load();
}

function row(u) {
  const role = h('select', { 'aria-label': `Role of ${u.name}` }, ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)));
  role.addEventListener('change', () => update(u, { role: role.value }, `role set to ${role.value}`));
  const locked = u.locked_until_ms && u.locked_until_ms > Date.now();
  return h('tr', { 'data-user': u.name },
    h('td', {}, u.name),
    h('td', {}, role),
    h('td', {}, u.totp_enabled ? h('span', { class: 'badge green' }, 'on') : h('span', { class: 'dim' }, 'off')),
    h('td', {}, locked ? h('span', { class: 'badge red' }, `locked until ${fmtTime(u.locked_until_ms)}`) : h('span', { class: 'dim' }, 'no')),
    h('td', {}, fmtTime(u.created_ms)),
    h('td', {},
      locked ? h('button', { type: 'button', onclick: () => update(u, { unlock: true }, 'unlocked') }, 'Unlock') : '', ' ',
      h('button', { type: 'button', onclick: () => {
        const pw = prompt(`New password for ${u.name} (at least 12 characters):`);
        if (pw) update(u, { password: pw }, 'password changed');
      } }, 'Set password'), ' ',
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Remove user ${u.name}?`)) return;
        const ok = await guarded(async () => {
          await api('DELETE', `/api/users/${encodeURIComponent(u.name)}`);
          return true;
        });
        if (ok) flash(`${u.name} removed.`, 'ok');
        load();
      } }, 'Remove')));
}

async function load() {
  const r = await guarded(() => api('GET', '/api/users'));
  if (!r) return;
  fill(body, r.users.map(row));
}

const form = document.getElementById('user-form');
form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = form.elements;
  const user = { name: f.name.value.trim(), role: f.role.value, password: f.password.value };
  const ok = await guarded(async () => {
    await api('POST', '/api/users', user);
    return true;
  });
  if (ok) {
    flash(`User ${user.name} created as ${user.role}.`, 'ok');
    form.reset();
  }
  load();
});

load();
