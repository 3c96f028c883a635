// Settings: the user's own password and two-factor authentication (enrol with a QR
// code, confirm with a code, recovery codes shown once, disable with the password).

import { api, flash, guarded, h, fill } from './api.js';

const pwForm = document.getElementById('password-form');
pwForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = pwForm.elements;
  if (f.new.value !== f.repeat.value) {
    flash('The two new passwords differ.');
    return;
  }
  const ok = await guarded(async () => {
    await api('POST', '/api/me/password', { current: f.current.value, new: f.new.value });
    return true;
  });
  if (ok) {
    flash('Password changed; your other sessions were signed out.', 'ok');
    pwForm.reset();
  }
});

const totp = document.getElementById('totp');

/** The server's QR code is an SVG document; only its `<svg>` element is put in the page. */
function qrElement(svgText) {
  const doc = new DOMParser().parseFromString(svgText, 'image/svg+xml');
  const svg = doc.documentElement;
  if (svg.nodeName.toLowerCase() !== 'svg') return h('span', { class: 'dim' }, 'QR code unavailable; enter the secret by hand.');
  for (const s of svg.querySelectorAll('script')) s.remove();
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code for your authenticator app');
  return document.importNode(svg, true);
}

async function showTotp() {
  const me = await guarded(() => api('GET', '/api/me'));
  if (!me) return;
  if (me.totp_enabled) {
    const form = h('form', { class: 'stack', id: 'totp-disable-form' },
      h('p', {}, h('span', { class: 'badge green' }, 'enabled'), ' Two-factor authentication protects this account.'),
      h('label', {}, 'Password', h('input', { type: 'password', name: 'password', required: true, autocomplete: 'current-password' })),
      h('div', {}, h('button', { type: 'submit', class: 'danger' }, 'Disable two-factor authentication')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const ok = await guarded(async () => {
        await api('DELETE', '/api/me/totp', { password: form.elements.password.value });
        return true;
      });
      if (ok) {
        flash('Two-factor authentication disabled.', 'ok');
        showTotp();
      }
    });
    fill(totp, form);
    return;
  }
  const start = h('button', { type: 'button', class: 'primary', id: 'totp-start' }, 'Enable two-factor authentication');
  start.addEventListener('click', enrol);
  fill(totp, h('p', { class: 'dim' }, 'Sign-ins will also ask for a code from an authenticator app.'), start);
}

async function enrol() {
  const r = await guarded(() => api('POST', '/api/me/totp'));
  if (!r) return;
  const form = h('form', { class: 'stack', id: 'totp-confirm-form' },
    h('label', {}, 'Code from the app', h('input', { name: 'code', required: true, inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9 ]{6,7}' })),
    h('div', {}, h('button', { type: 'submit', class: 'primary' }, 'Confirm')));
  fill(totp,
    h('p', {}, 'Scan this code with an authenticator app, or enter the secret by hand, then type the code it shows.'),
    h('div', { class: 'qr' }, qrElement(r.qr_svg)),
    h('p', {}, 'Secret: ', h('code', { id: 'totp-secret' }, r.secret)),
    form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const c = await guarded(() => api('POST', '/api/me/totp/confirm', { code: form.elements.code.value.replace(/\s+/g, '') }));
    if (!c) return;
    const done = h('button', { type: 'button' }, 'I have saved them');
    done.addEventListener('click', showTotp);
    fill(totp,
      h('div', { class: 'alert ok' }, 'Two-factor authentication is on.'),
      h('p', {}, 'Recovery codes: each signs you in once without the app. They are shown only now; keep them somewhere safe.'),
      h('div', { class: 'secret-once codes', id: 'recovery-codes' }, c.recovery_codes.map((x) => h('div', {}, x))),
      h('p', {}, done));
  });
}

showTotp();
