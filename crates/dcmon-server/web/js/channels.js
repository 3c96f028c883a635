// Notification channels (their settings: the API never returns a secret) and the
// outbox's recent notifications. Operators add and remove channels and send a test
// message, whose delivery or the receiver's error is shown on the channel's row.

import { api, ApiError, clearRefusal, flash, guarded, h, fill, fmtAgo, fmtTime, showRefusal } from './api.js';

const REFRESH_MS = 5000;
const main = document.querySelector('main');
const canWrite = main.dataset.canWrite === 'true';
const body = document.getElementById('channels-body');
const notesBody = document.getElementById('notifications-body');
const statusBox = document.getElementById('notifications-status');
const columns = document.querySelectorAll('#channels-table thead th').length;
const STATUS_COLOUR = { sent: 'green', queued: 'yellow', failed: 'red' };

let channels = [];
/** The last test message's outcome by channel name: `{ok, text}`. */
const tests = new Map();

function sendsTo(c) {
  const cfg = c.config;
  switch (c.type) {
    case 'telegram': return `chat ${cfg.chat_id || '?'}`;
    case 'email': {
      const port = cfg.smtp_port ? `:${cfg.smtp_port}` : '';
      return `${(cfg.to || []).join(', ')} via ${cfg.smtp_host || '?'}${port} (${cfg.smtp_tls}${cfg.smtp_user ? `, as ${cfg.smtp_user}` : ''})`;
    }
    default: return 'its webhook URL (stored encrypted)';
  }
}

function routing(c) {
  const r = c.config.route || {};
  const parts = [];
  if (r.severities && r.severities.length) parts.push(`severity ${r.severities.join(' or ')}`);
  if (r.matchers && r.matchers.length) parts.push(r.matchers.join(', '));
  return parts.length ? parts.join('; ') : h('span', { class: 'dim' }, 'every alert');
}

async function test(c, button) {
  button.disabled = true;
  button.textContent = 'Sending...';
  try {
    await api('POST', `/api/channels/${encodeURIComponent(c.name)}/test`);
    tests.set(c.name, { ok: true, text: `delivered ${fmtTime(Date.now())}` });
    flash(`Test message delivered to ${c.name}.`, 'ok');
  } catch (e) {
    tests.set(c.name, { ok: false, text: e instanceof ApiError ? e.message : String(e) });
  } finally {
    button.disabled = false;
    button.textContent = 'Send test message';
  }
  render();
}

async function remove(c) {
  if (!confirm(`Remove channel ${c.name}? Rules that name it notify no one through it.`)) return;
  const ok = await guarded(async () => {
    await api('DELETE', `/api/channels/${encodeURIComponent(c.name)}`);
    return true;
  });
  if (ok) flash(`Channel ${c.name} removed.`, 'ok');
  tests.delete(c.name);
  load();
}

function row(c) {
  const t = tests.get(c.name);
  const testButton = h('button', { type: 'button' }, 'Send test message');
  testButton.addEventListener('click', () => test(c, testButton));
  return h('tr', { 'data-channel': c.name },
    h('td', {}, c.name),
    h('td', {}, c.type),
    h('td', { class: 'wrap' }, sendsTo(c)),
    h('td', { class: 'wrap' }, routing(c)),
    h('td', {}, c.config.send_resolved ? 'yes' : 'no'),
    h('td', {}, fmtTime(c.created_ms)),
    h('td', {}, c.updated_by),
    canWrite ? h('td', { class: 'wrap' },
      testButton, ' ',
      h('button', { type: 'button', class: 'danger', onclick: () => remove(c) }, 'Remove'),
      t ? h('span', { class: t.ok ? 'test-result ok' : 'field-error', 'data-field': 'test', 'data-ok': String(t.ok), role: 'status' }, t.text) : '') : '');
}

function render() {
  document.getElementById('channels-count').textContent = `${channels.length} channel${channels.length === 1 ? '' : 's'}`;
  if (channels.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: String(columns), class: 'dim' }, 'No channel yet: alerts are only shown here.')));
    return;
  }
  fill(body, channels.map(row));
}

function title(n) {
  if (n.message.test) return 'test message';
  const names = [...new Set(n.message.alerts.map((a) => a.labels.alertname))].join(', ');
  return `[${n.message.status}] ${n.message.alerts.length} alert${n.message.alerts.length === 1 ? '' : 's'}: ${names}`;
}

