//! Chat: per-channel history state (newest offset, epoch, slow mode) and the messages.
//! The chat crate reads and writes these tables; the schema lives with the others so one
//! migrator owns the database.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatChannels {
    Table,
    ChannelId,
    TopOffset,
    Epoch,
    SlowModeSecs,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    ChannelId,
    MsgOffset,
    MessageId,
    UserId,
    UserName,
    Body,
    Emotes,
    Badges,
    ClientMsgId,
    SentAtMs,
}

#[derive(DeriveIden)]
enum Channels {
    Table,
    ChannelId,
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatChannels::Table)
                    .if_not_exists()
                    .col(text(ChatChannels::ChannelId).primary_key())
                    .col(
                        ColumnDef::new(ChatChannels::TopOffset)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(text(ChatChannels::Epoch))
                    .col(
                        ColumnDef::new(ChatChannels::SlowModeSecs)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChatChannels::Table, ChatChannels::ChannelId)
                            .to(Channels::Table, Channels::ChannelId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChatMessages::Table)
                    .if_not_exists()
                    .col(text(ChatMessages::ChannelId))
                    .col(
                        ColumnDef::new(ChatMessages::MsgOffset)
                            .big_integer()
                            .not_null(),
                    )
                    .col(text(ChatMessages::MessageId).unique_key())
                    .col(text(ChatMessages::UserId))
                    .col(text(ChatMessages::UserName))
                    .col(text(ChatMessages::Body))
                    .col(text(ChatMessages::Emotes))
                    .col(text(ChatMessages::Badges))
                    .col(ColumnDef::new(ChatMessages::ClientMsgId).text().null())
                    .col(
                        ColumnDef::new(ChatMessages::SentAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ChatMessages::ChannelId)
                            .col(ChatMessages::MsgOffset),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChatMessages::Table, ChatMessages::ChannelId)
                            .to(ChatChannels::Table, ChatChannels::ChannelId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        // A resend with the same clientMsgId finds the first copy instead of posting twice.
        manager
            .create_index(
                Index::create()
                    .name("chat_messages_client_msg")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::ChannelId)
                    .col(ChatMessages::UserId)
                    .col(ChatMessages::ClientMsgId)
                    .unique()
                    .if_not_exists()
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChatMessages::Table).take())
            .await?;
        manager
            .drop_table(Table::drop().table(ChatChannels::Table).take())
            .await
    }
}
