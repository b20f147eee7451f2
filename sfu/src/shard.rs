//! One socket loop: owns a set of peers, feeds them datagrams and timeouts, fans published
//! packets out to local viewers. Peers never migrate; other shards reach them by message.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpAnswer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::oneshot;

use crate::metrics::LocalCounters;
use crate::publisher::PublisherState;
use crate::registry::{LayerReport, SfuEvent, Shared};
use crate::track::SourcePacket;
use crate::viewer::ViewerState;
use crate::{PeerId, SfuError};

/// A peer that never connects is dropped after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer whose ICE connection reports disconnected is dropped after this.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Consent freshness (RFC 7675 §5.1): consent lapses 30 s after the peer was last heard from.
/// As an ICE-lite server we send no checks of our own; every peer sends us STUN checks and
/// RTCP at least every few seconds, so silence this long means it is gone.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often rates, layer choices and liveness are re-evaluated.
const TICK: Duration = Duration::from_millis(200);
/// How long a viewer waits for a keyframe before asking again.
const KEYFRAME_PATIENCE: Duration = Duration::from_secs(1);
/// Bytes a data channel may have queued for its receiver before it is closed as too slow.
const DATA_BUFFER_LIMIT: usize = 1024 * 1024;
/// How long a closing peer gets to flush its goodbyes.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A datagram (or RFC 4571 frame) for a peer of this shard.
pub(crate) struct Datagram {
    pub peer: PeerId,
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
    pub at: Instant,
}

/// Requests from the handle to a peer.
pub(crate) enum Command {
    AcceptAnswer(SdpAnswer, oneshot::Sender<Result<(), SfuError>>),
    Trickle(Vec<Candidate>),
    IceRestart {
        remote_ufrag: String,
        remote_pwd: String,
        candidates: Vec<Candidate>,
        reply: oneshot::Sender<Result<(String, String), SfuError>>,
    },
    SelectLayer(Option<String>),
    SendText(String, Arc<str>),
    CloseChannel(String),
    Close,
}

/// Everything a shard can be told.
pub(crate) enum ShardMsg {
    Datagram(Datagram),
    AddPeer(Box<Peer>),
    Media(Arc<SourcePacket>),
    Keyframe {
        publisher: PeerId,
        layer: usize,
    },
    /// An in-process consumer of a channel's packets (the HLS transcoder).
    AddTap(Arc<str>, tokio::sync::mpsc::Sender<Arc<SourcePacket>>),
    Command(PeerId, Command),
    Shutdown,
}

/// Publisher or viewer state.
pub(crate) enum PeerRole {
    Publisher(Box<PublisherState>),
    Viewer(Box<ViewerState>),
}

/// A peer and its bookkeeping.
pub(crate) struct Peer {
    id: PeerId,
    channel: Arc<str>,
    rtc: Rtc,
    role: PeerRole,
    created: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    closing_since: Option<Instant>,
    last_heard: Instant,
    next_timeout: Option<Instant>,
    labels: HashMap<ChannelId, String>,
    nacks: HashMap<String, u64>,
}

impl Peer {
    pub fn new(id: PeerId, channel: Arc<str>, rtc: Rtc, role: PeerRole, now: Instant) -> Self {
        Self {
            id,
            channel,
            rtc,
            role,
            created: now,
            connected: false,
            disconnected_since: None,
            closing_since: None,
            last_heard: now,
            next_timeout: None,
            labels: HashMap::new(),
            nacks: HashMap::new(),
        }
    }
}

/// Side effects of polling a peer that involve other peers or shards.
enum Effect {
    Media(SourcePacket),
    Keyframe {
        shard: usize,
        publisher: PeerId,
        layer: usize,
    },
    Remove,
}

/// Sockets and counters a peer writes to while being polled.
struct Io<'a> {
    udp: &'a [(SocketAddr, Arc<UdpSocket>)],
    tcp_cache: &'a mut HashMap<SocketAddr, Sender<Vec<u8>>>,
    shared: &'a Shared,
    counters: &'a mut LocalCounters,
}

