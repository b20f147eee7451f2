//! Tests of the clients against an in-process answerer: a tiny webrtc-rs "SFU" that takes
//! one publisher and forwards one of its layers to any number of viewers, without HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::watch;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCSessionDescription,
};

use super::peer::{
    ClientOptions, H264_FMTP, build_peer_lite, gathered_local_sdp, keyframe_requests,
};
use super::signaling::{Negotiated, SdpExchange};
use super::*;

/// Answers data-channel text with `echo:<text>` and reports remote tracks.
struct RelayPeerEvents {
    gathering: watch::Sender<RTCIceGatheringState>,
    relay: Arc<RelayState>,
    ingest: bool,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for RelayPeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        tokio::spawn(async move {
            while let Some(event) = dc.poll().await {
                match event {
                    DataChannelEvent::OnMessage(msg) if msg.is_string => {
                        let text = String::from_utf8_lossy(&msg.data).into_owned();
                        let _ = dc.send_text(&format!("echo:{text}")).await;
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
        });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.ingest {
            tokio::spawn(ingest_track(self.relay.clone(), track));
        }
    }
}

/// One viewer's outgoing tracks.
struct Sink {
    video: Arc<TrackLocalStaticRTP>,
    video_ssrc: u32,
    video_pt: u8,
    audio: Arc<TrackLocalStaticRTP>,
    audio_ssrc: u32,
    audio_pt: u8,
    video_seq: Mutex<SeqRewrite>,
}

/// Keeps a viewer's sequence numbers continuous when the forwarded layer changes (SRTP
/// replay protection rejects numbers it has seen).
#[derive(Default)]
struct SeqRewrite {
    source: Option<u32>,
    offset: u16,
    last_out: u16,
}

impl SeqRewrite {
    fn rewrite(&mut self, source_ssrc: u32, seq: u16) -> u16 {
        if self.source != Some(source_ssrc) {
            self.offset = self.last_out.wrapping_add(1).wrapping_sub(seq);
            self.source = Some(source_ssrc);
        }
        let out = seq.wrapping_add(self.offset);
        self.last_out = out;
        out
    }
}

#[derive(Default)]
struct RelayState {
    /// Which publisher layer goes to viewers (`None`: the non-simulcast one).
    forward_rid: Mutex<Option<String>>,
    /// Publisher SSRC -> rid, learned from `OnOpen`.
    ssrc_rid: Mutex<HashMap<u32, Option<String>>>,
    /// The publisher's video track, to send PLIs upstream.
    ingest_video: Mutex<Option<Arc<dyn TrackRemote>>>,
    sinks: Mutex<Vec<Arc<Sink>>>,
    plis_upstream: AtomicU64,
    tcp_egress: bool,
}

impl RelayState {
    fn forwarded_ssrc(&self) -> Option<u32> {
        let want = self.forward_rid.lock().clone();
        self.ssrc_rid
            .lock()
            .iter()
            .find(|(_, rid)| **rid == want)
            .map(|(ssrc, _)| *ssrc)
    }

    async fn request_keyframe(&self) {
        let track = self.ingest_video.lock().clone();
        let (Some(track), Some(media_ssrc)) = (track, self.forwarded_ssrc()) else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
            self.plis_upstream.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn ingest_track(relay: Arc<RelayState>, track: Arc<dyn TrackRemote>) {
    let video = track.kind().await == RtpCodecKind::Video;
    if video {
        *relay.ingest_video.lock() = Some(track.clone());
    }
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnOpen(init) if video => {
                relay.ssrc_rid.lock().insert(init.ssrc, init.rid.clone());
            }
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                if video {
                    let want = relay.forward_rid.lock().clone();
                    let rid = relay.ssrc_rid.lock().get(&pkt.header.ssrc).cloned();
                    if rid != Some(want) {
                        continue;
                    }
                }
                let sinks = relay.sinks.lock().clone();
                for sink in sinks {
                    let mut out = pkt.clone();
                    // The viewer negotiated its own ids; drop the publisher's extensions.
                    out.header.extension = false;
                    out.header.extensions.clear();
                    let track = if video {
                        out.header.sequence_number = sink
                            .video_seq
                            .lock()
                            .rewrite(pkt.header.ssrc, pkt.header.sequence_number);
                        out.header.ssrc = sink.video_ssrc;
                        out.header.payload_type = sink.video_pt;
                        &sink.video
                    } else {
                        out.header.ssrc = sink.audio_ssrc;
                        out.header.payload_type = sink.audio_pt;
                        &sink.audio
                    };
                    let _ = track.write_rtp(out).await;
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// The relay side of one session.
struct RelayExchange {
    relay: Arc<RelayState>,
    ingest: bool,
    pc: Mutex<Option<Arc<dyn PeerConnection>>>,
    offer: Mutex<Option<String>>,
}

impl RelayExchange {
    fn new(relay: &Arc<RelayState>, ingest: bool) -> Arc<Self> {
        Arc::new(Self {
            relay: relay.clone(),
            ingest,
            pc: Mutex::new(None),
            offer: Mutex::new(None),
        })
    }

    fn offer(&self) -> String {
        self.offer.lock().clone().unwrap_or_default()
    }
}

fn relay_track(kind: RtpCodecKind, mime: &str, fmtp: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let (clock_rate, channels) = if kind == RtpCodecKind::Video {
        (90_000, 0)
    } else {
        (48_000, 2)
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "relay".to_owned(),
        format!("relay-{kind}"),
        kind.to_string(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )))
}

async fn negotiated_pt(sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>) -> anyhow::Result<u8> {
    let params = sender
        .get_parameters()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    params
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .context("no codec negotiated")
}

#[async_trait::async_trait]
impl SdpExchange for RelayExchange {
    async fn negotiate(&self, offer: String) -> anyhow::Result<Negotiated> {
        *self.offer.lock() = Some(offer.clone());
        let (gather_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
        let handler = Arc::new(RelayPeerEvents {
            gathering: gather_tx,
            relay: self.relay.clone(),
            ingest: self.ingest,
        });
        let tcp = !self.ingest && self.relay.tcp_egress;
        // ICE-lite like an SFU: the relay never probes the client's own candidates, so a
        // client routed through a proxy by answer_rewrite really uses the proxy.
        let pc = build_peer_lite(&ClientOptions::default(), tcp, true, handler).await?;
        *self.pc.lock() = Some(pc.clone());
        let mut egress = None;
        if !self.ingest {
            let (video_ssrc, audio_ssrc) = (rand::random(), rand::random());
            let video = relay_track(RtpCodecKind::Video, MIME_TYPE_H264, H264_FMTP, video_ssrc);
            let audio = relay_track(
                RtpCodecKind::Audio,
                MIME_TYPE_OPUS,
                "minptime=10;useinbandfec=1",
                audio_ssrc,
            );
            let video_sender = pc.add_track(video.clone() as Arc<dyn TrackLocal>).await?;
            let audio_sender = pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await?;
            egress = Some((
                video,
                video_ssrc,
                video_sender,
                audio,
                audio_ssrc,
                audio_sender,
            ));
        }
        pc.set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = pc.create_answer(None).await?;
        pc.set_local_description(answer).await?;
        let sdp = gathered_local_sdp(&pc, &mut gathering, Duration::from_secs(5)).await?;

        if let Some((video, video_ssrc, video_sender, audio, audio_ssrc, audio_sender)) = egress {
            let sink = Arc::new(Sink {
                video: video.clone(),
                video_ssrc,
                video_pt: negotiated_pt(&video_sender).await?,
                audio,
                audio_ssrc,
                audio_pt: negotiated_pt(&audio_sender).await?,
                video_seq: Mutex::new(SeqRewrite::default()),
            });
            self.relay.sinks.lock().push(sink);
            // Viewer PLIs go upstream, like an SFU would do.
            let relay = self.relay.clone();
            tokio::spawn(async move {
                loop {
                    let Some(event) = video.poll().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                        continue;
                    };
                    if !keyframe_requests(&packets).is_empty() {
                        relay.request_keyframe().await;
                    }
                }
            });
            // And a new viewer wants a keyframe at once.
            self.relay.request_keyframe().await;
        }
        Ok(Negotiated {
            answer: sdp,
            session_url: format!(
                "relay://{}/{:08x}",
                if self.ingest { "ingest" } else { "egress" },
                rand::random::<u32>()
            ),
            response: None,
        })
    }

    async fn terminate(&self) -> anyhow::Result<Option<u16>> {
        let pc = self.pc.lock().take();
        if let Some(pc) = pc {
            let _ = pc.close().await;
        }
        Ok(None)
    }
}

fn relay(forward_rid: Option<&str>, tcp_egress: bool) -> Arc<RelayState> {
    Arc::new(RelayState {
        forward_rid: Mutex::new(forward_rid.map(str::to_owned)),
        tcp_egress,
        ..Default::default()
    })
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn summary(s: &ViewerStats) -> String {
    format!(
        "decoded {} (keyframes {}), indices {}, first frame after {:?}, latency p50 {:?} us p95 {:?} us, \
         dropped before keyframe {}, incomplete {}, gaps {}, plis {}, sizes {:?}, audio {}",
        s.frames_decoded,
        s.keyframes_decoded,
        s.frame_indices_seen,
        s.first_frame_after,
        s.latency_percentile_us(50.0),
        s.latency_percentile_us(95.0),
        s.frames_before_first_keyframe_dropped,
        s.incomplete_frames,
        s.seq_gaps,
        s.plis_sent,
        s.sizes_seen,
        s.audio_packets,
    )
}

fn publisher_config(layers: Vec<LayerSpec>, fps: u32) -> PublisherConfig {
    PublisherConfig {
        whip_url: String::new(),
        bearer: None,
        layers,
        fps,
        keyframe_interval: Duration::from_secs(10),
        audio: true,
        data_channel: true,
        video: Default::default(),
    }
}

fn viewer_config() -> ViewerConfig {
    ViewerConfig {
        whep_url: String::new(),
        bearer: None,
        tcp_only: false,
        data_channel: true,
        answer_rewrite: None,
        codec: Default::default(),
        video_rtp: None,
    }
}

/// Publisher -> relay -> viewer: frames decode with their embedded index and timestamp,
/// the late viewer starts on a keyframe it asked for, audio and chat work both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_flow_from_publisher_to_viewer() -> anyhow::Result<()> {
    init_tracing();
    let relay = relay(None, false);
    let publisher = publish_with(
        publisher_config(vec![LayerSpec::single(640, 360, 500_000)], 30),
        ClientOptions::default(),
        RelayExchange::new(&relay, true),
    )
    .await?;
    assert!(publisher.session_url().starts_with("relay://ingest/"));
    assert!(publisher.last_response().is_none());
    // Let it run past the first keyframe so the viewer joins mid-GOP.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let viewer = play_with(
        viewer_config(),
        ClientOptions::default(),
        RelayExchange::new(&relay, false),
    )
    .await?;
    let stats = viewer.wait_frames(30, Duration::from_secs(20)).await?;
    eprintln!("viewer: {}", summary(&stats));
    eprintln!("publisher: {:?}", publisher.stats());
    assert_eq!(stats.sizes_seen, vec![(640, 360)]);
    assert_eq!(stats.pattern_misses, 0, "{stats:?}");
    assert_eq!(stats.decode_errors, 0, "{stats:?}");
    assert!(stats.frame_indices_seen >= 30, "{stats:?}");
    assert!(stats.keyframes_decoded >= 1);
    assert_eq!(stats.ssrcs_seen, 1);
    let p50 = stats.latency_percentile_us(50.0).context("latencies")?;
    assert!((0..1_000_000).contains(&p50), "p50 latency {p50} us");
    assert!(
        stats
            .first_frame_after
            .is_some_and(|d| d < Duration::from_secs(10))
    );

    // The keyframe the viewer needed was requested from the publisher.
    let pstats = publisher.stats();
    assert!(pstats.keyframe_requests_received >= 1, "{pstats:?}");
    assert!(pstats.keyframes_sent >= 2, "{pstats:?}");
    assert_eq!(
        pstats.layers[0].keyframe_requests,
        pstats.keyframe_requests_received
    );
    assert!(pstats.audio_packets_sent > 10);
    assert!(viewer.stats().audio_packets > 10, "{:?}", viewer.stats());
    assert_eq!(pstats.connection_state, ConnectionState::Connected);

    publisher.send_text("hello from publisher").await?;
    let echo = tokio::time::timeout(Duration::from_secs(5), publisher.recv_text()).await?;
    assert_eq!(echo.as_deref(), Some("echo:hello from publisher"));
    viewer.send_text("hi").await?;
    let echo = tokio::time::timeout(Duration::from_secs(5), viewer.recv_text()).await?;
    assert_eq!(echo.as_deref(), Some("echo:hi"));

    let v = viewer.stop().await?;
    assert_eq!(v.delete_status, None);
    let p = publisher.stop().await?;
    assert!(p.stats.frames_sent >= v.stats.frames_decoded);
    Ok(())
}

/// Two simulcast layers in one m-line; the relay forwards the low one, then switches to the
/// high one and the viewer follows after the keyframe it asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_are_sent_and_switchable() -> anyhow::Result<()> {
    init_tracing();
    let relay = relay(Some("l"), false);
    let ingest = RelayExchange::new(&relay, true);
    let layers = vec![
        LayerSpec {
            rid: Some("h".to_owned()),
            width: 640,
            height: 360,
            bitrate_bps: 500_000,
        },
        LayerSpec {
            rid: Some("l".to_owned()),
            width: 320,
            height: 180,
            bitrate_bps: 150_000,
        },
    ];
    let mut cfg = publisher_config(layers, 20);
    cfg.audio = false;
    cfg.data_channel = false;
    let publisher = publish_with(cfg, ClientOptions::default(), ingest.clone()).await?;
    let offer = ingest.offer();
    assert!(offer.contains("a=rid:h send"), "{offer}");
    assert!(offer.contains("a=rid:l send"), "{offer}");
    assert!(offer.contains("a=simulcast:send h;l"), "{offer}");
    assert!(!offer.contains("m=audio"));
    assert!(!offer.contains("m=application"));

    let mut vcfg = viewer_config();
    vcfg.data_channel = false;
    let viewer = play_with(
        vcfg,
        ClientOptions::default(),
        RelayExchange::new(&relay, false),
    )
    .await?;
    let stats = viewer.wait_frames(10, Duration::from_secs(20)).await?;
    eprintln!("low layer: {}", summary(&stats));
    assert_eq!(stats.sizes_seen, vec![(320, 180)]);
    assert_eq!(stats.pattern_misses, 0);

    *relay.forward_rid.lock() = Some("h".to_owned());
    relay.request_keyframe().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let s = viewer.stats();
        if s.sizes_seen.len() == 2
            && s.width == 640
            && s.frames_decoded >= stats.frames_decoded + 10
        {
            break s;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no switch: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("after switch: {}", summary(&stats));
    assert_eq!(stats.sizes_seen, vec![(320, 180), (640, 360)]);
    assert_eq!(stats.pattern_misses, 0);

    let p = publisher.stats();
    eprintln!("publisher: {p:?}");
    assert_eq!(p.layers.len(), 2);
    assert!(p.layers.iter().all(|l| l.frames_sent >= 10), "{p:?}");
    assert!(
        p.layers[0].keyframe_requests >= 1,
        "h asked for a keyframe: {p:?}"
    );
    assert!(
        p.layers[1].keyframe_requests >= 1,
        "l asked for a keyframe: {p:?}"
    );
    assert!(p.layers[0].keyframes_sent >= 2, "{p:?}");
    viewer.stop().await?;
    publisher.stop().await?;
    Ok(())
}

/// A TCP-only viewer gathers no UDP candidates and receives media over ICE-TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_viewer_receives_over_ice_tcp() -> anyhow::Result<()> {
    init_tracing();
    let relay = relay(None, true);
    let mut cfg = publisher_config(vec![LayerSpec::single(320, 180, 200_000)], 20);
    cfg.data_channel = false;
    let publisher = publish_with(
        cfg,
        ClientOptions::default(),
        RelayExchange::new(&relay, true),
    )
    .await?;
    let mut vcfg = viewer_config();
    vcfg.tcp_only = true;
    let egress = RelayExchange::new(&relay, false);
    let viewer = play_with(vcfg, ClientOptions::default(), egress.clone()).await?;
    let stats = viewer.wait_frames(10, Duration::from_secs(20)).await?;
    eprintln!("tcp viewer: {}", summary(&stats));
    let offer = egress.offer();
    assert!(offer.contains("tcptype"), "{offer}");
    assert!(
        !offer
            .lines()
            .any(|l| l.starts_with("a=candidate:") && l.to_ascii_lowercase().contains(" udp ")),
        "{offer}"
    );
    assert!(stats.audio_packets > 0);
    // Data channel over TCP too.
    viewer.send_text("over tcp").await?;
    let echo = tokio::time::timeout(Duration::from_secs(5), viewer.recv_text()).await?;
    assert_eq!(echo.as_deref(), Some("echo:over tcp"));
    viewer.stop().await?;
    publisher.stop().await?;
    Ok(())
}

/// A viewer routed through the shaper by `answer_rewrite`: media flows while unlimited,
/// loses packets (and asks for keyframes) when starved, and recovers when the limit lifts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_through_shaper_degrades_and_recovers() -> anyhow::Result<()> {
    use crate::shaper::{Shaper, route_candidates_via, udp_candidate_addrs};

    init_tracing();
    let relay = relay(None, false);
    let mut cfg = publisher_config(vec![LayerSpec::single(640, 360, 500_000)], 30);
    cfg.data_channel = false;
    cfg.keyframe_interval = Duration::from_secs(1);
    let publisher = publish_with(
        cfg,
        ClientOptions::default(),
        RelayExchange::new(&relay, true),
    )
    .await?;

    // The relay's port is only known from its answer, so the shaper starts inside the rewrite.
    let shaper_slot: Arc<Mutex<Option<Shaper>>> = Arc::new(Mutex::new(None));
    let slot = shaper_slot.clone();
    let mut vcfg = viewer_config();
    vcfg.data_channel = false;
    vcfg.answer_rewrite = Some(Arc::new(move |sdp: String| {
        let Some(upstream) = udp_candidate_addrs(&sdp).into_iter().next() else {
            return sdp;
        };
        let started = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(Shaper::start(upstream))
        });
        let Ok(shaper) = started else { return sdp };
        let out = route_candidates_via(&sdp, upstream, shaper.local_addr());
        *slot.lock() = Some(shaper);
        out
    }));
    let viewer = play_with(
        vcfg,
        ClientOptions::default(),
        RelayExchange::new(&relay, false),
    )
    .await?;
    let before = viewer.wait_frames(15, Duration::from_secs(20)).await?;
    let shaped = shaper_slot
        .lock()
        .as_ref()
        .map(|s| s.stats())
        .context("shaper in use")?;
    assert!(
        shaped.down_packets > 0,
        "media goes through the shaper: {shaped:?}"
    );
    eprintln!("unlimited: {}", summary(&before));

