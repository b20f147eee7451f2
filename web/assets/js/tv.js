// `/tv/{channelID}`: LL-HLS playback for TVs and set-top browsers (native HLS where the device
// has it, hls.js otherwise), a 10-foot layout driven by arrow keys and Enter, and a read-only
// chat overlay over the WebSocket.
import { api, channelPath } from './api.js';
import { h, icon, fmtCount } from './ui.js';
import { renderText } from './chat.js';

const channel = decodeURIComponent(location.pathname.split('/')[2] || '');
const params = new URLSearchParams(location.search);
const src = `/hls/${encodeURIComponent(channel)}/master.m3u8`;

const video = h('video#tv-video', { playsinline: true, autoplay: true, 'aria-label': 'Live video' });
const stateEl = h('div.tv-state#tv-state', { role: 'status', 'aria-live': 'polite' }, 'Loading…');
const title = h('div.t#tv-title', channel);
const sub = h('div.s#tv-sub');
const latencyEl = h('span#tv-latency');
const chatEl = h('div.tv-chat#tv-chat', { 'aria-label': 'Chat', 'aria-live': 'off' });
const btn = (id, label, ic, onclick) => h(`button#${id}`, { type: 'button', 'aria-label': label, onclick }, icon(ic), h('span', label));
const playBtn = btn('tv-play', 'Pause', 'pause', () => togglePlay());
const muteBtn = btn('tv-mute', 'Mute', 'volume', () => toggleMute());
const liveBtn = btn('tv-live', 'Live', 'live', () => goLive());
const chatBtn = btn('tv-chat-toggle', 'Hide chat', 'chat', () => toggleChat());
const buttons = [playBtn, muteBtn, liveBtn, chatBtn];
const bar = h('div.tv-bar#tv-bar', h('div.meta', title, sub), latencyEl, ...buttons);
document.body.append(h('div.tv-stage', video), stateEl, chatEl, bar);

let hls = null;
let engine = null;

function setState(text) {
  stateEl.textContent = text || '';
  stateEl.classList.toggle('hidden', !text);
}

// Native HLS on devices that have it and no MSE (TVs, iOS) or on Safari, whose native player
// does LL-HLS; hls.js (low-latency mode) everywhere else. `?engine=native|hlsjs` overrides.
function pickEngine() {
  const forced = params.get('engine');
  if (forced === 'native' || forced === 'hlsjs') return forced;
  const native = video.canPlayType('application/vnd.apple.mpegurl') !== '';
  const mse = 'MediaSource' in window || 'ManagedMediaSource' in window;
  const safari = /^((?!chrome|android|crios|fxios).)*safari/i.test(navigator.userAgent);
  if (native && (!mse || safari)) return 'native';
  return mse ? 'hlsjs' : 'native';
}

function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = '/assets/vendor/hls.min.js';
    s.onload = () => resolve(window.Hls);
    s.onerror = () => reject(new Error('hls.js did not load'));
    document.head.append(s);
  });
}

// The playlist URL: signed for this viewer when the channel requires it
// (`GET /api/channels/{id}/hls`), else the plain one.
async function playlistUrl() {
  try {
    const { data } = await api(`${channelPath(channel)}/hls`, { fresh: true });
    return data && data.url ? data.url : src;
  } catch (e) {
    if (e.status === 401 || e.status === 403) throw e;
    return src;
  }
}

