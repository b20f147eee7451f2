//! WHEP viewer: receives H.264 + Opus, decodes the video and reads the test pattern back. It can
//! also offer AV1 or VP8 instead (to watch a clip publisher); that video is counted and handed
//! out as RTP, not decoded here.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use parking_lot::Mutex;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_AV1, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription,
};

use super::av1_dd;
use super::chat::{CHAT_LABEL, ChatChannel};
use super::clip::ClipCodec;
use super::h264::{AccessUnit, AccessUnitAssembler, H264Decoder};
use super::pattern::now_us;
use super::peer::{
    AV1_PAYLOAD_TYPE, ClientOptions, PeerEvents, VP8_PAYLOAD_TYPE, build_peer,
    build_peer_with_video_on, gathered_local_sdp, video_codec, wait_connected,
};
use super::signaling::{
    HttpExchange, LastResponse, SdpExchange, candidate_transport, candidates_in, filter_candidates,
};
use super::{StopReport, spawn_terminate};

/// Rewrites the answer SDP before it is applied (e.g. to route media through a proxy).
pub type AnswerRewrite = Arc<dyn Fn(String) -> String + Send + Sync>;

/// Minimum time between two PLIs we send.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// The video codec a viewer offers; the server answers in the live stream's codec, so this
/// must match what the publisher sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ViewerCodec {
    /// H.264, decoded by the viewer (frame counters, pattern stamps, PLIs on decode errors).
    #[default]
    H264,
    /// AV1 or VP8 (a clip publisher's stream): packets are counted and passed to
    /// [`ViewerConfig::video_rtp`], but not decoded, so the frame counters stay at zero.
    Clip(ClipCodec),
}

/// One received video RTP packet, as handed to [`ViewerConfig::video_rtp`].
#[derive(Debug, Clone)]
pub struct VideoRtp {
    /// SSRC of the packet.
    pub ssrc: u32,
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// Payload without padding.
    pub payload: Bytes,
    /// When the viewer read it.
    pub received: Instant,
    /// AV1 dependency-descriptor frame number, when the packet carries one.
    pub dd_frame: Option<u16>,
}

/// What to play and how.
#[derive(Clone)]
pub struct ViewerConfig {
    /// WHEP endpoint, e.g. `http://127.0.0.1:8080/whep/demo`.
    pub whep_url: String,
    /// Optional `Authorization: Bearer` token (a user JWT, needed to chat).
    pub bearer: Option<String>,
    /// Gather and use only ICE-TCP candidates; UDP candidates in the answer are dropped.
    pub tcp_only: bool,
    /// Open a `chat` data channel before the offer.
    pub data_channel: bool,
    /// Applied to the answer SDP before it is used.
    pub answer_rewrite: Option<AnswerRewrite>,
    /// The video codec offered (H.264 unless set).
    pub codec: ViewerCodec,
    /// Receives a copy of every video RTP packet, e.g. to depacketize and decode AV1/VP8.
    pub video_rtp: Option<mpsc::UnboundedSender<VideoRtp>>,
}

impl ViewerConfig {
    /// UDP, no data channel, no rewrite.
    pub fn new(whep_url: impl Into<String>) -> Self {
        Self {
            whep_url: whep_url.into(),
            bearer: None,
            tcp_only: false,
            data_channel: false,
            answer_rewrite: None,
            codec: ViewerCodec::H264,
            video_rtp: None,
        }
    }
}

impl std::fmt::Debug for ViewerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerConfig")
            .field("whep_url", &self.whep_url)
            .field("bearer", &self.bearer.as_ref().map(|_| "<set>"))
            .field("tcp_only", &self.tcp_only)
            .field("data_channel", &self.data_channel)
            .field("answer_rewrite", &self.answer_rewrite.is_some())
            .field("codec", &self.codec)
            .field("video_rtp", &self.video_rtp.is_some())
            .finish()
    }
}

