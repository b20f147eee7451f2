// The channel page's player: WHEP playback with reconnect and backoff, the offline state (WHEP
// 409) with automatic start, a quality menu on the WHEP layer extension, a live-latency
// readout, and pause / rewind / jump-to-live on the client-side recording (timeshift.js).
import { WhepClient, OfflineError, HttpError } from './whep.js';
import { TimeShift } from './timeshift.js';
import { h, icon } from './ui.js';

const PREFS = 'onair.player';
function loadPrefs() {
  try { return JSON.parse(localStorage.getItem(PREFS)) || {}; } catch { return {}; }
}
function savePrefs(p) { localStorage.setItem(PREFS, JSON.stringify({ ...loadPrefs(), ...p })); }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const RANKS = ['high', 'medium', 'low'];

export class Player extends EventTarget {
  constructor({ channel, token }) {
    super();
    this.channel = channel;
    this.token = token;
    this.state = 'idle';
    this.whep = null;
    this.stream = null;
    this.layers = [];
    this.mode = 'live'; // 'live' | 'paused' | 'shifted'
    this.shift = new TimeShift();
    this.dvr = null; // playback controller of the recording
    this.pausedAt = null;
    this.unpinPause = null;
    this.lastDecoded = -1;
    this.latencyMs = null;
    this.wake = null;
    this.prefs = loadPrefs();
    this.build();
  }

