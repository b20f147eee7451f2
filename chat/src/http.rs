//! The HTTP edge of chat: the WebSocket transport, history, settings and emotes. Handlers are
//! thin: extract, call the chat service, map errors to RFC 9457 problems.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt as _, StreamExt as _};
use onair_api::Api;
use onair_api::http::extract::{AuthUser, JsonBody, MaybeUser, P, Q};
use onair_api::http::problem::Problem;
use serde::{Deserialize, Serialize};

use crate::conn::{self, Incoming, Transport};
use crate::protocol::{ChatMessage, MAX_CLIENT_FRAME};
use crate::rules::MAX_SLOW_MODE_SECS;
use crate::{Chat, ChatError, emotes};

impl FromRef<Chat> for Api {
    fn from_ref(chat: &Chat) -> Api {
        chat.inner.api.clone()
    }
}

impl From<ChatError> for Problem {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::NoChannel(c) => Problem::not_found(format!("channel {c} does not exist")),
            ChatError::Api(e) => e.into(),
            ChatError::Store(e) => Problem::internal(e),
        }
    }
}

/// 404 unless the channel exists.
async fn require_channel(chat: &Chat, channel: &str) -> Result<(), Problem> {
    if chat
        .api()
        .channel_exists(channel)
        .await
        .map_err(Problem::from)?
    {
        Ok(())
    } else {
        Err(ChatError::NoChannel(channel.to_string()).into())
    }
}

/// Most messages per history page.
pub const HISTORY_MAX: u64 = 100;
const HISTORY_DEFAULT: u64 = 50;

impl Chat {
    /// The chat routes (state included).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/channels/{channel}/live-stream", get(websocket))
            .route("/api/channels/{channel}/live-stream/messages", get(history))
            .route(
                "/api/channels/{channel}/chat/settings",
                get(get_settings).put(put_settings),
            )
            .route("/api/emotes", get(list_emotes))
            .route("/emotes/{file}", get(emote_svg))
            .with_state(self.clone())
    }
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// `GET /api/channels/{id}/live-stream`: the chat WebSocket. Identity from `?token=`, an
/// `Authorization: Bearer` header, or a later `auth` frame.
async fn websocket(
    State(chat): State<Chat>,
    P(channel): P<String>,
    Q(q): Q<WsQuery>,
    MaybeUser(header_user): MaybeUser,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let claims =
        match (header_user, q.token) {
            (Some(c), _) => Some(c),
            (None, Some(t)) => Some(chat.api().verify_token(&t).map_err(|_| {
                Problem::unauthorized("the token is not valid or has expired", true)
            })?),
            (None, None) => None,
        };
    require_channel(&chat, &channel).await?;
    let ws = ws.map_err(|_| {
        Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket-required",
            "Upgrade Required",
        )
        .detail("this endpoint speaks the chat protocol over a WebSocket")
        .header(header::UPGRADE, "websocket")
    })?;
    let identity = match &claims {
        Some(c) => Some(chat.identity(&channel, c).await),
        None => None,
    };
    let (conn, io) = chat
        .connect(&channel, identity, Transport::WebSocket)
        .await
        .map_err(Problem::from)?;
    Ok(ws
        .max_message_size(MAX_CLIENT_FRAME * 2)
        // Chat frames are small; tungstenite's 128 KiB default read buffer per connection is
        // most of a connection's memory.
        .read_buffer_size(4096)
        .on_upgrade(move |socket| async move {
            let (tx, rx) = socket.split();
            let incoming = rx
                .take_while(|m| std::future::ready(!matches!(m, Err(_) | Ok(Message::Close(_)))))
                .filter_map(|m| {
                    std::future::ready(match m {
                        Ok(Message::Text(t)) => Some(Incoming::Text(t.to_string())),
                        Ok(Message::Binary(_)) => Some(Incoming::Other),
                        _ => None,
                    })
                });
            conn::serve(conn, io, Box::pin(incoming), WsSink(tx)).await;
        }))
}

struct WsSink(futures::stream::SplitSink<WebSocket, Message>);

impl conn::Sink for WsSink {
    async fn send(&mut self, frames: &[Arc<str>]) -> Result<(), ()> {
        for f in frames {
            self.0
                .feed(Message::Text(f.as_ref().into()))
                .await
                .map_err(|_| ())?;
        }
        self.0.flush().await.map_err(|_| ())
    }

