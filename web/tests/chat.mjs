// Two signed-in viewers and the owner chat on the WHEP data channel: delivery marks, an emote
// rendered as an image, history after a reload, and a ban that the banned viewer sees at once.
import { run, context, page, check, log, sleep, screenshot, PHONE, DESKTOP } from './lib.mjs';

const CH = process.env.ONAIR_CHANNEL || 'chan';
const env = (k) => { if (!process.env[k]) throw new Error(`${k} is not set`); return process.env[k]; };

async function open(browser, token, viewport = DESKTOP) {
  const ctx = await context(browser, { token, viewport });
  const p = await page(ctx, `/c/${CH}`);
  await p.waitForFunction(() => document.querySelector('#chat')?.dataset.transport === 'datachannel', null, { timeout: 20000 });
  return p;
}

async function say(p, text) {
  await p.fill('#chat-input', text);
  await p.press('#chat-input', 'Enter');
}

await run(async (browser) => {
  const owner = await open(browser, env('ONAIR_OWNER_TOKEN'));
  const ann = await open(browser, env('ONAIR_ANN_TOKEN'));
  const bob = await open(browser, env('ONAIR_BOB_TOKEN'), PHONE);
  check(true, 'three viewers chat over the WHEP data channel');

  await say(ann, 'hello :fire everyone');
  await ann.waitForSelector('#chat-log li.mine .status[data-status="sent"], #chat-log li.mine .status[data-status="seen"]', { timeout: 5000 });
  check(true, 'own message marked sent');
  const img = await bob.waitForSelector('#chat-log li[data-user="ann"] img.emote[data-emote="fire"]', { timeout: 5000 });
  const loaded = await img.evaluate((el) => el.complete && el.naturalWidth > 0);
  check(loaded, 'the emote renders as an image for another viewer');
  const text = await bob.textContent('#chat-log li[data-user="ann"] .text');
  check(text.replace(/\s+/g, ' ').trim() === 'hello everyone', 'the text around the emote is kept', text);
  await ann.waitForSelector('#chat-log li.mine .status[data-status="seen"]', { timeout: 5000 });
  check(true, 'own message marked seen once another viewer shows it');

  await say(bob, 'hi from bob');
  const banBtn = await owner.waitForSelector('#chat-log li[data-user="bob"] button[data-action="ban"]', { timeout: 5000 });
  check(!!banBtn, 'the owner sees ban and timeout actions on messages');
  check((await ann.$('#chat-log button[data-action="ban"]')) === null, 'viewers see no moderation actions');
  await screenshot(owner, 'chat-owner-desktop', DESKTOP);

  const t0 = Date.now();
  await banBtn.click();
  await bob.waitForSelector('#chat-banner:not(.hidden)', { timeout: 5000, state: 'visible' });
  const ms = Date.now() - t0;
  log('ban banner after', ms, 'ms');
  check(ms < 1000, 'the banned viewer sees the banner within a second', ms);
  check(await bob.isDisabled('#chat-input'), 'the banned viewer cannot type');
  // Even a hand-made frame is refused by the server.
  await bob.evaluate(() => window.onair.chat.send({ type: 'send', clientMsgId: 'forced1', message: 'still here?' }));
  await bob.waitForFunction(() => [...document.querySelectorAll('#chat-log li.notice')].some((li) => /ban/i.test(li.textContent)), null, { timeout: 5000 });
  await sleep(800);
  const leaked = await ann.evaluate(() => document.querySelector('#chat-log').textContent.includes('still here?'));
  check(!leaked, 'a banned send reaches nobody');
  await screenshot(bob, 'chat-banned-phone', PHONE);

  // History on open: a reload shows what was said before.
  await ann.reload();
  await ann.waitForSelector('#chat-log li[data-user="bob"]', { timeout: 10000 });
  const n = await ann.$$eval('#chat-log li[data-offset]', (l) => l.length);
  check(n >= 2, 'history is loaded on open', n);
});
