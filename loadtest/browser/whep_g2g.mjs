// Time to first frame and glass-to-glass latency of WebRTC playback as a browser viewer sees it:
// N WHEP viewers in one headless Chromium page play a stream whose frames carry the publisher's
// send time (the loadtest pattern, read by stamp.js).
//
// Each viewer joins in turn (WHEP_G2G_STAGGER_MS apart, default 300): an RTCPeerConnection with
// recvonly video + audio, the offer at once without candidates like the web app (the server is
// ICE-lite), or once ICE gathering completes when WHEP_G2G_GATHER_MS > 0 (waits at most that
// long), POST to the
// WHEP URL (409 = not live yet: retried with a fresh connection), the 201 answer applied, the
// stream on a muted autoplay <video>. TTFF = the expected display time of the first presented
// frame (requestVideoFrameCallback) minus t0, taken just before createOffer; the phases are
// cumulative times from the same t0 (first_captured: when the publisher drew that first frame).
// Then for <seconds> every presented frame is drawn to a canvas and its stamp decoded: latency =
// the frame's expected display time minus the stamp (encode, SFU, network, jitter buffer,
// decode, render). The first second after each viewer's first frame is left out (TTFF covers
// the join). Prints one JSON object.
//
// node loadtest/browser/whep_g2g.mjs <WHEP URL> <viewers> <seconds>
// Needs playwright-core from web/node_modules (npm ci in web/) and Debian chromium.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const stampScript = fileURLToPath(new URL('./stamp.js', import.meta.url));

