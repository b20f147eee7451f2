//! JSON shapes of the `/api` routes (field names as in DESIGN.md §3: `channelID`, `userID`...).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Accepts `2` and `2.0` (JSON Schema's `integer` includes numbers with a zero fraction).
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        // Out of i64 range (e.g. a huge u64): clamp; callers range-check anyway.
        _ if n.as_u64().is_some() => Ok(i64::MAX),
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {n}"
        ))),
    }
}

fn integral_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    match n {
        None => Ok(None),
        Some(n) => integral(n).map(Some).map_err(serde::de::Error::custom),
    }
}

/// RFC 9457 problem document (`application/problem+json`).
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// Stable URI of the kind of problem, `https://onair.dev/problems/<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /api/auth/register`.
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// `[a-z0-9_]{3,25}`; becomes the user id.
    #[schema(pattern = "^[a-z0-9_]{3,25}$")]
    pub username: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    /// Shown in chat, 1 to 50 characters on one line; defaults to the username.
    #[serde(rename = "displayName", default)]
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub display_name: Option<String>,
}

/// `POST /api/auth/login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A signed JWT (HS256; claims `sub`, `name`, `exp`, optional `roles`).
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The JWT `sub`.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// The JWT `name`.
    pub name: String,
    /// When the token expires.
    #[serde(rename = "expiresAt")]
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/channels`.
#[derive(Deserialize, ToSchema)]
pub struct CreateChannelRequest {
    /// `[a-z0-9_]{3,25}`.
    #[serde(rename = "channelID")]
    #[schema(pattern = "^[a-z0-9_]{3,25}$")]
    pub channel_id: String,
    /// Display name (default: the id), 1 to 100 characters on one line.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
    /// At most 2000 characters.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
}

/// A new channel with its stream key (shown once).
#[derive(Serialize, ToSchema)]
pub struct CreateChannelResponse {
    /// Channel id.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `Authorization: Bearer <streamKey>` on `POST /whip/{channelID}`. Not retrievable later.
    #[serde(rename = "streamKey")]
    pub stream_key: String,
}

/// `PATCH /api/channels/{channelID}`; absent fields are left alone.
#[derive(Deserialize, ToSchema)]
pub struct UpdateChannelRequest {
    /// Display name, 1 to 100 characters on one line.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
    /// Description, at most 2000 characters.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
    /// Stream title, at most 140 characters on one line.
    #[serde(default)]
    #[schema(max_length = 140, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub title: Option<String>,
    /// Serve HLS only with signed URLs (from `GET /api/channels/{channelID}/hls`).
    #[serde(default, rename = "requireSignedHls")]
    pub require_signed_hls: Option<bool>,
}

/// A new stream key (shown once).
#[derive(Serialize, ToSchema)]
pub struct StreamKeyResponse {
    /// Channel id.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// The new key; the old one stops working and a live publisher is disconnected.
    #[serde(rename = "streamKey")]
    pub stream_key: String,
}

/// The live part of a channel.
#[derive(Serialize, ToSchema)]
pub struct CurrentStreamInfo {
    /// Stream id.
    #[serde(rename = "streamID")]
    pub stream_id: String,
    /// Title.
    pub title: String,
    /// Viewers now (WebRTC + HLS + chat-only sources).
    #[serde(rename = "currentWatcherCount")]
    pub current_watcher_count: u64,
    /// When the stream went live.
    #[serde(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
}

/// `GET /api/channels/{channelID}`.
#[derive(Serialize, ToSchema)]
pub struct ChannelInfo {
    /// Channel id.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Owner's user id (null for operator channels).
    #[serde(rename = "ownerID")]
    pub owner_id: Option<String>,
    /// Title of the next or current stream.
    #[serde(rename = "streamTitle")]
    pub stream_title: String,
    /// Null when offline.
    #[serde(rename = "currentStreamInfo")]
    pub current_stream_info: Option<CurrentStreamInfo>,
    /// Exact number of followers.
    #[serde(rename = "followerCount")]
    pub follower_count: u64,
    /// HLS playback needs a signed URL from `GET /api/channels/{channelID}/hls`.
    #[serde(rename = "requireSignedHls")]
    pub require_signed_hls: bool,
}

/// `GET /api/channels` query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: only live channels, most watched first.
    pub live: Option<bool>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page (an unknown cursor gives an empty page).
    #[param(pattern = "^[a-z0-9_]*$")]
    pub cursor: Option<String>,
}

/// A page of the directory.
#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    /// Channels.
    pub channels: Vec<ChannelInfo>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[serde(rename = "nextCursor")]
    pub next_cursor: Option<String>,
}

/// A subscription in force.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionInfoDto {
    /// 1, 2 or 3.
    pub tier: u8,
    /// First activation.
    #[serde(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
    /// Access lasts until then.
    #[serde(rename = "currentPeriodEnd")]
    pub current_period_end: DateTime<Utc>,
    /// False after UNSUBSCRIBE: the subscription lapses at `currentPeriodEnd`.
    pub renews: bool,
}

/// `GET /api/channels/{channelID}/relationship`.
#[derive(Serialize, ToSchema)]
pub struct RelationshipResponse {
    /// Follows the channel.
    #[serde(rename = "isFollowing")]
    pub is_following: bool,
    /// Null without a subscription in force.
    #[serde(rename = "subscriptionInfo")]
    pub subscription_info: Option<SubscriptionInfoDto>,
    /// Banned or timed out now.
    #[serde(rename = "isBanned")]
    pub is_banned: bool,
    /// End of a timeout; null when not banned or banned permanently.
    #[serde(rename = "bannedUntil")]
    pub banned_until: Option<DateTime<Utc>>,
}

/// `?op=` of following.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// `FOLLOW` or `UNFOLLOW`.
    #[param(pattern = "^(FOLLOW|UNFOLLOW)$")]
    pub op: String,
}

/// After FOLLOW or UNFOLLOW.
#[derive(Serialize, ToSchema)]
pub struct FollowResponse {
    /// Following now.
    #[serde(rename = "isFollowing")]
    pub is_following: bool,
    /// Followers now.
    #[serde(rename = "followerCount")]
    pub follower_count: u64,
}

/// `?op=` of subscriptions.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscribeQuery {
    /// `SUBSCRIBE` or `UNSUBSCRIBE`.
    #[param(pattern = "^(SUBSCRIBE|UNSUBSCRIBE)$")]
    pub op: String,
}

/// Body of SUBSCRIBE (absent or null = tier 1); UNSUBSCRIBE needs none but rejects a bad tier.
#[derive(Deserialize, ToSchema)]
pub struct SubscribeRequest {
    /// 1, 2 or 3 (422 otherwise).
    #[schema(minimum = 1, maximum = 3)]
    #[serde(deserialize_with = "integral")]
    pub tier: i64,
}

/// After SUBSCRIBE (payment confirmed) or UNSUBSCRIBE.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionResponse {
    /// `active` (renews), `cancelled` (lapses at the period end) or `none`.
    pub status: String,
    /// The subscription in force, if any.
    #[serde(rename = "subscriptionInfo")]
    pub subscription_info: Option<SubscriptionInfoDto>,
}

/// 202 after SUBSCRIBE with a provider that needs the buyer to pay first.
#[derive(Serialize, ToSchema)]
pub struct PendingPaymentResponse {
    /// Always `pending`.
    pub status: String,
    /// Id of the payment (named by the webhook).
    #[serde(rename = "paymentID")]
    pub payment_id: String,
    /// Send the buyer there.
    #[serde(rename = "paymentInputURL")]
    pub payment_input_url: String,
}

/// `GET /api/channels/{channelID}/live-stream/currentWatcherCount`.
#[derive(Serialize, ToSchema)]
pub struct WatcherCountResponse {
    /// Viewers now (0 when offline).
    #[serde(rename = "currentWatcherCount")]
    pub current_watcher_count: u64,
}

/// `POST /api/channels/{channelID}/bans`.
#[derive(Deserialize, ToSchema)]
pub struct BanRequest {
    /// User to ban (1 to 64 characters, no spaces).
    #[serde(rename = "userID")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub user_id: String,
    /// Timeout length (1 to 1209600); absent = permanent ban.
    #[serde(rename = "durationSeconds", default, deserialize_with = "integral_opt")]
    #[schema(minimum = 1, maximum = 1209600, value_type = Option<u64>)]
    pub duration_seconds: Option<i64>,
    /// Shown to moderators, at most 500 characters.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub reason: Option<String>,
}

/// A ban or timeout in force.
#[derive(Serialize, ToSchema)]
pub struct BanResponse {
    /// Channel.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// Banned user.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// End of a timeout; null = permanent.
    #[serde(rename = "bannedUntil")]
    pub banned_until: Option<DateTime<Utc>>,
    /// Reason.
    pub reason: Option<String>,
    /// Moderator.
    #[serde(rename = "bannedBy")]
    pub banned_by: Option<String>,
    /// When.
    #[serde(rename = "bannedAt")]
    pub banned_at: Option<DateTime<Utc>>,
}

/// `GET /api/channels/{channelID}/bans`.
#[derive(Serialize, ToSchema)]
pub struct BanList {
    /// Bans in force.
    pub bans: Vec<BanResponse>,
}

/// Body of `POST /api/payments/webhook` (documentation; the raw bytes are what is signed).
#[derive(Serialize, ToSchema)]
pub struct WebhookEvent {
    /// Unique per event; a replay carries the same id and is ignored.
    #[serde(rename = "eventID")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub event_id: String,
    /// The `paymentID` of the 202 answer.
    #[serde(rename = "paymentID")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub payment_id: String,
    /// `succeeded` or `failed`.
    #[schema(pattern = "^(succeeded|failed)$")]
    pub status: String,
}

/// Webhook result.
#[derive(Serialize, ToSchema)]
pub struct WebhookResponse {
    /// `processed`, or `ignored` for a replay or an already settled payment.
    pub status: String,
}
