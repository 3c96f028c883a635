// One BMC: its fans now (mode, zone duties, every fan's speed against its lower
// thresholds, the temperatures its curve follows), asked of the BMC every few seconds
// through `GET /api/bmcs/{name}/fans`; charts of its fan speeds and temperatures over
// the last hour; and its fan curve, an editor for operators (preview, save, remove) and
// read only for viewers. The server validates every curve; its refusal is shown next to
// the point, fan or field it names.

import { api, ApiError, flash, h, fill, fmtAgo, fmtTime } from './api.js';
import { Chart, promString } from './chart.js';

const REFRESH_MS = 5000;
const HOUR_S = 3600;
/** The relative range follows the clock this often. */
const FOLLOW_MS = 30000;
const KINDS = [
  ['cpu_temp', 'CPU'],
  ['gpu_temp', 'GPU'],
  ['nvme_temp', 'NVMe'],
  ['other', 'other'],
];
const ZONE_NAMES = ['0 (CPU/system)', '1 (peripheral)'];
/** The vendors' minimum duties (DESIGN §8); the server refuses less, this is a hint. */
const MINIMUM = { supermicro: 20, dell: 10 };
const HPE_NOTE = 'Fan control is not offered over IPMI on HPE iLO; use iLO\'s own thermal settings. Fan speeds and temperatures are shown as read.';

const main = document.querySelector('main[data-bmc]');
const name = main.dataset.bmc;
const canWrite = main.dataset.canWrite === 'true';
const base = `/api/bmcs/${encodeURIComponent(name)}`;

/** What the page knows of the BMC: its inventory record and its latest fan view. */
const known = { record: null, view: null, vendor: null };

// ---------------------------------------------------------------------------------
// Inventory record

