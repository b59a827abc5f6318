// SPDX-License-Identifier: MIT
// Nodes: a table with search and filters, kept current by the event stream.
// Routes show advertised against approved, with approve and revoke; each
// row has rename, tags, expire and delete (with confirmation).
import { api } from './api.js';
import { el, toast, errorText, confirmDialog, promptDialog, ago, when } from './ui.js';

const EXIT = new Set(['0.0.0.0/0', '::/0']);

export function waiting(n) {
  const ok = new Set(n.approved_routes || []);
  return (n.advertised_routes || []).filter((r) => !ok.has(r));
}

export function page(root) {
  const params = new URLSearchParams((location.hash.split('?')[1]) || '');
  const state = { nodes: [], q: '', user: params.get('user') || '', tag: '', online: '', expired: '', waiting: false };
  const search = el('input', { id: 'node-search', type: 'search', placeholder: 'Name, address, key…', spellcheck: 'false',
    oninput: () => { state.q = search.value.trim().toLowerCase(); render(); } });
  const userSel = el('select', { id: 'f-user', onchange: () => { state.user = userSel.value; render(); } });
  const tagSel = el('select', { id: 'f-tag', onchange: () => { state.tag = tagSel.value; render(); } });
  const onlineSel = el('select', { id: 'f-online', onchange: () => { state.online = onlineSel.value; render(); } },
    el('option', { value: '' }, 'any'), el('option', { value: 'yes' }, 'online'), el('option', { value: 'no' }, 'offline'));
  const expiredSel = el('select', { id: 'f-expired', onchange: () => { state.expired = expiredSel.value; render(); } },
    el('option', { value: '' }, 'any'), el('option', { value: 'no' }, 'not expired'), el('option', { value: 'yes' }, 'expired'));
  const waitingBox = el('input', { id: 'f-waiting', type: 'checkbox', onchange: () => { state.waiting = waitingBox.checked; render(); } });
  const summary = el('p', { class: 'summary', 'aria-live': 'polite' });
  const tbody = el('tbody');

  root.append(
    el('div', { class: 'page-head' }, el('h1', {}, 'Nodes'), summary),
    el('div', { class: 'filters', role: 'search' },
      el('label', { for: 'node-search' }, 'Search'), search,
      el('label', { for: 'f-user' }, 'User'), userSel,
      el('label', { for: 'f-tag' }, 'Tag'), tagSel,
      el('label', { for: 'f-online' }, 'Online'), onlineSel,
      el('label', { for: 'f-expired' }, 'Expiry'), expiredSel,
      el('span', { class: 'check' }, waitingBox, el('label', { for: 'f-waiting' }, 'Routes waiting'))),
    el('table', { class: 'grid nodes' },
      el('thead', {}, el('tr', {}, ['', 'Name', 'User', 'Addresses', 'Tags', 'OS / version', 'Last seen', 'Routes', 'Actions']
        .map((h, i) => el('th', { scope: 'col', class: i === 0 ? 'dotcol' : undefined }, h || el('span', { class: 'sr' }, 'Online'))))),
      tbody));

  function options(sel, values, anyLabel) {
    const cur = sel.value || (sel === userSel ? state.user : '');
    sel.replaceChildren(el('option', { value: '' }, anyLabel), ...values.map((v) => el('option', { value: v }, v)));
    if (values.includes(cur)) sel.value = cur;
  }

  function matches(n) {
    if (state.user && n.user !== state.user) return false;
    if (state.tag && !(n.tags || []).includes(state.tag)) return false;
    if (state.online && (state.online === 'yes') !== n.online) return false;
    if (state.expired && (state.expired === 'yes') !== n.expired) return false;
    if (state.waiting && !waiting(n).length) return false;
    if (state.q) {
      const hay = [n.name, n.hostname, n.user, n.ipv4, n.ipv6, n.node_key, n.machine_key, ...(n.tags || []),
        ...(n.advertised_routes || []), n.os || '', n.version || ''].join(' ').toLowerCase();
      if (!hay.includes(state.q)) return false;
    }
    return true;
  }

  function routesCell(n) {
    const approved = new Set(n.approved_routes || []);
    const adv = n.advertised_routes || [];
    if (!adv.length && !approved.size) return el('span', { class: 'muted' }, '—');
    const items = [];
    for (const r of adv) {
      const ok = approved.has(r);
      const label = EXIT.has(r) ? `${r} (exit)` : r;
      items.push(el('li', { class: ok ? 'route approved' : 'route waiting' },
        el('span', { class: 'route-name' }, label),
        el('span', { class: 'route-state' }, ok ? 'approved' : 'waiting'),
        ok ? el('button', { type: 'button', class: 'small secondary', 'aria-label': `Revoke ${r} on ${n.name}`,
          onclick: () => setRoutes(n, [...approved].filter((x) => x !== r), `Revoked ${r} on ${n.name}`) }, 'Revoke')
          : el('button', { type: 'button', class: 'small primary', 'aria-label': `Approve ${r} on ${n.name}`,
            onclick: () => setRoutes(n, [...approved, r], `Approved ${r} on ${n.name}`) }, 'Approve')));
    }
    for (const r of approved) {
      if (!adv.includes(r)) {
        items.push(el('li', { class: 'route stale' }, el('span', { class: 'route-name' }, r),
          el('span', { class: 'route-state' }, 'approved, not advertised'),
          el('button', { type: 'button', class: 'small secondary', 'aria-label': `Revoke ${r} on ${n.name}`,
            onclick: () => setRoutes(n, [...approved].filter((x) => x !== r), `Revoked ${r} on ${n.name}`) }, 'Revoke')));
      }
    }
    return el('ul', { class: 'routes' }, items);
  }

  function row(n) {
    const tags = (n.tags || []).map((t) => el('span', { class: 'tag' }, t));
    return el('tr', { dataset: { id: String(n.id) }, class: n.expired ? 'expired' : undefined },
      el('td', { class: 'dotcol' }, el('span', { class: 'dot ' + (n.online ? 'on' : 'off'), role: 'img',
        'aria-label': n.online ? 'online' : 'offline', title: n.online ? 'online' : 'offline' })),
      el('td', { 'data-label': 'Name' }, el('strong', { class: 'node-name' }, n.name),
        n.hostname && n.hostname !== n.name ? el('div', { class: 'muted' }, n.hostname) : null,
        n.ephemeral ? el('span', { class: 'badge' }, 'ephemeral') : null,
        n.expired ? el('span', { class: 'badge warn' }, 'expired') : null),
      el('td', { 'data-label': 'User' }, n.user),
      el('td', { 'data-label': 'Addresses', class: 'mono' }, n.ipv4, el('br'), el('span', { class: 'muted' }, n.ipv6)),
      el('td', { 'data-label': 'Tags' }, tags.length ? tags : el('span', { class: 'muted' }, '—')),
      el('td', { 'data-label': 'OS / version' }, n.os || n.version ? `${n.os || '?'} ${n.version || ''}` :
        el('span', { class: 'muted', title: 'This node has not reported its OS and version' }, 'not reported')),
      el('td', { 'data-label': 'Last seen', title: n.online ? 'connected now' : when(n.last_seen) },
        n.online ? 'now' : ago(n.last_seen)),
      el('td', { 'data-label': 'Routes' }, routesCell(n)),
      el('td', { class: 'actions', 'data-label': 'Actions' },
        el('button', { type: 'button', class: 'small secondary', 'aria-label': `Rename ${n.name}`, onclick: () => rename(n) }, 'Rename'),
        el('button', { type: 'button', class: 'small secondary', 'aria-label': `Tags of ${n.name}`, onclick: () => retag(n) }, 'Tags'),
        el('button', { type: 'button', class: 'small secondary', 'aria-label': `Expire ${n.name}`, disabled: n.expired, onclick: () => expire(n) }, 'Expire'),
        el('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${n.name}`, onclick: () => remove(n) }, 'Delete')));
  }

  function render() {
    // Keep keyboard focus across a live re-render.
    const f = document.activeElement;
    const focusKey = f && tbody.contains(f) ? [f.closest('tr')?.dataset.id, f.getAttribute('aria-label')] : null;
    const shown = state.nodes.filter(matches);
    tbody.replaceChildren(...shown.map(row));
    if (!shown.length) {
      tbody.append(el('tr', {}, el('td', { colspan: 9, class: 'empty' },
        state.nodes.length ? 'No node matches these filters.' : 'No nodes yet: register one with a pre-auth key.')));
    }
    const online = state.nodes.filter((n) => n.online).length;
    const wait = state.nodes.filter((n) => waiting(n).length).length;
    summary.textContent = `${state.nodes.length} nodes, ${online} online` + (wait ? `, ${wait} with routes waiting` : '') +
      (shown.length !== state.nodes.length ? ` — ${shown.length} shown` : '');
    if (focusKey) {
      const tr = tbody.querySelector(`tr[data-id="${CSS.escape(focusKey[0] || '')}"]`);
      const b = tr && [...tr.querySelectorAll('button')].find((x) => x.getAttribute('aria-label') === focusKey[1]);
      if (b) b.focus();
    }
  }

  async function refresh() {
    try {
      const { nodes } = await api('GET', '/nodes');
      state.nodes = nodes;
      options(userSel, [...new Set(nodes.map((n) => n.user))].sort(), 'all users');
      options(tagSel, [...new Set(nodes.flatMap((n) => n.tags || []))].sort(), 'all tags');
      render();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function act(p, ok) {
    try {
      await p;
      toast(ok);
      await refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  function setRoutes(n, approved, ok) {
    return act(api('POST', `/nodes/${n.id}/routes`, { approved }), ok);
  }

  async function rename(n) {
    const v = await promptDialog(`Rename ${n.name}`, [{ name: 'name', label: 'New name', value: n.name,
      hint: 'A DNS label: lowercase letters, digits and inner hyphens.' }], 'Rename');
    if (v && v.name && v.name !== n.name) act(api('POST', `/nodes/${n.id}/rename`, { name: v.name }), `Renamed to ${v.name}`);
  }

  async function retag(n) {
    const v = await promptDialog(`Tags of ${n.name}`, [{ name: 'tags', label: 'Tags', value: (n.tags || []).join(', '),
      placeholder: 'tag:server, tag:web', hint: 'Comma-separated; empty removes every tag. A tagged node is owned by its tags, not its user.' }], 'Save tags');
    if (v === undefined) return;
    const tags = v.tags ? v.tags.split(/[\s,]+/).filter(Boolean) : [];
    act(api('POST', `/nodes/${n.id}/tags`, { tags }), `Tags of ${n.name} saved`);
  }

  async function expire(n) {
    if (await confirmDialog('Expire node', `Expire ${n.name} now? It is cut off until it logs in again.`, 'Expire', true)) {
      act(api('POST', `/nodes/${n.id}/expire`, {}), `${n.name} expired`);
    }
  }

  async function remove(n) {
    if (await confirmDialog('Delete node', `Delete ${n.name} (${n.ipv4})? Its addresses are freed and its peers drop it.`, 'Delete', true)) {
      act(api('DELETE', `/nodes/${n.id}`), `${n.name} deleted`);
    }
  }

  refresh();
  return { refresh };
}