/// What the viewer received and decoded.
#[derive(Debug, Clone, Default)]
pub struct ViewerStats {
    /// Pictures decoded.
    pub frames_decoded: u64,
    /// Access units the decoder rejected.
    pub decode_errors: u64,
    /// Width of the last decoded picture.
    pub width: u32,
    /// Height of the last decoded picture.
    pub height: u32,
    /// From the `play()` call to the first decoded picture.
    pub first_frame_after: Option<Duration>,
    /// Distinct embedded frame indices seen.
    pub frame_indices_seen: u64,
    /// Embedded index of the last decoded picture.
    pub last_frame_index: Option<u32>,
    /// Per decoded picture: now minus the embedded send time, in microseconds.
    pub latencies_us: Vec<i64>,
    /// Video RTP packets received.
    pub video_packets: u64,
    /// Audio RTP packets received.
    pub audio_packets: u64,
    /// Sequence-number jumps forward on the video SSRC (each gap counted once).
    pub seq_gaps: u64,
    /// Packets missing in those gaps.
    pub packets_lost: u64,
    /// Packets older than the newest seen (reordered or retransmitted).
    pub late_packets: u64,
    /// Number of distinct video SSRCs seen.
    pub ssrcs_seen: usize,
    /// The distinct video SSRCs, in order of appearance.
    pub video_ssrcs: Vec<u32>,
    /// Keyframes (IDR access units) decoded.
    pub keyframes_decoded: u64,
    /// Picture sizes, each appended when it changes.
    pub sizes_seen: Vec<(u32, u32)>,
    /// Whether the first access unit received was a keyframe.
    pub first_frame_was_keyframe: Option<bool>,
    /// Access units dropped before the first keyframe (joining mid-GOP).
    pub frames_before_first_keyframe_dropped: u64,
    /// Access units dropped later while waiting for a keyframe after loss or an error.
    pub frames_dropped_waiting_keyframe: u64,
    /// Access units with missing packets.
    pub incomplete_frames: u64,
    /// Decoded pictures whose embedded stamp could not be read.
    pub pattern_misses: u64,
    /// PLIs sent.
    pub plis_sent: u64,
    /// From `play()` to the offer being ready (ICE gathering done).
    pub offer_ready_after: Option<Duration>,
    /// From `play()` to the WHEP answer.
    pub answered_after: Option<Duration>,
    /// From `play()` to the peer connection reporting connected.
    pub connected_after: Option<Duration>,
    /// Current peer connection state.
    pub connection_state: RTCPeerConnectionState,
}

impl ViewerStats {
    /// The `p`-th percentile (0..=100) of `latencies_us`.
    pub fn latency_percentile_us(&self, p: f64) -> Option<i64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v.get(rank.min(v.len() - 1)).copied()
    }
}

/// Mutable state behind [`ViewerStats`].
#[derive(Default)]
struct Counters {
    stats: ViewerStats,
    indices: HashSet<u32>,
}

/// A running WHEP viewer.
pub struct Viewer {
    pc: Arc<dyn PeerConnection>,
    exchange: Arc<dyn SdpExchange>,
    session_url: String,
    last_response: Option<LastResponse>,
    counters: Arc<Mutex<Counters>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    chat: Option<ChatChannel>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    stopped: bool,
}

/// Plays over WHEP with the default [`ClientOptions`].
pub async fn play(cfg: ViewerConfig) -> anyhow::Result<Viewer> {
    let exchange = Arc::new(HttpExchange::new(&cfg.whep_url, cfg.bearer.clone())?);
    play_with(cfg, ClientOptions::default(), exchange).await
}