const url = process.argv[2];
const viewers = Number(process.argv[3] || 10);
const seconds = Number(process.argv[4] || 20);
const stagger = Number(process.env.WHEP_G2G_STAGGER_MS || 300);
// The longest wait for ICE gathering before the offer goes out (0: none, as the web app).
const gatherMs = Number(process.env.WHEP_G2G_GATHER_MS ?? 0);
if (!url || !(viewers > 0) || !(seconds > 0)) {
  console.error('usage: whep_g2g.mjs <WHEP URL> <viewers> <seconds>');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--autoplay-policy=no-user-gesture-required', '--no-sandbox', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu',
    // A headless page must keep decoding and painting at full rate.
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
  const origin = new URL(url).origin;
  // A page on the server's origin: no CORS questions for the WHEP requests.
  await page.goto(`${origin}/healthz`);
  await page.setContent(
    '<style>body{margin:0;display:flex;flex-wrap:wrap}video{width:128px;height:72px}</style>',
  );
  await page.addScriptTag({ path: stampScript });
  const result = await page.evaluate(async ({ url, viewers, seconds, stagger, gatherMs }) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const errors = [];
    const warmupMs = 1000;

    const gathered = (pc, ms) => {
      if (pc.iceGatheringState === 'complete') return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
        });
      });
    };

    async function viewer(i) {
      const v = {
        i, retries: 0, phases: {}, latency: [], network: [], frames: 0, presented: 0, repeated: 0,
        unreadable: 0,
      };
      let pc, t0, res;
      const mark = (name, at = performance.now()) => { if (!(name in v.phases)) v.phases[name] = at - t0; };
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      document.body.appendChild(video);
      for (;;) {
        pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
        pc.addTransceiver('video', { direction: 'recvonly' });
        pc.addTransceiver('audio', { direction: 'recvonly' });
        v.phases = {};
        t0 = performance.now();
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        mark('offer');
        await gathered(pc, gatherMs);
        mark('gathered');
        res = await fetch(url, {
          method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
        });
        if (res.status === 409 && v.retries < 100) {
          pc.close();
          v.retries++;
          await sleep(200);
          continue;
        }
        break;
      }
      if (res.status !== 201) {
        pc.close();
        throw new Error(`viewer ${i}: WHEP POST ${res.status} ${await res.text()}`);
      }
      const answer = await res.text();
      mark('answered');
      const resource = new URL(res.headers.get('Location'), url).href;
      const stream = new MediaStream();
      pc.addEventListener('iceconnectionstatechange', () => {
        if (pc.iceConnectionState === 'connected') mark('ice_connected');
      });
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'connected') mark('connected');
        if (pc.connectionState === 'failed') errors.push(`viewer ${i}: connection failed`);
      });
      pc.addEventListener('track', (ev) => {
        stream.addTrack(ev.track);
        if (ev.track.kind === 'video') {
          // A remote track unmutes on its first RTP packet (padding or probing included).
          if (ev.track.muted) ev.track.addEventListener('unmute', () => mark('first_rtp'), { once: true });
          else mark('first_rtp');
        }
      });
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      mark('answer_applied');
      video.srcObject = stream;
      video.play().catch(() => {});

      let firstAt = null, firstPresented = 0, lastIndex = -1;
      await new Promise((resolve) => {
        const giveUp = setTimeout(() => {
          if (firstAt === null) errors.push(`viewer ${i}: no frame`);
          resolve();
        }, (seconds + 30) * 1000);
        const onFrame = (now, meta) => {
          const stamp = window.onairReadStamp(video, canvas, ctx);
          if (firstAt === null) {
            firstAt = now;
            firstPresented = meta.presentedFrames;
            // The first picture: drawn by the publisher, its last packet in, shown.
            if (stamp) mark('first_captured', stamp.us / 1000 - performance.timeOrigin);
            if (meta.receiveTime) mark('first_received', meta.receiveTime);
            // `now` is the rendering frame's start, possibly before the frame arrived.
            mark('first_frame', meta.expectedDisplayTime);
          }
          // Callbacks can be skipped under load: the compositor's counter says what was shown.
          v.presented = meta.presentedFrames - firstPresented + 1;
          if (now - firstAt >= seconds * 1000) {
            clearTimeout(giveUp);
            resolve();
            return;
          }
          video.requestVideoFrameCallback(onFrame);
          v.frames++;
          if (!stamp) { v.unreadable++; return; }
          if (stamp.index === lastIndex) { v.repeated++; return; }
          lastIndex = stamp.index;
          if (now - firstAt < warmupMs) return;
          const shownUs = (performance.timeOrigin + meta.expectedDisplayTime) * 1000;
          v.latency.push((shownUs - stamp.us) / 1000);
          if (meta.receiveTime) v.network.push(((performance.timeOrigin + meta.receiveTime) * 1000 - stamp.us) / 1000);
        };
        video.requestVideoFrameCallback(onFrame);
      });

      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          v.stats = {
            framesReceived: s.framesReceived || 0,
            framesDecoded: s.framesDecoded || 0,
            framesDropped: s.framesDropped || 0,
            freezeCount: s.freezeCount || 0,
            freezeSeconds: s.totalFreezesDuration || 0,
            packetsLost: s.packetsLost || 0,
            nackCount: s.nackCount || 0,
            pliCount: s.pliCount || 0,
            jitterBufferDelay: s.jitterBufferDelay || 0,
            jitterBufferEmittedCount: s.jitterBufferEmittedCount || 0,
            totalDecodeTime: s.totalDecodeTime || 0,
            decoder: s.decoderImplementation,
          };
        }
      }
      v.size = `${video.videoWidth}x${video.videoHeight}`;
      pc.close();
      fetch(resource, { method: 'DELETE' }).catch(() => {});
      video.remove();
      return v;
    }

    const runs = [];
    for (let i = 0; i < viewers; i++) {
      runs.push(viewer(i).catch((e) => { errors.push(String(e)); return null; }));
      if (i + 1 < viewers) await sleep(stagger);
    }
    const done = (await Promise.all(runs)).filter(Boolean);
    // How far the page's clock (timeOrigin + now) is from the wall clock the publisher stamps with.
    const clockSkewMs = Date.now() - (performance.timeOrigin + performance.now());
    return { viewers: done, errors, clockSkewMs };
  }, { url, viewers, seconds, stagger, gatherMs });

  const pct = (v, p) => {
    if (!v.length) return null;
    const s = [...v].sort((a, b) => a - b);
    return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 10) / 10;
  };
  const vs = result.viewers;
  const phaseNames = ['offer', 'gathered', 'answered', 'answer_applied', 'ice_connected', 'connected', 'first_rtp', 'first_captured',
    'first_received', 'first_frame'];
  const phases = {};
  for (const name of phaseNames) {
    const xs = vs.map((v) => v.phases[name]).filter((x) => x != null);
    phases[name] = { p50: pct(xs, 50), p95: pct(xs, 95) };
  }
  const latency = vs.flatMap((v) => v.latency);
  const network = vs.flatMap((v) => v.network);
  const sum = (k) => vs.reduce((a, v) => a + (v.stats?.[k] || 0), 0);
  const jbCount = sum('jitterBufferEmittedCount');
  console.log(JSON.stringify({
    viewers: vs.length,
    seconds,
    size: [...new Set(vs.map((v) => v.size))].join(','),
    ttff_ms: phases.first_frame,
    phases_ms: phases,
    latency_ms: { p50: pct(latency, 50), p95: pct(latency, 95), p99: pct(latency, 99), max: pct(latency, 100) },
    // Stamp to the arrival of the frame's last packet (encode, SFU, loopback): the rest of the
    // latency is the browser's jitter buffer, decode and render.
    stamp_to_receive_ms: { p50: pct(network, 50), p95: pct(network, 95) },
    samples: latency.length,
    // rVFC callbacks (stamps read) and frames the compositor presented in the same windows.
    frames: vs.reduce((a, v) => a + v.frames, 0),
    presented: vs.reduce((a, v) => a + v.presented, 0),
    repeated: vs.reduce((a, v) => a + v.repeated, 0),
    unreadable: vs.reduce((a, v) => a + v.unreadable, 0),
    stats: {
      framesReceived: sum('framesReceived'),
      framesDecoded: sum('framesDecoded'),
      framesDropped: sum('framesDropped'),
      freezeCount: sum('freezeCount'),
      freezeSeconds: Math.round(sum('freezeSeconds') * 100) / 100,
      packetsLost: sum('packetsLost'),
      nackCount: sum('nackCount'),
      pliCount: sum('pliCount'),
      jitterBufferMs: jbCount ? Math.round((sum('jitterBufferDelay') / jbCount) * 10000) / 10 : null,
      decodeMs: sum('framesDecoded') ? Math.round((sum('totalDecodeTime') / sum('framesDecoded')) * 10000) / 10 : null,
      decoder: [...new Set(vs.map((v) => v.stats?.decoder).filter(Boolean))].join(','),
    },
    retries: vs.reduce((a, v) => a + v.retries, 0),
    clock_skew_ms: Math.round(result.clockSkewMs * 10) / 10,
    errors: [...errors, ...result.errors],
    ...(process.env.WHEP_G2G_VERBOSE ? {
      per_viewer: vs.map((v) => ({
        i: v.i,
        phases: Object.fromEntries(Object.entries(v.phases).map(([k, x]) => [k, Math.round(x)])),
        latency_p50: pct(v.latency, 50),
        frames: v.frames,
        presented: v.presented,
        stats: v.stats,
      })),
    } : {}),
  }));
} finally {
  await browser.close();
}