    // Far below the stream's rate: packets are dropped, frames break, PLIs go out.
    if let Some(s) = shaper_slot.lock().as_ref() {
        s.set_rate_bps(Some(40_000));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starved = viewer.stats();
    eprintln!("starved: {}", summary(&starved));
    let shaped = shaper_slot
        .lock()
        .as_ref()
        .map(|s| s.stats())
        .context("shaper")?;
    assert!(shaped.down_dropped > 0, "{shaped:?}");
    assert!(starved.seq_gaps > before.seq_gaps, "{}", summary(&starved));
    assert!(
        starved.plis_sent > before.plis_sent,
        "{}",
        summary(&starved)
    );

    if let Some(s) = shaper_slot.lock().as_ref() {
        s.set_rate_bps(None);
    }
    let after = viewer
        .wait_frames(starved.frames_decoded + 15, Duration::from_secs(20))
        .await?;
    eprintln!("recovered: {}", summary(&after));
    assert_eq!(after.pattern_misses, 0);
    viewer.stop().await?;
    publisher.stop().await?;
    Ok(())
}

/// The futures of `publish` and `play` can be spawned.
#[allow(dead_code)]
fn client_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let p = publish(PublisherConfig::new("http://127.0.0.1:1/whip/x", None));
    is_send(&p);
    let v = play(ViewerConfig::new("http://127.0.0.1:1/whep/x"));
    is_send(&v);
}

