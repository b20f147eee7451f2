// The studio goes live with SCREEN capture and a viewer plays it over WHEP; the viewer pages
// through 120 chat messages by scrolling up, gets its chat place back after a reload, and
// subscribes through a provider that asks for a payment step (confirmed by a signed webhook).
import { createHmac } from 'node:crypto';
import { run, context, page, check, log, sleep, playerStats, BASE, DESKTOP } from './lib.mjs';

const CH = process.env.ONAIR_CHANNEL || 'chan';
const env = (k) => { if (!process.env[k]) throw new Error(`${k} is not set`); return process.env[k]; };
const PAGE = 50; // chat.js asks for history 50 messages at a time

// Every chatter sends `perUser` messages over the WebSocket and waits for each to be stored,
// one chatter after the other, so "m001".."m120" follow the offsets.
async function seedChat(p, tokens, perUser) {
  return p.evaluate(async ({ ch, tokens, perUser }) => {
    let n = 0;
    for (const token of tokens) {
      const ws = new WebSocket(`ws://${location.host}/api/channels/${ch}/live-stream?token=${encodeURIComponent(token)}`);
      await new Promise((resolve, reject) => {
        const want = new Set();
        ws.onerror = () => reject(new Error('seed socket failed'));
        ws.onmessage = (ev) => {
          const f = JSON.parse(ev.data);
          if (f.type === 'welcome') {
            for (let i = 0; i < perUser; i++) {
              const id = `seed${++n}`;
              want.add(id);
              ws.send(JSON.stringify({ type: 'send', clientMsgId: id, message: `m${String(n).padStart(3, '0')}` }));
            }
          } else if (f.type === 'ack') {
            want.delete(f.clientMsgId);
            if (!want.size) resolve();
          } else if (f.type === 'notice') reject(new Error(`seed refused: ${f.message || f.code}`));
        };
      });
      ws.close();
    }
    return n;
  }, { ch: CH, tokens, perUser });
}

// What the chat log shows: offsets held, the first line in view, and whether it is at the bottom.
const chatView = (p) => p.$eval('#chat-log', (log) => {
  const top = log.getBoundingClientRect().top;
  const lines = [...log.querySelectorAll('li[data-offset]')];
  const first = lines.find((li) => li.getBoundingClientRect().bottom > top + 1);
  const offsets = lines.map((li) => Number(li.dataset.offset));
  return {
    count: lines.length, lowest: Math.min(...offsets), highest: Math.max(...offsets),
    firstInView: first ? Number(first.dataset.offset) : null,
    atBottom: log.scrollHeight - log.scrollTop - log.clientHeight < 40,
  };
});

// Whether the line `offset` is inside the visible part of the chat log.
const lineInView = (p, offset) => p.$eval('#chat-log', (log, o) => {
  const li = log.querySelector(`li[data-offset="${o}"]`);
  if (!li) return false;
  const a = log.getBoundingClientRect(), b = li.getBoundingClientRect();
  return b.top >= a.top - 1 && b.bottom <= a.bottom + 1;
}, offset);

