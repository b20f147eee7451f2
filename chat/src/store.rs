//! Durable chat history in the database (SQLite or PostgreSQL), the source of truth.
//!
//! Offsets are allocated inside the transaction that stores the messages, by bumping the
//! channel's `top_offset` row: the row lock orders writers from every node, a rolled-back
//! transaction gives its offsets back, so offsets are gapless and commit order is offset order
//! (when a node sees offset n, every offset below n is already readable).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value,
};

use crate::emotes::EmoteRange;
use crate::protocol::ChatMessage;

/// A channel's chat state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// History epoch: changes only if history was lost.
    pub epoch: String,
    /// Newest offset (0 = no message yet).
    pub top: u64,
    /// Slow mode (0 = off).
    pub slow_mode_secs: u32,
}

/// A message to store (offset not yet known).
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Server id.
    pub message_id: String,
    /// Author.
    pub user_id: String,
    /// Author's name.
    pub user_name: String,
    /// Cleaned text.
    pub message: String,
    /// Emote ranges.
    pub emotes: Vec<EmoteRange>,
    /// Badges.
    pub badges: Vec<String>,
    /// The client's id, for idempotent resends.
    pub client_msg_id: Option<String>,
    /// Accepted at.
    pub sent_at: DateTime<Utc>,
}

/// The result of storing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New(ChatMessage),
    /// The same user already posted this clientMsgId: the first copy.
    Duplicate(ChatMessage),
}

/// The database side of chat.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

const COLUMNS: &str =
    "msg_offset, message_id, user_id, user_name, body, emotes, badges, client_msg_id, sent_at_ms";

