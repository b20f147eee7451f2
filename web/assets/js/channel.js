// `/c/{channelID}`: player, channel info, follow / subscribe, chat.
import { api, auth, channelPath, ApiError } from './api.js';
import { h, mountTopbar, toast, fmtCount, authDialog, onAuthChange } from './ui.js';
import { Player } from './player.js';
import { Chat } from './chat.js';

const channel = decodeURIComponent(location.pathname.split('/')[2] || '');
mountTopbar('channel');
const main = h('main.channel-main#main');
document.body.append(main);

const state = { info: null, rel: null };
const els = {};

function relationshipUi() {
  const rel = state.rel || { isFollowing: false, subscriptionInfo: null };
  els.follow.textContent = rel.isFollowing ? '♥ Following' : '♡ Follow';
  els.follow.setAttribute('aria-pressed', String(!!rel.isFollowing));
  els.followers.textContent = `${fmtCount(state.info.followerCount)} followers`;
  els.followers.dataset.count = state.info.followerCount;
  const sub = rel.subscriptionInfo;
  els.subBadge.classList.toggle('hidden', !sub);
  if (sub) {
    els.subBadge.textContent = `★ Subscriber · Tier ${sub.tier}${sub.renews === false ? ` (ends ${new Date(sub.currentPeriodEnd).toLocaleDateString()})` : ''}`;
    els.subBadge.dataset.tier = sub.tier;
  }
  els.subscribe.textContent = sub && sub.renews !== false ? 'Unsubscribe' : 'Subscribe';
  const own = auth.user && state.info.ownerID === auth.user.id;
  els.subscribe.classList.toggle('hidden', own);
  els.tier.classList.toggle('hidden', own || !!(sub && sub.renews !== false));
}

async function needLogin() {
  if (auth.user) return true;
  return !!(await authDialog('login'));
}

async function toggleFollow() {
  if (!(await needLogin())) return;
  const before = { rel: { ...state.rel }, count: state.info.followerCount };
  const op = state.rel.isFollowing ? 'UNFOLLOW' : 'FOLLOW';
  // Optimistic: the UI changes now; the server's answer confirms or rolls it back.
  state.rel.isFollowing = op === 'FOLLOW';
  state.info.followerCount += op === 'FOLLOW' ? 1 : -1;
  relationshipUi();
  els.follow.disabled = true;
  try {
    const { data } = await api(`${channelPath(channel)}/following?op=${op}`, { method: 'POST' });
    state.rel.isFollowing = data.isFollowing;
    state.info.followerCount = data.followerCount;
  } catch (e) {
    state.rel = before.rel;
    state.info.followerCount = before.count;
    toast(`Could not ${op === 'FOLLOW' ? 'follow' : 'unfollow'}: ${e.message}`);
  } finally {
    els.follow.disabled = false;
    relationshipUi();
  }
}

async function toggleSubscribe() {
  if (!(await needLogin())) return;
  const before = { ...state.rel };
  const sub = state.rel.subscriptionInfo;
  const unsubscribe = !!(sub && sub.renews !== false);
  const tier = Number(els.tier.value) || 1;
  state.rel.subscriptionInfo = unsubscribe
    ? { ...sub, renews: false }
    : { tier, renews: true, currentPeriodEnd: null };
  relationshipUi();
  els.subscribe.disabled = true;
  try {
    const { data } = await api(`${channelPath(channel)}/subscriptions?op=${unsubscribe ? 'UNSUBSCRIBE' : 'SUBSCRIBE'}`, { method: 'POST', body: unsubscribe ? undefined : { tier } });
    if (data.status === 'pending') {
      // The provider needs a payment step: the badge waits for its confirmation.
      state.rel = before;
      els.payment.replaceChildren('Finish the payment to subscribe: ',
        h('a#payment-link', { href: data.paymentInputURL, target: '_blank', rel: 'noopener' }, 'open the payment page'), '.');
      els.payment.classList.remove('hidden');
      pollSubscription(tier);
    } else {
      state.rel.subscriptionInfo = data.subscriptionInfo;
      els.payment.classList.add('hidden');
    }
  } catch (e) {
    state.rel = before;
    toast(`Could not ${unsubscribe ? 'unsubscribe' : 'subscribe'}: ${e instanceof ApiError && e.status === 403 ? 'you cannot subscribe to your own channel' : e.message}`);
  } finally {
    els.subscribe.disabled = false;
    relationshipUi();
  }
}

