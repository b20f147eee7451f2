//! State shared by the socket loops and the handle: who is where, which channel is live.
//!
//! Touched when sessions start and end and when a datagram arrives from an address not seen
//! before, never per forwarded packet.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use str0m::{IceCreds, Rtc};

use crate::metrics::Metrics;
use crate::rtc::RtcFactory;
use crate::shard::{Command, Peer, PeerRole, ShardMsg};
use crate::track::TrackInfo;
use crate::{PeerId, SfuError};

/// Publisher or viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends media in (WHIP).
    Publisher,
    /// Receives media (WHEP).
    Viewer,
}

/// One simulcast layer as reported to WHEP clients.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    /// RTP stream id, `None` for a non-simulcast stream.
    pub rid: Option<String>,
    /// Measured bitrate in bit/s (0 = inactive).
    pub bitrate: u64,
}

/// Something signaling may want to tell clients about.
#[derive(Debug, Clone)]
pub enum SfuEvent {
    /// A publisher went live (or replaced the previous one).
    Live { channel: Arc<str> },
    /// The channel's publisher left.
    Offline { channel: Arc<str> },
    /// The number of viewers on this node changed.
    Viewers { channel: Arc<str>, count: usize },
    /// Periodic report of the live stream's simulcast layers.
    Layers {
        channel: Arc<str>,
        layers: Vec<LayerReport>,
    },
    /// A peer ended (DELETE, timeout, replaced, failed).
    PeerClosed {
        peer: PeerId,
        channel: Arc<str>,
        role: Role,
    },
    /// A data channel opened on a peer.
    DataOpen { peer: PeerId, label: String },
    /// A text message arrived on a peer's data channel.
    DataText {
        peer: PeerId,
        label: String,
        text: String,
    },
    /// A data channel closed.
    DataClose { peer: PeerId, label: String },
}

/// Which shard owns which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Shard index.
    pub shard: usize,
    /// The peer.
    pub peer: PeerId,
}

struct PeerEntry {
    shard: usize,
    channel: Arc<str>,
    role: Role,
    ufrag: String,
}

#[derive(Default)]
struct ChannelEntry {
    track: Option<Arc<TrackInfo>>,
    viewers: HashSet<PeerId>,
}

#[derive(Default)]
struct State {
    channels: HashMap<Arc<str>, ChannelEntry>,
    peers: HashMap<PeerId, PeerEntry>,
}

/// Everything the handle and the loops share.
pub(crate) struct Shared {
    pub factory: RtcFactory,
    pub local_addr: SocketAddr,
    pub shards: Vec<Sender<ShardMsg>>,
    pub ufrags: Mutex<HashMap<String, Route>>,
    pub tcp: Mutex<HashMap<SocketAddr, Sender<Vec<u8>>>>,
    pub events: tokio::sync::broadcast::Sender<SfuEvent>,
    pub metrics: Metrics,
    pub shutting_down: AtomicBool,
    pub threads: Mutex<Vec<JoinHandle<()>>>,
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl Shared {
    pub fn new(
        factory: RtcFactory,
        local_addr: SocketAddr,
        shards: Vec<Sender<ShardMsg>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            factory,
            local_addr,
            shards,
            ufrags: Mutex::new(HashMap::new()),
            tcp: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(4096).0,
            metrics,
            shutting_down: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn next_peer_id(&self) -> PeerId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn shard_for(&self, peer: PeerId) -> usize {
        (peer as usize) % self.shards.len()
    }

    pub fn emit(&self, e: SfuEvent) {
        // No subscriber is fine: nobody is listening yet.
        let _ = self.events.send(e);
    }

    /// Registers a new peer and hands it to its shard.
    #[allow(clippy::too_many_arguments)]
    pub fn add_peer(
        &self,
        peer: PeerId,
        channel: &str,
        role: Role,
        rtc: Rtc,
        creds: &IceCreds,
        peer_role: PeerRole,
        track: Option<Arc<TrackInfo>>,
    ) -> Result<(), SfuError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(SfuError::ShuttingDown);
        }
        let shard = self.shard_for(peer);
        let channel: Arc<str> = Arc::from(channel);
        let mut replaced = None;
        let viewers;
        {
            let mut st = self.state.lock();
            let entry = st.channels.entry(channel.clone()).or_default();
            if role == Role::Publisher {
                replaced = entry.track.take().map(|t| t.publisher);
                entry.track = track;
            } else {
                entry.viewers.insert(peer);
            }
            viewers = entry.viewers.len();
            st.peers.insert(
                peer,
                PeerEntry {
                    shard,
                    channel: channel.clone(),
                    role,
                    ufrag: creds.ufrag.clone(),
                },
            );
        }
        self.ufrags
            .lock()
            .insert(creds.ufrag.clone(), Route { shard, peer });
        self.metrics.peers.inc();
        match role {
            Role::Publisher => {
                self.metrics.publishers.inc();
                tracing::info!(peer, channel = %channel, "publisher live");
                self.emit(SfuEvent::Live {
                    channel: channel.clone(),
                });
            }
            Role::Viewer => {
                self.metrics
                    .viewers
                    .with_label_values(&[&channel])
                    .set(viewers as i64);
                self.emit(SfuEvent::Viewers {
                    channel: channel.clone(),
                    count: viewers,
                });
            }
        }
        let p = Peer::new(peer, channel, rtc, peer_role, Instant::now());
        self.shards[shard]
            .send(ShardMsg::AddPeer(Box::new(p)))
            .map_err(|_| SfuError::ShuttingDown)?;
        if let Some(old) = replaced {
            tracing::info!(
                old,
                new = peer,
                "newest publisher wins; closing the previous one"
            );
            let _ = self.send(old, ShardMsg::Command(old, Command::Close));
        }
        Ok(())
    }

