//! The HTTP edge of the HLS fallback: playlists with blocking reload and delta updates, media
//! parts and segments (a hinted part blocks until it is complete), VOD from the data dir or
//! object storage (finished recordings move there), signed URLs for channels that require them,
//! and counting of HLS playback sessions.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{FromRef, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use onair_api::Api;
use onair_api::events::ChannelEvent;
use onair_api::http::extract::{MaybeUser, P};
use onair_api::http::problem::Problem;
use onair_api::live::StreamId;
use parking_lot::Mutex;
use serde::Serialize;

use crate::config::HlsConfig;
use crate::live::{Hls, Stream, latest_recording, multivariant};
use crate::playlist::{
    Availability, DeliveryDirectives, MediaPlaylistParams, MediaUri, MultivariantError,
    ReloadDecision, passthrough_query_suffix, with_uri_suffix,
};
use crate::retention;
use crate::signing::{TOKEN_PARAM, TokenError, UrlSigner, query_param};
use crate::storage::{MASTER, Storage, StorageError};
use crate::viewers::{PlaybackSessions, SESSION_PARAM, new_session_id};

/// How long a channel's "requires signed URLs" setting is cached (a change reaches every node
/// within this time).
const POLICY_TTL: Duration = Duration::from_secs(5);
/// How often idle playback sessions are swept and counts published.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// How often recordings are checked against the retention setting.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often finished local recordings that are not in object storage yet (left by a crash or
/// a failed upload) are moved there; the first pass runs at start-up.
const OFFLOAD_EVERY: Duration = Duration::from_secs(300);
/// How long an ended broadcast's recording may take to be finalised before its move is left
/// to the periodic pass.
const FINISH_WAIT: Duration = Duration::from_secs(60);
/// How long a channel's newest recording in object storage is cached (the offline
/// `master.m3u8` fallback would otherwise list the bucket on every request).
const LATEST_TTL: Duration = Duration::from_secs(5);
/// Most recordings listed by `GET /api/channels/{channelID}/videos`.
const VIDEOS_MAX: u64 = 50;
/// The watcher-count source name of HLS sessions.
const WATCHER_SOURCE: &str = "hls";

/// A channel's newest recording in object storage, and when it was looked up.
type LatestCache = HashMap<String, (Option<String>, Instant)>;

/// State of the HLS routes.
#[derive(Clone)]
struct HlsHttp {
    hls: Hls,
    api: Api,
    signer: UrlSigner,
    ttl: Duration,
    sessions: Arc<Mutex<PlaybackSessions>>,
    policies: Arc<Mutex<HashMap<String, (bool, Instant)>>>,
    retention: Option<Duration>,
    root: PathBuf,
    storage: Storage,
    /// Recordings (channel, id) being moved to object storage.
    moving: Arc<Mutex<HashSet<(String, String)>>>,
    /// A channel's newest recording in object storage, and when it was looked up.
    latest: Arc<Mutex<LatestCache>>,
}

