//! The LL-HLS fallback end to end: a webrtc-rs WHIP publisher (H.264 + Opus) goes live, the
//! server packages the source rendition and the audio, and ffprobe decodes what it serves.

mod common;

use std::time::Duration;

use common::TestServer;
use common::hls::{bytes_ok, ffprobe, get, publish_pattern, text_when_ok};
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, publish};

/// The tests of this file publish and transcode real video: run them one at a time so the
/// ladder test measures the ladder, not two servers competing for two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Init segment plus every listed segment of a media playlist, concatenated.
async fn download(t: &TestServer, base: &str, playlist: &str) -> Vec<u8> {
    let mut out = get(t, &format!("{base}/init.mp4"))
        .await
        .bytes()
        .await
        .expect("init")
        .to_vec();
    for uri in playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let r = get(t, &format!("{base}/{uri}")).await;
        assert_eq!(r.status(), 200, "{uri}");
        out.extend_from_slice(&r.bytes().await.expect("segment"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_stream_is_served_as_ll_hls_and_kept_as_vod() {
    let _serial = SERIAL.lock().await;
    let t = TestServer::start().await;
    let publisher = publish_pattern(&t).await;

    let master = text_when_ok(&t, "/hls/chan/master.m3u8").await;
    assert!(master.contains("#EXT-X-STREAM-INF:"), "{master}");
    assert!(master.contains("RESOLUTION=320x180"), "{master}");
    assert!(
        master.contains("avc1.") && master.contains("opus"),
        "{master}"
    );
    assert!(master.contains("source/index.m3u8") && master.contains("audio/index.m3u8"));
    // AAC for TVs without Opus: its own audio group, listed first, each video variant once per
    // group.
    let aac_variant = master.find("AUDIO=\"aac\"").expect("an AAC variant");
    let opus_variant = master.find("AUDIO=\"opus\"").expect("an Opus variant");
    assert!(aac_variant < opus_variant, "{master}");
    assert!(
        master.contains("CODECS=\"avc1.") && master.contains(",mp4a.40.2\""),
        "{master}"
    );

    // Wait until three segments exist, then read the live playlist.
    let live = text_when_ok(&t, "/hls/chan/source/index.m3u8?_HLS_msn=3").await;
    for tag in [
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES",
        "#EXT-X-PART-INF:PART-TARGET=",
        "#EXT-X-PART:",
        "INDEPENDENT=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\"",
        "#EXT-X-MAP:URI=\"init.mp4\"",
    ] {
        assert!(live.contains(tag), "{tag} missing in\n{live}");
    }
    // A request far beyond the live edge is refused.
    assert_eq!(
        get(&t, "/hls/chan/source/index.m3u8?_HLS_msn=999")
            .await
            .status(),
        400
    );

    // The video decodes, starts on a keyframe at every segment, at the published size.
    let video = download(&t, "/hls/chan/source", &live).await;
    let probe = ffprobe(&video, "frame=key_frame,pts");
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(320), Some(180))
    );
    let frames = probe["frames"].as_array().expect("frames");
    assert!(frames.len() >= 60, "{} frames", frames.len());
    assert_eq!(frames[0]["key_frame"], 1);

    let audio_list = text_when_ok(&t, "/hls/chan/audio/index.m3u8").await;
    let audio = download(&t, "/hls/chan/audio", &audio_list).await;
    let probe = ffprobe(&audio, "stream=codec_name,sample_rate");
    assert_eq!(probe["streams"][0]["codec_name"], "opus");
    let aac_list = text_when_ok(&t, "/hls/chan/aac/index.m3u8").await;
    let aac = download(&t, "/hls/chan/aac", &aac_list).await;
    let probe = ffprobe(&aac, "stream=codec_name,profile,sample_rate,channels");
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "aac", "{probe}");
    assert_eq!(stream["profile"], "LC", "{probe}");
    assert_eq!(stream["sample_rate"], "48000", "{probe}");
    assert_eq!(stream["channels"], 2, "{probe}");

    // The stream ends: ENDLIST, and the recording plays as VOD after a restart.
    publisher.stop().await.expect("stop");
    let mut ended = String::new();
    for _ in 0..100 {
        ended = text_when_ok(&t, "/hls/chan/source/index.m3u8").await;
        if ended.contains("#EXT-X-ENDLIST") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
    let t = t.restart().await;
    let vod_master = text_when_ok(&t, "/hls/chan/master.m3u8").await;
    assert!(vod_master.contains("source/index.m3u8"));
    let vod = text_when_ok(&t, "/hls/chan/source/index.m3u8").await;
    assert!(
        vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.contains("#EXT-X-ENDLIST"),
        "{vod}"
    );
    let all = download(&t, "/hls/chan/source", &vod).await;
    let probe = ffprobe(&all, "frame=key_frame");
    assert_eq!(probe["frames"][0]["key_frame"], 1);
    assert_eq!(get(&t, "/hls/nosuch/master.m3u8").await.status(), 404);
    t.stop().await;
}

/// Source size of the ladder test and the rungs the server should make of it. A 720p source
/// (rungs 480p + 360p) does not keep up in a debug build on a loaded 2-core machine (the
/// publisher's own encoder and the ladder's scaler are unoptimised there), so the test runs
/// the same pipeline on a small source, with headroom for other tests and builds running at
/// the same time; `ladder_bench` measures 720p in release.
const LADDER_SOURCE: (u32, u32) = (480, 270);
const LADDER_HEIGHTS: &str = "270,180,144";
const LADDER_RUNGS: [(&str, u32, u32); 2] = [("180p", 320, 180), ("144p", 256, 144)];

/// `baseMediaDecodeTime` of every `moof/traf/tfdt` in a fragment sequence, in order.
/// ffprobe decodes `init` + `seg` as `codec` at `size`: at least 10 frames, starting on the
/// segment's only keyframe (1 s segments, keyframes aligned by the ladder).
fn assert_segment_decodes_from_one_keyframe(
    init: &[u8],
    seg: &[u8],
    codec: &str,
    (w, h): (u32, u32),
    what: &str,
) {
    let mut media = init.to_vec();
    media.extend_from_slice(seg);
    let probe = ffprobe(&media, "frame=key_frame");
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], codec, "{what}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(u64::from(w)), Some(u64::from(h))),
        "{what}"
    );
    let frames = probe["frames"].as_array().expect("frames");
    assert!(frames.len() >= 10, "{what}: {} frames", frames.len());
    assert_eq!(
        frames[0]["key_frame"], 1,
        "{what} starts without a keyframe"
    );
    let keys = frames.iter().filter(|f| f["key_frame"] == 1).count();
    assert_eq!(keys, 1, "{what}: one keyframe per 1 s segment");
}