impl Io<'_> {
    fn transmit(&mut self, t: str0m::net::Transmit) {
        self.counters.datagrams_out += 1;
        match t.proto {
            Protocol::Udp => {
                // Send from the socket of the local candidate str0m chose.
                let sock = self
                    .udp
                    .iter()
                    .find(|(a, _)| *a == t.source)
                    .or(self.udp.first());
                if let Some((_, sock)) = sock {
                    // Loss is what UDP does; a full socket buffer is the same as a lost packet.
                    let _ = sock.send_to(&t.contents, t.destination);
                }
            }
            _ => {
                let tx = match self.tcp_cache.get(&t.destination) {
                    Some(tx) => Some(tx.clone()),
                    None => {
                        let tx = self.shared.tcp.lock().get(&t.destination).cloned();
                        if let Some(tx) = &tx {
                            self.tcp_cache.insert(t.destination, tx.clone());
                        }
                        tx
                    }
                };
                if let Some(tx) = tx {
                    match tx.try_send(t.contents.to_vec()) {
                        Ok(()) | Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => {
                            self.tcp_cache.remove(&t.destination);
                        }
                    }
                }
            }
        }
    }
}

/// Runs `Rtc::poll_output` until it asks for a timeout; returns that timeout.
fn poll_peer(
    peer: &mut Peer,
    io: &mut Io,
    effects: &mut Vec<Effect>,
    now: Instant,
) -> Option<Instant> {
    loop {
        let out = match peer.rtc.poll_output() {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(peer = peer.id, error = %e, "peer failed");
                effects.push(Effect::Remove);
                return None;
            }
        };
        match out {
            Output::Timeout(t) => return Some(t),
            Output::Transmit(t) => io.transmit(t),
            Output::Event(e) => on_event(peer, io, effects, e, now),
        }
    }
}

fn on_event(peer: &mut Peer, io: &mut Io, effects: &mut Vec<Effect>, e: Event, now: Instant) {
    match e {
        Event::Connected => {
            peer.connected = true;
            tracing::debug!(peer = peer.id, channel = %peer.channel, "connected");
        }
        Event::IceConnectionStateChange(s) => match s {
            IceConnectionState::Disconnected => {
                peer.disconnected_since.get_or_insert(now);
            }
            _ => peer.disconnected_since = None,
        },
        Event::RtpPacket(pkt) => {
            if let PeerRole::Publisher(p) = &mut peer.role {
                io.counters.packets_in += 1;
                io.counters.bytes_in += pkt.payload.len() as u64;
                if let Some(sp) = p.on_rtp(&mut peer.rtc, pkt) {
                    effects.push(Effect::Media(sp));
                }
            }
        }
        Event::KeyframeRequest(_) => {
            if let PeerRole::Viewer(v) = &mut peer.role {
                io.shared.metrics.keyframe_requests_received.inc();
                // The viewer lost its picture: ask for a keyframe of what it is watching.
                let layer = v.video().and_then(|f| f.current());
                if let (Some(layer), Some(track)) = (layer, io.shared.track(&peer.channel)) {
                    effects.push(Effect::Keyframe {
                        shard: track.shard,
                        publisher: track.publisher,
                        layer,
                    });
                }
            }
        }
        Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
            if let PeerRole::Viewer(v) = &mut peer.role {
                v.set_estimate(estimate.as_u64());
            }
        }
        Event::MediaEgressStats(s) => {
            let key = format!("{}{:?}", s.mid, s.rid);
            let prev = peer.nacks.insert(key, s.nacks).unwrap_or(0);
            io.shared
                .metrics
                .nacks_received
                .inc_by(s.nacks.saturating_sub(prev));
        }
        Event::ChannelOpen(id, label) => {
            io.shared.metrics.data_channels.inc();
            peer.labels.insert(id, label.clone());
            io.shared.emit(SfuEvent::DataOpen {
                peer: peer.id,
                label,
            });
        }
        Event::ChannelData(d) => {
            let label = peer.labels.get(&d.id).cloned().unwrap_or_default();
            if !d.binary {
                match String::from_utf8(d.data) {
                    Ok(text) => io.shared.emit(SfuEvent::DataText {
                        peer: peer.id,
                        label,
                        text,
                    }),
                    Err(_) => tracing::debug!(peer = peer.id, "dropped a non-UTF-8 text message"),
                }
            }
        }
        Event::ChannelClose(id) => {
            if let Some(label) = peer.labels.remove(&id) {
                io.shared.metrics.data_channels.dec();
                io.shared.emit(SfuEvent::DataClose {
                    peer: peer.id,
                    label,
                });
            }
        }
        Event::Closed => {
            peer.closing_since.get_or_insert(now);
        }
        _ => {}
    }
}