impl FromRef<HlsHttp> for Api {
    fn from_ref(s: &HlsHttp) -> Api {
        s.api.clone()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HlsHttp {
    /// Whether `channel` requires signed URLs (`None`: no such channel).
    async fn requires_signing(&self, channel: &str) -> Result<Option<bool>, Response> {
        if let Some((b, at)) = self.policies.lock().get(channel)
            && at.elapsed() < POLICY_TTL
        {
            return Ok(Some(*b));
        }
        match self.api.channel(channel).await {
            Ok(Some(ch)) => {
                self.policies
                    .lock()
                    .insert(channel.to_string(), (ch.require_signed_hls, Instant::now()));
                Ok(Some(ch.require_signed_hls))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Problem::from(e).into_response()),
        }
    }

    /// 404 for an unknown channel, 403 when the channel requires a valid token and the query
    /// has none.
    async fn check_access(&self, channel: &str, query: &str) -> Result<(), Response> {
        match self.requires_signing(channel).await? {
            None => Err(problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such channel",
            )),
            Some(false) => Ok(()),
            Some(true) => self
                .signer
                .verify(channel, query_param(query, TOKEN_PARAM), unix_now())
                .map_err(|e| {
                    let slug = match e {
                        TokenError::Missing => "hls-token-missing",
                        TokenError::Forged => "hls-token-invalid",
                        TokenError::Expired => "hls-token-expired",
                    };
                    problem(StatusCode::FORBIDDEN, slug, &e.to_string())
                }),
        }
    }

    /// Counts a request of a live stream's playback session.
    fn touch(&self, channel: &str, query: &str) {
        if let Some(sid) = query_param(query, SESSION_PARAM).filter(|s| valid_name(s)) {
            self.sessions.lock().touch(channel, sid, Instant::now());
        }
    }

    /// Until the router is dropped: publishes HLS session counts to the watcher count, and
    /// forgets a channel's cached policy when this node changes the channel.
    fn spawn_sweeper(&self) {
        let sessions = Arc::downgrade(&self.sessions);
        let policies = Arc::downgrade(&self.policies);
        let api = self.api.clone();
        let mut events = api.subscribe_events();
        let hls = self.hls.clone();
        let retention = self.retention;
        let mover = Mover {
            storage: self.storage.clone(),
            moving: self.moving.clone(),
            latest: self.latest.clone(),
        };
        let root = self.root.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            let mut offload = tokio::time::interval(OFFLOAD_EVERY);
            loop {
                tokio::select! {
                    _ = offload.tick(), if mover.storage.is_remote() => {
                        offload_finished(&hls, &mover, &root).await;
                    }
                    _ = prune.tick(), if retention.is_some() => {
                        if let Some(keep) = retention {
                            prune_recordings(&hls, &api, &mover, &root, keep).await;
                        }
                    }
                    _ = tick.tick() => {
                        let Some(sessions) = sessions.upgrade() else {
                            return;
                        };
                        let changed = sessions.lock().sweep(Instant::now());
                        for (channel, n) in changed {
                            api.live().set_viewer_count_from(WATCHER_SOURCE, &channel, n);
                        }
                    }
                    e = events.recv() => {
                        let Some(policies) = policies.upgrade() else {
                            return;
                        };
                        match e {
                            Ok(ChannelEvent::ChannelUpdated { channel_id }) => {
                                policies.lock().remove(&channel_id);
                            }
                            Ok(ChannelEvent::StreamEnded { channel_id, stream_id }) => {
                                attach_recording(&hls, &api, &channel_id, stream_id).await;
                                if mover.storage.is_remote()
                                    && let Some(stream) = hls.stream(&channel_id)
                                    && let Some((id, _)) = recording_id(&stream.dir)
                                {
                                    mover.spawn(channel_id, id, Some(stream));
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                policies.lock().clear();
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            Ok(_) => {}
                        }
                    }
                }
            }
        });
    }
}

const PLAYLIST: &str = "application/vnd.apple.mpegurl";

fn problem(status: StatusCode, slug: &str, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    Problem::new(status, slug, title)
        .detail(detail)
        .into_response()
}

fn body(content_type: &'static str, cache: &'static str, bytes: impl Into<Body>) -> Response {
    let mut r = Response::new(bytes.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn media_type(file: &str) -> &'static str {
    if file.ends_with(".m3u8") {
        PLAYLIST
    } else {
        "video/mp4"
    }
}

/// Links an ended broadcast to the recording this node made of it.
async fn attach_recording(hls: &Hls, api: &Api, channel: &str, stream_id: StreamId) {
    let Some(stream) = hls.stream(channel) else {
        return;
    };
    let Some((id, started)) = recording_id(&stream.dir) else {
        return;
    };
    match api.attach_recording(stream_id, &id, started).await {
        Ok(true) => tracing::info!(channel, recording = %id, %stream_id, "recording kept"),
        Ok(false) => {}
        Err(e) => tracing::warn!(channel, error = %e, "cannot link the recording"),
    }
}

/// A recording directory's id and start time (its name is the start in Unix milliseconds).
fn recording_id(dir: &Path) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let id = dir.file_name()?.to_str()?.to_string();
    let ms: i64 = id.parse().ok()?;
    Some((id, chrono::DateTime::from_timestamp_millis(ms)?))
}

/// Moves finished recordings to object storage, one task per recording, never two at once for
/// the same one.
#[derive(Clone)]
struct Mover {
    storage: Storage,
    moving: Arc<Mutex<HashSet<(String, String)>>>,
    latest: Arc<Mutex<LatestCache>>,
}

impl Mover {
    /// Moves recording `id` of `channel` once it is finished (`stream`: wait for it to end).
    fn spawn(&self, channel: String, id: String, stream: Option<Arc<Stream>>) {
        let key = (channel, id);
        if !self.moving.lock().insert(key.clone()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let (channel, id) = &key;
            let master = this.storage.local_dir(channel, id).join(MASTER);
            if let Some(stream) = stream {
                // The broadcast row can end a moment before the packager sees the publisher go.
                let deadline = Instant::now() + FINISH_WAIT;
                while !(stream.ended() && master.is_file()) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            match this.storage.offload(channel, id).await {
                Ok(true) => {
                    this.latest.lock().remove(channel);
                    tracing::info!(%channel, recording = %id, to = %this.storage.location(), "recording moved to object storage");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%channel, recording = %id, error = %e, "cannot move the recording to object storage; the local copy stays")
                }
            }
            this.moving.lock().remove(&key);
        });
    }
}