function noteRow(n) {
  return h('tr', { 'data-notification': String(n.id), 'data-status': n.status },
    h('td', { title: fmtTime(n.created_ms) }, fmtAgo(n.created_ms)),
    h('td', {}, n.channel),
    h('td', {}, h('span', { class: `badge ${STATUS_COLOUR[n.status] || ''}` }, n.status)),
    h('td', { class: 'wrap' }, title(n)),
    h('td', { class: 'num' }, String(n.attempts)),
    h('td', {}, n.sent_ms ? fmtTime(n.sent_ms) : n.status === 'queued' ? `next ${fmtTime(n.next_attempt_ms)}` : '-'),
    h('td', { class: 'wrap' }, n.last_error || h('span', { class: 'dim' }, '-')));
}

async function load() {
  const q = new URLSearchParams({ limit: '50' });
  if (statusBox.value) q.set('status', statusBox.value);
  const r = await guarded(() => Promise.all([api('GET', '/api/channels'), api('GET', `/api/notifications?${q}`)]));
  if (!r) return;
  channels = r[0].channels;
  const el = document.activeElement;
  const focused = el && body.contains(el) ? [el.closest('tr')?.dataset.channel, el.textContent] : null;
  render();
  if (focused) {
    [...body.querySelectorAll(`tr[data-channel] button`)]
      .find((b) => b.closest('tr').dataset.channel === focused[0] && b.textContent === focused[1])?.focus();
  }
  const notes = r[1].notifications;
  fill(notesBody, notes.length ? notes.map(noteRow) : h('tr', {}, h('td', { colspan: '7', class: 'dim' }, 'No notification yet.')));
}

/** The channel form's field a piece of the server's refusal is about. */
const CHANNEL_FIELDS = [
  [/^channel name /, 'name'], [/^url:/, 'url'], [/^token:/, 'token'], [/^chat_id:/, 'chat_id'],
  [/^smtp_host:/, 'smtp_host'], [/^from:/, 'from'], [/^to:/, 'to'], [/^smtp_user and password:/, 'password'],
  [/^route\.matchers:/, 'matchers'],
];

function channelField(part) {
  const hit = CHANNEL_FIELDS.find(([re]) => re.test(part));
  return hit ? hit[1] : null;
}

const form = document.getElementById('channel-form');
if (form) {
  const box = document.getElementById('channel-form-error');
  const f = form.elements;
  const list = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);
  // Only the fields of the chosen type are shown (and sent).
  const showFields = () => {
    for (const span of form.querySelectorAll('span[data-for]')) {
      span.hidden = !span.dataset.for.split(' ').includes(f.type.value);
    }
  };
  f.type.addEventListener('change', () => {
    clearRefusal(form, box);
    showFields();
  });
  showFields();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearRefusal(form, box);
    const type = f.type.value;
    const config = {
      route: { severities: list(f.severities.value), matchers: list(f.matchers.value) },
      send_resolved: f.send_resolved.checked,
    };
    const channel = { name: f.name.value.trim(), type, config };
    if (['webhook', 'slack', 'discord', 'teams'].includes(type)) channel.url = f.url.value.trim();
    if (type === 'telegram') {
      channel.token = f.token.value;
      config.chat_id = f.chat_id.value.trim();
    }
    if (type === 'email') {
      config.smtp_host = f.smtp_host.value.trim();
      if (f.smtp_port.value) config.smtp_port = Number(f.smtp_port.value);
      config.smtp_tls = f.smtp_tls.value;
      if (f.smtp_user.value.trim()) config.smtp_user = f.smtp_user.value.trim();
      if (f.password.value) channel.password = f.password.value;
      if (f.from.value.trim()) config.from = f.from.value.trim();
      config.to = list(f.to.value);
    }
    try {
      await api('POST', '/api/channels', channel);
      flash(`Channel ${channel.name} added.`, 'ok');
      form.reset();
      showFields();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const prefix = `channel ${channel.name}: `;
      const text = err.message.startsWith(prefix)
        ? err.message.slice(prefix.length) : err.message.replace(/^channel body \(expected .*?\}\): /, '');
      const parts = err.code === 'exists' ? [text] : text.split('; ');
      showRefusal(form, box, parts, (p) => (err.code === 'exists' ? 'name' : channelField(p)));
    } finally {
      // Secrets are not kept in the page once sent.
      f.url.value = '';
      f.token.value = '';
      f.password.value = '';
    }
    load();
  });
}

statusBox.addEventListener('change', load);
load();
setInterval(() => {
  if (!document.hidden) load();
}, REFRESH_MS);
