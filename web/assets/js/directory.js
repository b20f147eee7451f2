// `/`: live channels (most watched first), then every channel.
import { api } from './api.js';
import { h, mountTopbar, fmtCount, hue } from './ui.js';

mountTopbar('directory');
const main = h('main#main');
document.body.append(main);

function card(c) {
  const live = c.currentStreamInfo;
  const initials = (c.name || c.channelID).slice(0, 2).toUpperCase();
  const g = hue(c.channelID);
  return h('a.card', { href: `/c/${encodeURIComponent(c.channelID)}`, dataset: { channel: c.channelID } },
    h('div.thumb', { style: `background: linear-gradient(135deg, hsl(${g} 55% 32%), hsl(${(g + 50) % 360} 60% 18%))`, 'aria-hidden': 'true' },
      initials,
      live ? h('span.badge.live', 'Live') : h('span.badge.off', 'Offline'),
      live ? h('span.viewers', `${fmtCount(live.currentWatcherCount)} watching`) : null),
    h('div.meta',
      h('div.title', live ? (live.title || c.name) : c.name || c.channelID),
      h('div.muted', c.name || c.channelID,
        live ? h('span.sr-only', `, live, ${live.currentWatcherCount} watching`) : h('span.sr-only', ', offline'))));
}

async function load() {
  let liveList = [], all = [];
  try {
    [liveList, all] = await Promise.all([
      api('/api/channels?live=true&limit=48').then((r) => r.data.channels),
      api('/api/channels?limit=48').then((r) => r.data.channels),
    ]);
  } catch (e) {
    main.replaceChildren(h('p.error', { role: 'alert' }, `Could not load channels: ${e.message}`));
    return;
  }
  const offline = all.filter((c) => !c.currentStreamInfo);
  main.replaceChildren(...[
    h('h1', 'Live now'),
    liveList.length
      ? h('div.grid#live', liveList.map(card))
      : h('p.empty#live', 'Nobody is live right now. Go live from the ', h('a', { href: '/studio' }, 'studio'), '.'),
    offline.length ? [h('h2', 'Channels'), h('div.grid#channels', offline.map(card))] : null,
  ].flat().filter(Boolean));
}

load();
// Watcher counts are polled every 30 s (DESIGN §2).
setInterval(() => { if (!document.hidden) load(); }, 30000);
