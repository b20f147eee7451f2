//! WebRTC time to first frame and glass-to-glass latency as a browser sees it: one WHIP
//! publisher (webrtc-rs, openh264 encoding a pattern that carries its capture clock) and N WHEP
//! viewers in one headless Chromium page (`loadtest/browser/whep_g2g.mjs`), joining 300 ms
//! apart. TTFF = the viewer's first presented frame minus the moment before `createOffer`, with
//! its phases (ICE gathering, WHEP answer, ICE, DTLS, first RTP, first frame). Latency = the
//! frame's display time in the browser minus the clock the publisher drew into it before
//! encoding. The HLS transcoder is off (`hls_ladder = "none"`), so it does not compete for the
//! CPU. Needs `npm ci` in web/ and Debian chromium (scripts/test installs both).
//!
//! `cargo run --release --example whep_latency -- [viewers] [seconds] [width] [height]`

mod common;

use std::time::Duration;

use onair_loadtest::client::ConnectionState;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (viewers, seconds, width, height) = (arg(0, 10), arg(1, 20), arg(2, 320), arg(3, 180));

    let common::Live {
        _dir,
        server,
        base,
        publisher,
    } = common::serve_and_publish(
        Some("none"),
        (width, height, 30),
        1_500_000,
        Duration::from_secs(1),
    )
    .await?;
    // Live once the publisher's media flows; whep_g2g.mjs still retries a 409 (not live yet).
    publisher
        .wait_state(ConnectionState::Connected, Duration::from_secs(10))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let whep = format!("{base}/whep/demo");
    eprintln!("playing {whep} with {viewers} Chromium viewers");
    let out = common::run_browser_script(
        "whep_g2g.mjs",
        &[whep, viewers.to_string(), seconds.to_string()],
    )
    .await;
    let published = publisher.stats().frames_sent;
    publisher.stop().await?;
    server.stop(Duration::from_secs(2)).await;
    println!(
        "source {width}x{height}@30, {viewers} viewers, {seconds} s, {published} frames published: {}",
        out?
    );
    Ok(())
}
