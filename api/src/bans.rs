//! Bans and timeouts. Chat checks them with [`Api::is_banned`] (memory, refreshed from the
//! database every few seconds so that bans made on other nodes arrive) and hears about them
//! from [`crate::Api::subscribe_events`] (`ChannelEvent::Banned` / `Unbanned`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _,
};

use crate::Api;
use crate::db::entities::channel_users;
use crate::error::{ApiError, ApiResult};
use crate::events::ChannelEvent;
use crate::validate;

/// How long a channel's cached ban list is trusted.
pub const BAN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Longest timeout (14 days, as Twitch).
pub const MAX_TIMEOUT_SECS: u64 = 14 * 24 * 3600;
/// Longest reason.
pub const REASON_MAX: usize = 500;

/// An active ban or timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanInfo {
    /// Banned user.
    pub user_id: String,
    /// End of a timeout; `None` = permanent.
    pub until: Option<DateTime<Utc>>,
    /// Moderator's reason.
    pub reason: Option<String>,
    /// Who banned.
    pub banned_by: Option<String>,
    /// When.
    pub banned_at: Option<DateTime<Utc>>,
}

impl BanInfo {
    /// Still in force at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// Seconds left of a timeout (`None` = permanent).
    pub fn remaining_secs(&self, now: DateTime<Utc>) -> Option<u64> {
        self.until
            .map(|u| u64::try_from((u - now).num_seconds()).unwrap_or(0))
    }

    pub(crate) fn from_row(m: &channel_users::Model) -> Option<Self> {
        m.is_banned.then(|| Self {
            user_id: m.user_id.clone(),
            until: m.banned_until,
            reason: m.ban_reason.clone(),
            banned_by: m.banned_by.clone(),
            banned_at: m.banned_at,
        })
    }
}

/// A channel's active bans by user, and when they were loaded.
type ChannelBans = (Instant, HashMap<String, BanInfo>);

#[derive(Default)]
pub(crate) struct BanCache {
    channels: RwLock<HashMap<String, ChannelBans>>,
}

