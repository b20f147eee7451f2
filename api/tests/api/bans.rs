use std::time::Duration;

use serde_json::json;

use crate::both;
use crate::common::{Backend, expect_problem, json, start};
use onair_api::ChannelEvent;

async fn bans_and_timeouts(b: Backend) {
    let s = start(b).await;
    s.channel("ban_ch", "owner").await;
    let owner = s.token("owner");
    let bob = s.token("bob");
    let mut events = s.api.subscribe_events();
    // bob follows first: the ban shares his row
    json(
        s.post_empty("/api/channels/ban_ch/following?op=FOLLOW", Some(&bob))
            .await,
        200,
    )
    .await;
    assert!(
        s.api
            .is_banned("ban_ch", "bob")
            .await
            .expect("check")
            .is_none()
    );

    let body = json(
        s.post_json(
            "/api/channels/ban_ch/bans",
            Some(&owner),
            &json!({"userID": "bob", "reason": "spam"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(body["userID"], "bob");
    assert!(body["bannedUntil"].is_null());
    assert_eq!(body["reason"], "spam");
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert!(
        matches!(ev, ChannelEvent::Banned { ref user_id, until: None, .. } if user_id == "bob")
    );
    let rel = json(
        s.get("/api/channels/ban_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert_eq!(rel["isBanned"], true);
    assert_eq!(rel["isFollowing"], true);
    let ban = s
        .api
        .is_banned("ban_ch", "bob")
        .await
        .expect("check")
        .expect("banned");
    assert_eq!(ban.reason.as_deref(), Some("spam"));
    let list = json(s.get("/api/channels/ban_ch/bans", Some(&owner)).await, 200).await;
    assert_eq!(list["bans"].as_array().map(Vec::len), Some(1));

    // timeout for carol
    let body = json(
        s.post_json(
            "/api/channels/ban_ch/bans",
            Some(&owner),
            &json!({"userID": "carol", "durationSeconds": 600.0}),
        )
        .await,
        201,
    )
    .await;
    assert!(body["bannedUntil"].is_string());
    let carol = s
        .api
        .is_banned("ban_ch", "carol")
        .await
        .expect("check")
        .expect("timed out");
    let left = carol.remaining_secs(chrono::Utc::now()).expect("timeout");
    assert!((590..=600).contains(&left));

    // errors
    expect_problem(
        s.post_json(
            "/api/channels/ban_ch/bans",
            Some(&bob),
            &json!({"userID": "dave"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        s.post_json(
            "/api/channels/ban_ch/bans",
            None,
            &json!({"userID": "dave"}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        s.post_json(
            "/api/channels/nope_nope/bans",
            Some(&owner),
            &json!({"userID": "dave"}),
        )
        .await,
        404,
        "not-found",
    )
    .await;
    expect_problem(
        s.post_json(
            "/api/channels/ban_ch/bans",
            Some(&owner),
            &json!({"userID": "owner"}),
        )
        .await,
        403,
        "cannot-ban-owner",
    )
    .await;
    for d in [
        json!(0),
        json!(-5),
        json!(14 * 24 * 3600 + 1),
        json!(u64::MAX),
    ] {
        expect_problem(
            s.post_json(
                "/api/channels/ban_ch/bans",
                Some(&owner),
                &json!({"userID": "dave", "durationSeconds": d}),
            )
            .await,
            422,
            "invalid-duration",
        )
        .await;
    }
    expect_problem(
        s.post_json(
            "/api/channels/ban_ch/bans",
            Some(&owner),
            &json!({"userID": ""}),
        )
        .await,
        422,
        "invalid-user-id",
    )
    .await;
    expect_problem(
        s.post_json(
            "/api/channels/ban_ch/bans",
            Some(&owner),
            &json!({"reason": "x"}),
        )
        .await,
        422,
        "invalid-body",
    )
    .await;
    expect_problem(
        s.get("/api/channels/ban_ch/bans", Some(&bob)).await,
        403,
        "forbidden",
    )
    .await;

    // unban: owner only, idempotent, row kept for the follow
    let resp = s
        .http
        .delete(s.url("/api/channels/ban_ch/bans/bob"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("send");
    expect_problem(resp, 403, "forbidden").await;
    let resp = s
        .http
        .delete(s.url("/api/channels/ban_ch/bans/bob"))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 401, "unauthorized").await;
    let resp = s
        .http
        .delete(s.url("/api/channels/nope_nope/bans/bob"))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("send");
    expect_problem(resp, 404, "not-found").await;
    for _ in 0..2 {
        let resp = s
            .http
            .delete(s.url("/api/channels/ban_ch/bans/bob"))
            .bearer_auth(&owner)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 204);
    }
    let rel = json(
        s.get("/api/channels/ban_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert_eq!(rel["isBanned"], false);
    assert_eq!(rel["isFollowing"], true);
    assert!(
        s.api
            .is_banned("ban_ch", "bob")
            .await
            .expect("check")
            .is_none()
    );
    let mut saw_unban = false;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        if matches!(ev, ChannelEvent::Unbanned { ref user_id, .. } if user_id == "bob") {
            saw_unban = true;
        }
    }
    assert!(saw_unban);

    // a ban made by another node (straight into the database) is seen after the cache TTL
    let mut other_cfg = s.config.clone();
    other_cfg.registry = prometheus::Registry::new();
    let other = onair_api::Api::open(other_cfg).await.expect("second node");
    other
        .ban("ban_ch", "erin", "owner", None, None)
        .await
        .expect("ban elsewhere");
    tokio::time::sleep(onair_api::bans::BAN_CACHE_TTL + Duration::from_millis(200)).await;
    assert!(
        s.api
            .is_banned("ban_ch", "erin")
            .await
            .expect("check")
            .is_some()
    );
}
both!(bans_and_timeouts);
