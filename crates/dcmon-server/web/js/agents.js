// Agents and enrollment: the registered agents (approve the pending ones, revoke), and
// enrollment tokens for new machines. The buttons exist only for operators and admins.

import { api, flash, guarded, h, fill, fmtAgo, fmtTime } from './api.js';

const main = document.querySelector('main');
const canWrite = main.dataset.canWrite === 'true';
const body = document.getElementById('agents-body');
const filterBox = document.getElementById('agents-filter');

const STATUS_COLOUR = { approved: 'green', pending: 'yellow', revoked: 'red' };

async function act(agent, action) {
  if (action === 'revoke' && !confirm(`Revoke ${agent.host}? Its agent can no longer push or poll.`)) return;
  await guarded(async () => {
    await api('POST', `/api/agents/${encodeURIComponent(agent.id)}/${action}`);
    flash(`${agent.host}: ${action === 'approve' ? 'approved' : 'revoked'}.`, 'ok');
  });
  load();
}

let agents = [];

function render() {
  const f = filterBox.value.trim().toLowerCase();
  const shown = agents.filter((a) => !f || a.host.toLowerCase().includes(f) || a.status.includes(f));
  const pending = agents.filter((a) => a.status === 'pending').length;
  document.getElementById('agents-count').textContent = `${agents.length} agents${pending ? `, ${pending} waiting for approval` : ''}`;
  if (shown.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: '7', class: 'dim' }, agents.length ? 'No agent matches.' : 'No agent has registered yet.')));
    return;
  }
  // Pending agents first: they are what someone has to act on.
  shown.sort((a, b) => (a.status === 'pending' ? 0 : 1) - (b.status === 'pending' ? 0 : 1) || a.host.localeCompare(b.host, undefined, { numeric: true }));
  fill(body, shown.map((a) => h('tr', { 'data-host': a.host },
    h('td', {}, h('a', { href: `/machines/${encodeURIComponent(a.host)}` }, a.host)),
    h('td', {}, h('span', { class: `badge ${STATUS_COLOUR[a.status] || ''}` }, a.status)),
    h('td', {}, a.agent_version),
    h('td', { title: fmtTime(a.last_seen_ms) }, fmtAgo(a.last_seen_ms)),
    h('td', {}, a.remote_addr || '-'),
    h('td', { title: a.id }, fmtTime(a.created_ms)),
    canWrite ? h('td', {},
      a.status === 'pending' ? h('button', { type: 'button', class: 'primary', onclick: () => act(a, 'approve') }, 'Approve') : '',
      ' ',
      a.status !== 'revoked' ? h('button', { type: 'button', class: 'danger', onclick: () => act(a, 'revoke') }, 'Revoke') : '') : '')));
}

async function load() {
  const r = await guarded(() => api('GET', '/api/agents'));
  if (!r) return;
  agents = r.agents;
  render();
}

filterBox.addEventListener('input', render);

const form = document.getElementById('enroll-form');
if (form) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const uses = Number(form.elements.uses.value || 1);
    const ttl_s = Number(form.elements.ttl_h.value || 24) * 3600;
    const r = await guarded(() => api('POST', '/api/enroll-tokens', { uses, ttl_s }));
    if (!r) return;
    const out = document.getElementById('enroll-result');
    const server = main.dataset.publicUrl;
    const fingerprint = main.dataset.fingerprint;
    const join = `dcmon-agent register --server ${server} --token ${r.token} --fingerprint ${fingerprint}`;
    fill(out,
      h('p', {}, `Enrollment token for ${uses} machine${uses === 1 ? '' : 's'}, valid until ${fmtTime(r.expires_ms)}. It is shown only now; run this on each new machine:`),
      h('div', { class: 'secret-once', id: 'enroll-command' }, join));
  });
}

load();
setInterval(() => {
  if (!document.hidden) load();
}, 15000);
