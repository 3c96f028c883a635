// The fleet page: a virtualised health table (fixed row height; only the rows in view
// are in the DOM, so 10,000 machines scroll as smoothly as 10), fed by `/api/fleet` and
// patched in place by the `/api/fleet/stream` server-sent events.

import { api, ApiError, flash, h, fmtAgo } from './api.js';

const ROW_H = 28;
/** Rows rendered above and below the visible ones, so fast scrolling shows no gaps. */
const OVERSCAN = 10;
const STATUS_ORDER = { online: 0, stale: 1, offline: 2 };
const RANGES = ['1h', '6h', '24h', '7d'];

/** A cell's text: the unit is in the header, except for watts (the header says Power). */
function cellText(v, unit) {
  if (v === null || v === undefined) return '-';
  if (unit === 'watts') return `${v.toFixed(0)} W`;
  return v.toFixed(1);
}

/** Colour class of a value under its column's thresholds `[t0, t1, t2]`. */
export function colourClass(v, t) {
  if (v === null || v === undefined || !t) return '';
  if (v < t[0]) return 'c-blue';
  if (v < t[1]) return 'c-green';
  if (v < t[2]) return 'c-yellow';
  return 'c-red';
}

class FleetTable {
  constructor(root) {
    this.root = root;
    this.columns = [];
    this.thresholds = {};
    this.byHost = new Map();
    this.view = [];
    this.sortKey = 'host';
    this.sortDir = 1;
    this.filter = '';
    this.version = 0;
    this.total = 0;
    this.online = 0;
    this.pool = [];
    this.frame = 0;
    this.dirtyView = true;

    this.head = root.querySelector('.fleet-head');
    this.body = root.querySelector('.fleet-body');
    this.spacer = root.querySelector('.fleet-spacer');
    this.body.addEventListener('scroll', () => this.schedule(false), { passive: true });
    window.addEventListener('resize', () => this.schedule(false));
  }

  /** Loads a whole `/api/fleet` answer (also what a test uses to feed synthetic rows). */
  load(answer) {
    const columnsChanged = JSON.stringify(answer.columns) !== JSON.stringify(this.columns);
    this.columns = answer.columns || [];
    this.thresholds = answer.thresholds || {};
    this.version = answer.version || 0;
    this.total = answer.total ?? answer.rows.length;
    this.online = answer.online ?? answer.rows.filter((r) => r.status === 'online').length;
    this.byHost = new Map(answer.rows.map((r) => [r.host, r]));
    if (columnsChanged) this.buildHead();
    this.schedule(true);
  }

  /** Applies one stream event: changed rows replace theirs, removed hosts go. */
  patch(ev) {
    for (const r of ev.rows || []) this.byHost.set(r.host, r);
    for (const host of ev.removed || []) this.byHost.delete(host);
    if (ev.version !== undefined) this.version = ev.version;
    if (ev.total !== undefined) this.total = ev.total;
    if (ev.online !== undefined) this.online = ev.online;
    this.schedule(true);
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
    this.body.scrollTop = 0;
    this.schedule(true);
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDir = -this.sortDir;
    else {
      this.sortKey = key;
      this.sortDir = key === 'host' || key === 'status' ? 1 : -1;
    }
    this.updateSortMarks();
    this.schedule(true);
  }

  buildHead() {
    const cols = [
      { key: 'status', label: 'Status' },
      { key: 'host', label: 'Machine' },
      ...this.columns.map((c, i) => ({ key: c.key, label: c.label, index: i, num: true })),
    ];
    this.head.replaceChildren(...cols.map((c) => h('button', {
      type: 'button',
      class: c.num ? 'num' : '',
      'data-key': c.key,
      title: `Sort by ${c.label}`,
      onclick: () => this.sortBy(c.key),
    }, c.label)));
    this.root.style.setProperty('--cols', `90px minmax(140px, 1.6fr) repeat(${this.columns.length}, minmax(72px, 1fr))`);
    for (const el of this.pool) el.remove();
    this.pool = [];
    this.updateSortMarks();
  }

  updateSortMarks() {
    for (const b of this.head.querySelectorAll('button')) {
      if (b.dataset.key === this.sortKey) b.setAttribute('aria-sort', this.sortDir > 0 ? 'ascending' : 'descending');
      else b.removeAttribute('aria-sort');
    }
  }

