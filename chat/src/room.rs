//! A channel's chat room on one node: the task that owns its connections and delivers every
//! message to each of them in offset order, and the writer that stores what they post.
//!
//! Ordering and completeness come from the sans-IO [`Sequencer`]; this file is the IO shell
//! around it (queues, timers, history reads).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::bus::{BusEvent, Envelope};
use crate::protocol::{AckStatus, ChatMessage, Notice, NoticeCode, ServerFrame};
use crate::rules::Throttle;
use crate::sequencer::Sequencer;
use crate::store::{NewMessage, Stored};
use crate::{ChatInner, Outbox};

/// A connection's id on this node.
pub type ConnId = u64;

/// Messages kept in memory per room for resumes (the recovery limit).
pub const RECOVERY_LIMIT: u64 = 300;
/// A room with no connection closes after this long (reconnect storms reuse it).
const LINGER: Duration = Duration::from_secs(30);
/// Seen reports are aggregated and published at most this often.
const SEEN_FLUSH: Duration = Duration::from_millis(500);
/// Own messages wait this long at most for a `seen`.
const SEEN_KEEP: Duration = Duration::from_secs(120);
/// Reporters per seen flush (the highest offsets win).
const SEEN_REPORTERS: usize = 16;
/// How often the room checks the channel's watcher count and announces a change.
const WATCHERS_EVERY: Duration = Duration::from_secs(5);
/// Messages per database transaction.
const WRITE_BATCH: usize = 100;

/// How a connection is told it must go.
pub type Kick = watch::Sender<Option<&'static str>>;

/// What the room knows of a connection.
struct Member {
    user: Option<String>,
    out: Outbox,
    kick: Kick,
    /// Newest offset at connect: a resume replays up to here; later ones arrive live.
    welcome_top: u64,
}

/// A message this node stored, waiting for another viewer's `seen`.
struct AwaitingSeen {
    conn: ConnId,
    user: String,
    client_msg_id: Option<String>,
    message_id: String,
    at: Instant,
}

/// What the room task is told.
pub(crate) enum RoomInput {
    Connect {
        id: ConnId,
        user: Option<String>,
        out: Outbox,
        kick: Kick,
    },
    Identify {
        id: ConnId,
        user: String,
    },
    Disconnect(ConnId),
    /// This node stored these (offset order), with who sent them.
    Committed(Vec<(Arc<ChatMessage>, ConnId, Option<String>)>),
    /// An event from another node, or one this node announces (bans, settings, stream).
    Bus(Arc<Envelope>),
    Filled(Result<Vec<ChatMessage>, ()>),
    Resume {
        id: ConnId,
        epoch: String,
        offset: u64,
    },
    Replay {
        id: ConnId,
        msgs: Result<Vec<ChatMessage>, ()>,
        upto: u64,
    },
    Seen {
        reporter: String,
        offset: u64,
    },
    Sync(u64),
}

/// What connections share with their room.
pub(crate) struct RoomShared {
    pub channel: String,
    pub epoch: String,
    pub slow_mode: AtomicU32,
    pub throttle: Mutex<Throttle>,
    pub tx: mpsc::UnboundedSender<RoomInput>,
    pub writer: mpsc::Sender<WriteJob>,
}

impl RoomShared {
    pub fn send(&self, input: RoomInput) {
        let _ = self.tx.send(input);
    }

    pub fn slow_mode(&self) -> u32 {
        self.slow_mode.load(Ordering::Relaxed)
    }
}

/// A message to store for a connection.
pub(crate) struct WriteJob {
    pub msg: NewMessage,
    pub conn: ConnId,
    pub out: Outbox,
}

/// Queues a frame; false when the connection's queue is full (or gone).
pub(crate) fn push(out: &Outbox, text: &Arc<str>) -> bool {
    out.try_send(text.clone()).is_ok()
}

pub(crate) fn notice_text(n: &Notice) -> Arc<str> {
    ServerFrame::from(n).to_text().into()
}

fn ack_text(client_msg_id: Option<&str>, status: AckStatus, m: &ChatMessage) -> Arc<str> {
    ServerFrame::Ack {
        client_msg_id,
        status,
        message_id: &m.message_id,
        offset: m.offset,
    }
    .to_text()
    .into()
}

/// The room task.
pub(crate) struct Room {
    chat: Arc<ChatInner>,
    shared: Arc<RoomShared>,
    members: HashMap<ConnId, Member>,
    seq: Sequencer<Arc<ChatMessage>>,
    ring: VecDeque<(u64, Arc<str>)>,
    awaiting: BTreeMap<u64, AwaitingSeen>,
    reports: HashMap<String, u64>,
    next_flush: Option<Instant>,
    empty_since: Option<Instant>,
    watchers: u64,
    next_watchers: Instant,
}

