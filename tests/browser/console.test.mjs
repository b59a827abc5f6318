// SPDX-License-Identifier: MIT
// The admin console in headless Chromium against a real server (TLS with a
// test CA), driven by tests/integration/admin_console.sh, which starts the
// server and passes: WM_URL, WM_API_KEY, WM_NODE (the wm-node client),
// WM_TMP (scratch directory), WM_SPKI (the server key's SPKI hash: Chromium
// trusts exactly that key), WM_SHOTS (where screenshots go), WM_CA.
//
// Steps: sign in; a node comes online and its dot turns green without a
// reload; approve its advertised route and see it in that node's map
// stream; create a pre-auth key and register a node with it; type a bad
// policy and see the error at its line; save a good one after reviewing the
// diff; lose an If-Match race and see the conflict view; history and
// explain; a phone-sized view; sign out. Every child process is stopped by
// its PID on the way out.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const URL = process.env.WM_URL;
const KEY = process.env.WM_API_KEY;
const NODE = process.env.WM_NODE;
const TMP = process.env.WM_TMP;
const SHOTS = process.env.WM_SHOTS;
const children = [];
let browser = null;
let failPage = null;
const problems = [];
const t0 = Date.now();

function ok(msg) { console.log(`ok - ${msg} (${((Date.now() - t0) / 1000).toFixed(1)} s)`); }

function wmNode(name, args) {
  return execFileSync(NODE, ['--server', URL, '--state', path.join(TMP, name + '.json'), ...args],
    { encoding: 'utf8', env: { ...process.env, SSL_CERT_FILE: process.env.WM_CA } });
}

// A node's long-lived map stream: keeps it online; its messages go to a file.
function mapStream(name) {
  const out = fs.openSync(path.join(TMP, name + '.map'), 'w');
  const c = spawn(NODE, ['--server', URL, '--state', path.join(TMP, name + '.json'), 'map',
    '--hostinfo', '{"os":"linux","os_version":"6.1.0-test","client_version":"0.1.0"}'],
    { stdio: ['ignore', out, 'inherit'], env: { ...process.env, SSL_CERT_FILE: process.env.WM_CA } });
  children.push(c);
  return c;
}

function stopChild(c) {
  if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

async function waitFor(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function bearer(method, p, body, headers = {}) {
  const r = await fetch(URL + p, { method, body, headers: { Authorization: 'Bearer ' + KEY, ...headers } });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, name + '.png') });
}

async function textOf(page, sel) {
  return page.$eval(sel, (e) => e.textContent).catch(() => '');
}

