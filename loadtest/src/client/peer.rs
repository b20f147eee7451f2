//! Building webrtc-rs peer connections the way both test clients need them: H.264 (or, for a
//! clip publisher, AV1 or VP8) + Opus only,
//! NACK/RTCP reports, mDNS off, loopback sockets, and an interceptor that hands keyframe
//! requests (PLI/FIR) to the application.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

/// Payload type we offer for H.264 (constrained baseline, packetization-mode 1).
pub const H264_PAYLOAD_TYPE: u8 = 102;
/// Payload type we offer for AV1 (clip publishers and viewers).
pub const AV1_PAYLOAD_TYPE: u8 = 45;
/// Payload type we offer for VP8 (clip publishers and viewers).
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// Payload type we offer for Opus.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// The H.264 fmtp line we offer: what openh264 produces.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// Settings for the local end of a test client's peer connection.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Address the UDP (and TCP) sockets bind to. webrtc-rs skips loopback when given a
    /// wildcard, so tests against a local server need `127.0.0.1`.
    pub bind_ip: IpAddr,
    /// How long to wait for ICE gathering before sending the offer anyway.
    pub gather_timeout: Duration,
    /// How long `publish`/`play` wait for the connection to reach `connected`.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            gather_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Event handler that republishes webrtc-rs callbacks as watch/mpsc channels.
pub(crate) struct PeerEvents {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

/// The receiving halves of [`PeerEvents`].
pub(crate) struct PeerEventStreams {
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    pub tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

impl PeerEvents {
    pub(crate) fn new() -> (Arc<Self>, PeerEventStreams) {
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (gather_tx, gather_rx) = watch::channel(RTCIceGatheringState::New);
        let (track_tx, track_rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                state: state_tx,
                gathering: gather_tx,
                tracks: track_tx,
            }),
            PeerEventStreams {
                state: state_rx,
                gathering: gather_rx,
                tracks: track_rx,
            },
        )
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// Media engine with exactly one H.264 and one Opus codec, plus the default interceptors
/// (NACK, RTCP reports, simulcast header extensions, TWCC receiver) and the keyframe-request
/// forwarder.
pub(crate) fn media_setup() -> anyhow::Result<(MediaEngine, Registry)> {
    media_setup_with(video_codec(MIME_TYPE_H264, H264_FMTP, H264_PAYLOAD_TYPE))
}

/// The video codec a test client registers: `mime` with `fmtp`, as payload type `pt`.
pub(crate) fn video_codec(mime: &str, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![
                RTCPFeedback {
                    typ: "goog-remb".to_owned(),
                    parameter: String::new(),
                },
                RTCPFeedback {
                    typ: "ccm".to_owned(),
                    parameter: "fir".to_owned(),
                },
            ],
        },
        payload_type: pt,
    }
}

/// [`media_setup`] with `video` as the only video codec (the AV1/VP8 clip publisher); AV1
/// also negotiates the dependency descriptor, as browsers do.
pub(crate) fn media_setup_with(
    video: RTCRtpCodecParameters,
) -> anyhow::Result<(MediaEngine, Registry)> {
    let mut media = MediaEngine::default();
    if video
        .rtp_codec
        .mime_type
        .eq_ignore_ascii_case(MIME_TYPE_AV1)
    {
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: super::av1_dd::AV1_DD_URI.to_owned(),
            },
            RtpCodecKind::Video,
            None,
        )?;
    }
    media.register_codec(video, RtpCodecKind::Video)?;
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: OPUS_PAYLOAD_TYPE,
        },
        RtpCodecKind::Audio,
    )?;
    // Adds nack + nack pli to the codecs above, and mid/rid/repaired-rid extmaps for video.
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    // Last in the chain, so the NACK responder and report interceptors see all RTCP first.
    let registry = registry.with(Slot::from(14_000), KeyframeRequestForwarder::default());
    Ok((media, registry))
}

/// Builds a peer connection bound to `opts.bind_ip`, UDP or (with `tcp_only`) ICE-TCP only.
pub(crate) async fn build_peer(
    opts: &ClientOptions,
    tcp_only: bool,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    build_peer_lite(opts, tcp_only, false, handler).await
}

/// [`build_peer`] offering `video` as its only video codec.
pub(crate) async fn build_peer_with_video(
    opts: &ClientOptions,
    video: RTCRtpCodecParameters,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    build_peer_with_video_on(opts, false, video, handler).await
}