/// Starts moving every finished local recording (left by a crash or a failed upload).
async fn offload_finished(hls: &Hls, mover: &Mover, root: &Path) {
    let root = root.to_path_buf();
    let Ok(dirs) = tokio::task::spawn_blocking(move || {
        retention::scan(&root)
            .into_iter()
            .filter(|d| d.path.join(MASTER).is_file())
            .collect::<Vec<_>>()
    })
    .await
    else {
        return;
    };
    for d in dirs {
        let stream = hls.stream(&d.channel).filter(|s| s.dir == d.path);
        mover.spawn(d.channel, d.id, stream);
    }
}

/// Deletes recordings past `keep`, locally and in object storage (never one being written or
/// moved), and unlinks them.
async fn prune_recordings(hls: &Hls, api: &Api, mover: &Mover, root: &Path, keep: Duration) {
    let scan_root = root.to_path_buf();
    let Ok(local) = tokio::task::spawn_blocking(move || retention::scan(&scan_root)).await else {
        return;
    };
    let stored = match mover.storage.list_recordings().await {
        Ok(list) => list,
        Err(e) => {
            // Local ones can still go; the bucket's wait for the next pass.
            tracing::warn!(error = %e, "cannot list recordings in object storage");
            Vec::new()
        }
    };
    let dirs = retention::merge(
        local,
        stored
            .into_iter()
            .map(|r| (r.channel, r.id, r.last_modified)),
        root,
    );
    let mut busy: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| hls.stream(&d.channel))
        .filter(|s| !s.ended())
        .map(|s| s.dir.clone())
        .collect();
    busy.extend(
        mover
            .moving
            .lock()
            .iter()
            .map(|(channel, id)| root.join(channel).join(id)),
    );
    for d in retention::expired(&dirs, &busy, SystemTime::now(), keep) {
        match mover.storage.delete_recording(&d.channel, &d.id).await {
            Ok(()) => {
                mover.latest.lock().remove(&d.channel);
                tracing::info!(channel = %d.channel, recording = %d.id, "recording expired");
                if let Err(e) = api.forget_recording(&d.channel, &d.id).await {
                    tracing::warn!(error = %e, "cannot unlink an expired recording");
                }
            }
            Err(e) => {
                tracing::warn!(channel = %d.channel, recording = %d.id, error = %e, "cannot delete an expired recording")
            }
        }
    }
}

impl Hls {
    /// The HLS routes, and `GET /api/channels/{channelID}/hls` that hands out (signed) URLs
    /// (`config` is the one this service started with).
    pub fn router(&self, api: Api, config: &HlsConfig) -> Router {
        let storage = match Storage::open(config.root.clone(), config.storage.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                // Recordings stay on local disk, still durable there; the log says why.
                tracing::error!(error = %e, "cannot open object storage; keeping recordings on local disk");
                Storage::local(config.root.clone())
            }
        };
        if storage.is_remote() {
            tracing::info!(to = %storage.location(), "finished recordings move to object storage");
        }
        let state = HlsHttp {
            hls: self.clone(),
            api,
            signer: UrlSigner::new(config.signing_secret.clone()),
            ttl: config.signed_url_ttl,
            sessions: Arc::default(),
            policies: Arc::default(),
            retention: config.retention,
            root: config.root.clone(),
            storage,
            moving: Arc::default(),
            latest: Arc::default(),
        };
        state.spawn_sweeper();
        Router::new()
            .route("/hls/{channel}/master.m3u8", get(master))
            .route("/hls/{channel}/{rendition}/{file}", get(rendition_file))
            .route("/hls/{channel}/vod/{recording}/{file}", get(vod_master))
            .route(
                "/hls/{channel}/vod/{recording}/{rendition}/{file}",
                get(vod_file),
            )
            .route("/api/channels/{channel}/hls", get(playback_url))
            .route("/api/channels/{channel}/videos", get(videos))
            .with_state(state)
    }
}

