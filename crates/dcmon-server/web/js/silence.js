// The silence form of `/alerts` (shown, filled from an alert's labels, by its Silence
// button) and `/alerts/silences`: matchers one a line, a duration, a comment.

import { api, ApiError, clearRefusal, flash, fmtTime, showRefusal } from './api.js';

/** Which field a refusal of `POST /api/silences` is about. */
function fieldOf(part) {
  if (/matcher/.test(part)) return 'matchers';
  if (/duration|end after it starts/.test(part)) return 'duration';
  return null;
}

/**
 * Wires the form (when the page has it: operators only); `done` runs after a silence is
 * made. Returns a function that shows the form filled with `matchers`, or null.
 */
export function silenceForm(done) {
  const form = document.getElementById('silence-form');
  if (!form) return null;
  const panel = document.getElementById('silence-panel');
  const box = document.getElementById('silence-form-error');
  const cancel = document.getElementById('silence-cancel');
  if (cancel) {
    cancel.addEventListener('click', () => {
      clearRefusal(form, box);
      panel.hidden = true;
    });
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearRefusal(form, box);
    const f = form.elements;
    const body = {
      matchers: f.matchers.value.split('\n').map((m) => m.trim()).filter(Boolean),
      duration: f.duration.value.trim(),
      comment: f.comment.value.trim(),
    };
    try {
      const r = await api('POST', '/api/silences', body);
      flash(`Silence ${r.silence.id} made; it ends ${fmtTime(r.silence.ends_ms)}.`, 'ok');
      form.reset();
      if (cancel) panel.hidden = true;
      done();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      // A body the server could not read names what it expected first; the cause follows.
      const message = err.message.replace(/^silence body \(expected .*?\}\): /, '');
      showRefusal(form, box, [message], fieldOf);
    }
  });
  return (matchers) => {
    clearRefusal(form, box);
    form.reset();
    form.elements.matchers.value = matchers.join('\n');
    panel.hidden = false;
    panel.scrollIntoView({ block: 'nearest' });
    form.elements.comment.focus();
  };
}
