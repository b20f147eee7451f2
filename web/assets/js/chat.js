// Chat panel: the DESIGN §3 protocol over the WHEP `chat` data channel, or a WebSocket when
// there is no WebRTC connection (offline channel, no WebRTC, TV). Messages are placed by offset;
// a transport change resumes from the last offset held, so nothing is lost or shown twice.
import { api, auth, channelPath } from './api.js';
import { h } from './ui.js';

const PAGE = 50;

export function renderText(text, emotes) {
  const chars = Array.from(text); // server positions count Unicode scalar values
  const out = [];
  let at = 0;
  for (const e of [...(emotes || [])].sort((a, b) => a.start - b.start)) {
    if (e.start < at || e.end >= chars.length) continue;
    if (e.start > at) out.push(chars.slice(at, e.start).join(''));
    const word = chars.slice(e.start, e.end + 1).join('');
    out.push(h('img.emote', { src: `/emotes/${encodeURIComponent(e.id)}.svg`, alt: word, title: word, dataset: { emote: e.id } }));
    at = e.end + 1;
  }
  if (at < chars.length) out.push(chars.slice(at).join(''));
  return out;
}

function badgeEls(badges) {
  return (badges || []).map((b) => {
    if (b === 'broadcaster') return h('span.badge.live', { title: 'Broadcaster' }, 'Host');
    if (b.startsWith('subscriber')) return h('span.badge.sub', { title: `Subscriber, tier ${b.split('/')[1] || 1}` }, `Sub${b.split('/')[1] ? ' T' + b.split('/')[1] : ''}`);
    return null;
  });
}

export class Chat extends EventTarget {
  // opts: {channel, ownerID, readOnly, compact}
  constructor(opts) {
    super();
    this.channel = opts.channel;
    this.ownerID = opts.ownerID || null;
    this.readOnly = !!opts.readOnly;
    this.epoch = null;
    this.top = 0; // highest offset held
    this.bottom = null; // lowest offset held
    this.byOffset = new Map();
    this.pending = new Map();
    this.transport = null; // {kind, send(text), close()}
    this.ws = null;
    this.wsRetry = 0;
    this.historyDone = false;
    this.loadingOlder = false;
    this.seenSent = 0;
    this.bannedUntil = undefined;
    this.scrollKey = `onair.chatScroll.${this.channel}`;
    this.build();
  }

  get me() { return auth.user; }
  get isOwner() {
    const u = this.me;
    return !!u && (u.id === this.ownerID || u.roles.includes('admin'));
  }

  build() {
    this.log = h('ol.log#chat-log', { 'aria-live': 'polite', 'aria-label': 'Chat messages', tabindex: '0' });
    this.banner = h('div.banner.hidden#chat-banner', { role: 'alert' });
    this.transportLabel = h('span.transport#chat-transport', 'connecting…');
    this.input = h('input#chat-input', { name: 'message', maxlength: 500, autocomplete: 'off', placeholder: 'Send a message', 'aria-label': 'Chat message' });
    this.sendBtn = h('button.primary#chat-send', { type: 'submit' }, 'Chat');
    this.form = h('form#chat-form', { onsubmit: (e) => { e.preventDefault(); this.submit(); } }, this.input, this.sendBtn);
    this.el = h('section.chat#chat', { 'aria-label': 'Chat' },
      h('header', h('span', 'Stream chat'), this.transportLabel),
      this.banner, this.log, this.readOnly ? null : this.form);
    this.log.addEventListener('scroll', () => this.onScroll());
    // A reader at the newest line stays there when the panel changes size (the player above or
    // beside it gets its picture, the window turns): the browser would only clamp scrollTop.
    this.following = true;
    new ResizeObserver(() => { if (this.following) this.scrollToBottom(); }).observe(this.log);
    this.refreshInput();
  }

  refreshInput() {
    if (this.readOnly) return;
    const banned = this.isBanned();
    if (!this.me) {
      this.input.disabled = true;
      this.input.placeholder = 'Log in to chat';
      this.sendBtn.disabled = true;
    } else {
      this.input.disabled = banned;
      this.sendBtn.disabled = banned;
      this.input.placeholder = banned ? 'You cannot chat in this channel' : 'Send a message';
    }
  }

  isBanned() {
    if (this.bannedUntil === undefined) return false;
    if (this.bannedUntil === null) return true;
    return this.bannedUntil > Date.now();
  }

