//! Database: connection (SQLite or PostgreSQL), migrations and sea-orm entities.

pub mod entities;
pub mod migration;

use std::time::Duration;

use anyhow::Context as _;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::config::ApiConfig;

/// Opens the pool. SQLite runs in WAL mode with a busy timeout so that the `onair channel`
/// CLI can write while a server runs on the same file.
pub async fn connect(config: &ApiConfig) -> anyhow::Result<DatabaseConnection> {
    let url = config.effective_database_url();
    let mut opts = ConnectOptions::new(url.clone());
    opts.max_connections(config.max_db_connections.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    let scheme = url.split(':').next().unwrap_or_default().to_string();
    Database::connect(opts)
        .await
        .with_context(|| format!("connecting to the {scheme} database"))
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await
}

/// Starts a transaction that writes. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), so the busy timeout applies instead of a snapshot error later.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// True when the error is a unique-constraint violation (duplicate key).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