async function main() {
  browser = await puppeteer.launch({
    executablePath: process.env.WM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${path.join(TMP, 'chromium')}`,
      `--ignore-certificate-errors-spki-list=${process.env.WM_SPKI}`],
  });
  const page = await browser.newPage();
  failPage = page;
  await page.setViewport({ width: 1280, height: 800 });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // 401 before sign-in, 404 for "no policy yet" and the 412 of the race are
    // answers, not faults.
    if (m.type() === 'error' && !/status of (401|404|412)/.test(m.text())) problems.push('console: ' + m.text());
  });

  // ---- sign in ----
  await page.goto(URL + '/admin/');
  await page.waitForSelector('#signin-key', { visible: true });
  if (!await page.evaluate(() => window.isSecureContext)) throw new Error('the console is not a secure context');
  await shot(page, 'signin');
  await page.type('#signin-key', 'wm-api-000000000000-wrong');
  await page.keyboard.press('Enter');
  await waitFor('the sign-in error', async () => /not valid/.test(await textOf(page, '#signin-error')));
  await page.$eval('#signin-key', (e) => { e.value = ''; });
  await page.type('#signin-key', KEY);
  await page.keyboard.press('Enter');
  await page.waitForSelector('table.nodes tbody');
  await waitFor('the live indicator', async () => (await textOf(page, '#live')) === 'live');
  const cookies = await page.cookies();
  const c = cookies.find((x) => x.name === '__Host-wm_session');
  if (!c || !c.httpOnly || !c.secure || c.sameSite !== 'Strict') throw new Error('session cookie: ' + JSON.stringify(cookies));
  if (await page.evaluate(() => document.cookie.includes('wm_session'))) throw new Error('the page can read the session cookie');
  ok('signed in with an API key (wrong key refused); HttpOnly Secure SameSite=Strict cookie');

  // ---- a node comes online live ----
  const ak = process.env.WM_AUTHKEY;
  wmNode('web1', ['register', '--authkey', ak, '--hostname', 'web1', '--routes', '10.1.0.0/24']);
  const row = 'table.nodes tr:has(strong.node-name)';
  await waitFor('web1 listed (offline)', () => page.$(`${row} .dot.off`));
  const web1 = mapStream('web1');
  await waitFor('web1 online without a reload', () => page.$(`${row} .dot.on`));
  if (!/1 online/.test(await textOf(page, '.summary'))) throw new Error('summary: ' + await textOf(page, '.summary'));
  await waitFor('its OS and version', async () => (await textOf(page, `${row} td[data-label="OS / version"]`)) === 'linux 6.1.0-test 0.1.0');
  ok('a node registered and came online; its dot turned green live, with its OS and version');

  // ---- approve its route and see it in the node's map ----
  await page.$eval('#f-waiting', (e) => e.click());
  await page.waitForSelector('li.route.waiting');
  if ((await page.$$('table.nodes tr[data-id]')).length !== 1) throw new Error('the routes-waiting filter');
  await page.$eval('#f-waiting', (e) => e.click());
  await shot(page, 'nodes');
  await page.click('button[aria-label="Approve 10.1.0.0/24 on web1"]');
  await page.waitForSelector('li.route.approved');
  await waitFor('10.1.0.0/24 in web1\'s map', () =>
    fs.readFileSync(path.join(TMP, 'web1.map'), 'utf8').includes('"primary_routes":["10.1.0.0/24"]'));
  ok('approved 10.1.0.0/24 in the table; web1\'s own map stream carries it');

  // ---- pre-auth key, then a node registered with it ----
  await page.click('nav a[data-route="preauthkeys"]');
  await page.waitForSelector('#pak-user option[value="alice"]');
  await page.select('#pak-user', 'alice');
  await page.click('#pak-reusable');
  await page.type('#pak-tags', 'tag:db');
  await page.click('.create-form button[type="submit"]');
  const secret = await waitFor('the new key', () => page.$eval('input.secret', (e) => e.value).catch(() => null));
  if (!/^wm-auth-/.test(secret)) throw new Error('key shown: ' + secret);
  await page.waitForFunction(() => document.activeElement && document.activeElement.classList.contains('copy'));
  await shot(page, 'preauthkeys');
  wmNode('db1', ['register', '--authkey', secret, '--hostname', 'db1']);
  await page.click('nav a[data-route="nodes"]');
  await waitFor('db1 in the table', async () => (await page.$$eval('strong.node-name', (a) => a.map((e) => e.textContent))).includes('db1'));
  ok('created a reusable tagged pre-auth key (shown once, copy focused); a node registered with it');

  await page.click('nav a[data-route="users"]');
  await page.waitForSelector('tbody tr td');
  await shot(page, 'users');
  await page.click('nav a[data-route="apikeys"]');
  await page.waitForSelector('tbody tr td .badge');
  await shot(page, 'apikeys');

  // ---- policy: a bad one shows its error at its line ----
  await page.click('nav a[data-route="policy"]');
  await page.waitForSelector('#policy-text');
  await waitFor('the first check', async () => /Valid|test/.test(await textOf(page, '#policy-tests')));
  const bad = '{\n  "acls": [\n    {"action": "accept", "src": ["group:nobody"], "dst": ["*:*"]},\n  ],\n}\n';
  await page.$eval('#policy-text', (e) => { e.focus(); e.select(); });
  await page.keyboard.press('Backspace');
  await page.type('#policy-text', bad.replace(/\n {2,4}/g, '\n'), { delay: 0 });
  await waitFor('a diagnostic for line 3', async () => /^Line 3, column/.test(await textOf(page, '#policy-problems li button')));
  const gutterBad = await page.$$eval('.gutter div.bad', (a) => a.map((e) => e.textContent));
  if (gutterBad.join() !== '3') throw new Error('gutter marks ' + gutterBad.join());
  const under = await page.$$eval('.hl .err', (a) => a.map((e) => e.textContent));
  if (!under.some((u) => u.includes('group:nobody'))) throw new Error('underlined: ' + JSON.stringify(under));
  await shot(page, 'policy-error');
  ok('a bad policy: the error is listed at line 3, marked in the gutter and underlined under "group:nobody"');

  // ---- a good one, reviewed and saved ----
  const good = '{\n// web1 serves db1\n"acls": [\n{"action": "accept", "src": ["alice@"], "dst": ["*:*"]},\n],\n' +
    '"tests": [\n{"src": "alice@", "accept": ["100.64.0.1:22"]},\n],\n}\n';
  await page.$eval('#policy-text', (e) => { e.focus(); e.select(); });
  await page.keyboard.press('Backspace');
  await page.type('#policy-text', good, { delay: 0 });
  await waitFor('valid, tests passed', async () => /Valid\. 1 tests passed/.test(await textOf(page, '#policy-tests')));
  await page.keyboard.down('Control');
  await page.keyboard.press('s');
  await page.keyboard.up('Control');
  await page.waitForSelector('#policy-review:not([hidden]) table.diff tr.add');
  await shot(page, 'policy-review');
  await page.click('#policy-save');
  await waitFor('version 1 active', async () => /Active: version 1/.test(await textOf(page, '#policy-status')));
  const active = await (await fetch(URL + '/api/v1/policy', { headers: { Authorization: 'Bearer ' + KEY } })).text();
  if (active !== good) throw new Error('the saved policy differs from what was typed');
  ok('a good policy: checked (1 test passed), diff reviewed, saved with If-Match (version 1)');

  // ---- lose an If-Match race ----
  await page.$eval('#policy-text', (e) => { e.focus(); e.setSelectionRange(e.value.length - 2, e.value.length - 2); });
  await page.type('#policy-text', '// mine');
  await page.keyboard.press('Enter');
  const theirs = good.replace('// web1 serves db1', '// theirs: saved from the CLI');
  await bearer('PUT', '/api/v1/policy', theirs, { 'Content-Type': 'application/hujson' });
  await waitFor('the changed-elsewhere banner', () => page.$('.banner:not([hidden])'));
  await page.click('#policy-review-btn');
  await page.click('#policy-save');
  await page.waitForSelector('#policy-conflict:not([hidden])');
  const ctext = await textOf(page, '#policy-conflict');
  if (!/Someone else saved the policy first/.test(ctext) || !/Version 2 was saved/.test(ctext)) throw new Error('conflict view: ' + ctext);
  const dels = await page.$$eval('#policy-conflict tr.del', (a) => a.map((e) => e.textContent));
  if (!dels.some((d) => d.includes('theirs: saved from the CLI'))) throw new Error('conflict diff: ' + dels.join('|'));
  await shot(page, 'policy-conflict');
  await page.click('#conflict-mine');
  await page.click('#policy-save');
  await waitFor('version 3 active', async () => /Active: version 3/.test(await textOf(page, '#policy-status')));
  ok('lost an If-Match race: 412 shown as a conflict with their change in the diff; saved mine on top (version 3)');

  // ---- history and explain ----
  await page.waitForSelector('button[aria-label="View version 2"]');
  await page.click('button[aria-label="View version 2"]');
  await page.waitForSelector('dialog[open] pre.hl');
  if (!(await textOf(page, 'dialog[open] pre.hl')).includes('theirs: saved from the CLI')) throw new Error('history view');
  await page.keyboard.press('Escape');
  await page.type('#ex-src', 'alice@');
  await page.type('#ex-dst', '100.64.0.1:22');
  await page.click('.explain button[type="submit"]');
  await waitFor('an accept verdict', async () => (await textOf(page, '#explain-out .verdict')) === 'accept');
  if (!/line/.test(await textOf(page, '#explain-out pre'))) throw new Error('explanation: ' + await textOf(page, '#explain-out'));
  await page.$eval('#policy-text', (e) => e.scrollTo(0, 0));
  await shot(page, 'policy');
  ok('history shows version 2; explain says accept and names the rule');

  // ---- offline live, phone size ----
  stopChild(web1);
  await page.click('nav a[data-route="nodes"]');
  await waitFor('web1 offline without a reload', async () => (await page.$$('.dot.on')).length === 0, 15000);
  await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
  await page.waitForSelector('table.nodes');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) throw new Error(`the phone view scrolls sideways by ${overflow}px`);
  await shot(page, 'nodes-phone');
  await page.setViewport({ width: 1280, height: 800 });
  ok('the node went offline live; the phone-sized view fits its width');

  // ---- keyboard: the nav and a dialog work without a mouse ----
  await page.focus('nav a[data-route="users"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('button[aria-label="Delete user alice"]');
  await page.focus('button[aria-label="Delete user alice"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('dialog[open]');
  await page.keyboard.press('Escape');
  await waitFor('the dialog closed', async () => !(await page.$('dialog[open]')));
  ok('keyboard: navigation and a confirmation dialog (Esc cancels)');

  // ---- sign out ----
  await page.click('#signout');
  await page.waitForSelector('#signin-key', { visible: true });
  const after = await page.evaluate(async () => (await fetch('/api/v1/nodes')).status);
  if (after !== 401) throw new Error('after sign-out /api/v1/nodes answers ' + after);
  ok('signed out: the sign-in form is back and the API answers 401');

  if (problems.length) throw new Error('the page logged problems:\n' + problems.join('\n'));
}

let code = 0;
try {
  await main();
} catch (e) {
  console.error('FAIL: ' + (e && e.stack ? e.stack : e));
  if (problems.length) console.error(problems.join('\n'));
  if (failPage) {
    await failPage.screenshot({ path: path.join(TMP, 'failure.png') }).catch(() => {});
    console.error('screenshot of the failure: ' + path.join(TMP, 'failure.png'));
  }
  code = 1;
} finally {
  for (const c of children) stopChild(c);
  if (browser) await browser.close().catch(() => {});
}
process.exit(code);