    /// Forgets a peer that its shard removed.
    pub fn peer_removed(&self, peer: PeerId) {
        let (entry, offline, viewers) = {
            let mut st = self.state.lock();
            let Some(entry) = st.peers.remove(&peer) else {
                return;
            };
            let mut offline = false;
            let mut viewers = None;
            let mut empty = false;
            if let Some(ch) = st.channels.get_mut(&entry.channel) {
                match entry.role {
                    Role::Publisher => {
                        if ch.track.as_ref().is_some_and(|t| t.publisher == peer) {
                            ch.track = None;
                            offline = true;
                        }
                    }
                    Role::Viewer => {
                        ch.viewers.remove(&peer);
                        viewers = Some(ch.viewers.len());
                    }
                }
                empty = ch.track.is_none() && ch.viewers.is_empty();
            }
            if empty {
                st.channels.remove(&entry.channel);
            }
            (entry, offline, viewers)
        };
        {
            let mut uf = self.ufrags.lock();
            if uf.get(&entry.ufrag).is_some_and(|r| r.peer == peer) {
                uf.remove(&entry.ufrag);
            }
        }
        self.metrics.peers.dec();
        if entry.role == Role::Publisher {
            self.metrics.publishers.dec();
        }
        if offline {
            tracing::info!(peer, channel = %entry.channel, "publisher left; channel offline");
            self.emit(SfuEvent::Offline {
                channel: entry.channel.clone(),
            });
        }
        if let Some(n) = viewers {
            if n == 0 {
                let _ = self.metrics.viewers.remove_label_values(&[&entry.channel]);
            } else {
                self.metrics
                    .viewers
                    .with_label_values(&[&entry.channel])
                    .set(n as i64);
            }
            self.emit(SfuEvent::Viewers {
                channel: entry.channel.clone(),
                count: n,
            });
        }
        self.emit(SfuEvent::PeerClosed {
            peer,
            channel: entry.channel,
            role: entry.role,
        });
    }

    /// Points a peer's new ICE ufrag (after a restart) at its shard.
    pub fn rebind_ufrag(&self, peer: PeerId, ufrag: &str) {
        let mut st = self.state.lock();
        let Some(entry) = st.peers.get_mut(&peer) else {
            return;
        };
        let route = Route {
            shard: entry.shard,
            peer,
        };
        let old = std::mem::replace(&mut entry.ufrag, ufrag.to_string());
        drop(st);
        let mut uf = self.ufrags.lock();
        uf.remove(&old);
        uf.insert(ufrag.to_string(), route);
    }

    pub fn send(&self, peer: PeerId, msg: ShardMsg) -> Result<(), SfuError> {
        let shard = self
            .state
            .lock()
            .peers
            .get(&peer)
            .map(|e| e.shard)
            .ok_or(SfuError::UnknownPeer)?;
        self.shards[shard]
            .send(msg)
            .map_err(|_| SfuError::ShuttingDown)
    }

    pub fn track(&self, channel: &str) -> Option<Arc<TrackInfo>> {
        self.state
            .lock()
            .channels
            .get(channel)
            .and_then(|c| c.track.clone())
    }

    pub fn peer_channel(&self, peer: PeerId) -> Option<Arc<str>> {
        self.state
            .lock()
            .peers
            .get(&peer)
            .map(|e| e.channel.clone())
    }

    pub fn viewer_count(&self, channel: &str) -> usize {
        self.state
            .lock()
            .channels
            .get(channel)
            .map_or(0, |c| c.viewers.len())
    }

    pub fn peer_count(&self) -> usize {
        self.state.lock().peers.len()
    }

    /// Broadcasts to every shard (they drop what concerns no local peer).
    pub fn broadcast(&self, msg: impl Fn() -> ShardMsg) {
        for s in &self.shards {
            let _ = s.send(msg());
        }
    }

    pub fn shutdown(&self, grace: Duration) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let peers: Vec<PeerId> = self.state.lock().peers.keys().copied().collect();
        tracing::info!(peers = peers.len(), "closing every media session");
        for p in peers {
            let _ = self.send(p, ShardMsg::Command(p, Command::Close));
        }
        let deadline = Instant::now() + grace;
        while self.peer_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.broadcast(|| ShardMsg::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}
