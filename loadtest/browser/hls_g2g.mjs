// Glass-to-glass latency of the LL-HLS fallback as a viewer sees it: hls.js (low-latency mode)
// in headless Chromium plays a stream whose frames carry the publisher's send time (the
// loadtest pattern: 3 rows of 40 black/white blocks = sync byte, u32 index, u64 microseconds,
// CRC-16). Every presented frame is drawn to a canvas, its stamp decoded, and the latency is
// the frame's expected display time minus the stamp. Prints one JSON object.
//
// node loadtest/browser/hls_g2g.mjs <master.m3u8 URL> [seconds]
// Needs playwright-core and hls.js from web/node_modules (npm ci in web/) and Debian chromium.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const hlsScript = require.resolve('hls.js/dist/hls.min.js');

const src = process.argv[2];
const seconds = Number(process.argv[3] || 20);
if (!src) {
  console.error('usage: hls_g2g.mjs <master.m3u8 URL> [seconds]');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--autoplay-policy=no-user-gesture-required', '--no-sandbox'],
});
try {
  const page = await browser.newPage();
  const origin = new URL(src).origin;
  // A page on the server's origin: no CORS questions for the media requests.
  await page.goto(`${origin}/healthz`);
  await page.setContent('<video id="v" muted playsinline></video>');
  await page.addScriptTag({ path: hlsScript });
  const result = await page.evaluate(async ({ src, seconds }) => {
    const video = document.getElementById('v');
    const errors = [];
    // hls.js only catches up to its target latency after a stall if it may play faster.
    const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
    let stalls = 0;
    video.addEventListener('waiting', () => stalls++);
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) errors.push(`${d.type}/${d.details}`); });
    hls.loadSource(src);
    hls.attachMedia(video);
    video.play().catch(() => {});
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const crc16 = (bytes) => {
      let crc = 0xffff;
      for (const b of bytes) {
        crc ^= b << 8;
        for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
      }
      return crc;
    };
    const read = () => {
      const w = video.videoWidth, h = video.videoHeight;
      const b = Math.floor(w / 40);
      if (b < 4) return null;
      canvas.width = w; canvas.height = b * 3;
      ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
      const img = ctx.getImageData(0, 0, w, b * 3).data;
      const bytes = new Uint8Array(15);
      for (let bit = 0; bit < 120; bit++) {
        const col = bit % 40, row = Math.floor(bit / 40);
        const m = Math.floor(b / 4);
        let sum = 0, n = 0;
        for (let y = row * b + m; y < (row + 1) * b - m; y++) {
          for (let x = col * b + m; x < (col + 1) * b - m; x++) {
            const i = (y * w + x) * 4;
            sum += 0.299 * img[i] + 0.587 * img[i + 1] + 0.114 * img[i + 2];
            n++;
          }
        }
        if (sum / n > 128) bytes[bit >> 3] |= 0x80 >> (bit & 7);
      }
      if (bytes[0] !== 0xa5) return null;
      if (crc16(bytes.subarray(0, 13)) !== ((bytes[13] << 8) | bytes[14])) return null;
      const dv = new DataView(bytes.buffer);
      return { index: dv.getUint32(1), us: Number(dv.getBigUint64(5)) };
    };
    const samples = [];
    const hlsLatency = [];
    let lastIndex = -1, frames = 0, unreadable = 0;
    const start = performance.now();
    await new Promise((resolve) => {
      const onFrame = (_now, meta) => {
        frames++;
        const stamp = read();
        if (!stamp) unreadable++;
        else if (stamp.index !== lastIndex) {
          lastIndex = stamp.index;
          const shownUs = (performance.timeOrigin + meta.expectedDisplayTime) * 1000;
          samples.push((shownUs - stamp.us) / 1000);
          if (Number.isFinite(hls.latency)) hlsLatency.push(hls.latency * 1000);
        }
        if (performance.now() - start < seconds * 1000) video.requestVideoFrameCallback(onFrame);
        else resolve();
      };
      video.requestVideoFrameCallback(onFrame);
      setTimeout(resolve, (seconds + 30) * 1000);
    });
    return { samples, hlsLatency, frames, unreadable, errors, stalls, width: video.videoWidth, height: video.videoHeight };
  }, { src, seconds });
  const pct = (v, p) => {
    if (!v.length) return null;
    const s = [...v].sort((a, b) => a - b);
    return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
  };
  // The first seconds are start-up (hls.js seeks to the live edge); judge the steady state.
  const steady = result.samples.slice(Math.floor(result.samples.length / 4));
  console.log(JSON.stringify({
    frames: result.frames,
    stamped: result.samples.length,
    unreadable: result.unreadable,
    size: `${result.width}x${result.height}`,
    g2g_ms: { p50: pct(steady, 50), p95: pct(steady, 95), max: pct(steady, 100) },
    hlsjs_latency_ms: { p50: pct(result.hlsLatency, 50) },
    stalls: result.stalls,
    errors: result.errors,
  }));
} finally {
  await browser.close();
}
