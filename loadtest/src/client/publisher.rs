//! WHIP publisher: sends the test pattern as H.264 (optionally simulcast), or a pre-encoded
//! AV1 or VP8 clip, plus Opus silence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use parking_lot::Mutex;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtp;
use rtc::rtp::codec::av1::Av1Payloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpTransceiver;

use super::av1_dd::{self, AV1_DD_URI};
use super::chat::{CHAT_LABEL, ChatChannel};
use super::clip::{ClipCodec, EncodedClip};
use super::h264::{H264Encoder, H264Packetizer};
use super::pattern::{FrameStamp, PatternGenerator, now_us};
use super::peer::{
    AV1_PAYLOAD_TYPE, ClientOptions, H264_FMTP, H264_PAYLOAD_TYPE, OPUS_PAYLOAD_TYPE, PeerEvents,
    VP8_PAYLOAD_TYPE, build_peer, build_peer_with_video, gathered_local_sdp, keyframe_requests,
    video_codec, wait_connected,
};
use super::signaling::{HttpExchange, LastResponse, SdpExchange};
use super::{StopReport, spawn_terminate};

const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const SDES_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// A 20 ms Opus frame: TOC 0xF8 (CELT fullband 20 ms, mono, one frame) + "silence" payload,
/// the same packet browsers send for muted audio.
const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// RTP payload size of clip packets (leaves room for SRTP and header extensions).
const CLIP_MTU: usize = 1100;

/// Where the published video comes from.
#[derive(Debug, Clone, Default)]
pub enum VideoSource {
    /// The self-describing test pattern, encoded live as H.264 per layer.
    #[default]
    Pattern,
    /// A pre-encoded AV1 or VP8 clip, looped by every layer on its own (a keyframe request
    /// restarts that layer's loop); AV1 packets carry a dependency descriptor when negotiated.
    Clip(Arc<EncodedClip>),
}

/// One encoding of the published video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// Simulcast RID; `None` for a plain (non-simulcast) stream.
    pub rid: Option<String>,
    /// Width in pixels (even, >= 320).
    pub width: u32,
    /// Height in pixels (even, >= 180).
    pub height: u32,
    /// Encoder target bitrate.
    pub bitrate_bps: u32,
}

impl LayerSpec {
    /// A non-simulcast layer.
    pub fn single(width: u32, height: u32, bitrate_bps: u32) -> Self {
        Self {
            rid: None,
            width,
            height,
            bitrate_bps,
        }
    }

    /// The usual three-layer simulcast of a `width` x `height` source: rids `h`, `m`, `l` at
    /// full, 1/2 and 1/4 size.
    pub fn simulcast_hml(width: u32, height: u32, bitrate_bps: u32) -> Vec<Self> {
        [("h", 1, 1), ("m", 2, 3), ("l", 4, 6)]
            .into_iter()
            .map(|(rid, div, bdiv)| Self {
                rid: Some(rid.to_owned()),
                width: width / div / 2 * 2,
                height: height / div / 2 * 2,
                bitrate_bps: bitrate_bps / bdiv,
            })
            .collect()
    }

    /// OBS-style simulcast (OBS 32.1+): rids `"0"`..`"n-1"`, layer i at (n-i)/n of the size
    /// (rounded down to even) and bitrate.
    pub fn simulcast_obs(width: u32, height: u32, bitrate_bps: u32, layers: u32) -> Vec<Self> {
        let n = layers.max(1);
        (0..n)
            .map(|i| Self {
                rid: Some(i.to_string()),
                width: width * (n - i) / n / 2 * 2,
                height: height * (n - i) / n / 2 * 2,
                bitrate_bps: bitrate_bps / n * (n - i),
            })
            .collect()
    }
}

