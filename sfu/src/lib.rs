//! onair media plane: str0m peers on sharded socket loops, a router from each publisher to its
//! viewers, per-viewer simulcast layer choice and RTP rewriting. Knows nothing of HTTP.
//!
//! Layout: the sans-IO parts ([`payload`], [`munger`], [`selector`], [`keyframe`],
//! [`forward`]) are pure state machines driven by time passed in; [`shard`] and [`net`] are the
//! thin IO shell around them; [`Sfu`] is the handle the signaling layer uses.

pub mod av1_dd;
pub mod forward;
pub mod keyframe;
pub mod metrics;
pub mod munger;
pub mod net;
pub mod payload;
pub mod rtc;
pub mod selector;
pub mod track;
pub mod vp8;

mod publisher;
mod registry;
mod shard;
mod viewer;

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use registry::{LayerReport, Role, SfuEvent};
pub use rtc::{MediaPlan, PayloadChoice};
pub use str0m::Candidate;
pub use str0m::change::{SdpAnswer, SdpOffer};

use registry::Shared;
use shard::{Command, ShardMsg};

/// Identifies one WebRTC peer (a publisher or a viewer) inside this process.
pub type PeerId = u64;

/// Settings of the media plane.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Address the UDP socket and the ICE-TCP listener bind (same port for both).
    pub bind: SocketAddr,
    /// Addresses advertised in ICE candidates. Empty: the bound address, or every non-loopback
    /// interface address when bound to the unspecified address.
    pub advertise: Vec<IpAddr>,
    /// Socket loops (shards); 0 = one per core.
    pub shards: usize,
}

/// Why a request to the media plane failed.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The channel has no live publisher.
    #[error("the channel is not live")]
    NotLive,
    /// str0m rejected the SDP.
    #[error("unacceptable SDP: {0}")]
    Sdp(String),
    /// The live stream's codec is not in the viewer's offer.
    #[error("no codec in common with the live stream: {0}")]
    NoCommonCodec(String),
    /// No such peer (closed or never existed).
    #[error("no such session")]
    UnknownPeer,
    /// The request does not fit the session's state.
    #[error("{0}")]
    Conflict(String),
    /// The media plane is shutting down.
    #[error("the media plane is shutting down")]
    ShuttingDown,
}

/// A session created by [`Sfu::publish`] or [`Sfu::play`].
#[derive(Debug, Clone)]
pub struct Session {
    /// The peer that carries it.
    pub peer: PeerId,
    /// The SDP answer (or offer, for [`Sfu::play_server_offer`]).
    pub sdp: String,
    /// Local ICE ufrag and password.
    pub ice_ufrag: String,
    /// See `ice_ufrag`.
    pub ice_pwd: String,
}

/// Handle to the running media plane. Cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    shared: Arc<Shared>,
}

impl Sfu {
    /// Binds the media port and starts the socket loops.
    pub fn start(cfg: SfuConfig, registry: &prometheus::Registry) -> std::io::Result<Self> {
        let shared = net::start(cfg, registry)?;
        Ok(Self { shared })
    }

    /// The bound media address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Host candidates every session advertises.
    pub fn candidates(&self) -> &[Candidate] {
        self.shared.factory.candidates()
    }

