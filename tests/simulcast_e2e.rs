//! Simulcast end to end: a three-layer webrtc-rs publisher; a viewer switched by hand through the
//! WHEP layer extension, and a viewer behind a bandwidth-limited link moved down and back up by
//! the bandwidth estimate. Every switch must land on a keyframe (no decode error), on one SSRC.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, publish};
use onair_loadtest::client::viewer::{Viewer, ViewerConfig, play};
use onair_loadtest::shaper::{Shaper, route_candidates_via};

async fn wait_height(v: &Viewer, height: u32, timeout: Duration) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if v.stats().height == height {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulcast_manual_and_bandwidth_driven_switches() {
    let t = TestServer::start().await;
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = LayerSpec::simulcast_hml(1280, 720, 1_500_000);
    cfg.fps = 20;
    cfg.keyframe_interval = Duration::from_secs(5);
    cfg.audio = true;
    let publisher = publish(cfg).await.expect("publish");

    // --- Manual selection through the WHEP layer extension.
    let v = play(ViewerConfig::new(t.url("/whep/chan")))
        .await
        .expect("play");
    v.wait_frames(20, Duration::from_secs(20))
        .await
        .expect("frames");
    let layer_url = format!("{}/layer", v.session_url());
    let select = |rid: &'static str| {
        t.http
            .post(&layer_url)
            .header("content-type", "application/json")
            .body(format!(r#"{{"mediaId":"1","rid":"{rid}"}}"#))
            .send()
    };
    assert_eq!(select("l").await.expect("select").status(), 200);
    assert!(
        wait_height(&v, 180, Duration::from_secs(10)).await,
        "switched to the low layer: {:?}",
        v.stats()
    );
    assert_eq!(select("h").await.expect("select").status(), 200);
    assert!(
        wait_height(&v, 720, Duration::from_secs(10)).await,
        "switched to the high layer: {:?}",
        v.stats()
    );
    let s = v
        .wait_frames(v.stats().frames_decoded + 10, Duration::from_secs(10))
        .await
        .expect("frames");
    assert_eq!(
        s.decode_errors, 0,
        "every switch landed on a keyframe: {s:?}"
    );
    // A switch itself leaves no gap (the munger's unit tests check that exactly); a rare real
    // loss on a loaded machine is allowed here.
    assert!(
        s.seq_gaps <= 2,
        "sequence numbers continuous across switches: {s:?}"
    );
    assert_eq!(s.video_ssrcs.len(), 1, "one SSRC whatever the layer: {s:?}");
    assert!(s.sizes_seen.contains(&(320, 180)) && s.sizes_seen.contains(&(1280, 720)));
    v.stop().await.expect("stop");

    // --- A viewer behind a shaped link.
    let shaper = Arc::new(Shaper::start(t.server.media_addr).await.expect("shaper"));
    let upstream = t.server.media_addr;
    let proxy = shaper.local_addr();
    let mut vc = ViewerConfig::new(t.url("/whep/chan"));
    vc.answer_rewrite = Some(Arc::new(move |sdp: String| {
        route_candidates_via(&sdp, upstream, proxy)
            .split_inclusive('\n')
            .filter(|l| !l.contains(" tcp "))
            .collect()
    }));
    let v = play(vc).await.expect("play via shaper");
    v.wait_frames(10, Duration::from_secs(20))
        .await
        .expect("frames via shaper");
    assert!(
        wait_height(&v, 720, Duration::from_secs(30)).await,
        "the estimate climbs to the top layer on an open link: {:?}",
        v.stats()
    );
    // Squeeze the link below the middle layer's measured rate (a simple pattern encodes well
    // under the encoder's target, so the real rates are what count).
    let track = t.server.signaling.sfu().track("chan").expect("live");
    let mut rates = track.video.as_ref().expect("video").rates();
    rates.sort_unstable();
    let limit = (rates[0] + rates[1]) / 2 + 20_000;
    shaper.set_rate_bps(Some(limit));
    assert!(
        wait_height(&v, 180, Duration::from_secs(30)).await,
        "moved down to the low layer at {limit} bit/s (layer rates {rates:?}): {:?}",
        v.stats()
    );
    shaper.set_rate_bps(None);
    assert!(
        wait_height(&v, 720, Duration::from_secs(60)).await,
        "moved back up when the link opens: {:?}",
        v.stats()
    );
    let s = v.stats();
    assert_eq!(s.video_ssrcs.len(), 1, "{s:?}");
    assert!(t.metric("onair_sfu_layer_switches_total").await >= 4.0);
    v.stop().await.expect("stop");
    publisher.stop().await.expect("stop");
    t.stop().await;
}
