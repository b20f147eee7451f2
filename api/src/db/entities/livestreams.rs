//! `livestreams`: one row per broadcast (WHIP publish that went live).

use sea_orm::entity::prelude::*;

/// One broadcast.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "livestreams")]
pub struct Model {
    /// UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub stream_id: String,
    /// Channel.
    pub channel_id: String,
    /// Title when it started (updated by PATCH while live).
    pub title: String,
    /// Went live.
    pub started_at: DateTimeUtc,
    /// Publisher left; `None` while live.
    pub ended_at: Option<DateTimeUtc>,
    /// Highest concurrent watcher count seen.
    pub peak_viewers: i64,
    /// The HLS recording (`<channel>/<recording id>` under the HLS root) once the stream ended.
    pub recording: Option<String>,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
