// The machine page: chart panels for one host (all sharing one time range; zooming one
// zooms all), its agent's state, the commands sent to it and, for operators, a form to
// send one.

import { api, ApiError, flash, guarded, h, fill, fmtAgo, fmtTime } from './api.js';
import { Chart, promString } from './chart.js';

const RANGES = { '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800 };
/** Relative ranges follow the clock this often. */
const FOLLOW_MS = 30000;

const main = document.querySelector('main[data-host]');
const host = main.dataset.host;
const sel = (extra = '') => `{host=${promString(host)}${extra}}`;
const mib = 1048576;

/** The panels of one section; GPU and NVMe panels are made per device found. */
function systemPanels() {
  return [
    { title: 'CPU usage by mode', unit: 'percent', queries: [{
      expr: (w) => `100 * sum by (mode) (rate(node_cpu_seconds_total${sel(',mode!="idle"')}[${w}])) / scalar(count(node_cpu_seconds_total${sel(',mode="idle"')}))`,
      name: (m) => m.mode,
    }] },
    { title: 'Load average', unit: '', queries: [
      { expr: () => `node_load1${sel()}`, name: () => '1 min' },
      { expr: () => `node_load5${sel()}`, name: () => '5 min' },
      { expr: () => `node_load15${sel()}`, name: () => '15 min' },
    ] },
    { title: 'Memory', unit: 'bytes', queries: [
      { expr: () => `node_memory_MemTotal_bytes${sel()} - node_memory_MemAvailable_bytes${sel()}`, name: () => 'used' },
      { expr: () => `node_memory_Cached_bytes${sel()} + node_memory_Buffers_bytes${sel()}`, name: () => 'cache + buffers' },
      { expr: () => `node_memory_MemTotal_bytes${sel()}`, name: () => 'total' },
      { expr: () => `node_memory_SwapTotal_bytes${sel()} - node_memory_SwapFree_bytes${sel()}`, name: () => 'swap used' },
    ] },
  ];
}

function diskPanels() {
  return [
    { title: 'Filesystem used', unit: 'percent', queries: [{
      expr: () => `100 * dcmon_filesystem_used_ratio${sel()}`, name: (m) => m.mountpoint || m.device,
    }] },
    { title: 'Disk throughput', unit: 'bytes_per_second', queries: [
      { expr: (w) => `rate(node_disk_read_bytes_total${sel()}[${w}])`, name: (m) => `${m.device} read` },
      { expr: (w) => `rate(node_disk_written_bytes_total${sel()}[${w}])`, name: (m) => `${m.device} write` },
    ] },
  ];
}

function networkPanels() {
  return [
    { title: 'Network received', unit: 'bytes_per_second', queries: [{
      expr: (w) => `rate(node_network_receive_bytes_total${sel(',device!="lo"')}[${w}])`, name: (m) => m.device,
    }] },
    { title: 'Network sent', unit: 'bytes_per_second', queries: [{
      expr: (w) => `rate(node_network_transmit_bytes_total${sel(',device!="lo"')}[${w}])`, name: (m) => m.device,
    }] },
    { title: 'Network errors and drops', unit: '', queries: [
      { expr: (w) => `rate(node_network_receive_errs_total${sel(',device!="lo"')}[${w}]) + rate(node_network_transmit_errs_total${sel(',device!="lo"')}[${w}])`, name: (m) => `${m.device} errors/s` },
      { expr: (w) => `rate(node_network_receive_drop_total${sel(',device!="lo"')}[${w}]) + rate(node_network_transmit_drop_total${sel(',device!="lo"')}[${w}])`, name: (m) => `${m.device} drops/s` },
    ] },
  ];
}

function gpuPanels(gpu) {
  const g = sel(`,gpu=${promString(gpu.gpu)}`);
  const name = `GPU ${gpu.gpu}${gpu.modelName ? ` (${gpu.modelName})` : ''}`;
  return [
    { title: `${name}: temperature`, unit: 'celsius', queries: [
      { expr: () => `DCGM_FI_DEV_GPU_TEMP${g}`, name: () => 'core' },
      { expr: () => `DCGM_FI_DEV_MEMORY_TEMP${g}`, name: () => 'memory' },
    ] },
    { title: `${name}: power vs limit`, unit: 'watts', queries: [
      { expr: () => `DCGM_FI_DEV_POWER_USAGE${g}`, name: () => 'power' },
      { expr: () => `DCGM_FI_DEV_POWER_MGMT_LIMIT${g}`, name: () => 'limit' },
    ] },
    { title: `${name}: utilisation`, unit: 'percent', queries: [
      { expr: () => `DCGM_FI_DEV_GPU_UTIL${g}`, name: () => 'GPU' },
      { expr: () => `DCGM_FI_DEV_MEM_COPY_UTIL${g}`, name: () => 'memory copy' },
    ] },
    { title: `${name}: memory`, unit: 'bytes', queries: [
      { expr: () => `DCGM_FI_DEV_FB_USED${g} * ${mib}`, name: () => 'used' },
      { expr: () => `(DCGM_FI_DEV_FB_USED${g} + DCGM_FI_DEV_FB_FREE${g}) * ${mib}`, name: () => 'total' },
    ] },
  ];
}

function thermalPanels() {
  return [
    { title: 'CPU and VRM temperature', unit: 'celsius', queries: [
      { expr: () => `dcmon_cpu_temperature_celsius${sel()}`, name: () => 'CPU' },
      { expr: () => `dcmon_vrm_temperature_celsius${sel()}`, name: () => 'VRM' },
    ] },
    { title: 'Sensor temperatures (hwmon)', unit: 'celsius', queries: [{
      expr: () => `node_hwmon_temp_celsius${sel()}`, name: (m) => `${m.chip} ${m.sensor}`,
    }] },
    { title: 'BMC temperatures (IPMI)', unit: 'celsius', queries: [{
      expr: () => `ipmi_temperature_celsius${sel()}`, name: (m) => m.name || m.id,
    }] },
    { title: 'Fans', unit: 'rpm', queries: [
      { expr: () => `node_hwmon_fan_rpm${sel()}`, name: (m) => `${m.chip} ${m.sensor}` },
      { expr: () => `ipmi_fan_speed_rpm${sel()}`, name: (m) => `BMC ${m.name || m.id}` },
    ] },
  ];
}

function nvmePanels() {
  const dev = (m) => m.device;
  return [
    { title: 'NVMe temperature', unit: 'celsius', queries: [{ expr: () => `smartctl_device_temperature${sel()}`, name: dev }] },
    { title: 'NVMe wear (percentage used)', unit: 'percent', queries: [{ expr: () => `smartctl_device_percentage_used${sel()}`, name: dev }] },
    { title: 'NVMe available spare', unit: 'percent', queries: [
      { expr: () => `smartctl_device_available_spare${sel()}`, name: dev },
      { expr: () => `smartctl_device_available_spare_threshold${sel()}`, name: (m) => `${m.device} threshold` },
    ] },
    { title: 'NVMe media errors and critical warnings', unit: '', queries: [
      { expr: () => `smartctl_device_media_errors${sel()}`, name: (m) => `${m.device} media errors` },
      { expr: () => `smartctl_device_critical_warning${sel()}`, name: (m) => `${m.device} critical warning` },
    ] },
  ];
}

function aptPanels() {
  return [
    { title: 'APT upgrades pending', unit: '', queries: [
      { expr: () => `dcmon_apt_upgrades_pending${sel()}`, name: () => 'all' },
      { expr: () => `dcmon_apt_security_upgrades_pending${sel()}`, name: () => 'security' },
    ] },
    { title: 'Reboot required', unit: '', queries: [{ expr: () => `dcmon_reboot_required${sel()}`, name: () => 'reboot required' }] },
    { title: 'APT lists age', unit: 'seconds', queries: [{ expr: () => `dcmon_apt_lists_age_seconds${sel()}`, name: () => 'age' }] },
  ];
}

/** The page's time range: relative (`1h` back from now, following the clock) or zoomed. */
class Range {
  constructor(base) {
    this.base = base;
    this.zoomed = null;
  }

  bounds() {
    if (this.zoomed) return this.zoomed;
    const end = Math.floor(Date.now() / 1000);
    return [end - RANGES[this.base], end];
  }
}

async function discover(metric, labels, range) {
  const [start, end] = range.bounds();
  const q = `group by (${labels.join(', ')}) (last_over_time(${metric}${sel()}[${end - start}s]))`;
  const r = await api('GET', `/api/v1/query?${new URLSearchParams({ query: q, time: String(end) })}`);
  return r.data.result.map((s) => s.metric).sort((a, b) => String(a[labels[0]]).localeCompare(String(b[labels[0]]), undefined, { numeric: true }));
}

function startCharts() {
  const params = new URLSearchParams(location.search);
  const base = params.get('range') in RANGES ? params.get('range') : (localStorage.getItem('dcmon.range') in RANGES ? localStorage.getItem('dcmon.range') : '1h');
  const range = new Range(base);
  const charts = [];
  const label = document.getElementById('range-label');
  const buttons = [...document.querySelectorAll('.range-picker button')];

  const ctl = {
    zoom(min, max) {
      if (max - min < 10) return;
      range.zoomed = [min, max];
      reloadAll();
    },
    reset() {
      range.zoomed = null;
      reloadAll();
    },
  };

  function showRange() {
    const [start, end] = range.bounds();
    label.textContent = `${fmtTime(start * 1000)} to ${fmtTime(end * 1000)}${range.zoomed ? ' (zoomed; double-click a chart to reset)' : ''}`;
    label.dataset.start = String(start);
    label.dataset.end = String(end);
    for (const b of buttons) b.setAttribute('aria-pressed', String(!range.zoomed && b.dataset.range === range.base));
  }

  let loading = null;
  let reloads = 0;
  async function reloadAll() {
    showRange();
    const [start, end] = range.bounds();
    const mine = ++reloads;
    loading = Promise.all(charts.map((c) => c.load(start, end).catch((e) => {
      c.area.replaceChildren(h('div', { class: 'nodata' }, e instanceof ApiError ? e.message : String(e)));
    })));
    await loading;
    // Marks the page drawn (for tests and screenshots) once the newest reload is done.
    if (mine === reloads) main.dataset.loaded = String(Date.now());
  }

  for (const b of buttons) {
    b.addEventListener('click', () => {
      range.base = b.dataset.range;
      range.zoomed = null;
      localStorage.setItem('dcmon.range', range.base);
      reloadAll();
    });
  }

  const section = (id, panels) => {
    const el = document.getElementById(id);
    el.replaceChildren();
    for (const p of panels) charts.push(new Chart(el, p, ctl));
  };

  (async () => {
    section('charts-system', systemPanels());
    section('charts-disks', diskPanels());
    section('charts-network', networkPanels());
    section('charts-thermal', thermalPanels());
    section('charts-nvme', nvmePanels());
    section('charts-apt', aptPanels());
    const gpus = await guarded(() => discover('DCGM_FI_DEV_GPU_TEMP', ['gpu', 'modelName'], range)) || [];
    const gpuEl = document.getElementById('charts-gpu');
    if (gpus.length === 0) fill(gpuEl, h('p', { class: 'dim' }, 'No GPUs reported by this machine in this range.'));
    else section('charts-gpu', gpus.flatMap(gpuPanels));
    await reloadAll();
  })();

  setInterval(() => {
    if (!range.zoomed && !document.hidden) reloadAll();
  }, FOLLOW_MS);

  window.dcmon = Object.assign(window.dcmon || {}, { charts, range, whenLoaded: () => loading });
}

async function showAgent() {
  const el = document.getElementById('agent-info');
  const r = await guarded(() => api('GET', '/api/agents'));
  if (!r) return;
  const a = r.agents.find((x) => x.host === host);
  if (!a) {
    fill(el, h('span', { class: 'dim' }, 'No registered agent has this host name.'));
    return;
  }
  fill(el, h('dl', { class: 'kv' },
    h('dt', {}, 'Agent'), h('dd', {}, h('code', {}, a.id)),
    h('dt', {}, 'Status'), h('dd', {}, a.status),
    h('dt', {}, 'Version'), h('dd', {}, a.agent_version),
    h('dt', {}, 'Last seen'), h('dd', { title: fmtTime(a.last_seen_ms) }, fmtAgo(a.last_seen_ms)),
    h('dt', {}, 'Address'), h('dd', {}, a.remote_addr || '-')));
}

const FINAL = new Set(['succeeded', 'failed', 'expired']);

function statusBadge(status) {
  const colour = { succeeded: 'green', failed: 'red', expired: 'red', delivered: 'blue', queued: 'yellow' }[status] || '';
  return h('span', { class: `badge ${colour}` }, status);
}

let commandTimer = 0;
async function showCommands() {
  clearTimeout(commandTimer);
  const body = document.getElementById('commands-body');
  const r = await guarded(() => api('GET', `/api/commands?${new URLSearchParams({ host, limit: '20' })}`));
  if (!r) return;
  if (r.commands.length === 0) {
    fill(body, h('tr', {}, h('td', { colspan: '6', class: 'dim' }, 'No commands sent to this machine yet.')));
  } else {
    fill(body, r.commands.map((c) => h('tr', { 'data-id': c.id, 'data-kind': c.kind, 'data-status': c.status },
      h('td', {}, String(c.id)),
      h('td', {}, c.kind, c.command && c.command.params ? h('span', { class: 'dim' }, ` ${JSON.stringify(c.command.params)}`) : ''),
      h('td', {}, statusBadge(c.status)),
      h('td', { title: fmtTime(c.created_ms) }, fmtAgo(c.created_ms)),
      h('td', {}, c.created_by),
      h('td', { class: 'wrap' }, c.message || ''))));
  }
  // Commands still on their way are followed until they finish.
  if (r.commands.some((c) => !FINAL.has(c.status))) commandTimer = setTimeout(showCommands, 2000);
}

/** The command form (only in the page for operators and admins). */
function wireCommandForm() {
  const form = document.getElementById('command-form');
  if (!form) return;
  const kind = form.elements.kind;
  const showFields = () => {
    for (const el of form.querySelectorAll('[data-for]')) el.hidden = el.dataset.for !== kind.value;
  };
  kind.addEventListener('change', showFields);
  showFields();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = form.elements;
    const body = { host, kind: kind.value };
    if (kind.value === 'reboot') {
      body.params = { delay_s: Number(f.delay_s.value || 0), cancel: f.cancel.checked };
      if (!body.params.cancel && !confirm(`Reboot ${host}${body.params.delay_s ? ` in ${body.params.delay_s} s` : ' now'}?`)) return;
    } else if (kind.value === 'fan_control') {
      const action = f.fan_action.value;
      body.params = { action };
      if (action === 'mode' && f.fan_mode.value) body.params.mode = f.fan_mode.value;
      if (action === 'zone') {
        body.params.zone = Number(f.fan_zone.value || 0);
        if (f.fan_duty.value !== '') body.params.duty = Number(f.fan_duty.value);
      }
    } else if (kind.value === 'config_update') {
      body.params = { interval_s: Number(f.interval_s.value) };
    }
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const c = await api('POST', '/api/commands', body);
      flash(`Command ${c.id} (${c.kind}) queued for ${c.host}.`, 'ok');
    } catch (err) {
      flash(err instanceof ApiError ? err.message : String(err));
    } finally {
      button.disabled = false;
    }
    showCommands();
  });
}

startCharts();
showAgent();
showCommands();
wireCommandForm();
