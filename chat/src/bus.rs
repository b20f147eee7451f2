//! The chat bus: carries messages, bans, settings and seen reports from the node where they
//! happen to every other node. In-process (one node, or several `Chat`s in one process), or
//! Redis pub/sub with one subscription per active channel, plus a capped Redis stream per
//! channel as the hot history cache.
//!
//! Pub/sub is at-most-once: nodes never rely on it alone. Every message carries its offset, a
//! node that sees a hole reads it from history, and rooms resync their newest offset from the
//! database periodically and whenever the bus reconnects.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use parking_lot::Mutex;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::metrics::ChatMetrics;
use crate::protocol::ChatMessage;

/// What travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it (a node ignores its own).
    pub node: String,
    /// Channel.
    pub channel: String,
    /// Published at, Unix milliseconds (bus lag).
    pub ts_ms: i64,
    /// The event.
    pub event: BusEvent,
}

/// An event of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BusEvent {
    /// A stored message.
    Message(ChatMessage),
    /// A ban or timeout (`until_ms` = end of a timeout).
    Ban {
        /// Banned user.
        user_id: String,
        /// End of a timeout, Unix milliseconds; `None` = permanent.
        until_ms: Option<i64>,
    },
    /// A ban was lifted.
    Unban {
        /// User.
        user_id: String,
    },
    /// Viewers have messages on screen: (reporter, highest offset).
    Seen {
        /// Reports, at most a few per flush.
        reports: Vec<(String, u64)>,
    },
    /// Slow mode changed.
    Settings {
        /// Seconds (0 = off).
        slow_mode_secs: u32,
    },
    /// The stream went live or offline.
    Stream {
        /// `live` or `offline`.
        status: String,
    },
}

/// What the bus hands to the node.
#[derive(Debug, Clone)]
pub enum BusInput {
    /// An event from another node.
    Event(Arc<Envelope>),
    /// The bus (re)connected: events may have been missed, resync every room.
    Resync,
}

/// The bus could not take the event (it is still stored; other nodes catch up by sync).
#[derive(Debug, thiserror::Error)]
#[error("chat bus unavailable: {0}")]
pub struct BusError(pub String);

/// In-process or Redis.
#[derive(Clone)]
pub enum Bus {
    /// One process.
    Local(LocalBus),
    /// Many nodes through Redis.
    Redis(Arc<RedisBus>),
}

impl Bus {
    /// Publishes events of one channel, in order.
    pub async fn publish(&self, events: Vec<Envelope>) -> Result<(), BusError> {
        match self {
            Bus::Local(l) => {
                for e in events {
                    let _ = l.tx.send(BusInput::Event(Arc::new(e)));
                }
                Ok(())
            }
            Bus::Redis(r) => r.publish(events).await,
        }
    }

    /// Events from the bus (every joined channel).
    pub fn subscribe(&self) -> broadcast::Receiver<BusInput> {
        match self {
            Bus::Local(l) => l.tx.subscribe(),
            Bus::Redis(r) => r.inputs.subscribe(),
        }
    }

    /// Starts receiving a channel's events (one subscription per node and channel).
    pub fn join(&self, channel: &str) {
        if let Bus::Redis(r) = self {
            r.join(channel);
        }
    }

    /// Stops receiving a channel's events.
    pub fn leave(&self, channel: &str) {
        if let Bus::Redis(r) = self {
            r.leave(channel);
        }
    }

    /// The Redis hot cache, when there is one.
    pub fn cache(&self) -> Option<&RedisBus> {
        match self {
            Bus::Local(_) => None,
            Bus::Redis(r) => Some(r),
        }
    }
}

/// A bus inside one process; clones share it.
#[derive(Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<BusInput>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(65536).0,
        }
    }
}

