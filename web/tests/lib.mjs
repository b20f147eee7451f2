// Shared by the browser scenarios: one Debian Chromium per scenario (several contexts in it),
// the server URL from the environment, screenshots, and a check() that fails the run.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BASE = process.env.ONAIR_URL || 'http://127.0.0.1:8080';
export const SHOTS = process.env.ONAIR_SCREENSHOTS || join(dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1366, height: 768 };

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      // Hidden or occluded pages must keep decoding and painting in a headless run.
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
    ],
  });
}

// A browser context, signed in with `token` when given.
export async function context(browser, { token, viewport = DESKTOP } = {}) {
  const ctx = await browser.newContext({ viewport, baseURL: BASE });
  if (token) await ctx.addInitScript((t) => localStorage.setItem('onair.token', t), token);
  return ctx;
}

export async function page(ctx, path) {
  const p = await ctx.newPage();
  p.on('pageerror', (e) => log('pageerror', String(e)));
  p.on('console', (m) => { if (m.type() === 'error' || m.text().startsWith('[toast]') || process.env.ONAIR_WEB_CONSOLE) log('console', m.type(), m.text()); });
  if (path) await p.goto(path);
  return p;
}

export function log(...a) { console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a); }

let failures = 0;
export function check(ok, what, detail) {
  if (ok) log('ok  ', what);
  else { failures++; log('FAIL', what, detail === undefined ? '' : JSON.stringify(detail)); }
  return ok;
}

export async function screenshot(p, name, viewport) {
  mkdirSync(SHOTS, { recursive: true });
  if (viewport) await p.setViewportSize(viewport);
  await p.waitForTimeout(300);
  const file = join(SHOTS, `${name}.png`);
  await p.screenshot({ path: file });
  log('screenshot', file);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs the scenario and exits 1 on any failed check or exception.
export async function run(f) {
  const browser = await launch();
  const t0 = Date.now();
  try {
    await f(browser);
  } catch (e) {
    failures++;
    log('FAIL exception', e.stack || String(e));
    // What each page showed when it failed, for the log reader.
    let n = 0;
    for (const ctx of browser.contexts()) {
      for (const p of ctx.pages()) {
        const file = `${process.env.TMPDIR || '/tmp'}/onair-web-fail-${n++}.png`;
        await p.screenshot({ path: file }).catch(() => {});
        const text = await p.evaluate(() => document.body.innerText.slice(0, 600)).catch(() => '');
        log('page', p.url(), file, JSON.stringify(text));
      }
    }
  } finally {
    await browser.close().catch(() => {});
  }
  log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${failures ? `${failures} failed` : 'all passed'}`);
  process.exit(failures ? 1 : 0);
}

// Player numbers from the channel page (see window.onair in channel.js).
export async function playerStats(p) {
  return p.evaluate(async () => {
    const pl = window.onair && window.onair.player;
    if (!pl) return null;
    await pl.measure().catch(() => {});
    return { state: pl.state, mode: pl.mode, latencyMs: pl.latencyMs, frameDelay: pl.frameDelay ?? null, statsLatency: pl.statsLatency ?? null, rttMs: pl.rttMs ?? null, behindLive: pl.behindLive, ...(pl.videoStats || {}), videoWidth: pl.video.videoWidth, videoHeight: pl.video.videoHeight };
  });
}

// Reads the frame stamp that onair-loadtest's publisher paints into every frame (pattern.rs:
// the top 3 rows of 40 blocks carry sync 0xA5, a 32-bit index, a 64-bit wall-clock time in
// microseconds and a CRC-16/CCITT-FALSE). Publisher and browser share this machine's clock, so
// `Date.now() - stamp.ms` is the true glass-to-glass delay of the picture on screen.
export async function installStampReader(p) {
  await p.evaluate(() => {
    const crc16 = (bytes) => {
      let crc = 0xffff;
      for (const b of bytes) {
        crc ^= b << 8;
        for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
      }
      return crc;
    };
    window.readStamp = (video) => {
      const w = video.videoWidth, hgt = video.videoHeight;
      const b = Math.floor(w / 40);
      if (b < 4) return null;
      const c = document.createElement('canvas');
      c.width = w; c.height = b * 3;
      const g = c.getContext('2d', { willReadFrequently: true });
      g.drawImage(video, 0, 0, w, hgt, 0, 0, w, hgt);
      const d = g.getImageData(0, 0, w, b * 3).data;
      const m = Math.floor(b / 4);
      const payload = new Uint8Array(15);
      for (let bit = 0; bit < 120; bit++) {
        const col = bit % 40, row = Math.floor(bit / 40);
        let sum = 0, n = 0;
        for (let y = row * b + m; y < (row + 1) * b - m; y++) {
          for (let x = col * b + m; x < (col + 1) * b - m; x++) {
            const i = (y * w + x) * 4;
            sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
            n++;
          }
        }
        if (n && sum / n > 128) payload[bit >> 3] |= 0x80 >> (bit % 8);
      }
      if (payload[0] !== 0xa5) return null;
      if (((payload[13] << 8) | payload[14]) !== crc16(payload.slice(0, 13))) return null;
      const dv = new DataView(payload.buffer);
      return { index: dv.getUint32(1), ms: Number(dv.getBigUint64(5) / 1000n) };
    };
    // The stamp of the next frame the element presents, and when (wall clock).
    window.nextStamp = (video) => new Promise((resolve) => {
      video.requestVideoFrameCallback(() => resolve({ stamp: window.readStamp(video), at: Date.now() }));
    });
  });
}