/// [`build_peer_with_video`], optionally ICE-TCP only (a viewer of an AV1/VP8 stream).
pub(crate) async fn build_peer_with_video_on(
    opts: &ClientOptions,
    tcp_only: bool,
    video: RTCRtpCodecParameters,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    build_peer_from(opts, tcp_only, false, media_setup_with(video)?, handler).await
}

/// [`build_peer`], optionally as an ICE-lite agent (what an SFU usually is).
pub(crate) async fn build_peer_lite(
    opts: &ClientOptions,
    tcp_only: bool,
    ice_lite: bool,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    build_peer_from(opts, tcp_only, ice_lite, media_setup()?, handler).await
}

async fn build_peer_from(
    opts: &ClientOptions,
    tcp_only: bool,
    ice_lite: bool,
    (media, registry): (MediaEngine, Registry),
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    use rtc::ice::mdns::MulticastDnsMode;
    use rtc::ice::network_type::NetworkType;

    let mut settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_lite(ice_lite);
    let bind = format!("{}:0", format_ip(opts.bind_ip));
    let (udp, tcp) = if tcp_only {
        settings = settings.with_network_types(vec![NetworkType::Tcp4, NetworkType::Tcp6]);
        (vec![], vec![bind])
    } else {
        (vec![bind], vec![])
    };
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings.build())
        .with_handler(handler)
        .with_udp_addrs(udp)
        .with_tcp_addrs(tcp)
        .build()
        .await?;
    Ok(Arc::new(pc))
}

fn format_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Waits until ICE gathering completes (or `timeout` passes) and returns the local SDP.
pub(crate) async fn gathered_local_sdp(
    pc: &Arc<dyn PeerConnection>,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let done = tokio::time::timeout(
        timeout,
        gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !done {
        tracing::warn!("ICE gathering did not complete in {timeout:?}; sending what we have");
    }
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| anyhow::anyhow!("no local description after set_local_description"))
}

/// Waits for `connected`; fails early on `failed`/`closed`.
/// Waits until a peer connection reaches `state`.
pub(crate) async fn wait_state(
    state_rx: &watch::Receiver<RTCPeerConnectionState>,
    state: RTCPeerConnectionState,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut rx = state_rx.clone();
    tokio::time::timeout(timeout, rx.wait_for(|s| *s == state))
        .await
        .map_err(|_| anyhow::anyhow!("state {state} not reached in {timeout:?}"))?
        .map_err(|_| anyhow::anyhow!("peer connection dropped"))?;
    Ok(())
}

pub(crate) async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let reached = tokio::time::timeout(
        timeout,
        state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .map(|r| r.map(|s| *s));
    match reached {
        Ok(Ok(RTCPeerConnectionState::Connected)) => Ok(()),
        Ok(Ok(s)) => anyhow::bail!("peer connection ended in state {s}"),
        Ok(Err(_)) => anyhow::bail!("peer connection dropped"),
        Err(_) => anyhow::bail!(
            "peer connection not connected after {timeout:?} (state {})",
            *state.borrow()
        ),
    }
}

/// A keyframe request found in inbound RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyframeRequest {
    /// The SSRC of the stream the receiver wants a keyframe for.
    pub media_ssrc: u32,
    /// FIR rather than PLI.
    pub fir: bool,
}

/// Extracts PLI/FIR requests from an RTCP batch delivered to a local track.
pub(crate) fn keyframe_requests(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<KeyframeRequest> {
    let mut out = Vec::new();
    for packet in packets {
        let any = packet.as_any();
        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            out.push(KeyframeRequest {
                media_ssrc: pli.media_ssrc,
                fir: false,
            });
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            for entry in &fir.fir {
                out.push(KeyframeRequest {
                    media_ssrc: entry.ssrc,
                    fir: true,
                });
            }
        }
    }
    out
}

/// Interceptor that passes inbound PLI/FIR to the application and drops other RTCP at the end
/// of the chain. webrtc-rs 0.21 delivers inbound RTCP to `TrackLocal::poll` only when an
/// interceptor marks it `DeliverToApplication`; by default keyframe requests are invisible.
#[derive(Default)]
pub(crate) struct KeyframeRequestForwarder {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
