//! Chat across nodes: two `onair serve` processes sharing one PostgreSQL database and a private
//! Redis (started by the test on its own port, so it can be stopped and restarted), with
//! WebSocket clients on both.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onair_loadtest::client::chat_ws::{ChatWs, mint_token};
use sea_orm::{ConnectionTrait as _, Database};
use serde_json::{Value, json};

const SECRET: &str = "cluster-test-secret-0123456789abcdef";
const T: Duration = Duration::from_secs(10);

fn pg_admin_url() -> String {
    std::env::var("ONAIR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..cut]),
        None => format!("{}/{db}", &base[..cut]),
    }
}

/// A fresh PostgreSQL database, dropped at the end.
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> PgDb {
        let name = format!(
            "onair_chat_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let admin = Database::connect(pg_admin_url())
            .await
            .expect("PostgreSQL answers (scripts/test starts it)");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        PgDb {
            url: with_database(&pg_admin_url(), &name),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(c) = Database::connect(pg_admin_url()).await {
                    let _ = c
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn free_port() -> u16 {
    // The media port needs both TCP (ICE-TCP) and UDP free.
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_tcp(port: u16) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// A private redis-server.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test installs it)");
        self.child = Some(child);
        wait_tcp(self.port);
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// One `onair serve` process.
struct Node {
    http: u16,
    child: Child,
}

impl Node {
    fn start(dir: &Path, db: &str, redis: &str) -> Node {
        let http = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_onair"))
            .arg("serve")
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--media-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--shards", "1", "--redis-url", redis, "--database-url", db])
            .args(["--jwt-secret", SECRET])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("onair binary");
        wait_tcp(http);
        Node { http, child }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(user: &str) -> String {
    mint_token(SECRET, user, user, Duration::from_secs(3600)).expect("token")
}

async fn join(node: &Node, user: Option<&str>) -> ChatWs {
    let t = user.map(token);
    ChatWs::connect(&node.base(), "room", t.as_deref())
        .await
        .expect("chat connects")
}

async fn post(c: &mut ChatWs, id: &str, text: &str) -> Value {
    c.send_text(id, text).await.expect("send");
    let id = id.to_string();
    c.wait_for(T, move |v| {
        v["type"] == "ack" && v["clientMsgId"] == id.as_str() && v["status"] == "delivered"
    })
    .await
    .expect("delivered")
}

async fn message(c: &mut ChatWs, text: &str) -> Value {
    let text = text.to_string();
    c.wait_for(T, move |v| {
        v["type"] == "message" && v["message"] == text.as_str()
    })
    .await
    .unwrap_or_else(|e| panic!("message not received: {e}"))
}

async fn history(http: &reqwest::Client, node: &Node) -> Vec<Value> {
    let v: Value = http
        .get(format!(
            "{}/api/channels/room/live-stream/messages?limit=100",
            node.base()
        ))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    v["messages"].as_array().expect("messages").clone()
}

async fn metric(http: &reqwest::Client, node: &Node, name: &str) -> f64 {
    let body = http
        .get(format!("{}/metrics", node.base()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    body.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_messages_bans_history_and_survive_redis_and_node_restarts() {
    let db = PgDb::create().await;
    let mut redis = Redis::start();
    let dir_a = tempfile::tempdir().expect("dir");
    let dir_b = tempfile::tempdir().expect("dir");
    let a = Node::start(dir_a.path(), &db.url, &redis.url());
    let b = Node::start(dir_b.path(), &db.url, &redis.url());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/channels", a.base()))
        .bearer_auth(token("owner"))
        .json(&json!({"channelID": "room", "name": "Room", "description": ""}))
        .send()
        .await
        .expect("create channel");
    assert_eq!(r.status(), 201);

    let mut alice = join(&a, Some("alice")).await;
    let mut bob = join(&b, Some("bob")).await;
    let mut watcher = join(&b, None).await;

    // A message posted on node A reaches node B, and the other way round.
    post(&mut alice, "a1", "hello from A").await;
    let m = message(&mut bob, "hello from A").await;
    assert_eq!(m["userID"], "alice");
    post(&mut bob, "b1", "hello from B").await;
    message(&mut alice, "hello from A").await;
    message(&mut alice, "hello from B").await;
    message(&mut watcher, "hello from A").await;
    message(&mut watcher, "hello from B").await;

    // A ban issued through node A alerts bob on node B at once and blocks his sends there.
    let started = Instant::now();
    let r = http
        .post(format!("{}/api/channels/room/bans", a.base()))
        .bearer_auth(token("owner"))
        .json(&json!({"userID": "bob", "durationSeconds": 600}))
        .send()
        .await
        .expect("ban");
    assert!(r.status().is_success());
    let n = bob
        .wait_for(T, |v| v["type"] == "notice")
        .await
        .expect("ban notice on node B");
    assert_eq!(n["code"], "timed_out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let ev = watcher
        .wait_for(T, |v| v["type"] == "ban")
        .await
        .expect("room ban");
    assert_eq!(ev["userID"], "bob");
    bob.send_text("b2", "am I muted?").await.expect("send");
    let n = bob
        .wait_for(T, |v| v["type"] == "notice")
        .await
        .expect("notice");
    assert_eq!(n["code"], "timed_out");

    // History is the same from both nodes.
    let ha = history(&http, &a).await;
    assert_eq!(ha.len(), 2);
    assert_eq!(ha, history(&http, &b).await);

    // Redis goes away mid-conversation: chat goes on, everything acknowledged is kept, and
    // node B still gets node A's messages (from the database) ...
    redis.down();
    for i in 0..5 {
        post(&mut alice, &format!("r{i}"), &format!("during outage {i}")).await;
    }
    for i in 0..5 {
        message(&mut watcher, &format!("during outage {i}")).await;
    }
    // ... and when it is back, delivery goes through it again.
    redis.up();
    for n in [&a, &b] {
        let end = Instant::now() + T;
        while metric(&http, n, "onair_chat_bus_connected").await < 1.0 {
            assert!(Instant::now() < end, "node resubscribed to redis");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let carried_before = metric(&http, &b, "onair_chat_bus_lag_seconds_count").await;
    for i in 0..5 {
        post(&mut alice, &format!("s{i}"), &format!("after outage {i}")).await;
    }
    for i in 0..5 {
        message(&mut watcher, &format!("after outage {i}")).await;
    }
    let sent_again = alice
        .wait_for(T, |v| {
            v["type"] == "ack" && v["status"] == "sent" && v["clientMsgId"] == "s4"
        })
        .await;
    assert!(
        sent_again.is_ok(),
        "the bus publishes again after Redis returns"
    );
    assert!(
        metric(&http, &b, "onair_chat_bus_lag_seconds_count").await >= carried_before + 5.0,
        "node B received the new messages over Redis"
    );
    let ha = history(&http, &a).await;
    let offsets: Vec<u64> = ha.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (1..=12).rev().collect::<Vec<_>>());

    // Node B restarts: offsets continue, and a client resuming on it gets what it missed.
    let epoch = watcher.welcome()["epoch"].as_str().unwrap().to_string();
    watcher.close().await;
    drop(bob);
    let dir_b_path = dir_b.path().to_path_buf();
    b.stop();
    post(&mut alice, "x1", "while B was down").await;
    let b = Node::start(&dir_b_path, &db.url, &redis.url());
    let mut back = join(&b, None).await;
    assert_eq!(back.welcome()["offset"], 13);
    back.send_json(&json!({"type": "resume", "epoch": epoch, "offset": 12}))
        .await
        .expect("resume");
    let done = back
        .wait_for(T, |v| v["type"] == "resumed")
        .await
        .expect("resumed");
    assert_eq!(done["recovered"], true);
    let got: Vec<Value> = back
        .take_seen()
        .into_iter()
        .filter(|v| v["type"] == "message")
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"], "while B was down");
    let mut carol = join(&b, Some("carol")).await;
    let c = post(&mut carol, "c1", "from the restarted B").await;
    assert_eq!(c["offset"], 14);
    message(&mut alice, "from the restarted B").await;
    assert_eq!(history(&http, &a).await, history(&http, &b).await);
    drop(a);
}
