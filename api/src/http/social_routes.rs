//! Relationship, follow, subscriptions, bans.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::dto::{
    BanList, BanRequest, BanResponse, FollowQuery, FollowResponse, PendingPaymentResponse,
    ProblemDoc, RelationshipResponse, SubscribeQuery, SubscribeRequest, SubscriptionResponse,
};
use super::extract::{AuthUser, JsonBody, MaybeJson, MaybeUser, P, Q};
use super::{NO_STORE, cache, ensure_owner, sub_dto};
use crate::Api;
use crate::bans::BanInfo;
use crate::http::problem::Problem;
use crate::subscriptions::SubscribeOutcome;

/// The caller's follow, subscription and ban state on a channel (all false/null without a
/// token).
#[utoipa::path(
    get, path = "/api/channels/{channelID}/relationship", tag = "relationship",
    params(("channelID" = String, Path, description = "Channel id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Relationship", body = RelationshipResponse,
            headers(("cache-control" = String, description = "private, no-store"))),
        (status = 401, description = "Bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn relationship(
    State(api): State<Api>,
    MaybeUser(user): MaybeUser,
    P(channel_id): P<String>,
) -> Result<Response, Problem> {
    let body = match user {
        Some(user) => {
            let r = api.relationship(&channel_id, &user.sub).await?;
            RelationshipResponse {
                is_following: r.is_following,
                subscription_info: r.subscription.map(sub_dto),
                is_banned: r.ban.is_some(),
                banned_until: r.ban.and_then(|b| b.until),
            }
        }
        None => {
            if !api.channel_exists(&channel_id).await? {
                return Err(crate::ApiError::no_channel(&channel_id).into());
            }
            RelationshipResponse {
                is_following: false,
                subscription_info: None,
                is_banned: false,
                banned_until: None,
            }
        }
    };
    Ok((cache(NO_STORE), axum::Json(body)).into_response())
}

/// `op=FOLLOW` or `op=UNFOLLOW`; idempotent.
#[utoipa::path(
    post, path = "/api/channels/{channelID}/following", tag = "relationship",
    params(("channelID" = String, Path, description = "Channel id"), FollowQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Follow state and exact follower count", body = FollowResponse),
        (status = 400, description = "Missing or bad op", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn following(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P(channel_id): P<String>,
    Q(q): Q<FollowQuery>,
) -> Result<Response, Problem> {
    let state = match q.op.as_str() {
        "FOLLOW" => api.follow(&channel_id, &user.sub).await?,
        "UNFOLLOW" => api.unfollow(&channel_id, &user.sub).await?,
        other => {
            return Err(Problem::bad_request(
                "bad-op",
                format!("op must be FOLLOW or UNFOLLOW, not {other:?}"),
            ));
        }
    };
    Ok((
        cache(NO_STORE),
        axum::Json(FollowResponse {
            is_following: state.is_following,
            follower_count: state.follower_count,
        }),
    )
        .into_response())
}

/// `op=SUBSCRIBE` with `{tier}` or `op=UNSUBSCRIBE`.
#[utoipa::path(
    post, path = "/api/channels/{channelID}/subscriptions", tag = "subscriptions",
    params(("channelID" = String, Path, description = "Channel id"), SubscribeQuery),
    request_body(content = Option<SubscribeRequest>, description = "SUBSCRIBE: the tier (default 1)"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Subscribed (payment confirmed) or unsubscribed", body = SubscriptionResponse),
        (status = 202, description = "Waiting for payment", body = PendingPaymentResponse),
        (status = 400, description = "Missing or bad op, malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Subscribing to one's own channel", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Bad tier", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn subscriptions(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P(channel_id): P<String>,
    Q(q): Q<SubscribeQuery>,
    MaybeJson(body): MaybeJson<SubscribeRequest>,
) -> Result<Response, Problem> {
    match q.op.as_str() {
        "SUBSCRIBE" => {
            let tier = body.map_or(1, |b| b.tier);
            match api.subscribe(&channel_id, &user.sub, tier).await? {
                SubscribeOutcome::Active(info) => Ok((
                    cache(NO_STORE),
                    axum::Json(SubscriptionResponse {
                        status: "active".into(),
                        subscription_info: Some(sub_dto(info)),
                    }),
                )
                    .into_response()),
                SubscribeOutcome::Pending {
                    payment_id,
                    payment_input_url,
                } => Ok((
                    StatusCode::ACCEPTED,
                    cache(NO_STORE),
                    axum::Json(PendingPaymentResponse {
                        status: "pending".into(),
                        payment_id,
                        payment_input_url,
                    }),
                )
                    .into_response()),
            }
        }
        "UNSUBSCRIBE" => {
            // The tier is not needed here, but a bad one is still bad input.
            if let Some(b) = &body {
                crate::subscriptions::check_tier(b.tier)?;
            }
            let info = api.unsubscribe(&channel_id, &user.sub).await?;
            Ok((
                cache(NO_STORE),
                axum::Json(SubscriptionResponse {
                    status: if info.is_some() { "cancelled" } else { "none" }.into(),
                    subscription_info: info.map(sub_dto),
                }),
            )
                .into_response())
        }
        other => Err(Problem::bad_request(
            "bad-op",
            format!("op must be SUBSCRIBE or UNSUBSCRIBE, not {other:?}"),
        )),
    }
}

fn ban_dto(channel_id: &str, b: BanInfo) -> BanResponse {
    BanResponse {
        channel_id: channel_id.to_string(),
        user_id: b.user_id,
        banned_until: b.until,
        reason: b.reason,
        banned_by: b.banned_by,
        banned_at: b.banned_at,
    }
}

/// Bans a user, or times them out with `durationSeconds` (owner only).
#[utoipa::path(
    post, path = "/api/channels/{channelID}/bans", tag = "bans",
    params(("channelID" = String, Path, description = "Channel id")),
    request_body = BanRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Banned", body = BanResponse),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner; or banning the owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Bad user id, duration or reason", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn ban(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P(channel_id): P<String>,
    JsonBody(req): JsonBody<BanRequest>,
) -> Result<Response, Problem> {
    let ch = api.require_channel(&channel_id).await?;
    ensure_owner(&user, &ch)?;
    let info = api
        .ban(
            &channel_id,
            &req.user_id,
            &user.sub,
            req.duration_seconds
                .map(|d| Duration::from_secs(u64::try_from(d).unwrap_or(0))),
            req.reason,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        cache(NO_STORE),
        axum::Json(ban_dto(&channel_id, info)),
    )
        .into_response())
}

/// Bans and timeouts in force (owner only).
#[utoipa::path(
    get, path = "/api/channels/{channelID}/bans", tag = "bans",
    params(("channelID" = String, Path, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Bans", body = BanList),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list_bans(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P(channel_id): P<String>,
) -> Result<Response, Problem> {
    let ch = api.require_channel(&channel_id).await?;
    ensure_owner(&user, &ch)?;
    let bans = api
        .list_bans(&channel_id)
        .await?
        .into_iter()
        .map(|b| ban_dto(&channel_id, b))
        .collect();
    Ok((cache(NO_STORE), axum::Json(BanList { bans })).into_response())
}

/// Lifts a ban or timeout (owner only); idempotent.
#[utoipa::path(
    delete, path = "/api/channels/{channelID}/bans/{userID}", tag = "bans",
    params(
        ("channelID" = String, Path, description = "Channel id"),
        ("userID" = String, Path, description = "Banned user"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Not banned any more"),
        (status = 401, description = "No or bad token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown channel", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn unban(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    P((channel_id, user_id)): P<(String, String)>,
) -> Result<Response, Problem> {
    let ch = api.require_channel(&channel_id).await?;
    ensure_owner(&user, &ch)?;
    api.unban(&channel_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
