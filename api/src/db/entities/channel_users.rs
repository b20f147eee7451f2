//! `channel_users`: a user's relation to a channel (follow, subscription, ban).
//! A row exists only while one of them is set.

use sea_orm::entity::prelude::*;

/// One (channel, user) pair.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channel_users")]
pub struct Model {
    /// Channel.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_id: String,
    /// User (JWT `sub`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// Follows the channel.
    pub is_following: bool,
    /// When the current follow started.
    pub followed_at: Option<DateTimeUtc>,
    /// Subscription tier 1..=3, `None` when never subscribed or lapsed.
    pub sub_tier: Option<i32>,
    /// Start of the subscription.
    pub sub_started_at: Option<DateTimeUtc>,
    /// End of the paid period; access lasts until then.
    pub sub_period_end: Option<DateTimeUtc>,
    /// Unsubscribed: the subscription lapses at `sub_period_end`.
    pub sub_cancelled: bool,
    /// Banned (permanently when `banned_until` is `None`).
    pub is_banned: bool,
    /// End of a timeout.
    pub banned_until: Option<DateTimeUtc>,
    /// Why, as the moderator said.
    pub ban_reason: Option<String>,
    /// Who banned.
    pub banned_by: Option<String>,
    /// When.
    pub banned_at: Option<DateTimeUtc>,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