fn tfdts(bytes: &[u8]) -> Vec<u64> {
    fn walk(mut b: &[u8], out: &mut Vec<u64>) {
        while b.len() >= 8 {
            let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let kind = &b[4..8];
            if size < 8 || size > b.len() {
                return;
            }
            let body = &b[8..size];
            match kind {
                b"moof" | b"traf" => walk(body, out),
                b"tfdt" if body.len() >= 8 => {
                    let t = if body[0] == 1 && body.len() >= 12 {
                        u64::from_be_bytes(body[4..12].try_into().expect("8 bytes"))
                    } else {
                        u64::from(u32::from_be_bytes(body[4..8].try_into().expect("4 bytes")))
                    };
                    out.push(t);
                }
                _ => {}
            }
            b = &b[size..];
        }
    }
    let mut out = Vec::new();
    walk(bytes, &mut out);
    out
}

/// Segment URIs and EXTINF durations of a media playlist, plus its target duration.
fn segments(playlist: &str) -> (Vec<(String, f64)>, f64) {
    let mut out = Vec::new();
    let mut target = 0.0;
    let mut extinf = None;
    for l in playlist.lines() {
        if let Some(t) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = t.trim().parse().expect("target");
        } else if let Some(d) = l.strip_prefix("#EXTINF:") {
            extinf = Some(d.trim_end_matches(',').parse::<f64>().expect("extinf"));
        } else if !l.starts_with('#') && !l.is_empty() {
            out.push((l.to_string(), extinf.take().expect("EXTINF before URI")));
        }
    }
    (out, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_gets_an_aligned_transcoded_ladder() {
    let _serial = SERIAL.lock().await;
    let t = TestServer::start_with(|s| s.hls_ladder = LADDER_HEIGHTS.into()).await;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    let (w, h) = LADDER_SOURCE;
    cfg.layers = vec![LayerSpec::single(w, h, 600_000)];
    cfg.fps = 30;
    // Source keyframes every 2 s: the rungs' 1 s keyframes are the ladder's own.
    cfg.keyframe_interval = Duration::from_secs(2);
    cfg.audio = true;
    let publisher = publish(cfg).await.expect("publish");

    // The rungs appear once the ladder has encoded their first IDR.
    let mut master = String::new();
    for _ in 0..200 {
        master = text_when_ok(&t, "/hls/chan/master.m3u8").await;
        if LADDER_RUNGS
            .iter()
            .all(|(name, ..)| master.contains(&format!("{name}/index.m3u8?")))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(master.contains("source/index.m3u8"), "{master}");
    assert!(master.contains("audio/index.m3u8"), "{master}");
    assert!(
        !master.contains("270p/"),
        "no rung at the source height: {master}"
    );
    for (name, rw, rh) in LADDER_RUNGS {
        let line = master
            .lines()
            .position(|l| l.starts_with(&format!("{name}/index.m3u8")))
            .and_then(|i| master.lines().nth(i.checked_sub(1)?))
            .unwrap_or_else(|| panic!("{name} missing in\n{master}"));
        for attr in [
            format!("RESOLUTION={rw}x{rh}"),
            "FRAME-RATE=".to_string(),
            "CODECS=\"avc1.42".to_string(),
            "AVERAGE-BANDWIDTH=".to_string(),
            "AUDIO=\"aac\"".to_string(),
        ] {
            assert!(line.contains(&attr), "{attr} missing in {line}");
        }
        // The publisher aims at 30 fps; a loaded machine may deliver fewer.
        let fps: f64 = line
            .split("FRAME-RATE=")
            .nth(1)
            .and_then(|r| r.split(',').next()?.parse().ok())
            .expect("frame rate");
        assert!((10.0..=30.5).contains(&fps), "{line}");
    }

    // Four complete segments in every rung, then compare them.
    let mut starts: Vec<Vec<(String, u64)>> = Vec::new();
    for (name, rw, rh) in LADDER_RUNGS {
        let list = text_when_ok(&t, &format!("/hls/chan/{name}/index.m3u8?_HLS_msn=4")).await;
        assert!(list.contains("#EXT-X-PART:"), "{list}");
        let (segs, target) = segments(&list);
        // TARGETDURATION is shared by the whole ladder (the source's keyframe interval may be
        // longer); the rungs' own segments are 1 s, cut at the ladder's IDRs.
        assert!(target >= 1.0, "{list}");
        assert!(segs.len() >= 4, "{list}");
        let base = format!("/hls/chan/{name}");
        let init = get(&t, &format!("{base}/init.mp4"))
            .await
            .bytes()
            .await
            .expect("init")
            .to_vec();
        let mut rung_starts = Vec::new();
        for (uri, extinf) in &segs {
            // 1 s plus at most one frame, or longer when a loaded machine made the ladder drop
            // frames up to a keyframe (that GOP is skipped, not stretched beyond 1.5 s).
            assert!(
                (0.9..=1.5).contains(extinf) && extinf.round() <= target,
                "{name}/{uri}: EXTINF {extinf}"
            );
            let seg = get(&t, &format!("{base}/{uri}"))
                .await
                .bytes()
                .await
                .expect("segment")
                .to_vec();
            let tfdt = *tfdts(&seg).first().expect("tfdt");
            let name_only = uri.split('?').next().unwrap_or_default().to_string();
            rung_starts.push((name_only, tfdt));
            // Each segment decodes on its own from a keyframe, at the rung's size.
            assert_segment_decodes_from_one_keyframe(
                &init,
                &seg,
                "h264",
                (rw, rh),
                &format!("{name}/{uri}"),
            );
        }
        // Segment durations from the timestamps themselves stay within the target.
        for pair in rung_starts.windows(2) {
            let d = pair[1].1 - pair[0].1;
            assert!((80_000..=135_000).contains(&d), "{name}: {pair:?}");
        }
        starts.push(rung_starts);
    }
    // The same segment starts at the same media time in every rung, so players can switch.
    let common: Vec<_> = starts[0]
        .iter()
        .filter_map(|(uri, t0)| {
            let other = starts[1].iter().find(|(u, _)| u == uri)?;
            Some((uri.clone(), *t0, other.1))
        })
        .collect();
    assert!(common.len() >= 3, "{starts:?}");
    for (uri, a, b) in &common {
        assert_eq!(a, b, "{uri} starts at different times in the rungs");
    }

    // The ladder kept up (nothing shed) and reported what it did.
    assert_eq!(t.metric("onair_hls_shed_renditions_total").await, 0.0);
    assert!(t.metric("onair_hls_encode_seconds_count").await > 60.0);
    assert!(t.metric("onair_hls_part_latency_seconds").await > 0.0);

    publisher.stop().await.expect("stop");
    t.stop().await;
}

/// The opt-in AV1 rendition (`--hls-av1-height`): a 640x360 H.264 source, one H.264 rung and
/// the AV1 one at 180p (small, because rav1e shares a 2-core machine with the publisher's
/// encoder, the source decode and other tests).
const AV1_SOURCE: (u32, u32) = (640, 360);
const AV1_RUNG: (&str, u32, u32) = ("av1-180p", 320, 180);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_opt_in_av1_rendition_is_encoded_with_rav1e() {
    let _serial = SERIAL.lock().await;
    let t = TestServer::start_with(|s| {
        s.hls_ladder = "180".into();
        s.hls_av1_height = 180;
    })
    .await;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    let (w, h) = AV1_SOURCE;
    cfg.layers = vec![LayerSpec::single(w, h, 800_000)];
    cfg.fps = 30;
    cfg.keyframe_interval = Duration::from_secs(2);
    cfg.audio = true;
    let publisher = publish(cfg).await.expect("publish");

    let (name, rw, rh) = AV1_RUNG;
    let mut master = String::new();
    for _ in 0..200 {
        master = text_when_ok(&t, "/hls/chan/master.m3u8").await;
        if master.contains(&format!("\n{name}/index.m3u8")) && master.contains("\n180p/") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // H.264 first (source, then the rung), AV1 last: players that take the first variant they
    // can play start on H.264.
    let first = |uri: &str| {
        master
            .find(&format!("\n{uri}"))
            .unwrap_or_else(|| panic!("{uri} missing in\n{master}"))
    };
    assert!(first("source/") < first("180p/"), "{master}");
    assert!(first("180p/") < first(&format!("{name}/")), "{master}");
    let line = master
        .lines()
        .position(|l| l.starts_with(&format!("{name}/index.m3u8")))
        .and_then(|i| master.lines().nth(i.checked_sub(1)?))
        .expect("variant line");
    // The CODECS string comes from rav1e's own sequence header: main profile, level 2.0 for
    // 320x180, 8 bit.
    for attr in [
        "CODECS=\"av01.0.00M.08,mp4a.40.2\"".to_string(),
        format!("RESOLUTION={rw}x{rh}"),
        "BANDWIDTH=".to_string(),
        "AVERAGE-BANDWIDTH=".to_string(),
        "FRAME-RATE=".to_string(),
        "AUDIO=\"aac\"".to_string(),
    ] {
        assert!(line.contains(&attr), "{attr} missing in {line}");
    }

    let list = text_when_ok(&t, &format!("/hls/chan/{name}/index.m3u8?_HLS_msn=3")).await;
    assert!(list.contains("#EXT-X-PART:"), "{list}");
    let (segs, _) = segments(&list);
    assert!(segs.len() >= 3, "{list}");
    let base = format!("/hls/chan/{name}");
    let init = bytes_ok(&t, &format!("{base}/init.mp4")).await;
    for (uri, extinf) in &segs {
        assert!(
            (0.9..=1.5).contains(extinf),
            "{name}/{uri}: EXTINF {extinf}"
        );
        let seg = bytes_ok(&t, &format!("{base}/{uri}")).await;
        assert_segment_decodes_from_one_keyframe(
            &init,
            &seg,
            "av1",
            (rw, rh),
            &format!("{name}/{uri}"),
        );
    }

    // It reports through the ladder's metrics like any rung, and kept up.
    let metrics = get(&t, "/metrics").await.text().await.expect("metrics");
    let encoded = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "onair_hls_encode_seconds_count{{rendition=\"{name}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no encode time for {name} in\n{metrics}"));
    assert!(encoded > 60.0, "{encoded} frames encoded");
    assert_eq!(t.metric("onair_hls_shed_renditions_total").await, 0.0);

    publisher.stop().await.expect("stop");
    t.stop().await;
}
