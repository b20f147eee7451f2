use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::json;

use crate::both;
use crate::common::{Backend, expect_problem, json, start, start_with};
use onair_api::PaymentProviderConfig;
use onair_api::db::entities::{channel_users, payments};
use onair_api::payments::sign_webhook;

const SUBS: &str = "/api/channels/sub_ch/subscriptions";

async fn expire_subscription(s: &crate::common::Server, user: &str) {
    channel_users::Entity::update_many()
        .col_expr(
            channel_users::Column::SubPeriodEnd,
            Expr::value(Some(Utc::now() - chrono::Duration::seconds(5))),
        )
        .filter(channel_users::Column::ChannelId.eq("sub_ch"))
        .filter(channel_users::Column::UserId.eq(user))
        .exec(s.api.db())
        .await
        .expect("expire");
}

async fn test_provider_lifecycle(b: Backend) {
    let s = start(b).await;
    s.channel("sub_ch", "owner").await;
    let bob = s.token("bob");

    let resp = s
        .post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&bob),
            &json!({"tier": 2}),
        )
        .await;
    let body = json(resp, 200).await;
    assert_eq!(body["status"], "active");
    assert_eq!(body["subscriptionInfo"]["tier"], 2);
    assert_eq!(body["subscriptionInfo"]["renews"], true);
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert_eq!(rel["subscriptionInfo"]["tier"], 2);
    assert_eq!(rel["isFollowing"], false);
    let end = chrono::DateTime::parse_from_rfc3339(
        rel["subscriptionInfo"]["currentPeriodEnd"]
            .as_str()
            .expect("end"),
    )
    .expect("date");
    let days = (end.with_timezone(&Utc) - Utc::now()).num_days();
    assert!((27..=31).contains(&days), "monthly period, got {days} days");
    let paid = payments::Entity::find()
        .filter(payments::Column::Status.eq("succeeded"))
        .all(s.api.db())
        .await
        .expect("db");
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].provider, "test");

    // same tier again: idempotent, no new payment
    json(
        s.post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&bob),
            &json!({"tier": 2}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        payments::Entity::find()
            .all(s.api.db())
            .await
            .expect("db")
            .len(),
        1
    );

    // unsubscribe keeps access until the period ends
    let body = json(
        s.post_empty(&format!("{SUBS}?op=UNSUBSCRIBE"), Some(&bob))
            .await,
        200,
    )
    .await;
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["subscriptionInfo"]["renews"], false);
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert_eq!(rel["subscriptionInfo"]["renews"], false);
    // resubscribe within the period renews again
    let body = json(
        s.post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&bob),
            &json!({"tier": 2}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["subscriptionInfo"]["renews"], true);
    json(
        s.post_empty(&format!("{SUBS}?op=UNSUBSCRIBE"), Some(&bob))
            .await,
        200,
    )
    .await;

    // the period ends: the subscription lapses, the sweeper removes the row
    expire_subscription(&s, "bob").await;
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert!(rel["subscriptionInfo"].is_null());
    s.api.sweep_expired().await.expect("sweep");
    assert!(
        channel_users::Entity::find()
            .all(s.api.db())
            .await
            .expect("db")
            .is_empty()
    );
    let body = json(
        s.post_empty(&format!("{SUBS}?op=UNSUBSCRIBE"), Some(&bob))
            .await,
        200,
    )
    .await;
    assert_eq!(body, json!({"status": "none", "subscriptionInfo": null}));

    // errors
    for tier in [
        json!(0),
        json!(4),
        json!(-1),
        json!(u64::MAX),
        json!("x"),
        json!(1.5),
        json!(null),
    ] {
        let resp = s
            .post_json(
                &format!("{SUBS}?op=SUBSCRIBE"),
                Some(&bob),
                &json!({"tier": tier}),
            )
            .await;
        let slug = if tier.is_i64() || tier.is_u64() {
            "invalid-tier"
        } else {
            "invalid-body"
        };
        expect_problem(resp, 422, slug).await;
        // UNSUBSCRIBE needs no tier, but a bad one is still refused.
        let resp = s
            .post_json(
                &format!("{SUBS}?op=UNSUBSCRIBE"),
                Some(&bob),
                &json!({"tier": tier}),
            )
            .await;
        expect_problem(resp, 422, slug).await;
    }
    // no body: tier 1; 3.0 is an integer in JSON Schema's sense
    let body = json(
        s.post_empty(&format!("{SUBS}?op=SUBSCRIBE"), Some(&s.token("carol")))
            .await,
        200,
    )
    .await;
    assert_eq!(body["subscriptionInfo"]["tier"], 1);
    let body = json(
        s.post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&s.token("dave")),
            &json!({"tier": 3.0}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["subscriptionInfo"]["tier"], 3);
    expect_problem(
        s.post_json(&format!("{SUBS}?op=BUY"), Some(&bob), &json!({"tier": 1}))
            .await,
        400,
        "bad-op",
    )
    .await;
    expect_problem(
        s.post_json(SUBS, Some(&bob), &json!({"tier": 1})).await,
        400,
        "bad-query",
    )
    .await;
    expect_problem(
        s.post_json(&format!("{SUBS}?op=SUBSCRIBE"), None, &json!({"tier": 1}))
            .await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        s.post_json(
            "/api/channels/nope_nope/subscriptions?op=SUBSCRIBE",
            Some(&bob),
            &json!({"tier": 1}),
        )
        .await,
        404,
        "not-found",
    )
    .await;
    expect_problem(
        s.post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&s.token("owner")),
            &json!({"tier": 1}),
        )
        .await,
        403,
        "cannot-subscribe-own-channel",
    )
    .await;
    let resp = s
        .http
        .post(s.url(&format!("{SUBS}?op=SUBSCRIBE")))
        .bearer_auth(&bob)
        .header("content-type", "text/plain")
        .body("tier=1")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 415, "unsupported-media-type").await;
    let resp = s
        .http
        .post(s.url(&format!("{SUBS}?op=SUBSCRIBE")))
        .bearer_auth(&bob)
        .header("content-type", "application/json")
        .body("{\"tier\":")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 400, "malformed-json").await;
    // webhooks are not taken by the test provider (a missing signature is 401 first)
    let resp = s
        .http
        .post(s.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 401, "invalid-signature").await;
    let resp = s
        .http
        .post(s.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .header(
            "onair-signature",
            sign_webhook("x", Utc::now().timestamp(), b"{}"),
        )
        .body("{}")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 404, "not-found").await;
}
both!(test_provider_lifecycle);