/// What to publish and where.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// WHIP endpoint, e.g. `http://127.0.0.1:8080/whip/demo`.
    pub whip_url: String,
    /// Stream key sent as `Authorization: Bearer`.
    pub bearer: Option<String>,
    /// One layer without rid, or several with rids (simulcast in one m=video).
    pub layers: Vec<LayerSpec>,
    /// Frames per second for every layer.
    pub fps: u32,
    /// Time between scheduled keyframes.
    pub keyframe_interval: Duration,
    /// Also send an Opus track (20 ms silence frames).
    pub audio: bool,
    /// Open a `chat` data channel before the offer.
    pub data_channel: bool,
    /// The video: the H.264 test pattern, or a pre-encoded AV1/VP8 clip that then offers
    /// only its own codec.
    pub video: VideoSource,
}

impl PublisherConfig {
    /// 640x360 at 30 fps, 600 kbit/s, keyframe every 2 s, with audio, no data channel.
    pub fn new(whip_url: impl Into<String>, bearer: Option<String>) -> Self {
        Self {
            whip_url: whip_url.into(),
            bearer,
            layers: vec![LayerSpec::single(640, 360, 600_000)],
            fps: 30,
            keyframe_interval: Duration::from_secs(2),
            audio: true,
            data_channel: false,
            video: VideoSource::Pattern,
        }
    }
}

/// Counters for one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerStats {
    /// The layer's RID, if simulcast.
    pub rid: Option<String>,
    /// The layer's SSRC.
    pub ssrc: u32,
    /// Frames handed to the peer connection.
    pub frames_sent: u64,
    /// Of those, keyframes.
    pub keyframes_sent: u64,
    /// PLI/FIR received for this layer's SSRC.
    pub keyframe_requests: u64,
    /// RTP packets handed to the peer connection.
    pub packets_sent: u64,
    /// RTP payload bytes handed to the peer connection.
    pub bytes_sent: u64,
}

/// Publisher counters.
#[derive(Debug, Clone, Default)]
pub struct PublisherStats {
    /// Per layer, in configuration order.
    pub layers: Vec<LayerStats>,
    /// Sum of frames over layers.
    pub frames_sent: u64,
    /// Sum of keyframes over layers.
    pub keyframes_sent: u64,
    /// PLI/FIR received in total (including ones for unknown SSRCs).
    pub keyframe_requests_received: u64,
    /// Of those, FIR.
    pub fir_received: u64,
    /// Opus packets sent.
    pub audio_packets_sent: u64,
    /// Encoder failures.
    pub encode_errors: u64,
    /// `write_rtp` failures after the connection came up.
    pub send_errors: u64,
    /// Current peer connection state.
    pub connection_state: RTCPeerConnectionState,
}

/// A running WHIP publisher.
pub struct Publisher {
    pc: Arc<dyn PeerConnection>,
    exchange: Arc<dyn SdpExchange>,
    session_url: String,
    last_response: Option<LastResponse>,
    stats: Arc<Mutex<PublisherStats>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    chat: Option<ChatChannel>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    encoder: Option<std::thread::JoinHandle<()>>,
    stopped: bool,
}

/// Publishes over WHIP with the default [`ClientOptions`].
pub async fn publish(cfg: PublisherConfig) -> anyhow::Result<Publisher> {
    let exchange = Arc::new(HttpExchange::new(&cfg.whip_url, cfg.bearer.clone())?);
    publish_with(cfg, ClientOptions::default(), exchange).await
}

struct LayerTrack {
    spec: LayerSpec,
    ssrc: u32,
}