async function loadRecord() {
  let r;
  try {
    r = await api('GET', '/api/bmcs');
  } catch (e) {
    fill(document.getElementById('bmc-info'), h('div', { class: 'alert' }, e.message));
    return;
  }
  const b = r.bmcs.find((x) => x.name === name);
  const info = document.getElementById('bmc-info');
  if (!b) {
    fill(info, h('div', { class: 'alert', role: 'alert' }, `No BMC named ${name}.`), h('a', { href: '/bmcs' }, 'All BMCs'));
    return;
  }
  known.record = b;
  if (!known.vendor) known.vendor = b.vendor_override || b.vendor;
  const addr = b.address.includes(':') ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`;
  fill(info, h('dl', { class: 'kv' },
    h('dt', {}, 'Address'), h('dd', { class: 'mono' }, addr),
    h('dt', {}, 'User'), h('dd', {}, b.username),
    h('dt', {}, 'Vendor'), h('dd', {}, b.vendor_override ? `${b.vendor_override} (set by an administrator)` : (b.vendor || 'not known yet')),
    h('dt', {}, 'Agent'), h('dd', {}, b.agent_host
      ? [h('a', { href: `/machines/${encodeURIComponent(b.agent_host)}` }, b.agent_host), ' (the curve runs on that agent)']
      : 'none (the curve runs in this server)'),
    h('dt', {}, 'Poll state'), h('dd', { id: 'poll-state' },
      h('span', { class: `badge ${b.last_state === 'ok' ? 'green' : b.last_state ? 'red' : ''}` }, b.last_state || 'not polled yet'),
      b.consecutive_failures ? ` ${b.consecutive_failures} consecutive failures` : ''),
    h('dt', {}, 'Last poll'), h('dd', { title: fmtTime(b.last_poll_ms) }, `${fmtAgo(b.last_poll_ms)}, every ${b.interval_s} s`)));
}

// ---------------------------------------------------------------------------------
// Fans now

/** `*` any run, `?` one character, case-insensitive: the curve engine's name patterns. */
function globMatch(pattern, text) {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(text);
}

/** The zones of the stored curve that follow a temperature reading. */
function followedBy(curve, t) {
  if (!curve) return [];
  if (curve.config.preset === 'zephyr') return t.kind === 'cpu_temp' ? [0] : [];
  return curve.config.zones
    .filter((z) => z.sensors.kinds.includes(t.kind) || z.sensors.names.some((p) => globMatch(p, t.name)))
    .map((z) => z.zone);
}

function rpmClass(f) {
  if (f.lower_critical != null && f.rpm <= f.lower_critical) return 'c-red';
  if (f.lower_non_critical != null && f.rpm <= f.lower_non_critical) return 'c-yellow';
  return '';
}

const rpm = (v) => (v === null || v === undefined ? '-' : `${Math.round(v)}`);

/** What a decision writes, in words. */
function describeWrite(w) {
  switch (w.write) {
    case 'full_mode': return 'fan mode Full';
    case 'hand_back': return 'fans back to the BMC';
    case 'duty': return `zone ${w.zone} duty ${w.duty} %`;
    default: return JSON.stringify(w);
  }
}

function decisionView(d, id) {
  if (!d) return null;
  return h('div', { class: 'decision', id },
    d.fail_safe ? h('div', { class: 'alert', role: 'alert' }, `FAIL-SAFE: ${d.fail_safe.reason.replace(/_/g, ' ')}`) : null,
    h('p', {},
      d.duties.length ? `Duties: ${d.duties.map((z) => `zone ${z.zone} ${z.duty_percent} %`).join(', ')}. ` : 'No duty set by the curve. ',
      d.writes.length ? `Writes: ${d.writes.map(describeWrite).join(', ')}.` : 'Nothing to write: the fans are where the curve wants them.'),
    h('ul', { class: 'explain' }, d.explanation.map((line) => h('li', {}, line))));
}

function renderStatus(v) {
  const box = document.getElementById('fan-status');
  const reach = document.getElementById('bmc-reach');
  fill(reach, v.reachable
    ? h('span', { class: 'badge green' }, 'answering')
    : h('span', { class: 'badge red' }, 'not answering'));
  document.getElementById('fans-updated').textContent = `read ${fmtTime(Date.now())}`;
  const parts = [];
  if (!v.reachable) parts.push(h('div', { class: 'alert', role: 'alert' }, `The BMC did not answer: ${v.error || 'no reason given'}`));
  if (v.vendor === 'hpe') parts.push(h('div', { class: 'alert info' }, HPE_NOTE));
  parts.push(h('dl', { class: 'kv' },
    h('dt', {}, 'Vendor'), h('dd', {}, v.vendor || 'not known'),
    h('dt', {}, 'Fan mode'), h('dd', { id: 'fan-mode' }, v.mode || (v.vendor === 'dell' ? 'not reported by iDRAC' : '-')),
    h('dt', {}, 'Zone duties'), h('dd', { id: 'zone-duties' }, v.zones.length
      ? v.zones.flatMap((z, i) => [i ? ', ' : '', h('span', { id: `zone-duty-${z.zone}`, 'data-duty': String(z.duty_percent) }, `zone ${z.zone}: ${z.duty_percent} %`)])
      : '-'),
    h('dt', {}, 'Control'), h('dd', {}, v.curve
      ? `${v.curve.enabled ? 'curve' : 'curve stored, not running'} (changed ${fmtAgo(v.curve.updated_ms)} by ${v.curve.updated_by})`
      : 'the BMC (no curve)')));
  const grid = h('div', { class: 'fan-grid' });
  grid.append(h('div', { class: 'table-scroll' }, h('table', { class: 'list', id: 'fans-table' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Fan'), h('th', {}, 'Zone'), h('th', { class: 'num' }, 'RPM'),
      h('th', { class: 'num', title: 'lower non-critical' }, 'Low warn'),
      h('th', { class: 'num', title: 'lower critical' }, 'Low crit'),
      h('th', { class: 'num', title: 'lower non-recoverable' }, 'Low NR'))),
    h('tbody', {}, v.fans.length ? v.fans.map((f) => h('tr', { 'data-fan': f.name },
      h('td', {}, f.name),
      h('td', {}, f.zone === null ? '-' : String(f.zone)),
      h('td', { class: `num rpm ${rpmClass(f)}` }, rpm(f.rpm)),
      h('td', { class: 'num dim' }, rpm(f.lower_non_critical)),
      h('td', { class: 'num dim' }, rpm(f.lower_critical)),
      h('td', { class: 'num dim' }, rpm(f.lower_non_recoverable))))
      : h('tr', {}, h('td', { colspan: '6', class: 'dim' }, 'No fan readings.'))))));
  grid.append(h('div', { class: 'table-scroll' }, h('table', { class: 'list', id: 'temps-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Temperature'), h('th', {}, 'Kind'), h('th', { class: 'num' }, '°C'), h('th', {}, 'Curve reads it for'))),
    h('tbody', {}, v.temperatures.length ? v.temperatures.map((t) => {
      const zones = followedBy(v.curve, t);
      return h('tr', { 'data-sensor': t.name, class: zones.length ? 'followed' : '' },
        h('td', {}, t.name),
        h('td', {}, t.kind.replace('_temp', '').replace('cpu', 'CPU').replace('gpu', 'GPU').replace('nvme', 'NVMe')),
        h('td', { class: 'num' }, t.celsius.toFixed(1)),
        h('td', {}, zones.length ? zones.map((z) => `zone ${z}`).join(', ') : h('span', { class: 'dim' }, '-')));
    }) : h('tr', {}, h('td', { colspan: '4', class: 'dim' }, 'No temperature readings.'))))));
  parts.push(grid);
  if (v.curve_error) parts.push(h('div', { class: 'alert' }, `The stored curve cannot run: ${v.curve_error}`));
  if (v.decision) {
    parts.push(h('h2', {}, 'The curve now'));
    parts.push(decisionView(v.decision, 'current-decision'));
  }
  fill(box, parts);
}

async function refreshStatus() {
  try {
    const v = await api('GET', `${base}/fans`);
    known.view = v;
    const firstVendor = !known.vendor && v.vendor;
    if (v.vendor) known.vendor = v.vendor;
    renderStatus(v);
    if (firstVendor) editor.render();
    main.dataset.fansLoaded = String(Date.now());
  } catch (e) {
    fill(document.getElementById('fan-status'), h('div', { class: 'alert', role: 'alert' }, e instanceof ApiError ? e.message : String(e)));
  }
}

/** One request at a time: the next one is asked for only after the last answered. */
async function statusLoop() {
  if (!document.hidden) await refreshStatus();
  setTimeout(statusLoop, REFRESH_MS);
}

// ---------------------------------------------------------------------------------
// Charts

function startCharts() {
  const parent = document.getElementById('charts-bmc');
  const label = document.getElementById('range-label');
  const sel = `{bmc=${promString(name)}}`;
  let zoomed = null;
  const bounds = () => {
    if (zoomed) return zoomed;
    const end = Math.floor(Date.now() / 1000);
    return [end - HOUR_S, end];
  };
  const ctl = {
    zoom(min, max) {
      if (max - min < 10) return;
      zoomed = [min, max];
      reload();
    },
    reset() {
      zoomed = null;
      reload();
    },
  };
  const sensorName = (m) => m.name || m.id;
  const charts = [
    new Chart(parent, { title: 'Fan speeds', unit: 'rpm', queries: [{ expr: () => `ipmi_fan_speed_rpm${sel}`, name: sensorName }] }, ctl),
    new Chart(parent, { title: 'Temperatures', unit: 'celsius', queries: [{ expr: () => `ipmi_temperature_celsius${sel}`, name: sensorName }] }, ctl),
  ];
  async function reload() {
    const [start, end] = bounds();
    label.textContent = `${fmtTime(start * 1000)} to ${fmtTime(end * 1000)}${zoomed ? ' (zoomed; double-click a chart to reset)' : ''}`;
    await Promise.all(charts.map((c) => c.load(start, end).catch((e) => {
      c.area.replaceChildren(h('div', { class: 'nodata' }, e instanceof ApiError ? e.message : String(e)));
    })));
    main.dataset.chartsLoaded = String(Date.now());
  }
  document.getElementById('charts-reset').addEventListener('click', ctl.reset);
  reload();
  setInterval(() => {
    if (!zoomed && !document.hidden) reload();
  }, FOLLOW_MS);
}

// ---------------------------------------------------------------------------------
// Curve editor

/** A number input's value: `null` when empty (the server says what is missing). */
const num = (v) => (String(v).trim() === '' ? null : Number(v));

/** A fresh curve for the vendor: the minimum at 40 °C, full at 75 °C. */
function newCurve(vendor) {
  const low = Math.max(30, MINIMUM[vendor] || 30);
  return { interval_s: 30, preset: null, zones: [newZone(0, low)] };
}

function newZone(zone, low = 30) {
  return { zone, sensors: { kinds: ['cpu_temp'], names: [] }, points: [[40, low], [75, 100]], hysteresis_c: 3, min_dwell_s: 30, fans: [] };
}

/** A stored configuration as the editor holds it (every optional part present). */
function fromStored(config) {
  return {
    interval_s: config.interval_s,
    max_reading_age_s: config.max_reading_age_s ?? null,
    preset: config.preset || null,
    zones: (config.zones || []).map((z) => ({
      zone: z.zone,
      sensors: { kinds: [...z.sensors.kinds], names: [...z.sensors.names] },
      points: z.points.map((p) => [...p]),
      hysteresis_c: z.hysteresis_c,
      min_dwell_s: z.min_dwell_s,
      fans: (z.fans || []).map((f) => ({ ...f })),
    })),
  };
}

/** The editor's model as the API takes it. */
function toConfig(m) {
  const out = { interval_s: m.interval_s };
  if (m.max_reading_age_s !== null && m.max_reading_age_s !== undefined) out.max_reading_age_s = m.max_reading_age_s;
  if (m.preset) {
    out.preset = m.preset;
    return out;
  }
  out.zones = m.zones.map((z) => ({
    zone: z.zone,
    sensors: z.sensors,
    points: z.points,
    hysteresis_c: z.hysteresis_c,
    min_dwell_s: z.min_dwell_s,
    fans: z.fans.map((f) => Object.fromEntries(Object.entries(f).filter(([, v]) => v !== null && v !== undefined && v !== ''))),
  }));
  return out;
}

/**
 * The server's problems, each with the setting it names: "zones[0].points[1]: duty 15 %
 * is below ...; zones[0].sensors: ..." (a problem's own text may contain "; " too, so
 * the message is cut only where a path starts).
 */
function splitProblems(message) {
  const text = message.replace(/^fan curve refused: /, '');
  const re = /(^|; )((?:zones\[\d+\]|zones|interval_s|max_reading_age_s|preset)(?:\.[a-z_]+|\[\d+\])*): /g;
  const starts = [];
  for (let m = re.exec(text); m; m = re.exec(text)) starts.push({ cut: m.index, from: m.index + m[0].length, path: m[2] });
  if (starts.length === 0) return [{ path: null, text }];
  const out = [];
  if (starts[0].cut > 0) out.push({ path: null, text: text.slice(0, starts[0].cut) });
  starts.forEach((s, i) => {
    const end = i + 1 < starts.length ? starts[i + 1].cut : text.length;
    out.push({ path: s.path, text: text.slice(s.from, end) });
  });
  return out;
}

class Editor {
  constructor(box) {
    this.box = box;
    /** The stored curve (`null`: none) and what is being edited (`null`: nothing). */
    this.stored = undefined;
    this.model = null;
    this.enabled = true;
    this.dirty = false;
  }

  async load() {
    try {
      this.stored = await api('GET', `${base}/curve`);
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== 'no_curve') {
        fill(this.box, h('div', { class: 'alert', role: 'alert' }, e.message));
        return;
      }
      this.stored = null;
    }
    this.model = this.stored ? fromStored(this.stored.config) : null;
    this.enabled = this.stored ? this.stored.enabled : true;
    this.dirty = false;
    this.render();
  }

  changed() {
    this.dirty = true;
    this.clearErrors();
  }

  /** Re-renders after a structural change (a row added or removed). */
  restructure() {
    this.changed();
    this.render();
  }

  clearErrors() {
    for (const el of this.box.querySelectorAll('.error-row, .field-error')) el.remove();
    for (const el of this.box.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    const all = this.box.querySelector('#curve-errors');
    if (all) fill(all);
  }

  input(attrs, value, onInput) {
    const el = h('input', { ...attrs, value: value ?? '', disabled: !canWrite });
    el.addEventListener('input', () => {
      onInput(el.value);
      this.changed();
    });
    return el;
  }

  button(label, onClick, cls) {
    return h('button', { type: 'button', class: cls, onclick: onClick }, label);
  }

  render() {
    if (this.stored === undefined) return;
    const vendor = known.vendor;
    if (vendor === 'hpe') {
      fill(this.box, h('div', { class: 'alert info', id: 'hpe-note' }, HPE_NOTE));
      return;
    }
    const parts = [];
    if (!this.model) {
      parts.push(h('p', { id: 'no-curve' }, 'No fan curve: the BMC controls its fans itself.'));
      if (canWrite) {
        parts.push(h('div', { class: 'form-row' },
          this.button('New curve', () => {
            this.model = newCurve(vendor);
            this.restructure();
          }, 'primary'),
          vendor === 'supermicro' ? this.button('Zephyr preset', () => this.zephyr()) : null));
      }
      fill(this.box, parts);
      return;
    }
    const m = this.model;
    const minimum = MINIMUM[vendor];
    parts.push(h('div', { class: 'form-row' },
      h('label', { 'data-path': 'interval_s' }, 'Interval (s)', this.input({ type: 'number', min: '1', max: '3600', name: 'interval_s' }, m.interval_s, (v) => { m.interval_s = num(v); })),
      h('label', { 'data-path': 'max_reading_age_s' }, 'Max reading age (s)', this.input({ type: 'number', min: '1', name: 'max_reading_age_s', placeholder: 'two intervals' }, m.max_reading_age_s, (v) => { m.max_reading_age_s = num(v); })),
      h('label', { class: 'inline' }, (() => {
        const cb = h('input', { type: 'checkbox', name: 'enabled', checked: this.enabled, disabled: !canWrite });
        cb.addEventListener('change', () => {
          this.enabled = cb.checked;
          this.changed();
        });
        return cb;
      })(), 'Run it (unchecked: stored, not run)'),
      minimum ? h('span', { class: 'dim' }, `${vendor === 'dell' ? 'Dell' : 'Supermicro'} minimum duty: ${minimum} %`) : null));
    if (m.preset) {
      parts.push(h('div', { class: 'alert info', 'data-path': 'preset', id: 'preset-note' },
        'Zephyr preset: while the hottest CPU is at or below 50 °C and any fan spins faster than 2050 RPM, zone 0 is set to 24 % (about 1800 RPM); above 50 °C the fans are handed back to the BMC (Standard mode).'));
      if (canWrite) {
        parts.push(h('p', {}, this.button('Use zone curves instead', () => {
          m.preset = null;
          m.zones = [newZone(0, Math.max(30, minimum || 30))];
          this.restructure();
        })));
      }
    } else {
      m.zones.forEach((z, i) => parts.push(this.zoneEditor(z, i)));
      if (canWrite && m.zones.length < 2) {
        const free = [0, 1].find((n) => !m.zones.some((z) => z.zone === n));
        parts.push(h('p', {}, this.button(`Add zone ${ZONE_NAMES[free]}`, () => {
          m.zones.push(newZone(free, Math.max(30, minimum || 30)));
          this.restructure();
        })));
      }
    }
    parts.push(h('div', { id: 'curve-errors', 'aria-live': 'assertive' }));
    if (canWrite) {
      parts.push(h('div', { class: 'form-row curve-actions' },
        this.button('Preview', () => this.preview()),
        this.button('Save', () => this.save(), 'primary'),
        vendor === 'supermicro' && !m.preset ? this.button('Zephyr preset', () => this.zephyr()) : null,
        this.stored ? this.button('Remove curve', () => this.remove(), 'danger') : null,
        this.dirty ? h('span', { class: 'dim', id: 'curve-dirty' }, 'Not saved.') : null));
      parts.push(h('div', { id: 'curve-preview', 'aria-live': 'polite' }));
    }
    if (this.stored) {
      parts.push(h('p', { class: 'dim' }, `Stored ${fmtTime(this.stored.updated_ms)} by ${this.stored.updated_by}${this.stored.enabled ? '' : ' (not running)'}.`));
    }
    fill(this.box, parts);
  }

  zoneEditor(z, i) {
    const at = `zones[${i}]`;
    const m = this.model;
    const zoneSelect = h('select', { name: 'zone', disabled: !canWrite, 'aria-label': 'Zone' },
      [0, 1].map((n) => h('option', { value: String(n), selected: z.zone === n }, ZONE_NAMES[n])));
    zoneSelect.addEventListener('change', () => {
      z.zone = Number(zoneSelect.value);
      this.changed();
    });
    const kinds = KINDS.map(([kind, label]) => {
      const cb = h('input', { type: 'checkbox', value: kind, checked: z.sensors.kinds.includes(kind), disabled: !canWrite });
      cb.addEventListener('change', () => {
        z.sensors.kinds = KINDS.map(([k]) => k).filter((k) => (k === kind ? cb.checked : z.sensors.kinds.includes(k)));
        this.changed();
      });
      return h('label', { class: 'inline' }, cb, label);
    });
    const points = h('table', { class: 'list points' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Temperature °C'), h('th', {}, 'Duty %'), canWrite ? h('th', {}, '') : null)),
      h('tbody', {}, z.points.map((p, j) => h('tr', { 'data-path': `${at}.points[${j}]` },
        h('td', {}, this.input({ type: 'number', step: 'any', min: '0', max: '150', 'aria-label': `Zone ${z.zone} point ${j + 1} temperature`, name: 'temp' }, p[0], (v) => { p[0] = num(v); })),
        h('td', {}, this.input({ type: 'number', step: '1', min: '0', max: '100', 'aria-label': `Zone ${z.zone} point ${j + 1} duty`, name: 'duty' }, p[1], (v) => { p[1] = num(v); })),
        canWrite ? h('td', {}, this.button('Remove', () => {
          z.points.splice(j, 1);
          this.restructure();
        })) : null))));
    const fans = z.fans.length || canWrite ? h('table', { class: 'list overrides' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Fan or pattern'), h('th', {}, 'Min duty %'), h('th', {}, 'Max duty %'), h('th', {}, 'Min RPM'), h('th', {}, 'Max RPM'), canWrite ? h('th', {}, '') : null)),
      h('tbody', {}, z.fans.length ? z.fans.map((f, j) => h('tr', { 'data-path': `${at}.fans[${j}]` },
        h('td', {}, this.input({ name: 'fan', 'aria-label': `Override ${j + 1} fan`, placeholder: 'FANA or FAN*' }, f.fan, (v) => { f.fan = v.trim(); })),
        ...['min_duty', 'max_duty', 'min_rpm', 'max_rpm'].map((k) => h('td', {},
          this.input({ type: 'number', min: '0', step: k.endsWith('rpm') ? 'any' : '1', name: k, 'aria-label': `Override ${j + 1} ${k.replace('_', ' ')}` }, f[k], (v) => { f[k] = num(v); }))),
        canWrite ? h('td', {}, this.button('Remove', () => {
          z.fans.splice(j, 1);
          this.restructure();
        })) : null))
        : h('tr', {}, h('td', { colspan: '6', class: 'dim' }, 'No per-fan bounds.')))) : null;
    return h('fieldset', { class: 'zone-editor', 'data-path': at, 'data-zone': String(z.zone) },
      h('legend', {}, `Zone curve ${i + 1}`),
      h('div', { class: 'form-row' },
        h('label', { 'data-path': `${at}.zone` }, 'Zone', zoneSelect),
        h('div', { class: 'sensor-kinds', role: 'group', 'aria-label': 'Follows temperatures of kind', 'data-path': `${at}.sensors` },
          h('span', { class: 'dim' }, 'Follows'), kinds),
        h('label', {}, 'and sensors named (patterns, comma-separated)',
          this.input({ name: 'names', placeholder: 'CPU* Temp, GPU*' }, z.sensors.names.join(', '), (v) => {
            z.sensors.names = v.split(',').map((s) => s.trim()).filter(Boolean);
          })),
        h('label', { 'data-path': `${at}.hysteresis_c` }, 'Hysteresis °C', this.input({ type: 'number', step: 'any', min: '0', max: '20', name: 'hysteresis_c' }, z.hysteresis_c, (v) => { z.hysteresis_c = num(v); })),
        h('label', { 'data-path': `${at}.min_dwell_s` }, 'Min dwell (s)', this.input({ type: 'number', min: '0', max: '3600', name: 'min_dwell_s' }, z.min_dwell_s, (v) => { z.min_dwell_s = num(v); }))),
      h('div', { class: 'zone-tables' },
        h('div', { 'data-path': `${at}.points` }, h('h3', {}, 'Points'), points,
          canWrite ? h('p', {}, this.button('Add point', () => {
            const last = z.points[z.points.length - 1];
            z.points.push(last ? [Math.min(150, (last[0] ?? 60) + 10), 100] : [50, 50]);
            this.restructure();
            this.focusRow(`${at}.points[${z.points.length - 1}]`);
          })) : null),
        fans ? h('div', { 'data-path': `${at}.fans` }, h('h3', {}, 'Per-fan bounds'), fans,
          canWrite ? h('p', {}, this.button('Add fan bound', () => {
            z.fans.push({ fan: '', min_duty: null, max_duty: null, min_rpm: null, max_rpm: null });
            this.restructure();
            this.focusRow(`${at}.fans[${z.fans.length - 1}]`);
          })) : null) : null),
      canWrite && m.zones.length > 1 ? h('p', {}, this.button('Remove this zone', () => {
        m.zones.splice(i, 1);
        this.restructure();
      })) : null);
  }

  /** The element of a setting's path, or of the nearest enclosing one that has one. */
  findTarget(path) {
    for (let p = path; p;) {
      const el = this.box.querySelector(`[data-path="${CSS.escape(p)}"]`);
      if (el) return el;
      const shorter = p.replace(/(\.[a-z_]+|\[\d+\])$/, '');
      if (shorter === p) return null;
      p = shorter;
    }
    return null;
  }

  /** The fields of `target` a problem is about: the one its path or text names, else all. */
  invalidFields(target, problem) {
    const last = /\.([a-z_]+)$/.exec(problem.path || '');
    let name = last ? last[1] : null;
    if (!name && /\.points\[\d+\]$/.test(problem.path || '')) name = problem.text.startsWith('duty') ? 'duty' : 'temp';
    const named = name ? [...target.querySelectorAll(`[name="${name}"]`)] : [];
    return named.length ? named : [...target.querySelectorAll('input, select')];
  }

  /** Focuses the first field of the row at `path` (after a row was added). */
  focusRow(path) {
    const el = this.box.querySelector(`[data-path="${CSS.escape(path)}"] input`);
    if (el) el.focus();
  }

  /** Puts each of the server's problems next to the setting it names. */
  showErrors(message) {
    this.clearErrors();
    const all = this.box.querySelector('#curve-errors');
    const problems = splitProblems(message);
    const general = [];
    for (const p of problems) {
      const target = p.path ? this.findTarget(p.path) : null;
      const text = p.path ? `${p.path}: ${p.text}` : p.text;
      if (!target) {
        general.push(text);
        continue;
      }
      const note = h('span', { class: 'field-error' }, p.text);
      for (const el of this.invalidFields(target, p)) el.setAttribute('aria-invalid', 'true');
      if (target.tagName === 'TR') {
        const cols = target.children.length;
        target.after(h('tr', { class: 'error-row' }, h('td', { colspan: String(cols) }, note)));
      } else {
        target.append(note);
      }
    }
    const placed = problems.length - general.length;
    fill(all, h('div', { class: 'alert', role: 'alert' },
      'The server refused the curve',
      placed ? `: ${placed} problem${placed === 1 ? '' : 's'} shown at ${placed === 1 ? 'its setting' : 'their settings'}` : ':',
      general.length ? h('ul', {}, general.map((g) => h('li', {}, g))) : null));
    const first = this.box.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
  }

  async preview() {
    const out = this.box.querySelector('#curve-preview');
    fill(out, h('span', { class: 'dim' }, 'Asking the BMC...'));
    this.clearErrors();
    let v;
    try {
      v = await api('POST', `${base}/fans/preview`, toConfig(this.model));
    } catch (e) {
      fill(out);
      this.showErrors(e.message);
      return;
    }
    if (v.curve_error) {
      fill(out);
      this.showErrors(v.curve_error);
      return;
    }
    fill(out, h('h3', {}, `Preview: what this curve would do now${v.reachable ? '' : ' (the BMC did not answer)'}`),
      decisionView(v.decision, 'preview-decision'),
      h('p', { class: 'dim' }, 'Nothing was written; Save to run it.'));
  }

  async save() {
    this.clearErrors();
    const query = this.enabled ? '' : '?enabled=false';
    try {
      this.stored = await api('PUT', `${base}/curve${query}`, toConfig(this.model));
    } catch (e) {
      this.showErrors(e.message);
      return;
    }
    const agent = known.record && known.record.agent_host;
    flash(agent
      ? `Curve saved and sent to the agent on ${agent}.`
      : `Curve saved; ${this.stored.enabled ? 'the server runs it from its next cycle' : 'it is stored, not run'}.`, 'ok');
    this.model = fromStored(this.stored.config);
    this.dirty = false;
    this.render();
    refreshStatus();
  }

  async remove() {
    if (!confirm(`Remove the fan curve of ${name}? The fans are handed back to the BMC.`)) return;
    try {
      await api('DELETE', `${base}/curve`);
    } catch (e) {
      flash(e.message);
      return;
    }
    flash('Curve removed; the fans are back with the BMC.', 'ok');
    this.stored = null;
    this.model = null;
    this.dirty = false;
    this.render();
    refreshStatus();
  }

  zephyr() {
    this.model = { interval_s: this.model ? this.model.interval_s : 30, max_reading_age_s: null, preset: 'zephyr', zones: [] };
    this.restructure();
  }
}

const editor = new Editor(document.getElementById('curve-body'));

// Leaving with unsaved edits asks first.
window.addEventListener('beforeunload', (e) => {
  if (editor.dirty) e.preventDefault();
});

await loadRecord();
editor.load();
statusLoop();
startCharts();
