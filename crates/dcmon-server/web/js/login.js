// The login page: user and password, then a TOTP (or recovery) code when the server
// answers `totp_required`; lock-out and rate-limit answers are shown as the server words them.

import { api, ApiError, fill, h } from './api.js';

const form = document.getElementById('login-form');
const message = document.getElementById('login-message');
const totpStep = document.getElementById('totp-step');
const passwordStep = document.getElementById('password-step');
const recoveryToggle = document.getElementById('use-recovery');

/** Where to go after login: a path on this server only, never another origin. */
function next() {
  const n = new URLSearchParams(location.search).get('next') || '/';
  return n.startsWith('/') && !n.startsWith('//') && !n.startsWith('/\\') ? n : '/';
}

function say(text, kind = 'error') {
  fill(message, text ? h('div', { class: kind === 'error' ? 'alert' : `alert ${kind}`, role: 'alert' }, text) : null);
}

recoveryToggle.addEventListener('click', () => {
  const f = form.elements;
  const recovery = f.totp.dataset.mode !== 'recovery';
  f.totp.dataset.mode = recovery ? 'recovery' : 'totp';
  f.totp.value = '';
  f.totp.setAttribute('inputmode', recovery ? 'text' : 'numeric');
  f.totp.setAttribute('autocomplete', recovery ? 'off' : 'one-time-code');
  document.getElementById('totp-label').textContent = recovery ? 'Recovery code' : 'Authentication code';
  recoveryToggle.textContent = recovery ? 'Use an authenticator code' : 'Use a recovery code';
  f.totp.focus();
});

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = form.elements;
  const body = { user: f.user.value.trim(), password: f.password.value };
  if (!totpStep.hidden && f.totp.value.trim()) {
    if (f.totp.dataset.mode === 'recovery') body.recovery_code = f.totp.value.trim();
    else body.totp = f.totp.value.replace(/\s+/g, '');
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  say('');
  try {
    await api('POST', '/api/session', body);
    location.assign(next());
    return;
  } catch (err) {
    if (!(err instanceof ApiError)) {
      say(String(err));
    } else if (err.code === 'totp_required') {
      const first = totpStep.hidden;
      totpStep.hidden = false;
      passwordStep.hidden = true;
      say(first ? 'Enter the code from your authenticator app.' : err.message, first ? 'info' : 'error');
      f.totp.value = '';
      f.totp.focus();
    } else if (err.code === 'rate_limited') {
      say(err.retryAfter ? `${err.message} Try again in ${err.retryAfter} s.` : err.message);
    } else {
      say(err.message);
      if (err.code === 'bad_credentials') {
        f.password.value = '';
        f.password.focus();
      }
    }
  } finally {
    button.disabled = false;
  }
});

form.elements.user.focus();
