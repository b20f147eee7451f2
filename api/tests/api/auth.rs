use serde_json::json;

use crate::both;
use crate::common::{Backend, expect_problem, json, start, start_with};

async fn register_and_login(b: Backend) {
    let s = start(b).await;
    let resp = s
        .post_json(
            "/api/auth/register",
            None,
            &json!({"username": "alice", "password": "correct horse", "displayName": "Alice"}),
        )
        .await;
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap_or_default(),
        "private, no-store"
    );
    let body = json(resp, 201).await;
    let token = body["token"].as_str().expect("token");
    let claims = s.api.verify_token(token).expect("valid token");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.name, "Alice");
    assert_eq!(body["userID"], "alice");

    // duplicate
    let resp = s
        .post_json(
            "/api/auth/register",
            None,
            &json!({"username": "alice", "password": "another pass"}),
        )
        .await;
    expect_problem(resp, 409, "username-taken").await;

    // invalid username / password
    for (u, p, slug) in [
        ("Al", "correct horse", "invalid-username"),
        ("al-ice", "correct horse", "invalid-username"),
        ("bobby", "short", "invalid-password"),
    ] {
        let resp = s
            .post_json(
                "/api/auth/register",
                None,
                &json!({"username": u, "password": p}),
            )
            .await;
        expect_problem(resp, 422, slug).await;
    }

    // login
    let body = json(
        s.post_json(
            "/api/auth/login",
            None,
            &json!({"username": "alice", "password": "correct horse"}),
        )
        .await,
        200,
    )
    .await;
    let claims = s
        .api
        .verify_token(body["token"].as_str().expect("token"))
        .expect("valid");
    assert_eq!(claims.sub, "alice");
    assert!(claims.exp > claims.iat.unwrap_or(0));

    // wrong password, unknown user
    for (u, p) in [
        ("alice", "wrong horse"),
        ("nobody", "whatever1"),
        ("NOPE!", "x"),
    ] {
        let resp = s
            .post_json(
                "/api/auth/login",
                None,
                &json!({"username": u, "password": p}),
            )
            .await;
        expect_problem(resp, 401, "unauthorized").await;
    }

    // malformed JSON, wrong shape, wrong type, too large
    let resp = s
        .http
        .post(s.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 400, "malformed-json").await;
    let resp = s
        .post_json("/api/auth/login", None, &json!({"username": 5}))
        .await;
    expect_problem(resp, 422, "invalid-body").await;
    let resp = s
        .http
        .post(s.url("/api/auth/login"))
        .header("content-type", "text/plain")
        .body("username=alice")
        .send()
        .await
        .expect("send");
    expect_problem(resp, 415, "unsupported-media-type").await;
    let resp = s
        .http
        .post(s.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body(format!("{{\"username\":\"{}\"}}", "x".repeat(70_000)))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 413, "body-too-large").await;
}
both!(register_and_login);

async fn rate_limited_per_address(b: Backend) {
    let s = start_with(b, |c| {
        c.auth_rate_limit = onair_api::RateLimitConfig {
            burst: 3,
            per_minute: 1,
        }
    })
    .await;
    for _ in 0..3 {
        let resp = s
            .post_json(
                "/api/auth/login",
                None,
                &json!({"username": "x_y", "password": "abcdefgh"}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    let resp = s
        .post_json(
            "/api/auth/login",
            None,
            &json!({"username": "x_y", "password": "abcdefgh"}),
        )
        .await;
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("Retry-After");
    assert!(retry >= 1);
    expect_problem(resp, 429, "rate-limited").await;
    // register shares the bucket
    let resp = s
        .post_json(
            "/api/auth/register",
            None,
            &json!({"username": "newbie", "password": "abcdefgh"}),
        )
        .await;
    expect_problem(resp, 429, "rate-limited").await;
}
both!(rate_limited_per_address);

async fn tokens(b: Backend) {
    let secret = "a test secret that is at least thirty-two bytes long";
    let s = start_with(b, |c| c.jwt_secret = Some(secret.into())).await;
    let t = s.token("bob");
    let c = s.api.verify_token(&t).expect("valid");
    assert_eq!(c.sub, "bob");
    assert!(c.roles.is_none());
    let a = s.admin_token("root");
    assert!(s.api.verify_token(&a).expect("valid").is_admin());
    assert!(s.api.verify_token("garbage").is_err());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sign = |claims: serde_json::Value, key: &str, alg: jsonwebtoken::Algorithm| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .expect("encode")
    };
    // An operator's own identity system signing with the shared secret is accepted.
    let external = sign(
        json!({"sub": "auth0|42", "name": "Ext", "exp": now + 60}),
        secret,
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(
        s.api.verify_token(&external).expect("valid").sub,
        "auth0|42"
    );
    let expired = sign(
        json!({"sub": "bob", "name": "bob", "exp": now - 3600}),
        secret,
        jsonwebtoken::Algorithm::HS256,
    );
    assert!(matches!(
        s.api.verify_token(&expired),
        Err(onair_api::TokenError::Expired)
    ));
    let hs512 = sign(
        json!({"sub": "bob", "exp": now + 60}),
        secret,
        jsonwebtoken::Algorithm::HS512,
    );
    assert!(s.api.verify_token(&hs512).is_err());
    let foreign = sign(
        json!({"sub": "bob", "exp": now + 60}),
        "another secret of at least thirty-two bytes",
        jsonwebtoken::Algorithm::HS256,
    );
    assert!(s.api.verify_token(&foreign).is_err());
    let no_exp = sign(
        json!({"sub": "bob"}),
        secret,
        jsonwebtoken::Algorithm::HS256,
    );
    assert!(s.api.verify_token(&no_exp).is_err());

    // over HTTP: 401 with error="invalid_token" for bad tokens, plain challenge when missing
    for bad in [&foreign, &expired] {
        let resp = s
            .post_json("/api/channels", Some(bad), &json!({"channelID": "abc"}))
            .await;
        let www = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(www.contains("invalid_token"), "{www}");
        expect_problem(resp, 401, "unauthorized").await;
    }
    let resp = s
        .http
        .post(s.url("/api/channels"))
        .header("authorization", "Basic Ym9iOnB3")
        .json(&json!({"channelID": "abc"}))
        .send()
        .await
        .expect("send");
    expect_problem(resp, 401, "unauthorized").await;
    let resp = s
        .post_json("/api/channels", None, &json!({"channelID": "abc"}))
        .await;
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        www.starts_with("Bearer") && !www.contains("error="),
        "{www}"
    );
    expect_problem(resp, 401, "unauthorized").await;
}
both!(tokens);
