//! WHIP and WHEP over real HTTP: every status code and header of the contract, CORS, ETag rules,
//! problem+json bodies, oversized and garbage bodies.

mod common;

use std::time::Duration;

use common::{TestServer, fixture};
use reqwest::{Method, StatusCode};

async fn problem(r: reqwest::Response, status: StatusCode) -> serde_json::Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let v: serde_json::Value = r.json().await.expect("problem body");
    assert_eq!(v["status"], status.as_u16());
    assert!(
        v["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://onair.dev/problems/"))
    );
    v
}

/// POSTs `body` with a content type and an optional bearer token.
async fn post(
    t: &TestServer,
    url: impl reqwest::IntoUrl,
    bearer: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = t.http.post(url).header("content-type", content_type);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.body(body).send().await.expect("request")
}

/// The trickle-ICE fragment media type.
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// PATCHes a session with a content type, an optional entity-tag header and a body.
async fn patch_frag(
    t: &TestServer,
    url: &str,
    content_type: &str,
    tag: Option<(&str, &str)>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = t.http.patch(url).header("content-type", content_type);
    if let Some((name, value)) = tag {
        req = req.header(name, value);
    }
    req.body(body).send().await.expect("PATCH")
}

fn whep_offer() -> String {
    fixture("chrome-simulcast-datachannel.sdp")
        .split("\r\n")
        .filter(|l| {
            !l.starts_with("a=rid:") && !l.starts_with("a=simulcast:") && !l.starts_with("a=ssrc:")
        })
        .map(|l| if l == "a=sendonly" { "a=recvonly" } else { l })
        .collect::<Vec<_>>()
        .join("\r\n")
}