/// A stand-in WHIP/WHEP server: HTTP in front of the relay.
mod http_server {
    use std::collections::HashMap;
    use std::sync::Arc;

    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{delete, post};
    use parking_lot::Mutex;

    use super::{RelayExchange, RelayState};
    use crate::client::SdpExchange;

    pub(super) struct Server {
        relay: Arc<RelayState>,
        sessions: Mutex<HashMap<String, Arc<RelayExchange>>>,
    }

    pub(super) async fn start(relay: Arc<RelayState>) -> anyhow::Result<std::net::SocketAddr> {
        let state = Arc::new(Server {
            relay,
            sessions: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/{kind}/{channel}", post(create))
            .route("/{kind}/{channel}/{session}", delete(remove))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    async fn create(
        State(server): State<Arc<Server>>,
        Path((kind, channel)): Path<(String, String)>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let ingest = kind == "whip";
        if ingest
            && headers.get(header::AUTHORIZATION)
                != Some(&HeaderValue::from_static("Bearer secret"))
        {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"onair\"")],
                "bad stream key",
            )
                .into_response();
        }
        if headers.get(header::CONTENT_TYPE) != Some(&HeaderValue::from_static("application/sdp")) {
            return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
        }
        let exchange = RelayExchange::new(&server.relay, ingest);
        let answer = match exchange.negotiate(body).await {
            Ok(n) => n.answer,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
        let id = format!("{:08x}", rand::random::<u32>());
        server.sessions.lock().insert(id.clone(), exchange);
        let mut resp = (StatusCode::CREATED, answer).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/sdp"),
        );
        // Relative on purpose: the client must resolve it.
        if let Ok(v) = HeaderValue::from_str(&format!("/{kind}/{channel}/{id}")) {
            h.insert(header::LOCATION, v);
        }
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        h.append(
            header::LINK,
            HeaderValue::from_static("<stun:127.0.0.1:3478>; rel=\"ice-server\""),
        );
        h.append(header::LINK, HeaderValue::from_static("<turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\"u\"; credential=\"p\""));
        resp
    }

