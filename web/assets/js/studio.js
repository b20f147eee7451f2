// `/studio`: create a channel, show / rotate its stream key, edit its info, OBS set-up, and go
// live from the browser over WHIP with three simulcast layers.
import { api, auth, channelPath, ApiError } from './api.js';
import { h, mountTopbar, toast, authDialog, onAuthChange } from './ui.js';
import { WhipClient } from './whep.js';

mountTopbar('studio');
const main = h('main#main');
document.body.append(main);
onAuthChange(() => render());

// Lowest first: RIDs q/h/f at 1/4, 1/2 and full size (the server answers every offered RID and
// orders layers by measured bitrate, so names are free).
const ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 200_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 600_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_800_000 },
];
const KEY_STORE = (id) => `onair.streamKey.${id}`;

let live = null; // {whip, stream, timer}
let selected = null;

async function myChannels() {
  // The API lists every channel; ours are those we own.
  const me = auth.user.id;
  const out = [];
  let cursor = null;
  for (let i = 0; i < 20; i++) {
    const { data } = await api(`/api/channels?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { fresh: true });
    out.push(...data.channels.filter((c) => c.ownerID === me));
    cursor = data.nextCursor;
    if (!cursor) break;
  }
  return out;
}

async function render() {
  if (!auth.user) {
    main.replaceChildren(h('div.panel', h('h1', 'Studio'), h('p', 'Log in to create a channel and go live.'),
      h('div.row', h('button.primary', { type: 'button', onclick: () => authDialog('login') }, 'Log in'),
        h('button', { type: 'button', onclick: () => authDialog('register') }, 'Sign up'))));
    return;
  }
  let channels = [];
  try { channels = await myChannels(); } catch (e) { toast(e.message); }
  const wanted = new URLSearchParams(location.search).get('channel') || localStorage.getItem('onair.studio.channel');
  selected = channels.find((c) => c.channelID === wanted) || channels[0] || null;
  if (!selected) { main.replaceChildren(createForm(true)); return; }
  localStorage.setItem('onair.studio.channel', selected.channelID);
  main.replaceChildren(h('h1', 'Studio'), h('div.studio',
    h('div', livePanel(), obsPanel()),
    h('div', channelPicker(channels), infoPanel(), keyPanel(), createForm(false))));
}

function channelPicker(channels) {
  if (channels.length < 2) return null;
  return h('div.panel', h('label', { for: 'pick' }, 'Channel'),
    h('select#pick', { onchange: (e) => { localStorage.setItem('onair.studio.channel', e.target.value); render(); } },
      channels.map((c) => h('option', { value: c.channelID, selected: c.channelID === selected.channelID }, c.name || c.channelID))));
}

function createForm(first) {
  const err = h('p.error', { role: 'alert' });
  const form = h('form.panel#create-channel', { onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      const { data } = await api('/api/channels', { method: 'POST', body: { channelID: f.get('channelID'), name: f.get('name') || undefined, description: f.get('description') || '' } });
      sessionStorage.setItem(KEY_STORE(data.channelID), data.streamKey);
      localStorage.setItem('onair.studio.channel', data.channelID);
      await render();
      showKey(data.streamKey);
    } catch (ex) { err.textContent = ex.message; }
  } },
  h('h2', first ? 'Create your channel' : 'Another channel'),
  h('label', { for: 'new-id' }, 'Channel ID (in its URL)'),
  h('input#new-id', { name: 'channelID', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}', placeholder: 'my_channel', value: first ? auth.user.id : '' }),
  h('label', { for: 'new-name' }, 'Name'), h('input#new-name', { name: 'name', maxlength: 100 }),
  h('label', { for: 'new-desc' }, 'Description'), h('textarea#new-desc', { name: 'description', rows: 2 }),
  err, h('div.row', { style: 'margin-top:10px' }, h('button.primary#create', { type: 'submit' }, 'Create channel')));
  return form;
}

function infoPanel() {
  const msg = h('span.muted', { role: 'status' });
  const form = h('form.panel#channel-info', { onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      const { data } = await api(channelPath(selected.channelID), { method: 'PATCH', body: { name: f.get('name'), description: f.get('description'), title: f.get('title') } });
      selected = data;
      msg.textContent = 'Saved.';
    } catch (ex) { msg.textContent = ex.message; }
  } },
  h('h2', 'Channel'),
  h('p', h('a', { href: `/c/${encodeURIComponent(selected.channelID)}` }, `/c/${selected.channelID}`)),
  h('label', { for: 'info-name' }, 'Name'), h('input#info-name', { name: 'name', value: selected.name || '', maxlength: 100 }),
  h('label', { for: 'info-title' }, 'Stream title'), h('input#info-title', { name: 'title', value: selected.streamTitle || '', maxlength: 140 }),
  h('label', { for: 'info-desc' }, 'Description'), h('textarea#info-desc', { name: 'description', rows: 3 }, selected.description || ''),
  h('div.row', { style: 'margin-top:10px' }, h('button.primary#save-info', { type: 'submit' }, 'Save'), msg));
  return form;
}

const keyBox = h('div#key-box');
function showKey(key) {
  const copy = h('button#copy-key', { type: 'button', onclick: async () => {
    try { await navigator.clipboard.writeText(key); copy.textContent = 'Copied'; } catch { toast('Copy failed: select the key and copy it.'); }
  } }, 'Copy');
  keyBox.replaceChildren(
    h('p', h('strong', 'Your stream key'), ' — shown only now. Keep it secret: anyone with it can stream on your channel.'),
    h('div.keybox#stream-key', key), h('div.row', { style: 'margin-top:8px' }, copy));
}

function keyPanel() {
  const rotate = h('button#rotate-key', { type: 'button', onclick: async () => {
    if (live && !confirm('Rotating the key ends the live stream. Continue?')) return;
    try {
      const { data } = await api(`${channelPath(selected.channelID)}/stream-key`, { method: 'POST' });
      sessionStorage.setItem(KEY_STORE(selected.channelID), data.streamKey);
      showKey(data.streamKey);
    } catch (e) { toast(e.message); }
  } }, 'Rotate stream key');
  return h('section.panel', h('h2', 'Stream key'),
    h('p.muted', 'The key is stored hashed on the server and shown once. Rotating it makes a new one and stops the old one (and a stream using it).'),
    keyBox, rotate);
}

function obsPanel() {
  const whip = `${location.origin}/whip/${encodeURIComponent(selected.channelID)}`;
  return h('section.panel#obs', h('h2', 'Stream from OBS (30 or newer)'),
    h('ol.steps',
      h('li', 'Settings → Stream: ', h('strong', 'Service'), ' WHIP'),
      h('li', h('strong', 'Server'), ' ', h('code#obs-server', whip)),
      h('li', h('strong', 'Bearer Token'), ': your stream key (rotate it above to get one)'),
      h('li', 'Settings → Output (Advanced): ', h('strong', 'Keyframe Interval 1 s'), ', rate control CBR, no B-frames'),
      h('li', 'OBS 32.1+: ', h('strong', 'WHIP Simulcast total layers'), ' 3, so every viewer gets a layer their connection carries'),
      h('li', 'Start Streaming. A second publish replaces the first, so OBS reconnects cleanly.')));
}

function livePanel() {
  const preview = h('video#preview', { muted: true, playsinline: true, autoplay: true, style: 'width:100%;aspect-ratio:16/9;background:#000;border-radius:8px' });
  preview.muted = true;
  const status = h('span#live-status.badge.off', 'Offline');
  const bitrate = h('span#bitrate', '–');
  const viewers = h('span#viewer-count', '–');
  const layers = h('span#layers.muted');
  let source = 'camera';
  const chips = h('div.chips', { role: 'group', 'aria-label': 'Source' },
    ['camera', 'screen'].map((s) => h('button', { type: 'button', 'aria-pressed': String(s === source), dataset: { source: s }, onclick: (e) => {
      source = s;
      for (const b of chips.children) b.setAttribute('aria-pressed', String(b.dataset.source === s));
    } }, s === 'camera' ? 'Camera + mic' : 'Screen')));
  const heights = [1080, 720, 540, 360];
  const resolution = h('select#resolution', { 'aria-label': 'Camera resolution', onchange: (e) => localStorage.setItem('onair.studio.height', e.target.value) },
    heights.map((hh) => h('option', { value: hh, selected: String(hh) === (localStorage.getItem('onair.studio.height') || '720') }, `${hh}p`)));
  const go = h('button.primary#go-live', { type: 'button', onclick: () => (live ? stop() : start()) }, 'Go live');

  async function start() {
    let key = sessionStorage.getItem(KEY_STORE(selected.channelID));
    if (!key) {
      key = prompt('Paste the stream key (or cancel and rotate it to get a new one):');
      if (!key) return;
      sessionStorage.setItem(KEY_STORE(selected.channelID), key.trim());
    }
    go.disabled = true;
    let stream;
    try {
      stream = source === 'screen'
        ? await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: true })
        : await navigator.mediaDevices.getUserMedia({ video: { width: Math.round(Number(resolution.value) * 16 / 9), height: Number(resolution.value), frameRate: 30 }, audio: true });
      if (!stream.getAudioTracks().length && source === 'screen') {
        // Screen audio is optional; the server wants one audio track, so add the microphone.
        try { (await navigator.mediaDevices.getUserMedia({ audio: true })).getAudioTracks().forEach((t) => stream.addTrack(t)); } catch { /* video only */ }
      }
    } catch (e) {
      toast(`No ${source === 'screen' ? 'screen' : 'camera'}: ${e.message}`);
      go.disabled = false;
      return;
    }
    preview.srcObject = stream;
    const whip = new WhipClient(`/whip/${encodeURIComponent(selected.channelID)}`, sessionStorage.getItem(KEY_STORE(selected.channelID)));
    try {
      await whip.publish(stream, { encodings: ENCODINGS });
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      preview.srcObject = null;
      go.disabled = false;
      toast(e.status === 401 ? 'The stream key was refused: rotate it and try again.' : `Could not go live: ${e.message}`);
      if (e.status === 401) sessionStorage.removeItem(KEY_STORE(selected.channelID));
      return;
    }
    live = { whip, stream, prev: null };
    whip.addEventListener('state', (e) => {
      status.textContent = e.detail === 'connected' ? 'Live' : e.detail;
      status.className = `badge ${e.detail === 'connected' ? 'live' : 'off'}`;
      if (e.detail === 'failed') { toast('The connection to the server failed.'); stop(); }
    });
    for (const t of stream.getVideoTracks()) t.addEventListener('ended', () => stop());
    go.textContent = 'End stream';
    go.classList.replace('primary', 'danger');
    go.disabled = false;
    live.timer = setInterval(update, 1000);
    live.viewerTimer = setInterval(pollViewers, 5000);
    pollViewers();
  }

  async function update() {
    if (!live) return;
    const stats = await live.whip.pc.getStats();
    let bytes = 0;
    const parts = [];
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        bytes += s.bytesSent;
        if (s.frameWidth) parts.push(`${s.rid || ''} ${s.frameWidth}×${s.frameHeight}`);
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') bytes += s.bytesSent;
    });
    const now = performance.now();
    if (live.prev) {
      const kbps = ((bytes - live.prev.bytes) * 8) / (now - live.prev.t);
      bitrate.textContent = `${(kbps / 1000).toFixed(2)} Mb/s`;
      bitrate.dataset.kbps = Math.round(kbps);
    }
    live.prev = { bytes, t: now };
    layers.textContent = parts.sort().join(' · ');
  }

  async function pollViewers() {
    try {
      const { data } = await api(`${channelPath(selected.channelID)}/live-stream/currentWatcherCount`);
      viewers.textContent = data.currentWatcherCount;
      viewers.dataset.count = data.currentWatcherCount;
    } catch { /* keep the last value */ }
  }

  async function stop() {
    if (!live) return;
    const l = live;
    live = null;
    clearInterval(l.timer);
    clearInterval(l.viewerTimer);
    await l.whip.stop();
    l.stream.getTracks().forEach((t) => t.stop());
    preview.srcObject = null;
    status.textContent = 'Offline';
    status.className = 'badge off';
    go.textContent = 'Go live';
    go.classList.replace('danger', 'primary');
    bitrate.textContent = '–';
  }

  window.onair = { start, stop, get live() { return live; } };
  return h('section.panel#live-panel', h('h2', 'Go live from this browser'), preview,
    h('div.livebar', status, h('span', 'Bitrate ', bitrate), h('span', 'Viewers ', viewers)),
    h('p', layers),
    h('div.row', chips, resolution, go));
}

render();