/// How many messages the Redis stream of a channel keeps (about; `MAXLEN ~`).
pub const CACHE_LEN: usize = 1000;
/// A channel's stream cache expires this long after its last message.
const CACHE_TTL_SECS: i64 = 7 * 24 * 3600;
/// After a failed Redis call, calls fail at once for this long instead of waiting on a
/// connect timeout each (chat must not slow down while Redis is away).
const BREAKER: Duration = Duration::from_secs(1);

enum SubCmd {
    Join(String),
    Leave(String),
}

/// Redis pub/sub and stream cache.
pub struct RedisBus {
    conn: redis::aio::ConnectionManager,
    inputs: broadcast::Sender<BusInput>,
    joined: Mutex<HashSet<String>>,
    sub_tx: mpsc::UnboundedSender<SubCmd>,
    down_until: Mutex<Option<Instant>>,
    metrics: ChatMetrics,
}

fn pubsub_key(channel: &str) -> String {
    format!("onair:chat:{channel}")
}

fn stream_key(channel: &str) -> String {
    format!("onair:chat:{channel}:h")
}

impl RedisBus {
    /// Connects lazily to `url` and starts the subscriber; works (degraded) while Redis is away.
    pub fn start(url: &str, metrics: ChatMetrics) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), cfg)?;
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let bus = Arc::new(Self {
            conn,
            inputs: broadcast::channel(65536).0,
            joined: Mutex::new(HashSet::new()),
            sub_tx,
            down_until: Mutex::new(None),
            metrics,
        });
        tokio::spawn(subscriber(client, Arc::downgrade(&bus), sub_rx));
        Ok(bus)
    }

    fn join(&self, channel: &str) {
        if self.joined.lock().insert(channel.to_string()) {
            let _ = self.sub_tx.send(SubCmd::Join(channel.to_string()));
        }
    }

    fn leave(&self, channel: &str) {
        if self.joined.lock().remove(channel) {
            let _ = self.sub_tx.send(SubCmd::Leave(channel.to_string()));
        }
    }

    fn check_breaker(&self) -> Result<(), BusError> {
        match *self.down_until.lock() {
            Some(t) if Instant::now() < t => Err(BusError("redis is unreachable".into())),
            _ => Ok(()),
        }
    }

    fn trip<T>(&self, e: redis::RedisError) -> Result<T, BusError> {
        *self.down_until.lock() = Some(Instant::now() + BREAKER);
        Err(BusError(e.to_string()))
    }

    fn healthy(&self) {
        *self.down_until.lock() = None;
    }

    async fn publish(&self, events: Vec<Envelope>) -> Result<(), BusError> {
        self.check_breaker()?;
        let Some(channel) = events.first().map(|e| e.channel.clone()) else {
            return Ok(());
        };
        let key = pubsub_key(&channel);
        let mut pipe = redis::pipe();
        let mut cached = Vec::new();
        for e in &events {
            let payload = serde_json::to_string(e).map_err(|e| BusError(e.to_string()))?;
            pipe.publish(&key, payload).ignore();
            if let BusEvent::Message(m) = &e.event {
                cached.push(m.clone());
            }
        }
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => self.healthy(),
            Err(e) => {
                self.metrics.bus_errors.inc();
                return self.trip(e);
            }
        }
        if !cached.is_empty() {
            self.cache_append(&channel, &cached).await;
        }
        Ok(())
    }

    /// Adds messages to the channel's stream cache. Entry ids are `<offset>-1`, so a message
    /// committed by another node a moment earlier may be refused as out of order: the cache
    /// then has a hole, which readers detect and answer from the database instead.
    async fn cache_append(&self, channel: &str, msgs: &[ChatMessage]) {
        let key = stream_key(channel);
        let mut conn = self.conn.clone();
        for m in msgs {
            let Ok(json) = serde_json::to_string(m) else {
                continue;
            };
            let id = format!("{}-1", m.offset);
            let res: redis::RedisResult<Option<String>> = redis::cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(CACHE_LEN)
                .arg(&id)
                .arg("m")
                .arg(json)
                .query_async(&mut conn)
                .await;
            if let Err(e) = res
                && !e.to_string().contains("equal or smaller")
            {
                tracing::debug!(error = %e, channel, "chat cache append failed");
                return;
            }
        }
        // The cache of a channel nobody talks in any more goes away by itself.
        let _: redis::RedisResult<()> = conn.expire(&key, CACHE_TTL_SECS).await;
    }

    /// Messages `from..=to` from the cache, only if it holds every one of them.
    pub async fn cache_range(&self, channel: &str, from: u64, to: u64) -> Option<Vec<ChatMessage>> {
        if to < from || self.check_breaker().is_err() {
            return None;
        }
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn
            .xrange(stream_key(channel), format!("{from}-0"), format!("{to}-1"))
            .await
            .ok()?;
        let msgs = decode(reply);
        let complete = msgs.len() as u64 == to - from + 1
            && msgs.iter().zip(from..).all(|(m, o)| m.offset == o);
        complete.then_some(msgs)
    }

    /// Up to `limit` messages below `before` (newest first), only if the cache holds the whole
    /// page contiguously; `top` is the newest offset (used when `before` is `None`).
    pub async fn cache_page(
        &self,
        channel: &str,
        before: Option<u64>,
        top: u64,
        limit: u64,
    ) -> Option<Vec<ChatMessage>> {
        let newest = before.map_or(top, |b| b.saturating_sub(1).min(top));
        if newest == 0 {
            return Some(Vec::new());
        }
        let oldest = newest.saturating_sub(limit.saturating_sub(1)).max(1);
        let mut page = self.cache_range(channel, oldest, newest).await?;
        page.reverse();
        Some(page)
    }
}

