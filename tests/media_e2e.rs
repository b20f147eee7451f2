//! Media end to end with an independent WebRTC stack (webrtc-rs): a WHIP publisher sends real
//! H.264 (openh264, a moving test pattern with an embedded frame index and clock) plus Opus;
//! WHEP viewers decode what they get.

mod common;

use std::time::Duration;

use common::TestServer;
use onair_loadtest::client::publisher::{LayerSpec, Publisher, PublisherConfig, publish};
use onair_loadtest::client::viewer::{ViewerConfig, play};

async fn start_publisher(t: &TestServer, layers: Vec<LayerSpec>, fps: u32) -> Publisher {
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = layers;
    cfg.fps = fps;
    cfg.keyframe_interval = Duration::from_secs(4);
    cfg.audio = true;
    let p = publish(cfg).await.expect("publish");
    assert_eq!(p.last_response().map(|r| r.status), Some(201));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h264_to_three_viewers_late_joiner_and_cleanup() {
    let t = TestServer::start().await;
    let publisher = start_publisher(&t, vec![LayerSpec::single(640, 360, 800_000)], 25).await;

    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(
            play(ViewerConfig::new(t.url("/whep/chan")))
                .await
                .expect("play"),
        );
    }
    for v in &viewers {
        let s = v
            .wait_frames(40, Duration::from_secs(20))
            .await
            .expect("frames decoded");
        assert_eq!((s.width, s.height), (640, 360));
        assert_eq!(s.decode_errors, 0, "{s:?}");
        assert!(s.frame_indices_seen >= 30, "the pattern moves: {s:?}");
        assert!(s.audio_packets > 0, "audio arrives");
        assert_eq!(s.first_frame_was_keyframe, Some(true));
    }
    assert_eq!(t.metric("onair_sfu_viewers").await, 3.0);

    // A viewer joining mid-stream gets a decodable keyframe at once: the SFU asks the publisher
    // for one (the publisher's keyframe interval is 4 s, far longer than we wait here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = play(ViewerConfig::new(t.url("/whep/chan")))
        .await
        .expect("play");
    let s = late
        .wait_frames(10, Duration::from_secs(10))
        .await
        .expect("late joiner decodes");
    assert_eq!(s.first_frame_was_keyframe, Some(true));
    assert_eq!(s.decode_errors, 0);
    assert!(
        s.first_frame_after
            .is_some_and(|d| d < Duration::from_millis(2500)),
        "first frame after {:?}",
        s.first_frame_after
    );
    assert!(
        publisher.stats().keyframe_requests_received > 0,
        "a keyframe request reached the publisher"
    );
    viewers.push(late);

    // DELETE frees everything.
    for v in viewers {
        let r = v.stop().await.expect("stop");
        assert_eq!(r.delete_status, Some(200));
    }
    let r = publisher.stop().await.expect("stop");
    assert_eq!(r.delete_status, Some(200));
    assert!(
        t.wait_for(Duration::from_secs(5), || async {
            t.metric("onair_sfu_peers").await == 0.0
        })
        .await
    );
    assert!(!t.server.signaling.sfu().is_live("chan"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ice_tcp_viewer_plays() {
    let t = TestServer::start().await;
    let publisher = start_publisher(&t, vec![LayerSpec::single(320, 180, 300_000)], 20).await;
    let mut cfg = ViewerConfig::new(t.url("/whep/chan"));
    cfg.tcp_only = true;
    let v = play(cfg).await.expect("play over TCP");
    let s = v
        .wait_frames(20, Duration::from_secs(20))
        .await
        .expect("frames over ICE-TCP");
    assert_eq!((s.width, s.height), (320, 180));
    assert_eq!(s.decode_errors, 0);
    v.stop().await.expect("stop");
    publisher.stop().await.expect("stop");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vanished_viewer_is_torn_down_by_consent_freshness() {
    use onair_loadtest::shaper::{Shaper, route_candidates_via};
    use std::sync::Arc;

    let t = TestServer::start().await;
    let publisher = start_publisher(&t, vec![LayerSpec::single(320, 180, 300_000)], 15).await;
    let shaper = Shaper::start(t.server.media_addr).await.expect("shaper");
    let (upstream, proxy) = (t.server.media_addr, shaper.local_addr());
    let mut cfg = ViewerConfig::new(t.url("/whep/chan"));
    cfg.answer_rewrite = Some(Arc::new(move |sdp: String| {
        route_candidates_via(&sdp, upstream, proxy)
            .split_inclusive('\n')
            .filter(|l| !l.contains(" tcp "))
            .collect()
    }));
    let v = play(cfg).await.expect("play");
    v.wait_frames(5, Duration::from_secs(20))
        .await
        .expect("frames");
    assert_eq!(t.metric("onair_sfu_viewers").await, 1.0);
    // The viewer's network disappears: no DELETE, no DTLS close, no more consent checks.
    drop(shaper);
    assert!(
        t.wait_for(Duration::from_secs(60), || async {
            t.metric("onair_sfu_viewers").await == 0.0
        })
        .await,
        "the dead viewer was not torn down"
    );
    assert_eq!(t.server.api.live().watchers("chan"), 0);
    drop(v);
    publisher.stop().await.expect("stop");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_stream_row_and_watcher_count_follow_real_peers() {
    let t = TestServer::start().await;
    let info = || async {
        let r = t
            .http
            .get(t.url("/api/channels/chan"))
            .send()
            .await
            .expect("GET");
        r.json::<serde_json::Value>().await.expect("json")
    };
    let count = || async {
        let r = t
            .http
            .get(t.url("/api/channels/chan/live-stream/currentWatcherCount"))
            .send()
            .await
            .expect("GET");
        r.json::<serde_json::Value>().await.expect("json")["currentWatcherCount"].as_u64()
    };
    assert!(
        info().await["currentStreamInfo"].is_null(),
        "offline before the publish"
    );

    let publisher = start_publisher(&t, vec![LayerSpec::single(320, 180, 300_000)], 15).await;
    assert!(
        !info().await["currentStreamInfo"].is_null(),
        "live after the publish"
    );
    let mut viewers = Vec::new();
    for _ in 0..5 {
        viewers.push(
            play(ViewerConfig::new(t.url("/whep/chan")))
                .await
                .expect("play"),
        );
    }
    for v in &viewers {
        v.wait_frames(3, Duration::from_secs(20))
            .await
            .expect("frames");
    }
    assert!(
        t.wait_for(Duration::from_secs(5), || async {
            count().await == Some(5)
        })
        .await
    );
    assert_eq!(info().await["currentStreamInfo"]["currentWatcherCount"], 5);
    for v in viewers {
        v.stop().await.expect("stop");
    }
    assert!(
        t.wait_for(Duration::from_secs(30), || async {
            count().await == Some(0)
        })
        .await
    );
    publisher.stop().await.expect("stop");
    assert!(
        t.wait_for(Duration::from_secs(5), || async {
            info().await["currentStreamInfo"].is_null()
        })
        .await
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_channel_in_a_whep_offer_is_surfaced_to_the_server() {
    use onair_sfu::SfuEvent;

    let t = TestServer::start().await;
    let publisher = start_publisher(&t, vec![LayerSpec::single(320, 180, 300_000)], 15).await;
    let sfu = t.server.signaling.sfu().clone();
    let mut events = sfu.subscribe();
    let mut cfg = ViewerConfig::new(t.url("/whep/chan"));
    cfg.data_channel = true;
    let v = play(cfg).await.expect("play");

    // The server sees the channel open...
    let peer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(SfuEvent::DataOpen { peer, label }) = events.recv().await {
                assert_eq!(label, "chat");
                return peer;
            }
        }
    })
    .await
    .expect("data channel opened");
    assert_eq!(t.metric("onair_sfu_data_channels").await, 1.0);
    // ...receives the client's text...
    v.send_text("hello from the viewer").await.expect("send");
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(SfuEvent::DataText {
                peer: p,
                label,
                text,
            }) = events.recv().await
            {
                assert_eq!((p, label.as_str()), (peer, "chat"));
                return text;
            }
        }
    })
    .await
    .expect("text arrives");
    assert_eq!(text, "hello from the viewer");
    // ...and can write back on it.
    sfu.send_text(peer, "chat", "hello from the server")
        .expect("send_text");
    // The chat service speaks on this channel too (welcome, notices): skip its frames.
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match v.recv_text().await {
                Some(t) if t.starts_with('{') => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("in time");
    assert_eq!(got.as_deref(), Some("hello from the server"));
    // Video flows on the same connection.
    v.wait_frames(5, Duration::from_secs(10))
        .await
        .expect("frames");
    v.stop().await.expect("stop");
    assert!(
        t.wait_for(Duration::from_secs(5), || async {
            t.metric("onair_sfu_data_channels").await == 0.0
        })
        .await
    );
    publisher.stop().await.expect("stop");
    t.stop().await;
}

/// Behind NAT the advertised address is on no interface (a cloud VM's public IP): the media
/// port binds the unspecified address instead of failing, and answers carry only the
/// advertised address (198.51.100.7, a documentation address, stands in for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn advertised_address_on_no_interface_binds_the_unspecified_address() {
    let public: std::net::IpAddr = [198, 51, 100, 7].into();
    let t = TestServer::start_with(|s| {
        s.media_addr = "0.0.0.0:0".parse().expect("addr");
        s.public_ip = vec![public];
    })
    .await;
    assert_eq!(t.server.media_addr.ip(), public);
    let offer = include_str!("fixtures/obs-h264.sdp");
    let r = t
        .http
        .post(t.url("/whip/chan"))
        .bearer_auth(&t.key)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .expect("whip");
    assert_eq!(r.status(), 201);
    let answer = r.text().await.expect("answer");
    let candidates: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate"))
        .collect();
    let port = t.server.media_addr.port().to_string();
    assert_eq!(
        candidates.len(),
        2,
        "one UDP, one passive TCP: {candidates:?}"
    );
    assert!(
        candidates
            .iter()
            .all(|c| c.contains(&format!(" 198.51.100.7 {port} "))),
        "only the advertised address and the bound port: {candidates:?}"
    );
    // The unspecified address holds the port: nothing else can bind it on loopback.
    let port = t.server.media_addr.port();
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    t.stop().await;
}
