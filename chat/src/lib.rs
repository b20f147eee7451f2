//! onair live chat (DESIGN §2, §3): one protocol on the WHEP/WHIP data channel and a WebSocket,
//! durable per-channel history with gapless offsets, bans that alert at once, and a bus that
//! carries messages and bans to every node (in-process, or Redis pub/sub with a stream cache).
//!
//! Flow of a message: a connection checks identity, text, ban, rate limit and slow mode; the
//! room's writer stores it (offset allocated in the same transaction) and acks `delivered`;
//! the room delivers it to this node's connections in offset order and the bus carries it to
//! the other nodes (`sent`); a viewer's `seen` report comes back as `seen`.

pub mod bus;
pub mod conn;
pub mod datachannel;
pub mod emotes;
pub mod http;
pub mod metrics;
pub mod protocol;
mod room;
pub mod rules;
pub mod sequencer;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use onair_api::{Api, ChannelEvent, Claims};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};

pub use bus::{Bus, LocalBus};
pub use conn::{Conn, ConnIo, Identity, Transport};
pub use metrics::ChatMetrics;
pub use protocol::ChatMessage;
pub use rules::Limits;

use bus::{BusEvent, BusInput, Envelope};
use room::{Room, RoomInput, RoomShared};
use store::Store;

/// A connection's outbound queue: serialized frames, shared between its receivers.
pub(crate) type Outbox = mpsc::Sender<Arc<str>>;

/// Frames a connection may have queued before it counts as too slow and is disconnected.
pub const OUTBOX_FRAMES: usize = 512;
/// Sends queued for a room's writer before new sends are refused.
const WRITE_QUEUE: usize = 4096;
/// Waits before republishing to a bus that refused an event.
const PUBLISH_RETRIES: [Duration; 3] = [
    Duration::from_millis(300),
    Duration::from_millis(1000),
    Duration::from_millis(2500),
];
/// How often every open room checks the database for messages the bus did not bring.
const SYNC_EVERY: Duration = Duration::from_secs(3);

/// Chat settings.
#[derive(Debug, Clone, Default)]
pub struct ChatConfig {
    /// Message and rate limits.
    pub limits: Limits,
    /// Redis URL for many nodes; `None` = the in-process bus.
    pub redis_url: Option<String>,
}

/// Why a chat connection or request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// No such channel.
    #[error("channel {0} does not exist")]
    NoChannel(String),
    /// The database failed.
    #[error("chat storage: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// The API failed.
    #[error(transparent)]
    Api(#[from] onair_api::ApiError),
}

/// The chat service of a node; cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<ChatInner>,
}

pub(crate) struct ChatInner {
    pub api: Api,
    pub store: Store,
    pub bus: Bus,
    pub node: String,
    pub limits: Limits,
    pub metrics: ChatMetrics,
    rooms: Mutex<HashMap<String, Arc<RoomShared>>>,
    next_conn: AtomicU64,
}

impl Chat {
    /// Starts the chat service on `api`'s database, with Redis when configured.
    pub fn start(
        api: Api,
        config: ChatConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let metrics = ChatMetrics::register(registry)?;
        let bus = match &config.redis_url {
            Some(url) => Bus::Redis(bus::RedisBus::start(url, metrics.clone())?),
            None => Bus::Local(LocalBus::default()),
        };
        Ok(Self::with_bus(api, bus, config.limits, metrics))
    }

    /// Starts the chat service on a given bus (several in-process nodes share a [`LocalBus`]).
    pub fn with_bus(api: Api, bus: Bus, limits: Limits, metrics: ChatMetrics) -> Self {
        let chat = Chat {
            inner: Arc::new(ChatInner {
                store: Store::new(api.db().clone()),
                api,
                bus,
                node: uuid::Uuid::new_v4().simple().to_string(),
                limits,
                metrics,
                rooms: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
            }),
        };
        chat.spawn_tasks();
        chat
    }

    /// The API this chat runs on.
    pub fn api(&self) -> &Api {
        &self.inner.api
    }

