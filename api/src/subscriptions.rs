//! Paid subscriptions: monthly periods, tiers 1 to 3, payment through a [`PaymentProvider`].
//!
//! Subscribing creates a `payments` row and asks the provider; the subscription is active once
//! the payment succeeds (at once with `test`, on the signed webhook with `webhook`).
//! Unsubscribing keeps access until the end of the paid period; then the subscription lapses.
//!
//! [`PaymentProvider`]: crate::payments::PaymentProvider

use chrono::{DateTime, Months, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use crate::Api;
use crate::bans::prune_row;
use crate::db::entities::{channel_users, payment_events, payments};
use crate::error::{ApiError, ApiResult};
use crate::payments::{PaymentRequest, PaymentStart, WebhookError};

/// An active subscription (possibly cancelled, then it lapses at `current_period_end`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// 1, 2 or 3.
    pub tier: u8,
    /// First activation.
    pub started_at: DateTime<Utc>,
    /// End of the paid period.
    pub current_period_end: DateTime<Utc>,
    /// `false` once unsubscribed.
    pub renews: bool,
}

impl SubscriptionInfo {
    pub(crate) fn from_row(m: &channel_users::Model, now: DateTime<Utc>) -> Option<Self> {
        let tier = u8::try_from(m.sub_tier?).ok()?;
        let end = m.sub_period_end?;
        (end > now).then(|| Self {
            tier,
            started_at: m.sub_started_at.unwrap_or(end),
            current_period_end: end,
            renews: !m.sub_cancelled,
        })
    }
}

/// What a subscribe request led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Subscribed (payment confirmed, or already subscribed at that tier).
    Active(SubscriptionInfo),
    /// Waiting for the buyer to pay.
    Pending {
        /// Our payment id (the webhook names it).
        payment_id: String,
        /// Where the buyer pays.
        payment_input_url: String,
    },
}

/// What a verified webhook did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Applied.
    Processed,
    /// Already seen (replay), or about a payment that is settled or unknown: no effect.
    Ignored,
}

/// Error of [`Api::handle_payment_webhook`].
#[derive(Debug, thiserror::Error)]
pub enum WebhookFailure {
    /// The provider refused the notification.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// Our side failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// A tier as the API accepts it: 1, 2 or 3 (`invalid-tier` otherwise).
pub(crate) fn check_tier(tier: i64) -> ApiResult<u8> {
    match tier {
        1..=3 => Ok(tier as u8),
        _ => Err(ApiError::invalid("invalid-tier", "tier must be 1, 2 or 3")),
    }
}

impl Api {
    /// The active subscription of a user to a channel.
    pub async fn subscription(
        &self,
        channel_id: &str,
        user_id: &str,
    ) -> ApiResult<Option<SubscriptionInfo>> {
        let row = channel_users::Entity::find_by_id((channel_id.to_string(), user_id.to_string()))
            .one(self.db())
            .await?;
        Ok(row.and_then(|m| SubscriptionInfo::from_row(&m, Utc::now())))
    }

    /// Subscribes at `tier` (1..=3): `Invalid("invalid-tier")` otherwise.
    pub async fn subscribe(
        &self,
        channel_id: &str,
        user_id: &str,
        tier: i64,
    ) -> ApiResult<SubscribeOutcome> {
        let tier = check_tier(tier)?;
        let channel = self.require_channel(channel_id).await?;
        if channel.owner_id.as_deref() == Some(user_id) {
            return Err(ApiError::Denied {
                slug: "cannot-subscribe-own-channel",
                detail: "owners cannot subscribe to their own channel".into(),
            });
        }
        if let Some(current) = self.subscription(channel_id, user_id).await?
            && current.tier == tier
        {
            if !current.renews {
                // Resubscribe within the paid period: renew again, no new payment.
                channel_users::Entity::update_many()
                    .col_expr(channel_users::Column::SubCancelled, Expr::value(false))
                    .col_expr(channel_users::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(channel_users::Column::ChannelId.eq(channel_id))
                    .filter(channel_users::Column::UserId.eq(user_id))
                    .exec(self.db())
                    .await?;
            }
            return Ok(SubscribeOutcome::Active(SubscriptionInfo {
                renews: true,
                ..current
            }));
        }
        let provider = self.inner.payments.clone();
        let payment_id = Uuid::new_v4().to_string();
        payments::Entity::insert(payments::ActiveModel {
            payment_id: Set(payment_id.clone()),
            channel_id: Set(channel_id.to_string()),
            user_id: Set(user_id.to_string()),
            tier: Set(i32::from(tier)),
            provider: Set(provider.name().to_string()),
            status: Set("pending".to_string()),
            created_at: Set(Utc::now()),
            completed_at: Set(None),
        })
        .exec_without_returning(self.db())
        .await?;
        let req = PaymentRequest {
            payment_id: payment_id.clone(),
            channel_id: channel_id.to_string(),
            user_id: user_id.to_string(),
            tier,
        };
        match provider.start(&req).await.map_err(ApiError::Internal)? {
            PaymentStart::Confirmed => {
                self.settle_payment(&payment_id, true).await?;
                let info = self
                    .subscription(channel_id, user_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!("subscription missing after payment"))
                    })?;
                Ok(SubscribeOutcome::Active(info))
            }
            PaymentStart::Pending { payment_input_url } => Ok(SubscribeOutcome::Pending {
                payment_id,
                payment_input_url,
            }),
        }
    }