  build() {
    this.video = h('video#live-video', { playsinline: true, autoplay: true, 'aria-label': 'Live video' });
    this.video.playsInline = true;
    this.dvrVideo = h('video.hidden#dvr-video', { playsinline: true, 'aria-label': 'Time-shifted video' });
    this.overlay = h('div.overlay#player-overlay', { role: 'status', 'aria-live': 'polite' });
    const p = this.prefs;
    this.playBtn = h('button#play', { type: 'button', onclick: () => this.togglePause(), 'aria-label': 'Pause' }, icon('pause'));
    this.rewindBtn = h('button#rewind', { type: 'button', onclick: () => this.rewind(10), 'aria-label': 'Rewind 10 seconds', title: 'Rewind 10 s' }, icon('rewind'), h('span', '10s'));
    this.liveBtn = h('button.hidden#jump-live', { type: 'button', onclick: () => this.jumpToLive(), 'aria-label': 'Jump to live' }, icon('live'), h('span', 'Live'));
    this.muteBtn = h('button#mute', { type: 'button', onclick: () => this.setMuted(!this.muted), 'aria-label': 'Mute' }, icon('volume'));
    this.volume = h('input#volume', { type: 'range', min: 0, max: 1, step: 0.05, 'aria-label': 'Volume', oninput: (e) => this.setVolume(Number(e.target.value)) });
    this.quality = h('select#quality', { 'aria-label': 'Quality', onchange: (e) => this.setQuality(e.target.value) }, h('option', { value: 'auto' }, 'Auto'));
    this.latencyEl = h('span.latency#latency', { title: 'Delay behind the broadcaster' }, '–');
    this.fsBtn = h('button#fullscreen', { type: 'button', onclick: () => this.toggleFullscreen(), 'aria-label': 'Full screen' }, icon('fullscreen'));
    this.controls = h('div.controls', this.playBtn, this.rewindBtn, this.liveBtn, this.muteBtn, this.volume,
      h('span.spacer'), this.latencyEl, this.quality, this.fsBtn);
    this.el = h('div.player#player', { tabindex: '-1' }, this.video, this.dvrVideo, this.overlay, this.controls);
    this.el.addEventListener('keydown', (e) => this.onKey(e));
    this.muted = p.muted ?? false;
    this.setVolume(p.volume ?? 1, false);
    this.setMuted(this.muted, false);
    for (const v of [this.video, this.dvrVideo]) v.addEventListener('volumechange', () => this.syncVolumeUi());
    this.shift.addEventListener('error', (e) => console.warn('time shift', e.detail));
    this.dvrVideo.addEventListener('waiting', () => this.onDvrStall());
    setInterval(() => this.tick(), 500);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(s, text) {
    this.state = s;
    this.el.dataset.state = s;
    this.overlay.replaceChildren(...(text ? [h('div', ...[].concat(text))] : []));
    this.overlay.classList.toggle('hidden', !text);
    this.emit('state', s);
  }

  // ---- connection loop

  start() { this.loop(); }

  async loop() {
    if (!window.RTCPeerConnection) {
      // No WebRTC (some TVs and embedded browsers): HLS plays there, and chat uses the WebSocket.
      this.setState('error', [h('p', 'This browser cannot play WebRTC streams.'),
        h('p', h('a', { href: `/tv/${encodeURIComponent(this.channel)}` }, 'Watch with HLS instead'))]);
      return;
    }
    let failures = 0;
    this.setState('connecting', h('p', 'Connecting…'));
    for (;;) {
      const whep = new WhepClient(`/whep/${encodeURIComponent(this.channel)}`, { token: this.token });
      this.whep = whep;
      whep.addEventListener('chat', (e) => this.emit('datachannel', e.detail));
      whep.addEventListener('layers', (e) => this.onLayers(e.detail));
      whep.addEventListener('viewercount', (e) => this.emit('viewercount', e.detail));
      let ended;
      const done = new Promise((resolve) => { ended = resolve; });
      this.endSession = ended;
      this.lastProgress = performance.now();
      let stream;
      try {
        stream = await whep.connect();
      } catch (e) {
        whep.close();
        if (e instanceof OfflineError) {
          failures = 0;
          this.setState('offline', [h('p', h('strong', 'Offline')), h('p.muted', 'The stream starts here as soon as the channel goes live.')]);
          await this.waitLive(e.retryAfter * 1000);
          continue;
        }
        if (e instanceof HttpError && e.status === 404) {
          this.setState('error', h('p', 'This channel does not exist.'));
          return;
        }
        failures++;
        await this.backoff(failures, e);
        continue;
      }
      failures = 0;
      this.attach(stream);
      // Connected: wait for the end of this session (failure, close, or the stream going away).
      let disconnectTimer;
      whep.addEventListener('state', (e) => {
        const s = e.detail;
        if (s === 'connected') { clearTimeout(disconnectTimer); this.onConnected(); }
        if (s === 'failed' || s === 'closed') ended(s);
        if (s === 'disconnected') disconnectTimer = setTimeout(() => ended('disconnected'), 3000);
      });
      whep.addEventListener('inactive', () => ended('inactive'));
      const why = await done;
      this.endSession = null;
      clearTimeout(disconnectTimer);
      whep.close();
      this.whep = null;
      if (why === 'inactive') {
        this.setState('offline', [h('p', h('strong', 'The stream ended')), h('p.muted', 'Waiting for the channel to go live again…')]);
        await this.waitLive(2000);
      } else {
        failures++;
        await this.backoff(failures, new Error(`connection ${why}`));
      }
    }
  }

  async backoff(n, err) {
    // 1, 2, 4, 8, 16 s (cap), each with ±25 % jitter so viewers do not return in step.
    const ms = Math.min(16000, 1000 * 2 ** (n - 1)) * (0.75 + Math.random() / 2);
    this.setState('reconnecting', [h('p', h('strong', 'Reconnecting…')), h('p.muted', `${err.message}; trying again in ${Math.round(ms / 1000)} s`)]);
    await sleep(ms);
  }

  // Sleeps until `ms` have passed or something says the channel is live (chat's stream frame).
  waitLive(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = null; resolve(); }, ms);
      this.wake = () => { clearTimeout(t); this.wake = null; resolve(); };
    });
  }

  // Called when chat reports the stream went live: try at once instead of at the next poll.
  nudge() { if (this.wake) this.wake(); }

  attach(stream) {
    this.stream = stream;
    this.video.srcObject = stream;
    this.firstFrame = false;
    this.video.requestVideoFrameCallback?.(() => { this.firstFrame = true; if (this.state !== 'live') this.onConnected(); });
    if (this.mode === 'live') this.playLive();
  }

  onConnected() {
    if (!this.firstFrame && this.video.readyState < 2) {
      this.setState('buffering', h('p', 'Starting…'));
      return;
    }
    this.setState('live', null);
    this.shift.attach(this.stream).catch((e) => console.warn('time shift unavailable', e));
    this.applyQuality();
    this.watchFrames();
  }

  async playLive() {
    try {
      await this.video.play();
    } catch {
      // Autoplay with sound needs a gesture in most browsers: start muted, offer to unmute.
      this.video.muted = true;
      try { await this.video.play(); } catch { /* shown as paused */ }
      if (!this.muted) this.overlayHint('Tap to unmute');
    }
  }

  overlayHint(text) {
    this.setState(this.state, null);
    const hint = h('button#unmute-hint', { type: 'button', onclick: () => { this.setMuted(false); hint.remove(); } }, text);
    this.controls.prepend(hint);
  }

  // ---- latency readout. Browsers do not expose the broadcaster's capture time for a plain
  // WHEP stream (no abs-capture-time), so this is the delay on our side of the wire: from the
  // arrival of a frame's last packet to its display (jitter buffer, decode, render), from
  // requestVideoFrameCallback, plus half the round trip to the server. Without per-frame
  // timing it falls back to the jitter buffer and decode times from getStats.
  watchFrames() {
    if (this.watching || !this.video.requestVideoFrameCallback) return;
    this.watching = true;
    const onFrame = (now, meta) => {
      if (meta.receiveTime && meta.expectedDisplayTime) {
        const l = meta.expectedDisplayTime - meta.receiveTime;
        if (l >= 0 && l < 10000) this.frameDelay = this.frameDelay == null ? l : this.frameDelay * 0.9 + l * 0.1;
      }
      this.video.requestVideoFrameCallback(onFrame);
    };
    this.video.requestVideoFrameCallback(onFrame);
  }

  async measure() {
    const pc = this.whep && this.whep.pc;
    if (!pc) return;
    let inbound, pair;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
    if (!inbound) return;
    const prev = this.prevInbound;
    this.prevInbound = inbound;
    this.videoStats = {
      framesDecoded: inbound.framesDecoded, framesDropped: inbound.framesDropped, freezeCount: inbound.freezeCount,
      frameWidth: inbound.frameWidth, frameHeight: inbound.frameHeight, framesPerSecond: inbound.framesPerSecond,
    };
    let est = null;
    if (prev && inbound.jitterBufferEmittedCount > prev.jitterBufferEmittedCount) {
      const n = inbound.jitterBufferEmittedCount - prev.jitterBufferEmittedCount;
      const jb = (inbound.jitterBufferDelay - prev.jitterBufferDelay) / n;
      const dn = inbound.framesDecoded - prev.framesDecoded;
      const dec = dn > 0 ? (inbound.totalDecodeTime - prev.totalDecodeTime) / dn : 0;
      est = (jb + dec) * 1000;
    }
    this.rttMs = pair && pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : this.rttMs;
    this.statsLatency = est;
  }

  // Seconds the picture on screen is behind live (0 when live).
  get behindLive() {
    if (this.mode === 'shifted' && this.dvr && this.el.dataset.dvr === 'playing') return (performance.now() - this.dvr.contentTime()) / 1000;
    if (this.mode !== 'live' && this.pausedAt != null) return (performance.now() - this.pausedAt) / 1000;
    return 0;
  }

  tick() {
    if (this.state === 'live') {
      this.measure().catch(() => {});
      this.watchdog();
    }
    let text = '–';
    if (this.mode === 'shifted') {
      text = `−${this.behindLive.toFixed(1)} s`;
      this.latencyEl.title = 'Behind live';
    } else if (this.mode === 'paused') {
      text = `Paused −${this.behindLive.toFixed(0)} s`;
    } else if (this.state === 'live') {
      const local = this.frameDelay ?? this.statsLatency;
      this.latencyMs = local == null ? null : local + (this.rttMs || 0) / 2;
      if (this.latencyMs != null) text = `Latency ${Math.round(this.latencyMs)} ms`;
      this.latencyEl.title = 'Delay behind the broadcaster';
    }
    this.latencyEl.textContent = text;
    this.el.dataset.mode = this.mode;
    this.rewindBtn.disabled = !this.shift.supported || this.shift.earliest === null;
  }

  // A connection can die without an event (closed under us, a middlebox dropping UDP): no new
  // frame for 6 s while live ends the session, and the loop reconnects.
  watchdog() {
    const pc = this.whep && this.whep.pc;
    if (!pc || !this.endSession) return;
    if (pc.connectionState === 'closed') { this.endSession('closed'); return; }
    const n = this.videoStats ? this.videoStats.framesDecoded : 0;
    const now = performance.now();
    if (n !== this.lastDecoded) { this.lastDecoded = n; this.lastProgress = now; return; }
    if (now - (this.lastProgress || now) > 6000) this.endSession('stalled');
  }

  // ---- quality (WHEP layer extension)

  onLayers(list) {
    const known = this.layers.map((l) => l.rid).join();
    this.layers = list;
    if (known === list.map((l) => l.rid).join()) return;
    const name = (i) => (list.length === 1 ? 'Source' : i === 0 ? 'High' : i === list.length - 1 ? 'Low' : 'Medium');
    const current = this.prefs.quality || 'auto';
    this.quality.replaceChildren(
      h('option', { value: 'auto' }, 'Auto'),
      ...list.map((l, i) => h('option', { value: RANKS[i === 0 ? 0 : i === list.length - 1 ? 2 : 1], dataset: { rid: l.rid } },
        `${name(i)}${l.bitrate ? ` · ${(l.bitrate / 1e6).toFixed(1)} Mb/s` : ''}`)),
    );
    this.quality.value = [...this.quality.options].some((o) => o.value === current) ? current : 'auto';
    this.applyQuality();
  }

  ridFor(rank) {
    const o = [...this.quality.options].find((x) => x.value === rank);
    return o ? o.dataset.rid : null;
  }

  async setQuality(rank) {
    this.prefs.quality = rank;
    savePrefs({ quality: rank });
    await this.applyQuality();
  }

  async applyQuality() {
    if (!this.whep || !this.whep.layerUrl) return;
    const rank = this.prefs.quality || 'auto';
    const rid = rank === 'auto' ? null : this.ridFor(rank);
    if (rank !== 'auto' && !rid) return; // layers not known yet; applied when they arrive
    try {
      await this.whep.selectLayer(rid);
    } catch (e) {
      console.warn('layer selection failed', e);
    }
  }

  // ---- volume, fullscreen, keys

  setVolume(v, save = true) {
    for (const el of [this.video, this.dvrVideo]) el.volume = v;
    this.volume.value = v;
    if (save) savePrefs({ volume: v });
    if (v > 0 && this.muted && save) this.setMuted(false);
  }

  setMuted(m, save = true) {
    this.muted = m;
    for (const el of [this.video, this.dvrVideo]) el.muted = m || (el === this.video && this.mode !== 'live');
    if (save) savePrefs({ muted: m });
    document.getElementById('unmute-hint')?.remove();
    this.syncVolumeUi();
  }

  syncVolumeUi() {
    this.muteBtn.replaceChildren(icon(this.muted ? 'muted' : 'volume'));
    this.muteBtn.setAttribute('aria-label', this.muted ? 'Unmute' : 'Mute');
  }

  toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else this.el.requestFullscreen?.().catch(() => {});
  }

  onKey(e) {
    if (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') return;
    if (e.key === ' ' || e.key === 'k') { e.preventDefault(); this.togglePause(); }
    else if (e.key === 'm') this.setMuted(!this.muted);
    else if (e.key === 'f') this.toggleFullscreen();
    else if (e.key === 'ArrowLeft') this.rewind(10);
  }

  // ---- pause, rewind, jump to live

  togglePause() {
    if (this.mode === 'live') this.pause();
    else if (this.mode === 'paused') this.resume();
    else if (this.mode === 'shifted') {
      if (this.dvrVideo.paused) { this.dvrVideo.play().catch(() => {}); this.setPlayIcon(false); } else { this.dvrVideo.pause(); this.setPlayIcon(true); }
    }
  }

  setPlayIcon(paused) {
    this.playBtn.replaceChildren(icon(paused ? 'play' : 'pause'));
    this.playBtn.setAttribute('aria-label', paused ? 'Play' : 'Pause');
  }

  pause() {
    if (this.state !== 'live') return;
    this.pausedAt = performance.now();
    this.unpinPause = this.shift.pin(this.pausedAt);
    // The element stops painting; the connection keeps receiving and the recorder keeps
    // writing to IndexedDB.
    this.video.pause();
    this.mode = 'paused';
    this.setPlayIcon(true);
    this.liveBtn.classList.remove('hidden');
  }

  resume() { this.playFrom(this.pausedAt); }

  rewind(seconds) {
    const now = this.mode === 'shifted' && this.dvr ? this.dvr.contentTime() : this.mode === 'paused' ? this.pausedAt : performance.now();
    const earliest = this.shift.earliest;
    if (earliest === null) return;
    this.playFrom(Math.max(earliest + 100, now - seconds * 1000));
  }

  async playFrom(t) {
    if (!this.shift.supported || this.shift.earliest === null) { this.jumpToLive(); return; }
    if (this.dvr) this.dvr.stop();
    const dvr = this.shift.play(this.dvrVideo, t);
    this.dvr = dvr;
    this.mode = 'shifted';
    this.el.dataset.dvr = 'loading';
    this.liveBtn.classList.remove('hidden');
    try {
      await dvr.ready;
    } catch (e) {
      console.warn('time shift playback failed', e);
      if (this.dvr === dvr) this.jumpToLive();
      return;
    }
    if (this.dvr !== dvr) return;
    if (this.unpinPause) { this.unpinPause(); this.unpinPause = null; }
    this.video.pause();
    this.video.muted = true;
    this.dvrVideo.muted = this.muted;
    this.dvrVideo.classList.remove('hidden');
    this.video.classList.add('hidden');
    this.dvrVideo.play().catch(() => {});
    this.el.dataset.dvr = 'playing';
    this.setPlayIcon(false);
  }

  onDvrStall() {
    // Caught up with the recording's head (it trails live by one chunk): go live.
    if (this.mode === 'shifted' && this.el.dataset.dvr === 'playing' && performance.now() - this.dvr.contentTime() < 1500) this.jumpToLive();
  }

  jumpToLive() {
    if (this.dvr) { this.dvr.stop(); this.dvr = null; }
    this.el.dataset.dvr = '';
    if (this.unpinPause) { this.unpinPause(); this.unpinPause = null; }
    this.mode = 'live';
    this.dvrVideo.classList.add('hidden');
    this.video.classList.remove('hidden');
    this.video.muted = this.muted;
    this.playLive();
    this.setPlayIcon(false);
    this.liveBtn.classList.add('hidden');
  }

  close() {
    if (this.whep) this.whep.close();
    this.shift.detach();
  }
}