/// Publishes through any [`SdpExchange`] (HTTP or in-process) with explicit options.
pub async fn publish_with(
    cfg: PublisherConfig,
    opts: ClientOptions,
    exchange: Arc<dyn SdpExchange>,
) -> anyhow::Result<Publisher> {
    anyhow::ensure!(!cfg.layers.is_empty(), "at least one layer");
    anyhow::ensure!(cfg.fps > 0, "fps must be positive");
    if cfg.layers.len() > 1 {
        let mut rids: Vec<_> = cfg.layers.iter().filter_map(|l| l.rid.clone()).collect();
        anyhow::ensure!(
            rids.len() == cfg.layers.len(),
            "simulcast layers all need a rid"
        );
        rids.sort();
        rids.dedup();
        anyhow::ensure!(rids.len() == cfg.layers.len(), "simulcast rids must differ");
    }
    let clip = match &cfg.video {
        VideoSource::Pattern => None,
        VideoSource::Clip(c) => Some(c.clone()),
    };
    if let Some(c) = &clip {
        anyhow::ensure!(!c.frames.is_empty(), "the clip has no frames");
    } else {
        for l in &cfg.layers {
            // Fail here rather than in the encoder thread.
            PatternGenerator::new(l.width, l.height)?;
        }
    }
    let (video_mime, video_fmtp, video_pt) = match clip.as_ref().map(|c| c.codec) {
        None => (MIME_TYPE_H264, H264_FMTP, H264_PAYLOAD_TYPE),
        Some(ClipCodec::Av1) => (MIME_TYPE_AV1, "", AV1_PAYLOAD_TYPE),
        Some(ClipCodec::Vp8) => (MIME_TYPE_VP8, "", VP8_PAYLOAD_TYPE),
    };

    let (handler, mut events) = PeerEvents::new();
    let pc = if clip.is_some() {
        let codec = video_codec(video_mime, video_fmtp, video_pt);
        build_peer_with_video(&opts, codec, handler).await?
    } else {
        build_peer(&opts, false, handler).await?
    };

    let stream_id = format!("onair-loadtest-{:08x}", rand::random::<u32>());
    let layers: Vec<LayerTrack> = cfg
        .layers
        .iter()
        .map(|spec| LayerTrack {
            spec: spec.clone(),
            ssrc: rand::random::<u32>(),
        })
        .collect();
    let video_rtp_codec = RTCRtpCodec {
        mime_type: video_mime.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: video_fmtp.to_owned(),
        rtcp_feedback: vec![],
    };
    // Simulcast in webrtc-rs 0.21: one MediaStreamTrack with one coding per rid; the offer
    // then carries `a=rid:<id> send` lines and `a=simulcast:send`, and each packet must carry
    // the mid and rid header extensions, which we add ourselves (the stack does not).
    let codings = layers
        .iter()
        .map(|l| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: l.spec.rid.clone().unwrap_or_default(),
                ssrc: Some(l.ssrc),
                ..Default::default()
            },
            active: true,
            codec: video_rtp_codec.clone(),
            max_bitrate: l.spec.bitrate_bps,
            ..Default::default()
        })
        .collect();
    let video_track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id.clone(),
        format!("{stream_id}-video"),
        "video".to_owned(),
        RtpCodecKind::Video,
        codings,
    )));
    let sendonly = || {
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![],
            send_encodings: vec![],
        })
    };
    let video_tr = pc
        .add_transceiver_from_track(video_track.clone() as Arc<dyn TrackLocal>, sendonly())
        .await
        .context("adding video transceiver")?;

    let audio = if cfg.audio {
        let ssrc = rand::random::<u32>();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.clone(),
            format!("{stream_id}-audio"),
            "audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        )));
        let tr = pc
            .add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, sendonly())
            .await
            .context("adding audio transceiver")?;
        Some((track, tr, ssrc))
    } else {
        None
    };

    let chat = if cfg.data_channel {
        let dc = pc
            .create_data_channel(CHAT_LABEL, None)
            .await
            .context("creating chat data channel")?;
        Some(ChatChannel::spawn(dc))
    } else {
        None
    };

    let offer = pc.create_offer(None).await.context("create_offer")?;
    pc.set_local_description(offer)
        .await
        .context("set_local_description")?;
    let offer_sdp = gathered_local_sdp(&pc, &mut events.gathering, opts.gather_timeout).await?;
    tracing::debug!(%offer_sdp, "WHIP offer");

    let negotiated = match exchange.negotiate(offer_sdp).await {
        Ok(n) => n,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    tracing::debug!(answer = %negotiated.answer, "WHIP answer");

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(PublisherStats {
        layers: layers
            .iter()
            .map(|l| LayerStats {
                rid: l.spec.rid.clone(),
                ssrc: l.ssrc,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }));
    let mut publisher = Publisher {
        pc: pc.clone(),
        exchange: exchange.clone(),
        session_url: negotiated.session_url.clone(),
        last_response: negotiated.response.clone(),
        stats: stats.clone(),
        state: events.state.clone(),
        chat,
        stop: stop.clone(),
        tasks: Vec::new(),
        encoder: None,
        stopped: false,
    };
    // From here on, failures go through `publisher` so its Drop sends the DELETE.
    let answer = RTCSessionDescription::answer(negotiated.answer).context("parsing answer")?;
    pc.set_remote_description(answer)
        .await
        .context("set_remote_description(answer)")?;
    wait_connected(&mut events.state, opts.connect_timeout).await?;

    let video_out = SenderInfo::negotiated(&video_tr, video_mime, video_pt).await?;
    let keyframe_wanted: Arc<Vec<AtomicBool>> =
        Arc::new(layers.iter().map(|_| AtomicBool::new(false)).collect());
    let ssrcs: Vec<u32> = layers.iter().map(|l| l.ssrc).collect();
    publisher.tasks.push(tokio::spawn(watch_keyframe_requests(
        video_track.clone(),
        ssrcs,
        keyframe_wanted.clone(),
        stats.clone(),
        stop.clone(),
    )));

    // Encoding is CPU-bound: a plain thread does it and hands packets to an async sender task.
    let (frames_tx, frames_rx) = mpsc::channel::<EncodedLayerFrame>(64);
    let rids: Vec<Option<String>> = layers.iter().map(|l| l.spec.rid.clone()).collect();
    publisher.tasks.push(tokio::spawn(send_video(
        video_track,
        video_out,
        rids,
        frames_rx,
        stats.clone(),
    )));
    let encoder_cfg = EncoderLoop {
        layers: layers.iter().map(|l| (l.spec.clone(), l.ssrc)).collect(),
        fps: cfg.fps,
        keyframe_interval: cfg.keyframe_interval,
        keyframe_wanted,
        stats: stats.clone(),
        stop: stop.clone(),
    };
    publisher.encoder = Some(
        std::thread::Builder::new()
            .name("onair-publisher-encode".to_owned())
            .spawn(move || match clip {
                Some(clip) => encoder_cfg.run_clip(&clip, frames_tx),
                None => encoder_cfg.run(frames_tx),
            })
            .context("spawning encoder thread")?,
    );

    if let Some((track, tr, ssrc)) = audio {
        let out = SenderInfo::negotiated(&tr, MIME_TYPE_OPUS, OPUS_PAYLOAD_TYPE).await?;
        publisher.tasks.push(tokio::spawn(send_audio(
            track,
            out,
            ssrc,
            stats.clone(),
            stop.clone(),
        )));
    }
    Ok(publisher)
}

impl Publisher {
    /// The WHIP session URL (absolute `Location`).
    pub fn session_url(&self) -> &str {
        &self.session_url
    }

    /// Status and headers of the POST that created the session (`None` without HTTP).
    pub fn last_response(&self) -> Option<&LastResponse> {
        self.last_response.as_ref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PublisherStats {
        let mut s = self.stats.lock().clone();
        s.connection_state = *self.state.borrow();
        s
    }

    /// The current peer connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until the connection reaches `state` (e.g. `Failed` after the server kicks us).
    pub async fn wait_state(
        &self,
        state: RTCPeerConnectionState,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        super::peer::wait_state(&self.state, state, timeout).await
    }

    /// The chat data channel, if configured.
    pub fn chat(&self) -> Option<&ChatChannel> {
        self.chat.as_ref()
    }

    /// Sends a text message on the chat data channel.
    pub async fn send_text(&self, text: &str) -> anyhow::Result<()> {
        super::chat::send_on(self.chat.as_ref(), text).await
    }

    /// The next text message received on the chat data channel (`None` if none configured or
    /// the channel closed).
    pub async fn recv_text(&self) -> Option<String> {
        self.chat.as_ref()?.recv().await
    }

    /// Stops media, DELETEs the session and closes the peer connection.
    pub async fn stop(mut self) -> anyhow::Result<StopReport<PublisherStats>> {
        self.stopped = true;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(handle) = self.encoder.take() {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let stats = self.stats();
        let delete = self.exchange.terminate().await;
        let _ = self.pc.close().await;
        Ok(StopReport {
            delete_status: delete?,
            stats,
        })
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if !self.stopped {
            spawn_terminate(self.exchange.clone(), self.pc.clone());
        }
    }
}

/// What the answer negotiated for one sender.
struct SenderInfo {
    payload_type: u8,
    mid: Option<String>,
    mid_ext: Option<u8>,
    rid_ext: Option<u8>,
    dd_ext: Option<u8>,
}

impl SenderInfo {
    async fn negotiated(
        tr: &Arc<dyn RtpTransceiver>,
        mime: &str,
        fallback_pt: u8,
    ) -> anyhow::Result<Self> {
        let sender = tr
            .sender()
            .await
            .map_err(|e| anyhow::anyhow!("transceiver sender: {e}"))?
            .context("transceiver has no sender")?;
        let params = sender
            .get_parameters()
            .await
            .map_err(|e| anyhow::anyhow!("sender parameters: {e}"))?;
        let payload_type = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type)
            .unwrap_or(fallback_pt);
        let ext = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .and_then(|e| u8::try_from(e.id).ok())
        };
        Ok(Self {
            payload_type,
            mid: tr.mid().await.ok().flatten(),
            mid_ext: ext(SDES_MID_URI),
            rid_ext: ext(SDES_RID_URI),
            dd_ext: ext(AV1_DD_URI),
        })
    }

    fn header(&self, ssrc: u32, seq: u16, ts: u32, marker: bool, rid: Option<&str>) -> rtp::Header {
        self.header_with_dd(ssrc, seq, ts, marker, rid, None)
    }

    fn header_with_dd(
        &self,
        ssrc: u32,
        seq: u16,
        ts: u32,
        marker: bool,
        rid: Option<&str>,
        dd: Option<Bytes>,
    ) -> rtp::Header {
        let mut h = rtp::Header {
            version: 2,
            marker,
            payload_type: self.payload_type,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        };
        if let (Some(id), Some(mid)) = (self.mid_ext, &self.mid) {
            let _ = h.set_extension(id, Bytes::copy_from_slice(mid.as_bytes()));
        }
        if let (Some(id), Some(rid)) = (self.rid_ext, rid) {
            let _ = h.set_extension(id, Bytes::copy_from_slice(rid.as_bytes()));
        }
        if let (Some(id), Some(dd)) = (self.dd_ext, dd) {
            let _ = h.set_extension(id, dd);
        }
        h
    }
}

/// One encoded frame of one layer, ready to packetize.
struct EncodedLayerFrame {
    layer: usize,
    ssrc: u32,
    rtp_timestamp: u32,
    keyframe: bool,
    payloads: Vec<Bytes>,
    /// AV1 dependency-descriptor frame number (AV1 clips only).
    dd_frame: Option<u16>,
}

struct EncoderLoop {
    layers: Vec<(LayerSpec, u32)>,
    fps: u32,
    keyframe_interval: Duration,
    keyframe_wanted: Arc<Vec<AtomicBool>>,
    stats: Arc<Mutex<PublisherStats>>,
    stop: Arc<AtomicBool>,
}

impl EncoderLoop {
    fn run(self, out: mpsc::Sender<EncodedLayerFrame>) {
        let mut layers = Vec::new();
        for (spec, ssrc) in &self.layers {
            match (
                PatternGenerator::new(spec.width, spec.height),
                H264Encoder::new(spec.bitrate_bps, self.fps),
            ) {
                (Ok(g), Ok(e)) => layers.push((g, e, H264Packetizer::default(), *ssrc)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("publisher layer setup failed: {e:#}");
                    self.stats.lock().encode_errors += 1;
                    return;
                }
            }
        }
        let clock = FrameClock::new(self.fps);
        let mut last_keyframe: Option<Instant> = None;
        let mut index: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let rtp_timestamp = clock.wait(index);
            let scheduled_key = last_keyframe.is_none_or(|t| t.elapsed() >= self.keyframe_interval);
            if scheduled_key {
                last_keyframe = Some(Instant::now());
            }
            let stamp = FrameStamp {
                index,
                timestamp_us: now_us(),
            };
            for (i, (generator, encoder, packetizer, ssrc)) in layers.iter_mut().enumerate() {
                let requested = self.keyframe_wanted[i].swap(false, Ordering::Relaxed);
                let frame = generator.render(stamp);
                let encoded = match encoder.encode(frame, scheduled_key || requested) {
                    Ok(Some(e)) => e,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!("encode failed: {e:#}");
                        self.stats.lock().encode_errors += 1;
                        continue;
                    }
                };
                let payloads = match packetizer.packetize(&encoded.data) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("packetize failed: {e:#}");
                        self.stats.lock().encode_errors += 1;
                        continue;
                    }
                };
                let frame = EncodedLayerFrame {
                    layer: i,
                    ssrc: *ssrc,
                    rtp_timestamp,
                    keyframe: encoded.keyframe,
                    payloads,
                    dd_frame: None,
                };
                if out.blocking_send(frame).is_err() {
                    return;
                }
            }
            index = index.wrapping_add(1);
        }
    }
}

