//! hls.js in headless Chromium plays the LL-HLS fallback in low-latency mode: no fatal errors,
//! frames keep coming (each carries the publisher's clock, decoded from the picture), and the
//! latency hls.js measures stays under 3 s. Needs `npm ci` in web/ and Debian chromium (both
//! installed by scripts/test).

mod common;

use std::time::Duration;

use common::TestServer;
use common::hls::publish_pattern;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hls_js_plays_the_live_stream_with_low_latency() {
    let t = TestServer::start().await;
    let publisher = publish_pattern(&t).await;
    assert!(
        t.wait_for(Duration::from_secs(10), || async {
            t.http
                .get(t.url("/hls/chan/master.m3u8"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the HLS stream never started"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/browser/hls_g2g.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(t.url("/hls/chan/master.m3u8"))
        .arg("12")
        .output()
        .await
        .expect("node on PATH (scripts/test installs nodejs)");
    publisher.stop().await.expect("stop");
    t.stop().await;
    assert!(
        out.status.success(),
        "hls_g2g.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json report");
    println!("hls.js: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["size"], "320x180", "{r}");
    // 12 s at 30 fps: most frames shown, each with a readable clock.
    assert!(r["stamped"].as_u64().unwrap_or(0) >= 150, "{r}");
    let latency = r["hlsjs_latency_ms"]["p50"]
        .as_f64()
        .expect("hls.js latency");
    assert!(latency < 3000.0, "hls.js latency {latency} ms: {r}");
    let g2g = r["g2g_ms"]["p95"].as_f64().expect("glass-to-glass");
    assert!(g2g < 3000.0, "glass-to-glass p95 {g2g} ms: {r}");
}
