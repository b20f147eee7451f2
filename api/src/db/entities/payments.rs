//! `payments`: one row per subscription payment attempt.

use sea_orm::entity::prelude::*;

/// One payment.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    /// UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_id: String,
    /// Channel subscribed to.
    pub channel_id: String,
    /// Buyer.
    pub user_id: String,
    /// Tier bought.
    pub tier: i32,
    /// Provider name (`test`, `webhook`, ...).
    pub provider: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Settled.
    pub completed_at: Option<DateTimeUtc>,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