    async fn close(&mut self, reason: &'static str) {
        // 4008: our "too slow / policy" close code (4000-4999 are for applications).
        let _ = self
            .0
            .send(Message::Close(Some(CloseFrame {
                code: 4008,
                reason: reason.into(),
            })))
            .await;
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    next_cursor: Option<String>,
    limit: Option<String>,
}

/// A history page.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryPage {
    messages: Vec<ChatMessage>,
    /// Pass back as `nextCursor` for older messages; `null` at the beginning.
    next_cursor: Option<String>,
    limit: u64,
    /// History epoch (for `resume`).
    epoch: Option<String>,
    /// Newest offset of the channel.
    offset: u64,
}

/// `GET /api/channels/{id}/live-stream/messages?nextCursor=&limit=`: newest first. The cursor is
/// the offset (or messageID) of the oldest message the client holds.
async fn history(
    State(chat): State<Chat>,
    P(channel): P<String>,
    Q(q): Q<HistoryQuery>,
) -> Result<Response, Problem> {
    let limit = match q.limit.as_deref() {
        None | Some("") => HISTORY_DEFAULT,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=HISTORY_MAX).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid-limit",
                    format!("limit must be a whole number from 1 to {HISTORY_MAX}"),
                )
            })?,
    };
    let before = match q.next_cursor.as_deref() {
        None | Some("") => None,
        Some(c) => match c.parse::<u64>() {
            Ok(o) => Some(o),
            Err(_) => Some(
                chat.store()
                    .offset_of(&channel, c)
                    .await
                    .map_err(Problem::internal)?
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "invalid-cursor",
                            "nextCursor is not a message offset or ID of this channel",
                        )
                    })?,
            ),
        },
    };
    let page = chat
        .history(&channel, before, limit)
        .await
        .map_err(Problem::from)?;
    let next_cursor = match page.messages.last() {
        Some(m) if m.offset > 1 && page.messages.len() as u64 == limit => {
            Some(m.offset.to_string())
        }
        _ => None,
    };
    let mut r = Json(HistoryPage {
        messages: page.messages,
        next_cursor,
        limit,
        epoch: page.epoch,
        offset: page.top,
    })
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Settings {
    slow_mode_seconds: u32,
}

async fn get_settings(
    State(chat): State<Chat>,
    P(channel): P<String>,
) -> Result<Json<Settings>, Problem> {
    require_channel(&chat, &channel).await?;
    let secs = chat.slow_mode(&channel).await.map_err(Problem::from)?;
    Ok(Json(Settings {
        slow_mode_seconds: secs,
    }))
}

/// `PUT /api/channels/{id}/chat/settings` `{slowModeSeconds}` (owner only).
async fn put_settings(
    State(chat): State<Chat>,
    P(channel): P<String>,
    AuthUser(user): AuthUser,
    JsonBody(body): JsonBody<Settings>,
) -> Result<Json<Settings>, Problem> {
    let ch = chat
        .api()
        .channel(&channel)
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| Problem::not_found(format!("channel {channel} does not exist")))?;
    onair_api::http::ensure_owner(&user, &ch)?;
    if body.slow_mode_seconds > MAX_SLOW_MODE_SECS {
        return Err(Problem::unprocessable(
            "invalid-slow-mode",
            format!("slowModeSeconds must be 0 (off) to {MAX_SLOW_MODE_SECS}"),
        ));
    }
    chat.set_slow_mode(&channel, body.slow_mode_seconds)
        .await
        .map_err(Problem::from)?;
    Ok(Json(body))
}

#[derive(Serialize)]
struct EmoteDto {
    id: &'static str,
    name: &'static str,
    url: String,
}

/// `GET /api/emotes`.
async fn list_emotes() -> Response {
    let list: Vec<EmoteDto> = emotes::all()
        .iter()
        .map(|e| EmoteDto {
            id: e.id,
            name: e.name,
            url: format!("/emotes/{}.svg", e.id),
        })
        .collect();
    let mut r = Json(serde_json::json!({ "emotes": list })).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `GET /emotes/{id}.svg`.
async fn emote_svg(P(file): P<String>) -> Result<Response, Problem> {
    let emote = file
        .strip_suffix(".svg")
        .and_then(emotes::get)
        .ok_or_else(|| Problem::not_found(format!("no emote {file}")))?;
    let mut r = emote.svg.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    // An SVG opened directly must not run anything.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}