async fn publish(t: &TestServer) -> reqwest::Response {
    t.http
        .post(t.url("/whip/chan"))
        .bearer_auth(&t.key)
        .header("content-type", "application/sdp")
        .body(fixture("obs-simulcast.sdp"))
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn whip_post_errors() {
    let t = TestServer::start().await;
    let url = t.url("/whip/chan");
    let sdp = fixture("obs-h264.sdp");

    // Missing key: 401 with a Bearer challenge.
    let r = post(&t, &url, None, "application/sdp", sdp.clone()).await;
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    problem(r, StatusCode::UNAUTHORIZED).await;
    assert!(www.is_some_and(|w| w.starts_with("Bearer")));
    // "Bearer undefined" is no key.
    let r = post(&t, &url, Some("undefined"), "application/sdp", sdp.clone()).await;
    problem(r, StatusCode::UNAUTHORIZED).await;
    // Wrong key: 401 invalid_token.
    let r = post(&t, &url, Some("nope"), "application/sdp", sdp.clone()).await;
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    problem(r, StatusCode::UNAUTHORIZED).await;
    assert!(www.is_some_and(|w| w.contains("invalid_token")));
    // The key of another channel is wrong here too.
    let demo = t
        .http
        .post(t.url("/whip/demo"))
        .bearer_auth(&t.key)
        .header("content-type", "application/sdp")
        .body(sdp.clone())
        .send()
        .await
        .expect("req");
    problem(demo, StatusCode::UNAUTHORIZED).await;
    // A key in the query string is not accepted.
    let r = post(
        &t,
        format!("{url}?token={}", t.key),
        None,
        "application/sdp",
        sdp.clone(),
    )
    .await;
    problem(r, StatusCode::UNAUTHORIZED).await;
    // Unknown channel.
    let r = post(
        &t,
        t.url("/whip/nosuch"),
        Some(&t.key),
        "application/sdp",
        sdp.clone(),
    )
    .await;
    problem(r, StatusCode::NOT_FOUND).await;
    // Wrong content type.
    let r = post(&t, &url, Some(&t.key), "application/json", sdp.clone()).await;
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Oversized body.
    let big = format!("{sdp}{}", "a=x-padding:0123456789\r\n".repeat(4000));
    let r = post(&t, &url, Some(&t.key), "application/sdp", big).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Garbage.
    let r = post(&t, &url, Some(&t.key), "application/sdp", "hello").await;
    problem(r, StatusCode::BAD_REQUEST).await;
    let r = post(
        &t,
        &url,
        Some(&t.key),
        "application/sdp",
        vec![0xffu8, 0xfe, 0x00],
    )
    .await;
    problem(r, StatusCode::BAD_REQUEST).await;
    let r = post(
        &t,
        &url,
        Some(&t.key),
        "application/sdp",
        "v=0\r\nm=video 9\r\n",
    )
    .await;
    problem(r, StatusCode::BAD_REQUEST).await;
    // recvonly offer: 422.
    let r = post(
        &t,
        &url,
        Some(&t.key),
        "application/sdp",
        sdp.replace("a=sendonly", "a=recvonly"),
    )
    .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Two video tracks: 422.
    let video = sdp.split("m=video").nth(1).expect("video section");
    let two = format!(
        "{}m=video{}",
        sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2"),
        video.replace("a=mid:1", "a=mid:2")
    );
    let r = post(&t, &url, Some(&t.key), "application/sdp", two).await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    // No codec we can take: 422.
    let g722 = sdp.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 G722/8000");
    let r = post(&t, &url, Some(&t.key), "application/sdp", g722).await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Nothing above changed anything: the channel is not live.
    assert!(!t.server.signaling.sfu().is_live("chan"));
    assert_eq!(t.server.signaling.session_count(), 0);
    t.stop().await;
}

#[tokio::test]
async fn whip_options_get_and_other_methods() {
    let t = TestServer::start().await;
    // CORS preflight without credentials.
    let r = t
        .http
        .request(Method::OPTIONS, t.url("/whip/chan"))
        .header("origin", "https://studio.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("OPTIONS");
    assert!(r.status().is_success());
    let h = r.headers();
    assert_eq!(h["accept-post"], "application/sdp");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("PATCH")
    );
    let allow_headers = h["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("if-match"));
    let expose = h["access-control-expose-headers"].to_str().expect("ascii");
    for e in ["Location", "ETag", "Link"] {
        assert!(expose.contains(e), "{e} exposed");
    }
    // GET -> 2xx, no content.
    let r = t.http.get(t.url("/whip/chan")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Other methods -> 405 with Allow.
    let r = t.http.put(t.url("/whip/chan")).send().await.expect("PUT");
    assert!(r.headers().get("allow").is_some());
    problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
    t.stop().await;
}

#[tokio::test]
async fn whip_session_patch_and_delete() {
    let t = TestServer::start().await;
    let r = publish(&t).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .map(|s| s.contains("Location"))
            .ok(),
        Some(true)
    );
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    let trickle = "a=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:Fy5b\r\na=ice-pwd:kYxVgBLfvJc3AXp3NbzlBg\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=candidate:2 1 udp 2130706431 abc.local 40001 typ host\r\na=end-of-candidates\r\n";

    // Wrong type, no precondition, wrong precondition, garbage.
    problem(
        patch_frag(
            &t,
            &location,
            "application/sdp",
            Some(("if-match", etag.as_str())),
            trickle,
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        patch_frag(&t, &location, SDPFRAG, None, trickle).await,
        StatusCode::PRECONDITION_REQUIRED,
    )
    .await;
    problem(
        patch_frag(
            &t,
            &location,
            SDPFRAG,
            Some(("if-match", "\"stale\"")),
            trickle,
        )
        .await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    problem(
        patch_frag(
            &t,
            &location,
            SDPFRAG,
            Some(("if-match", etag.as_str())),
            "nonsense",
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Trickle: 204, no body, no ETag; the mDNS candidate is dropped silently.
    let r = patch_frag(
        &t,
        &location,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", etag.as_str())),
        trickle,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("etag").is_none());
    assert!(r.text().await.expect("body").is_empty());
    // A client that sends its tag in an `ETag:` request header instead is understood.
    let r = patch_frag(
        &t,
        &location,
        "application/trickle-ice-sdpfrag",
        Some(("etag", etag.as_str())),
        trickle,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // ICE restart: new credentials with If-Match "*": 200, fragment body, new ETag.
    let restart = trickle
        .replace("Fy5b", "NeWu")
        .replace("kYxVgBLfvJc3AXp3NbzlBg", "NewPasswordNewPassword22");
    let r = patch_frag(
        &t,
        &location,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", "*")),
        restart.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "application/trickle-ice-sdpfrag"
    );
    let new_etag = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_ne!(new_etag, etag);
    let body = r.text().await.expect("body");
    assert!(
        body.contains("a=ice-ufrag:")
            && body.contains("a=ice-pwd:")
            && body.contains("a=candidate:")
    );
    // The old tag no longer matches.
    problem(
        patch_frag(
            &t,
            &location,
            SDPFRAG,
            Some(("if-match", etag.as_str())),
            restart.clone(),
        )
        .await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    let r = patch_frag(
        &t,
        &location,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", new_etag.as_str())),
        restart,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // GET on the session -> 2xx.
    assert!(
        t.http
            .get(&location)
            .send()
            .await
            .expect("GET")
            .status()
            .is_success()
    );
    // DELETE ignores If-Match and needs no credentials (the URL is the capability): 200.
    let r = t
        .http
        .delete(&location)
        .header("if-match", "\"whatever\"")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::OK);
    problem(
        t.http.delete(&location).send().await.expect("DELETE"),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        patch_frag(
            &t,
            &location,
            SDPFRAG,
            Some(("if-match", new_etag.as_str())),
            trickle,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        t.wait_for(Duration::from_secs(3), || async {
            t.metric("onair_sfu_peers").await == 0.0
        })
        .await
    );
    t.stop().await;
}

#[tokio::test]
async fn newest_publisher_wins() {
    let t = TestServer::start().await;
    let first = publish(&t).await.headers()["location"]
        .to_str()
        .expect("loc")
        .to_string();
    let second = publish(&t).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    // The first session is ended by the second (OBS reconnects without DELETE).
    let gone = t
        .wait_for(Duration::from_secs(3), || async {
            t.http
                .delete(&first)
                .send()
                .await
                .map(|r| r.status() == StatusCode::NOT_FOUND)
                .unwrap_or(false)
        })
        .await;
    assert!(gone, "the older publisher was not closed");
    assert!(t.server.signaling.sfu().is_live("chan"));
    assert_eq!(t.metric("onair_sfu_publishers").await, 1.0);
    t.stop().await;
}

#[tokio::test]
async fn stream_key_rotation_ends_the_publisher() {
    let t = TestServer::start().await;
    assert_eq!(publish(&t).await.status(), StatusCode::CREATED);
    t.server
        .api
        .rotate_stream_key("chan")
        .await
        .expect("rotate");
    assert!(
        t.wait_for(Duration::from_secs(3), || async {
            !t.server.signaling.sfu().is_live("chan")
        })
        .await
    );
    // The old key no longer publishes.
    problem(publish(&t).await, StatusCode::UNAUTHORIZED).await;
    t.stop().await;
}

#[tokio::test]
async fn whep_contract() {
    let t = TestServer::start().await;
    let url = t.url("/whep/chan");
    // HEAD discovery.
    let r = t.http.head(&url).send().await.expect("HEAD");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/sdp");
    // Not live: 409 + Retry-After.
    let r = t
        .http
        .post(&url)
        .header("content-type", "application/sdp")
        .body(whep_offer())
        .send()
        .await
        .expect("POST");
    assert!(r.headers().get("retry-after").is_some());
    problem(r, StatusCode::CONFLICT).await;
    problem(
        t.http
            .post(t.url("/whep/nosuch"))
            .header("content-type", "application/sdp")
            .body(whep_offer())
            .send()
            .await
            .expect("r"),
        StatusCode::NOT_FOUND,
    )
    .await;

    assert_eq!(publish(&t).await.status(), StatusCode::CREATED);
    // A bad token is refused; no token is fine (chat needs one, watching does not).
    problem(
        t.http
            .post(&url)
            .bearer_auth("garbage")
            .header("content-type", "application/sdp")
            .body(whep_offer())
            .send()
            .await
            .expect("r"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        t.http
            .post(&url)
            .header("content-type", "text/plain")
            .body(whep_offer())
            .send()
            .await
            .expect("r"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;

    let r = t
        .http
        .post(&url)
        .header("content-type", "application/sdp")
        .body(whep_offer())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().expect("loc").to_string();
    assert!(location.starts_with(&url));
    assert!(r.headers().get("etag").is_some());
    let links: Vec<String> = r
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    assert!(links.iter().any(
        |l| l.contains("urn:ietf:params:whep:ext:core:server-sent-events") && l.contains("events=")
    ));
    assert!(
        links
            .iter()
            .any(|l| l.contains("urn:ietf:params:whep:ext:core:layer"))
    );
    let answer = r.text().await.expect("answer");
    assert!(answer.contains("a=sendonly"));
    assert!(answer.contains("a=msid:"));
    // The live stream is H.264 (from OBS): the viewer's H.264 pm=1 payload is answered.
    assert!(answer.contains("m=video 9 UDP/TLS/RTP/SAVPF 102"));
    assert!(
        t.wait_for(Duration::from_secs(2), || async {
            t.metric("onair_sfu_viewers").await == 1.0
        })
        .await
    );
    assert_eq!(t.server.api.live().watchers("chan"), 1);

    // Server-sent events.
    problem(
        t.http
            .post(format!("{location}/sse"))
            .header("content-type", "application/json")
            .body(r#"["bogus"]"#)
            .send()
            .await
            .expect("r"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let r = t
        .http
        .post(format!("{location}/sse"))
        .header("content-type", "application/json")
        .body(r#"["active","viewercount"]"#)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::CREATED);
    let stream_url = r.headers()["location"].to_str().expect("loc").to_string();
    let mut es = t.http.get(&stream_url).send().await.expect("GET sse");
    assert_eq!(es.headers()["content-type"], "text/event-stream");
    let mut got = String::new();
    while !(got.contains("event: active")
        && got.contains("event: viewercount")
        && got.contains("\"type\":\"active\""))
    {
        let chunk = tokio::time::timeout(Duration::from_secs(3), es.chunk())
            .await
            .expect("event in time")
            .expect("chunk")
            .expect("open");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(got.contains("\"viewercount\":1"));
    drop(es);
    assert_eq!(
        t.http.delete(&stream_url).send().await.expect("r").status(),
        StatusCode::OK
    );
    problem(
        t.http.get(&stream_url).send().await.expect("r"),
        StatusCode::NOT_FOUND,
    )
    .await;

    // Layer selection.
    let layer = format!("{location}/layer");
    problem(
        t.http
            .post(&layer)
            .header("content-type", "application/json")
            .body(r#"{"mediaId":"1","rid":"nope"}"#)
            .send()
            .await
            .expect("r"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        t.http
            .post(&layer)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .expect("r"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        t.http
            .post(&layer)
            .header("content-type", "application/json")
            .body(r#"{"mediaId":"1","rid":"2"}"#)
            .send()
            .await
            .expect("r")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        t.http
            .post(&layer)
            .header("content-type", "application/json")
            .body(r#"{"mediaId":"1"}"#)
            .send()
            .await
            .expect("r")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        t.http.delete(&layer).send().await.expect("r").status(),
        StatusCode::OK
    );

    // DELETE frees the viewer.
    assert_eq!(
        t.http.delete(&location).send().await.expect("r").status(),
        StatusCode::OK
    );
    assert!(
        t.wait_for(Duration::from_secs(3), || async {
            t.metric("onair_sfu_viewers").await == 0.0
        })
        .await
    );
    t.stop().await;
}

#[tokio::test]
async fn whep_legacy_empty_post_gets_a_server_offer() {
    let t = TestServer::start().await;
    assert_eq!(publish(&t).await.status(), StatusCode::CREATED);
    let r = t
        .http
        .post(t.url("/whep/chan"))
        .header("content-type", "application/sdp")
        .body("")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("location").is_some());
    let location = r.headers()["location"].to_str().expect("loc").to_string();
    let offer = r.text().await.expect("offer");
    assert!(
        offer.contains("m=video") && offer.contains("a=sendonly") && offer.contains("H264/90000")
    );
    assert!(offer.contains("a=setup:actpass"));
    // A garbage answer is refused without killing the session.
    problem(
        t.http
            .patch(&location)
            .header("content-type", "application/sdp")
            .body("v=0\r\nbroken")
            .send()
            .await
            .expect("r"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        t.http.delete(&location).send().await.expect("r").status(),
        StatusCode::OK
    );
    t.stop().await;
}