impl Room {
    pub fn new(chat: Arc<ChatInner>, shared: Arc<RoomShared>, top: u64) -> Self {
        Self {
            chat,
            shared,
            members: HashMap::new(),
            seq: Sequencer::new(top),
            ring: VecDeque::new(),
            awaiting: BTreeMap::new(),
            reports: HashMap::new(),
            next_flush: None,
            empty_since: Some(Instant::now()),
            watchers: 0,
            next_watchers: Instant::now(),
        }
    }

    /// Runs until the room has been empty for [`LINGER`] and nothing is queued for it.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomInput>) {
        loop {
            let deadline = self.deadline();
            let input = tokio::select! {
                i = rx.recv() => i,
                _ = sleep_until(deadline) => None,
            };
            let now = Instant::now();
            if let Some(i) = input {
                self.handle(i, now);
                // Take everything already queued before the timers (a burst is one pass).
                while let Ok(i) = rx.try_recv() {
                    self.handle(i, now);
                }
            }
            self.poll(now);
            if self
                .empty_since
                .is_some_and(|t| now.duration_since(t) >= LINGER)
                && self.chat.close_room(&self.shared, &rx)
            {
                return;
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        [
            self.seq.poll_timeout(),
            self.next_flush,
            self.empty_since.map(|t| t + LINGER),
            Some(self.next_watchers),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle(&mut self, input: RoomInput, now: Instant) {
        match input {
            RoomInput::Connect {
                id,
                user,
                out,
                kick,
            } => {
                let top = self.seq.delivered();
                let welcome: Arc<str> = ServerFrame::Welcome {
                    epoch: &self.shared.epoch,
                    offset: top,
                    user_id: user.as_deref(),
                    slow_mode_seconds: self.shared.slow_mode(),
                }
                .to_text()
                .into();
                push(&out, &welcome);
                if self.watchers > 0 {
                    push(&out, &watchers_text(self.watchers));
                }
                self.members.insert(
                    id,
                    Member {
                        user,
                        out,
                        kick,
                        welcome_top: top,
                    },
                );
                self.empty_since = None;
            }
            RoomInput::Identify { id, user } => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.user = Some(user);
                }
            }
            RoomInput::Disconnect(id) => {
                self.members.remove(&id);
                if self.members.is_empty() {
                    self.empty_since = Some(now);
                }
            }
            RoomInput::Committed(list) => {
                for (m, conn, client_msg_id) in list {
                    if let Some(user) = self.members.get(&conn).and_then(|x| x.user.clone()) {
                        self.awaiting.insert(
                            m.offset,
                            AwaitingSeen {
                                conn,
                                user,
                                client_msg_id,
                                message_id: m.message_id.clone(),
                                at: now,
                            },
                        );
                    }
                    let ready = self.seq.push(m.offset, m, now);
                    self.deliver(ready);
                }
            }
            RoomInput::Bus(env) => self.on_bus(&env, now),
            RoomInput::Filled(Ok(msgs)) => {
                let items = msgs.into_iter().map(|m| (m.offset, Arc::new(m))).collect();
                let ready = self.seq.fill(items, now);
                self.deliver(ready);
            }
            RoomInput::Filled(Err(())) => self.seq.fill_failed(now),
            RoomInput::Resume { id, epoch, offset } => self.resume(id, &epoch, offset),
            RoomInput::Replay { id, msgs, upto } => self.replay(id, msgs, upto),
            RoomInput::Seen { reporter, offset } => {
                let e = self.reports.entry(reporter).or_insert(0);
                *e = (*e).max(offset);
                self.next_flush.get_or_insert(now + SEEN_FLUSH);
            }
            RoomInput::Sync(top) => self.seq.observe_top(top, now),
        }
    }

    fn on_bus(&mut self, env: &Envelope, now: Instant) {
        match &env.event {
            BusEvent::Message(m) => {
                let ready = self.seq.push(m.offset, Arc::new(m.clone()), now);
                self.deliver(ready);
            }
            BusEvent::Ban { user_id, until_ms } => {
                let until = until_ms.and_then(DateTime::<Utc>::from_timestamp_millis);
                self.ban(user_id, until);
            }
            BusEvent::Unban { .. } => {}
            BusEvent::Seen { reports } => self.apply_seen(reports),
            BusEvent::Settings { slow_mode_secs } => {
                self.shared
                    .slow_mode
                    .store(*slow_mode_secs, Ordering::Relaxed);
                let text: Arc<str> = ServerFrame::Settings {
                    slow_mode_seconds: *slow_mode_secs,
                }
                .to_text()
                .into();
                self.broadcast(&text);
            }
            BusEvent::Stream { status } => {
                let status = if status == "live" { "live" } else { "offline" };
                let text: Arc<str> = ServerFrame::Stream { status }.to_text().into();
                self.broadcast(&text);
            }
        }
    }

    fn poll(&mut self, now: Instant) {
        if now >= self.next_watchers {
            self.next_watchers = now + WATCHERS_EVERY;
            let count = self.chat.api.live().watchers(&self.shared.channel);
            if count != self.watchers {
                self.watchers = count;
                self.broadcast(&watchers_text(count));
            }
        }
        if let Some(hole) = self.seq.poll_hole(now) {
            let chat = self.chat.clone();
            let channel = self.shared.channel.clone();
            let tx = self.shared.tx.clone();
            tokio::spawn(async move {
                let res = chat.read_range(&channel, hole.from, hole.to).await;
                let _ = tx.send(RoomInput::Filled(res.map_err(|e| {
                    tracing::warn!(channel, error = %e, "reading a chat hole from history");
                })));
            });
        }
        if self.next_flush.is_some_and(|t| now >= t) {
            self.next_flush = None;
            let mut reports: Vec<(String, u64)> = self.reports.drain().collect();
            reports.sort_by_key(|r| std::cmp::Reverse(r.1));
            reports.truncate(SEEN_REPORTERS);
            self.apply_seen(&reports);
            self.chat
                .publish_soon(&self.shared.channel, vec![BusEvent::Seen { reports }]);
        }
        if self.awaiting.len() > 10_000
            || self
                .awaiting
                .first_key_value()
                .is_some_and(|(_, a)| now.duration_since(a.at) > SEEN_KEEP)
        {
            self.awaiting
                .retain(|_, a| now.duration_since(a.at) <= SEEN_KEEP);
            while self.awaiting.len() > 10_000 {
                self.awaiting.pop_first();
            }
        }
    }

    /// Acks `seen` to senders of messages another viewer has on screen.
    fn apply_seen(&mut self, reports: &[(String, u64)]) {
        for (reporter, offset) in reports {
            let hits: Vec<u64> = self
                .awaiting
                .range(..=*offset)
                .filter(|(_, a)| &a.user != reporter)
                .map(|(o, _)| *o)
                .collect();
            for o in hits {
                if let Some(a) = self.awaiting.remove(&o)
                    && let Some(m) = self.members.get(&a.conn)
                {
                    let text: Arc<str> = ServerFrame::Ack {
                        client_msg_id: a.client_msg_id.as_deref(),
                        status: AckStatus::Seen,
                        message_id: &a.message_id,
                        offset: o,
                    }
                    .to_text()
                    .into();
                    push(&m.out, &text);
                }
            }
        }
    }

    fn deliver(&mut self, ready: Vec<(u64, Arc<ChatMessage>)>) {
        for (offset, m) in ready {
            let text: Arc<str> = ServerFrame::Message(&m).to_text().into();
            self.ring.push_back((offset, text.clone()));
            if self.ring.len() as u64 > RECOVERY_LIMIT {
                self.ring.pop_front();
            }
            self.broadcast(&text);
        }
    }

    /// Queues a frame to every member; a member whose queue is full is disconnected.
    fn broadcast(&mut self, text: &Arc<str>) {
        let mut slow = Vec::new();
        for (id, m) in &self.members {
            if !push(&m.out, text) {
                slow.push(*id);
            }
        }
        self.chat
            .metrics
            .deliveries
            .inc_by((self.members.len() - slow.len()) as u64);
        for id in slow {
            self.kick(id, "slow_consumer");
        }
    }

    fn kick(&mut self, id: ConnId, reason: &'static str) {
        if let Some(m) = self.members.remove(&id) {
            let _ = m.kick.send(Some(reason));
            self.chat.metrics.kicked.with_label_values(&[reason]).inc();
            if self.members.is_empty() {
                self.empty_since = Some(Instant::now());
            }
        }
    }

    fn ban(&mut self, user_id: &str, until: Option<DateTime<Utc>>) {
        let now = Utc::now();
        let secs = until.map(|u| u64::try_from((u - now).num_seconds()).unwrap_or(0).max(1));
        let room: Arc<str> = ServerFrame::Ban {
            user_id,
            duration_seconds: secs,
        }
        .to_text()
        .into();
        self.broadcast(&room);
        let notice = notice_text(&ban_notice(secs));
        for m in self.members.values() {
            if m.user.as_deref() == Some(user_id) {
                push(&m.out, &notice);
            }
        }
    }

    fn resume(&mut self, id: ConnId, epoch: &str, offset: u64) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        let upto = m.welcome_top;
        if epoch != self.shared.epoch || upto.saturating_sub(offset) > RECOVERY_LIMIT {
            self.replay(id, Err(()), upto);
            return;
        }
        if offset >= upto {
            self.replay(id, Ok(Vec::new()), upto);
            return;
        }
        let from = offset + 1;
        if self.ring.front().is_some_and(|(o, _)| *o <= from)
            && self.ring.back().is_some_and(|(o, _)| *o >= upto)
        {
            self.chat
                .metrics
                .history_reads
                .with_label_values(&["ring"])
                .inc();
            let texts: Vec<Arc<str>> = self
                .ring
                .iter()
                .filter(|(o, _)| (from..=upto).contains(o))
                .map(|(_, t)| t.clone())
                .collect();
            for t in &texts {
                push(&m.out, t);
            }
            self.replay(id, Ok(Vec::new()), upto);
            return;
        }
        let chat = self.chat.clone();
        let channel = self.shared.channel.clone();
        let tx = self.shared.tx.clone();
        tokio::spawn(async move {
            let msgs = chat.read_range(&channel, from, upto).await;
            let msgs = match msgs {
                Ok(v) if v.len() as u64 == upto - from + 1 => Ok(v),
                Ok(_) => Err(()),
                Err(e) => {
                    tracing::warn!(channel, error = %e, "reading chat history for a resume");
                    Err(())
                }
            };
            let _ = tx.send(RoomInput::Replay { id, msgs, upto });
        });
    }

