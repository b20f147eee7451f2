//! `channels`: one row per channel.

use sea_orm::entity::prelude::*;

/// One channel.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    /// Slug `[a-z0-9_]{3,25}`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Owner's user id; `None` for channels made by the operator (CLI, demo).
    pub owner_id: Option<String>,
    /// Lowercase hex SHA-256 of the stream key.
    pub stream_key_hash: String,
    /// Title of the next or current stream.
    pub stream_title: String,
    /// Number of `channel_users` rows with `is_following`, kept in the same transaction.
    pub follower_count: i64,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change of name, description or title.
    pub updated_at: DateTimeUtc,
    /// Last stream key change.
    pub key_rotated_at: DateTimeUtc,
    /// HLS playlists and segments are served only with a signed URL.
    pub require_signed_hls: bool,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
