//! Live state kept in memory: which channels are live, their stream, and watcher counts.
//!
//! Hot-path reads (`is_live`, `watchers`) and writes (`set_viewer_count`) touch only memory.
//! Going live and ending a stream also write the `livestreams` table.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use crate::Api;
use crate::db::entities::{channels, livestreams};
use crate::error::{ApiError, ApiResult};
use crate::events::ChannelEvent;

/// Source name used by [`Live::set_viewer_count`] (the SFU's WebRTC viewers).
pub const SOURCE_WEBRTC: &str = "webrtc";

/// Identifies one broadcast (one row of `livestreams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId(pub Uuid);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A broadcast in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveStream {
    /// The stream.
    pub stream_id: StreamId,
    /// Its channel.
    pub channel_id: String,
    /// Title (the channel's stream title, kept in sync while live).
    pub title: String,
    /// When it went live.
    pub started_at: DateTime<Utc>,
}

#[derive(Debug)]
struct LiveEntry {
    stream: LiveStream,
    peak: u64,
}

#[derive(Default)]
pub(crate) struct LiveState {
    streams: RwLock<HashMap<String, LiveEntry>>,
    /// channel -> source -> count
    viewers: RwLock<HashMap<String, HashMap<String, u64>>>,
}

impl LiveState {
    fn total(&self, channel_id: &str) -> u64 {
        self.viewers
            .read()
            .get(channel_id)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

/// Handle on the live state, from [`Api::live`]. Cheap; make one whenever needed.
#[derive(Clone)]
pub struct Live {
    api: Api,
}

impl Api {
    /// The in-memory live state.
    pub fn live(&self) -> Live {
        Live { api: self.clone() }
    }
}

impl Live {
    fn state(&self) -> &LiveState {
        &self.api.inner.live
    }

    /// The channel went live: inserts a `livestreams` row and marks it live in memory.
    /// A stream already live on the channel is ended first (newest publisher wins).
    pub async fn stream_started(&self, channel_id: &str) -> ApiResult<StreamId> {
        let channel = channels::Entity::find_by_id(channel_id.to_string())
            .one(self.api.db())
            .await?
            .ok_or_else(|| ApiError::no_channel(channel_id))?;
        let stream = LiveStream {
            stream_id: StreamId(Uuid::new_v4()),
            channel_id: channel_id.to_string(),
            title: channel.stream_title.clone(),
            started_at: Utc::now(),
        };
        livestreams::Entity::insert(livestreams::ActiveModel {
            stream_id: Set(stream.stream_id.to_string()),
            channel_id: Set(stream.channel_id.clone()),
            title: Set(stream.title.clone()),
            started_at: Set(stream.started_at),
            ended_at: Set(None),
            peak_viewers: Set(0),
            recording: Set(None),
        })
        .exec_without_returning(self.api.db())
        .await?;
        let stream_id = stream.stream_id;
        let previous = self.state().streams.write().insert(
            channel_id.to_string(),
            LiveEntry {
                peak: self.state().total(channel_id),
                stream,
            },
        );
        self.api.remember_channel(channel_id);
        if let Some(prev) = previous {
            self.finish_row(prev.stream.stream_id, Some(prev.peak))
                .await?;
            self.api.emit(ChannelEvent::StreamEnded {
                channel_id: channel_id.to_string(),
                stream_id: prev.stream.stream_id,
            });
        }
        self.api.emit(ChannelEvent::StreamStarted {
            channel_id: channel_id.to_string(),
            stream_id,
        });
        Ok(stream_id)
    }

    /// The publisher of `stream_id` left: sets `ended_at`, and the channel goes offline unless
    /// a newer stream replaced this one.
    pub async fn stream_ended(&self, stream_id: StreamId) -> ApiResult<()> {
        let ended = {
            let mut streams = self.state().streams.write();
            let channel = streams
                .iter()
                .find(|(_, e)| e.stream.stream_id == stream_id)
                .map(|(c, _)| c.clone());
            channel.and_then(|c| streams.remove(&c))
        };
        match ended {
            Some(entry) => {
                self.finish_row(stream_id, Some(entry.peak)).await?;
                self.api.emit(ChannelEvent::StreamEnded {
                    channel_id: entry.stream.channel_id,
                    stream_id,
                });
            }
            None => self.finish_row(stream_id, None).await?,
        }
        Ok(())
    }

    async fn finish_row(&self, stream_id: StreamId, peak: Option<u64>) -> ApiResult<()> {
        let mut update = livestreams::Entity::update_many()
            .col_expr(livestreams::Column::EndedAt, Expr::value(Utc::now()))
            .filter(livestreams::Column::StreamId.eq(stream_id.to_string()))
            .filter(livestreams::Column::EndedAt.is_null());
        if let Some(peak) = peak {
            let peak = i64::try_from(peak).unwrap_or(i64::MAX);
            update = update.col_expr(livestreams::Column::PeakViewers, Expr::value(peak));
        }
        update.exec(self.api.db()).await?;
        Ok(())
    }

    /// Marks every unfinished `livestreams` row as ended. Call it from `onair serve` at start-up
    /// on a single node (streams left open by a crash are over); never from the CLI, which runs
    /// beside a live server, nor on one node of many.
    pub async fn close_orphan_streams(&self) -> ApiResult<u64> {
        let res = livestreams::Entity::update_many()
            .col_expr(livestreams::Column::EndedAt, Expr::value(Utc::now()))
            .filter(livestreams::Column::EndedAt.is_null())
            .exec(self.api.db())
            .await?;
        Ok(res.rows_affected)
    }

    /// Sets the SFU's (WebRTC) viewer count of a channel. Call on every join and leave.
    pub fn set_viewer_count(&self, channel_id: &str, n: u64) {
        self.set_viewer_count_from(SOURCE_WEBRTC, channel_id, n);
    }

    /// Sets the viewer count one source (`webrtc`, `hls`, `chat`, or a node's name) reports
    /// for a channel; [`Live::watchers`] is the sum over sources.
    pub fn set_viewer_count_from(&self, source: &str, channel_id: &str, n: u64) {
        let total = {
            let mut viewers = self.state().viewers.write();
            if n == 0 {
                if let Some(m) = viewers.get_mut(channel_id) {
                    m.remove(source);
                    if m.is_empty() {
                        viewers.remove(channel_id);
                    }
                }
            } else {
                viewers
                    .entry(channel_id.to_string())
                    .or_default()
                    .insert(source.to_string(), n);
            }
            viewers
                .get(channel_id)
                .map(|m| m.values().sum::<u64>())
                .unwrap_or(0)
        };
        if total > 0
            && let Some(e) = self.state().streams.write().get_mut(channel_id)
        {
            e.peak = e.peak.max(total);
        }
    }

    /// Current watchers of a channel, summed over sources (0 when unknown).
    pub fn watchers(&self, channel_id: &str) -> u64 {
        self.state().total(channel_id)
    }

    /// Whether the channel has a live stream on this node.
    pub fn is_live(&self, channel_id: &str) -> bool {
        self.state().streams.read().contains_key(channel_id)
    }

    /// The live stream of a channel.
    pub fn current(&self, channel_id: &str) -> Option<LiveStream> {
        self.state()
            .streams
            .read()
            .get(channel_id)
            .map(|e| e.stream.clone())
    }

    /// Every live stream with its watcher count, most watched first.
    pub fn live_channels(&self) -> Vec<(LiveStream, u64)> {
        let streams: Vec<LiveStream> = self
            .state()
            .streams
            .read()
            .values()
            .map(|e| e.stream.clone())
            .collect();
        let mut out: Vec<(LiveStream, u64)> = streams
            .into_iter()
            .map(|s| {
                let n = self.watchers(&s.channel_id);
                (s, n)
            })
            .collect();
        out.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.channel_id.cmp(&b.0.channel_id))
        });
        out
    }

    /// Updates the title of a live stream (memory and row).
    pub(crate) async fn set_title(&self, channel_id: &str, title: &str) -> ApiResult<()> {
        let stream_id = {
            let mut streams = self.state().streams.write();
            match streams.get_mut(channel_id) {
                Some(e) => {
                    e.stream.title = title.to_string();
                    e.stream.stream_id
                }
                None => return Ok(()),
            }
        };
        livestreams::Entity::update_many()
            .col_expr(livestreams::Column::Title, Expr::value(title))
            .filter(livestreams::Column::StreamId.eq(stream_id.to_string()))
            .exec(self.api.db())
            .await?;
        Ok(())
    }
}
