//! The media plane with AV1 and VP8 end to end: a webrtc-rs WHIP publisher sends a clip that
//! ffmpeg encoded at test time (320x180, 30 fps, a keyframe every second); webrtc-rs WHEP viewers
//! offer the same codec, and what they receive goes through the transcoder's depacketizer and the
//! real decoder (dav1d for AV1, libvpx for VP8). AV1 also goes through simulcast layer switches
//! with its dependency descriptor. Each test skips with a note when ffmpeg has no encoder for
//! its codec.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use onair_loadtest::client::clip::ffmpeg_can_encode;
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, VideoSource, publish};
use onair_loadtest::client::viewer::{VideoRtp, Viewer, ViewerCodec, ViewerConfig, play};
use onair_loadtest::client::{ClipCodec, EncodedClip};
use onair_transcoder::depacketize::{
    Av1Depacketizer, Depacketizer, Output, RtpIn, Vp8Depacketizer,
};
use onair_transcoder::ladder::{Av1Decoder, Picture, SourceFrame, VideoDecoder, Vp8Decoder};
use tokio::sync::mpsc;

const SIZE: (u32, u32) = (320, 180);
const FPS: u32 = 30;
/// How long the first viewer's video is analysed.
const WATCH: Duration = Duration::from_secs(3);
/// The late viewer must decode its first picture this soon after `play()` is called.
const LATE_FIRST_PICTURE: Duration = Duration::from_millis(1500);