/// The encoder loops' schedule: frame `index` is due `index` frame times after the start, and
/// carries the 90 kHz RTP time of when it was actually made.
struct FrameClock {
    start: Instant,
    frame_time: Duration,
    /// One RTP clock for all layers, like OBS: the SFU can switch layers without rewriting
    /// timestamps.
    ts_base: u32,
}

impl FrameClock {
    fn new(fps: u32) -> Self {
        Self {
            start: Instant::now(),
            frame_time: Duration::from_secs_f64(1.0 / f64::from(fps.max(1))),
            ts_base: rand::random(),
        }
    }

    /// Sleeps until frame `index` is due; returns its RTP timestamp.
    fn wait(&self, index: u32) -> u32 {
        let due = self.start + self.frame_time * index;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.ts_base
            .wrapping_add((self.start.elapsed().as_micros() * 9 / 100) as u32)
    }
}

impl EncoderLoop {
    /// Sends a pre-encoded clip in a loop at the configured frame rate on every layer; a
    /// keyframe request starts that layer over from the clip's first frame (a keyframe).
    fn run_clip(self, clip: &EncodedClip, out: mpsc::Sender<EncodedLayerFrame>) {
        struct ClipLayer {
            ssrc: u32,
            payloader: Box<dyn Payloader>,
            next: usize,
            /// Next dependency-descriptor frame number; each layer counts on its own, from a
            /// random start like a real encoder.
            dd_frame: u16,
        }
        let mut layers: Vec<ClipLayer> = self
            .layers
            .iter()
            .map(|(_, ssrc)| ClipLayer {
                ssrc: *ssrc,
                payloader: match clip.codec {
                    ClipCodec::Av1 => Box::new(Av1Payloader::default()),
                    ClipCodec::Vp8 => {
                        let mut p = Vp8Payloader::default();
                        p.enable_picture_id = true;
                        Box::new(p)
                    }
                },
                next: 0,
                dd_frame: rand::random(),
            })
            .collect();
        let clock = FrameClock::new(self.fps);
        let mut index: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let rtp_timestamp = clock.wait(index);
            for (i, l) in layers.iter_mut().enumerate() {
                if self.keyframe_wanted[i].swap(false, Ordering::Relaxed) {
                    l.next = 0;
                }
                let Some(frame) = clip.frames.get(l.next) else {
                    return;
                };
                l.next = (l.next + 1) % clip.frames.len();
                let payloads = match l.payloader.payload(CLIP_MTU, &frame.data) {
                    Ok(p) if !p.is_empty() => p,
                    Ok(_) | Err(_) => {
                        self.stats.lock().encode_errors += 1;
                        continue;
                    }
                };
                let dd_frame = (clip.codec == ClipCodec::Av1).then_some(l.dd_frame);
                l.dd_frame = l.dd_frame.wrapping_add(1);
                let frame = EncodedLayerFrame {
                    layer: i,
                    ssrc: l.ssrc,
                    rtp_timestamp,
                    keyframe: frame.keyframe,
                    payloads,
                    dd_frame,
                };
                if out.blocking_send(frame).is_err() {
                    return;
                }
            }
            index = index.wrapping_add(1);
        }
    }
}