    /// Events for signaling (live/offline, viewer counts, layers, data channels, closed peers).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SfuEvent> {
        self.shared.events.subscribe()
    }

    /// Starts a publisher on `channel` from a WHIP offer. Newest wins: a publisher already live on
    /// the channel is closed.
    pub fn publish(
        &self,
        channel: &str,
        offer: SdpOffer,
        plan: MediaPlan,
    ) -> Result<Session, SfuError> {
        let now = Instant::now();
        let (mut rtc, creds) = self.shared.factory.build(&plan, None, now);
        let answer = accept_offer(&mut rtc, offer)?;
        let peer = self.shared.next_peer_id();
        let track =
            publisher::track_info(&mut rtc, channel, peer, &plan, self.shared.shard_for(peer))?;
        let state = publisher::PublisherState::new(track.clone()).with_fir(plan.fir_only);
        self.shared.add_peer(
            peer,
            channel,
            Role::Publisher,
            rtc,
            &creds,
            shard::PeerRole::Publisher(Box::new(state)),
            Some(track),
        )?;
        Ok(Session {
            peer,
            sdp: answer,
            ice_ufrag: creds.ufrag,
            ice_pwd: creds.pass,
        })
    }

    /// Starts a viewer of `channel` from a WHEP client offer.
    pub fn play(
        &self,
        channel: &str,
        offer: SdpOffer,
        plan: MediaPlan,
    ) -> Result<Session, SfuError> {
        let track = self.shared.track(channel).ok_or(SfuError::NotLive)?;
        let now = Instant::now();
        let estimate = viewer::initial_estimate(&track);
        let (mut rtc, creds) = self.shared.factory.build(&plan, Some(estimate), now);
        let answer = accept_offer(&mut rtc, offer)?;
        let state = viewer::ViewerState::new(&mut rtc, &plan, &track)?;
        let peer = self.shared.next_peer_id();
        self.shared.add_peer(
            peer,
            channel,
            Role::Viewer,
            rtc,
            &creds,
            shard::PeerRole::Viewer(Box::new(state)),
            None,
        )?;
        Ok(Session {
            peer,
            sdp: answer,
            ice_ufrag: creds.ufrag,
            ice_pwd: creds.pass,
        })
    }

    /// Starts a viewer for a legacy WHEP client that POSTs no offer: returns the server's offer;
    /// the client's answer arrives later through [`Sfu::complete_server_offer`].
    pub fn play_server_offer(&self, channel: &str) -> Result<Session, SfuError> {
        let track = self.shared.track(channel).ok_or(SfuError::NotLive)?;
        let now = Instant::now();
        let plan = viewer::server_offer_plan(&track);
        let estimate = viewer::initial_estimate(&track);
        let (mut rtc, creds) = self.shared.factory.build(&plan, Some(estimate), now);
        let (offer, pending) = viewer::create_server_offer(&mut rtc, &plan)?;
        let state = viewer::ViewerState::pending(pending);
        let peer = self.shared.next_peer_id();
        self.shared.add_peer(
            peer,
            channel,
            Role::Viewer,
            rtc,
            &creds,
            shard::PeerRole::Viewer(Box::new(state)),
            None,
        )?;
        Ok(Session {
            peer,
            sdp: offer,
            ice_ufrag: creds.ufrag,
            ice_pwd: creds.pass,
        })
    }

    /// Applies a legacy WHEP client's SDP answer to the server offer.
    pub async fn complete_server_offer(
        &self,
        peer: PeerId,
        answer: SdpAnswer,
    ) -> Result<(), SfuError> {
        self.request(peer, |reply| Command::AcceptAnswer(answer, reply))
            .await?
    }

    /// Adds trickled remote candidates.
    pub fn trickle(&self, peer: PeerId, candidates: Vec<Candidate>) -> Result<(), SfuError> {
        self.shared
            .send(peer, ShardMsg::Command(peer, Command::Trickle(candidates)))
    }

    /// ICE restart: new remote credentials and candidates; returns our new ufrag and password.
    pub async fn ice_restart(
        &self,
        peer: PeerId,
        remote_ufrag: String,
        remote_pwd: String,
        candidates: Vec<Candidate>,
    ) -> Result<(String, String), SfuError> {
        let (ufrag, pwd) = self
            .request(peer, |reply| Command::IceRestart {
                remote_ufrag,
                remote_pwd,
                candidates,
                reply,
            })
            .await??;
        self.shared.rebind_ufrag(peer, &ufrag);
        Ok((ufrag, pwd))
    }

    /// Pins a viewer to a simulcast layer by RID, or back to automatic with `None`.
    pub fn select_layer(&self, peer: PeerId, rid: Option<String>) -> Result<(), SfuError> {
        if let Some(r) = &rid {
            let channel = self
                .shared
                .peer_channel(peer)
                .ok_or(SfuError::UnknownPeer)?;
            let track = self.shared.track(&channel).ok_or(SfuError::NotLive)?;
            let known = track
                .video
                .as_ref()
                .is_some_and(|v| v.layers.iter().flatten().any(|l| &**l == r.as_str()));
            if !known {
                return Err(SfuError::Conflict(format!(
                    "no simulcast layer with rid {r}"
                )));
            }
        }
        self.shared
            .send(peer, ShardMsg::Command(peer, Command::SelectLayer(rid)))
    }

    /// Sends a text message on a peer's data channel with the given label.
    pub fn send_text(
        &self,
        peer: PeerId,
        label: &str,
        text: impl Into<Arc<str>>,
    ) -> Result<(), SfuError> {
        self.shared.send(
            peer,
            ShardMsg::Command(peer, Command::SendText(label.to_string(), text.into())),
        )
    }

    /// Packets published on `channel` from now on (audio and every video layer), for in-process
    /// consumers such as the HLS transcoder; outlives publisher changes. Dropping the receiver
    /// ends the tap. A consumer that falls `capacity` packets behind loses packets.
    pub fn tap(
        &self,
        channel: &str,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<Arc<track::SourcePacket>> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let channel: Arc<str> = Arc::from(channel);
        for s in &self.shared.shards {
            let _ = s.send(ShardMsg::AddTap(channel.clone(), tx.clone()));
        }
        rx
    }

    /// Asks the live publisher of `channel` for a keyframe on `layer` (throttled like viewers').
    pub fn request_keyframe(&self, channel: &str, layer: usize) {
        if let Some(t) = self.track(channel)
            && let Some(s) = self.shared.shards.get(t.shard)
        {
            let _ = s.send(ShardMsg::Keyframe {
                publisher: t.publisher,
                layer,
            });
        }
    }

    /// Closes one data channel of a peer (the rest of the session stays).
    pub fn close_data_channel(&self, peer: PeerId, label: &str) -> Result<(), SfuError> {
        self.shared.send(
            peer,
            ShardMsg::Command(peer, Command::CloseChannel(label.to_string())),
        )
    }

    /// Closes a session (DELETE, shutdown, newer publisher).
    pub fn close(&self, peer: PeerId) -> Result<(), SfuError> {
        self.shared
            .send(peer, ShardMsg::Command(peer, Command::Close))
    }

    /// Whether `channel` has a live publisher.
    pub fn is_live(&self, channel: &str) -> bool {
        self.shared.track(channel).is_some()
    }

    /// The live publisher's tracks on `channel`.
    pub fn track(&self, channel: &str) -> Option<Arc<track::TrackInfo>> {
        self.shared.track(channel)
    }

    /// Viewers of `channel` on this node.
    pub fn viewer_count(&self, channel: &str) -> usize {
        self.shared.viewer_count(channel)
    }

    /// Live peers on this node.
    pub fn peer_count(&self) -> usize {
        self.shared.peer_count()
    }

    /// Closes every session (DTLS close_notify, RTCP BYE) and waits up to `grace` for the
    /// goodbyes to leave, then stops the socket loops.
    pub fn shutdown(&self, grace: Duration) {
        self.shared.shutdown(grace);
    }

    async fn request<T>(
        &self,
        peer: PeerId,
        make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.send(peer, ShardMsg::Command(peer, make(tx)))?;
        rx.await.map_err(|_| SfuError::UnknownPeer)
    }
}

/// Runs str0m's offer acceptance, turning its errors and any panic into [`SfuError::Sdp`].
fn accept_offer(rtc: &mut str0m::Rtc, offer: SdpOffer) -> Result<String, SfuError> {
    let res = std::panic::catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
    match res {
        Ok(Ok(answer)) => Ok(answer.to_sdp_string()),
        Ok(Err(e)) => Err(SfuError::Sdp(e.to_string())),
        Err(_) => Err(SfuError::Sdp("the offer could not be processed".into())),
    }
}