/// Plays through any [`SdpExchange`] (HTTP or in-process) with explicit options.
pub async fn play_with(
    cfg: ViewerConfig,
    opts: ClientOptions,
    exchange: Arc<dyn SdpExchange>,
) -> anyhow::Result<Viewer> {
    let started = Instant::now();
    let (handler, mut events) = PeerEvents::new();
    let pc = match cfg.codec {
        ViewerCodec::H264 => build_peer(&opts, cfg.tcp_only, handler).await?,
        ViewerCodec::Clip(codec) => {
            let video = match codec {
                ClipCodec::Av1 => video_codec(MIME_TYPE_AV1, "", AV1_PAYLOAD_TYPE),
                ClipCodec::Vp8 => video_codec(MIME_TYPE_VP8, "", VP8_PAYLOAD_TYPE),
            };
            build_peer_with_video_on(&opts, cfg.tcp_only, video, handler).await?
        }
    };
    let recvonly = || {
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        })
    };
    pc.add_transceiver_from_kind(RtpCodecKind::Video, recvonly())
        .await
        .context("adding video transceiver")?;
    pc.add_transceiver_from_kind(RtpCodecKind::Audio, recvonly())
        .await
        .context("adding audio transceiver")?;
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
    let offer_ready_after = started.elapsed();
    tracing::debug!(%offer_sdp, "WHEP offer");
    let negotiated = match exchange.negotiate(offer_sdp).await {
        Ok(n) => n,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    tracing::debug!(answer = %negotiated.answer, "WHEP answer");
    let answered_after = started.elapsed();

    let counters = Arc::new(Mutex::new(Counters::default()));
    {
        let mut c = counters.lock();
        c.stats.offer_ready_after = Some(offer_ready_after);
        c.stats.answered_after = Some(answered_after);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut viewer = Viewer {
        pc: pc.clone(),
        exchange,
        session_url: negotiated.session_url.clone(),
        last_response: negotiated.response.clone(),
        counters: counters.clone(),
        state: events.state.clone(),
        chat,
        stop: stop.clone(),
        tasks: Vec::new(),
        stopped: false,
    };

    let mut answer = negotiated.answer;
    if let Some(rewrite) = &cfg.answer_rewrite {
        answer = rewrite(answer);
    }
    // webrtc-rs opens an active ICE-TCP connection only for passive candidates added through
    // add_ice_candidate, never for ones inside the remote description: so in TCP mode strip
    // the candidates from the answer and add the passive TCP ones afterwards.
    let mut tcp_candidates = Vec::new();
    if cfg.tcp_only {
        tcp_candidates = candidates_in(&answer)
            .into_iter()
            .filter(|(c, _, _)| {
                candidate_transport(c).is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
                    && c.contains("tcptype passive")
            })
            .collect();
        answer = filter_candidates(&answer, |_| false);
        anyhow::ensure!(
            !tcp_candidates.is_empty(),
            "tcp_only: the answer has no passive TCP candidate"
        );
    }

    // Track handling must be running before media can arrive.
    let video = VideoSink {
        decode: cfg.codec == ViewerCodec::H264,
        tap: cfg.video_rtp.clone(),
        dd_ext: av1_dd::extmap_id(&answer),
    };
    viewer.tasks.push(tokio::spawn(route_tracks(
        events.tracks,
        counters.clone(),
        started,
        stop.clone(),
        video,
    )));

    let answer = RTCSessionDescription::answer(answer).context("parsing answer")?;
    pc.set_remote_description(answer)
        .await
        .context("set_remote_description(answer)")?;
    for (candidate, mid, mline) in tcp_candidates {
        pc.add_ice_candidate(RTCIceCandidateInit {
            candidate: format!("candidate:{candidate}"),
            sdp_mid: mid,
            sdp_mline_index: Some(mline),
            ..Default::default()
        })
        .await
        .context("adding TCP candidate")?;
    }
    wait_connected(&mut events.state, opts.connect_timeout).await?;
    counters.lock().stats.connected_after = Some(started.elapsed());
    Ok(viewer)
}

impl Viewer {
    /// The WHEP session URL (absolute `Location`).
    pub fn session_url(&self) -> &str {
        &self.session_url
    }

    /// Status and headers of the POST that created the session (`None` without HTTP).
    pub fn last_response(&self) -> Option<&LastResponse> {
        self.last_response.as_ref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ViewerStats {
        let mut s = self.counters.lock().stats.clone();
        s.connection_state = *self.state.borrow();
        s
    }

    /// The current peer connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until at least `frames` pictures were decoded; returns the stats then.
    pub async fn wait_frames(&self, frames: u64, timeout: Duration) -> anyhow::Result<ViewerStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if s.frames_decoded >= frames {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "only {} of {frames} frames decoded after {timeout:?}: {s:?}",
                    s.frames_decoded
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the connection reaches `state` (e.g. `Failed` after the stream ends).
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

    /// DELETEs the session and closes the peer connection.
    pub async fn stop(mut self) -> anyhow::Result<StopReport<ViewerStats>> {
        self.stopped = true;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.abort();
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

impl Drop for Viewer {
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

/// What the video reader does with packets besides counting them.
#[derive(Clone)]
struct VideoSink {
    /// Decode as H.264.
    decode: bool,
    /// Copy every packet here.
    tap: Option<mpsc::UnboundedSender<VideoRtp>>,
    /// Negotiated dependency-descriptor extension id.
    dd_ext: Option<u8>,
}

/// Hands each remote track to the video or audio reader.
async fn route_tracks(
    mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    counters: Arc<Mutex<Counters>>,
    started: Instant,
    stop: Arc<AtomicBool>,
    video: VideoSink,
) {
    // Dropping the JoinSet (when this task is aborted) aborts the readers too.
    let mut readers = tokio::task::JoinSet::new();
    while let Some(track) = tracks.recv().await {
        let counters = counters.clone();
        match track.kind().await {
            RtpCodecKind::Video => {
                readers.spawn(read_video(
                    track,
                    counters,
                    started,
                    stop.clone(),
                    video.clone(),
                ));
            }
            _ => {
                readers.spawn(read_audio(track, counters));
            }
        }
    }
    while readers.join_next().await.is_some() {}
}

async fn read_audio(track: Arc<dyn TrackRemote>, counters: Arc<Mutex<Counters>>) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(_) => counters.lock().stats.audio_packets += 1,
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// Per-SSRC sequence tracking for the gap counters.
#[derive(Default)]
struct SeqTracker {
    ssrc: Option<u32>,
    highest: u16,
}

async fn read_video(
    track: Arc<dyn TrackRemote>,
    counters: Arc<Mutex<Counters>>,
    started: Instant,
    stop: Arc<AtomicBool>,
    sink: VideoSink,
) {
    // Decoding is CPU-bound: a plain thread owns the decoder.
    let (au_tx, au_rx) = std::sync::mpsc::channel::<AccessUnit>();
    let (pli_tx, mut pli_rx) = mpsc::unbounded_channel::<()>();
    if sink.decode {
        let decode_counters = counters.clone();
        let decoder = std::thread::Builder::new()
            .name("onair-viewer-decode".to_owned())
            .spawn(move || decode_loop(au_rx, decode_counters, pli_tx, started));
        if let Err(e) = decoder {
            tracing::error!("spawning decoder thread: {e}");
            return;
        }
    }

    let mut assembler = AccessUnitAssembler::default();
    let mut seq = SeqTracker::default();
    let mut last_pli: Option<Instant> = None;
    loop {
        tokio::select! {
            event = track.poll() => {
                let Some(event) = event else { break };
                match event {
                    TrackRemoteEvent::OnRtpPacket(pkt) => {
                        let h = &pkt.header;
                        {
                            let mut c = counters.lock();
                            let s = &mut c.stats;
                            s.video_packets += 1;
                            if seq.ssrc != Some(h.ssrc) {
                                if !s.video_ssrcs.contains(&h.ssrc) {
                                    s.video_ssrcs.push(h.ssrc);
                                    s.ssrcs_seen = s.video_ssrcs.len();
                                }
                                seq = SeqTracker { ssrc: Some(h.ssrc), highest: h.sequence_number };
                                assembler.reset();
                            } else {
                                let delta = h.sequence_number.wrapping_sub(seq.highest);
                                if delta == 0 || delta >= 0x8000 {
                                    s.late_packets += 1;
                                } else {
                                    if delta > 1 {
                                        s.seq_gaps += 1;
                                        s.packets_lost += u64::from(delta - 1);
                                    }
                                    seq.highest = h.sequence_number;
                                }
                            }
                        }
                        if let Some(tap) = &sink.tap {
                            let _ = tap.send(VideoRtp {
                                ssrc: h.ssrc,
                                seq: h.sequence_number,
                                timestamp: h.timestamp,
                                marker: h.marker,
                                payload: pkt.payload.clone(),
                                received: Instant::now(),
                                dd_frame: sink
                                    .dd_ext
                                    .and_then(|id| h.get_extension(id))
                                    .and_then(|d| av1_dd::frame_number(&d)),
                            });
                        }
                        if !sink.decode {
                            continue;
                        }
                        for au in assembler.push(h.sequence_number, h.timestamp, h.marker, &pkt.payload) {
                            if au_tx.send(au).is_err() {
                                return;
                            }
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
            Some(()) = pli_rx.recv() => {
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                if last_pli.is_some_and(|t| t.elapsed() < PLI_INTERVAL) {
                    continue;
                }
                let Some(media_ssrc) = seq.ssrc else { continue };
                last_pli = Some(Instant::now());
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                if track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                    counters.lock().stats.plis_sent += 1;
                }
            }
        }
    }
}

fn decode_loop(
    units: std::sync::mpsc::Receiver<AccessUnit>,
    counters: Arc<Mutex<Counters>>,
    pli: mpsc::UnboundedSender<()>,
    started: Instant,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("creating decoder: {e:#}");
            return;
        }
    };
    let mut waiting_for_keyframe = true;
    while let Ok(au) = units.recv() {
        let decoded_any = {
            let mut c = counters.lock();
            c.stats.first_frame_was_keyframe.get_or_insert(au.keyframe);
            c.stats.frames_decoded > 0
        };
        let drop_reason = if !au.complete {
            Some(true)
        } else if waiting_for_keyframe && !au.keyframe {
            Some(false)
        } else {
            None
        };
        if let Some(incomplete) = drop_reason {
            let mut c = counters.lock();
            if incomplete {
                c.stats.incomplete_frames += 1;
            }
            if decoded_any {
                c.stats.frames_dropped_waiting_keyframe += 1;
            } else {
                c.stats.frames_before_first_keyframe_dropped += 1;
            }
            waiting_for_keyframe = true;
            let _ = pli.send(());
            continue;
        }
        match decoder.decode(&au.data) {
            Err(e) => {
                tracing::debug!("decode error: {e:#}");
                counters.lock().stats.decode_errors += 1;
                waiting_for_keyframe = true;
                let _ = pli.send(());
            }
            Ok(None) => {}
            Ok(Some(pic)) => {
                let now = now_us();
                if au.keyframe {
                    waiting_for_keyframe = false;
                }
                let mut c = counters.lock();
                let Counters { stats: s, indices } = &mut *c;
                s.frames_decoded += 1;
                if au.keyframe {
                    s.keyframes_decoded += 1;
                }
                if s.first_frame_after.is_none() {
                    s.first_frame_after = Some(started.elapsed());
                }
                if (s.width, s.height) != (pic.width, pic.height) {
                    s.width = pic.width;
                    s.height = pic.height;
                    s.sizes_seen.push((pic.width, pic.height));
                }
                match pic.stamp {
                    Some(stamp) => {
                        indices.insert(stamp.index);
                        s.frame_indices_seen = indices.len() as u64;
                        s.last_frame_index = Some(stamp.index);
                        s.latencies_us.push(now as i64 - stamp.timestamp_us as i64);
                    }
                    None => s.pattern_misses += 1,
                }
            }
        }
    }
}
