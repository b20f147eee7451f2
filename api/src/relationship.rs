//! A user's relationship to a channel (follow, subscription, ban) and exact follower counts.
//!
//! `channels.follower_count` changes in the same transaction as the `channel_users` row, and
//! only when the row's `is_following` actually flips, so it stays equal to the number of rows
//! with `is_following` under any concurrency.

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _,
};

use crate::Api;
use crate::bans::{BanInfo, prune_row};
use crate::db::entities::{channel_users, channels};
use crate::error::{ApiError, ApiResult};
use crate::subscriptions::SubscriptionInfo;

/// What `GET /api/channels/{id}/relationship` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relationship {
    /// Follows the channel.
    pub is_following: bool,
    /// Active (possibly cancelled but not yet lapsed) subscription.
    pub subscription: Option<SubscriptionInfo>,
    /// Active ban or timeout.
    pub ban: Option<BanInfo>,
}

/// Result of a follow or unfollow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowState {
    /// Following after the operation.
    pub is_following: bool,
    /// Followers after the operation.
    pub follower_count: u64,
}

async fn follower_count<C: ConnectionTrait>(conn: &C, channel_id: &str) -> ApiResult<u64> {
    let row = channels::Entity::find_by_id(channel_id.to_string())
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::no_channel(channel_id))?;
    Ok(u64::try_from(row.follower_count).unwrap_or(0))
}

async fn bump_followers<C: ConnectionTrait>(
    conn: &C,
    channel_id: &str,
    delta: i64,
) -> ApiResult<()> {
    channels::Entity::update_many()
        .col_expr(
            channels::Column::FollowerCount,
            Expr::col(channels::Column::FollowerCount).add(delta),
        )
        .filter(channels::Column::ChannelId.eq(channel_id))
        .exec(conn)
        .await?;
    Ok(())
}

impl Api {
    /// The caller's relationship to a channel (`NotFound` for an unknown channel).
    pub async fn relationship(&self, channel_id: &str, user_id: &str) -> ApiResult<Relationship> {
        if !self.channel_exists(channel_id).await? {
            return Err(ApiError::no_channel(channel_id));
        }
        let row = channel_users::Entity::find_by_id((channel_id.to_string(), user_id.to_string()))
            .one(self.db())
            .await?;
        let now = Utc::now();
        Ok(match row {
            None => Relationship::default(),
            Some(m) => Relationship {
                is_following: m.is_following,
                subscription: SubscriptionInfo::from_row(&m, now),
                ban: BanInfo::from_row(&m).filter(|b| b.active_at(now)),
            },
        })
    }

    /// Follows a channel (idempotent).
    pub async fn follow(&self, channel_id: &str, user_id: &str) -> ApiResult<FollowState> {
        if !self.channel_exists(channel_id).await? {
            return Err(ApiError::no_channel(channel_id));
        }
        let now = Utc::now();
        let txn = crate::db::begin_write(self.db()).await?;
        let row = channel_users::ActiveModel {
            channel_id: Set(channel_id.to_string()),
            user_id: Set(user_id.to_string()),
            is_following: Set(true),
            followed_at: Set(Some(now)),
            sub_tier: Set(None),
            sub_started_at: Set(None),
            sub_period_end: Set(None),
            sub_cancelled: Set(false),
            is_banned: Set(false),
            banned_until: Set(None),
            ban_reason: Set(None),
            banned_by: Set(None),
            banned_at: Set(None),
            updated_at: Set(now),
        };
        let changed = channel_users::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    channel_users::Column::ChannelId,
                    channel_users::Column::UserId,
                ])
                .update_columns([
                    channel_users::Column::IsFollowing,
                    channel_users::Column::FollowedAt,
                    channel_users::Column::UpdatedAt,
                ])
                .action_and_where(
                    Expr::col((channel_users::Entity, channel_users::Column::IsFollowing))
                        .eq(false),
                )
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if changed > 0 {
            bump_followers(&txn, channel_id, 1).await?;
        }
        let follower_count = follower_count(&txn, channel_id).await?;
        txn.commit().await?;
        Ok(FollowState {
            is_following: true,
            follower_count,
        })
    }

    /// Unfollows a channel (idempotent).
    pub async fn unfollow(&self, channel_id: &str, user_id: &str) -> ApiResult<FollowState> {
        if !self.channel_exists(channel_id).await? {
            return Err(ApiError::no_channel(channel_id));
        }
        let txn = crate::db::begin_write(self.db()).await?;
        let res = channel_users::Entity::update_many()
            .col_expr(channel_users::Column::IsFollowing, Expr::value(false))
            .col_expr(
                channel_users::Column::FollowedAt,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .col_expr(channel_users::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(channel_users::Column::ChannelId.eq(channel_id))
            .filter(channel_users::Column::UserId.eq(user_id))
            .filter(channel_users::Column::IsFollowing.eq(true))
            .exec(&txn)
            .await?;
        if res.rows_affected > 0 {
            bump_followers(&txn, channel_id, -1).await?;
            prune_row(&txn, channel_id, user_id).await?;
        }
        let follower_count = follower_count(&txn, channel_id).await?;
        txn.commit().await?;
        Ok(FollowState {
            is_following: false,
            follower_count,
        })
    }

    /// Counts the rows with `is_following` (checks [`crate::Channel::follower_count`]).
    pub async fn count_follower_rows(&self, channel_id: &str) -> ApiResult<u64> {
        use sea_orm::PaginatorTrait as _;
        Ok(channel_users::Entity::find()
            .filter(channel_users::Column::ChannelId.eq(channel_id))
            .filter(channel_users::Column::IsFollowing.eq(true))
            .count(self.db())
            .await?)
    }
}
