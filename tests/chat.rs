//! Live chat on one node through its real transports: WebSocket clients (tokio-tungstenite) and
//! a webrtc-rs WHEP viewer's `chat` data channel, against an in-process `onair serve`.

mod common;

use std::time::Duration;

use common::TestServer;
use onair_loadtest::client::chat_ws::ChatWs;
use onair_loadtest::client::publisher::{LayerSpec, PublisherConfig, publish};
use onair_loadtest::client::viewer::{ViewerConfig, play};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

async fn ws(t: &TestServer, user: Option<&str>) -> ChatWs {
    let token = user.map(|u| t.token(u));
    ChatWs::connect(&t.url(""), &t.channel, token.as_deref())
        .await
        .expect("websocket connects")
}

fn is(kind: &'static str) -> impl FnMut(&Value) -> bool {
    move |v| v["type"] == kind
}

async fn send(c: &mut ChatWs, id: &str, text: &str) {
    c.send_text(id, text).await.expect("send");
}

/// Sends and waits for the `delivered` ack (the message is stored).
async fn post(c: &mut ChatWs, id: &str, text: &str) -> Value {
    send(c, id, text).await;
    let id = id.to_string();
    c.wait_for(T, move |v| {
        v["type"] == "ack" && v["clientMsgId"] == id.as_str() && v["status"] == "delivered"
    })
    .await
    .expect("delivered")
}

