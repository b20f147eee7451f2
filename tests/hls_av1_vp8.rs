//! The LL-HLS fallback with AV1 and VP8 sources: a webrtc-rs WHIP publisher sends a clip that
//! ffmpeg encoded at test time (AV1 or VP8, plus Opus); the server remuxes AV1 as the `source`
//! rendition, decodes either (dav1d, libvpx) into its H.264 ladder, and ffprobe checks what it
//! serves. Each test skips with a note when ffmpeg has no encoder for its codec.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use common::hls::{bytes_ok, ffprobe, get, text_when_ok, uris};
use onair_loadtest::client::clip::ffmpeg_can_encode;
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, VideoSource, publish};
use onair_loadtest::client::{ClipCodec, EncodedClip};

/// Source size and the one rung the server is configured for (below the source height).
/// Small, because the ladder's scaler runs unoptimized in debug builds and the ladder sheds a
/// rung that does not keep up with real time.
const SOURCE: (u32, u32) = (320, 180);
const RUNG: (&str, u32, u32) = ("144p", 256, 144);
const LADDER: &str = "144";

/// One live stream at a time: two ladders in parallel on a 2-core machine fall behind.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `EXT-X-STREAM-INF` line in front of `uri_prefix` in a multivariant playlist.
fn variant_line<'a>(master: &'a str, uri_prefix: &str) -> &'a str {
    let lines: Vec<&str> = master.lines().collect();
    lines
        .iter()
        .position(|l| l.starts_with(uri_prefix))
        .and_then(|i| lines.get(i.checked_sub(1)?).copied())
        .unwrap_or_else(|| panic!("{uri_prefix} missing in\n{master}"))
}

/// A server with a one-rung ladder and a publisher sending `codec` at [`SOURCE`] size, 30 fps,
/// a keyframe every second, with Opus; `None` (skip) when ffmpeg cannot encode `codec`.
async fn live(codec: ClipCodec) -> Option<(TestServer, onair_loadtest::client::Publisher)> {
    if !ffmpeg_can_encode(codec) {
        eprintln!("ffmpeg has no {codec:?} encoder; skipping");
        return None;
    }
    let (w, h) = SOURCE;
    let clip = tokio::task::spawn_blocking(move || {
        EncodedClip::encode_with_ffmpeg(
            codec,
            w,
            h,
            30,
            Duration::from_secs(4),
            Duration::from_secs(1),
        )
    })
    .await
    .expect("join")
    .expect("ffmpeg clip");
    assert_eq!((clip.width, clip.height), SOURCE);

    let t = TestServer::start_with(|s| s.hls_ladder = LADDER.into()).await;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = vec![LayerSpec::single(w, h, 300_000)];
    cfg.fps = 30;
    cfg.keyframe_interval = Duration::from_secs(1);
    cfg.audio = true;
    cfg.video = VideoSource::Clip(Arc::new(clip));
    let publisher = publish(cfg).await.expect("publish");
    Some((t, publisher))
}

/// Waits until the multivariant playlist lists every URI prefix in `want` (it is not served
/// while there is no video variant yet).
async fn master_with(t: &TestServer, want: &[&str]) -> String {
    let mut master = String::new();
    for _ in 0..300 {
        let r = get(t, "/hls/chan/master.m3u8").await;
        let ok = r.status() == 200;
        master = r.text().await.expect("text");
        if ok && want.iter().all(|w| master.contains(&format!("\n{w}"))) {
            return master;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{want:?} not all listed in\n{master}");
}

/// Checks the transcoded rung: H.264 at the rung size, every segment decodable on its own
/// from a keyframe.
async fn check_rung(t: &TestServer, master: &str) {
    let (name, rw, rh) = RUNG;
    let line = variant_line(master, &format!("{name}/index.m3u8"));
    for attr in [
        format!("RESOLUTION={rw}x{rh}"),
        "CODECS=\"avc1.".to_string(),
        "AUDIO=\"aac\"".to_string(),
    ] {
        assert!(line.contains(&attr), "{attr} missing in {line}");
    }
    let list = text_when_ok(t, &format!("/hls/chan/{name}/index.m3u8?_HLS_msn=3")).await;
    assert!(list.contains("#EXT-X-PART:"), "{list}");
    let segs = uris(&list);
    assert!(segs.len() >= 3, "{list}");
    let base = format!("/hls/chan/{name}");
    let init = bytes_ok(t, &format!("{base}/init.mp4")).await;
    let mut total = 0;
    for uri in &segs {
        let mut media = init.clone();
        media.extend_from_slice(&bytes_ok(t, &format!("{base}/{uri}")).await);
        let probe = ffprobe(&media, "frame=key_frame");
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "h264", "{name}/{uri}");
        assert_eq!(
            (stream["width"].as_u64(), stream["height"].as_u64()),
            (Some(u64::from(rw)), Some(u64::from(rh))),
            "{name}/{uri}"
        );
        let frames = probe["frames"].as_array().expect("frames");
        assert!(!frames.is_empty(), "{name}/{uri} has no frames");
        assert_eq!(
            frames[0]["key_frame"], 1,
            "{name}/{uri} starts without a keyframe"
        );
        total += frames.len();
    }
    assert!(total >= 60, "{total} frames in {} segments", segs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_av1_source_is_remuxed_and_transcoded_to_h264() {
    let _serial = SERIAL.lock().await;
    let Some((t, publisher)) = live(ClipCodec::Av1).await else {
        return;
    };
    let master = master_with(&t, &["source/index.m3u8", "144p/index.m3u8"]).await;

    // The source rendition is the AV1 stream as sent, with the codec string of its real
    // sequence header (main profile, 8 bit) and the audio.
    let source = variant_line(&master, "source/index.m3u8");
    assert!(source.contains("CODECS=\"av01.0."), "{source}");
    assert!(source.contains(".08"), "8-bit source: {source}");
    assert!(source.contains("RESOLUTION=320x180"), "{source}");
    assert!(master.contains("audio/index.m3u8"), "{master}");

    let live = text_when_ok(&t, "/hls/chan/source/index.m3u8?_HLS_msn=2").await;
    assert!(live.contains("INDEPENDENT=YES"), "{live}");
    let mut media = bytes_ok(&t, "/hls/chan/source/init.mp4").await;
    for uri in uris(&live) {
        media.extend_from_slice(&bytes_ok(&t, &format!("/hls/chan/source/{uri}")).await);
    }
    let probe = ffprobe(&media, "frame=key_frame");
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "av1");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(u64::from(SOURCE.0)), Some(u64::from(SOURCE.1)))
    );
    let frames = probe["frames"].as_array().expect("frames");
    assert!(frames.len() >= 60, "{} frames", frames.len());
    assert_eq!(frames[0]["key_frame"], 1);

    check_rung(&t, &master).await;

    publisher.stop().await.expect("stop");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vp8_source_gets_only_the_transcoded_ladder() {
    let _serial = SERIAL.lock().await;
    let Some((t, publisher)) = live(ClipCodec::Vp8).await else {
        return;
    };
    let master = master_with(&t, &["144p/index.m3u8"]).await;
    assert!(master.contains("URI=\"audio/index.m3u8"), "{master}");
    // VP8 has no HLS packaging: no source rendition, no vp8 codec string.
    assert!(!master.contains("source/index.m3u8"), "{master}");
    assert!(!master.contains("vp8"), "{master}");
    check_rung(&t, &master).await;

    publisher.stop().await.expect("stop");
    t.stop().await;
}
