//! LL-HLS glass-to-glass latency with hls.js: one WHIP publisher (webrtc-rs, openh264 encoding a
//! pattern that carries its capture clock) and headless Chromium playing the HLS fallback with
//! hls.js in low-latency mode. Latency = the frame's display time in the browser minus the clock
//! the publisher drew into it before encoding (encode, SFU, packaging, HTTP, MSE and decode
//! included). Needs `npm ci` in web/ and Debian chromium (scripts/test installs both).
//!
//! `cargo run --release --example hls_latency -- [seconds] [width] [height] [ladder]`
//! `ladder` is `--hls-ladder` (default `none`: the source rendition only).

use std::time::Duration;

use onair::{ServeSettings, Server};
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, publish};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (seconds, width, height) = (arg(0, 20), arg(1, 640), arg(2, 360));
    let ladder = args.get(3).cloned().unwrap_or_else(|| "none".into());

    let dir = tempfile::tempdir()?;
    let mut settings = ServeSettings::loopback(dir.path().into());
    settings.hls_ladder = ladder;
    let server = Server::start(&settings).await?;
    let key = server
        .demo_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no demo channel"))?;
    let base = format!("http://{}", server.http_addr);

    let mut cfg = PublisherConfig::new(format!("{base}/whip/demo"), Some(key));
    cfg.layers = vec![LayerSpec::single(width, height, 1_500_000)];
    cfg.fps = 30;
    cfg.keyframe_interval = Duration::from_secs(1);
    cfg.audio = true;
    let publisher = publish(cfg).await?;

    let master = format!("{base}/hls/demo/master.m3u8");
    eprintln!("playing {master}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(&master).send().await?.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/browser/hls_g2g.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(&master)
        .arg(seconds.to_string())
        .output()
        .await?;
    publisher.stop().await?;
    server.stop(Duration::from_secs(2)).await;
    anyhow::ensure!(
        out.status.success(),
        "hls_g2g.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "source {width}x{height}@30, {seconds} s: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}
