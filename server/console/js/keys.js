// SPDX-License-Identifier: MIT
// Pre-auth keys and API keys: list, create (the key is shown once, with a
// copy button), expire.
import { api } from './api.js';
import { el, toast, errorText, confirmDialog, when, secretBox } from './ui.js';

function status(k) {
  if (k.expired) return el('span', { class: 'badge warn' }, 'expired');
  if (k.used) return el('span', { class: 'badge' }, 'used');
  return el('span', { class: 'badge ok' }, 'valid');
}

const EXPIRIES = [['1h', '1 hour'], ['24h', '1 day'], ['7d', '7 days'], ['90d', '90 days'], ['never', 'never']];

export function preauthPage(root) {
  const tbody = el('tbody');
  const out = el('div', { class: 'created', 'aria-live': 'polite' });
  const user = el('select', { id: 'pak-user', required: true });
  const reusable = el('input', { id: 'pak-reusable', type: 'checkbox' });
  const ephemeral = el('input', { id: 'pak-ephemeral', type: 'checkbox' });
  const expiry = el('select', { id: 'pak-expiry' }, EXPIRIES.map(([v, l]) => el('option', { value: v, selected: v === '24h' }, l)));
  const tags = el('input', { id: 'pak-tags', placeholder: 'tag:server, tag:web', spellcheck: 'false' });
  root.append(
    el('div', { class: 'page-head' }, el('h1', {}, 'Pre-auth keys')),
    el('form', { class: 'card create-form', onsubmit: create },
      el('h2', {}, 'New pre-auth key'),
      el('div', { class: 'fields' },
        el('div', {}, el('label', { for: 'pak-user' }, 'User'), user),
        el('div', {}, el('label', { for: 'pak-expiry' }, 'Expires after'), expiry),
        el('div', {}, el('label', { for: 'pak-tags' }, 'Tags'), tags),
        el('div', { class: 'check' }, reusable, el('label', { for: 'pak-reusable' }, 'Reusable')),
        el('div', { class: 'check' }, ephemeral, el('label', { for: 'pak-ephemeral' }, 'Ephemeral nodes'))),
      el('button', { type: 'submit' }, 'Create key')),
    out,
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, ['ID', 'Prefix', 'User', 'Kind', 'Tags', 'Created', 'Expires', 'Uses', 'Status', '']
        .map((h) => el('th', { scope: 'col' }, h)))),
      tbody));

  async function create(ev) {
    ev.preventDefault();
    const body = { user: user.value, reusable: reusable.checked, ephemeral: ephemeral.checked, expiration: expiry.value };
    const t = tags.value.split(/[\s,]+/).filter(Boolean);
    if (t.length) body.tags = t;
    try {
      const { preauthkey } = await api('POST', '/preauthkeys', body);
      out.replaceChildren(secretBox(`Pre-auth key ${preauthkey.id} for ${preauthkey.user}`, preauthkey.key));
      out.querySelector('button.copy').focus();
      refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function expire(k) {
    if (!await confirmDialog('Expire pre-auth key', `Expire key ${k.id} (${k.prefix}) of ${k.user}? Nodes it registered stay.`, 'Expire', true)) return;
    try {
      await api('POST', `/preauthkeys/${k.id}/expire`, {});
      toast(`Key ${k.id} expired`);
      refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function refresh() {
    try {
      const [{ preauthkeys }, { users }] = await Promise.all([api('GET', '/preauthkeys'), api('GET', '/users')]);
      const cur = user.value;
      user.replaceChildren(...users.map((u) => el('option', { value: u.name }, u.name)));
      if (cur) user.value = cur;
      tbody.replaceChildren(...preauthkeys.slice().reverse().map((k) => el('tr', {},
        el('td', { 'data-label': 'ID' }, String(k.id)),
        el('td', { 'data-label': 'Prefix', class: 'mono' }, k.prefix),
        el('td', { 'data-label': 'User' }, k.user),
        el('td', { 'data-label': 'Kind' }, [k.reusable ? 'reusable' : 'single use', k.ephemeral ? 'ephemeral' : ''].filter(Boolean).join(', ')),
        el('td', { 'data-label': 'Tags' }, (k.tags || []).map((t) => el('span', { class: 'tag' }, t))),
        el('td', { 'data-label': 'Created' }, when(k.created_at)),
        el('td', { 'data-label': 'Expires' }, when(k.expires_at)),
        el('td', { 'data-label': 'Uses' }, String(k.used_count)),
        el('td', { 'data-label': 'Status' }, status(k)),
        el('td', { class: 'actions' }, k.expired ? null : el('button', { type: 'button', class: 'small danger',
          'aria-label': `Expire pre-auth key ${k.id}`, onclick: () => expire(k) }, 'Expire')))));
      if (!preauthkeys.length) tbody.append(el('tr', {}, el('td', { colspan: 10, class: 'empty' }, 'No pre-auth keys yet.')));
      if (!users.length) out.replaceChildren(el('p', { class: 'hint' }, 'Create a user first (Users page).'));
    } catch (e) { toast(errorText(e), 'error'); }
  }
  refresh();
  return {};	// keys do not change with the map: no live refresh
}

export function apikeyPage(root) {
  const tbody = el('tbody');
  const out = el('div', { class: 'created', 'aria-live': 'polite' });
  const expiry = el('select', { id: 'ak-expiry' }, EXPIRIES.map(([v, l]) => el('option', { value: v, selected: v === '90d' }, l)));
  const me = (document.getElementById('who').textContent.match(/apikey:([0-9a-f]+)/) || [])[1];
  root.append(
    el('div', { class: 'page-head' }, el('h1', {}, 'API keys')),
    el('form', { class: 'inline-form', onsubmit: create },
      el('label', { for: 'ak-expiry' }, 'New key expires after'), expiry, el('button', { type: 'submit' }, 'Create API key')),
    out,
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, ['Prefix', 'Created', 'Expires', 'Last used', 'Status', ''].map((h) => el('th', { scope: 'col' }, h)))),
      tbody));

  async function create(ev) {
    ev.preventDefault();
    try {
      const { apikey } = await api('POST', '/apikeys', { expiration: expiry.value });
      out.replaceChildren(secretBox(`API key ${apikey.prefix}`, apikey.key));
      out.querySelector('button.copy').focus();
      refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function expire(k) {
    const mine = k.prefix === me;
    if (!await confirmDialog('Expire API key', `Expire API key ${k.prefix}?` +
      (mine ? ' This is the key you signed in with: your session ends too.' : ''), 'Expire', true)) return;
    try {
      await api('POST', `/apikeys/${k.prefix}/expire`, {});
      toast(`API key ${k.prefix} expired`);
      refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function refresh() {
    try {
      const { apikeys } = await api('GET', '/apikeys');
      tbody.replaceChildren(...apikeys.slice().reverse().map((k) => el('tr', {},
        el('td', { 'data-label': 'Prefix', class: 'mono' }, k.prefix, k.prefix === me ? el('span', { class: 'badge' }, 'this session') : null),
        el('td', { 'data-label': 'Created' }, when(k.created_at)),
        el('td', { 'data-label': 'Expires' }, when(k.expires_at)),
        el('td', { 'data-label': 'Last used' }, when(k.last_used_at)),
        el('td', { 'data-label': 'Status' }, status(k)),
        el('td', { class: 'actions' }, k.expired ? null : el('button', { type: 'button', class: 'small danger',
          'aria-label': `Expire API key ${k.prefix}`, onclick: () => expire(k) }, 'Expire')))));
    } catch (e) { toast(errorText(e), 'error'); }
  }
  refresh();
  return {};
}
