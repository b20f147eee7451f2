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

use super::peer::{ClientOptions, H264_FMTP, build_peer_lite, gathered_local_sdp, keyframe_requests};
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
}

impl RelayExchange {
    fn new(relay: &Arc<RelayState>, ingest: bool) -> Arc<Self> {
        Arc::new(Self {
            relay: relay.clone(),
            ingest,
            pc: Mutex::new(None),
        })
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
            let audio = relay_track(RtpCodecKind::Audio, MIME_TYPE_OPUS, "minptime=10;useinbandfec=1", audio_ssrc);
            let video_sender = pc.add_track(video.clone() as Arc<dyn TrackLocal>).await?;
            let audio_sender = pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await?;
            egress = Some((video, video_ssrc, video_sender, audio, audio_ssrc, audio_sender));
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
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn".into()),
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
    }
}

fn viewer_config() -> ViewerConfig {
    ViewerConfig {
        whep_url: String::new(),
        bearer: None,
        tcp_only: false,
        data_channel: true,
        answer_rewrite: None,
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

    let viewer = play_with(viewer_config(), ClientOptions::default(), RelayExchange::new(&relay, false)).await?;
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
    assert!(stats.first_frame_after.is_some_and(|d| d < Duration::from_secs(10)));

    // The keyframe the viewer needed was requested from the publisher.
    let pstats = publisher.stats();
    assert!(pstats.keyframe_requests_received >= 1, "{pstats:?}");
    assert!(pstats.keyframes_sent >= 2, "{pstats:?}");
    assert_eq!(pstats.layers[0].keyframe_requests, pstats.keyframe_requests_received);
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