impl Store {
    /// Chat history in `db` (migrated by the API).
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// The channel's state, creating it (with a fresh epoch) on first use.
    pub async fn open_channel(&self, channel: &str) -> Result<ChannelState, DbErr> {
        let epoch = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        self.db
            .execute_raw(self.stmt(
                "INSERT INTO chat_channels (channel_id, top_offset, epoch, slow_mode_secs) \
                 VALUES ($1, 0, $2, 0) ON CONFLICT (channel_id) DO NOTHING",
                vec![channel.into(), epoch.into()],
            ))
            .await?;
        self.state(channel)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("chat state of {channel}")))
    }

    /// The channel's state, if chat was ever opened there.
    pub async fn state(&self, channel: &str) -> Result<Option<ChannelState>, DbErr> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT top_offset, epoch, slow_mode_secs FROM chat_channels WHERE channel_id = $1",
                vec![channel.into()],
            ))
            .await?;
        row.map(|r| {
            Ok(ChannelState {
                top: to_u64(r.try_get::<i64>("", "top_offset")?),
                epoch: r.try_get("", "epoch")?,
                slow_mode_secs: u32::try_from(r.try_get::<i32>("", "slow_mode_secs")?).unwrap_or(0),
            })
        })
        .transpose()
    }

    /// Newest offsets of several channels (the periodic sync of every open room).
    pub async fn tops(&self, channels: &[String]) -> Result<HashMap<String, u64>, DbErr> {
        let mut out = HashMap::new();
        for chunk in channels.chunks(500) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let rows = self
                .db
                .query_all_raw(self.stmt(
                    &format!(
                        "SELECT channel_id, top_offset FROM chat_channels WHERE channel_id IN ({list})"
                    ),
                    chunk.iter().map(|c| c.as_str().into()).collect(),
                ))
                .await?;
            for r in rows {
                out.insert(
                    r.try_get::<String>("", "channel_id")?,
                    to_u64(r.try_get::<i64>("", "top_offset")?),
                );
            }
        }
        Ok(out)
    }

    /// Sets slow mode.
    pub async fn set_slow_mode(&self, channel: &str, secs: u32) -> Result<(), DbErr> {
        self.open_channel(channel).await?;
        self.db
            .execute_raw(self.stmt(
                "UPDATE chat_channels SET slow_mode_secs = $1 WHERE channel_id = $2",
                vec![
                    i32::try_from(secs).unwrap_or(i32::MAX).into(),
                    channel.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Stores a batch in one transaction, allocating consecutive offsets in batch order.
    /// Resends (same user and clientMsgId) resolve to the first copy and take no offset.
    pub async fn append(&self, channel: &str, batch: &[NewMessage]) -> Result<Vec<Stored>, DbErr> {
        let txn = onair_api::db::begin_write(&self.db).await?;
        let mut out: Vec<Option<Stored>> = vec![None; batch.len()];
        // A resend inside the same batch: index of the first copy.
        let mut same_as: Vec<(usize, usize)> = Vec::new();
        let mut fresh: Vec<usize> = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let Some(cid) = &m.client_msg_id else {
                fresh.push(i);
                continue;
            };
            if let Some(&j) = fresh.iter().find(|&&j| {
                batch[j].client_msg_id.as_ref() == Some(cid) && batch[j].user_id == m.user_id
            }) {
                same_as.push((i, j));
                continue;
            }
            let prior = txn
                .query_one_raw(Statement::from_sql_and_values(
                    self.backend(),
                    format!(
                        "SELECT {COLUMNS} FROM chat_messages \
                         WHERE channel_id = $1 AND user_id = $2 AND client_msg_id = $3"
                    ),
                    vec![
                        channel.into(),
                        m.user_id.as_str().into(),
                        cid.as_str().into(),
                    ],
                ))
                .await?;
            match prior {
                Some(row) => out[i] = Some(Stored::Duplicate(from_row(&row)?)),
                None => fresh.push(i),
            }
        }
        if !fresh.is_empty() {
            let top = txn
                .query_one_raw(Statement::from_sql_and_values(
                    self.backend(),
                    "UPDATE chat_channels SET top_offset = top_offset + $1 \
                     WHERE channel_id = $2 RETURNING top_offset",
                    vec![(fresh.len() as i64).into(), channel.into()],
                ))
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("chat state of {channel}")))?;
            let top = to_u64(top.try_get::<i64>("", "top_offset")?);
            let first = top + 1 - fresh.len() as u64;
            let mut sql = format!("INSERT INTO chat_messages (channel_id, {COLUMNS}) VALUES ");
            let mut values: Vec<Value> = Vec::with_capacity(fresh.len() * 10);
            for (k, &i) in fresh.iter().enumerate() {
                let m = &batch[i];
                let msg = ChatMessage {
                    message_id: m.message_id.clone(),
                    offset: first + k as u64,
                    user_id: m.user_id.clone(),
                    user_name: m.user_name.clone(),
                    message: m.message.clone(),
                    emotes: m.emotes.clone(),
                    sent_at: format_time(m.sent_at),
                    badges: m.badges.clone(),
                };
                let base = values.len();
                let marks: Vec<String> = (1..=10).map(|n| format!("${}", base + n)).collect();
                if k > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("({})", marks.join(", ")));
                values.extend([
                    channel.into(),
                    (msg.offset as i64).into(),
                    msg.message_id.as_str().into(),
                    msg.user_id.as_str().into(),
                    msg.user_name.as_str().into(),
                    msg.message.as_str().into(),
                    json(&msg.emotes).into(),
                    json(&msg.badges).into(),
                    m.client_msg_id.clone().into(),
                    m.sent_at.timestamp_millis().into(),
                ]);
                out[i] = Some(Stored::New(msg));
            }
            txn.execute_raw(Statement::from_sql_and_values(self.backend(), sql, values))
                .await?;
        }
        txn.commit().await?;
        for (i, j) in same_as {
            if let Some(Stored::New(m)) = &out[j] {
                out[i] = Some(Stored::Duplicate(m.clone()));
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Messages with offsets in `from..=to`, ascending.
    pub async fn range(
        &self,
        channel: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<ChatMessage>, DbErr> {
        if to < from {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM chat_messages WHERE channel_id = $1 \
                     AND msg_offset >= $2 AND msg_offset <= $3 ORDER BY msg_offset"
                ),
                vec![channel.into(), (from as i64).into(), (to as i64).into()],
            ))
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Up to `limit` messages older than `before` (all when `None`), newest first.
    pub async fn page(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<Vec<ChatMessage>, DbErr> {
        let before = before.map_or(i64::MAX, |b| b as i64);
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM chat_messages WHERE channel_id = $1 \
                     AND msg_offset < $2 ORDER BY msg_offset DESC LIMIT $3"
                ),
                vec![channel.into(), before.into(), (limit as i64).into()],
            ))
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The offset of a message id in a channel.
    pub async fn offset_of(&self, channel: &str, message_id: &str) -> Result<Option<u64>, DbErr> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT msg_offset FROM chat_messages WHERE channel_id = $1 AND message_id = $2",
                vec![channel.into(), message_id.into()],
            ))
            .await?;
        row.map(|r| r.try_get::<i64>("", "msg_offset").map(to_u64))
            .transpose()
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// RFC 3339 with milliseconds, UTC (`sentAt`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn from_row(r: &QueryResult) -> Result<ChatMessage, DbErr> {
    let sent_ms: i64 = r.try_get("", "sent_at_ms")?;
    let sent = Utc
        .timestamp_millis_opt(sent_ms)
        .single()
        .unwrap_or_default();
    Ok(ChatMessage {
        offset: to_u64(r.try_get::<i64>("", "msg_offset")?),
        message_id: r.try_get("", "message_id")?,
        user_id: r.try_get("", "user_id")?,
        user_name: r.try_get("", "user_name")?,
        message: r.try_get("", "body")?,
        emotes: serde_json::from_str(&r.try_get::<String>("", "emotes")?).unwrap_or_default(),
        badges: serde_json::from_str(&r.try_get::<String>("", "badges")?).unwrap_or_default(),
        sent_at: format_time(sent),
    })
}
