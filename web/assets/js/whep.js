// WHEP (draft-ietf-wish-whep) and WHIP (RFC 9725) clients with the WHEP core extensions the
// server implements: server-sent events and simulcast layer selection (Link rels below).

const REL_SSE = 'urn:ietf:params:whep:ext:core:server-sent-events';
const REL_LAYER = 'urn:ietf:params:whep:ext:core:layer';

export class OfflineError extends Error {
  constructor(retryAfter) {
    super('the channel is not live');
    this.retryAfter = retryAfter;
  }
}

export class HttpError extends Error {
  constructor(status, text) {
    super(`HTTP ${status}${text ? `: ${text}` : ''}`);
    this.status = status;
  }
}

// `<url>; rel="x"; k="v", <url2>; rel=...` -> [{url, rel, params}]
export function parseLinks(header) {
  const out = [];
  if (!header) return out;
  for (const m of header.matchAll(/<([^>]*)>((?:\s*;\s*[^;,]+=(?:"[^"]*"|[^;,]*))*)/g)) {
    const params = {};
    for (const p of m[2].matchAll(/;\s*([^=;\s]+)\s*=\s*(?:"([^"]*)"|([^;,]*))/g)) {
      params[p[1].toLowerCase()] = p[2] ?? p[3].trim();
    }
    out.push({ url: m[1], rel: params.rel || '', params });
  }
  return out;
}

async function postOffer(url, pc, token) {
  url = new URL(url, location.href).href;
  const offer = await pc.createOffer();
  // No wait for ICE gathering: the server is ICE-lite, it never checks towards our candidates
  // and learns our address from our own checks, so the offer goes out at once (saves ~120 ms of
  // time to first frame in Chromium; loadtest/browser/whep_g2g.mjs measures both).
  await pc.setLocalDescription(offer);
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  if (res.status === 409) {
    throw new OfflineError(Number(res.headers.get('Retry-After')) || 5);
  }
  if (res.status !== 201) {
    let detail = '';
    try { detail = (await res.json()).detail || ''; } catch { /* not a problem document */ }
    throw new HttpError(res.status, detail);
  }
  const answer = await res.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const resource = new URL(res.headers.get('Location'), url).href;
  return { location: resource, links: parseLinks(res.headers.get('Link')) };
}

// A viewer. Events: `track` (MediaStream), `state` (RTCPeerConnectionState), `layers`
// ({rid, bitrate}[] highest first), `viewercount`, `active`, `inactive`, `chat` (the data
// channel, once created).
export class WhepClient extends EventTarget {
  constructor(url, { token, chat = true } = {}) {
    super();
    this.url = new URL(url, location.href).href;
    this.token = token;
    this.wantChat = chat;
    this.pc = null;
    this.location = null;
    this.layerUrl = null;
    this.mediaId = '1';
    this.events = null;
    this.closed = false;
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  async connect() {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const stream = new MediaStream();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    // Chat rides the same connection; the data channel must exist before the offer.
    if (this.wantChat) {
      this.chat = pc.createDataChannel('chat', { ordered: true });
      this.emit('chat', this.chat);
    }
    pc.addEventListener('track', (ev) => {
      stream.addTrack(ev.track);
      this.emit('track', stream);
    });
    pc.addEventListener('connectionstatechange', () => this.emit('state', pc.connectionState));
    try {
      const { location, links } = await postOffer(this.url, pc, this.token);
      this.location = location;
      const sse = links.find((l) => l.rel === REL_SSE);
      const layer = links.find((l) => l.rel === REL_LAYER);
      this.layerUrl = layer ? new URL(layer.url, this.url).href : null;
      if (sse) this.openEvents(new URL(sse.url, this.url).href).catch(() => { /* events are optional */ });
    } catch (e) {
      pc.close();
      throw e;
    }
    return stream;
  }

  async openEvents(url) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(['active', 'inactive', 'layers', 'viewercount']),
    });
    if (res.status !== 201 || this.closed) return;
    const es = new EventSource(new URL(res.headers.get('Location'), url).href);
    this.events = es;
    es.addEventListener('active', () => this.emit('active'));
    es.addEventListener('inactive', () => this.emit('inactive'));
    es.addEventListener('viewercount', (ev) => {
      try { this.emit('viewercount', JSON.parse(ev.data).viewercount); } catch { /* ignore */ }
    });
    es.addEventListener('layers', (ev) => {
      try {
        const data = JSON.parse(ev.data);
        const [mediaId, list] = Object.entries(data)[0] || [];
        if (!list) return;
        this.mediaId = mediaId;
        this.emit('layers', [...list].sort((a, b) => b.bitrate - a.bitrate));
      } catch { /* ignore a malformed event */ }
    });
    // The stream ends with the session; EventSource would otherwise retry a 404 forever.
    es.addEventListener('error', () => { if (es.readyState === EventSource.CLOSED || this.closed) es.close(); });
  }

  // Pins a simulcast layer (rid), or returns to automatic choice (null).
  async selectLayer(rid) {
    if (!this.layerUrl) throw new Error('this server offers no layer selection');
    const res = rid
      ? await fetch(this.layerUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ mediaId: this.mediaId, rid }),
      })
      : await fetch(this.layerUrl, { method: 'DELETE' });
    if (!res.ok) throw new HttpError(res.status);
  }

  close() {
    this.closed = true;
    if (this.events) this.events.close();
    if (this.location) fetch(this.location, { method: 'DELETE', keepalive: true }).catch(() => {});
    if (this.pc) this.pc.close();
  }
}

// A publisher: sends `stream` (one video track with simulcast encodings, one audio track).
export class WhipClient extends EventTarget {
  constructor(url, key) {
    super();
    this.url = new URL(url, location.href).href;
    this.key = key;
    this.pc = null;
    this.location = null;
  }

  async publish(stream, { encodings, chat = true } = {}) {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const [video] = stream.getVideoTracks();
    const [audio] = stream.getAudioTracks();
    if (video) {
      const t = pc.addTransceiver(video, { direction: 'sendonly', streams: [stream], sendEncodings: encodings });
      // H.264 first: the server forwards it untouched to every viewer, TVs included.
      const caps = RTCRtpSender.getCapabilities?.('video');
      if (caps && t.setCodecPreferences) {
        const rank = (c) => (/h264/i.test(c.mimeType) ? (/packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 1) : 2);
        t.setCodecPreferences([...caps.codecs].sort((a, b) => rank(a) - rank(b)));
      }
    }
    if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
    if (chat) this.chat = pc.createDataChannel('chat', { ordered: true });
    pc.addEventListener('connectionstatechange', () => this.dispatchEvent(new CustomEvent('state', { detail: pc.connectionState })));
    try {
      const { location } = await postOffer(this.url, pc, this.key);
      this.location = location;
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  async stop() {
    if (this.location) await fetch(this.location, { method: 'DELETE' }).catch(() => {});
    if (this.pc) this.pc.close();
  }
}