/// A socket loop and the peers it owns.
pub(crate) struct Shard {
    id: usize,
    rx: Receiver<ShardMsg>,
    shared: Arc<Shared>,
    udp: Arc<[(SocketAddr, Arc<UdpSocket>)]>,
    peers: HashMap<PeerId, Peer>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    viewers: HashMap<Arc<str>, Vec<PeerId>>,
    taps: HashMap<Arc<str>, Vec<tokio::sync::mpsc::Sender<Arc<SourcePacket>>>>,
    scratch: Vec<PeerId>,
    tcp_cache: HashMap<SocketAddr, Sender<Vec<u8>>>,
    counters: LocalCounters,
    next_tick: Instant,
    next_flush: Instant,
    next_layers: Instant,
}

impl Shard {
    pub fn new(
        id: usize,
        rx: Receiver<ShardMsg>,
        shared: Arc<Shared>,
        udp: Arc<[(SocketAddr, Arc<UdpSocket>)]>,
    ) -> Self {
        let now = Instant::now();
        Self {
            id,
            rx,
            shared,
            udp,
            peers: HashMap::new(),
            timers: BinaryHeap::new(),
            viewers: HashMap::new(),
            taps: HashMap::new(),
            scratch: Vec::new(),
            tcp_cache: HashMap::new(),
            counters: LocalCounters::default(),
            next_tick: now,
            next_flush: now,
            next_layers: now,
        }
    }

