// REST client and the signed-in user (a JWT kept in localStorage, sent as a bearer token).

const TOKEN_KEY = 'onair.token';

function decode(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(escape(atob(part)));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export const auth = {
  get token() {
    const t = localStorage.getItem(TOKEN_KEY);
    if (!t) return null;
    const claims = decode(t);
    // An expired token would make every write fail with 401: drop it instead.
    if (!claims || (claims.exp && claims.exp * 1000 < Date.now())) {
      localStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return t;
  },
  get user() {
    const t = this.token;
    const c = t && decode(t);
    return c ? { id: c.sub, name: c.name || c.sub, roles: c.roles || [] } : null;
  },
  set(token) { localStorage.setItem(TOKEN_KEY, token); },
  clear() { localStorage.removeItem(TOKEN_KEY); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

// fetch + JSON + problem documents. `body` is sent as JSON when given.
// `fresh`: skip the browser cache (the API lets caches keep public reads for 5 s, but a page
// must show the effect of the user's own last action).
export async function api(path, { method = 'GET', body, signal, fresh = false } = {}) {
  const headers = { Accept: 'application/json' };
  const token = auth.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: fresh ? 'no-cache' : 'default' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { title: 'The server cannot be reached' });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return { status: res.status, data };
}

export const channelPath = (id) => `/api/channels/${encodeURIComponent(id)}`;