    /// Stops renewal; access lasts until the end of the period. Returns the (still active)
    /// subscription, or `None` when there was none.
    pub async fn unsubscribe(
        &self,
        channel_id: &str,
        user_id: &str,
    ) -> ApiResult<Option<SubscriptionInfo>> {
        self.require_channel(channel_id).await?;
        channel_users::Entity::update_many()
            .col_expr(channel_users::Column::SubCancelled, Expr::value(true))
            .col_expr(channel_users::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(channel_users::Column::ChannelId.eq(channel_id))
            .filter(channel_users::Column::UserId.eq(user_id))
            .filter(channel_users::Column::SubTier.is_not_null())
            .exec(self.db())
            .await?;
        self.subscription(channel_id, user_id).await
    }

    /// Marks a pending payment paid or failed; a success (re)starts a monthly period.
    /// Returns `false` when the payment is unknown or already settled.
    async fn settle_payment(&self, payment_id: &str, succeeded: bool) -> ApiResult<bool> {
        let now = Utc::now();
        let txn = crate::db::begin_write(self.db()).await?;
        let res = payments::Entity::update_many()
            .col_expr(
                payments::Column::Status,
                Expr::value(if succeeded { "succeeded" } else { "failed" }),
            )
            .col_expr(payments::Column::CompletedAt, Expr::value(Some(now)))
            .filter(payments::Column::PaymentId.eq(payment_id))
            .filter(payments::Column::Status.eq("pending"))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        if succeeded {
            let payment = payments::Entity::find_by_id(payment_id.to_string())
                .one(&txn)
                .await?
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("payment vanished")))?;
            let existing = channel_users::Entity::find_by_id((
                payment.channel_id.clone(),
                payment.user_id.clone(),
            ))
            .one(&txn)
            .await?;
            let started = existing
                .as_ref()
                .and_then(|m| SubscriptionInfo::from_row(m, now))
                .map(|s| s.started_at)
                .unwrap_or(now);
            let period_end = now
                .checked_add_months(Months::new(1))
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("date overflow")))?;
            let row = channel_users::ActiveModel {
                channel_id: Set(payment.channel_id.clone()),
                user_id: Set(payment.user_id.clone()),
                is_following: Set(false),
                followed_at: Set(None),
                sub_tier: Set(Some(payment.tier)),
                sub_started_at: Set(Some(started)),
                sub_period_end: Set(Some(period_end)),
                sub_cancelled: Set(false),
                is_banned: Set(false),
                banned_until: Set(None),
                ban_reason: Set(None),
                banned_by: Set(None),
                banned_at: Set(None),
                updated_at: Set(now),
            };
            channel_users::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([
                        channel_users::Column::ChannelId,
                        channel_users::Column::UserId,
                    ])
                    .update_columns([
                        channel_users::Column::SubTier,
                        channel_users::Column::SubStartedAt,
                        channel_users::Column::SubPeriodEnd,
                        channel_users::Column::SubCancelled,
                        channel_users::Column::UpdatedAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Verifies and applies a payment provider's webhook. A replayed event id is ignored.
    pub async fn handle_payment_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome, WebhookFailure> {
        let event = self
            .inner
            .payments
            .parse_webhook(signature, body, Utc::now().timestamp())?;
        let inserted = payment_events::Entity::insert(payment_events::ActiveModel {
            event_id: Set(event.event_id.clone()),
            payment_id: Set(event.payment_id.clone()),
            received_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(payment_events::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.db())
        .await
        .map_err(ApiError::from)?;
        if inserted == 0 {
            return Ok(WebhookOutcome::Ignored);
        }
        if self
            .settle_payment(&event.payment_id, event.succeeded)
            .await?
        {
            Ok(WebhookOutcome::Processed)
        } else {
            Ok(WebhookOutcome::Ignored)
        }
    }

    /// Clears lapsed subscriptions and expired timeouts, and deletes rows left empty.
    pub async fn sweep_expired(&self) -> ApiResult<()> {
        let now = Utc::now();
        let stale = channel_users::Entity::find()
            .filter(
                channel_users::Column::SubPeriodEnd
                    .lte(now)
                    .or(channel_users::Column::BannedUntil.lte(now)),
            )
            .all(self.db())
            .await?;
        for m in stale {
            let txn = crate::db::begin_write(self.db()).await?;
            if m.sub_period_end.is_some_and(|e| e <= now) {
                channel_users::Entity::update_many()
                    .col_expr(
                        channel_users::Column::SubTier,
                        Expr::value(Option::<i32>::None),
                    )
                    .col_expr(
                        channel_users::Column::SubStartedAt,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .col_expr(
                        channel_users::Column::SubPeriodEnd,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .col_expr(channel_users::Column::SubCancelled, Expr::value(false))
                    .filter(channel_users::Column::ChannelId.eq(m.channel_id.as_str()))
                    .filter(channel_users::Column::UserId.eq(m.user_id.as_str()))
                    .filter(channel_users::Column::SubPeriodEnd.lte(now))
                    .exec(&txn)
                    .await?;
            }
            if m.banned_until.is_some_and(|e| e <= now) {
                channel_users::Entity::update_many()
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
                    .filter(channel_users::Column::ChannelId.eq(m.channel_id.as_str()))
                    .filter(channel_users::Column::UserId.eq(m.user_id.as_str()))
                    .filter(channel_users::Column::BannedUntil.lte(now))
                    .exec(&txn)
                    .await?;
            }
            prune_row(&txn, &m.channel_id, &m.user_id).await?;
            txn.commit().await?;
        }
        Ok(())
    }
}
