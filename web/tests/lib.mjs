// Shared by the browser scenarios: one Debian Chromium per scenario (several contexts in it),
// the server URL from the environment, screenshots, and a check() that fails the run.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
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

// Reads the frame stamp that onair-loadtest's publisher paints into every frame, with the
// reader the latency benchmarks use (loadtest/browser/stamp.js). Publisher and browser share
// this machine's clock, so `Date.now() - stamp.ms` is the true glass-to-glass delay of the
// picture on screen.
const STAMP_READER = readFileSync(new URL('../../loadtest/browser/stamp.js', import.meta.url), 'utf8');

export async function installStampReader(p) {
  // Evaluated rather than added as a script tag: no page policy can block it.
  await p.evaluate(STAMP_READER);
  await p.evaluate(() => {
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    window.readStamp = (video) => {
      const s = window.onairReadStamp(video, canvas, ctx);
      return s && { index: s.index, ms: Math.floor(s.us / 1000) };
    };
    // The stamp of the next frame the element presents, and when (wall clock).
    window.nextStamp = (video) => new Promise((resolve) => {
      video.requestVideoFrameCallback(() => resolve({ stamp: window.readStamp(video), at: Date.now() }));
    });
  });
}
