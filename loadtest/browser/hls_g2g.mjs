// Glass-to-glass latency of the LL-HLS fallback as a viewer sees it: hls.js (low-latency mode)
// in headless Chromium plays a stream whose frames carry the publisher's send time (the
// loadtest pattern: 3 rows of 40 black/white blocks = sync byte, u32 index, u64 microseconds,
// CRC-16). Every presented frame is drawn to a canvas, its stamp decoded (stamp.js), and the
// latency is the frame's expected display time minus the stamp. Prints one JSON object.
//
// node loadtest/browser/hls_g2g.mjs <master.m3u8 URL> [seconds]
// Needs playwright-core and hls.js from web/node_modules (npm ci in web/) and Debian chromium.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const hlsScript = require.resolve('hls.js/dist/hls.min.js');
const stampScript = fileURLToPath(new URL('./stamp.js', import.meta.url));

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
  await page.addScriptTag({ path: stampScript });
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
    const read = () => window.onairReadStamp(video, canvas, ctx);
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
