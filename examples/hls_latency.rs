//! LL-HLS glass-to-glass latency with hls.js: one WHIP publisher (webrtc-rs, openh264 encoding a
//! pattern that carries its capture clock) and headless Chromium playing the HLS fallback with
//! hls.js in low-latency mode. Latency = the frame's display time in the browser minus the clock
//! the publisher drew into it before encoding (encode, SFU, packaging, HTTP, MSE and decode
//! included). Needs `npm ci` in web/ and Debian chromium (scripts/test installs both).
//!
//! `cargo run --release --example hls_latency -- [seconds] [width] [height] [ladder]`
//! `ladder` is `--hls-ladder` (default `none`: the source rendition only).

mod common;

use std::time::Duration;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (seconds, width, height) = (arg(0, 20), arg(1, 640), arg(2, 360));
    let ladder = args.get(3).cloned().unwrap_or_else(|| "none".into());

    let common::Live {
        _dir,
        server,
        base,
        publisher,
    } = common::serve_and_publish(
        Some(&ladder),
        (width, height, 30),
        1_500_000,
        Duration::from_secs(1),
    )
    .await?;

    let master = format!("{base}/hls/demo/master.m3u8");
    eprintln!("playing {master}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(&master).send().await?.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = common::run_browser_script("hls_g2g.mjs", &[master, seconds.to_string()]).await;
    publisher.stop().await?;
    server.stop(Duration::from_secs(2)).await;
    println!("source {width}x{height}@30, {seconds} s: {}", out?);
    Ok(())
}