async function start() {
  if (hls) { hls.destroy(); hls = null; }
  engine = pickEngine();
  document.body.dataset.engine = engine;
  setState('Starting…');
  let url;
  try {
    url = await playlistUrl();
  } catch (e) {
    setState(e.status === 401 ? 'This channel is for signed-in viewers: log in on this device first.' : 'You cannot watch this channel.');
    return;
  }
  if (engine === 'native') {
    video.src = url;
    video.addEventListener('error', () => retry('The stream could not be played'), { once: true });
  } else {
    const Hls = await loadHlsJs();
    // Catch up to the live edge after a stall (hls.js otherwise stays as far behind as it fell).
    hls = new Hls({ lowLatencyMode: true, backBufferLength: 30, liveDurationInfinity: true, maxLiveSyncPlaybackRate: 1.5 });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
      retry(`Playback error (${data.details})`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }
  try { await video.play(); } catch {
    video.muted = true;
    try { await video.play(); } catch { /* waits for a key press */ }
    syncButtons();
  }
}

let retryTimer = null;
function retry(why) {
  if (hls) { hls.destroy(); hls = null; }
  video.removeAttribute('src');
  video.load();
  setState(`${why}. Retrying…`);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(boot, 5000);
}

video.addEventListener('playing', () => setState(null));
video.addEventListener('waiting', () => { if (!video.paused) setState('Buffering…'); });

function togglePlay() {
  if (video.paused) video.play().catch(() => {}); else video.pause();
  syncButtons();
}
function toggleMute() { video.muted = !video.muted; syncButtons(); }
function goLive() {
  if (hls && hls.liveSyncPosition) video.currentTime = hls.liveSyncPosition;
  else if (video.seekable.length) video.currentTime = video.seekable.end(video.seekable.length - 1) - 1;
  video.play().catch(() => {});
}
function toggleChat() {
  chatEl.classList.toggle('hidden');
  syncButtons();
}
function syncButtons() {
  const set = (b, label, ic) => { b.setAttribute('aria-label', label); b.replaceChildren(icon(ic), h('span', label)); };
  set(playBtn, video.paused ? 'Play' : 'Pause', video.paused ? 'play' : 'pause');
  set(muteBtn, video.muted ? 'Unmute' : 'Mute', video.muted ? 'muted' : 'volume');
  set(chatBtn, chatEl.classList.contains('hidden') ? 'Show chat' : 'Hide chat', 'chat');
}
video.addEventListener('play', syncButtons);
video.addEventListener('pause', syncButtons);

// 10-foot navigation: left/right move between buttons, Enter presses (native button
// behaviour), any key wakes the bar, which hides after 5 s without input.
let idle = null;
function wake() {
  document.body.classList.remove('idle');
  clearTimeout(idle);
  idle = setTimeout(() => document.body.classList.add('idle'), 5000);
}
document.addEventListener('keydown', (e) => {
  wake();
  const i = buttons.indexOf(document.activeElement);
  if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
    e.preventDefault();
    const n = i < 0 ? 0 : (i + (e.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length;
    buttons[n].focus();
  } else if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
    e.preventDefault();
    if (i < 0) buttons[0].focus();
  } else if (e.key === 'MediaPlayPause' || e.key === ' ') {
    if (i < 0) { e.preventDefault(); togglePlay(); }
  } else if (e.key === 'Enter' && i < 0) {
    buttons[0].focus();
  } else if (e.key === 'Backspace' || e.key === 'BrowserBack' || e.key === 'Escape') {
    location.href = '/';
  }
});
document.addEventListener('mousemove', wake);

// ---- read-only chat overlay (WebSocket, no token): the newest lines, older ones fade out
let ws = null;
let wsRetry = 0;
function connectChat() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${proto}://${location.host}${channelPath(channel)}/live-stream`);
  ws.onopen = () => { wsRetry = 0; };
  ws.onmessage = (ev) => {
    let f;
    try { f = JSON.parse(ev.data); } catch { return; }
    if (f.type === 'message') {
      chatEl.append(h('div.m', { dataset: { offset: f.offset } }, h('span.name', f.userName || f.userID), ': ', renderText(f.message, f.emotes)));
      while (chatEl.children.length > 8) chatEl.firstChild.remove();
    } else if (f.type === 'stream' && f.status === 'live' && !video.currentTime) {
      clearTimeout(retryTimer);
      boot();
    } else if (f.type === 'watchers') {
      watchers = f.count;
      showInfo();
    }
  };
  // Jittered, so a room of TVs does not reconnect in step.
  ws.onclose = () => setTimeout(connectChat, Math.min(15000, 1000 * 2 ** wsRetry++) * (0.75 + Math.random() / 2));
}

let info = null;
let watchers = 0;
function showInfo() {
  if (!info) return;
  title.textContent = info.name || info.channelID;
  const t = (info.currentStreamInfo && info.currentStreamInfo.title) || info.streamTitle || '';
  sub.textContent = [t, info.currentStreamInfo ? `${fmtCount(watchers)} watching` : 'Offline'].filter(Boolean).join(' · ');
}

setInterval(() => {
  if (hls && hls.latency != null && isFinite(hls.latency) && hls.latency > 0) latencyEl.textContent = `Latency ${hls.latency.toFixed(1)} s`;
  else if (video.getStartDate && !isNaN(video.getStartDate().getTime())) {
    const l = (Date.now() - (video.getStartDate().getTime() + video.currentTime * 1000)) / 1000;
    latencyEl.textContent = `Latency ${l.toFixed(1)} s`;
  }
}, 1000);

async function boot() {
  try {
    info = (await api(channelPath(channel), { fresh: true })).data;
  } catch (e) {
    setState(e.status === 404 ? `There is no channel “${channel}”.` : `The server cannot be reached. Retrying…`);
    if (e.status !== 404) { clearTimeout(retryTimer); retryTimer = setTimeout(boot, 5000); }
    return;
  }
  watchers = info.currentStreamInfo ? info.currentStreamInfo.currentWatcherCount : 0;
  document.title = `${info.name || channel} · onair TV`;
  showInfo();
  if (!info.currentStreamInfo) {
    setState(`${info.name || channel} is offline. The stream starts here when it goes live.`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(boot, 5000);
    return;
  }
  await start();
}

window.onair = { get hls() { return hls; }, get engine() { return engine; }, video };
connectChat();
boot();
wake();
playBtn.focus();
