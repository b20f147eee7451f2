//! `payment_events`: webhook event ids already processed (replays are ignored).

use sea_orm::entity::prelude::*;

/// One processed webhook event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_events")]
pub struct Model {
    /// Provider's event id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    /// Payment it was about.
    pub payment_id: String,
    /// When it arrived.
    pub received_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
