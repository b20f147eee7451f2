//! End-to-end latency and time to first frame on loopback: one WHIP publisher (webrtc-rs,
//! openh264 encoding a pattern that carries its capture clock) and N WHEP viewers decoding it.
//!
//! `cargo run --release --example latency -- [viewers] [seconds] [width] [height] [fps]`
//! Latency = viewer's clock at decode minus the clock the publisher drew into the frame before
//! encoding: encode, packetize, SFU, depacketize and decode included (no camera, no display).

mod common;

use std::time::Duration;

use onair_loadtest::client::viewer::{ViewerConfig, play};

fn pct(v: &mut [i64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)] as f64
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (viewers, seconds, width, height, fps) = (
        arg(0, 10),
        arg(1, 20),
        arg(2, 1280),
        arg(3, 720),
        arg(4, 30),
    );

    let common::Live {
        _dir,
        server,
        base,
        publisher,
    } = common::serve_and_publish(
        None,
        (width, height, fps),
        2_500_000,
        Duration::from_secs(2),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut vs = Vec::new();
    for _ in 0..viewers {
        vs.push(play(ViewerConfig::new(format!("{base}/whep/demo"))).await?);
    }
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;

    let mut ttff: Vec<i64> = Vec::new();
    let (mut offer, mut answer, mut connected) = (Vec::new(), Vec::new(), Vec::new());
    let mut lat: Vec<i64> = Vec::new();
    let (mut frames, mut errors) = (0, 0);
    for v in &vs {
        let s = v.stats();
        if let Some(d) = s.first_frame_after {
            ttff.push(d.as_micros() as i64);
        }
        let us = |d: Option<Duration>| d.map(|d| d.as_micros() as i64);
        offer.extend(us(s.offer_ready_after));
        answer.extend(us(s.answered_after));
        connected.extend(us(s.connected_after));
        // Skip the first second of each viewer: the join itself is what TTFF measures.
        let skip = (fps as usize).min(s.latencies_us.len());
        lat.extend_from_slice(&s.latencies_us[skip..]);
        frames += s.frames_decoded;
        errors += s.decode_errors;
    }
    let published = publisher.stats().frames_sent;
    println!(
        "| viewers | {width}x{height}@{fps} | frames published | frames decoded (all viewers) | decode errors | TTFF p50 | TTFF p95 | latency p50 | latency p95 | latency p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {viewers} | {seconds} s | {published} | {frames} | {errors} | {:.0} ms | {:.0} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        pct(&mut ttff, 50.0) / 1000.0,
        pct(&mut ttff, 95.0) / 1000.0,
        pct(&mut lat, 50.0) / 1000.0,
        pct(&mut lat, 95.0) / 1000.0,
        pct(&mut lat, 99.0) / 1000.0,
    );
    println!(
        "\nTTFF breakdown (p50): offer gathered {:.0} ms, WHEP answer {:.0} ms, connected {:.0} ms, first frame {:.0} ms",
        pct(&mut offer, 50.0) / 1000.0,
        pct(&mut answer, 50.0) / 1000.0,
        pct(&mut connected, 50.0) / 1000.0,
        pct(&mut ttff, 50.0) / 1000.0,
    );
    for v in vs {
        let _ = v.stop().await;
    }
    let _ = publisher.stop().await;
    server.stop(Duration::from_secs(2)).await;
    Ok(())
}