const SECRET: &str = "whsec_test_secret";

async fn send_webhook(
    s: &crate::common::Server,
    body: &serde_json::Value,
    secret: &str,
    t: i64,
) -> reqwest::Response {
    let raw = serde_json::to_vec(body).expect("json");
    s.http
        .post(s.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .header("onair-signature", sign_webhook(secret, t, &raw))
        .body(raw)
        .send()
        .await
        .expect("send")
}

async fn webhook_provider_lifecycle(b: Backend) {
    let s = start_with(b, |c| {
        c.payment_provider = PaymentProviderConfig::Webhook {
            secret: SECRET.into(),
            payment_input_url: "https://pay.example/checkout/{paymentID}".into(),
        }
    })
    .await;
    s.channel("sub_ch", "owner").await;
    let bob = s.token("bob");
    let resp = s
        .post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&bob),
            &json!({"tier": 3}),
        )
        .await;
    let body = json(resp, 202).await;
    assert_eq!(body["status"], "pending");
    let payment_id = body["paymentID"].as_str().expect("id").to_string();
    assert_eq!(
        body["paymentInputURL"],
        format!("https://pay.example/checkout/{payment_id}")
    );
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert!(
        rel["subscriptionInfo"].is_null(),
        "not active before payment"
    );

    let now = Utc::now().timestamp();
    let event = json!({"eventID": "evt_1", "paymentID": payment_id, "status": "succeeded"});

    // forged: wrong secret, missing header, tampered body, stale timestamp
    expect_problem(
        send_webhook(&s, &event, "wrong", now).await,
        401,
        "invalid-signature",
    )
    .await;
    let resp = s
        .http
        .post(s.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .json(&event)
        .send()
        .await
        .expect("send");
    expect_problem(resp, 401, "invalid-signature").await;
    let raw = serde_json::to_vec(&event).expect("json");
    let sig = sign_webhook(SECRET, now, &raw);
    let tampered = json!({"eventID": "evt_x", "paymentID": payment_id, "status": "succeeded"});
    let resp = s
        .http
        .post(s.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .header("onair-signature", sig)
        .json(&tampered)
        .send()
        .await
        .expect("send");
    expect_problem(resp, 401, "invalid-signature").await;
    expect_problem(
        send_webhook(&s, &event, SECRET, now - 3600).await,
        401,
        "invalid-signature",
    )
    .await;
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert!(
        rel["subscriptionInfo"].is_null(),
        "forgeries change nothing"
    );

    // malformed but signed
    expect_problem(
        send_webhook(&s, &json!({"hello": 1}), SECRET, now).await,
        400,
        "malformed-event",
    )
    .await;

    // valid
    let body = json(send_webhook(&s, &event, SECRET, now).await, 200).await;
    assert_eq!(body["status"], "processed");
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert_eq!(rel["subscriptionInfo"]["tier"], 3);

    // replay: ignored; unsubscribe, then replay again: still cancelled
    json(
        s.post_empty(&format!("{SUBS}?op=UNSUBSCRIBE"), Some(&bob))
            .await,
        200,
    )
    .await;
    let body = json(send_webhook(&s, &event, SECRET, now).await, 200).await;
    assert_eq!(body["status"], "ignored");
    // a new event id about the settled payment is ignored too
    let again = json!({"eventID": "evt_2", "paymentID": payment_id, "status": "succeeded"});
    assert_eq!(
        json(send_webhook(&s, &again, SECRET, now).await, 200).await["status"],
        "ignored"
    );
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&bob)).await,
        200,
    )
    .await;
    assert_eq!(rel["subscriptionInfo"]["renews"], false);

    // a failed payment does not activate
    let carol = s.token("carol");
    let body = json(
        s.post_json(
            &format!("{SUBS}?op=SUBSCRIBE"),
            Some(&carol),
            &json!({"tier": 1}),
        )
        .await,
        202,
    )
    .await;
    let failed = json!({"eventID": "evt_3", "paymentID": body["paymentID"], "status": "failed"});
    assert_eq!(
        json(send_webhook(&s, &failed, SECRET, now).await, 200).await["status"],
        "processed"
    );
    let rel = json(
        s.get("/api/channels/sub_ch/relationship", Some(&carol))
            .await,
        200,
    )
    .await;
    assert!(rel["subscriptionInfo"].is_null());

    // not JSON
    let resp = s
        .http
        .post(s.url("/api/payments/webhook"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 415, "unsupported-media-type").await;
}
both!(webhook_provider_lifecycle);
