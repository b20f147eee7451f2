//! Golden SDP fixtures: offers as OBS, ffmpeg and Chrome really send them; the answers are
//! checked line by line for what each client requires.

mod common;

use common::{TestServer, fixture, sections};
use reqwest::StatusCode;

async fn publish(t: &TestServer, sdp: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = t
        .http
        .post(t.url(&format!("/whip/{}", t.channel)))
        .bearer_auth(&t.key)
        .header("content-type", "application/sdp")
        .body(sdp.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

/// What every WHIP answer must satisfy.
fn common_checks(t: &TestServer, headers: &reqwest::header::HeaderMap, answer: &str) {
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    assert!(
        location.starts_with(&format!("http://{}/whip/chan/", t.server.http_addr)),
        "OBS needs an absolute Location, got {location}"
    );
    assert!(headers.get("etag").is_some(), "ETag on 201");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/sdp")
    );
    assert!(answer.starts_with("v=0\r\n"));
    assert!(
        !answer.replace("\r\n", "").contains('\n'),
        "every line ends in CRLF"
    );
    assert!(answer.contains("\r\na=ice-lite\r\n"));
    for s in sections(answer) {
        if s[0].starts_with("m=application") {
            continue;
        }
        assert!(s.contains(&"a=rtcp-mux"), "rtcp-mux in {}", s[0]);
        assert!(
            s.contains(&"a=rtcp-mux-only"),
            "RFC 9725 rtcp-mux-only in {}",
            s[0]
        );
        assert!(
            s.contains(&"a=recvonly"),
            "WHIP answers recvonly in {}",
            s[0]
        );
        assert!(
            !s.iter().any(|l| l.starts_with("a=ssrc:")),
            "no a=ssrc in a recvonly answer"
        );
    }
    // All candidates in the answer (no server trickle), a UDP host candidate first.
    let first = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("candidates");
    assert!(
        first.contains(" udp ") && first.contains("typ host"),
        "first candidate is UDP host: {first}"
    );
    assert!(
        answer.contains("tcptype passive"),
        "ICE-TCP candidate offered"
    );
}

#[tokio::test]
async fn obs_h264_without_candidates() {
    let t = TestServer::start().await;
    let (status, headers, answer) = publish(&t, &fixture("obs-h264.sdp")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    common_checks(&t, &headers, &answer);
    let s = sections(&answer);
    assert_eq!(s.len(), 2);
    assert!(s[0][0].starts_with("m=audio 9 UDP/TLS/RTP/SAVPF 111"));
    assert!(s[1][0].starts_with("m=video 9 UDP/TLS/RTP/SAVPF 96"));
    assert!(s[1].contains(&"a=rtpmap:96 H264/90000"));
    assert!(
        answer.contains("a=setup:passive"),
        "actpass offer -> we are the DTLS server"
    );
    assert!(s[0].contains(&"a=mid:0") && s[1].contains(&"a=mid:1"));
    t.stop().await;
}

#[tokio::test]
async fn obs_simulcast_accepts_every_rid() {
    let t = TestServer::start().await;
    let (status, headers, answer) = publish(&t, &fixture("obs-simulcast.sdp")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    common_checks(&t, &headers, &answer);
    let video = &sections(&answer)[1];
    for rid in ["0", "1", "2"] {
        assert!(
            video.contains(&format!("a=rid:{rid} recv").as_str()),
            "rid {rid} accepted"
        );
    }
    // OBS counts ';' in the simulcast line up to CRLF: accepted layers must equal offered.
    let sim = answer
        .split("\r\n")
        .find(|l| l.starts_with("a=simulcast:"))
        .expect("simulcast line");
    assert_eq!(sim, "a=simulcast:recv 0;1;2");
    assert!(video.contains(&"a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"));
    t.stop().await;
}

#[tokio::test]
async fn ffmpeg_passive_setup_makes_us_active() {
    let t = TestServer::start().await;
    let (status, headers, answer) = publish(&t, &fixture("ffmpeg-passive.sdp")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    common_checks(&t, &headers, &answer);
    for s in sections(&answer) {
        assert!(
            s.contains(&"a=setup:active"),
            "we must be the DTLS client for {}",
            s[0]
        );
    }
    assert!(answer.contains("a=rtpmap:106 H264/90000"));
    t.stop().await;
}

#[tokio::test]
async fn chrome_simulcast_with_data_channel_prefers_h264() {
    let t = TestServer::start().await;
    let (status, headers, answer) = publish(&t, &fixture("chrome-simulcast-datachannel.sdp")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    common_checks(&t, &headers, &answer);
    let s = sections(&answer);
    assert_eq!(s.len(), 3);
    // H.264 packetization-mode 1 (PT 102) wins over VP8, VP9 and AV1; its RTX comes along.
    assert_eq!(s[1][0], "m=video 9 UDP/TLS/RTP/SAVPF 102 103");
    assert!(s[1].contains(&"a=fmtp:103 apt=102"));
    assert!(
        !s[1]
            .iter()
            .any(|l| l.contains("VP8") || l.contains("packetization-mode=0"))
    );
    let sim = answer
        .split("\r\n")
        .find(|l| l.starts_with("a=simulcast:"))
        .expect("simulcast");
    assert_eq!(sim, "a=simulcast:recv q;h;f");
    // Audio: Opus only.
    assert_eq!(s[0][0], "m=audio 9 UDP/TLS/RTP/SAVPF 111");
    // The data channel is accepted.
    assert!(s[2][0].starts_with("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"));
    assert!(s[2].contains(&"a=sctp-port:5000"));
    t.stop().await;
}
