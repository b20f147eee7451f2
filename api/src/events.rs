//! Events other parts of the server react to (WHIP ends a publisher on key rotation, chat
//! announces bans and stream state). Delivered by `tokio::sync::broadcast` from
//! [`crate::Api::subscribe_events`]; a slow receiver sees `RecvError::Lagged` and should resync.

use chrono::{DateTime, Utc};

use crate::live::StreamId;

/// Something that happened to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The stream key changed: a publisher using the old key must be disconnected.
    StreamKeyRotated {
        /// Channel.
        channel_id: String,
    },
    /// A user was banned or timed out.
    Banned {
        /// Channel.
        channel_id: String,
        /// Banned user.
        user_id: String,
        /// End of a timeout; `None` = permanent.
        until: Option<DateTime<Utc>>,
        /// Moderator's reason.
        reason: Option<String>,
    },
    /// A ban or timeout was lifted by a moderator.
    Unbanned {
        /// Channel.
        channel_id: String,
        /// User.
        user_id: String,
    },
    /// The channel went live.
    StreamStarted {
        /// Channel.
        channel_id: String,
        /// New stream.
        stream_id: StreamId,
    },
    /// The channel went offline.
    StreamEnded {
        /// Channel.
        channel_id: String,
        /// Ended stream.
        stream_id: StreamId,
    },
    /// Name, description or title changed.
    ChannelUpdated {
        /// Channel.
        channel_id: String,
    },
}

impl ChannelEvent {
    /// The channel the event is about.
    pub fn channel_id(&self) -> &str {
        match self {
            Self::StreamKeyRotated { channel_id }
            | Self::Banned { channel_id, .. }
            | Self::Unbanned { channel_id, .. }
            | Self::StreamStarted { channel_id, .. }
            | Self::StreamEnded { channel_id, .. }
            | Self::ChannelUpdated { channel_id } => channel_id,
        }
    }
}
