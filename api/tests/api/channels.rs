use serde_json::json;

use crate::both;
use crate::common::{Backend, expect_problem, json, start};
use onair_api::{ChannelEvent, StreamKeyError};

async fn create_get_patch(b: Backend) {
    let s = start(b).await;
    let alice = s.token("alice");
    let resp = s
        .post_json(
            "/api/channels",
            Some(&alice),
            &json!({"channelID": "alice_tv", "name": "Alice TV", "description": "hi"}),
        )
        .await;
    assert_eq!(
        resp.headers()["location"].to_str().unwrap_or_default(),
        "/api/channels/alice_tv"
    );
    let body = json(resp, 201).await;
    let key = body["streamKey"].as_str().expect("key").to_string();
    assert_eq!(key.len(), 43);
    assert_eq!(body["channelID"], "alice_tv");

    // the key works for WHIP, a wrong one does not
    let ch = s
        .api
        .verify_stream_key("alice_tv", &key)
        .await
        .expect("key ok");
    assert_eq!(ch.owner_id.as_deref(), Some("alice"));
    assert!(matches!(
        s.api.verify_stream_key("alice_tv", "nope").await,
        Err(StreamKeyError::BadKey)
    ));
    assert!(matches!(
        s.api.verify_stream_key("nobody_here", &key).await,
        Err(StreamKeyError::UnknownChannel)
    ));
    assert!(matches!(
        s.api.verify_stream_key("../x", &key).await,
        Err(StreamKeyError::UnknownChannel)
    ));

    // duplicate, invalid
    let resp = s
        .post_json(
            "/api/channels",
            Some(&alice),
            &json!({"channelID": "alice_tv"}),
        )
        .await;
    expect_problem(resp, 409, "channel-exists").await;
    for id in ["ab", "Alice", "a-b-c", "abcdefghijklmnopqrstuvwxyz"] {
        let resp = s
            .post_json("/api/channels", Some(&alice), &json!({"channelID": id}))
            .await;
        expect_problem(resp, 422, "invalid-channel-id").await;
    }
    let resp = s
        .post_json(
            "/api/channels",
            Some(&alice),
            &json!({"channelID": "longname", "name": "x".repeat(101)}),
        )
        .await;
    expect_problem(resp, 422, "invalid-name").await;
    let resp = s
        .post_json("/api/channels", None, &json!({"channelID": "anon_ch"}))
        .await;
    expect_problem(resp, 401, "unauthorized").await;
    let resp = s
        .http
        .post(s.url("/api/channels"))
        .bearer_auth(&alice)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("channelID=abc")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 415, "unsupported-media-type").await;
    let resp = s
        .http
        .post(s.url("/api/channels"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 400, "malformed-json").await;

    // GET
    let resp = s.get("/api/channels/alice_tv", None).await;
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap_or_default(),
        "public, max-age=5"
    );
    let body = json(resp, 200).await;
    assert_eq!(body["channelID"], "alice_tv");
    assert_eq!(body["name"], "Alice TV");
    assert_eq!(body["description"], "hi");
    assert_eq!(body["followerCount"], 0);
    assert!(body["currentStreamInfo"].is_null());
    assert!(body.get("streamKey").is_none());
    expect_problem(
        s.get("/api/channels/nope_nope", None).await,
        404,
        "not-found",
    )
    .await;
    expect_problem(
        s.get("/api/channels/NOT%20VALID", None).await,
        404,
        "not-found",
    )
    .await;

    // PATCH: owner, other user, admin, unknown
    let resp = s
        .http
        .patch(s.url("/api/channels/alice_tv"))
        .bearer_auth(&alice)
        .json(&json!({"title": "Speedrun", "description": "new"}))
        .send()
        .await
        .expect("send");
    let body = json(resp, 200).await;
    assert_eq!(body["streamTitle"], "Speedrun");
    assert_eq!(body["description"], "new");
    assert_eq!(body["name"], "Alice TV");
    let bob = s.token("bob");
    let resp = s
        .http
        .patch(s.url("/api/channels/alice_tv"))
        .bearer_auth(&bob)
        .json(&json!({"name": "Bob's now"}))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 403, "forbidden").await;
    let resp = s
        .http
        .patch(s.url("/api/channels/alice_tv"))
        .bearer_auth(s.admin_token("root"))
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .expect("send");
    assert_eq!(json(resp, 200).await["name"], "Renamed");
    let resp = s
        .http
        .patch(s.url("/api/channels/nope_nope"))
        .bearer_auth(&alice)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 404, "not-found").await;
    let resp = s
        .http
        .patch(s.url("/api/channels/alice_tv"))
        .bearer_auth(&alice)
        .json(&json!({"title": "x".repeat(141)}))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 422, "invalid-title").await;
    let resp = s
        .http
        .patch(s.url("/api/channels/alice_tv"))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 401, "unauthorized").await;
}
both!(create_get_patch);