    fn replay(&mut self, id: ConnId, msgs: Result<Vec<ChatMessage>, ()>, upto: u64) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        let recovered = msgs.is_ok();
        for msg in msgs.unwrap_or_default() {
            push(&m.out, &ServerFrame::Message(&msg).to_text().into());
        }
        let done: Arc<str> = ServerFrame::Resumed {
            recovered,
            epoch: &self.shared.epoch,
            offset: upto,
        }
        .to_text()
        .into();
        push(&m.out, &done);
    }
}

fn watchers_text(count: u64) -> Arc<str> {
    ServerFrame::Watchers { count }.to_text().into()
}

/// The notice a banned or timed-out user gets (`secs` = timeout left; `None` = permanent).
pub(crate) fn ban_notice(secs: Option<u64>) -> Notice {
    match secs {
        None => Notice::new(
            NoticeCode::Banned,
            "you are permanently banned from chatting in this channel",
        ),
        Some(s) => Notice::new(
            NoticeCode::TimedOut,
            format!("you are timed out for {s} more seconds"),
        )
        .retry_after(s),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Stores what connections post, in batches, then acks and publishes it.
pub(crate) async fn writer(
    chat: Arc<ChatInner>,
    channel: String,
    room: mpsc::UnboundedSender<RoomInput>,
    mut rx: mpsc::Receiver<WriteJob>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let batch: Vec<NewMessage> = jobs.iter().map(|j| j.msg.clone()).collect();
        let stored = match chat.store.append(&channel, &batch).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(channel, error = %e, "storing chat messages");
                for j in &jobs {
                    let mut n = Notice::new(
                        NoticeCode::Unavailable,
                        "chat could not store your message; nothing was posted, send it again",
                    );
                    n.client_msg_id = j.msg.client_msg_id.clone();
                    push(&j.out, &notice_text(&n));
                    chat.metrics
                        .rejected
                        .with_label_values(&[NoticeCode::Unavailable.as_str()])
                        .inc();
                }
                continue;
            }
        };
        let mut committed = Vec::new();
        let mut published = Vec::new();
        let mut sent_acks = Vec::new();
        for (job, s) in jobs.into_iter().zip(stored) {
            let cid = job.msg.client_msg_id.clone();
            match s {
                Stored::New(m) => {
                    push(
                        &job.out,
                        &ack_text(cid.as_deref(), AckStatus::Delivered, &m),
                    );
                    chat.metrics.accepted.inc();
                    sent_acks.push((job.out, ack_text(cid.as_deref(), AckStatus::Sent, &m)));
                    published.push(BusEvent::Message(m.clone()));
                    committed.push((Arc::new(m), job.conn, cid));
                }
                Stored::Duplicate(m) => {
                    // A resend of something already stored: it was posted once, say so.
                    push(
                        &job.out,
                        &ack_text(cid.as_deref(), AckStatus::Delivered, &m),
                    );
                    push(&job.out, &ack_text(cid.as_deref(), AckStatus::Sent, &m));
                }
            }
        }
        if committed.is_empty() {
            continue;
        }
        let _ = room.send(RoomInput::Committed(committed));
        // Publishing must not hold up the next write (Redis may be away): its own task.
        let c = chat.clone();
        let ch = channel.clone();
        tokio::spawn(async move {
            if c.publish(&ch, published).await.is_ok() {
                for (out, text) in sent_acks {
                    push(&out, &text);
                }
            }
        });
    }
}
