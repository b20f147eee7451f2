//! Channels: directory, create, read, update, stream key rotation.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::dto::{
    ChannelInfo, ChannelList, CreateChannelRequest, CreateChannelResponse, ListQuery, ProblemDoc,
    StreamKeyResponse, UpdateChannelRequest, WatcherCountResponse,
};
use super::extract::{AuthUser, JsonBody, P, Q};
use super::{NO_STORE, PUBLIC_SHORT, cache, channel_info, ensure_owner};
use crate::Api;
use crate::channels::{ChannelUpdate, NewChannel};
use crate::error::ApiError;
use crate::http::problem::Problem;

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// The directory: every channel by id, or with `live=true` the live ones, most watched first.
#[utoipa::path(
    get, path = "/api/channels", tag = "channels",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of channels", body = ChannelList,
            headers(("cache-control" = String, description = "public, max-age=5"))),
        (status = 400, description = "Bad query", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list_channels(
    State(api): State<Api>,
    Q(q): Q<ListQuery>,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(
            "bad-query",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    // Both cursor kinds (a channel id, or a live-directory offset) use these characters only.
    let id_chars = |c: &str| {
        c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if cursor.is_some_and(|c| !id_chars(c)) {
        return Err(Problem::bad_request("bad-query", "invalid cursor"));
    }
    let (channels, next_cursor) = if q.live == Some(true) {
        // An offset; anything else points past the end.
        let offset: usize = match cursor {
            None => 0,
            Some(c) => c.parse().unwrap_or(usize::MAX),
        };
        let live = api.live().live_channels();
        let page: Vec<String> = live
            .iter()
            .skip(offset)
            .take(limit as usize)
            .map(|(s, _)| s.channel_id.clone())
            .collect();
        let rows = api.channels_by_ids(&page).await?;
        let mut out = Vec::with_capacity(page.len());
        for id in &page {
            if let Some(ch) = rows.iter().find(|c| &c.channel_id == id) {
                out.push(channel_info(&api, ch));
            }
        }
        let next = (offset + page.len() < live.len()).then(|| (offset + page.len()).to_string());
        (out, next)
    } else {
        let rows = api.list_channels(cursor, u64::from(limit) + 1).await?;
        let more = rows.len() > limit as usize;
        let page: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next = if more {
            page.last().map(|c| c.channel_id.clone())
        } else {
            None
        };
        (page.iter().map(|c| channel_info(&api, c)).collect(), next)
    };
    Ok((
        cache(PUBLIC_SHORT),
        axum::Json(ChannelList {
            channels,
            next_cursor,
        }),
    )
        .into_response())
}

/// Creates a channel owned by the caller and returns its stream key, once.
#[utoipa::path(
    post, path = "/api/channels", tag = "channels",
    request_body = CreateChannelRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreateChannelResponse,
            headers(("location" = String, description = "/api/channels/{channelID}"))),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Channel id taken", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id, name or description", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create_channel(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    JsonBody(req): JsonBody<CreateChannelRequest>,
) -> Result<Response, Problem> {
    let created = api
        .create_channel(NewChannel {
            channel_id: req.channel_id,
            name: req.name,
            description: req.description.unwrap_or_default(),
            owner_id: Some(user.sub),
        })
        .await?;
    let location = format!("/api/channels/{}", created.channel.channel_id);
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, NO_STORE.to_string()),
        ],
        axum::Json(CreateChannelResponse {
            channel_id: created.channel.channel_id,
            name: created.channel.name,
            description: created.channel.description,
            stream_key: created.stream_key,
        }),
    )
        .into_response())
}

/// A channel's public info.
#[utoipa::path(
    get, path = "/api/channels/{channelID}", tag = "channels",
    params(("channelID" = String, Path, description = "Channel id")),
    responses(
        (status = 200, description = "The channel", body = ChannelInfo,
            headers(("cache-control" = String, description = "public, max-age=5"))),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get_channel(
    State(api): State<Api>,
    P(channel_id): P<String>,
) -> Result<Response, Problem> {
    let ch = api.require_channel(&channel_id).await?;
    Ok((cache(PUBLIC_SHORT), axum::Json(channel_info(&api, &ch))).into_response())
}

/// Changes name, description or stream title (owner only).
#[utoipa::path(
    patch, path = "/api/channels/{channelID}", tag = "channels",
    params(("channelID" = String, Path, description = "Channel id")),
    request_body = UpdateChannelRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = ChannelInfo),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update_channel(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P(channel_id): P<String>,
    JsonBody(req): JsonBody<UpdateChannelRequest>,
) -> Result<Response, Problem> {
    let ch = api.require_channel(&channel_id).await?;
    ensure_owner(&user, &ch)?;
    let ch = api
        .update_channel(
            &channel_id,
            ChannelUpdate {
                name: req.name,
                description: req.description,
                title: req.title,
                require_signed_hls: req.require_signed_hls,
            },
        )
        .await?;
    Ok((cache(NO_STORE), axum::Json(channel_info(&api, &ch))).into_response())
}

/// Replaces the stream key (owner only); a live publisher is disconnected.
#[utoipa::path(
    post, path = "/api/channels/{channelID}/stream-key", tag = "channels",
    params(("channelID" = String, Path, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new key, shown once", body = StreamKeyResponse),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_stream_key(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P(channel_id): P<String>,
) -> Result<Response, Problem> {
    let ch = api.require_channel(&channel_id).await?;
    ensure_owner(&user, &ch)?;
    let stream_key = api.rotate_stream_key(&channel_id).await?;
    Ok((
        cache(NO_STORE),
        axum::Json(StreamKeyResponse {
            channel_id,
            stream_key,
        }),
    )
        .into_response())
}

/// Viewers now, from memory (0 when offline).
#[utoipa::path(
    get, path = "/api/channels/{channelID}/live-stream/currentWatcherCount", tag = "live",
    params(("channelID" = String, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Watchers", body = WatcherCountResponse,
            headers(("cache-control" = String, description = "public, max-age=5"))),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn watcher_count(
    State(api): State<Api>,
    P(channel_id): P<String>,
) -> Result<Response, Problem> {
    let live = api.live();
    if !live.is_live(&channel_id) && !api.channel_exists(&channel_id).await? {
        return Err(ApiError::no_channel(&channel_id).into());
    }
    Ok((
        cache(PUBLIC_SHORT),
        axum::Json(WatcherCountResponse {
            current_watcher_count: if live.is_live(&channel_id) {
                live.watchers(&channel_id)
            } else {
                0
            },
        }),
    )
        .into_response())
}
