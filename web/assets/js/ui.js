// Small DOM helpers and the top bar (sign in, register, sign out) shared by every page.
import { api, auth, ApiError } from './api.js';

// h('div.cls#id', {attrs}, ...children): builds an element; text children are never HTML.
export function h(sel, attrs, ...children) {
  const parts = sel.match(/^[^.#]*|[.#][^.#]+/g);
  const el = document.createElement(parts[0] || 'div');
  const classes = parts.filter((p) => p[0] === '.').map((p) => p.slice(1));
  const id = parts.find((p) => p[0] === '#');
  if (classes.length) el.className = classes.join(' ');
  if (id) el.id = id.slice(1);
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function toast(message, ms = 4000) {
  console.warn(`[toast] ${message}`);
  const t = h('div.toast', { role: 'alert' }, message);
  document.body.append(t);
  setTimeout(() => t.remove(), ms);
}

export function fmtCount(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}K`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

// A colour from a string, for placeholders that tell channels apart.
export function hue(s) {
  let x = 0;
  for (const c of s) x = (x * 31 + c.codePointAt(0)) % 360;
  return x;
}

const listeners = new Set();
export function onAuthChange(f) { listeners.add(f); }
function changed() { for (const f of listeners) f(auth.user); renderTopbar(); }

let topbar;
export function mountTopbar(current) {
  topbar = h('header.topbar');
  topbar.dataset.current = current;
  document.body.prepend(topbar);
  renderTopbar();
}

function renderTopbar() {
  if (!topbar) return;
  const user = auth.user;
  const cur = topbar.dataset.current;
  const link = (href, text, key) => h('a', { href, 'aria-current': cur === key ? 'page' : null }, text);
  topbar.replaceChildren(...[
    h('a.brand', { href: '/' }, h('img', { src: '/assets/favicon.svg', alt: '' }), 'onair'),
    h('nav', { 'aria-label': 'Main' }, link('/', 'Browse', 'directory'), link('/studio', 'Studio', 'studio')),
    h('span.spacer'),
    user
      ? [h('span.who#who', 'Signed in as ', h('strong', user.name)),
         h('button#logout', { type: 'button', onclick: () => { auth.clear(); changed(); } }, 'Log out')]
      : [h('button#login', { type: 'button', onclick: () => authDialog('login') }, 'Log in'),
         h('button.primary#register', { type: 'button', onclick: () => authDialog('register') }, 'Sign up')],
  ].flat());
}

// Log-in / sign-up dialog; resolves when the user is signed in (or the dialog is closed).
export function authDialog(mode = 'login') {
  return new Promise((resolve) => {
    const err = h('p.error', { role: 'alert' });
    const reg = mode === 'register';
    const form = h('form', { method: 'dialog' },
      h('h2', reg ? 'Create an account' : 'Log in'),
      h('label', { for: 'auth-user' }, 'Username'),
      h('input#auth-user', { name: 'username', autocomplete: 'username', required: true, minlength: 3, maxlength: 25, pattern: reg ? '[a-z0-9_]{3,25}' : null }),
      reg ? [h('label', { for: 'auth-name' }, 'Display name (optional)'), h('input#auth-name', { name: 'displayName', maxlength: 50 })] : null,
      h('label', { for: 'auth-pass' }, 'Password'),
      h('input#auth-pass', { name: 'password', type: 'password', autocomplete: reg ? 'new-password' : 'current-password', required: true, minlength: reg ? 8 : 1 }),
      err,
      h('div.row', { style: 'justify-content:flex-end;margin-top:12px' },
        h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'),
        h('button.primary#auth-submit', { type: 'submit' }, reg ? 'Sign up' : 'Log in')),
    );
    const dlg = h('dialog', { 'aria-label': reg ? 'Sign up' : 'Log in' }, form);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const body = { username: f.get('username'), password: f.get('password') };
      if (reg && f.get('displayName')) body.displayName = f.get('displayName');
      try {
        const { data } = await api(`/api/auth/${reg ? 'register' : 'login'}`, { method: 'POST', body });
        auth.set(data.token);
        dlg.close();
        changed();
      } catch (e) {
        err.textContent = e instanceof ApiError && e.status === 401 ? 'Wrong username or password.' : e.message;
      }
    });
    dlg.addEventListener('close', () => { dlg.remove(); resolve(auth.user); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

// Inline SVG icons (no icon font, no emoji: both depend on fonts a TV or a minimal system lacks).
const ICONS = {
  play: 'M8 5v14l11-7z',
  pause: 'M6 5h4v14H6zM14 5h4v14h-4z',
  volume: 'M4 9v6h4l5 4V5L8 9H4zm12.5 3a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4zM14 3.2v2.1a7 7 0 0 1 0 13.4v2.1a9 9 0 0 0 0-17.6z',
  muted: 'M4 9v6h4l5 4V5L8 9H4zm12.6 3 2.7-2.7-1.4-1.4-2.7 2.7-2.7-2.7-1.4 1.4 2.7 2.7-2.7 2.7 1.4 1.4 2.7-2.7 2.7 2.7 1.4-1.4z',
  fullscreen: 'M4 4h6v2H6v4H4zm10 0h6v6h-2V6h-4zM4 14h2v4h4v2H4zm14 4v-4h2v6h-6v-2z',
  rewind: 'M12 5V2L7 6l5 4V7a6 6 0 1 1-6 6H4a8 8 0 1 0 8-8z',
  live: 'M5 5v14l8-7zm8 0v14l8-7z',
  chat: 'M4 4h16v12H7l-3 3z',
};
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '20');
  svg.setAttribute('height', '20');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('fill', 'currentColor');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}