    /// The loop: messages, then due timeouts, then periodic housekeeping.
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            let mut deadline = self.next_tick;
            if let Some(Reverse((t, _))) = self.timers.peek() {
                deadline = deadline.min(*t);
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(ShardMsg::Shutdown) => break,
                Ok(msg) => {
                    self.handle(msg);
                    // Drain a bounded batch so timeouts are not starved under load.
                    for _ in 0..256 {
                        match self.rx.try_recv() {
                            Ok(ShardMsg::Shutdown) => return self.stop(),
                            Ok(m) => self.handle(m),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            self.fire_timers(now);
            if now >= self.next_tick {
                self.tick(now);
                self.next_tick = now + TICK;
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        self.counters.flush(&self.shared.metrics);
    }

    fn handle(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Datagram(d) => {
                let Ok(contents) = d.data.as_slice().try_into() else {
                    return;
                };
                let input = Input::Receive(
                    d.at,
                    Receive {
                        proto: d.proto,
                        source: d.source,
                        destination: d.destination,
                        contents,
                    },
                );
                self.with_peer(d.peer, d.at, |p| {
                    p.last_heard = d.at;
                    p.rtc.handle_input(input).map_err(|e| e.to_string())
                });
            }
            ShardMsg::AddPeer(p) => {
                let id = p.id;
                if let PeerRole::Viewer(_) = p.role {
                    self.viewers.entry(p.channel.clone()).or_default().push(id);
                }
                self.peers.insert(id, *p);
                self.with_peer(id, Instant::now(), |_| Ok(()));
            }
            ShardMsg::Media(sp) => self.fan_out(&sp, Instant::now()),
            ShardMsg::Keyframe { publisher, layer } => self.request_keyframe(publisher, layer),
            ShardMsg::AddTap(channel, tx) => self.taps.entry(channel).or_default().push(tx),
            ShardMsg::Command(id, c) => self.command(id, c),
            ShardMsg::Shutdown => {}
        }
    }

    fn command(&mut self, id: PeerId, c: Command) {
        let now = Instant::now();
        match c {
            Command::AcceptAnswer(answer, reply) => {
                let mut res = Err(SfuError::UnknownPeer);
                self.with_peer(id, now, |p| {
                    if let PeerRole::Viewer(v) = &mut p.role {
                        res = v.accept_answer(&mut p.rtc, answer);
                    }
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Command::Trickle(cands) => {
                self.with_peer(id, now, |p| {
                    for c in cands {
                        p.rtc.add_remote_candidate(c);
                    }
                    Ok(())
                });
            }
            Command::IceRestart {
                remote_ufrag,
                remote_pwd,
                candidates,
                reply,
            } => {
                let mut res = Err(SfuError::UnknownPeer);
                self.with_peer(id, now, |p| {
                    let creds = p.rtc.sdp_api().ice_restart(true);
                    let mut api = p.rtc.direct_api();
                    api.set_remote_ice_credentials(str0m::IceCreds {
                        ufrag: remote_ufrag,
                        pass: remote_pwd,
                    });
                    for c in candidates {
                        p.rtc.add_remote_candidate(c);
                    }
                    res = Ok((creds.ufrag, creds.pass));
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Command::SelectLayer(rid) => {
                let Some(track) = self
                    .shared
                    .track(self.peer_channel(id).as_deref().unwrap_or(""))
                else {
                    return;
                };
                let layer = rid.and_then(|r| {
                    track
                        .video
                        .as_ref()?
                        .layers
                        .iter()
                        .position(|l| l.as_deref() == Some(r.as_str()))
                });
                let mut want = None;
                self.with_peer(id, now, |p| {
                    if let PeerRole::Viewer(v) = &mut p.role
                        && let (Some(f), Some(vt)) = (v.video(), track.video.as_ref())
                    {
                        f.pin(layer);
                        want = f.retarget(now, vt);
                    }
                    Ok(())
                });
                if let Some(layer) = want {
                    self.route_keyframe(track.shard, track.publisher, layer);
                }
            }
            Command::SendText(label, text) => {
                self.with_peer(id, now, |p| {
                    let Some(cid) = p.labels.iter().find(|(_, l)| **l == label).map(|(c, _)| *c)
                    else {
                        return Ok(());
                    };
                    let Some(mut ch) = p.rtc.channel(cid) else {
                        return Ok(());
                    };
                    // A receiver that stopped reading must not grow our memory without bound:
                    // close its channel (the owner of the channel hears DataClose).
                    if ch.buffered_amount() > DATA_BUFFER_LIMIT {
                        p.rtc.direct_api().close_data_channel(cid);
                        return Err(format!("data channel {label} closed: receiver too slow"));
                    }
                    ch.write(false, text.as_bytes())
                        .map_err(|e| e.to_string())?;
                    Ok(())
                });
            }
            Command::CloseChannel(label) => {
                self.with_peer(id, now, |p| {
                    if let Some(cid) = p.labels.iter().find(|(_, l)| **l == label).map(|(c, _)| *c)
                    {
                        p.rtc.direct_api().close_data_channel(cid);
                    }
                    Ok(())
                });
            }
            Command::Close => {
                let mut closed = false;
                self.with_peer(id, now, |p| {
                    if p.closing_since.is_none() {
                        p.closing_since = Some(now);
                        closed = true;
                        p.rtc.close().map_err(|e| e.to_string())?;
                    }
                    Ok(())
                });
                if closed && !self.peers.get(&id).is_some_and(|p| p.connected) {
                    // Never connected: nothing to say goodbye to.
                    self.remove(id);
                }
            }
        }
    }

    fn peer_channel(&self, id: PeerId) -> Option<Arc<str>> {
        self.peers.get(&id).map(|p| p.channel.clone())
    }

    /// Runs `f` on a peer, then polls it; a panic or error in either kills that peer only.
    fn with_peer(
        &mut self,
        id: PeerId,
        now: Instant,
        f: impl FnOnce(&mut Peer) -> Result<(), String>,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut effects = Vec::new();
        let mut io = Io {
            udp: &self.udp,
            tcp_cache: &mut self.tcp_cache,
            shared: &self.shared,
            counters: &mut self.counters,
        };
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if let Err(e) = f(peer) {
                tracing::debug!(peer = id, error = %e, "peer input rejected");
            }
            poll_peer(peer, &mut io, &mut effects, now)
        }));
        match res {
            Ok(next) => {
                if next != peer.next_timeout {
                    peer.next_timeout = next;
                    if let Some(t) = next {
                        self.timers.push(Reverse((t, id)));
                    }
                }
            }
            Err(_) => {
                tracing::error!(peer = id, "peer panicked; dropping it");
                self.shared.metrics.peer_panics.inc();
                effects.push(Effect::Remove);
            }
        }
        self.apply(id, effects, now);
    }

    fn apply(&mut self, id: PeerId, effects: Vec<Effect>, now: Instant) {
        for e in effects {
            match e {
                Effect::Media(sp) => {
                    let sp = Arc::new(sp);
                    self.feed_taps(&sp);
                    for (i, s) in self.shared.shards.iter().enumerate() {
                        if i != self.id {
                            let _ = s.send(ShardMsg::Media(sp.clone()));
                        }
                    }
                    self.fan_out(&sp, now);
                }
                Effect::Keyframe {
                    shard,
                    publisher,
                    layer,
                } => self.route_keyframe(shard, publisher, layer),
                Effect::Remove => self.remove(id),
            }
        }
    }

    /// Hands a published packet to the channel's taps. A tap that is full loses the packet (it
    /// sees the sequence gap and asks for a keyframe); a closed one is forgotten.
    fn feed_taps(&mut self, sp: &Arc<SourcePacket>) {
        let Some(taps) = self.taps.get_mut(&sp.track.channel) else {
            return;
        };
        taps.retain(|t| {
            !matches!(
                t.try_send(sp.clone()),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
            )
        });
        if taps.is_empty() {
            self.taps.remove(&sp.track.channel);
        }
    }

    fn route_keyframe(&mut self, shard: usize, publisher: PeerId, layer: usize) {
        if shard == self.id {
            self.request_keyframe(publisher, layer);
        } else if let Some(s) = self.shared.shards.get(shard) {
            let _ = s.send(ShardMsg::Keyframe { publisher, layer });
        }
    }

    fn request_keyframe(&mut self, publisher: PeerId, layer: usize) {
        let mut sent = false;
        self.with_peer(publisher, Instant::now(), |p| {
            if let PeerRole::Publisher(ps) = &mut p.role {
                sent = ps.request_keyframe(&mut p.rtc, Instant::now(), layer);
            }
            Ok(())
        });
        if sent {
            self.shared.metrics.keyframe_requests_sent.inc();
        }
    }

    /// Writes one published packet to every local viewer of its channel.
    fn fan_out(&mut self, sp: &Arc<SourcePacket>, now: Instant) {
        let Some(ids) = self.viewers.get(&sp.track.channel) else {
            return;
        };
        // A reused buffer: the viewer list can change while we write (a viewer may be removed).
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(ids);
        let mut keyframes = Vec::new();
        for &id in &scratch {
            let mut switched = None;
            let mut wrote = false;
            self.with_peer(id, now, |p| {
                // Writes before DTLS is up are queued by str0m and leave once SRTP is ready, so
                // the viewer's first keyframe is not lost by starting early.
                if p.closing_since.is_some() {
                    return Ok(());
                }
                if let PeerRole::Viewer(v) = &mut p.role {
                    let d = v.forward(&mut p.rtc, now, sp);
                    wrote = d.out.is_some();
                    switched = d.switched_after;
                    if let Some(l) = d.want_keyframe {
                        keyframes.push(l);
                    }
                }
                Ok(())
            });
            if wrote {
                self.counters.packets_out += 1;
                self.counters.bytes_out += sp.payload.len() as u64;
            }
            if let Some(w) = switched {
                self.shared.metrics.layer_switches.inc();
                self.shared.metrics.keyframe_wait.observe(w.as_secs_f64());
            }
        }
        self.scratch = scratch;
        keyframes.sort_unstable();
        keyframes.dedup();
        for l in keyframes {
            self.route_keyframe(sp.track.shard, sp.track.publisher, l);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let due = self
                .peers
                .get(&id)
                .is_some_and(|p| p.next_timeout == Some(t));
            if due {
                self.with_peer(id, now, |p| {
                    p.rtc
                        .handle_input(Input::Timeout(now))
                        .map_err(|e| e.to_string())
                });
            }
        }
    }

    /// Periodic work: layer rates and choices, liveness, metrics.
    fn tick(&mut self, now: Instant) {
        let report_layers = now >= self.next_layers;
        if report_layers {
            self.next_layers = now + Duration::from_secs(2);
        }
        let mut dead = Vec::new();
        let mut keyframes = Vec::new();
        let mut bwe_targets = Vec::new();
        let mut publishers = Vec::new();
        // One registry lookup per channel per tick, not per viewer.
        let mut tracks: HashMap<Arc<str>, Option<Arc<crate::track::TrackInfo>>> = HashMap::new();
        for (id, p) in self.peers.iter_mut() {
            let age = now.saturating_duration_since(p.created);
            let gone = !p.rtc.is_alive()
                || (!p.connected && age > CONNECT_TIMEOUT)
                || p.disconnected_since
                    .is_some_and(|t| now.saturating_duration_since(t) > DISCONNECT_TIMEOUT)
                || now.saturating_duration_since(p.last_heard) > CONSENT_TIMEOUT
                || p.closing_since
                    .is_some_and(|t| now.saturating_duration_since(t) > CLOSE_GRACE);
            if gone {
                dead.push(*id);
                continue;
            }
            match &mut p.role {
                PeerRole::Publisher(ps) => {
                    ps.tick(now);
                    publishers.push(*id);
                    if report_layers && let Some(v) = &ps.track.video {
                        let layers = v
                            .layers
                            .iter()
                            .zip(v.rates())
                            .map(|(rid, bitrate)| LayerReport {
                                rid: rid.map(|r| r.to_string()),
                                bitrate,
                            })
                            .collect();
                        self.shared.emit(SfuEvent::Layers {
                            channel: p.channel.clone(),
                            layers,
                        });
                    }
                }
                PeerRole::Viewer(v) => {
                    let track = tracks
                        .entry(p.channel.clone())
                        .or_insert_with(|| self.shared.track(&p.channel));
                    let Some(track) = track.as_ref() else {
                        continue;
                    };
                    let (Some(f), Some(vt)) = (v.video(), track.video.as_ref()) else {
                        continue;
                    };
                    let want = f
                        .retarget(now, vt)
                        .or_else(|| f.overdue(now, KEYFRAME_PATIENCE));
                    if let Some(l) = want {
                        keyframes.push((track.shard, track.publisher, l));
                    }
                    // Let the estimator probe up to the best layer's rate.
                    let top = vt.rates().into_iter().max().unwrap_or(0);
                    if top > 0 {
                        bwe_targets.push((*id, top));
                    }
                }
            }
        }
        for id in publishers {
            let mut sent = 0;
            self.with_peer(id, now, |p| {
                if let PeerRole::Publisher(ps) = &mut p.role {
                    sent = ps.deferred_keyframes(&mut p.rtc, now);
                }
                Ok(())
            });
            self.shared
                .metrics
                .keyframe_requests_sent
                .inc_by(sent as u64);
        }
        for (id, top) in bwe_targets {
            self.with_peer(id, now, |p| {
                let desired = crate::viewer::with_headroom(top);
                p.rtc.bwe().set_bitrate(Bitrate::ZERO, desired);
                Ok(())
            });
        }
        keyframes.sort_unstable();
        keyframes.dedup();
        for (shard, publisher, layer) in keyframes {
            self.route_keyframe(shard, publisher, layer);
        }
        for id in dead {
            self.remove(id);
        }
        if now >= self.next_flush {
            self.counters.flush(&self.shared.metrics);
            self.next_flush = now + Duration::from_secs(1);
        }
    }

    fn remove(&mut self, id: PeerId) {
        let Some(mut p) = self.peers.remove(&id) else {
            return;
        };
        if let Some(list) = self.viewers.get_mut(&p.channel) {
            list.retain(|v| *v != id);
            if list.is_empty() {
                self.viewers.remove(&p.channel);
            }
        }
        for _ in p.labels.drain() {
            self.shared.metrics.data_channels.dec();
        }
        p.rtc.disconnect();
        tracing::debug!(peer = id, channel = %p.channel, "peer removed");
        self.shared.peer_removed(id);
    }
}
