// Time-series panels drawn with the vendored uPlot (loaded as the global `uPlot`): data
// from `/api/v1/query_range` at a step that fits the panel's width, hover values in the
// legend, drag to zoom (the page re-queries the new range), double-click to reset.

import { api, fmtValue, h } from './api.js';

const PALETTE = ['#73bf69', '#fade2a', '#5794f2', '#ff9830', '#f2495c', '#b877d9', '#8ab8ff', '#37872d', '#e0b400', '#1f60c4', '#c4162a', '#8f3bb8'];
/** Tick distances for byte axes: powers of two, so ticks fall on 16 MiB, not 19.1 MiB. */
const BINARY_INCRS = Array.from({ length: 60 }, (_, i) => 2 ** i);
/** About one point per this many pixels of plot width. */
const PX_PER_POINT = 3;

/** Quotes a label value for a PromQL selector. */
export function promString(s) {
  return `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The query step (s) that gives about one point per few pixels of a `width`-pixel plot. */
export function stepFor(start, end, width) {
  return Math.max(1, Math.ceil((end - start) / Math.max(50, width / PX_PER_POINT)));
}

/** `[5m]`-style window for rate(): wide enough to hold two samples at any step. */
export function rateWindow(step) {
  return `${Math.max(60, step * 4)}s`;
}

/** An axis label: as many decimals as the distance between ticks (`incr`) needs. */
function shortValue(v, unit, incr) {
  if (v === null || v === undefined) return '';
  if (unit === 'bytes' || unit === 'bytes_per_second') return fmtValue(v, unit).replace('/s', '');
  const a = Math.abs(v);
  const digits = (step) => {
    let d = 0;
    while (d < 3 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6 * 10 ** d) d += 1;
    return d;
  };
  if (a >= 1e9) return `${(v / 1e9).toFixed(digits(incr / 1e9))}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(digits(incr / 1e6))}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(digits(incr / 1e3))}k`;
  return v.toFixed(digits(incr));
}

/** Legend name of a series: its labels without the machine's own. */
function defaultName(metric) {
  const parts = Object.entries(metric)
    .filter(([k]) => k !== '__name__' && k !== 'host' && k !== 'instance')
    .map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(', ') : metric.__name__ || 'value';
}

export class Chart {
  /**
   * `spec`: `{title, unit, queries: [{expr: (w) => promql, name?: (metric) => string}]}`;
   * `w` is the rate window for the current step. `ctl` gets `zoom(min, max)` and `reset()`.
   */
  constructor(parent, spec, ctl) {
    this.spec = spec;
    this.ctl = ctl;
    this.plot = null;
    this.range = null;
    this.panel = h('section', { class: 'panel chart-panel' }, h('h2', {}, spec.title));
    this.area = h('div', { class: 'chart' });
    this.panel.append(this.area);
    parent.append(this.panel);
    this.resize = new ResizeObserver(() => {
      if (this.plot) this.plot.setSize(this.size());
    });
    this.resize.observe(this.area);
  }

  size() {
    return { width: Math.max(200, this.area.clientWidth), height: 200 };
  }

  /** Queries and draws `[start, end]` (unix seconds). */
  async load(start, end) {
    // Only the newest request draws: an older, slower answer must not replace it.
    this.generation = (this.generation || 0) + 1;
    const generation = this.generation;
    const step = stepFor(start, end, this.size().width);
    // The grid ends exactly at `end`, so the newest samples are always drawn.
    const first = end - Math.floor((end - start) / step) * step;
    const w = rateWindow(step);
    const results = await Promise.all(this.spec.queries.map((q) => {
      const params = new URLSearchParams({ query: q.expr(w), start: String(first), end: String(end), step: String(step) });
      return api('GET', `/api/v1/query_range?${params}`).then((r) => ({ q, series: r.data.result }));
    }));
    if (generation !== this.generation) return;
    const xs = [];
    for (let t = first; t <= end; t += step) xs.push(t);
    const data = [xs];
    const series = [{}];
    for (const { q, series: list } of results) {
      for (const s of list) {
        const byTime = new Map(s.values.map(([t, v]) => [Math.round(t), Number(v)]));
        const values = xs.map((t) => (byTime.has(t) ? byTime.get(t) : null));
        data.push(values);
        const last = values.findLast((v) => v !== null);
        const color = PALETTE[(series.length - 1) % PALETTE.length];
        series.push({
          label: (q.name || defaultName)(s.metric),
          stroke: color,
          width: 1.5,
          // A series that has only just begun has too few points for a line to show.
          points: { show: values.filter((y) => y !== null).length < 3, fill: color },
          // Under the cursor its value; otherwise the newest one, as a current reading.
          value: (u, v, sidx, idx) => fmtValue(idx === null || idx === undefined ? last : v, this.spec.unit),
        });
      }
    }
    this.draw(series, data, start, end);
    this.range = [start, end];
  }

  draw(series, data, start, end) {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.area.replaceChildren();
    if (series.length === 1) {
      this.area.append(h('div', { class: 'nodata' }, 'No data in this range.'));
      return;
    }
    const unit = this.spec.unit;
    const axis = { stroke: '#8e9099', grid: { stroke: '#2c3038', width: 1 }, ticks: { stroke: '#2c3038', width: 1 } };
    const opts = {
      ...this.size(),
      series,
      scales: { x: { time: true, range: () => [start, end] } },
      axes: [axis, { ...axis, size: 70, incrs: unit === 'bytes' || unit === 'bytes_per_second' ? BINARY_INCRS : undefined, values: (u, ticks) => ticks.map((v) => shortValue(v, unit, ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : Math.abs(v))) }],
      legend: { live: true },
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: {
          dblclick: () => () => {
            this.ctl.reset();
            return null;
          },
        },
      },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const min = u.posToVal(u.select.left, 'x');
          const max = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          this.ctl.zoom(Math.floor(min), Math.ceil(max));
        }],
      },
    };
    // eslint-disable-next-line no-undef
    this.plot = new uPlot(opts, data, this.area);
  }

  /** The x range (unix seconds) last asked for; drawn as is, or empty without data. */
  xRange() {
    return this.range;
  }

  remove() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.panel.remove();
  }
}
