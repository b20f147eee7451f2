//! The LL-HLS fallback end to end: a webrtc-rs WHIP publisher (H.264 + Opus) goes live, the
//! server packages the source rendition and the audio, and ffprobe decodes what it serves.

mod common;

use std::time::Duration;

use common::TestServer;
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, publish};

async fn get(t: &TestServer, path: &str) -> reqwest::Response {
    t.http.get(t.url(path)).send().await.expect("get")
}

async fn text_when_ok(t: &TestServer, path: &str) -> String {
    for _ in 0..100 {
        let r = get(t, path).await;
        if r.status() == 200 {
            return r.text().await.expect("text");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never answered 200");
}

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

fn ffprobe(bytes: &[u8], what: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("media.mp4");
    std::fs::write(&path, bytes).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_entries"])
        .arg(what)
        .args(["-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe on PATH (scripts/test installs ffmpeg)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_stream_is_served_as_ll_hls_and_kept_as_vod() {
    let t = TestServer::start().await;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = vec![LayerSpec::single(320, 180, 400_000)];
    cfg.fps = 30;
    cfg.keyframe_interval = Duration::from_secs(1);
    cfg.audio = true;
    let publisher = publish(cfg).await.expect("publish");

    let master = text_when_ok(&t, "/hls/chan/master.m3u8").await;
    assert!(master.contains("#EXT-X-STREAM-INF:"), "{master}");
    assert!(master.contains("RESOLUTION=320x180"), "{master}");
    assert!(
        master.contains("avc1.") && master.contains("opus"),
        "{master}"
    );
    assert!(master.contains("source/index.m3u8") && master.contains("audio/index.m3u8"));

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