    /// Durable history.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Metrics.
    pub fn metrics(&self) -> &ChatMetrics {
        &self.inner.metrics
    }

    /// Who `claims` is in `channel`: name and badges.
    pub async fn identity(&self, channel: &str, claims: &Claims) -> Identity {
        let owner = self
            .inner
            .api
            .channel(channel)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.owner_id);
        let broadcaster = owner.as_deref() == Some(claims.sub.as_str());
        let mut badges = Vec::new();
        if broadcaster {
            badges.push("broadcaster".to_string());
        }
        if let Ok(Some(sub)) = self.inner.api.subscription(channel, &claims.sub).await {
            badges.push(format!("subscriber/{}", sub.tier));
        }
        Identity {
            user_id: claims.sub.clone(),
            user_name: if claims.name.is_empty() {
                claims.sub.clone()
            } else {
                claims.name.clone()
            },
            badges,
            broadcaster: broadcaster || claims.is_admin(),
        }
    }

    /// The broadcaster of `channel` (a WHIP publisher's data channel speaks as the owner).
    pub async fn owner_identity(&self, channel: &str) -> Option<Identity> {
        let owner = self.inner.api.channel(channel).await.ok()??.owner_id?;
        let name = self
            .inner
            .api
            .account(&owner)
            .await
            .ok()
            .flatten()
            .map_or_else(|| owner.clone(), |a| a.name);
        Some(Identity {
            user_id: owner,
            user_name: name,
            badges: vec!["broadcaster".to_string()],
            broadcaster: true,
        })
    }

    /// Joins `channel`'s room: the connection gets a `welcome`, then every message.
    pub async fn connect(
        &self,
        channel: &str,
        identity: Option<Identity>,
        transport: Transport,
    ) -> Result<(Conn, ConnIo), ChatError> {
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, rx) = mpsc::channel(OUTBOX_FRAMES);
        let (kick, kicked) = watch::channel(None);
        let room = loop {
            let room = self.room(channel).await?;
            // Joined under the rooms lock: an idle room closes under it too, so the Connect
            // either reaches a live room or we open a new one.
            let rooms = self.inner.rooms.lock();
            if rooms.get(channel).is_some_and(|r| Arc::ptr_eq(r, &room)) {
                room.send(RoomInput::Connect {
                    id,
                    user: identity.as_ref().map(|i| i.user_id.clone()),
                    out: out.clone(),
                    kick,
                });
                break room.clone();
            }
        };
        self.inner
            .metrics
            .connections
            .with_label_values(&[transport.as_str()])
            .inc();
        Ok((
            Conn::new(self.clone(), id, room, identity, out, transport),
            ConnIo { rx, kicked },
        ))
    }

    /// The room of `channel`, opened (database state, writer, bus subscription) on first use.
    async fn room(&self, channel: &str) -> Result<Arc<RoomShared>, ChatError> {
        if let Some(r) = self.inner.rooms.lock().get(channel) {
            return Ok(r.clone());
        }
        if !self.inner.api.channel_exists(channel).await? {
            return Err(ChatError::NoChannel(channel.to_string()));
        };
        // Subscribe before reading the newest offset, so nothing published in between is missed.
        self.inner.bus.join(channel);
        let state = self.inner.store.open_channel(channel).await?;
        let mut rooms = self.inner.rooms.lock();
        if let Some(r) = rooms.get(channel) {
            return Ok(r.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
        let shared = Arc::new(RoomShared {
            channel: channel.to_string(),
            epoch: state.epoch,
            slow_mode: AtomicU32::new(state.slow_mode_secs),
            throttle: Mutex::new(Default::default()),
            tx: tx.clone(),
            writer: wtx,
        });
        rooms.insert(channel.to_string(), shared.clone());
        self.inner.metrics.rooms.inc();
        tokio::spawn(room::writer(
            self.inner.clone(),
            channel.to_string(),
            tx,
            wrx,
        ));
        tokio::spawn(Room::new(self.inner.clone(), shared.clone(), state.top).run(rx));
        Ok(shared)
    }

    /// Sets slow mode (0 = off, at most [`rules::MAX_SLOW_MODE_SECS`]) on every node.
    pub async fn set_slow_mode(&self, channel: &str, secs: u32) -> Result<(), ChatError> {
        self.inner.store.set_slow_mode(channel, secs).await?;
        self.inner.announce(
            channel,
            BusEvent::Settings {
                slow_mode_secs: secs,
            },
        );
        Ok(())
    }

    /// Slow mode of a channel (0 = off).
    pub async fn slow_mode(&self, channel: &str) -> Result<u32, ChatError> {
        Ok(self
            .inner
            .store
            .state(channel)
            .await?
            .map_or(0, |s| s.slow_mode_secs))
    }

    /// Newest-first history: up to `limit` messages older than `before` (offset).
    pub async fn history(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<History, ChatError> {
        let state = match self.inner.store.state(channel).await? {
            Some(s) => s,
            None => {
                if !self.inner.api.channel_exists(channel).await? {
                    return Err(ChatError::NoChannel(channel.to_string()));
                }
                return Ok(History {
                    messages: Vec::new(),
                    epoch: None,
                    top: 0,
                });
            }
        };
        let cached = match self.inner.bus.cache() {
            Some(c) => c.cache_page(channel, before, state.top, limit).await,
            None => None,
        };
        let source = if cached.is_some() { "cache" } else { "db" };
        self.inner
            .metrics
            .history_reads
            .with_label_values(&[source])
            .inc();
        let messages = match cached {
            Some(m) => m,
            None => self.inner.store.page(channel, before, limit).await?,
        };
        Ok(History {
            messages,
            epoch: Some(state.epoch),
            top: state.top,
        })
    }

    /// Background work: bus events to rooms, API events (bans, stream state) to rooms and
    /// the bus, and the periodic resync of every room's newest offset.
    fn spawn_tasks(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut bus_rx = self.inner.bus.subscribe();
        tokio::spawn({
            let weak = weak.clone();
            async move {
                loop {
                    let input = match bus_rx.recv().await {
                        Ok(i) => i,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "chat lagged behind the bus; resyncing");
                            BusInput::Resync
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let Some(inner) = weak.upgrade() else { return };
                    match input {
                        BusInput::Event(env) if env.node != inner.node => inner.on_bus(env),
                        BusInput::Event(_) => {}
                        BusInput::Resync => inner.sync_rooms().await,
                    }
                }
            }
        });
        let mut api_rx = self.inner.api.subscribe_events();
        tokio::spawn({
            let weak = weak.clone();
            async move {
                loop {
                    let e = match api_rx.recv().await {
                        Ok(e) => e,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let Some(inner) = weak.upgrade() else { return };
                    inner.on_api_event(e);
                }
            }
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SYNC_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.sync_rooms().await;
            }
        });
    }
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct History {
    /// Newest first.
    pub messages: Vec<ChatMessage>,
    /// The channel's epoch (`None` when chat was never used there).
    pub epoch: Option<String>,
    /// Newest offset.
    pub top: u64,
}

impl ChatInner {
    fn to_room(&self, channel: &str, input: RoomInput) {
        if let Some(r) = self.rooms.lock().get(channel) {
            r.send(input);
        }
    }

    fn on_bus(&self, env: Arc<Envelope>) {
        match &env.event {
            BusEvent::Ban { .. } | BusEvent::Unban { .. } => {
                // The ban row is in the database already; make the next check read it.
                self.api.forget_bans(&env.channel);
            }
            _ => {}
        }
        let channel = env.channel.clone();
        self.to_room(&channel, RoomInput::Bus(env));
    }

    fn on_api_event(self: &Arc<Self>, e: ChannelEvent) {
        let (channel, event) = match e {
            ChannelEvent::Banned {
                channel_id,
                user_id,
                until,
                ..
            } => (
                channel_id,
                BusEvent::Ban {
                    user_id,
                    until_ms: until.map(|u| u.timestamp_millis()),
                },
            ),
            ChannelEvent::Unbanned {
                channel_id,
                user_id,
            } => (channel_id, BusEvent::Unban { user_id }),
            ChannelEvent::StreamStarted { channel_id, .. } => (
                channel_id,
                BusEvent::Stream {
                    status: "live".into(),
                },
            ),
            ChannelEvent::StreamEnded { channel_id, .. } => (
                channel_id,
                BusEvent::Stream {
                    status: "offline".into(),
                },
            ),
            ChannelEvent::StreamKeyRotated { .. } | ChannelEvent::ChannelUpdated { .. } => return,
        };
        self.announce(&channel, event);
    }

    /// Tells this node's room and every other node: one path for local and remote events.
    fn announce(self: &Arc<Self>, channel: &str, event: BusEvent) {
        let env = self.envelope(channel, event.clone(), Utc::now().timestamp_millis());
        self.to_room(channel, RoomInput::Bus(Arc::new(env)));
        self.publish_soon(channel, vec![event]);
    }

    fn envelope(&self, channel: &str, event: BusEvent, ts_ms: i64) -> Envelope {
        Envelope {
            node: self.node.clone(),
            channel: channel.to_string(),
            ts_ms,
            event,
        }
    }

    async fn sync_rooms(&self) {
        let channels: Vec<String> = self.rooms.lock().keys().cloned().collect();
        if channels.is_empty() {
            return;
        }
        match self.store.tops(&channels).await {
            Ok(tops) => {
                for (channel, top) in tops {
                    self.to_room(&channel, RoomInput::Sync(top));
                }
            }
            Err(e) => tracing::warn!(error = %e, "chat: reading newest offsets"),
        }
    }

    /// Publishes events of one channel to the other nodes.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        events: Vec<BusEvent>,
    ) -> Result<(), bus::BusError> {
        let ts_ms = Utc::now().timestamp_millis();
        let envs: Vec<Envelope> = events
            .into_iter()
            .map(|event| self.envelope(channel, event, ts_ms))
            .collect();
        let mut res = self.bus.publish(envs.clone()).await;
        // Redis may be reconnecting: a few retries bridge a blip. Late copies are harmless
        // (receivers drop offsets they already have); after that, other nodes catch up from
        // the database.
        for wait in PUBLISH_RETRIES {
            let Err(e) = &res else { break };
            tracing::debug!(channel, error = %e, "chat bus publish failed; retrying");
            tokio::time::sleep(wait).await;
            res = self.bus.publish(envs.clone()).await;
        }
        res
    }

    /// Publishes in the background (callers that do not wait for the bus).
    pub(crate) fn publish_soon(self: &Arc<Self>, channel: &str, events: Vec<BusEvent>) {
        let me = self.clone();
        let channel = channel.to_string();
        tokio::spawn(async move {
            let _ = me.publish(&channel, events).await;
        });
    }

    /// Messages `from..=to`, from the Redis cache when it has them all, else the database.
    pub(crate) async fn read_range(
        &self,
        channel: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<ChatMessage>, sea_orm::DbErr> {
        if let Some(cache) = self.bus.cache()
            && let Some(msgs) = cache.cache_range(channel, from, to).await
        {
            self.metrics
                .history_reads
                .with_label_values(&["cache"])
                .inc();
            return Ok(msgs);
        }
        self.metrics.history_reads.with_label_values(&["db"]).inc();
        self.store.range(channel, from, to).await
    }

    /// Removes an idle room, unless input arrived for it meanwhile (then it lives on).
    pub(crate) fn close_room(
        &self,
        shared: &Arc<RoomShared>,
        rx: &mpsc::UnboundedReceiver<RoomInput>,
    ) -> bool {
        let mut rooms = self.rooms.lock();
        if !rx.is_empty() {
            return false;
        }
        rooms.remove(&shared.channel);
        drop(rooms);
        self.bus.leave(&shared.channel);
        self.metrics.rooms.dec();
        true
    }
}
