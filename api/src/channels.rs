//! Channels and stream keys.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DbErr, EntityTrait as _, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use crate::Api;
use crate::db::entities::channels;
use crate::error::{ApiError, ApiResult};
use crate::events::ChannelEvent;
use crate::secrets;
use crate::validate::{self, DESCRIPTION_MAX, NAME_MAX, TITLE_MAX};

/// Id of the channel created on first start.
pub const DEMO_CHANNEL_ID: &str = "demo";

/// A channel as the domain sees it (no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Slug.
    pub channel_id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Owner's user id; `None` for operator channels (only `admin` tokens manage those).
    pub owner_id: Option<String>,
    /// Title of the current or next stream.
    pub stream_title: String,
    /// Followers.
    pub follower_count: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// HLS is served only with signed URLs.
    pub require_signed_hls: bool,
}

impl From<channels::Model> for Channel {
    fn from(m: channels::Model) -> Self {
        Self {
            channel_id: m.channel_id,
            name: m.name,
            description: m.description,
            owner_id: m.owner_id,
            stream_title: m.stream_title,
            follower_count: u64::try_from(m.follower_count).unwrap_or(0),
            created_at: m.created_at,
            require_signed_hls: m.require_signed_hls,
        }
    }
}

/// What [`Api::create_channel`] needs.
#[derive(Clone, Debug, Default)]
pub struct NewChannel {
    /// Slug `[a-z0-9_]{3,25}`.
    pub channel_id: String,
    /// Display name; defaults to the id.
    pub name: Option<String>,
    /// Free text.
    pub description: String,
    /// Owner; `None` for operator channels.
    pub owner_id: Option<String>,
}

/// A new channel with its stream key, shown this once.
#[derive(Clone, Debug)]
pub struct CreatedChannel {
    /// The channel.
    pub channel: Channel,
    /// Plaintext stream key (256-bit random, URL-safe base64). Only its hash is stored.
    pub stream_key: String,
}

