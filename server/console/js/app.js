// SPDX-License-Identifier: MIT
// The console's shell: sign-in, navigation (#/nodes, #/users, ...), live
// updates from /api/v1/events, sign-out.
import { api, setCsrf, setUnauthorizedHandler } from './api.js';
import { toast, errorText } from './ui.js';
import * as nodes from './nodes.js';
import * as users from './users.js';
import * as keys from './keys.js';
import * as policy from './policy.js';

const routes = {
  nodes: nodes.page,
  users: users.page,
  preauthkeys: keys.preauthPage,
  apikeys: keys.apikeyPage,
  policy: policy.page,
};

const $ = (id) => document.getElementById(id);
let current = null;      // the mounted page: {refresh(ev), unmount()}
let events = null;
let refreshTimer = null;

function showSignin(message, problem) {
  setCsrf(null);
  const methods = problem && Array.isArray(problem.signin_methods) ? problem.signin_methods : null;
  if (methods) $('signin-oidc').hidden = !methods.includes('oidc');
  if (events) { events.close(); events = null; }
  if (current && current.unmount) current.unmount();
  current = null;
  $('top').hidden = true;
  $('page').replaceChildren();
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-key').focus();
  document.title = 'Sign in · wiremesh admin';
}

function signedIn(session) {
  setCsrf(session.csrf_token);
  $('signin').hidden = true;
  $('top').hidden = false;
  $('who').textContent = session.subject;
  $('who').title = 'Session ends ' + session.expires_at + ' (or after ' +
    Math.round(session.idle_timeout_s / 60) + ' min without use)';
  connectEvents();
  route();
}

function connectEvents() {
  if (events) events.close();
  events = new EventSource('/api/v1/events');
  const live = $('live');
  const onChange = (ev) => {
    let data = {};
    try { data = JSON.parse(ev.data); } catch { /* keep {} */ }
    // Coalesce bursts: one refresh per 150 ms at most.
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { if (current && current.refresh) current.refresh(data); }, 150);
  };
  events.addEventListener('hello', (ev) => {
    live.textContent = 'live';
    live.className = 'live on';
    onChange(ev);
  });
  events.addEventListener('change', onChange);
  events.onerror = () => {
    live.textContent = 'reconnecting';
    live.className = 'live';
    // A closed stream (401 after the session ended) is not retried by the
    // browser: find out why.
    if (events && events.readyState === EventSource.CLOSED) checkSession();
  };
}

async function checkSession() {
  try {
    signedIn(await api('GET', '/session'));
  } catch (e) {
    showSignin(e.status === 401 ? '' : errorText(e), e.problem);
  }
}

function route() {
  if ($('top').hidden) return;
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || 'nodes';
  const make = routes[name] || routes.nodes;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (current && current.unmount) current.unmount();
  const root = $('page');
  root.replaceChildren();
  current = make(root);
  document.title = (document.querySelector('nav a[aria-current] ') || { textContent: 'Nodes' }).textContent +
    ' · wiremesh admin';
}

async function signIn(body) {
  try {
    const s = await api('POST', '/session', body);
    $('signin-key').value = '';
    signedIn(s);
  } catch (e) {
    showSignin(errorText(e));
  }
}

async function signOut() {
  try {
    await api('DELETE', '/session');
  } catch (e) {
    if (e.status !== 401) { toast('Sign-out failed: ' + errorText(e), 'error'); return; }
  }
  showSignin('Signed out.');
}

function start() {
  setUnauthorizedHandler(() => showSignin('Your session has ended; sign in again.'));
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signIn({ api_key: $('signin-key').value.trim() });
  });
  $('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  // A one-time sign-in link: /admin/#signin=TOKEN (the fragment never
  // reaches the server's logs); the token leaves the address bar at once.
  const m = location.hash.match(/^#signin=([0-9a-f]{64})$/);
  if (m) {
    history.replaceState(null, '', location.pathname + '#/nodes');
    signIn({ signin_token: m[1] });
    return;
  }
  checkSession();
}

start();
