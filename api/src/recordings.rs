//! Recordings: a broadcast row points at the HLS recording the transcoder kept of it, so ended
//! streams can be listed and played as VOD.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use crate::Api;
use crate::db::entities::livestreams;
use crate::error::ApiResult;
use crate::live::StreamId;

/// A recording may start this long before or after its broadcast row (the SFU and the API see
/// "live" a moment apart).
const MATCH_WINDOW_SECS: i64 = 15;

/// An ended broadcast with a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    /// The broadcast.
    pub stream_id: String,
    /// Its title.
    pub title: String,
    /// Went live.
    pub started_at: DateTime<Utc>,
    /// Ended (`None` if the row was never closed).
    pub ended_at: Option<DateTime<Utc>>,
    /// Highest concurrent watchers.
    pub peak_viewers: u64,
    /// The transcoder's id of the recording within the channel.
    pub recording: String,
}

impl Api {
    /// Links the broadcast `stream_id` to `recording`, which started at `recording_started`.
    /// Refused (false) when the two did not start together: the recording is another stream's.
    pub async fn attach_recording(
        &self,
        stream_id: StreamId,
        recording: &str,
        recording_started: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let Some(row) = livestreams::Entity::find_by_id(stream_id.to_string())
            .one(self.db())
            .await?
        else {
            return Ok(false);
        };
        if (row.started_at - recording_started).num_seconds().abs() > MATCH_WINDOW_SECS {
            return Ok(false);
        }
        livestreams::Entity::update_many()
            .col_expr(livestreams::Column::Recording, Expr::value(recording))
            .filter(livestreams::Column::StreamId.eq(stream_id.to_string()))
            .exec(self.db())
            .await?;
        Ok(true)
    }

    /// A channel's recordings, newest first.
    pub async fn recordings(&self, channel_id: &str, limit: u64) -> ApiResult<Vec<Recording>> {
        let rows = livestreams::Entity::find()
            .filter(livestreams::Column::ChannelId.eq(channel_id))
            .filter(livestreams::Column::Recording.is_not_null())
            .order_by_desc(livestreams::Column::StartedAt)
            .limit(limit)
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Recording {
                    recording: r.recording?,
                    stream_id: r.stream_id,
                    title: r.title,
                    started_at: r.started_at,
                    ended_at: r.ended_at,
                    peak_viewers: u64::try_from(r.peak_viewers).unwrap_or(0),
                })
            })
            .collect())
    }

    /// Unlinks a recording that retention deleted.
    pub async fn forget_recording(&self, channel_id: &str, recording: &str) -> ApiResult<()> {
        livestreams::Entity::update_many()
            .col_expr(
                livestreams::Column::Recording,
                Expr::value(Option::<String>::None),
            )
            .filter(livestreams::Column::ChannelId.eq(channel_id))
            .filter(livestreams::Column::Recording.eq(recording))
            .exec(self.db())
            .await?;
        Ok(())
    }
}
