//! Helpers of the HLS tests: HTTP reads that wait for a live stream, and ffprobe.

use std::time::Duration;

use onair_loadtest::client::publisher::{LayerSpec, Publisher, PublisherConfig, publish};

use super::TestServer;

/// GET `path` on the server.
pub async fn get(t: &TestServer, path: &str) -> reqwest::Response {
    t.http.get(t.url(path)).send().await.expect("get")
}

/// The body of `path` once it answers 200 (a live stream's playlists appear after a moment).
pub async fn text_when_ok(t: &TestServer, path: &str) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        let r = get(t, path).await;
        let status = r.status();
        let text = r.text().await.expect("text");
        if status == 200 {
            return text;
        }
        last = format!("{status}: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never answered 200 (last: {last})");
}

/// The body of `path`, which must answer 200.
pub async fn bytes_ok(t: &TestServer, path: &str) -> Vec<u8> {
    let r = get(t, path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().await.expect("body").to_vec()
}

/// The URI lines of a playlist.
pub fn uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// `ffprobe -show_streams -show_entries <what>` of an fMP4 (init + fragments) as JSON; fails the
/// test on any ffprobe complaint.
pub fn ffprobe(media: &[u8], what: &str) -> serde_json::Value {
    ffprobe_with(media, &["-show_streams", "-show_entries", what])
}

/// `ffprobe -v error <args> -of json` of an fMP4 (init + fragments); fails the test on any
/// ffprobe complaint.
pub fn ffprobe_with(media: &[u8], args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("media.mp4");
    std::fs::write(&path, media).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
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

/// A WHIP publisher on `chan`: the test pattern at 320x180, 30 fps, keyframes every second
/// (the source rendition's segment length), with Opus audio.
pub async fn publish_pattern(t: &TestServer) -> Publisher {
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = vec![LayerSpec::single(320, 180, 400_000)];
    cfg.fps = 30;
    cfg.keyframe_interval = Duration::from_secs(1);
    cfg.audio = true;
    publish(cfg).await.expect("publish")
}
