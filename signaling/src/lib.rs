//! onair signaling: WHIP (RFC 9725) ingest and WHEP egress over HTTP, on top of the media plane.
//!
//! Handlers are thin: check the HTTP contract, ask [`sdp`] for a media plan, ask the SFU for a
//! session, answer. A background task turns media-plane events into live-stream rows, watcher
//! counts and WHEP server-sent events.

pub mod http;
pub mod sdp;
pub mod sessions;
mod whep;
mod whip;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use onair_api::Api;
use onair_sfu::{Role, Sfu, SfuEvent};
use sessions::{Kind, Sessions, SseEvent};

/// The signaling service: shared by every handler.
#[derive(Clone)]
pub struct Signaling {
    inner: Arc<Inner>,
}

struct Inner {
    sfu: Sfu,
    api: Api,
    sessions: Sessions,
    fallback_base: String,
}

impl Signaling {
    /// Signaling over `sfu` with channels and accounts from `api`. `fallback_base` is the URL
    /// used in `Location` when a request carries no `Host`.
    pub fn new(sfu: Sfu, api: Api, fallback_base: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                sfu,
                api,
                sessions: Sessions::default(),
                fallback_base,
            }),
        }
    }

    /// The WHIP and WHEP routes.
    pub fn router(&self) -> Router {
        use axum::routing::MethodRouter;
        let not_allowed =
            |allow: &'static str| move || async move { http::method_not_allowed(allow) };
        let whip_ep: MethodRouter<Signaling> = post(whip::post)
            .get(whip::get)
            .fallback(not_allowed("POST, GET, OPTIONS"));
        let whip_session: MethodRouter<Signaling> = axum::routing::patch(whip::patch)
            .delete(whip::delete)
            .get(whip::get)
            .fallback(not_allowed("PATCH, DELETE, GET, OPTIONS"));
        let whep_ep: MethodRouter<Signaling> = post(whep::post)
            .get(whep::head)
            .fallback(not_allowed("POST, GET, HEAD, OPTIONS"));
        let whep_session: MethodRouter<Signaling> = axum::routing::patch(whep::patch)
            .delete(whep::delete)
            .get(whip::get)
            .fallback(not_allowed("PATCH, DELETE, GET, OPTIONS"));
        Router::new()
            .route("/whip/{channel}", whip_ep)
            .route("/whip/{channel}/{session}", whip_session)
            .route("/whep/{channel}", whep_ep)
            .route("/whep/{channel}/{session}", whep_session)
            .route("/whep/{channel}/{session}/sse", post(whep::sse_create))
            .route(
                "/whep/{channel}/{session}/sse/{stream}",
                get(whep::sse_get).delete(whep::sse_delete),
            )
            .route(
                "/whep/{channel}/{session}/layer",
                post(whep::layer_select).delete(whep::layer_auto),
            )
            .layer(axum::middleware::from_fn(http::cors))
            .with_state(self.clone())
    }

    /// The media plane.
    pub fn sfu(&self) -> &Sfu {
        &self.inner.sfu
    }

    /// Kind, channel and signed-in viewer of a peer's session (the chat bridge asks).
    pub fn peer_session(
        &self,
        peer: onair_sfu::PeerId,
    ) -> Option<(Kind, String, Option<onair_api::Claims>)> {
        self.inner.sessions.by_peer(peer)
    }

    /// Live sessions (WHIP and WHEP) on this node.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.ids().len()
    }

    /// Keeps live-stream rows, watcher counts and SSE clients in step with the media plane, and
    /// ends a channel's publisher when its stream key is rotated. Runs until the process ends.
    pub fn spawn_event_pump(&self) -> tokio::task::JoinHandle<()> {
        let s = self.clone();
        let mut sfu_events = s.inner.sfu.subscribe();
        let mut api_events = s.inner.api.subscribe_events();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = sfu_events.recv() => match e {
                        Ok(e) => s.on_sfu_event(e).await,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "signaling lagged behind media-plane events");
                        }
                        Err(_) => break,
                    },
                    e = api_events.recv() => match e {
                        Ok(onair_api::ChannelEvent::StreamKeyRotated { channel_id }) => {
                            for peer in s.inner.sessions.peers(Kind::Whip, &channel_id) {
                                tracing::info!(channel = %channel_id, "stream key rotated; ending the publisher");
                                let _ = s.inner.sfu.close(peer);
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                }
            }
        })
    }

    async fn on_sfu_event(&self, e: SfuEvent) {
        let sessions = &self.inner.sessions;
        match e {
            SfuEvent::Live { channel } => {
                sessions.broadcast(
                    &channel,
                    SseEvent {
                        kind: "active",
                        data: serde_json::json!({}),
                    },
                );
            }
            SfuEvent::Offline { channel } => {
                sessions.broadcast(
                    &channel,
                    SseEvent {
                        kind: "inactive",
                        data: serde_json::json!({}),
                    },
                );
            }
            SfuEvent::Viewers { channel, count } => {
                self.inner
                    .api
                    .live()
                    .set_viewer_count(&channel, count as u64);
                sessions.broadcast(
                    &channel,
                    SseEvent {
                        kind: "viewercount",
                        data: serde_json::json!({ "viewercount": count }),
                    },
                );
            }
            SfuEvent::Layers { channel, layers } => {
                let list: Vec<serde_json::Value> = layers
                    .iter()
                    .map(|l| serde_json::json!({ "rid": l.rid, "bitrate": l.bitrate, "targetBitrate": l.bitrate }))
                    .collect();
                sessions.broadcast(
                    &channel,
                    SseEvent {
                        kind: "layers",
                        data: serde_json::json!({ "1": list }),
                    },
                );
            }
            SfuEvent::PeerClosed { peer, role, .. } => {
                if let Some(sess) = sessions.remove_peer(peer)
                    && role == Role::Publisher
                {
                    self.end_stream(&sess).await;
                }
            }
            _ => {}
        }
    }

    /// Closes the Livestream row a publisher session opened.
    pub(crate) async fn end_stream(&self, sess: &sessions::Session) {
        if let Some(sid) = sess.stream
            && let Err(e) = self.inner.api.live().stream_ended(sid).await
        {
            tracing::warn!(error = %e, "could not end the live stream row");
        }
    }

    /// Ends every session (DELETE semantics) and the live-stream rows of publishers, then stops
    /// the media plane, waiting up to `grace` for goodbyes to be sent.
    pub async fn shutdown(&self, grace: Duration) {
        let ids = self.inner.sessions.ids();
        for id in ids {
            if let Some(s) = self.inner.sessions.remove(&id) {
                self.end_stream(&s).await;
            }
        }
        let sfu = self.inner.sfu.clone();
        let _ = tokio::task::spawn_blocking(move || sfu.shutdown(grace)).await;
    }
}