/// One live stream at a time: the machine running the tests may have only two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn av1_publisher_to_decoding_viewers() {
    run(ClipCodec::Av1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp8_publisher_to_decoding_viewers() {
    run(ClipCodec::Vp8).await;
}

/// Two AV1 layers whose dependency descriptors count frames from unrelated random starts; a
/// viewer switched between them by hand must see one frame-number sequence, +1 per frame, and
/// decode every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn av1_simulcast_switches_keep_dependency_descriptor_frame_numbers() {
    if !ffmpeg_can_encode(ClipCodec::Av1) {
        eprintln!("ffmpeg has no AV1 encoder; skipping");
        return;
    }
    let _serial = SERIAL.lock().await;
    let clip = clip(ClipCodec::Av1).await;
    let t = TestServer::start_with(|s| s.hls_ladder = "none".into()).await;
    let (w, h) = SIZE;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = ["h", "l"]
        .into_iter()
        .map(|rid| LayerSpec {
            rid: Some(rid.into()),
            ..LayerSpec::single(w, h, 300_000)
        })
        .collect();
    cfg.fps = FPS;
    // Long enough that switches land on keyframes the SFU asked for.
    cfg.keyframe_interval = Duration::from_secs(10);
    cfg.audio = false;
    cfg.video = VideoSource::Clip(Arc::new(clip));
    let publisher = publish(cfg).await.expect("publish");

    let switches_before = t.metric("onair_sfu_layer_switches_total").await;
    let watch_for = Duration::from_secs(5);
    let (v, watching) = watch(&t, ClipCodec::Av1, watch_for).await;
    let layer_url = format!("{}/layer", v.session_url());
    for rid in ["l", "h"] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = t
            .http
            .post(&layer_url)
            .header("content-type", "application/json")
            .body(format!(r#"{{"mediaId":"1","rid":"{rid}"}}"#))
            .send()
            .await
            .expect("select");
        assert_eq!(r.status(), 200, "select {rid}");
    }
    let report = watching.await.expect("join");
    eprintln!("AV1 simulcast viewer: {report:?}");
    report.check(ClipCodec::Av1);
    let switches = t.metric("onair_sfu_layer_switches_total").await - switches_before;
    assert!(switches >= 2.0, "two switches happened: {switches}");
    assert!(
        report.dd_frames >= report.decoded && report.decoded >= 60,
        "every decoded frame carried a descriptor: {report:?}"
    );
    assert!(
        report.dd_jumps.is_empty(),
        "descriptor frame numbers not continuous at {:?}",
        report.dd_jumps
    );

    v.stop().await.expect("stop");
    publisher.stop().await.expect("stop");
    t.stop().await;
}

/// A 4 s clip of `codec` at [`SIZE`] and [`FPS`], a keyframe every second.
async fn clip(codec: ClipCodec) -> EncodedClip {
    let (w, h) = SIZE;
    tokio::task::spawn_blocking(move || {
        EncodedClip::encode_with_ffmpeg(
            codec,
            w,
            h,
            FPS,
            Duration::from_secs(4),
            Duration::from_secs(1),
        )
    })
    .await
    .expect("join")
    .expect("ffmpeg clip")
}

async fn run(codec: ClipCodec) {
    if !ffmpeg_can_encode(codec) {
        eprintln!("ffmpeg has no {codec:?} encoder; skipping");
        return;
    }
    let _serial = SERIAL.lock().await;
    let test_started = Instant::now();
    let (w, h) = SIZE;
    let clip = clip(codec).await;
    assert_eq!((clip.width, clip.height), SIZE);

    // No HLS ladder: this test is about the WebRTC media plane only.
    let t = TestServer::start_with(|s| s.hls_ladder = "none".into()).await;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = vec![LayerSpec::single(w, h, 300_000)];
    cfg.fps = FPS;
    cfg.keyframe_interval = Duration::from_secs(1);
    cfg.audio = true;
    cfg.video = VideoSource::Clip(Arc::new(clip));
    let publisher = publish(cfg).await.expect("publish");
    assert_eq!(publisher.last_response().map(|r| r.status), Some(201));

    // The first viewer: ~3 s of video, all of it decodable.
    let (first, watching) = watch(&t, codec, WATCH).await;
    let report = watching.await.expect("join");
    eprintln!("{codec:?} first viewer: {report:?}");
    report.check(codec);
    assert!(
        report.decoded >= 45,
        "at least 45 of ~{} frames decoded in {WATCH:?}: {report:?}",
        WATCH.as_secs() * u64::from(FPS)
    );

    // A viewer joining mid-stream: the SFU asks the publisher for a keyframe, and the viewer
    // decodes at once rather than waiting for the clip's own next one.
    let requests_before = publisher.stats().keyframe_requests_received;
    let (late, watching) = watch(&t, codec, WATCH).await;
    let late_report = watching.await.expect("join");
    eprintln!("{codec:?} late viewer: {late_report:?}");
    late_report.check(codec);
    let first_after = late_report
        .first_picture_after
        .expect("the late viewer decodes");
    assert!(
        first_after < LATE_FIRST_PICTURE,
        "the late viewer's first picture came {first_after:?} after joining"
    );
    assert!(
        publisher.stats().keyframe_requests_received > requests_before,
        "the late viewer's join reached the publisher as a keyframe request"
    );

    for v in [first, late] {
        let r = v.stop().await.expect("stop");
        assert_eq!(r.delete_status, Some(200));
    }
    let r = publisher.stop().await.expect("stop");
    assert_eq!(r.delete_status, Some(200));
    t.stop().await;
    eprintln!("{codec:?} test took {:?}", test_started.elapsed());
}

/// Starts a viewer offering `codec` and a task that depacketizes and decodes its video for
/// `watch_for` (counted from the `play()` call).
async fn watch(
    t: &TestServer,
    codec: ClipCodec,
    watch_for: Duration,
) -> (Viewer, tokio::task::JoinHandle<Report>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut cfg = ViewerConfig::new(t.url("/whep/chan"));
    cfg.codec = ViewerCodec::Clip(codec);
    cfg.video_rtp = Some(tx);
    let joined = Instant::now();
    let viewer = play(cfg).await.expect("play");
    let task = tokio::spawn(analyse(codec, rx, joined, joined + watch_for));
    (viewer, task)
}

/// What one viewer's video amounted to.
#[derive(Debug, Default)]
struct Report {
    packets: u64,
    ssrcs: Vec<u32>,
    /// Frames the depacketizer completed.
    frames: u64,
    keyframes: u64,
    decoded: u64,
    /// Decode errors before any keyframe was decoded (should not happen either: the
    /// depacketizer holds frames back until a keyframe).
    errors_before_keyframe: u64,
    errors_after_keyframe: u64,
    first_error: Option<String>,
    /// Losses the depacketizer reported after the first decoded picture.
    losses_after_start: u64,
    first_size: Option<(u32, u32)>,
    sizes: Vec<(u32, u32)>,
    /// From `play()` to the first decoded picture (its last packet's arrival).
    first_picture_after: Option<Duration>,
    /// VP8: frame starts carrying a PictureID.
    picture_ids: u64,
    /// VP8: the first and last of those PictureIDs.
    picture_id_range: Option<(u16, u16)>,
    /// VP8: frame starts whose PictureID is not the previous one plus one.
    picture_id_jumps: Vec<(u16, u16)>,
    /// AV1: frames whose packets carried a dependency descriptor.
    dd_frames: u64,
    /// AV1: (previous, next) descriptor frame numbers that do not go on by one per frame (or
    /// change inside a frame).
    dd_jumps: Vec<(u16, u16)>,
}

impl Report {
    /// What every viewer must see, however long it watched.
    fn check(&self, codec: ClipCodec) {
        assert!(self.packets > 0, "no video RTP: {self:?}");
        assert_eq!(self.ssrcs.len(), 1, "one video SSRC: {self:?}");
        assert_eq!(
            self.first_size,
            Some(SIZE),
            "first picture's size: {self:?}"
        );
        assert!(
            self.sizes.iter().all(|s| *s == SIZE),
            "sizes: {:?}",
            self.sizes
        );
        assert_eq!(
            self.errors_after_keyframe, 0,
            "decode errors after the first keyframe: {self:?}"
        );
        assert_eq!(self.errors_before_keyframe, 0, "{self:?}");
        assert!(self.keyframes >= 1, "{self:?}");
        if codec == ClipCodec::Vp8 {
            assert!(
                self.picture_ids >= self.decoded,
                "every VP8 frame carries a PictureID: {self:?}"
            );
            assert!(
                self.picture_id_jumps.is_empty(),
                "PictureIDs not continuous at {:?} (of {} frame starts)",
                self.picture_id_jumps,
                self.picture_ids
            );
        }
    }
}

/// The PictureID of a VP8 payload descriptor that starts a frame (S = 1, PID = 0), with its
/// modulus (0x80 or 0x8000); `None` for other packets or descriptors without one.
fn vp8_frame_start_picture_id(p: &[u8]) -> Option<(u16, u16)> {
    let b0 = *p.first()?;
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 || b0 & 0x80 == 0 {
        return None;
    }
    if p.get(1)? & 0x80 == 0 {
        return None;
    }
    let b = *p.get(2)?;
    if b & 0x80 != 0 {
        Some((u16::from(b & 0x7f) << 8 | u16::from(*p.get(3)?), 0x8000))
    } else {
        Some((u16::from(b), 0x80))
    }
}

/// Depacketizes and decodes a viewer's video from `joined` until `until`.
async fn analyse(
    codec: ClipCodec,
    mut rx: mpsc::UnboundedReceiver<VideoRtp>,
    joined: Instant,
    until: Instant,
) -> Report {
    let (mut depack, mut decoder): (Box<dyn Depacketizer + Send>, Box<dyn VideoDecoder>) =
        match codec {
            ClipCodec::Av1 => (
                Box::new(Av1Depacketizer::new()),
                Box::new(Av1Decoder::new().expect("dav1d")),
            ),
            ClipCodec::Vp8 => (
                Box::new(Vp8Depacketizer::new()),
                Box::new(Vp8Decoder::new().expect("libvpx")),
            ),
        };
    let mut picture = Picture::default();
    let mut r = Report::default();
    // (sequence number, PictureID) of VP8 frame starts.
    let mut starts: Vec<(u16, (u16, u16))> = Vec::new();
    let mut first_seq = None;
    let mut keyframe_decoded = false;
    // (sequence number, RTP timestamp, descriptor frame number) of AV1 packets.
    let mut dds: Vec<(u16, u32, u16)> = Vec::new();
    let end = tokio::time::Instant::from_std(until);
    while let Ok(Some(pkt)) = tokio::time::timeout_at(end, rx.recv()).await {
        r.packets += 1;
        if !r.ssrcs.contains(&pkt.ssrc) {
            r.ssrcs.push(pkt.ssrc);
        }
        first_seq.get_or_insert(pkt.seq);
        if let Some(n) = pkt.dd_frame {
            dds.push((pkt.seq, pkt.timestamp, n));
        }
        if codec == ClipCodec::Vp8
            && let Some(id) = vp8_frame_start_picture_id(&pkt.payload)
        {
            starts.push((pkt.seq, id));
        }
        let outputs = depack.push(&RtpIn {
            seq: pkt.seq,
            timestamp: pkt.timestamp,
            marker: pkt.marker,
            payload: &pkt.payload,
        });
        for out in outputs {
            let frame = match out {
                Output::Frame(f) => f,
                Output::NeedKeyframe => {
                    if r.decoded > 0 {
                        r.losses_after_start += 1;
                    }
                    continue;
                }
            };
            r.frames += 1;
            if frame.keyframe {
                r.keyframes += 1;
            }
            let source = SourceFrame {
                dts: u64::from(frame.timestamp),
                keyframe: frame.keyframe,
                data: &frame.data,
            };
            match decoder.decode(&source, &mut picture) {
                Ok(true) => {
                    keyframe_decoded |= frame.keyframe;
                    r.decoded += 1;
                    let size = (picture.width, picture.height);
                    r.first_size.get_or_insert(size);
                    if r.sizes.last() != Some(&size) {
                        r.sizes.push(size);
                    }
                    r.first_picture_after
                        .get_or_insert_with(|| pkt.received.duration_since(joined));
                }
                Ok(false) => {}
                Err(e) => {
                    r.first_error.get_or_insert_with(|| e.to_string());
                    if keyframe_decoded {
                        r.errors_after_keyframe += 1;
                    } else {
                        r.errors_before_keyframe += 1;
                    }
                }
            }
        }
    }
    // PictureIDs and descriptors in sequence order (retransmissions and reordering aside),
    // each packet once.
    if let Some(first) = first_seq {
        starts.sort_by_key(|(seq, _)| seq.wrapping_sub(first));
        starts.dedup_by_key(|(seq, _)| *seq);
        dds.sort_by_key(|(seq, _, _)| seq.wrapping_sub(first));
        dds.dedup_by_key(|(seq, _, _)| *seq);
    }
    r.dd_frames =
        dds.windows(2).filter(|w| w[0].1 != w[1].1).count() as u64 + u64::from(!dds.is_empty());
    r.dd_jumps = dds
        .windows(2)
        .filter(|w| {
            let ((_, ts_a, a), (_, ts_b, b)) = (w[0], w[1]);
            if ts_a == ts_b {
                b != a
            } else {
                b != a.wrapping_add(1)
            }
        })
        .map(|w| (w[0].2, w[1].2))
        .collect();
    let ids: Vec<(u16, u16)> = starts.into_iter().map(|(_, id)| id).collect();
    r.picture_ids = ids.len() as u64;
    r.picture_id_range = ids.first().zip(ids.last()).map(|(a, b)| (a.0, b.0));
    r.picture_id_jumps = ids
        .windows(2)
        .filter(|w| {
            // Senders write 7 bits while the ID fits (webrtc-rs does) and 15 after: the value
            // must go on by one, wrapping at 15 bits, or at 7 while both are 7-bit.
            let ((a, m), (b, n)) = (w[0], w[1]);
            b != (a + 1) % 0x8000 && !(m == 0x80 && n == 0x80 && b == (a + 1) % 0x80)
        })
        .map(|w| (w[0].0, w[1].0))
        .collect();
    r
}