/// Why a stream key was refused.
#[derive(Debug, thiserror::Error)]
pub enum StreamKeyError {
    /// No such channel (WHIP answers 404).
    #[error("unknown channel")]
    UnknownChannel,
    /// Wrong key (WHIP answers 401).
    #[error("wrong stream key")]
    BadKey,
    /// The database failed (WHIP answers 500 or 503).
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Changes to a channel; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct ChannelUpdate {
    /// Display name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Stream title.
    pub title: Option<String>,
    /// Require signed HLS URLs.
    pub require_signed_hls: Option<bool>,
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || !validate::is_line(name, NAME_MAX) {
        return Err(ApiError::invalid(
            "invalid-name",
            format!("name must be 1 to {NAME_MAX} characters on one line"),
        ));
    }
    Ok(())
}

fn check_description(d: &str) -> ApiResult<()> {
    if !validate::is_text(d, DESCRIPTION_MAX) {
        return Err(ApiError::invalid(
            "invalid-description",
            format!("description must be at most {DESCRIPTION_MAX} characters"),
        ));
    }
    Ok(())
}

fn check_title(t: &str) -> ApiResult<()> {
    if !validate::is_line(t, TITLE_MAX) {
        return Err(ApiError::invalid(
            "invalid-title",
            format!("title must be at most {TITLE_MAX} characters on one line"),
        ));
    }
    Ok(())
}

impl Api {
    /// Creates a channel and its stream key.
    ///
    /// Errors: `Invalid` (`invalid-channel-id`, `invalid-name`, `invalid-description`),
    /// `Conflict` (`channel-exists`).
    pub async fn create_channel(&self, new: NewChannel) -> ApiResult<CreatedChannel> {
        if !validate::is_slug(&new.channel_id) {
            return Err(ApiError::invalid(
                "invalid-channel-id",
                "channelID must match [a-z0-9_]{3,25}",
            ));
        }
        let name = new.name.unwrap_or_else(|| new.channel_id.clone());
        check_name(&name)?;
        check_description(&new.description)?;
        let stream_key = secrets::random_token();
        let now = Utc::now();
        let model = channels::ActiveModel {
            channel_id: Set(new.channel_id.clone()),
            name: Set(name),
            description: Set(new.description),
            owner_id: Set(new.owner_id),
            stream_key_hash: Set(secrets::sha256_hex(&stream_key)),
            stream_title: Set(String::new()),
            follower_count: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            key_rotated_at: Set(now),
            require_signed_hls: Set(false),
        };
        match channels::Entity::insert(model)
            .exec_without_returning(self.db())
            .await
        {
            Ok(_) => {}
            Err(e) if crate::db::is_unique_violation(&e) => {
                return Err(ApiError::Conflict {
                    slug: "channel-exists",
                    detail: format!("channel {:?} already exists", new.channel_id),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let channel = self
            .channel(&new.channel_id)
            .await?
            .ok_or_else(|| ApiError::no_channel(&new.channel_id))?;
        self.remember_channel(&channel.channel_id);
        Ok(CreatedChannel {
            channel,
            stream_key,
        })
    }

    /// Checks a presented stream key (constant-time comparison of SHA-256 digests).
    pub async fn verify_stream_key(
        &self,
        channel_id: &str,
        presented: &str,
    ) -> Result<Channel, StreamKeyError> {
        if !validate::is_slug(channel_id) {
            return Err(StreamKeyError::UnknownChannel);
        }
        let model = channels::Entity::find_by_id(channel_id.to_string())
            .one(self.db())
            .await?
            .ok_or(StreamKeyError::UnknownChannel)?;
        if secrets::matches_hash(presented, &model.stream_key_hash) {
            Ok(model.into())
        } else {
            Err(StreamKeyError::BadKey)
        }
    }

    /// Replaces the stream key and returns the new one (shown once). Emits
    /// [`ChannelEvent::StreamKeyRotated`] so the WHIP side ends a live publisher.
    pub async fn rotate_stream_key(&self, channel_id: &str) -> ApiResult<String> {
        let stream_key = secrets::random_token();
        let res = channels::Entity::update_many()
            .col_expr(
                channels::Column::StreamKeyHash,
                Expr::value(secrets::sha256_hex(&stream_key)),
            )
            .col_expr(channels::Column::KeyRotatedAt, Expr::value(Utc::now()))
            .filter(channels::Column::ChannelId.eq(channel_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(ApiError::no_channel(channel_id));
        }
        self.emit(ChannelEvent::StreamKeyRotated {
            channel_id: channel_id.to_string(),
        });
        Ok(stream_key)
    }

    /// One channel.
    pub async fn channel(&self, channel_id: &str) -> ApiResult<Option<Channel>> {
        if !validate::is_slug(channel_id) {
            return Ok(None);
        }
        let model = channels::Entity::find_by_id(channel_id.to_string())
            .one(self.db())
            .await?;
        if model.is_some() {
            self.remember_channel(channel_id);
        }
        Ok(model.map(Channel::from))
    }

    /// One channel, or `NotFound`.
    pub async fn require_channel(&self, channel_id: &str) -> ApiResult<Channel> {
        self.channel(channel_id)
            .await?
            .ok_or_else(|| ApiError::no_channel(channel_id))
    }

    /// Channels ordered by id, `limit` at most, after `after` (keyset pagination).
    pub async fn list_channels(&self, after: Option<&str>, limit: u64) -> ApiResult<Vec<Channel>> {
        let mut q = channels::Entity::find().order_by_asc(channels::Column::ChannelId);
        if let Some(after) = after {
            q = q.filter(channels::Column::ChannelId.gt(after));
        }
        Ok(q.limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(Channel::from)
            .collect())
    }

    /// Several channels by id (unknown ids are skipped), in no particular order.
    pub async fn channels_by_ids(&self, ids: &[String]) -> ApiResult<Vec<Channel>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(channels::Entity::find()
            .filter(channels::Column::ChannelId.is_in(ids.iter().cloned()))
            .all(self.db())
            .await?
            .into_iter()
            .map(Channel::from)
            .collect())
    }

    /// Number of channels.
    pub async fn count_channels(&self) -> ApiResult<u64> {
        Ok(channels::Entity::find().count(self.db()).await?)
    }

    /// On first start (no channel at all) creates the `demo` channel and returns its stream
    /// key; `None` when the database already has channels.
    pub async fn ensure_demo_channel(&self) -> ApiResult<Option<String>> {
        if self.count_channels().await? > 0 {
            return Ok(None);
        }
        match self
            .create_channel(NewChannel {
                channel_id: DEMO_CHANNEL_ID.to_string(),
                name: Some("Demo".to_string()),
                description: "Created on first start. Go live with OBS or any WHIP client."
                    .to_string(),
                owner_id: None,
            })
            .await
        {
            Ok(created) => Ok(Some(created.stream_key)),
            // Another process made it first.
            Err(ApiError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Changes name, description and/or stream title (no permission check: see the HTTP
    /// layer). A title change also retitles the live stream.
    pub async fn update_channel(
        &self,
        channel_id: &str,
        update: ChannelUpdate,
    ) -> ApiResult<Channel> {
        let mut q = channels::Entity::update_many()
            .col_expr(channels::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(channels::Column::ChannelId.eq(channel_id));
        if let Some(name) = &update.name {
            check_name(name)?;
            q = q.col_expr(channels::Column::Name, Expr::value(name.clone()));
        }
        if let Some(d) = &update.description {
            check_description(d)?;
            q = q.col_expr(channels::Column::Description, Expr::value(d.clone()));
        }
        if let Some(t) = &update.title {
            check_title(t)?;
            q = q.col_expr(channels::Column::StreamTitle, Expr::value(t.clone()));
        }
        if let Some(b) = update.require_signed_hls {
            q = q.col_expr(channels::Column::RequireSignedHls, Expr::value(b));
        }
        if q.exec(self.db()).await?.rows_affected == 0 {
            return Err(ApiError::no_channel(channel_id));
        }
        if let Some(t) = &update.title {
            self.live().set_title(channel_id, t).await?;
        }
        self.emit(ChannelEvent::ChannelUpdated {
            channel_id: channel_id.to_string(),
        });
        self.require_channel(channel_id).await
    }

    /// Whether a channel exists; answered from memory once seen (channels are never deleted).
    pub async fn channel_exists(&self, channel_id: &str) -> ApiResult<bool> {
        if self.inner.known_channels.read().contains(channel_id) {
            return Ok(true);
        }
        Ok(self.channel(channel_id).await?.is_some())
    }

    pub(crate) fn remember_channel(&self, channel_id: &str) {
        if !self.inner.known_channels.read().contains(channel_id) {
            self.inner
                .known_channels
                .write()
                .insert(channel_id.to_string());
        }
    }
}
