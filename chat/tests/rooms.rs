//! Chat rooms end to end inside one process, on a real SQLite database: backpressure, and
//! several nodes (each its own `Chat` and `Api`) on one database, with and without a shared
//! in-process bus. The same paths over Redis between processes are in the root `chat_cluster`
//! tests.

use std::time::Duration;

use onair_api::{Api, ApiConfig, NewChannel};
use onair_chat::{Bus, Chat, ChatMetrics, ConnIo, Identity, Limits, LocalBus, Transport};
use serde_json::{Value, json};
use tokio::sync::mpsc;

async fn open_api(dir: &std::path::Path) -> Api {
    Api::open(ApiConfig::new(dir)).await.expect("api opens")
}

async fn node(api: Api, bus: Bus) -> Chat {
    let limits = Limits {
        broadcaster_messages: 10_000,
        ..Limits::default()
    };
    let registry = prometheus::Registry::new();
    Chat::with_bus(
        api,
        bus,
        limits,
        ChatMetrics::register(&registry).expect("metrics"),
    )
}

fn owner() -> Identity {
    Identity {
        user_id: "owner".into(),
        user_name: "Owner".into(),
        badges: vec!["broadcaster".into()],
        broadcaster: true,
    }
}

fn viewer(id: &str) -> Identity {
    Identity {
        user_id: id.into(),
        user_name: id.into(),
        badges: vec![],
        broadcaster: false,
    }
}

/// Forwards a connection's frames (parsed) to a channel the test reads.
fn drain(mut io: ConnIo) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(f) = io.rx.recv().await {
            if let Ok(v) = serde_json::from_str::<Value>(&f)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    rx
}

async fn next_of(rx: &mut mpsc::UnboundedReceiver<Value>, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let v = rx.recv().await.expect("connection open");
            if v["type"] == kind {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} frame in time"))
}

async fn messages(rx: &mut mpsc::UnboundedReceiver<Value>, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(next_of(rx, "message").await);
    }
    out
}

fn send(i: usize) -> String {
    json!({"type": "send", "clientMsgId": format!("c{i}"), "message": format!("m{i}")}).to_string()
}

async fn setup() -> (tempfile::TempDir, Api) {
    let dir = tempfile::tempdir().expect("dir");
    let api = open_api(dir.path()).await;
    api.create_channel(NewChannel {
        channel_id: "room".into(),
        name: None,
        description: String::new(),
        owner_id: Some("owner".into()),
    })
    .await
    .expect("channel");
    (dir, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_the_room_goes_on() {
    let (_dir, api) = setup().await;
    let chat = node(api, Bus::Local(LocalBus::default())).await;
    let (mut sender, sender_io) = chat
        .connect("room", Some(owner()), Transport::WebSocket)
        .await
        .expect("connect");
    let _sender_frames = drain(sender_io);
    let (_slow, slow_io) = chat
        .connect("room", None, Transport::WebSocket)
        .await
        .expect("connect");
    let mut kicked = slow_io.kicked.clone();
    let (_fast, fast_io) = chat
        .connect("room", None, Transport::WebSocket)
        .await
        .expect("connect");
    let mut fast = drain(fast_io);

    let n = onair_chat::OUTBOX_FRAMES + 100;
    for i in 0..n {
        sender.handle_text(&send(i)).await;
    }
    tokio::time::timeout(Duration::from_secs(20), kicked.wait_for(|k| k.is_some()))
        .await
        .expect("slow client kicked in time")
        .expect("kick sent");
    assert_eq!(*kicked.borrow(), Some("slow_consumer"));
    let got = messages(&mut fast, n).await;
    let offsets: Vec<u64> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (1..=n as u64).collect::<Vec<_>>());
    drop(slow_io);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_bus_share_messages_and_bans() {
    let (dir, api_a) = setup().await;
    let api_b = open_api(dir.path()).await;
    let bus = LocalBus::default();
    let a = node(api_a.clone(), Bus::Local(bus.clone())).await;
    let b = node(api_b, Bus::Local(bus)).await;

    let (mut on_a, io_a) = a
        .connect("room", Some(viewer("alice")), Transport::WebSocket)
        .await
        .expect("connect a");
    let mut rx_a = drain(io_a);
    let (mut on_b, io_b) = b
        .connect("room", Some(viewer("bob")), Transport::DataChannel)
        .await
        .expect("connect b");
    let mut rx_b = drain(io_b);
    let (_watch_b, io_w) = b
        .connect("room", None, Transport::WebSocket)
        .await
        .expect("connect watcher");
    let mut rx_w = drain(io_w);

    // Interleaved posts from both nodes arrive everywhere in the same order.
    for i in 0..6 {
        if i % 2 == 0 {
            on_a.handle_text(&send(i)).await;
        } else {
            on_b.handle_text(&send(i)).await;
        }
    }
    let seen_a = messages(&mut rx_a, 6).await;
    let seen_b = messages(&mut rx_b, 6).await;
    let seen_w = messages(&mut rx_w, 6).await;
    let ids = |v: &[Value]| -> Vec<(u64, String)> {
        v.iter()
            .map(|m| {
                (
                    m["offset"].as_u64().unwrap(),
                    m["messageID"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(ids(&seen_a), ids(&seen_b));
    assert_eq!(ids(&seen_a), ids(&seen_w));
    assert_eq!(
        ids(&seen_a).iter().map(|x| x.0).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );

    // A ban made through node A's API reaches bob on node B at once...
    api_a
        .ban("room", "bob", "owner", None, None)
        .await
        .expect("ban");
    let notice = next_of(&mut rx_b, "notice").await;
    assert_eq!(notice["code"], "banned");
    let ban = next_of(&mut rx_w, "ban").await;
    assert_eq!(ban["userID"], "bob");
    assert_eq!(ban["durationSeconds"], Value::Null);
    // ...and node B refuses his next message although its ban cache was warm.
    on_b.handle_text(&send(100)).await;
    let notice = next_of(&mut rx_b, "notice").await;
    assert_eq!(notice["code"], "banned");
    assert_eq!(notice["clientMsgId"], "c100");
    // He keeps reading.
    on_a.handle_text(&send(101)).await;
    assert_eq!(next_of(&mut rx_b, "message").await["message"], "m101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_bus_never_reaches_catches_up_from_the_database() {
    let (dir, api_a) = setup().await;
    let api_c = open_api(dir.path()).await;
    // Separate buses: nothing node A publishes reaches node C.
    let a = node(api_a, Bus::Local(LocalBus::default())).await;
    let c = node(api_c, Bus::Local(LocalBus::default())).await;
    let (mut on_a, io_a) = a
        .connect("room", Some(owner()), Transport::WebSocket)
        .await
        .expect("connect a");
    let _rx_a = drain(io_a);
    let (_on_c, io_c) = c
        .connect("room", None, Transport::WebSocket)
        .await
        .expect("connect c");
    let mut rx_c = drain(io_c);
    assert_eq!(next_of(&mut rx_c, "welcome").await["offset"], 0);
    for i in 0..5 {
        on_a.handle_text(&send(i)).await;
    }
    // The periodic sync finds the new offsets and the hole is read from history, in order.
    let got = messages(&mut rx_c, 5).await;
    let texts: Vec<&str> = got.iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
}
