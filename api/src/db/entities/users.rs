//! `users`: built-in accounts (tokens minted for other identity systems have no row).

use sea_orm::entity::prelude::*;

/// One account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Username, `[a-z0-9_]{3,25}`; the JWT `sub`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// Display name; the JWT `name`.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Comma-separated roles (e.g. `admin`), empty for none.
    pub roles: String,
    /// Registration time.
    pub created_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
