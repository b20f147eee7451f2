use std::time::Duration;

use serde_json::json;

use crate::both;
use crate::common::{Backend, config, expect_problem, json, serve_api, start};
use onair_api::Api;

async fn http_behaviour(b: Backend) {
    let s = start(b).await;
    s.channel("misc_ch", "owner").await;

    // OpenAPI 3.1 with every route
    let doc = json(s.get("/api/openapi.json", None).await, 200).await;
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
    for p in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/channels",
        "/api/channels/{channelID}",
        "/api/channels/{channelID}/stream-key",
        "/api/channels/{channelID}/relationship",
        "/api/channels/{channelID}/following",
        "/api/channels/{channelID}/subscriptions",
        "/api/channels/{channelID}/live-stream/currentWatcherCount",
        "/api/channels/{channelID}/bans",
        "/api/channels/{channelID}/bans/{userID}",
        "/api/payments/webhook",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }

    // unknown route and method
    expect_problem(s.get("/api/nothing/here", None).await, 404, "not-found").await;
    let resp = s
        .http
        .delete(s.url("/api/channels"))
        .send()
        .await
        .expect("send");
    assert!(resp.headers().get("allow").is_some());
    expect_problem(resp, 405, "method-not-allowed").await;

    // request ids: kept when given, generated otherwise
    let resp = s
        .http
        .get(s.url("/api/channels/misc_ch"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let resp = s.get("/api/channels/nope_nope", None).await;
    let rid = resp.headers()["x-request-id"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(rid.len(), 36);

    // metrics
    let families = s.api.registry().gather();
    let reqs = families
        .iter()
        .find(|f| f.name() == "onair_api_http_requests_total")
        .expect("request counter");
    assert!(reqs.get_metric().iter().any(|m| {
        m.get_label()
            .iter()
            .any(|l| l.name() == "route" && l.value() == "/api/channels/{channelID}")
    }));
    assert!(
        families
            .iter()
            .any(|f| f.name() == "onair_api_http_request_duration_seconds")
    );
}
both!(http_behaviour);

async fn open_secret_and_demo(b: Backend) {
    let (cfg, _cleanup) = config(b).await;
    let api = Api::open(cfg.clone()).await.expect("open");
    let secret_path = cfg.data_dir.join("jwt-secret");
    let meta = std::fs::metadata(&secret_path).expect("secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let _ = meta;
    let token = api
        .mint_token("alice", "Alice", Duration::from_secs(60))
        .expect("mint");

    assert_eq!(api.count_channels().await.expect("count"), 0);
    let key = api
        .ensure_demo_channel()
        .await
        .expect("demo")
        .expect("created");
    assert!(api.verify_stream_key("demo", &key).await.is_ok());
    assert!(api.ensure_demo_channel().await.expect("demo").is_none());
    assert_eq!(api.count_channels().await.expect("count"), 1);

    // a second process on the same data (the CLI while a server runs) sees the same secret
    // and writes at the same time
    let mut cli_cfg = cfg.clone();
    cli_cfg.registry = prometheus::Registry::new();
    let cli = Api::open(cli_cfg).await.expect("second open");
    assert_eq!(cli.verify_token(&token).expect("same secret").sub, "alice");
    let base = serve_api(&api).await;
    let http = reqwest::Client::new();
    let (a, c) = tokio::join!(
        async {
            for i in 0..20 {
                let t = api
                    .mint_token(&format!("u{i}"), "u", Duration::from_secs(60))
                    .expect("mint");
                let r = http
                    .post(format!("{base}/api/channels/demo/following?op=FOLLOW"))
                    .bearer_auth(t)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status().as_u16(), 200);
            }
        },
        async {
            for i in 0..20 {
                cli.create_channel(onair_api::NewChannel {
                    channel_id: format!("cli_{i}"),
                    ..Default::default()
                })
                .await
                .expect("CLI create while serving");
            }
        }
    );
    let ((), ()) = (a, c);
    assert_eq!(api.count_channels().await.expect("count"), 21);
    let body: serde_json::Value = http
        .get(format!("{base}/api/channels/demo"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["followerCount"], json!(20));
}
both!(open_secret_and_demo);