async fn rotate_stream_key(b: Backend) {
    let s = start(b).await;
    let old = s.channel("rot_ch", "alice").await;
    let mut events = s.api.subscribe_events();
    let alice = s.token("alice");
    let resp = s
        .post_empty("/api/channels/rot_ch/stream-key", Some(&alice))
        .await;
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap_or_default(),
        "private, no-store"
    );
    let body = json(resp, 200).await;
    let new = body["streamKey"].as_str().expect("key");
    assert_ne!(new, old);
    assert!(s.api.verify_stream_key("rot_ch", new).await.is_ok());
    assert!(matches!(
        s.api.verify_stream_key("rot_ch", &old).await,
        Err(StreamKeyError::BadKey)
    ));
    let ev = tokio::time::timeout(std::time::Duration::from_secs(2), events.recv())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(
        ev,
        ChannelEvent::StreamKeyRotated {
            channel_id: "rot_ch".into()
        }
    );
    expect_problem(
        s.post_empty("/api/channels/rot_ch/stream-key", Some(&s.token("bob")))
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        s.post_empty("/api/channels/rot_ch/stream-key", None).await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        s.post_empty("/api/channels/nope_nope/stream-key", Some(&alice))
            .await,
        404,
        "not-found",
    )
    .await;
    // operator channels (no owner) are managed by admins only
    s.api
        .create_channel(onair_api::NewChannel {
            channel_id: "op_ch".into(),
            ..Default::default()
        })
        .await
        .expect("create");
    expect_problem(
        s.post_empty("/api/channels/op_ch/stream-key", Some(&alice))
            .await,
        403,
        "forbidden",
    )
    .await;
    json(
        s.post_empty(
            "/api/channels/op_ch/stream-key",
            Some(&s.admin_token("root")),
        )
        .await,
        200,
    )
    .await;
}
both!(rotate_stream_key);

async fn directory(b: Backend) {
    let s = start(b).await;
    for i in 0..5 {
        s.channel(&format!("chan_{i}"), "owner").await;
    }
    let body = json(s.get("/api/channels?limit=2", None).await, 200).await;
    let ids: Vec<&str> = body["channels"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["channelID"].as_str())
        .collect();
    assert_eq!(ids, ["chan_0", "chan_1"]);
    let cursor = body["nextCursor"].as_str().expect("cursor").to_string();
    let body = json(
        s.get(&format!("/api/channels?limit=10&cursor={cursor}"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(body["channels"].as_array().map(Vec::len), Some(3));
    assert!(body["nextCursor"].is_null());

    // live only, most watched first
    let live = s.api.live();
    let s1 = live.stream_started("chan_1").await.expect("live");
    live.stream_started("chan_3").await.expect("live");
    live.set_viewer_count("chan_3", 7);
    live.set_viewer_count("chan_1", 2);
    let resp = s.get("/api/channels?live=true", None).await;
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap_or_default(),
        "public, max-age=5"
    );
    let body = json(resp, 200).await;
    let chans = body["channels"].as_array().expect("array");
    assert_eq!(chans.len(), 2);
    assert_eq!(chans[0]["channelID"], "chan_3");
    assert_eq!(chans[0]["currentStreamInfo"]["currentWatcherCount"], 7);
    assert_eq!(chans[1]["channelID"], "chan_1");
    let body = json(s.get("/api/channels?live=true&limit=1", None).await, 200).await;
    assert_eq!(body["nextCursor"], "1");
    let body = json(
        s.get("/api/channels?live=true&limit=1&cursor=1", None)
            .await,
        200,
    )
    .await;
    assert_eq!(body["channels"][0]["channelID"], "chan_1");
    assert!(body["nextCursor"].is_null());
    live.stream_ended(s1).await.expect("end");
    let body = json(s.get("/api/channels?live=true", None).await, 200).await;
    assert_eq!(body["channels"].as_array().map(Vec::len), Some(1));

    let body = json(s.get("/api/channels?live=true&cursor=abc", None).await, 200).await;
    assert_eq!(body["channels"].as_array().map(Vec::len), Some(0));
    assert!(body["nextCursor"].is_null());
    let body = json(s.get("/api/channels?cursor=", None).await, 200).await;
    assert_eq!(body["channels"].as_array().map(Vec::len), Some(5));
    for q in [
        "limit=0",
        "limit=101",
        "limit=x",
        "live=maybe",
        "cursor=ABC",
    ] {
        expect_problem(
            s.get(&format!("/api/channels?{q}"), None).await,
            400,
            "bad-query",
        )
        .await;
    }
}
both!(directory);