fn decode(reply: redis::streams::StreamRangeReply) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = reply
        .ids
        .iter()
        .filter_map(|id| {
            let v = id.map.get("m")?;
            let s: String = redis::from_redis_value_ref(v).ok()?;
            serde_json::from_str(&s).ok()
        })
        .collect();
    out.sort_by_key(|m| m.offset);
    out
}

/// Keeps one pub/sub connection, subscribed to every joined channel; reconnects with backoff
/// and asks for a resync after every (re)connect.
async fn subscriber(
    client: redis::Client,
    bus: std::sync::Weak<RedisBus>,
    mut cmds: mpsc::UnboundedReceiver<SubCmd>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(b) = bus.upgrade() else { return };
        let pubsub =
            match tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "chat bus: redis pub/sub connect failed");
                    drop(b);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(_) => {
                    drop(b);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
        let (mut sink, mut stream) = pubsub.split();
        let channels: Vec<String> = b.joined.lock().iter().cloned().collect();
        let mut ok = true;
        for c in &channels {
            if sink.subscribe(pubsub_key(c)).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            drop(b);
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::info!(channels = channels.len(), "chat bus: subscribed to redis");
        b.metrics.bus_connected.set(1);
        let _ = b.inputs.send(BusInput::Resync);
        let inputs = b.inputs.clone();
        let metrics = b.metrics.clone();
        drop(b);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let Ok(env) = serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) else {
                        tracing::warn!(channel = msg.get_channel_name(), "chat bus: undecodable event");
                        continue;
                    };
                    let lag_ms = chrono::Utc::now().timestamp_millis() - env.ts_ms;
                    metrics.bus_lag.observe(lag_ms.max(0) as f64 / 1000.0);
                    let _ = inputs.send(BusInput::Event(Arc::new(env)));
                }
                cmd = cmds.recv() => {
                    let res = match cmd {
                        None => return,
                        Some(SubCmd::Join(c)) => sink.subscribe(pubsub_key(&c)).await,
                        Some(SubCmd::Leave(c)) => sink.unsubscribe(pubsub_key(&c)).await,
                    };
                    if res.is_err() {
                        break;
                    }
                }
            }
        }
        metrics.bus_connected.set(0);
        tracing::warn!("chat bus: lost the redis pub/sub connection; reconnecting");
    }
}
