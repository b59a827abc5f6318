// SPDX-License-Identifier: MIT
// The REST API as the console uses it: the session cookie is sent by the
// browser; every change carries the session's CSRF token.

let csrf = null;
let onUnauthorized = () => {};

export function setCsrf(token) { csrf = token; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && typeof problem === 'object' ? (problem.detail || problem.title) : problem;
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// api(method, path, body?, opts?) -> parsed JSON (or text). A string body is
// sent as it is (HuJSON); an object as JSON. opts.headers adds headers,
// opts.full returns {data, headers, status}.
export async function api(method, path, body, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  let payload;
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  if (typeof body === 'string') {
    payload = body;
    headers['Content-Type'] = headers['Content-Type'] || 'application/hujson';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let r;
  try {
    r = await fetch('/api/v1' + path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { detail: 'cannot reach the server: ' + e.message });
  }
  const type = r.headers.get('Content-Type') || '';
  // JSON and problem+json are parsed; the policy (application/hujson) is text.
  const json = /^application\/(problem\+)?json/.test(type);
  const data = json ? await r.json().catch(() => null) : await r.text();
  if (!r.ok) {
    if (r.status === 401 && path !== '/session') onUnauthorized();
    throw new ApiError(r.status, data);
  }
  return opts.full ? { data, headers: r.headers, status: r.status } : data;
}
