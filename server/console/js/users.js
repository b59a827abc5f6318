// SPDX-License-Identifier: MIT
// Users: list with node counts, create, delete (only without nodes).
import { api } from './api.js';
import { el, toast, errorText, confirmDialog } from './ui.js';

export function page(root) {
  const tbody = el('tbody');
  const name = el('input', { id: 'new-user', placeholder: 'alice@example.com', required: true, spellcheck: 'false' });
  root.append(
    el('div', { class: 'page-head' }, el('h1', {}, 'Users')),
    el('form', { class: 'inline-form', onsubmit: create },
      el('label', { for: 'new-user' }, 'New user'), name, el('button', { type: 'submit' }, 'Create user')),
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, ['Name', 'Nodes', 'Created', ''].map((h) => el('th', { scope: 'col' }, h)))),
      tbody));

  async function create(ev) {
    ev.preventDefault();
    try {
      await api('POST', '/users', { name: name.value.trim() });
      toast(`User ${name.value.trim()} created`);
      name.value = '';
      refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function remove(u) {
    if (!await confirmDialog('Delete user', `Delete user ${u.name}? Their pre-auth keys go too.`, 'Delete', true)) return;
    try {
      await api('DELETE', '/users/' + encodeURIComponent(u.name));
      toast(`User ${u.name} deleted`);
      refresh();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  let shown = '';
  async function refresh() {
    try {
      const [{ users }, { nodes }] = await Promise.all([api('GET', '/users'), api('GET', '/nodes')]);
      const count = {};
      for (const n of nodes) count[n.user] = (count[n.user] || 0) + 1;
      // Live events come for every node change: re-render only when what
      // this page shows changed, and keep keyboard focus when it does.
      const sig = JSON.stringify([users, count]);
      if (sig === shown) return;
      shown = sig;
      const f = document.activeElement;
      const focusLabel = f && tbody.contains(f) ? f.getAttribute('aria-label') : null;
      tbody.replaceChildren(...users.map((u) => el('tr', {},
        el('td', { 'data-label': 'Name' }, u.name),
        el('td', { 'data-label': 'Nodes' }, el('a', { href: '#/nodes?user=' + encodeURIComponent(u.name) }, String(count[u.name] || 0))),
        el('td', { 'data-label': 'Created' }, u.created_at.replace('T', ' ').replace('Z', ' UTC')),
        el('td', { class: 'actions' }, el('button', { type: 'button', class: 'danger small',
          'aria-label': `Delete user ${u.name}`, onclick: () => remove(u) }, 'Delete')))));
      if (!users.length) tbody.append(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'No users yet.')));
      if (focusLabel) [...tbody.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focusLabel)?.focus();
    } catch (e) { toast(errorText(e), 'error'); }
  }
  refresh();
  return { refresh };
}
