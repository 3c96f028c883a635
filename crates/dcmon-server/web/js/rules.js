// The alert rules: stored ones and the built-ins in force, each with its state now
// (firing, pending or ok, from the open alerts). Operators add and remove rules and
// import Prometheus rule files; a refusal is shown next to the field it names.

import { api, ApiError, clearRefusal, flash, guarded, h, fill, fmtTime, showRefusal } from './api.js';

const REFRESH_MS = 5000;
const main = document.querySelector('main');
const canWrite = main.dataset.canWrite === 'true';
const body = document.getElementById('rules-body');
const filterBox = document.getElementById('rules-filter');
const columns = document.querySelectorAll('#rules-table thead th').length;
const SEVERITY_COLOUR = { critical: 'red', warning: 'yellow', info: 'blue' };
/** The way back for each threshold operator (resolve lies on the good side). */
const BACK = { '>': '<=', '>=': '<', '<': '>=', '<=': '>' };

let rules = [];
/** Open alerts by rule: `{firing, pending}`. */
let open = new Map();

function thresholdText(t) {
  if (!t) return 'any series';
  const resolve = t.resolve !== undefined && t.resolve !== null ? `, resolves ${BACK[t.op]} ${t.resolve}` : '';
  return `${t.op} ${t.value}${resolve}`;
}

function stateOf(name) {
  const o = open.get(name);
  if (o && o.firing) return h('span', { class: 'badge red', 'data-field': 'state' }, `firing (${o.firing})`);
  if (o && o.pending) return h('span', { class: 'badge yellow', 'data-field': 'state' }, `pending (${o.pending})`);
  return h('span', { class: 'badge green', 'data-field': 'state' }, 'ok');
}

async function remove(r) {
  if (!confirm(`Remove rule ${r.name}? Its open alerts resolve at the next evaluation.`)) return;
  const ok = await guarded(async () => {
    await api('DELETE', `/api/rules/${encodeURIComponent(r.name)}`);
    return true;
  });
  if (ok) flash(`Rule ${r.name} removed.`, 'ok');
  load();
}

function row(r) {
  return h('tr', { 'data-rule': r.name, 'data-kind': r.builtin ? 'builtin' : 'custom' },
    h('td', {}, r.name),
    h('td', {}, r.builtin ? h('span', { class: 'badge blue', title: 'Tuned or turned off under alerts.builtins in the server config' }, 'built-in') : 'custom'),
    h('td', {}, stateOf(r.name)),
    h('td', { class: 'wrap mono' }, r.expr),
    h('td', {}, thresholdText(r.threshold)),
    h('td', {}, r.for),
    h('td', {}, h('span', { class: `badge ${SEVERITY_COLOUR[r.severity] || ''}` }, r.severity)),
    h('td', {}, r.channels && r.channels.length ? r.channels.join(', ') : h('span', { class: 'dim' }, 'by route')),
    h('td', { title: r.updated_ms ? fmtTime(r.updated_ms) : undefined }, r.builtin ? h('span', { class: 'dim' }, 'server config') : `${fmtTime(r.updated_ms)} by ${r.updated_by}`),
    canWrite ? h('td', {}, r.builtin ? '' : h('button', { type: 'button', class: 'danger', onclick: () => remove(r) }, 'Remove')) : '');
}

function render() {
  const f = filterBox.value.trim().toLowerCase();
  const shown = rules.filter((r) => !f || [r.name, r.expr, r.severity].some((v) => v.toLowerCase().includes(f)));
  const custom = rules.filter((r) => !r.builtin).length;
  document.getElementById('rules-count').textContent = `${custom} custom, ${rules.length - custom} built-in`;
  if (shown.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: String(columns), class: 'dim' }, rules.length ? 'No rule matches.' : 'No rule yet.')));
    return;
  }
  fill(body, shown.map(row));
}