  // until: null = permanent, a Date.now()-based ms timestamp = timeout; undefined = lifted.
  setBanned(until) {
    this.bannedUntil = until;
    clearInterval(this.banTimer);
    if (until === undefined) {
      this.banner.classList.add('hidden');
      this.refreshInput();
      return;
    }
    const show = () => {
      if (until !== null && until <= Date.now()) { this.setBanned(undefined); return; }
      this.banner.textContent = until === null
        ? 'You are banned from this chat. You can still read it.'
        : `You are timed out for ${Math.ceil((until - Date.now()) / 1000)} s more.`;
    };
    show();
    this.banner.classList.remove('hidden');
    if (until !== null) this.banTimer = setInterval(show, 1000);
    this.refreshInput();
  }

  // ---- transports

  start() { this.useWebSocket(); }

  useWebSocket() {
    if (this.ws || (this.transport && this.transport.kind === 'datachannel')) return;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const token = auth.token;
    const url = `${proto}://${location.host}${channelPath(this.channel)}/live-stream${token ? `?token=${encodeURIComponent(token)}` : ''}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    const t = { kind: 'websocket', send: (s) => ws.readyState === 1 && ws.send(s), close: () => ws.close() };
    ws.onopen = () => { this.wsRetry = 0; };
    ws.onmessage = (ev) => {
      if (this.transport !== t) {
        // A data channel took over: only its frames count now.
        if (this.transport && this.transport.kind === 'datachannel') { ws.close(); return; }
        this.transport = t;
      }
      this.onFrame(ev.data);
    };
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      if (this.transport === t) {
        this.transport = null;
        this.setTransportLabel();
        // Back off up to 15 s, with jitter so a room does not reconnect in step.
        const delay = Math.min(15000, 500 * 2 ** this.wsRetry++) * (0.75 + Math.random() / 2);
        setTimeout(() => { if (!this.transport) this.useWebSocket(); }, delay);
      }
    };
  }

  // Switches to a WHEP data channel (given before it opens).
  useDataChannel(dc) {
    const t = { kind: 'datachannel', send: (s) => dc.readyState === 'open' && dc.send(s), close: () => dc.close() };
    dc.addEventListener('message', (ev) => {
      if (typeof ev.data !== 'string') return;
      if (this.transport !== t) {
        this.transport = t;
        if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
      }
      this.onFrame(ev.data);
    });
    dc.addEventListener('close', () => {
      if (this.transport === t) {
        this.transport = null;
        this.setTransportLabel();
        this.useWebSocket();
      }
    });
  }

  setTransportLabel() {
    const k = this.transport && this.transport.kind;
    this.transportLabel.textContent = k === 'datachannel' ? 'WebRTC' : k === 'websocket' ? 'WebSocket' : 'reconnecting…';
    this.el.dataset.transport = k || 'none';
  }

  send(obj) { if (this.transport) this.transport.send(JSON.stringify(obj)); }

  // ---- frames

  onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    switch (f.type) {
      case 'welcome': return this.onWelcome(f);
      case 'message': return this.place(f);
      case 'ack': return this.onAck(f);
      case 'notice': return this.onNotice(f);
      case 'ban':
        if (this.me && f.userID === this.me.id) {
          this.setBanned(f.durationSeconds == null ? null : Date.now() + f.durationSeconds * 1000);
        }
        for (const li of this.log.querySelectorAll(`li[data-user="${CSS.escape(f.userID)}"]`)) li.classList.add('removed');
        return;
      case 'resumed':
        if (!f.recovered) this.reloadHistory();
        return;
      case 'watchers': return this.dispatchEvent(new CustomEvent('watchers', { detail: f.count }));
      case 'stream': return this.dispatchEvent(new CustomEvent('stream', { detail: f.status }));
      default:
    }
  }

  onWelcome(f) {
    this.setTransportLabel();
    const first = this.epoch === null;
    if (!first && f.epoch === this.epoch) {
      this.send({ type: 'resume', epoch: this.epoch, offset: this.top });
    } else if (!first) {
      this.epoch = f.epoch;
      this.reloadHistory();
    } else {
      this.epoch = f.epoch;
      this.loadHistory().then(() => this.restoreScroll());
    }
    // Messages sent but not acknowledged go again; the clientMsgId makes that idempotent.
    for (const [id, p] of this.pending) {
      if (!p.acked) this.send({ type: 'send', clientMsgId: id, message: p.text });
    }
  }

  async loadHistory() {
    try {
      const { data } = await api(`${channelPath(this.channel)}/live-stream/messages?limit=${PAGE}`);
      for (const m of data.messages) this.place(m, true);
      this.historyDone = data.nextCursor === null;
      this.scrollToBottom();
    } catch (e) {
      this.system(`History could not be loaded: ${e.message}`);
    }
  }

  reloadHistory() {
    this.byOffset.clear();
    this.top = 0;
    this.bottom = null;
    for (const li of [...this.log.querySelectorAll('li[data-offset]')]) li.remove();
    this.loadHistory();
  }

  async loadOlder() {
    if (this.loadingOlder || this.historyDone || this.bottom === null) return false;
    this.loadingOlder = true;
    const before = this.log.scrollHeight;
    try {
      const { data } = await api(`${channelPath(this.channel)}/live-stream/messages?limit=${PAGE}&nextCursor=${this.bottom}`);
      for (const m of data.messages) this.place(m, true);
      this.historyDone = data.nextCursor === null || data.messages.length === 0;
      // Keep what the reader looks at in place while older lines arrive above it.
      this.log.scrollTop += this.log.scrollHeight - before;
      return data.messages.length > 0;
    } catch {
      return false;
    } finally {
      this.loadingOlder = false;
    }
  }

  atBottom() { return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40; }
  scrollToBottom() { this.log.scrollTop = this.log.scrollHeight; }

  onScroll() {
    this.following = this.atBottom();
    // Near the top and not at the bottom: a log that barely overflows (or was just clamped by a
    // resize) is not a reader asking for older lines.
    if (this.log.scrollTop < 60 && !this.following) this.loadOlder();
    clearTimeout(this.scrollSave);
    this.scrollSave = setTimeout(() => this.saveScroll(), 250);
    if (this.atBottom()) this.reportSeen();
  }

  // The reader's place: the first message mostly in view (a sub-pixel sliver of the line above
  // does not count, or the reload would land one line higher), or nothing when following the bottom.
  saveScroll() {
    if (this.atBottom()) { localStorage.removeItem(this.scrollKey); return; }
    const top = this.log.getBoundingClientRect().top;
    const first = [...this.log.querySelectorAll('li[data-offset]')].find((li) => {
      const r = li.getBoundingClientRect();
      return (r.top + r.bottom) / 2 > top;
    });
    if (first) localStorage.setItem(this.scrollKey, first.dataset.offset);
  }

  async restoreScroll() {
    const want = Number(localStorage.getItem(this.scrollKey));
    if (!want) return;
    for (let i = 0; i < 10 && this.bottom !== null && this.bottom > want; i++) {
      if (!(await this.loadOlder())) break;
    }
    const li = this.byOffset.get(want);
    if (li) {
      this.log.scrollTop = li.offsetTop - this.log.offsetTop;
    }
  }

  place(m, fromHistory = false) {
    const known = this.byOffset.get(m.offset);
    if (known) {
      // Our own line, placed by its ack: the message adds the badges the server gave it.
      if (known.dataset.clientMsgId && !known.dataset.messageId) {
        known.dataset.messageId = m.messageID;
        known.prepend(...badgeEls(m.badges).filter(Boolean));
        for (const [id, p] of this.pending) if (p.li === known) this.pending.delete(id);
      }
      return;
    }
    const follow = this.atBottom();
    const mine = this.me && m.userID === this.me.id;
    let li = null;
    // Our own message arrives as a message too: keep the line that shows its delivery status.
    for (const [id, p] of this.pending) {
      if (p.messageID === m.messageID || (p.offset === m.offset && p.offset)) {
        li = p.li;
        this.pending.delete(id);
        li.prepend(...badgeEls(m.badges).filter(Boolean));
        break;
      }
    }
    if (!li) li = this.line(m, mine);
    li.dataset.offset = m.offset;
    li.dataset.messageId = m.messageID;
    this.byOffset.set(m.offset, li);
    // Insert in offset order (history and live frames can interleave).
    let next = null;
    for (const el of this.log.querySelectorAll('li[data-offset]')) {
      if (Number(el.dataset.offset) > m.offset) { next = el; break; }
    }
    if (li.parentNode !== this.log || next !== li.nextSibling) {
      if (next) this.log.insertBefore(li, next); else this.log.append(li);
    }
    this.top = Math.max(this.top, m.offset);
    this.bottom = this.bottom === null ? m.offset : Math.min(this.bottom, m.offset);
    if (!fromHistory && follow) this.scrollToBottom();
    if (!fromHistory) this.reportSeen();
  }

  line(m, mine) {
    const li = h(`li${mine ? '.mine' : ''}`, { dataset: { user: m.userID } },
      badgeEls(m.badges),
      h('span.name', m.userName || m.userID), ': ',
      h('span.text', renderText(m.message, m.emotes)));
    if (this.isOwner && m.userID !== this.me.id && !this.readOnly) {
      li.append(
        h('button.mod', { type: 'button', title: `Time out ${m.userName} for 10 minutes`, dataset: { action: 'timeout' }, onclick: () => this.moderate(m, 600) }, 'Timeout'),
        h('button.mod.danger', { type: 'button', title: `Ban ${m.userName}`, dataset: { action: 'ban' }, onclick: () => this.moderate(m, null) }, 'Ban'));
    }
    return li;
  }

  async moderate(m, seconds) {
    const body = { userID: m.userID };
    if (seconds) body.durationSeconds = seconds;
    try {
      await api(`${channelPath(this.channel)}/bans`, { method: 'POST', body });
      this.system(seconds ? `${m.userName} is timed out for ${seconds / 60} minutes.` : `${m.userName} is banned.`);
    } catch (e) {
      this.system(`Could not ban ${m.userName}: ${e.message}`);
    }
  }

  system(text, cls = 'notice') {
    const follow = this.atBottom();
    this.log.append(h(`li.${cls}`, { role: 'status' }, text));
    if (follow) this.scrollToBottom();
  }

  reportSeen() {
    if (document.hidden || !this.atBottom() || this.top <= this.seenSent) return;
    clearTimeout(this.seenTimer);
    this.seenTimer = setTimeout(() => {
      if (this.top > this.seenSent) { this.seenSent = this.top; this.send({ type: 'seen', offset: this.top }); }
    }, 300);
  }

  submit() {
    const text = this.input.value.trim();
    if (!text || !this.me || this.isBanned()) return;
    const id = `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const li = this.line({ userID: this.me.id, userName: this.me.name, message: text, emotes: [], badges: [] }, true);
    const status = h('span.status', { dataset: { status: 'sending' } }, 'sending…');
    li.append(status);
    li.dataset.clientMsgId = id;
    this.log.append(li);
    this.scrollToBottom();
    this.pending.set(id, { li, status, text, acked: false });
    this.input.value = '';
    if (this.transport) this.send({ type: 'send', clientMsgId: id, message: text });
  }