/// `GET /api/channels/{channelID}/hls`.
#[derive(Serialize)]
struct PlaybackUrl {
    /// The multivariant playlist, relative to this server.
    url: String,
    /// Whether `url` carries a token.
    signed: bool,
    /// When the token expires (RFC 3339); null when unsigned.
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
}

impl HlsHttp {
    /// The query (`""` or `?token=…`) that opens `channel`'s HLS for `user`, with its expiry:
    /// a token for a logged-in viewer who is not banned when the channel requires one.
    async fn access_query(
        &self,
        channel: &str,
        user: Option<&onair_api::auth::Claims>,
    ) -> Result<(String, Option<String>), Problem> {
        let requires = match self.requires_signing(channel).await {
            Ok(r) => r,
            Err(_) => return Err(Problem::internal("cannot read the channel")),
        };
        match requires {
            None => Err(Problem::not_found(format!(
                "channel {channel} does not exist"
            ))),
            Some(false) => Ok((String::new(), None)),
            Some(true) => {
                let user = user.ok_or_else(|| {
                    Problem::unauthorized("this channel's HLS needs a logged-in viewer", false)
                })?;
                if self.api.is_banned(channel, &user.sub).await?.is_some() {
                    return Err(Problem::forbidden("you are banned from this channel"));
                }
                let expires = unix_now().saturating_add(self.ttl.as_secs());
                let token = self.signer.sign(channel, expires);
                let at = i64::try_from(expires)
                    .ok()
                    .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
                    .map(|t| t.to_rfc3339());
                Ok((format!("?{TOKEN_PARAM}={token}"), at))
            }
        }
    }
}