// Until the paid tier is active: a cancelled subscription (another tier, still running to the
// end of its period) is not the confirmation.
async function pollSubscription(tier) {
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 3000));
    const sub = (await loadRelationship())?.subscriptionInfo;
    if (sub && sub.tier === tier && sub.renews !== false) { els.payment.classList.add('hidden'); return; }
  }
}

async function loadRelationship() {
  try {
    const { data } = await api(`${channelPath(channel)}/relationship`);
    state.rel = data;
  } catch {
    state.rel = { isFollowing: false, subscriptionInfo: null, isBanned: false };
  }
  relationshipUi();
  if (state.rel.isBanned) state.chat?.setBanned(state.rel.bannedUntil ? Date.parse(state.rel.bannedUntil) : null);
  return state.rel;
}

function infoUi() {
  const i = state.info;
  document.title = `${i.name || i.channelID} · onair`;
  els.name.textContent = i.name || i.channelID;
  els.title.textContent = (i.currentStreamInfo && i.currentStreamInfo.title) || i.streamTitle || '';
  els.desc.textContent = i.description || '';
  setWatchers(i.currentStreamInfo ? i.currentStreamInfo.currentWatcherCount : 0);
  els.liveBadge.classList.toggle('hidden', !i.currentStreamInfo);
}

function setWatchers(n) {
  els.watchers.textContent = `${fmtCount(n)} watching`;
  els.watchers.dataset.count = n;
}

async function main_() {
  let info;
  try {
    info = (await api(channelPath(channel), { fresh: true })).data;
  } catch (e) {
    main.replaceChildren(h('h1', 'Channel not found'), h('p.muted', e.status === 404 ? `There is no channel “${channel}”.` : e.message), h('a', { href: '/' }, 'Browse channels'));
    return;
  }
  state.info = info;
  const player = new Player({ channel, token: auth.token });
  const chat = new Chat({ channel, ownerID: info.ownerID });
  state.chat = chat;
  Object.assign(els, {
    name: h('h1#channel-name'),
    liveBadge: h('span.badge.live.hidden#live-badge', 'Live'),
    title: h('p.title#stream-title'),
    desc: h('p.desc#channel-description'),
    watchers: h('span#watchers'),
    followers: h('span#followers'),
    follow: h('button#follow', { type: 'button', onclick: toggleFollow }),
    tier: h('select#tier', { 'aria-label': 'Subscription tier' },
      h('option', { value: '1' }, 'Tier 1'), h('option', { value: '2' }, 'Tier 2'), h('option', { value: '3' }, 'Tier 3')),
    subscribe: h('button.primary#subscribe', { type: 'button', onclick: toggleSubscribe }),
    subBadge: h('span.badge.sub.hidden#sub-badge'),
    payment: h('p.hidden#payment', { role: 'status' }),
  });
  main.replaceChildren(h('div.channel',
    h('div',
      player.el,
      h('section.info', { 'aria-label': 'Channel' },
        h('div.head',
          h('div.names', h('div.row', els.name, els.liveBadge), els.title,
            h('div.stats', els.watchers, els.followers)),
          h('div.actions', els.subBadge, els.follow, els.tier, els.subscribe)),
        els.payment, els.desc)),
    chat.el));
  infoUi();
  state.rel = { isFollowing: false, subscriptionInfo: null };
  relationshipUi();
  loadRelationship();

  // Chat uses the WHEP data channel while playing, a WebSocket otherwise.
  player.addEventListener('datachannel', (e) => chat.useDataChannel(e.detail));
  // Counts pushed by the server (WHEP events, chat) are free; the 30 s poll covers the rest.
  player.addEventListener('viewercount', (e) => setWatchers(e.detail));
  chat.addEventListener('watchers', (e) => setWatchers(e.detail));
  chat.addEventListener('stream', (e) => {
    if (e.detail === 'live') { player.nudge(); refreshInfo(); } else refreshInfo();
  });
  player.addEventListener('state', (e) => {
    if (e.detail === 'live' && !state.info.currentStreamInfo) refreshInfo();
  });
  chat.start();
  player.start();
  onAuthChange(() => location.reload());
  // Follower count is read on page load; the watcher count is polled every 30 s (DESIGN §2).
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const { data } = await api(`${channelPath(channel)}/live-stream/currentWatcherCount`);
      setWatchers(data.currentWatcherCount);
    } catch { /* keep the last count */ }
  }, 30000);
  window.onair = { player, chat, state, refreshInfo };
}

async function refreshInfo() {
  try {
    const { data } = await api(channelPath(channel), { fresh: true });
    data.followerCount = state.info.followerCount; // read on load only; ours is exact after clicks
    state.info = data;
    infoUi();
  } catch { /* keep what is shown */ }
}

main_();
