//! Signed HLS URLs and HLS watcher counting: a channel that requires signed URLs refuses
//! unsigned, forged and expired ones with 403, a viewer gets a signed URL from the API and the
//! token follows every URI of the playlists, and the player's session counts as a watcher
//! while it polls.

mod common;

use std::time::{Duration, SystemTime};

use common::TestServer;
use common::hls::{get, publish_pattern, text_when_ok, uris};
use onair_transcoder::signing::{KEY_LABEL, UrlSigner};
use serde_json::{Value, json};

async fn get_as(t: &TestServer, path: &str, token: &str) -> reqwest::Response {
    t.http
        .get(t.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
}

/// Asserts a 403 problem whose type ends with `slug`.
async fn forbidden(t: &TestServer, path: &str, slug: &str) {
    let r = get(t, path).await;
    let status = r.status();
    if status != 403 {
        panic!("{path}: {status} {}", r.text().await.unwrap_or_default());
    }
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{path}"
    );
    let body: Value = r.json().await.expect("problem");
    let kind = body["type"].as_str().unwrap_or_default();
    assert!(kind.ends_with(slug), "{path}: {body}");
}

async fn watchers(t: &TestServer) -> u64 {
    let info: Value = get(t, "/api/channels/chan")
        .await
        .json()
        .await
        .expect("json");
    info["currentStreamInfo"]["currentWatcherCount"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_urls_guard_a_channel_and_hls_sessions_count_as_watchers() {
    let t = TestServer::start().await;
    let owner = t.token("owner");
    let viewer = t.token("viewer");

    // Without the requirement the API hands out the plain URL.
    let plain: Value = get(&t, "/api/channels/chan/hls")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(plain["signed"], false, "{plain}");
    assert_eq!(plain["url"], "/hls/chan/master.m3u8");

    let r = t
        .http
        .patch(t.url("/api/channels/chan"))
        .bearer_auth(&owner)
        .json(&json!({"requireSignedHls": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json")["requireSignedHls"],
        true
    );

    let publisher = publish_pattern(&t).await;

    // Unsigned requests are refused; so is an anonymous request for a signed URL.
    forbidden(&t, "/hls/chan/master.m3u8", "hls-token-missing").await;
    forbidden(&t, "/hls/chan/source/index.m3u8", "hls-token-missing").await;
    assert_eq!(get(&t, "/api/channels/chan/hls").await.status(), 401);
    assert_eq!(get(&t, "/api/channels/nosuch/hls").await.status(), 404);

    let signed: Value = get_as(&t, "/api/channels/chan/hls", &viewer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(signed["signed"], true, "{signed}");
    assert!(signed["expiresAt"].is_string(), "{signed}");
    let url = signed["url"].as_str().expect("url").to_string();
    let master = text_when_ok(&t, &url).await;
    let variant = uris(&master)[0].to_string();
    assert!(
        variant.contains("token=") && variant.contains("sid="),
        "the token and a session id follow every URI: {master}"
    );
    let media = text_when_ok(&t, &format!("/hls/chan/{variant}")).await;
    let media_uris = uris(&media);
    assert!(!media_uris.is_empty(), "{media}");
    let rendition = variant.split('/').next().expect("rendition");
    for uri in &media_uris {
        assert!(uri.contains("token="), "{uri}");
    }
    let seg = get(&t, &format!("/hls/chan/{rendition}/{}", media_uris[0])).await;
    assert_eq!(seg.status(), 200);

    // Forged and expired tokens.
    let token = url.split("token=").nth(1).expect("token");
    let mut forged = token.to_string();
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    forbidden(
        &t,
        &format!("/hls/chan/master.m3u8?token={forged}"),
        "hls-token-invalid",
    )
    .await;
    forbidden(
        &t,
        &format!(
            "/hls/chan/{rendition}/index.m3u8?token=9999999999.{}",
            &token[11..]
        ),
        "hls-token-invalid",
    )
    .await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let expired =
        UrlSigner::new(t.server.api.derived_secret(KEY_LABEL)).sign("chan", now.saturating_sub(5));
    forbidden(
        &t,
        &format!("/hls/chan/master.m3u8?token={expired}"),
        "hls-token-expired",
    )
    .await;
    // A token of another channel does not open this one.
    let other = UrlSigner::new(t.server.api.derived_secret(KEY_LABEL)).sign("demo", now + 600);
    forbidden(
        &t,
        &format!("/hls/chan/master.m3u8?token={other}"),
        "hls-token-invalid",
    )
    .await;

    // The polling player is one watcher, and stops counting once it stops polling.
    let poll = format!("/hls/chan/{variant}");
    let mut counted = false;
    for _ in 0..40 {
        assert_eq!(get(&t, &poll).await.status(), 200);
        if watchers(&t).await == 1 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(counted, "the HLS session never counted as a watcher");
    assert!(
        t.wait_for(Duration::from_secs(20), || async {
            watchers(&t).await == 0
        })
        .await,
        "the idle session was never dropped"
    );

    // A banned viewer gets no signed URL.
    let r = t
        .http
        .post(t.url("/api/channels/chan/bans"))
        .bearer_auth(&owner)
        .json(&json!({"userID": "viewer"}))
        .send()
        .await
        .expect("ban");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        get_as(&t, "/api/channels/chan/hls", &viewer).await.status(),
        403
    );

    publisher.stop().await.expect("stop");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ended_streams_are_listed_as_videos_and_expire_with_retention() {
    let t = TestServer::start().await;
    let publisher = publish_pattern(&t).await;
    text_when_ok(&t, "/hls/chan/source/index.m3u8?_HLS_msn=2").await;
    publisher.stop().await.expect("stop");

    // The broadcast row links its recording once the stream has ended.
    let mut videos = Value::Null;
    for _ in 0..100 {
        videos = get(&t, "/api/channels/chan/videos")
            .await
            .json()
            .await
            .expect("json");
        if videos["videos"].as_array().is_some_and(|v| v.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        videos["videos"].as_array().map(Vec::len),
        Some(1),
        "{videos}"
    );
    let video = &videos["videos"][0];
    assert!(video["endedAt"].is_string(), "{video}");
    let url = video["url"].as_str().expect("url").to_string();
    let master = text_when_ok(&t, &url).await;
    let variant = uris(&master)[0].to_string();
    let base = url.trim_end_matches("master.m3u8").to_string();
    let media = text_when_ok(&t, &format!("{base}{variant}")).await;
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    let rendition = variant.split('/').next().expect("rendition");
    let seg = get(&t, &format!("{base}{rendition}/{}", uris(&media)[0])).await;
    assert_eq!(seg.status(), 200);
    assert_eq!(get(&t, "/hls/chan/vod/123/master.m3u8").await.status(), 404);
    assert_eq!(
        get(&t, "/hls/chan/vod/..%2F..%2Fetc/master.m3u8")
            .await
            .status(),
        404
    );

    // A restart with a retention shorter than the recording's age deletes it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = t
        .restart_with(|s| s.hls_retention = Some(Duration::from_secs(1)))
        .await;
    assert!(
        t.wait_for(Duration::from_secs(10), || async {
            get(&t, &url).await.status() == 404
        })
        .await,
        "the expired recording is still served"
    );
    let videos: Value = get(&t, "/api/channels/chan/videos")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        videos["videos"].as_array().map(Vec::len),
        Some(0),
        "{videos}"
    );
    t.stop().await;
}