async function load() {
  const r = await guarded(() => Promise.all([
    api('GET', '/api/rules'),
    api('GET', '/api/alerts?state=firing&limit=10000'),
    api('GET', '/api/alerts?state=pending&limit=10000'),
  ]));
  if (!r) return;
  // Custom rules first: those are the ones people edit.
  rules = [...r[0].rules, ...r[0].builtins.map((b) => ({ ...b, builtin: true }))];
  open = new Map();
  for (const a of [...r[1].alerts, ...r[2].alerts]) {
    const o = open.get(a.rule) || { firing: 0, pending: 0 };
    o[a.state] += 1;
    open.set(a.rule, o);
  }
  const el = document.activeElement;
  const focused = el && body.contains(el) ? el.closest('tr')?.dataset.rule : null;
  render();
  if (focused) body.querySelector(`tr[data-rule="${CSS.escape(focused)}"] button`)?.focus();
}

/** The rule form's field (message slot) a piece of the server's refusal is about. */
const RULE_FIELDS = [
  [/^rule name /, 'name'], [/built-in rule's name/, 'name'], [/^expr:/, 'expr'], [/^threshold:/, 'threshold'],
  [/^resolve:/, 'resolve'], [/^for:/, 'for'], [/^annotations/, 'annotations'], [/^channels:/, 'channels'],
];

function ruleField(part) {
  const hit = RULE_FIELDS.find(([re]) => re.test(part));
  return hit ? hit[1] : null;
}

/**
 * The pieces of a refusal of `POST /api/rules`: `rule <name>: <problem>; <problem>`,
 * each problem naming its field. A piece that names none continues the one before (a
 * parser message may hold `; ` itself).
 */
function refusalParts(message, name) {
  const prefix = `rule ${name}: `;
  const text = message.startsWith(prefix) ? message.slice(prefix.length) : message.replace(/^rule body \(expected .*?\}\): /, '');
  const parts = [];
  for (const piece of text.split('; ')) {
    if (parts.length && !ruleField(piece)) parts[parts.length - 1] += `; ${piece}`;
    else parts.push(piece);
  }
  return parts;
}

const ruleForm = document.getElementById('rule-form');
if (ruleForm) {
  const box = document.getElementById('rule-form-error');
  ruleForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearRefusal(ruleForm, box);
    const f = ruleForm.elements;
    const spec = {
      name: f.name.value.trim(),
      expr: f.expr.value.trim(),
      for: f.for.value.trim() || '0s',
      severity: f.severity.value,
    };
    if (f.op.value) {
      spec.threshold = { op: f.op.value, value: f.value.value === '' ? null : Number(f.value.value) };
      if (f.resolve.value !== '') spec.threshold.resolve = Number(f.resolve.value);
    }
    const channels = f.channels.value.split(',').map((c) => c.trim()).filter(Boolean);
    if (channels.length) spec.channels = channels;
    if (f.summary.value.trim()) spec.annotations = { summary: f.summary.value.trim() };
    try {
      await api('POST', '/api/rules', spec);
      flash(`Rule ${spec.name} added; it is evaluated from the next cycle.`, 'ok');
      ruleForm.reset();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const parts = err.code === 'exists' ? [err.message] : refusalParts(err.message, spec.name);
      showRefusal(ruleForm, box, parts, (p) => (err.code === 'exists' ? 'name' : ruleField(p)),
        { threshold: 'value', annotations: 'summary' });
    }
    load();
  });
}

const importForm = document.getElementById('import-form');
if (importForm) {
  const result = document.getElementById('import-result');
  importForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearRefusal(importForm, result);
    try {
      const r = await api('POST', '/api/rules/import', importForm.elements.yaml.value, 'application/yaml');
      fill(result, h('div', { class: 'alert ok', role: 'status' },
        `Imported ${r.imported} rule${r.imported === 1 ? '' : 's'}.`,
        r.warnings.length ? h('ul', {}, r.warnings.map((w) => h('li', {}, w))) : ''));
      importForm.reset();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      // Every problem of the file, one a line, under the text they are about.
      showRefusal(importForm, result, err.message.split('\n'), () => 'yaml');
    }
    load();
  });
}

filterBox.addEventListener('input', render);
load();
setInterval(() => {
  if (!document.hidden) load();
}, REFRESH_MS);
