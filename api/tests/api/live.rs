use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};

use crate::both;
use crate::common::{Backend, expect_problem, json, start};
use onair_api::ChannelEvent;
use onair_api::db::entities::livestreams;

async fn live_stream_and_counts(b: Backend) {
    let s = start(b).await;
    s.channel("live_ch", "alice").await;
    s.api
        .update_channel(
            "live_ch",
            onair_api::channels::ChannelUpdate {
                title: Some("First stream".into()),
                ..Default::default()
            },
        )
        .await
        .expect("title");
    let mut events = s.api.subscribe_events();
    let live = s.api.live();
    assert!(!live.is_live("live_ch"));
    let body = json(
        s.get(
            "/api/channels/live_ch/live-stream/currentWatcherCount",
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["currentWatcherCount"], 0);

    let sid = live.stream_started("live_ch").await.expect("started");
    assert!(live.is_live("live_ch"));
    assert!(matches!(
        events.recv().await,
        Ok(ChannelEvent::StreamStarted { .. })
    ));
    let row = livestreams::Entity::find_by_id(sid.to_string())
        .one(s.api.db())
        .await
        .expect("db")
        .expect("row");
    assert_eq!(row.channel_id, "live_ch");
    assert_eq!(row.title, "First stream");
    assert!(row.ended_at.is_none());

    // 5 viewers join one by one, as the SFU reports them
    for n in 1..=5 {
        live.set_viewer_count("live_ch", n);
    }
    let resp = s
        .get(
            "/api/channels/live_ch/live-stream/currentWatcherCount",
            None,
        )
        .await;
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap_or_default(),
        "public, max-age=5"
    );
    assert_eq!(json(resp, 200).await["currentWatcherCount"], 5);
    let body = json(s.get("/api/channels/live_ch", None).await, 200).await;
    assert_eq!(body["currentStreamInfo"]["title"], "First stream");
    assert_eq!(body["currentStreamInfo"]["currentWatcherCount"], 5);
    assert_eq!(body["currentStreamInfo"]["streamID"], sid.to_string());

    // other sources are summed
    live.set_viewer_count_from("hls", "live_ch", 3);
    assert_eq!(live.watchers("live_ch"), 8);
    live.set_viewer_count_from("hls", "live_ch", 0);

    // retitle while live
    let resp = s
        .http
        .patch(s.url("/api/channels/live_ch"))
        .bearer_auth(s.token("alice"))
        .json(&serde_json::json!({"title": "Renamed live"}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        json(resp, 200).await["currentStreamInfo"]["title"],
        "Renamed live"
    );

    // they leave
    for n in (0..5).rev() {
        live.set_viewer_count("live_ch", n);
    }
    let body = json(
        s.get(
            "/api/channels/live_ch/live-stream/currentWatcherCount",
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["currentWatcherCount"], 0);

    // newest publisher wins: a second start ends the first stream
    live.set_viewer_count("live_ch", 2);
    let sid2 = live.stream_started("live_ch").await.expect("restarted");
    assert_ne!(sid, sid2);
    let first = livestreams::Entity::find_by_id(sid.to_string())
        .one(s.api.db())
        .await
        .expect("db")
        .expect("row");
    assert!(first.ended_at.is_some());
    assert_eq!(first.peak_viewers, 8, "peak over all sources");
    // the old publisher's late goodbye does not end the new stream
    live.stream_ended(sid).await.expect("late end");
    assert!(live.is_live("live_ch"));
    assert_eq!(live.current("live_ch").map(|c| c.stream_id), Some(sid2));

    live.stream_ended(sid2).await.expect("end");
    assert!(!live.is_live("live_ch"));
    let body = json(s.get("/api/channels/live_ch", None).await, 200).await;
    assert!(body["currentStreamInfo"].is_null());
    let open = livestreams::Entity::find()
        .filter(livestreams::Column::EndedAt.is_null())
        .all(s.api.db())
        .await
        .expect("db");
    assert!(open.is_empty());

    // after a crash: a row without ended_at is closed by the next `serve`, not by `open`
    let orphan = live.stream_started("live_ch").await.expect("started");
    let reopened = {
        let mut cfg = s.config.clone();
        cfg.registry = prometheus::Registry::new();
        onair_api::Api::open(cfg).await.expect("reopen")
    };
    let row = livestreams::Entity::find_by_id(orphan.to_string())
        .one(s.api.db())
        .await
        .expect("db")
        .expect("row");
    assert!(
        row.ended_at.is_none(),
        "opening (the CLI) must not end live streams"
    );
    assert_eq!(
        reopened.live().close_orphan_streams().await.expect("close"),
        1
    );
    live.stream_ended(orphan).await.expect("end");

    assert!(live.stream_started("nope_nope").await.is_err());
    expect_problem(
        s.get(
            "/api/channels/nope_nope/live-stream/currentWatcherCount",
            None,
        )
        .await,
        404,
        "not-found",
    )
    .await;
}
both!(live_stream_and_counts);
