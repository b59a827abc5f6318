// SPDX-License-Identifier: MIT
// Policy editor: HuJSON with line numbers and highlighting, checked while
// typing by POST /api/v1/policy/check (errors underlined where the server
// puts them, tests results), a diff against the active policy before
// saving, save with If-Match and a conflict view when someone saved first,
// history with view and restore, and an explain box.
import { api } from './api.js';
import { el, toast, errorText, modal } from './ui.js';
import { render, lineStarts, offsetOf } from './hujson.js';
import { renderDiff } from './diff.js';

const TEMPLATE = `{
  // Who may reach what. With no policy every node may reach every other.
  "groups": {
    // "group:admins": ["alice@"],
  },
  "tagOwners": {
    // "tag:server": ["group:admins"],
  },
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:*"]},
  ],
  "tests": [
  ],
}
`;

export function page(root) {
  const st = {
    base: '',          // the active policy text the draft started from
    etag: null,        // its ETag, sent as If-Match
    file: false,       // managed in a file: read-only here
    diags: [],
    seq: 0,
    timer: null,
    escape: false,
  };
  const status = el('p', { class: 'summary', id: 'policy-status', 'aria-live': 'polite' });
  const banner = el('div', { class: 'banner', hidden: true, role: 'status' });
  const gutter = el('div', { class: 'gutter', 'aria-hidden': 'true' });
  const hl = el('pre', { class: 'hl', 'aria-hidden': 'true' });
  const ta = el('textarea', { id: 'policy-text', class: 'src', spellcheck: 'false', autocapitalize: 'off',
    autocomplete: 'off', wrap: 'off', 'aria-label': 'Policy (HuJSON)', 'aria-describedby': 'policy-problems' });
  const problems = el('ul', { class: 'problems', id: 'policy-problems', 'aria-live': 'polite' });
  const tests = el('p', { class: 'tests', id: 'policy-tests' });
  const review = el('section', { class: 'card review', id: 'policy-review', hidden: true, 'aria-label': 'Review changes' });
  const conflict = el('section', { class: 'card conflict', id: 'policy-conflict', hidden: true, role: 'alert' });
  const historyBody = el('tbody');
  const exSrc = el('input', { id: 'ex-src', placeholder: 'alice@ or tag:web or 100.64.0.1', spellcheck: 'false' });
  const exDst = el('input', { id: 'ex-dst', placeholder: 'tag:db:5432 or 100.64.0.2:22', spellcheck: 'false' });
  const exProto = el('input', { id: 'ex-proto', placeholder: 'tcp', spellcheck: 'false', size: 6 });
  const exDraft = el('input', { id: 'ex-draft', type: 'checkbox', checked: true });
  const exOut = el('div', { class: 'explain-out', id: 'explain-out', 'aria-live': 'polite' });
  const saveBtn = el('button', { type: 'button', id: 'policy-review-btn', onclick: showReview }, 'Review and save…');

  root.append(
    el('div', { class: 'page-head' }, el('h1', {}, 'Policy'), status),
    banner,
    el('div', { class: 'editor' }, gutter, el('div', { class: 'code' }, hl, ta)),
    el('p', { class: 'hint' }, 'Tab indents; press Esc then Tab to leave the editor. Ctrl+S reviews the changes.'),
    tests, problems,
    el('div', { class: 'toolbar' }, saveBtn,
      el('button', { type: 'button', class: 'secondary', onclick: revert }, 'Revert to active')),
    review, conflict,
    el('div', { class: 'columns' },
      el('section', { class: 'card', 'aria-labelledby': 'h-explain' },
        el('h2', { id: 'h-explain' }, 'Explain a decision'),
        el('form', { class: 'explain', onsubmit: explain },
          el('label', { for: 'ex-src' }, 'Source'), exSrc,
          el('label', { for: 'ex-dst' }, 'Destination:port'), exDst,
          el('label', { for: 'ex-proto' }, 'Protocol'), exProto,
          el('span', { class: 'check' }, exDraft, el('label', { for: 'ex-draft' }, 'Use the draft in the editor')),
          el('button', { type: 'submit' }, 'Explain')),
        exOut),
      el('section', { class: 'card', 'aria-labelledby': 'h-history' },
        el('h2', { id: 'h-history' }, 'History'),
        el('table', { class: 'grid history' },
          el('thead', {}, el('tr', {}, ['Version', 'Saved', 'By', ''].map((h) => el('th', { scope: 'col' }, h)))),
          historyBody))));

  // ---- editor ----
  function paint() {
    render(hl, ta.value, st.diags);
    const n = lineStarts(ta.value).length;
    const bad = new Set(st.diags.map((d) => d.line));
    if (gutter.childElementCount !== n || bad.size || gutter.querySelector('.bad')) {
      gutter.replaceChildren(...Array.from({ length: n }, (_, i) => el('div', { class: bad.has(i + 1) ? 'bad' : undefined }, String(i + 1))));
    }
    sync();
  }
  function sync() {
    hl.style.transform = `translate(${-ta.scrollLeft}px, ${-ta.scrollTop}px)`;
    gutter.scrollTop = ta.scrollTop;
  }
  ta.addEventListener('scroll', sync);
  ta.addEventListener('input', () => {
    paint();
    clearTimeout(st.timer);
    st.timer = setTimeout(check, 250);
  });
  ta.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 's') {
      ev.preventDefault();
      showReview();
      return;
    }
    if (ev.key === 'Escape') { st.escape = true; return; }
    if (ev.key === 'Tab' && !st.escape && !ev.shiftKey) {
      ev.preventDefault();
      ta.setRangeText('  ', ta.selectionStart, ta.selectionEnd, 'end');
      ta.dispatchEvent(new Event('input'));
      return;
    }
    st.escape = false;
  });

  function goto(d) {
    const off = offsetOf(lineStarts(ta.value), ta.value, d.line, d.column);
    ta.focus();
    ta.setSelectionRange(off, off);
  }

  function showDiags(errors, t) {
    st.diags = [...errors, ...(t && t.failures ? t.failures : [])];
    problems.replaceChildren(...st.diags.map((d) => el('li', {},
      el('button', { type: 'button', class: 'link', onclick: () => goto(d) }, `Line ${d.line}, column ${d.column}`),
      ': ', d.message)));
    if (!t) tests.textContent = '';
    else if (errors.length) tests.textContent = 'Tests not run: the policy has errors.';
    else if (!t.count) tests.textContent = 'Valid. No tests in this policy.';
    else if (t.passed) tests.textContent = `Valid. ${t.count} tests passed.`;
    else tests.textContent = `${t.failed} test failures (of ${t.count} tests).`;
    tests.className = 'tests ' + (st.diags.length ? 'bad' : 'good');
    paint();
  }

  async function check() {
    const seq = ++st.seq;
    try {
      const r = await api('POST', '/policy/check', ta.value);
      if (seq === st.seq) showDiags(r.errors, r.tests);
    } catch (e) {
      if (seq === st.seq) { tests.textContent = 'Cannot check: ' + errorText(e); tests.className = 'tests bad'; }
    }
  }

  // ---- load, save, conflicts ----
  async function load(keepDraft) {
    try {
      const r = await api('GET', '/policy', undefined, { full: true });
      st.base = r.data;
      st.etag = r.headers.get('ETag');
    } catch (e) {
      if (e.status !== 404) { toast(errorText(e), 'error'); return; }
      st.base = '';
      st.etag = null;
    }
    if (!keepDraft) ta.value = st.base || TEMPLATE;
    banner.hidden = true;
    paint();
    check();
    loadHistory();
  }

  function describe(h) {
    const latest = h[0];
    if (!st.etag) status.textContent = 'No policy is set: every node may reach every other. Saving the draft below sets one.';
    else if (latest) status.textContent = `Active: version ${latest.id}, saved ${latest.created_at.replace('T', ' ').replace('Z', ' UTC')} by ${latest.created_by}.`;
    else status.textContent = 'Active policy loaded from the policy file.';
  }

  function showReview() {
    conflict.hidden = true;
    const box = el('div');
    const { adds, dels } = renderDiff(box, st.base, ta.value, [st.etag ? 'active' : 'no policy', 'your draft']);
    const bad = st.diags.length > 0;
    review.replaceChildren(el('h2', {}, 'Review changes'), box,
      ...(bad ? [el('p', { class: 'error' }, 'The draft has problems; the server will refuse it until they are fixed.')] : []),
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary', onclick: () => { review.hidden = true; ta.focus(); } }, 'Back to editing'),
        el('button', { type: 'button', id: 'policy-save', disabled: !adds && !dels, onclick: save }, 'Save policy')));
    review.hidden = false;
    review.querySelector('#policy-save:not([disabled])')?.focus();
  }

  async function save() {
    const headers = st.etag ? { 'If-Match': st.etag } : {};
    try {
      const r = await api('PUT', '/policy', ta.value, { headers, full: true });
      st.base = ta.value;
      st.etag = r.data.etag;
      review.hidden = true;
      toast(`Policy saved (version ${r.data.version})`);
      banner.hidden = true;
      loadHistory();
      check();
    } catch (e) {
      if (e.status === 412) return showConflict();
      if (e.status === 422 || e.status === 400) {
        review.hidden = true;
        showDiags(e.problem.errors || [], null);
        tests.textContent = e.problem.title || 'The server refused the policy.';
        tests.className = 'tests bad';
        return;
      }
      toast(errorText(e), 'error');
    }
  }

  async function showConflict() {
    review.hidden = true;
    let theirs = '';
    let etag = null;
    try {
      const r = await api('GET', '/policy', undefined, { full: true });
      theirs = r.data;
      etag = r.headers.get('ETag');
    } catch (e) { if (e.status !== 404) toast(errorText(e), 'error'); }
    const h = await loadHistory();
    const latest = h && h[0];
    const box = el('div');
    renderDiff(box, theirs, ta.value, ['theirs (now active)', 'yours']);
    conflict.replaceChildren(
      el('h2', {}, 'Someone else saved the policy first'),
      el('p', {}, 'Your draft was based on an older version. ' +
        (latest ? `Version ${latest.id} was saved ${latest.created_at.replace('T', ' ').replace('Z', ' UTC')} by ${latest.created_by}. ` : '') +
        'Nothing of yours was saved. Below: what saving your draft would change in theirs.'),
      box,
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary', id: 'conflict-theirs', onclick: () => {
          ta.value = theirs; st.base = theirs; st.etag = etag; conflict.hidden = true; paint(); check();
          toast('Loaded their version; your draft was discarded');
        } }, 'Discard mine, load theirs'),
        el('button', { type: 'button', id: 'conflict-mine', onclick: () => {
          st.base = theirs; st.etag = etag; conflict.hidden = true; showReview();
        } }, 'Review mine on top of theirs')));
    conflict.hidden = false;
    conflict.querySelector('#conflict-mine').focus();
  }

  function revert() {
    ta.value = st.base || TEMPLATE;
    review.hidden = true;
    conflict.hidden = true;
    paint();
    check();
  }

  // ---- history ----
  async function loadHistory() {
    try {
      const { history } = await api('GET', '/policy/history');
      historyBody.replaceChildren(...history.map((v, i) => el('tr', {},
        el('td', { 'data-label': 'Version' }, String(v.id), i === 0 && st.etag === v.etag ? el('span', { class: 'badge ok' }, 'active') : null),
        el('td', { 'data-label': 'Saved' }, v.created_at.replace('T', ' ').replace('Z', ' UTC')),
        el('td', { 'data-label': 'By' }, v.created_by),
        el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'small secondary', 'aria-label': `View version ${v.id}`, onclick: () => view(v) }, 'View'),
          el('button', { type: 'button', class: 'small secondary', 'aria-label': `Restore version ${v.id}`, onclick: () => restore(v) }, 'Restore')))));
      if (!history.length) historyBody.append(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'No saved versions yet.')));
      describe(history);
      return history;
    } catch (e) { toast(errorText(e), 'error'); return null; }
  }

  async function view(v) {
    let r;
    try { r = await api('GET', `/policy/history/${v.id}`); } catch (e) { toast(errorText(e), 'error'); return; }
    await modal(`Version ${v.id}`, (form, close) => {
      const pre = el('pre', { class: 'hl view' });
      render(pre, r.text, []);
      const diff = el('div');
      renderDiff(diff, st.base, r.text, ['active', `version ${v.id}`]);
      form.classList.add('wide');
      form.append(el('p', { class: 'hint' }, `Saved ${r.created_at} by ${r.created_by}.`), pre, diff,
        el('div', { class: 'actions' },
          el('button', { type: 'button', class: 'secondary', onclick: () => close() }, 'Close'),
          el('button', { type: 'button', onclick: () => { close(); restore(v, r.text); } }, 'Restore into the editor')));
    });
  }

  async function restore(v, text) {
    if (text === undefined) {
      try { text = (await api('GET', `/policy/history/${v.id}`)).text; } catch (e) { toast(errorText(e), 'error'); return; }
    }
    ta.value = text;
    paint();
    check();
    toast(`Version ${v.id} is in the editor: review and save to make it active`);
    showReview();
  }

  // ---- explain ----
  async function explain(ev) {
    ev.preventDefault();
    const body = { src: exSrc.value.trim(), dst: exDst.value.trim() };
    if (exProto.value.trim()) body.proto = exProto.value.trim();
    if (exDraft.checked) body.policy = ta.value;
    try {
      const r = await api('POST', '/policy/explain', body);
      if (r.verdict === 'invalid') {
        exOut.replaceChildren(el('p', { class: 'error' }, 'The draft does not load: fix its errors first.'));
        return;
      }
      exOut.replaceChildren(el('p', {}, el('span', { class: 'verdict ' + r.verdict }, r.verdict)),
        el('pre', { class: 'explanation' }, r.explanation));
    } catch (e) {
      exOut.replaceChildren(el('p', { class: 'error' }, errorText(e)));
    }
  }

  load(false);
  return {
    refresh(ev) {
      // Someone else saved: say so; the draft stays.
      const bare = (t) => (t || '').replace(/"/g, '');
      if (ev && 'policy_etag' in ev && bare(ev.policy_etag) !== bare(st.etag)) {
        banner.replaceChildren('The active policy was changed elsewhere. ',
          el('button', { type: 'button', class: 'link', onclick: () => { load(false); } }, 'Load it'),
          ' (discards your draft) or keep editing; saving will show the conflict.');
        banner.hidden = false;
        loadHistory();
      }
    },
  };
}