    async fn remove(
        State(server): State<Arc<Server>>,
        Path((_kind, _channel, session)): Path<(String, String, String)>,
    ) -> StatusCode {
        let exchange = server.sessions.lock().remove(&session);
        match exchange {
            Some(e) => {
                let _ = e.terminate().await;
                StatusCode::OK
            }
            None => StatusCode::NOT_FOUND,
        }
    }
}

/// The HTTP exchange: bearer auth, 201 + relative Location resolved, headers recorded,
/// status errors surfaced as `HttpStatusError`, DELETE on stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_and_whep_over_http() -> anyhow::Result<()> {
    init_tracing();
    let relay = relay(None, false);
    let addr = http_server::start(relay.clone()).await?;
    let whip_url = format!("http://{addr}/whip/demo");

    let mut cfg = PublisherConfig::new(&whip_url, Some("wrong".to_owned()));
    cfg.layers = vec![LayerSpec::single(320, 180, 200_000)];
    let err = match publish(cfg.clone()).await {
        Ok(_) => anyhow::bail!("a wrong stream key must be refused"),
        Err(e) => e,
    };
    let status = err
        .downcast_ref::<HttpStatusError>()
        .context("typed status error")?;
    assert_eq!(status.response.status, 401);
    assert_eq!(
        status.response.header("www-authenticate"),
        Some("Bearer realm=\"onair\"")
    );
    assert_eq!(status.body, "bad stream key");

    cfg.bearer = Some("secret".to_owned());
    let publisher = publish(cfg).await?;
    let resp = publisher
        .last_response()
        .context("HTTP response recorded")?;
    assert_eq!(resp.status, 201);
    assert_eq!(resp.etag.as_deref(), Some("\"v1\""));
    assert_eq!(resp.links.len(), 2, "{resp:?}");
    assert_eq!(resp.content_type.as_deref(), Some("application/sdp"));
    assert!(
        publisher
            .session_url()
            .starts_with(&format!("http://{addr}/whip/demo/")),
        "{}",
        publisher.session_url()
    );

    let viewer = play(ViewerConfig::new(format!("http://{addr}/whep/demo"))).await?;
    assert!(
        viewer
            .session_url()
            .starts_with(&format!("http://{addr}/whep/demo/"))
    );
    viewer.wait_frames(5, Duration::from_secs(20)).await?;

    let v = viewer.stop().await?;
    assert_eq!(v.delete_status, Some(200));
    let p = publisher.stop().await?;
    assert_eq!(p.delete_status, Some(200));
    Ok(())
}