async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    info: SenderInfo,
    rids: Vec<Option<String>>,
    mut frames: mpsc::Receiver<EncodedLayerFrame>,
    stats: Arc<Mutex<PublisherStats>>,
) {
    let mut seqs: Vec<u16> = rids.iter().map(|_| rand::random()).collect();
    while let Some(frame) = frames.recv().await {
        let n = frame.payloads.len();
        let mut bytes = 0u64;
        let mut errors = 0u64;
        for (k, payload) in frame.payloads.into_iter().enumerate() {
            let seq = seqs[frame.layer];
            seqs[frame.layer] = seq.wrapping_add(1);
            bytes += payload.len() as u64;
            let dd = frame
                .dd_frame
                .map(|f| av1_dd::descriptor(f, frame.keyframe, k == 0, k + 1 == n));
            let header = info.header_with_dd(
                frame.ssrc,
                seq,
                frame.rtp_timestamp,
                k + 1 == n,
                rids[frame.layer].as_deref(),
                dd,
            );
            if let Err(e) = track.write_rtp(rtp::Packet { header, payload }).await {
                tracing::debug!("write_rtp: {e}");
                errors += 1;
            }
        }
        let mut s = stats.lock();
        s.send_errors += errors;
        s.frames_sent += 1;
        let layer = &mut s.layers[frame.layer];
        layer.frames_sent += 1;
        layer.packets_sent += n as u64;
        layer.bytes_sent += bytes;
        if frame.keyframe {
            layer.keyframes_sent += 1;
            s.keyframes_sent += 1;
        }
    }
}

