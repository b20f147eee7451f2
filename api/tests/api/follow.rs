use std::sync::Arc;

use rand::Rng as _;
use sea_orm::{EntityTrait as _, PaginatorTrait as _};
use serde_json::json;

use crate::both;
use crate::common::{Backend, expect_problem, json, start};
use onair_api::db::entities::channel_users;

async fn relationship_and_follow(b: Backend) {
    let s = start(b).await;
    s.channel("follow_ch", "owner").await;
    let bob = s.token("bob");

    // anonymous and fresh relationship
    let resp = s.get("/api/channels/follow_ch/relationship", None).await;
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap_or_default(),
        "private, no-store"
    );
    let body = json(resp, 200).await;
    assert_eq!(
        body,
        json!({"isFollowing": false, "subscriptionInfo": null, "isBanned": false, "bannedUntil": null})
    );
    let body = json(
        s.get("/api/channels/follow_ch/relationship", Some(&bob))
            .await,
        200,
    )
    .await;
    assert_eq!(body["isFollowing"], false);
    expect_problem(
        s.get("/api/channels/nope_nope/relationship", Some(&bob))
            .await,
        404,
        "not-found",
    )
    .await;
    expect_problem(
        s.get("/api/channels/nope_nope/relationship", None).await,
        404,
        "not-found",
    )
    .await;
    expect_problem(
        s.get(
            "/api/channels/follow_ch/relationship",
            Some("bad.token.here"),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;

    // follow twice: idempotent
    for _ in 0..2 {
        let body = json(
            s.post_empty("/api/channels/follow_ch/following?op=FOLLOW", Some(&bob))
                .await,
            200,
        )
        .await;
        assert_eq!(body, json!({"isFollowing": true, "followerCount": 1}));
    }
    let body = json(
        s.get("/api/channels/follow_ch/relationship", Some(&bob))
            .await,
        200,
    )
    .await;
    assert_eq!(body["isFollowing"], true);
    assert_eq!(
        json(s.get("/api/channels/follow_ch", None).await, 200).await["followerCount"],
        1
    );
    let carol = s.token("carol");
    let body = json(
        s.post_empty("/api/channels/follow_ch/following?op=FOLLOW", Some(&carol))
            .await,
        200,
    )
    .await;
    assert_eq!(body["followerCount"], 2);

    // unfollow twice: idempotent; the row goes away
    for _ in 0..2 {
        let body = json(
            s.post_empty("/api/channels/follow_ch/following?op=UNFOLLOW", Some(&bob))
                .await,
            200,
        )
        .await;
        assert_eq!(body, json!({"isFollowing": false, "followerCount": 1}));
    }
    let rows = channel_users::Entity::find()
        .count(s.api.db())
        .await
        .expect("count");
    assert_eq!(rows, 1, "only carol's row remains");

    // errors
    for q in ["?op=LIKE", "?op=follow", ""] {
        let resp = s
            .post_empty(&format!("/api/channels/follow_ch/following{q}"), Some(&bob))
            .await;
        let slug = if q.is_empty() { "bad-query" } else { "bad-op" };
        expect_problem(resp, 400, slug).await;
    }
    expect_problem(
        s.post_empty("/api/channels/follow_ch/following?op=FOLLOW", None)
            .await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        s.post_empty("/api/channels/nope_nope/following?op=FOLLOW", Some(&bob))
            .await,
        404,
        "not-found",
    )
    .await;
}
both!(relationship_and_follow);

/// 200 clients follow and unfollow one channel at random; afterwards `followerCount` equals the
/// number of rows with isFollowing.
async fn concurrent_follows(b: Backend) {
    let s = Arc::new(start(b).await);
    s.channel("busy_ch", "owner").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let token = s.token(&format!("user_{i}"));
            let ops: Vec<&str> = {
                let mut rng = rand::rng();
                (0..rng.random_range(1..=6))
                    .map(|_| {
                        if rng.random_bool(0.6) {
                            "FOLLOW"
                        } else {
                            "UNFOLLOW"
                        }
                    })
                    .collect()
            };
            for op in ops {
                let resp = s
                    .post_empty(
                        &format!("/api/channels/busy_ch/following?op={op}"),
                        Some(&token),
                    )
                    .await;
                assert_eq!(resp.status().as_u16(), 200, "{op}: {:?}", resp.text().await);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let rows = s.api.count_follower_rows("busy_ch").await.expect("count");
    let body = json(s.get("/api/channels/busy_ch", None).await, 200).await;
    assert_eq!(body["followerCount"], rows);
    assert!(rows > 0);
}
both!(concurrent_follows);