await run(async (browser) => {
  // ---- the owner's studio goes live with the screen instead of the camera
  const key = env('ONAIR_STREAM_KEY');
  const sctx = await context(browser, { token: env('ONAIR_OWNER_TOKEN') });
  await sctx.addInitScript(([ch, k]) => { try { sessionStorage.setItem(`onair.streamKey.${ch}`, k); } catch { /* about:blank */ } }, [CH, key]);
  const studio = await page(sctx, '/studio');
  await studio.waitForSelector('#go-live');
  await studio.selectOption('#resolution', '540');
  await studio.click('button[data-source="screen"]');
  check((await studio.getAttribute('button[data-source="screen"]', 'aria-pressed')) === 'true', 'the studio source switch selects the screen');
  await studio.click('#go-live');
  await studio.waitForFunction(() => document.querySelector('#live-status')?.textContent === 'Live', null, { timeout: 20000 });
  const track = await studio.evaluate(() => {
    const t = window.onair.live.stream.getVideoTracks()[0];
    const s = t.getSettings();
    return { label: t.label, displaySurface: s.displaySurface || null, width: s.width, height: s.height };
  });
  log('studio video track', JSON.stringify(track));
  check(track.displaySurface === 'monitor', 'the studio streams a screen (getDisplayMedia), not the camera', track);

  // ---- 120 messages of history (more than two pages) before the viewer arrives
  const seeded = await seedChat(studio, env('ONAIR_SEED_TOKENS').split(','), 20);
  log('seeded', seeded, 'chat messages');

  // ---- the viewer plays the screen over WHEP
  const vctx = await context(browser, { token: env('ONAIR_VIEWER_TOKEN'), viewport: DESKTOP });
  const viewer = await page(vctx, `/c/${CH}`);
  await viewer.waitForFunction(() => window.onair?.player?.state === 'live', null, { timeout: 20000 });
  await viewer.waitForFunction(() => window.onair.player.video.videoWidth > 0, null, { timeout: 10000 });
  const s0 = await playerStats(viewer);
  await sleep(2000);
  const s1 = await playerStats(viewer);
  log('viewer stats', JSON.stringify({ framesDecoded: [s0.framesDecoded, s1.framesDecoded], size: `${s1.videoWidth}x${s1.videoHeight}`, fps: s1.framesPerSecond }));
  check(s1.framesDecoded > s0.framesDecoded + 10, 'the viewer decodes the screen stream over WHEP', [s0.framesDecoded, s1.framesDecoded]);
  // Simulcast layers are the captured size over 1, 2 and 4 (encoders round to even sizes); the
  // fake camera at the chosen 540p would give 960x540, 480x270 and 240x135.
  const layerOf = (w, hh, W, H) => [1, 2, 4].some((d) => Math.abs(w - W / d) <= 2 && Math.abs(hh - H / d) <= 2);
  const shown = { w: s1.videoWidth, h: s1.videoHeight };
  log('studio sends', await studio.textContent('#layers'), 'viewer shows', `${shown.w}x${shown.h}`);
  check(layerOf(shown.w, shown.h, track.width, track.height) && !layerOf(shown.w, shown.h, 960, 540),
    'the decoded frame is a layer of the captured screen, not of the camera', { shown, screen: track });

  // ---- chat history: the newest page on open, older pages when scrolled to the top
  await viewer.waitForFunction((n) => document.querySelectorAll('#chat-log li[data-offset]').length >= n, PAGE, { timeout: 10000 });
  await sleep(300);
  const v0 = await chatView(viewer);
  log('chat on open', JSON.stringify(v0));
  check(v0.count === PAGE && v0.highest === seeded && v0.atBottom, 'history on open: the newest 50 messages, scrolled to the newest', v0);
  const firstLine = v0.lowest;
  await viewer.$eval('#chat-log', (el) => { el.scrollTop = 0; });
  await viewer.waitForFunction((n) => document.querySelectorAll('#chat-log li[data-offset]').length > n, PAGE, { timeout: 5000 }).catch(() => {});
  await sleep(300);
  const v1 = await chatView(viewer);
  log('after scrolling to the top', JSON.stringify(v1));
  check(v1.count === 2 * PAGE && v1.lowest === seeded - 2 * PAGE + 1, 'scrolling to the top loads the next older page', v1);
  check(await lineInView(viewer, firstLine), 'the line that was at the top stays in view while the older page arrives above it', firstLine);
  await viewer.$eval('#chat-log', (el) => { el.scrollTop = 0; });
  await viewer.waitForFunction((n) => document.querySelectorAll('#chat-log li[data-offset]').length >= n, seeded, { timeout: 5000 }).catch(() => {});
  const v2 = await chatView(viewer);
  check(v2.count === seeded && v2.lowest === 1, 'and again, down to the first message', v2);

  // ---- resume: a reload brings the reader back to the line they were reading
  const want = 15; // in the oldest page: restoring it needs two older pages
  await viewer.$eval('#chat-log', (log, o) => {
    const li = log.querySelector(`li[data-offset="${o}"]`);
    if (li) log.scrollTop += li.getBoundingClientRect().top - log.getBoundingClientRect().top;
  }, want);
  await sleep(600); // the place is saved 250 ms after scrolling stops
  const before = await chatView(viewer);
  check(before.firstInView === want, 'scrolled up to a line in the oldest page', before);
  await viewer.reload();
  // Restoring loads the older pages down to that line, then scrolls to it.
  await viewer.waitForFunction((o) => {
    const log = document.querySelector('#chat-log');
    return log && log.querySelector(`li[data-offset="${o}"]`) && log.scrollHeight - log.scrollTop - log.clientHeight >= 40;
  }, want, { timeout: 10000 }).catch(() => {});
  await sleep(500);
  const after = await chatView(viewer);
  log('after the reload', JSON.stringify(after));
  check(after.firstInView === before.firstInView && !after.atBottom, 'after a reload the chat shows the same line at the top', { before: before.firstInView, after });

  // ---- subscribe through a provider that asks for a payment step
  await viewer.waitForFunction(() => window.onair?.player?.state === 'live', null, { timeout: 20000 });
  await vctx.route('https://pay.onair.test/**', (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><title>Test payment</title><h1>Pay for your subscription</h1>' }));
  // Subscribes at `tier` and opens the payment page; returns the provider's confirmation.
  const startPayment = async (tier) => {
    await viewer.selectOption('#tier', String(tier));
    await viewer.click('#subscribe');
    const link = await viewer.waitForSelector('#payment:not(.hidden) a#payment-link', { timeout: 5000 });
    const href = await link.getAttribute('href');
    const paymentID = decodeURIComponent(href.split('/checkout/')[1] || '');
    check(href.startsWith('https://pay.onair.test/checkout/') && paymentID.length > 0, `tier ${tier}: SUBSCRIBE answered 202, the page links to the payment page`, href);
    const [pay] = await Promise.all([vctx.waitForEvent('page', { timeout: 5000 }), link.click()]);
    await pay.waitForLoadState();
    check(pay.url() === href && (await pay.title()) === 'Test payment', `tier ${tier}: the payment link opens the provider page`, pay.url());
    await pay.close();
    // The provider confirms the payment to the server, signed with the shared secret.
    return async () => {
      const body = JSON.stringify({ eventID: `evt_${paymentID}`, paymentID, status: 'succeeded' });
      const ts = Math.floor(Date.now() / 1000);
      const sig = createHmac('sha256', env('ONAIR_PAYMENT_SECRET')).update(`${ts}.${body}`).digest('hex');
      const res = await fetch(`${BASE}/api/payments/webhook`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Onair-Signature': `t=${ts},v1=${sig}` }, body });
      check(res.ok, `tier ${tier}: the signed webhook is accepted`, res.status);
    };
  };
  const badgeFor = async (tier) => {
    const t0 = Date.now();
    const text = await viewer.waitForFunction((t) => {
      const b = document.querySelector('#sub-badge');
      return !b.classList.contains('hidden') && b.dataset.tier === String(t) && !/ends/.test(b.textContent) ? b.textContent : null;
    }, tier, { timeout: 8000 }).then((hd) => hd.jsonValue(), () => viewer.textContent('#sub-badge'));
    log('badge', Date.now() - t0, 'ms after the webhook:', text);
    return text;
  };

  let confirm = await startPayment(2);
  check(!(await viewer.isVisible('#sub-badge')), 'no subscriber badge before the payment is confirmed');
  await confirm();
  const b2 = await badgeFor(2);
  check(/Tier 2$/.test(b2), 'once paid, the channel page shows the Tier 2 badge by itself', b2);
  check(!(await viewer.isVisible('#payment')), 'and the payment notice goes away');

  // Cancelled at tier 2 (running to the end of the period), then tier 3: a new payment, and the
  // cancelled tier 2 still shown is not its confirmation.
  await viewer.click('#subscribe');
  await viewer.waitForFunction(() => /ends/.test(document.querySelector('#sub-badge').textContent) && document.querySelector('#subscribe').textContent === 'Subscribe', null, { timeout: 5000 });
  confirm = await startPayment(3);
  await sleep(3500); // one relationship poll
  check(await viewer.isVisible('#payment'), 'an unpaid tier change keeps the payment notice', await viewer.textContent('#sub-badge'));
  await confirm();
  const b3 = await badgeFor(3);
  check(/Tier 3$/.test(b3), 'once paid, the badge changes to Tier 3', b3);
  check(!(await viewer.isVisible('#payment')), 'and the payment notice goes away again');
});
