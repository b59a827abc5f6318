// SPDX-License-Identifier: MIT
// Small DOM helpers: element builder, toasts, modal dialogs, time formats.
// No innerHTML with data: every text goes through textContent.

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function toast(msg, kind = 'info') {
  const box = document.getElementById('toasts');
  const t = el('div', { class: 'toast ' + kind }, msg);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

export function errorText(e) {
  return e && e.message ? e.message : String(e);
}

// Shows a modal built by build(form, close); resolves with what close() gets
// (undefined when dismissed with Escape or Cancel).
export function modal(title, build) {
  const d = document.getElementById('dialog');
  return new Promise((resolve) => {
    d.replaceChildren();
    let done = false;
    const close = (v) => {
      if (done) return;
      done = true;
      d.close();
      resolve(v);
    };
    const form = el('form', { method: 'dialog', class: 'dialog-form' });
    form.append(el('h2', {}, title));
    build(form, close);
    d.append(form);
    d.addEventListener('close', () => close(undefined), { once: true });
    d.showModal();
    const first = form.querySelector('input, select, textarea, button.primary, button');
    if (first) first.focus();
  });
}

export function confirmDialog(title, text, okLabel = 'OK', danger = false) {
  return modal(title, (form, close) => {
    form.append(el('p', {}, text));
    form.append(el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'secondary', onclick: () => close(false) }, 'Cancel'),
      el('button', { type: 'submit', class: danger ? 'danger' : 'primary',
        onclick: (ev) => { ev.preventDefault(); close(true); } }, okLabel)));
  }).then((v) => v === true);
}

// fields: [{name, label, value, placeholder, hint}] -> {name: value} or undefined
export function promptDialog(title, fields, okLabel = 'Save') {
  return modal(title, (form, close) => {
    for (const f of fields) {
      const id = 'f-' + f.name;
      form.append(el('label', { for: id }, f.label));
      form.append(el('input', { id, name: f.name, value: f.value || '', placeholder: f.placeholder || '',
        spellcheck: 'false', autocomplete: 'off' }));
      if (f.hint) form.append(el('p', { class: 'hint' }, f.hint));
    }
    form.append(el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'secondary', onclick: () => close(undefined) }, 'Cancel'),
      el('button', { type: 'submit', class: 'primary', onclick: (ev) => {
        ev.preventDefault();
        const out = {};
        for (const f of fields) out[f.name] = form.querySelector('#f-' + f.name).value.trim();
        close(out);
      } }, okLabel)));
  });
}

// Times come from the API as RFC 3339 strings (null: never); Unix seconds
// are accepted too.
function unixOf(t) {
  return typeof t === 'string' ? Date.parse(t) / 1000 : t;
}

export function when(t) {
  if (!t) return 'never';
  return new Date(unixOf(t) * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function ago(t) {
  if (!t) return 'never';
  const s = Math.round(Date.now() / 1000 - unixOf(t));
  if (s < 0) return 'in ' + span(-s);
  if (s < 5) return 'just now';
  return span(s) + ' ago';
}

function span(s) {
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

// Copies text; falls back to selecting it where the clipboard API is missing.
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied to the clipboard');
  } catch {
    if (fallbackInput) {
      fallbackInput.focus();
      fallbackInput.select();
      toast('Press Ctrl+C to copy');
    }
  }
}

// A secret shown once, read-only, with a copy button.
export function secretBox(label, value) {
  const input = el('input', { class: 'secret', readonly: true, value, 'aria-label': label, spellcheck: 'false' });
  return el('div', { class: 'secret-box', role: 'group', 'aria-label': label },
    el('p', {}, el('strong', {}, label), ' — shown once: copy it now, it cannot be displayed again.'),
    el('div', { class: 'row' }, input,
      el('button', { type: 'button', class: 'primary copy', onclick: () => copyText(value, input) }, 'Copy')));
}