async fn notice(c: &mut ChatWs) -> Value {
    c.wait_for(T, is("notice")).await.expect("notice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_and_data_channel_clients_see_one_order() {
    let t = TestServer::start().await;
    let mut pcfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    pcfg.layers = vec![LayerSpec::single(320, 180, 300_000)];
    pcfg.fps = 15;
    let publisher = publish(pcfg).await.expect("publish");
    let mut vcfg = ViewerConfig::new(t.url("/whep/chan"));
    vcfg.data_channel = true;
    vcfg.bearer = Some(t.token("dcuser"));
    let viewer = play(vcfg).await.expect("play");
    let dc = viewer.chat().expect("data channel");
    dc.wait_open(T).await.expect("open");
    let mut wsc = ws(&t, Some("wsuser")).await;

    // The data channel gets the same welcome as a WebSocket.
    let welcome: Value = loop {
        let f = dc.recv_timeout(T).await.expect("dc frame");
        let v: Value = serde_json::from_str(&f).expect("json");
        if v["type"] == "welcome" {
            break v;
        }
    };
    assert_eq!(welcome["userID"], "dcuser");

    for i in 0..5 {
        dc.send(
            &json!({"type":"send","clientMsgId":format!("d{i}"),"message":format!("from dc {i}")})
                .to_string(),
        )
        .await
        .expect("dc send");
        send(&mut wsc, &format!("w{i}"), &format!("from ws {i}")).await;
    }
    let mut from_ws = Vec::new();
    while from_ws.len() < 10 {
        let v = wsc.wait_for(T, is("message")).await.expect("ws message");
        from_ws.push(v);
    }
    let mut from_dc = Vec::new();
    let mut dc_acks = Vec::new();
    while from_dc.len() < 10 {
        let f = dc.recv_timeout(T).await.expect("dc frame");
        let v: Value = serde_json::from_str(&f).expect("json");
        match v["type"].as_str() {
            Some("message") => from_dc.push(v),
            Some("ack") => dc_acks.push(v),
            _ => {}
        }
    }
    let key = |v: &Vec<Value>| -> Vec<(u64, String)> {
        v.iter()
            .map(|m| {
                (
                    m["offset"].as_u64().unwrap(),
                    m["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        key(&from_ws),
        key(&from_dc),
        "both transports see one order"
    );
    let offsets: Vec<u64> = key(&from_ws).iter().map(|k| k.0).collect();
    assert_eq!(offsets, (1..=10).collect::<Vec<_>>());
    assert!(
        from_dc
            .iter()
            .any(|m| m["userID"] == "wsuser" && m["userName"] == "wsuser name")
    );

    // The WebSocket viewer reports what it shows: the data-channel sender hears `seen`.
    wsc.send_json(&json!({"type":"seen","offset":10}))
        .await
        .expect("seen");
    let seen = tokio::time::timeout(T, async {
        loop {
            let f = dc.recv().await.expect("dc open");
            let v: Value = serde_json::from_str(&f).expect("json");
            if v["type"] == "ack" && v["status"] == "seen" {
                return v;
            }
        }
    })
    .await
    .expect("seen ack");
    assert!(seen["clientMsgId"].as_str().unwrap().starts_with('d'));
    assert!(
        dc_acks
            .iter()
            .any(|a| a["status"] == "delivered" && a["clientMsgId"] == "d0")
    );
    // The room announces the watcher count, and the stream going offline.
    let earlier = wsc
        .take_seen()
        .into_iter()
        .find(|v| v["type"] == "watchers");
    let w = match earlier {
        Some(w) => w,
        None => wsc
            .wait_for(T, |v| v["type"] == "watchers")
            .await
            .expect("watchers frame"),
    };
    assert_eq!(w["count"], 1);
    viewer.stop().await.expect("stop");
    publisher.stop().await.expect("stop");
    let s = wsc
        .wait_for(T, |v| v["type"] == "stream")
        .await
        .expect("stream frame");
    assert_eq!(s["status"], "offline");
    t.stop().await;
}

async fn get_json(t: &TestServer, url: impl reqwest::IntoUrl) -> Value {
    t.http
        .get(url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn put_slow_mode(t: &TestServer, user: &str, secs: u32) -> u16 {
    t.http
        .put(t.url("/api/channels/chan/chat/settings"))
        .bearer_auth(t.token(user))
        .json(&json!({ "slowModeSeconds": secs }))
        .send()
        .await
        .expect("put")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_answers_with_its_notice() {
    let t = TestServer::start().await;
    let mut anon = ws(&t, None).await;
    assert_eq!(anon.welcome()["userID"], Value::Null);
    send(&mut anon, "a1", "hello").await;
    let n = notice(&mut anon).await;
    assert_eq!(
        (n["code"].as_str(), n["clientMsgId"].as_str()),
        (Some("auth_required"), Some("a1"))
    );

    let mut u = ws(&t, Some("viewer1")).await;
    send(&mut u, "e", "   ").await;
    assert_eq!(notice(&mut u).await["code"], "empty");
    send(&mut u, "l", &"x".repeat(501)).await;
    assert_eq!(notice(&mut u).await["code"], "too_long");
    send(&mut u, "c", "line\nbreak").await;
    assert_eq!(notice(&mut u).await["code"], "invalid_text");
    u.send_json(&json!({"type":"shout"})).await.expect("send");
    assert_eq!(notice(&mut u).await["code"], "bad_frame");
    // 500 characters is fine, trimmed.
    let m = post(&mut u, "ok", &format!("  {}  ", "y".repeat(500))).await;
    assert_eq!(m["offset"], 1);

    // 20 per 30 s: 19 more pass, the 21st is refused with the wait.
    for i in 0..19 {
        post(&mut u, &format!("r{i}"), "spam").await;
    }
    send(&mut u, "r19", "one too many").await;
    let n = notice(&mut u).await;
    assert_eq!(n["code"], "rate_limited");
    assert!(n["retryAfter"].as_u64().unwrap() >= 1);

    // Slow mode, set by the owner; the owner is exempt.
    let settings = t.url("/api/channels/chan/chat/settings");
    assert_eq!(put_slow_mode(&t, "viewer2", 5).await, 403);
    assert_eq!(put_slow_mode(&t, "owner", 121).await, 422);
    assert_eq!(put_slow_mode(&t, "owner", 5).await, 200);
    let mut v2 = ws(&t, Some("viewer2")).await;
    assert_eq!(v2.welcome()["slowModeSeconds"], 5);
    post(&mut v2, "s1", "first").await;
    send(&mut v2, "s2", "second").await;
    let n = notice(&mut v2).await;
    assert_eq!(n["code"], "slow_mode");
    let mut owner = ws(&t, Some("owner")).await;
    post(&mut owner, "o1", "owner 1").await;
    let o2 = post(&mut owner, "o2", "owner 2").await;
    assert!(o2["offset"].as_u64().unwrap() > 0);
    let r = t.http.get(&settings).send().await.expect("get");
    assert_eq!(r.json::<Value>().await.expect("json")["slowModeSeconds"], 5);
    assert_eq!(put_slow_mode(&t, "owner", 0).await, 200);
    v2.wait_for(T, is("settings"))
        .await
        .expect("settings frame");

    // A permanent ban: the room hears `ban`, the user a `banned` notice at once, and again on
    // every send; the user keeps reading.
    let bans = t.url("/api/channels/chan/bans");
    let r = t
        .http
        .post(&bans)
        .bearer_auth(t.token("owner"))
        .json(&json!({"userID": "viewer2"}))
        .send()
        .await
        .expect("ban");
    assert!(r.status().is_success(), "{}", r.status());
    let n = notice(&mut v2).await;
    assert_eq!(n["code"], "banned");
    let b = owner.wait_for(T, is("ban")).await.expect("room ban event");
    assert_eq!(
        (b["userID"].as_str(), &b["durationSeconds"]),
        (Some("viewer2"), &Value::Null)
    );
    send(&mut v2, "b1", "let me talk").await;
    assert_eq!(notice(&mut v2).await["code"], "banned");
    post(&mut owner, "o3", "still reading?").await;
    let m = v2
        .wait_for(T, |v| {
            v["type"] == "message" && v["message"] == "still reading?"
        })
        .await
        .expect("banned user reads");
    assert_eq!(m["userID"], "owner");

    // A two-second timeout: `timed_out` with the seconds left, then released.
    let mut v3 = ws(&t, Some("viewer3")).await;
    t.http
        .post(&bans)
        .bearer_auth(t.token("owner"))
        .json(&json!({"userID": "viewer3", "durationSeconds": 2}))
        .send()
        .await
        .expect("timeout");
    let n = notice(&mut v3).await;
    assert_eq!(n["code"], "timed_out");
    assert!(n["retryAfter"].as_u64().unwrap() <= 2);
    let b = owner
        .wait_for(T, is("ban"))
        .await
        .expect("room timeout event");
    assert_eq!(b["durationSeconds"].as_u64().map(|s| s <= 2), Some(true));
    send(&mut v3, "t1", "now?").await;
    assert_eq!(notice(&mut v3).await["code"], "timed_out");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    post(&mut v3, "t2", "released").await;

    // auth_required, empty, too_long, invalid_text, rate_limited, slow_mode, banned, timed_out.
    assert_eq!(t.metric("onair_chat_messages_rejected_total").await, 8.0);
    assert!(t.metric("onair_chat_messages_accepted_total").await >= 24.0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_what_was_missed() {
    let t = TestServer::start().await;
    let mut owner = ws(&t, Some("owner")).await;
    let mut reader = ws(&t, None).await;
    post(&mut owner, "first", "before the drop").await;
    let m = reader.wait_for(T, is("message")).await.expect("message");
    let epoch = reader.welcome()["epoch"]
        .as_str()
        .expect("epoch")
        .to_string();
    let held = m["offset"].as_u64().expect("offset");
    reader.close().await;

    for i in 0..50 {
        post(&mut owner, &format!("m{i}"), &format!("missed {i}")).await;
    }
    let mut back = ws(&t, None).await;
    assert_eq!(back.welcome()["offset"], held + 50);
    back.send_json(&json!({"type":"resume","epoch":epoch,"offset":held}))
        .await
        .expect("resume");
    let done = back.wait_for(T, is("resumed")).await.expect("resumed");
    assert_eq!(done["recovered"], true);
    let replayed: Vec<Value> = back
        .take_seen()
        .into_iter()
        .filter(|v| v["type"] == "message")
        .collect();
    let offsets: Vec<u64> = replayed
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (held + 1..=held + 50).collect::<Vec<_>>());
    assert_eq!(replayed[0]["message"], "missed 0");

    // Another epoch (history lost) or nothing to give: `recovered:false` / nothing replayed.
    back.send_json(&json!({"type":"resume","epoch":"other","offset":1}))
        .await
        .expect("resume");
    let r = back.wait_for(T, is("resumed")).await.expect("resumed");
    assert_eq!(r["recovered"], false);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_back_to_the_start() {
    let t = TestServer::start().await;
    let mut owner = ws(&t, Some("owner")).await;
    for i in 0..60 {
        post(&mut owner, &format!("h{i}"), &format!("history {i}")).await;
    }
    let base = t.url("/api/channels/chan/live-stream/messages");
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let mut url = format!("{base}?limit=25");
        if let Some(c) = &cursor {
            url.push_str(&format!("&nextCursor={c}"));
        }
        let page: Value = get_json(&t, &url).await;
        all.extend(page["messages"].as_array().expect("messages").clone());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let offsets: Vec<u64> = all.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (1..=60).rev().collect::<Vec<_>>());
    // A messageID works as the cursor too.
    let id = all[9]["messageID"].as_str().unwrap();
    let page: Value = get_json(&t, format!("{base}?limit=3&nextCursor={id}")).await;
    let o: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(o, [50, 49, 48]);
    for bad in ["limit=0", "limit=101", "limit=x", "nextCursor=nope"] {
        let r = t
            .http
            .get(format!("{base}?{bad}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    let r = t
        .http
        .get(t.url("/api/channels/nosuch/live-stream/messages"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emotes_are_listed_served_and_marked_in_messages() {
    let t = TestServer::start().await;
    let list: Value = get_json(&t, t.url("/api/emotes")).await;
    let emotes = list["emotes"].as_array().expect("list");
    assert!(emotes.len() >= 20);
    for e in emotes {
        let r = t
            .http
            .get(t.url(e["url"].as_str().unwrap()))
            .send()
            .await
            .expect("svg");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert!(r.text().await.unwrap().contains("<svg"));
    }
    assert_eq!(
        t.http
            .get(t.url("/emotes/nosuch.svg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let mut u = ws(&t, Some("fan")).await;
    send(&mut u, "e1", "héllo :smile :nosuch :fire").await;
    let m = u.wait_for(T, is("message")).await.expect("message");
    assert_eq!(
        m["emotes"],
        json!([{"id":"smile","start":6,"end":11},{"id":"fire","start":21,"end":25}])
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_is_posted_once_and_bad_connections_are_refused() {
    let t = TestServer::start().await;
    let mut u = ws(&t, Some("fan")).await;
    let first = post(&mut u, "same", "only once").await;
    let again = post(&mut u, "same", "only once").await;
    assert_eq!(first["messageID"], again["messageID"]);
    let page: Value = get_json(&t, t.url("/api/channels/chan/live-stream/messages")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);

    let plain = t
        .http
        .get(t.url("/api/channels/chan/live-stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 426);
    assert_eq!(plain.headers()["content-type"], "application/problem+json");
    assert!(
        ChatWs::connect(&t.url(""), "chan", Some("not-a-jwt"))
            .await
            .is_err()
    );
    assert!(ChatWs::connect(&t.url(""), "nosuch", None).await.is_err());
    // Authenticating after connecting (browsers cannot send headers on a WebSocket).
    let mut late = ws(&t, None).await;
    late.send_json(&json!({"type":"auth","token": t.token("late")}))
        .await
        .unwrap();
    let m = post(&mut late, "l1", "signed in late").await;
    assert!(m["offset"].as_u64().unwrap() >= 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_continues_offsets_without_gaps_or_duplicates() {
    let t = TestServer::start().await;
    let mut owner = ws(&t, Some("owner")).await;
    for i in 0..5 {
        post(&mut owner, &format!("a{i}"), &format!("before {i}")).await;
    }
    let epoch = owner.welcome()["epoch"].as_str().unwrap().to_string();
    owner.close().await;
    let t = t.restart().await;
    let mut owner = ws(&t, Some("owner")).await;
    assert_eq!(owner.welcome()["offset"], 5);
    assert_eq!(owner.welcome()["epoch"], epoch.as_str());
    for i in 0..5 {
        let a = post(&mut owner, &format!("b{i}"), &format!("after {i}")).await;
        assert_eq!(a["offset"], 6 + i);
    }
    // A resume across the restart is served from the database.
    let mut r = ws(&t, None).await;
    r.send_json(&json!({"type":"resume","epoch":epoch,"offset":2}))
        .await
        .unwrap();
    assert_eq!(
        r.wait_for(T, is("resumed")).await.unwrap()["recovered"],
        true
    );
    let replayed: Vec<u64> = r
        .take_seen()
        .into_iter()
        .filter(|v| v["type"] == "message")
        .map(|v| v["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, (3..=10).collect::<Vec<_>>());
    let page: Value = get_json(
        &t,
        t.url("/api/channels/chan/live-stream/messages?limit=100"),
    )
    .await;
    let offsets: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (1..=10).rev().collect::<Vec<_>>());
    t.stop().await;
}
