// One signed-in viewer on a simulcast stream: quality menu (low layer -> smaller frames), pause
// / unpause from the recorded buffer / rewind / jump to live, follow and subscribe (with a
// refused request rolled back), and preferences that survive a reload.
import { run, context, page, check, log, sleep, playerStats, screenshot, installStampReader, DESKTOP, PHONE } from './lib.mjs';

const CH = process.env.ONAIR_CHANNEL || 'chan';

async function waitLive(p) {
  await p.waitForFunction(() => window.onair?.player?.state === 'live', null, { timeout: 20000 });
}

// Mode, behind-live seconds and what the shown recording frame stands for (page clock).
const shiftState = (p) => p.evaluate(() => {
  const pl = window.onair.player;
  return { mode: pl.mode, behind: pl.behindLive, content: pl.dvr ? pl.dvr.contentTime() : null, now: performance.now(), pausedAt: pl.pausedAt, dvrTime: pl.dvrVideo.currentTime, dvrPaused: pl.dvrVideo.paused, liveHidden: pl.video.classList.contains('hidden') };
});

await run(async (browser) => {
  const ctx = await context(browser, { token: process.env.ONAIR_VIEWER_TOKEN });
  const p = await page(ctx, `/c/${CH}`);
  await waitLive(p);
  await installStampReader(p);

  // ---- true glass-to-glass delay (stamp painted by the publisher) next to the readout
  await sleep(2000);
  const g2g = [];
  for (let i = 0; i < 10; i++) {
    const s = await p.evaluate(() => window.nextStamp(window.onair.player.video));
    if (s.stamp) g2g.push(s.at - s.stamp.ms);
    await sleep(200);
  }
  const readout = (await playerStats(p)).latencyMs;
  log('glass-to-glass from frame stamps (ms)', JSON.stringify(g2g), 'readout', Math.round(readout));
  const median = [...g2g].sort((a, b) => a - b)[Math.floor(g2g.length / 2)];
  check(g2g.length >= 5 && median < 500 && Math.max(...g2g) < 1000, 'true glass-to-glass delay: median under 500 ms, every frame under 1 s', g2g);
  check(readout != null && readout < 500, 'latency readout under 500 ms', readout);

  // ---- quality menu
  await p.waitForFunction(() => document.querySelectorAll('#quality option').length >= 4, null, { timeout: 15000 });
  const opts = await p.$$eval('#quality option', (o) => o.map((x) => `${x.value}:${x.dataset.rid || ''}`));
  log('quality options', opts.join(' '));
  await p.waitForFunction(() => window.onair.player.video.videoWidth >= 640, null, { timeout: 15000 }).catch(() => {});
  const before = await playerStats(p);
  await p.selectOption('#quality', 'low');
  const t0 = Date.now();
  await p.waitForFunction(() => window.onair.player.video.videoWidth > 0 && window.onair.player.video.videoWidth <= 320, null, { timeout: 10000 });
  const after = await playerStats(p);
  log('frame size', `${before.videoWidth}x${before.videoHeight}`, '->', `${after.videoWidth}x${after.videoHeight}`, 'in', Date.now() - t0, 'ms');
  check(after.videoWidth < before.videoWidth, 'the low layer has a smaller decoded frame', { before: before.frameWidth, after: after.frameWidth });
  const fd = after.framesDecoded;
  await sleep(1000);
  check((await playerStats(p)).framesDecoded > fd, 'frames keep coming on the low layer');

  await p.selectOption('#quality', 'auto');
  await p.waitForFunction(() => window.onair.player.video.videoWidth >= 640, null, { timeout: 15000 }).catch(() => {});

  // ---- pause, unpause from the paused moment, rewind, jump to live
  await p.waitForFunction(() => window.onair.player.shift.earliest !== null && performance.now() - window.onair.player.shift.earliest > 12000, null, { timeout: 30000 });
  await p.click('#play');
  // What the paused picture shows (its stamp), to compare with the first recorded frame.
  const atPause = await p.evaluate(() => window.readStamp(window.onair.player.video));
  const paused = await shiftState(p);
  check(paused.mode === 'paused', 'pause', paused.mode);
  check(!!atPause, 'the paused picture carries a readable stamp', atPause);
  const decodedAtPause = (await playerStats(p)).framesDecoded;
  const bytesAtPause = await p.evaluate(() => window.onair.player.shift.bytes);
  await sleep(5000);
  const decodedLater = (await playerStats(p)).framesDecoded;
  const bytesLater = await p.evaluate(() => window.onair.player.shift.bytes);
  const idb = await p.evaluate(() => new Promise((resolve) => {
    const r = indexedDB.open('onair-timeshift');
    r.onsuccess = () => { const c = r.result.transaction('chunks').objectStore('chunks').count(); c.onsuccess = () => resolve(c.result); };
    r.onerror = () => resolve(-1);
  }));
  check(decodedLater > decodedAtPause + 30, 'while paused the stream keeps arriving', { decodedAtPause, decodedLater });
  check(bytesLater > bytesAtPause && idb > 5, 'while paused it is recorded to IndexedDB', { bytesAtPause, bytesLater, chunks: idb });
  // Unpause: the first frame the recording shows must be the paused moment (by its stamp).
  const first = await p.evaluate(async () => {
    const pl = window.onair.player;
    document.querySelector('#play').click();
    while (pl.el.dataset.dvr !== 'playing') await new Promise((r) => setTimeout(r, 10));
    return { stamp: window.readStamp(pl.dvrVideo), at: Date.now() };
  });
  log('paused at frame', atPause && atPause.index, 'unpaused at frame', first.stamp && first.stamp.index,
    'stamp difference', first.stamp && atPause ? first.stamp.ms - atPause.ms : null, 'ms; behind live', first.stamp ? first.at - first.stamp.ms : null, 'ms');
  check(first.stamp && atPause && Math.abs(first.stamp.ms - atPause.ms) < 500, 'unpause continues from the paused moment (frame stamps)', { atPause, first });
  check(first.stamp && first.at - first.stamp.ms > 4500 && first.at - first.stamp.ms < 7000, 'the picture is about 5 s behind live (frame stamps)', first);
  await p.waitForFunction(() => window.onair.player.el.dataset.dvr === 'playing' && !window.onair.player.dvrVideo.paused, null, { timeout: 10000 });
  const resumed = await shiftState(p);
  check(resumed.behind > 4 && resumed.behind < 7, 'the readout says about 5 s behind live', resumed.behind);
  check(resumed.liveHidden, 'the recording is on screen, not the live picture');
  const jl = await p.isVisible('#jump-live');
  check(jl, 'a jump-to-live button is shown');
  await sleep(3000);
  const later = await shiftState(p);
  check(later.dvrTime - resumed.dvrTime > 2.3, 'the recording plays on in real time', later.dvrTime - resumed.dvrTime);
  check(Math.abs(later.behind - resumed.behind) < 1, 'and stays the same distance behind live', [resumed.behind, later.behind]);
  await screenshot(p, 'channel-timeshift-desktop', DESKTOP);
  await p.click('#rewind');
  await p.waitForFunction(() => window.onair.player.el.dataset.dvr === 'playing', null, { timeout: 10000 });
  await sleep(600);
  const rew = await p.evaluate(() => window.nextStamp(window.onair.player.dvrVideo));
  const rewBehind = rew.stamp ? rew.at - rew.stamp.ms : null;
  log('after rewind the picture is', rewBehind, 'ms behind live');
  check(rewBehind > 13500 && rewBehind < 17500, 'rewind 10 s goes 10 s further back (frame stamps)', rew);
  await p.click('#jump-live');
  // The live element was paused for a while: give its renderer a moment to settle.
  await sleep(3000);
  const back = await shiftState(p);
  const backStats = await playerStats(p);
  const live = await p.evaluate(() => window.nextStamp(window.onair.player.video));
  check(back.mode === 'live' && !back.liveHidden && back.behind === 0, 'jump to live', back);
  check(live.stamp && live.at - live.stamp.ms < 500, 'the picture is live again (frame stamps)', live);
  check(await p.evaluate(() => !window.onair.player.video.paused), 'the live picture plays again');
  check(backStats.latencyMs != null && backStats.latencyMs < 500, 'latency readout back under 500 ms', backStats.latencyMs);

  // ---- follow (and a refused follow rolled back)
  if ((await p.getAttribute('#follow', 'aria-pressed')) === 'true') {
    await p.click('#follow');
    await p.waitForFunction(() => document.querySelector('#follow').getAttribute('aria-pressed') === 'false' && !document.querySelector('#follow').disabled);
  }
  const f0 = Number(await p.getAttribute('#followers', 'data-count'));
  await p.route('**/following?op=FOLLOW', (r) => r.fulfill({ status: 503, contentType: 'application/problem+json', body: '{"type":"x","title":"Service unavailable","status":503}' }));
  const toast = p.waitForSelector('.toast', { timeout: 5000 });
  await p.click('#follow');
  await toast;
  await p.waitForFunction((n) => Number(document.querySelector('#followers').dataset.count) === n && document.querySelector('#follow').getAttribute('aria-pressed') === 'false', f0, { timeout: 5000 });
  check(true, 'a refused follow is rolled back with a message');
  await p.unroute('**/following?op=FOLLOW');
  await p.click('#follow');
  await p.waitForFunction(() => document.querySelector('#follow').getAttribute('aria-pressed') === 'true');
  check(Number(await p.getAttribute('#followers', 'data-count')) === f0 + 1, 'follow updates the count at once');

  // ---- subscribe with the test provider
  await p.selectOption('#tier', '2');
  await p.click('#subscribe');
  await p.waitForSelector('#sub-badge:not(.hidden)', { timeout: 5000 });
  check(/Tier 2/.test(await p.textContent('#sub-badge')), 'subscribe shows the badge', await p.textContent('#sub-badge'));

  // ---- preferences survive a reload; follow and subscription come from the server
  await p.selectOption('#quality', 'low');
  await p.evaluate(() => { const v = document.querySelector('#volume'); v.value = '0.3'; v.dispatchEvent(new Event('input')); });
  await p.reload();
  await waitLive(p);
  await p.waitForFunction(() => document.querySelector('#follow')?.getAttribute('aria-pressed') === 'true', null, { timeout: 5000 });
  check(Number(await p.getAttribute('#followers', 'data-count')) === f0 + 1, 'after a reload the follower count includes the follow', await p.getAttribute('#followers', 'data-count'));
  check(await p.isVisible('#sub-badge'), 'after a reload the subscriber badge is shown');
  const vol = await p.evaluate(() => window.onair.player.video.volume);
  check(Math.abs(vol - 0.3) < 0.01, 'volume is restored', vol);
  await p.waitForFunction(() => document.querySelectorAll('#quality option').length >= 4, null, { timeout: 15000 });
  check((await p.inputValue('#quality')) === 'low', 'quality choice is restored', await p.inputValue('#quality'));
  await p.waitForFunction(() => window.onair.player.video.videoWidth > 0 && window.onair.player.video.videoWidth <= 320, null, { timeout: 10000 })
    .then(() => check(true, 'and applied to the new session'), () => check(false, 'and applied to the new session'));
  // A subscriber's chat line carries the badge.
  await p.fill('#chat-input', 'subscribed!');
  await p.press('#chat-input', 'Enter');
  await p.waitForSelector('#chat-log li[data-offset] .badge.sub', { timeout: 5000 });
  check(true, "the subscriber's chat message carries the badge");
  await p.selectOption('#quality', 'auto');
  await screenshot(p, 'channel-subscribed-phone', PHONE);
});