  /** Coalesces work into one animation frame; `viewChanged` re-filters and re-sorts. */
  schedule(viewChanged) {
    this.dirtyView ||= viewChanged;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.dirtyView) this.rebuildView();
      this.dirtyView = false;
      this.render();
    });
  }

  rebuildView() {
    const f = this.filter;
    let rows = [...this.byHost.values()];
    if (f) rows = rows.filter((r) => r.host.toLowerCase().includes(f) || r.status.includes(f));
    const dir = this.sortDir;
    const key = this.sortKey;
    const index = this.columns.findIndex((c) => c.key === key);
    let cmp;
    if (key === 'host') cmp = (a, b) => a.host.localeCompare(b.host, undefined, { numeric: true });
    else if (key === 'status') cmp = (a, b) => (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3);
    else cmp = (a, b) => {
      const x = a.v[index];
      const y = b.v[index];
      // Machines without a value sort last either way.
      if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1 * dir;
      if (y === null || y === undefined) return -1 * dir;
      return x - y;
    };
    rows.sort((a, b) => dir * cmp(a, b) || a.host.localeCompare(b.host, undefined, { numeric: true }));
    this.view = rows;
    this.spacer.style.height = `${rows.length * ROW_H}px`;
    document.dispatchEvent(new CustomEvent('fleet:summary', {
      detail: { total: this.total, online: this.online, shown: rows.length },
    }));
  }

  render() {
    const n = this.view.length;
    const top = this.body.scrollTop;
    const height = this.body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) {
      const el = this.makeRow();
      this.spacer.append(el);
      this.pool.push(el);
    }
    for (let j = 0; j < this.pool.length; j++) {
      const el = this.pool[j];
      const i = first + j;
      if (j >= needed) {
        el.hidden = true;
        continue;
      }
      el.hidden = false;
      el.style.transform = `translateY(${i * ROW_H}px)`;
      this.fillRow(el, this.view[i], i);
    }
    const empty = this.root.querySelector('.fleet-empty');
    if (empty) empty.hidden = n > 0;
  }

  makeRow() {
    const el = h('div', { class: 'fleet-row' });
    el.append(h('span', {}, h('span', { class: 'dot' }), ' ', h('span', {})));
    el.append(h('a', {}));
    for (let i = 0; i < this.columns.length; i++) el.append(h('span', { class: 'num' }));
    el.style.top = '0';
    return el;
  }

  fillRow(el, r, i) {
    el.dataset.index = String(i);
    if (el.dataset.host !== r.host) {
      el.dataset.host = r.host;
      const link = el.children[1];
      link.textContent = r.host;
      link.href = `/machines/${encodeURIComponent(r.host)}${rangeQuery()}`;
    }
    const status = el.children[0];
    if (status.dataset.s !== r.status) {
      status.dataset.s = r.status;
      status.firstChild.className = `dot ${r.status}`;
      status.lastChild.textContent = r.status;
      status.title = r.last_seen_ms ? `last seen ${fmtAgo(r.last_seen_ms)}` : 'never seen';
    }
    for (let c = 0; c < this.columns.length; c++) {
      const cell = el.children[c + 2];
      const v = r.v[c];
      const col = this.columns[c];
      const text = cellText(v, col.unit);
      if (cell.textContent !== text) cell.textContent = text;
      const cls = `num ${colourClass(v, this.thresholds[col.key])}`;
      if (cell.className !== cls) cell.className = cls;
    }
  }

  /** Scrolls so that the row at `index` of the current view is at the top. */
  scrollToIndex(index) {
    this.body.scrollTop = index * ROW_H;
    this.schedule(false);
  }
}

function rangeQuery() {
  const r = localStorage.getItem('dcmon.range');
  return r && RANGES.includes(r) ? `?range=${r}` : '';
}

function startPage() {
  const root = document.getElementById('fleet');
  const table = new FleetTable(root);
  const total = document.getElementById('fleet-total');
  const online = document.getElementById('fleet-online');
  const shown = document.getElementById('fleet-shown');
  const filter = document.getElementById('fleet-filter');
  const interval = document.getElementById('fleet-interval');
  const range = document.getElementById('fleet-range');
  const refresh = document.getElementById('fleet-refresh');
  const updated = document.getElementById('fleet-updated');

  document.addEventListener('fleet:summary', (e) => {
    total.textContent = String(e.detail.total);
    online.textContent = String(e.detail.online);
    shown.textContent = e.detail.shown === e.detail.total ? '' : `${e.detail.shown} shown`;
  });

  let stream = null;
  let timer = 0;

  async function reload() {
    try {
      const answer = await api('GET', '/api/fleet');
      table.load(answer);
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      flash(e instanceof ApiError ? e.message : String(e));
    }
  }

  function connect() {
    const es = new EventSource(`/api/fleet/stream?since=${table.version}`);
    stream = es;
    es.addEventListener('fleet', (msg) => {
      try {
        table.patch(JSON.parse(msg.data));
        updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        flash(`A fleet update could not be read: ${e.message}`);
      }
    });
    // EventSource reconnects by itself; a full reload afterwards catches what was missed.
    let opened = 0;
    es.addEventListener('open', () => {
      if (opened++ > 0) reload();
    });
    // A refused stream (an ended session, a server restart's 5xx) is not retried by the
    // browser: reload (which sends an ended session to the login page) and connect again.
    es.addEventListener('error', () => {
      if (es.readyState !== EventSource.CLOSED || stream !== es) return;
      stream = null;
      setTimeout(() => {
        if (interval.value === 'live' && !stream) reload().then(connect);
      }, 5000);
    });
  }

  function applyInterval() {
    if (stream) stream.close();
    stream = null;
    clearInterval(timer);
    const v = interval.value;
    localStorage.setItem('dcmon.refresh', v);
    if (v === 'live') connect();
    else if (v !== 'off') timer = setInterval(reload, Number(v) * 1000);
  }

  filter.addEventListener('input', () => table.setFilter(filter.value));
  refresh.addEventListener('click', reload);
  interval.addEventListener('change', applyInterval);
  range.addEventListener('change', () => {
    localStorage.setItem('dcmon.range', range.value);
    for (const el of table.pool) delete el.dataset.host;
    table.schedule(false);
  });
  const savedInterval = localStorage.getItem('dcmon.refresh');
  if (savedInterval && [...interval.options].some((o) => o.value === savedInterval)) interval.value = savedInterval;
  const savedRange = localStorage.getItem('dcmon.range');
  if (savedRange && RANGES.includes(savedRange)) range.value = savedRange;

  reload().then(applyInterval);
  window.dcmon = Object.assign(window.dcmon || {}, { fleet: table });
}

startPage();