/// Deletes the (channel, user) row when nothing is set any more.
pub(crate) async fn prune_row<C: ConnectionTrait>(
    conn: &C,
    channel_id: &str,
    user_id: &str,
) -> ApiResult<()> {
    channel_users::Entity::delete_many()
        .filter(channel_users::Column::ChannelId.eq(channel_id))
        .filter(channel_users::Column::UserId.eq(user_id))
        .filter(channel_users::Column::IsFollowing.eq(false))
        .filter(channel_users::Column::IsBanned.eq(false))
        .filter(channel_users::Column::SubTier.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

impl Api {
    /// The active ban of `user_id` on `channel_id`, if any. Served from memory; a channel's
    /// list is reloaded from the database when older than [`BAN_CACHE_TTL`].
    pub async fn is_banned(&self, channel_id: &str, user_id: &str) -> ApiResult<Option<BanInfo>> {
        let now = Utc::now();
        {
            let cache = self.inner.bans.channels.read();
            if let Some((loaded, bans)) = cache.get(channel_id)
                && loaded.elapsed() < BAN_CACHE_TTL
            {
                return Ok(bans.get(user_id).filter(|b| b.active_at(now)).cloned());
            }
        }
        let bans = self.load_bans(channel_id).await?;
        let hit = bans.get(user_id).filter(|b| b.active_at(now)).cloned();
        self.inner
            .bans
            .channels
            .write()
            .insert(channel_id.to_string(), (Instant::now(), bans));
        Ok(hit)
    }

    /// Drops the cached ban list of a channel so the next check reads the database: another
    /// node announced a ban or unban.
    pub fn forget_bans(&self, channel_id: &str) {
        self.inner.bans.channels.write().remove(channel_id);
    }

    async fn load_bans(&self, channel_id: &str) -> ApiResult<HashMap<String, BanInfo>> {
        let rows = channel_users::Entity::find()
            .filter(channel_users::Column::ChannelId.eq(channel_id))
            .filter(channel_users::Column::IsBanned.eq(true))
            .all(self.db())
            .await?;
        Ok(rows
            .iter()
            .filter_map(BanInfo::from_row)
            .map(|b| (b.user_id.clone(), b))
            .collect())
    }

    /// Every active ban of a channel.
    pub async fn list_bans(&self, channel_id: &str) -> ApiResult<Vec<BanInfo>> {
        let now = Utc::now();
        let mut bans: Vec<BanInfo> = self
            .load_bans(channel_id)
            .await?
            .into_values()
            .filter(|b| b.active_at(now))
            .collect();
        bans.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(bans)
    }

    /// Bans (or, with a duration, times out) a user. No permission check: see the HTTP layer.
    pub async fn ban(
        &self,
        channel_id: &str,
        user_id: &str,
        banned_by: &str,
        duration: Option<Duration>,
        reason: Option<String>,
    ) -> ApiResult<BanInfo> {
        if !validate::is_user_id(user_id) {
            return Err(ApiError::invalid(
                "invalid-user-id",
                "userID must be 1 to 64 characters without spaces",
            ));
        }
        if let Some(d) = duration
            && (d.as_secs() == 0 || d.as_secs() > MAX_TIMEOUT_SECS)
        {
            return Err(ApiError::invalid(
                "invalid-duration",
                format!("durationSeconds must be 1 to {MAX_TIMEOUT_SECS}"),
            ));
        }
        if let Some(r) = &reason
            && !validate::is_text(r, REASON_MAX)
        {
            return Err(ApiError::invalid(
                "invalid-reason",
                format!("reason must be at most {REASON_MAX} characters"),
            ));
        }
        let channel = self.require_channel(channel_id).await?;
        if channel.owner_id.as_deref() == Some(user_id) {
            return Err(ApiError::Denied {
                slug: "cannot-ban-owner",
                detail: "the channel owner cannot be banned".into(),
            });
        }
        let now = Utc::now();
        let until = match duration {
            Some(d) => Some(
                now + chrono::Duration::from_std(d)
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?,
            ),
            None => None,
        };
        let row = channel_users::ActiveModel {
            channel_id: Set(channel_id.to_string()),
            user_id: Set(user_id.to_string()),
            is_following: Set(false),
            followed_at: Set(None),
            sub_tier: Set(None),
            sub_started_at: Set(None),
            sub_period_end: Set(None),
            sub_cancelled: Set(false),
            is_banned: Set(true),
            banned_until: Set(until),
            ban_reason: Set(reason.clone()),
            banned_by: Set(Some(banned_by.to_string())),
            banned_at: Set(Some(now)),
            updated_at: Set(now),
        };
        channel_users::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    channel_users::Column::ChannelId,
                    channel_users::Column::UserId,
                ])
                .update_columns([
                    channel_users::Column::IsBanned,
                    channel_users::Column::BannedUntil,
                    channel_users::Column::BanReason,
                    channel_users::Column::BannedBy,
                    channel_users::Column::BannedAt,
                    channel_users::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(self.db())
            .await?;
        let info = BanInfo {
            user_id: user_id.to_string(),
            until,
            reason: reason.clone(),
            banned_by: Some(banned_by.to_string()),
            banned_at: Some(now),
        };
        if let Some((_, bans)) = self.inner.bans.channels.write().get_mut(channel_id) {
            bans.insert(user_id.to_string(), info.clone());
        }
        self.emit(ChannelEvent::Banned {
            channel_id: channel_id.to_string(),
            user_id: user_id.to_string(),
            until,
            reason,
        });
        Ok(info)
    }

    /// Lifts a ban or timeout; `Ok(false)` when there was none (idempotent).
    pub async fn unban(&self, channel_id: &str, user_id: &str) -> ApiResult<bool> {
        self.require_channel(channel_id).await?;
        if !validate::is_user_id(user_id) {
            // Such a user cannot have been banned.
            return Ok(false);
        }
        let res = channel_users::Entity::update_many()
            .col_expr(channel_users::Column::IsBanned, Expr::value(false))
            .col_expr(
                channel_users::Column::BannedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                channel_users::Column::BanReason,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                channel_users::Column::BannedBy,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                channel_users::Column::BannedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(channel_users::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(channel_users::Column::ChannelId.eq(channel_id))
            .filter(channel_users::Column::UserId.eq(user_id))
            .filter(channel_users::Column::IsBanned.eq(true))
            .exec(self.db())
            .await?;
        prune_row(self.db(), channel_id, user_id).await?;
        if let Some((_, bans)) = self.inner.bans.channels.write().get_mut(channel_id) {
            bans.remove(user_id);
        }
        let was = res.rows_affected > 0;
        if was {
            self.emit(ChannelEvent::Unbanned {
                channel_id: channel_id.to_string(),
                user_id: user_id.to_string(),
            });
        }
        Ok(was)
    }
}