fn no_store(json: impl Serialize) -> Response {
    let mut r = Json(json).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The HLS URL of a channel: signed (for a logged-in viewer who is not banned) when the channel
/// requires it, plain otherwise.
async fn playback_url(
    State(s): State<HlsHttp>,
    MaybeUser(user): MaybeUser,
    P(channel): P<String>,
) -> Result<Response, Problem> {
    let (query, expires_at) = s.access_query(&channel, user.as_ref()).await?;
    Ok(no_store(PlaybackUrl {
        url: format!("/hls/{channel}/master.m3u8{query}"),
        signed: expires_at.is_some(),
        expires_at,
    }))
}

/// One recorded broadcast.
#[derive(Serialize)]
struct Video {
    #[serde(rename = "streamID")]
    stream_id: String,
    title: String,
    #[serde(rename = "startedAt")]
    started_at: String,
    #[serde(rename = "endedAt")]
    ended_at: Option<String>,
    #[serde(rename = "peakViewers")]
    peak_viewers: u64,
    /// The VOD multivariant playlist (signed when the channel requires it).
    url: String,
}

/// `GET /api/channels/{channelID}/videos`: ended broadcasts kept as VOD, newest first.
async fn videos(
    State(s): State<HlsHttp>,
    MaybeUser(user): MaybeUser,
    P(channel): P<String>,
) -> Result<Response, Problem> {
    let (query, _) = s.access_query(&channel, user.as_ref()).await?;
    let list = s.api.recordings(&channel, VIDEOS_MAX).await?;
    let videos: Vec<Video> = list
        .into_iter()
        .map(|r| Video {
            url: format!("/hls/{channel}/vod/{}/master.m3u8{query}", r.recording),
            stream_id: r.stream_id,
            title: r.title,
            started_at: r.started_at.to_rfc3339(),
            ended_at: r.ended_at.map(|t| t.to_rfc3339()),
            peak_viewers: r.peak_viewers,
        })
        .collect();
    Ok(no_store(serde_json::json!({ "videos": videos })))
}

/// `GET /hls/{channel}/vod/{recording}/master.m3u8`: a recorded stream's multivariant playlist.
async fn vod_master(
    State(s): State<HlsHttp>,
    UrlPath((channel, recording, file)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    vod(s, &channel, &recording, None, &file, q.unwrap_or_default()).await
}

/// `GET /hls/{channel}/vod/{recording}/{rendition}/{file}`.
async fn vod_file(
    State(s): State<HlsHttp>,
    UrlPath((channel, recording, rendition, file)): UrlPath<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    vod(
        s,
        &channel,
        &recording,
        Some(&rendition),
        &file,
        q.unwrap_or_default(),
    )
    .await
}

async fn vod(
    s: HlsHttp,
    channel: &str,
    recording: &str,
    rendition: Option<&str>,
    file: &str,
    query: String,
) -> Response {
    let names_ok = [channel, recording, file]
        .into_iter()
        .chain(rendition)
        .all(valid_name);
    let rel = match rendition {
        Some(r) => format!("{r}/{file}"),
        None if file == MASTER => file.to_string(),
        None => String::new(),
    };
    // Only ended recordings: a stream still being written has no VOD playlists yet. (Master
    // first: a finished recording's local copy may vanish in between as it moves to the bucket.)
    let dir = s.storage.local_dir(channel, recording);
    let unfinished = names_ok && !dir.join(MASTER).is_file() && dir.is_dir();
    if !names_ok || rel.is_empty() || recording.parse::<u64>().is_err() || unfinished {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such recording");
    }
    if let Err(r) = s.check_access(channel, &query).await {
        return r;
    }
    from_store(&s, channel, recording, &rel, &query).await
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !s.starts_with('.')
}

/// A recorded file (`rel`: `master.m3u8` or `<rendition>/<file>`) from local disk or object
/// storage; playlists get the request's pass-through query (a token) on their URIs.
async fn from_store(
    s: &HlsHttp,
    channel: &str,
    recording: &str,
    rel: &str,
    query: &str,
) -> Response {
    match s.storage.get(channel, recording, rel).await {
        Ok(b) if rel.ends_with(".m3u8") => {
            let text = String::from_utf8_lossy(&b);
            let text = with_uri_suffix(&text, &passthrough_query_suffix(query));
            body(PLAYLIST, "public, max-age=60", text)
        }
        Ok(b) => body(media_type(rel), "public, max-age=60", b),
        Err(StorageError::NotFound) => {
            problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource")
        }
        Err(e) => {
            tracing::warn!(channel, recording, rel, error = %e, "cannot read a recording");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "the recording cannot be read right now; retry",
            )
        }
    }
}

impl HlsHttp {
    /// The id of a channel's newest finished recording, on local disk or in object storage.
    async fn latest_recording(&self, channel: &str) -> Option<String> {
        let local = latest_recording(&self.hls.channel_dir(channel))
            .and_then(|dir| recording_id(&dir))
            .map(|(id, _)| id);
        let remote = if self.storage.is_remote() {
            self.latest_stored(channel).await
        } else {
            None
        };
        [local, remote]
            .into_iter()
            .flatten()
            .max_by_key(|id| id.parse::<u64>().unwrap_or(0))
    }

    async fn latest_stored(&self, channel: &str) -> Option<String> {
        if let Some((id, at)) = self.latest.lock().get(channel)
            && at.elapsed() < LATEST_TTL
        {
            return id.clone();
        }
        match self.storage.latest_recording(channel).await {
            Ok(id) => {
                self.latest
                    .lock()
                    .insert(channel.to_string(), (id.clone(), Instant::now()));
                id
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "cannot list recordings in object storage");
                None
            }
        }
    }
}

/// `GET /hls/{channel}/master.m3u8`: the live ladder, or the last recording as VOD.
async fn master(
    State(s): State<HlsHttp>,
    UrlPath(channel): UrlPath<String>,
    RawQuery(q): RawQuery,
) -> Response {
    if !valid_name(&channel) {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such channel");
    }
    let query = q.unwrap_or_default();
    if let Err(r) = s.check_access(&channel, &query).await {
        return r;
    }
    let hls = &s.hls;
    if let Some(stream) = hls.stream(&channel)
        && !stream.ended()
    {
        // Each player gets a session id that every URI it follows carries back, so it counts
        // as a watcher while it polls its media playlists (a master fetch alone does not).
        let mut query = query;
        if query_param(&query, SESSION_PARAM).is_none() {
            let sep = if query.is_empty() { "" } else { "&" };
            query = format!("{query}{sep}{SESSION_PARAM}={}", new_session_id());
        }
        let suffix = passthrough_query_suffix(&query);
        let text =
            stream.with(|list, _| (!list.is_empty()).then(|| multivariant(list).render(&suffix)));
        return match text {
            Some(Ok(t)) => body(PLAYLIST, "no-cache", t),
            // Audio is packaged but no video rendition has its first keyframe yet.
            Some(Err(MultivariantError::NoVariants)) | None => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "the stream is starting; retry in a second",
            ),
            Some(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, "ladder", &e.to_string()),
        };
    }
    match s.latest_recording(&channel).await {
        Some(id) => from_store(&s, &channel, &id, MASTER, &query).await,
        None => problem(
            StatusCode::NOT_FOUND,
            "not-live",
            "the channel is not live and has no recording",
        ),
    }
}