async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    info: SenderInfo,
    ssrc: u32,
    stats: Arc<Mutex<PublisherStats>>,
    stop: Arc<AtomicBool>,
) {
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let header = info.header(ssrc, seq, ts, first, None);
        first = false;
        let packet = rtp::Packet {
            header,
            payload: Bytes::from_static(&OPUS_SILENCE),
        };
        match track.write_rtp(packet).await {
            Ok(()) => stats.lock().audio_packets_sent += 1,
            Err(_) => stats.lock().send_errors += 1,
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(960);
    }
}

/// Reads RTCP delivered to the video track and flags the layers asked for a keyframe.
async fn watch_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    ssrcs: Vec<u32>,
    wanted: Arc<Vec<AtomicBool>>,
    stats: Arc<Mutex<PublisherStats>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(event) = track.poll().await else {
            // Not bound yet, or closed: poll returns None without waiting.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for req in keyframe_requests(&packets) {
            let mut s = stats.lock();
            s.keyframe_requests_received += 1;
            if req.fir {
                s.fir_received += 1;
            }
            match ssrcs.iter().position(|&x| x == req.media_ssrc) {
                Some(i) => {
                    wanted[i].store(true, Ordering::Relaxed);
                    s.layers[i].keyframe_requests += 1;
                }
                None => {
                    // Unknown SSRC (some senders use 0): refresh every layer.
                    for w in wanted.iter() {
                        w.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LayerSpec;

    #[test]
    fn simulcast_presets() {
        let hml = LayerSpec::simulcast_hml(1280, 720, 3_000_000);
        let sizes: Vec<_> = hml.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, vec![(1280, 720), (640, 360), (320, 180)]);
        let obs = LayerSpec::simulcast_obs(1280, 720, 6_000_000, 3);
        let got: Vec<_> = obs
            .iter()
            .map(|l| (l.rid.as_deref(), l.width, l.height, l.bitrate_bps))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("0"), 1280, 720, 6_000_000),
                (Some("1"), 852, 480, 4_000_000),
                (Some("2"), 426, 240, 2_000_000),
            ]
        );
    }
}
