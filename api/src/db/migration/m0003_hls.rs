//! HLS: a channel can require signed playlist and segment URLs, and a broadcast row points at
//! its recording once the stream has ended.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Channels {
    Table,
    RequireSignedHls,
}

#[derive(DeriveIden)]
enum Livestreams {
    Table,
    Recording,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .add_column(
                        ColumnDef::new(Channels::RequireSignedHls)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Livestreams::Table)
                    .add_column(ColumnDef::new(Livestreams::Recording).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Livestreams::Table)
                    .drop_column(Livestreams::Recording)
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .drop_column(Channels::RequireSignedHls)
                    .take(),
            )
            .await
    }
}