/// `GET /hls/{channel}/{rendition}/{file}`: `index.m3u8` (blocking reload, delta updates) or
/// `init.mp4`, `seg{n}.m4s`, `part{n}.{i}.m4s`.
async fn rendition_file(
    State(s): State<HlsHttp>,
    UrlPath((channel, rendition, file)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if !valid_name(&channel) || !valid_name(&rendition) || !valid_name(&file) {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource");
    }
    let query = q.unwrap_or_default();
    if let Err(r) = s.check_access(&channel, &query).await {
        return r;
    }
    let hls = &s.hls;
    let rel = format!("{rendition}/{file}");
    let Some(stream) = hls.stream(&channel) else {
        return match s.latest_recording(&channel).await {
            Some(id) => from_store(&s, &channel, &id, &rel, &query).await,
            None => problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource"),
        };
    };
    let Some((recording, _)) = recording_id(&stream.dir) else {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource");
    };
    // What is no longer in memory is on disk, or in object storage once the recording moved.
    let stored = from_store(&s, &channel, &recording, &rel, &query);
    if !stream.ended() {
        s.touch(&channel, &query);
    }
    if file == "index.m3u8" {
        return playlist(&stream, &rendition, &query, stored).await;
    }
    let Some(uri) = MediaUri::parse(&file) else {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource");
    };
    let mut changed = stream.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let found = stream.with(|list, _| {
            let r = list.iter().find(|r| r.info.name == rendition)?;
            Some(match r.media(uri) {
                Some(b) => Ok(b),
                None => Err(r.timeline.availability(uri)),
            })
        });
        match found {
            Some(Ok(b)) => return body("video/mp4", "public, max-age=60", b),
            Some(Err(Availability::Pending)) => {
                if tokio::time::timeout_at(deadline, changed.changed())
                    .await
                    .is_err()
                {
                    return problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the part did not complete in time",
                    );
                }
            }
            _ => return stored.await,
        }
    }
}

async fn playlist(
    stream: &Stream,
    rendition: &str,
    query: &str,
    stored: impl Future<Output = Response>,
) -> Response {
    let directives = match DeliveryDirectives::parse(query) {
        Ok(d) => d,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-directive", &e.to_string()),
    };
    let suffix = passthrough_query_suffix(query);
    let mut changed = stream.subscribe();
    let start = tokio::time::Instant::now();
    loop {
        let outcome = stream.with(|list, timing| {
            let r = list.iter().find(|r| r.info.name == rendition)?;
            Some(match r.timeline.reload_decision(&directives) {
                ReloadDecision::Ready => {
                    let reports: Vec<_> = list
                        .iter()
                        .filter(|o| o.info.name != rendition)
                        .filter_map(|o| {
                            o.timeline
                                .rendition_report(format!("../{}/index.m3u8", o.info.name))
                        })
                        .collect();
                    Ok(r.timeline.render_media_playlist(&MediaPlaylistParams {
                        delta: directives.wants_delta(),
                        uri_suffix: &suffix,
                        rendition_reports: &reports,
                        ladder_timing: timing,
                    }))
                }
                other => Err(other),
            })
        });
        match outcome {
            None => return stored.await,
            Some(Ok(Some(text))) => return body(PLAYLIST, "no-cache", Bytes::from(text)),
            Some(Ok(None)) => {
                // No complete segment yet: wait like a blocked request would.
                if tokio::time::timeout(Duration::from_secs(6), changed.changed())
                    .await
                    .is_err()
                {
                    return problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "starting",
                        "the stream has no segment yet",
                    );
                }
            }
            Some(Err(ReloadDecision::BadRequest)) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "out-of-range",
                    "_HLS_msn/_HLS_part is beyond what this playlist can reach",
                );
            }
            Some(Err(ReloadDecision::Wait { timeout })) => {
                let left = timeout.saturating_sub(start.elapsed());
                if tokio::time::timeout(left, changed.changed()).await.is_err() {
                    return problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the requested segment or part did not appear in time",
                    );
                }
            }
            Some(Err(ReloadDecision::Ready)) => {}
        }
    }
}
