//! Users, channels, channel users, livestreams, payments.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    UserId,
    Name,
    PasswordHash,
    Roles,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Channels {
    Table,
    ChannelId,
    Name,
    Description,
    OwnerId,
    StreamKeyHash,
    StreamTitle,
    FollowerCount,
    CreatedAt,
    UpdatedAt,
    KeyRotatedAt,
}

#[derive(DeriveIden)]
enum ChannelUsers {
    Table,
    ChannelId,
    UserId,
    IsFollowing,
    FollowedAt,
    SubTier,
    SubStartedAt,
    SubPeriodEnd,
    SubCancelled,
    IsBanned,
    BannedUntil,
    BanReason,
    BannedBy,
    BannedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Livestreams {
    Table,
    StreamId,
    ChannelId,
    Title,
    StartedAt,
    EndedAt,
    PeakViewers,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    PaymentId,
    ChannelId,
    UserId,
    Tier,
    Provider,
    Status,
    CreatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum PaymentEvents {
    Table,
    EventId,
    PaymentId,
    ReceivedAt,
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().take()
}

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().take()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .take()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().null().take()
}

fn flag(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .boolean()
        .not_null()
        .default(false)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(text(Users::UserId).primary_key())
                    .col(text(Users::Name))
                    .col(text(Users::PasswordHash))
                    .col(text(Users::Roles).default(""))
                    .col(ts(Users::CreatedAt))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Channels::Table)
                    .if_not_exists()
                    .col(text(Channels::ChannelId).primary_key())
                    .col(text(Channels::Name))
                    .col(text(Channels::Description))
                    .col(text_null(Channels::OwnerId))
                    .col(text(Channels::StreamKeyHash))
                    .col(text(Channels::StreamTitle).default(""))
                    .col(
                        ColumnDef::new(Channels::FollowerCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ts(Channels::CreatedAt))
                    .col(ts(Channels::UpdatedAt))
                    .col(ts(Channels::KeyRotatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_channels_owner")
                    .table(Channels::Table)
                    .col(Channels::OwnerId)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChannelUsers::Table)
                    .if_not_exists()
                    .col(text(ChannelUsers::ChannelId))
                    .col(text(ChannelUsers::UserId))
                    .col(flag(ChannelUsers::IsFollowing))
                    .col(ts_null(ChannelUsers::FollowedAt))
                    .col(ColumnDef::new(ChannelUsers::SubTier).integer().null())
                    .col(ts_null(ChannelUsers::SubStartedAt))
                    .col(ts_null(ChannelUsers::SubPeriodEnd))
                    .col(flag(ChannelUsers::SubCancelled))
                    .col(flag(ChannelUsers::IsBanned))
                    .col(ts_null(ChannelUsers::BannedUntil))
                    .col(text_null(ChannelUsers::BanReason))
                    .col(text_null(ChannelUsers::BannedBy))
                    .col(ts_null(ChannelUsers::BannedAt))
                    .col(ts(ChannelUsers::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ChannelUsers::ChannelId)
                            .col(ChannelUsers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_channel_users_channel")
                            .from(ChannelUsers::Table, ChannelUsers::ChannelId)
                            .to(Channels::Table, Channels::ChannelId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_channel_users_following")
                    .table(ChannelUsers::Table)
                    .col(ChannelUsers::ChannelId)
                    .col(ChannelUsers::IsFollowing)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_channel_users_user")
                    .table(ChannelUsers::Table)
                    .col(ChannelUsers::UserId)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Livestreams::Table)
                    .if_not_exists()
                    .col(text(Livestreams::StreamId).primary_key())
                    .col(text(Livestreams::ChannelId))
                    .col(text(Livestreams::Title))
                    .col(ts(Livestreams::StartedAt))
                    .col(ts_null(Livestreams::EndedAt))
                    .col(
                        ColumnDef::new(Livestreams::PeakViewers)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_livestreams_channel")
                            .from(Livestreams::Table, Livestreams::ChannelId)
                            .to(Channels::Table, Channels::ChannelId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_livestreams_channel_started")
                    .table(Livestreams::Table)
                    .col(Livestreams::ChannelId)
                    .col(Livestreams::StartedAt)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .if_not_exists()
                    .col(text(Payments::PaymentId).primary_key())
                    .col(text(Payments::ChannelId))
                    .col(text(Payments::UserId))
                    .col(ColumnDef::new(Payments::Tier).integer().not_null())
                    .col(text(Payments::Provider))
                    .col(text(Payments::Status))
                    .col(ts(Payments::CreatedAt))
                    .col(ts_null(Payments::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payments_channel")
                            .from(Payments::Table, Payments::ChannelId)
                            .to(Channels::Table, Channels::ChannelId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PaymentEvents::Table)
                    .if_not_exists()
                    .col(text(PaymentEvents::EventId).primary_key())
                    .col(text(PaymentEvents::PaymentId))
                    .col(ts(PaymentEvents::ReceivedAt))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PaymentEvents::Table.into_iden(),
            Payments::Table.into_iden(),
            Livestreams::Table.into_iden(),
            ChannelUsers::Table.into_iden(),
            Channels::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
