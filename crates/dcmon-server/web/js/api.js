// Shared by every page: the JSON API wrapper (CSRF header, error display), a small DOM
// builder (text only, never HTML strings from data) and formatters.

/** The session's CSRF token, put in the page by the server. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : '';
}

/** An answer of the API that was not 2xx: `{code, message}` as the server sent it. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/**
 * Calls the JSON API. Writes carry `X-CSRF-Token`; an expired session sends the browser
 * to the login page; other errors are thrown as `ApiError` for the caller to show.
 * With `rawType` the body is sent as it is, with that content type (a YAML file).
 */
export async function api(method, path, body, rawType) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['X-CSRF-Token'] = csrfToken();
  }
  if (rawType !== undefined) {
    headers['Content-Type'] = rawType;
    init.body = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `The server could not be reached (${e.message}).`);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const code = (data && data.code) || (data && data.errorType) || `http_${resp.status}`;
    const message = (data && (data.message || data.error)) || `${method} ${path}: HTTP ${resp.status}`;
    if (resp.status === 401 && code !== 'totp_required' && code !== 'bad_credentials' && !location.pathname.startsWith('/login')) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    throw new ApiError(resp.status, code, message, resp.headers.get('Retry-After'));
  }
  return data;
}

/** Shows a message in the page's corner; errors stay until dismissed, others fade. */
export function flash(message, kind = 'error') {
  let box = document.getElementById('flash');
  if (!box) {
    box = h('div', { id: 'flash', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const item = h('div', { class: kind === 'error' ? 'alert' : `alert ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, message), ' ',
    h('button', { type: 'button', 'aria-label': 'Dismiss', onclick: () => item.remove() }, 'Close'));
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 5000);
}

/** Runs an async action and shows its error, if any, instead of losing it. */
export async function guarded(action) {
  try {
    return await action();
  } catch (e) {
    flash(e instanceof ApiError ? e.message : String(e));
    return undefined;
  }
}

/** Builds an element; string children become text nodes, so data never becomes markup. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const pad = (n) => String(n).padStart(2, '0');

/** `2026-12-01 17:43:38` in the browser's time zone; `-` for none. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '-';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `in 12 s`, `in 5 min`, `in 3 h`, `in 2 d`; `ended` for a time past. */
export function fmtIn(ms, now = Date.now()) {
  if (ms <= now) return 'ended';
  return `in ${fmtAgo(now, ms).replace(' ago', '')}`;
}

/** `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`. */
export function fmtAgo(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** Formats a value in a unit with a sensible precision (`1.5 GiB`, `45.0 °C`). */
export function fmtValue(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  switch (unit) {
    case 'bytes': return fmtBinary(v, 'B');
    case 'bytes_per_second': return fmtBinary(v, 'B/s');
    case 'celsius': return `${v.toFixed(1)} °C`;
    case 'percent': return `${v.toFixed(1)} %`;
    case 'watts': return `${v.toFixed(0)} W`;
    case 'rpm': return `${v.toFixed(0)} rpm`;
    case 'seconds': return `${v.toFixed(0)} s`;
    default: return Math.abs(v) >= 1000 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(2);
  }
}

function fmtBinary(v, suffix) {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i += 1;
  }
  return `${v < 0 ? '-' : ''}${x.toFixed(x >= 100 || i === 0 ? 0 : 1)} ${units[i]}${suffix}`;
}

/** Removes the messages `showRefusal` put in a form. */
export function clearRefusal(form, box) {
  if (box) fill(box);
  for (const el of form.querySelectorAll('.field-error')) fill(el);
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/**
 * Shows a refusal of the server next to the fields it names. `parts` are the message's
 * pieces; `fieldOf(part)` names the message slot (`data-error-for`) a piece is about, or
 * nothing; `controlOf` maps a slot to its control's name where they differ. Pieces
 * without a field go to `box`. The first refused control gets the focus.
 */
export function showRefusal(form, box, parts, fieldOf, controlOf = {}) {
  clearRefusal(form, box);
  let first = null;
  const loose = [];
  for (const part of parts) {
    const field = fieldOf(part);
    const slot = field && form.querySelector(`[data-error-for="${field}"]`);
    if (!slot) {
      loose.push(part);
      continue;
    }
    slot.append(slot.childNodes.length ? '; ' : '', part);
    const control = form.elements[controlOf[field] || field];
    if (control && control.setAttribute) {
      control.setAttribute('aria-invalid', 'true');
      if (!first) first = control;
    }
  }
  if (loose.length && box) fill(box, h('div', { class: 'alert', role: 'alert' }, loose.join('; ')));
  if (first) first.focus();
}

/** Wires the layout's logout button (every signed-in page has one). */
function wireLogout() {
  const btn = document.getElementById('logout');
  if (!btn) return;
  btn.addEventListener('click', async () => {
    try {
      await api('DELETE', '/api/session');
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) {
        flash(e.message);
        return;
      }
    }
    location.assign('/login');
  });
}

wireLogout();