  onAck(f) {
    let p = this.pending.get(f.clientMsgId);
    let li = p && p.li;
    if (!li && f.offset) li = this.byOffset.get(f.offset);
    if (!li) return;
    if (p) { p.acked = true; p.messageID = f.messageID; p.offset = f.offset; }
    if (!li.dataset.offset && f.offset) {
      li.dataset.offset = f.offset;
      this.byOffset.set(f.offset, li);
      this.top = Math.max(this.top, f.offset);
    }
    const status = li.querySelector('.status') || li.appendChild(h('span.status'));
    const rank = { sending: 0, delivered: 1, sent: 2, seen: 3 };
    if ((rank[f.status] ?? 0) >= (rank[status.dataset.status] ?? 0)) {
      status.dataset.status = f.status;
      status.textContent = f.status === 'delivered' ? '✓ delivered' : f.status === 'sent' ? '✓✓ sent' : '✓✓ seen';
      status.title = f.status;
    }
  }

  onNotice(f) {
    if (f.clientMsgId && this.pending.has(f.clientMsgId)) {
      const p = this.pending.get(f.clientMsgId);
      this.pending.delete(f.clientMsgId);
      const s = p.li.querySelector('.status');
      if (s) { s.textContent = 'not sent'; s.classList.add('failed'); s.dataset.status = 'failed'; }
    }
    if (f.code === 'banned') this.setBanned(null);
    else if (f.code === 'timed_out') this.setBanned(Date.now() + (f.retryAfter || 1) * 1000);
    this.system(f.message || f.code, 'notice');
  }
}
