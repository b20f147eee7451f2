//! The HTTP edge of the HLS fallback: playlists with blocking reload and delta updates, media
//! parts and segments (a hinted part blocks until it is complete), and VOD from disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use onair_api::http::problem::Problem;

use crate::live::{Hls, latest_recording, multivariant};
use crate::playlist::{
    Availability, DeliveryDirectives, MediaPlaylistParams, MediaUri, ReloadDecision,
    passthrough_query_suffix,
};

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

impl Hls {
    /// The HLS routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/hls/{channel}/master.m3u8", get(master))
            .route("/hls/{channel}/{rendition}/{file}", get(rendition_file))
            .with_state(self.clone())
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !s.starts_with('.')
}

async fn from_disk(path: PathBuf, file: &str) -> Response {
    match tokio::fs::read(&path).await {
        Ok(b) => body(media_type(file), "public, max-age=60", b),
        Err(_) => problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource"),
    }
}

fn recording(hls: &Hls, channel: &str) -> Option<PathBuf> {
    latest_recording(&hls.channel_dir(channel))
}

/// `GET /hls/{channel}/master.m3u8`: the live ladder, or the last recording as VOD.
async fn master(
    State(hls): State<Hls>,
    UrlPath(channel): UrlPath<String>,
    RawQuery(q): RawQuery,
) -> Response {
    if !valid_name(&channel) {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such channel");
    }
    let suffix = passthrough_query_suffix(q.as_deref().unwrap_or(""));
    if let Some(stream) = hls.stream(&channel)
        && !stream.ended()
    {
        let text =
            stream.with(|list, _| (!list.is_empty()).then(|| multivariant(list).render(&suffix)));
        return match text {
            Some(Ok(t)) => body(PLAYLIST, "no-cache", t),
            Some(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, "ladder", &e.to_string()),
            None => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "the stream is starting; retry in a second",
            ),
        };
    }
    match recording(&hls, &channel) {
        Some(dir) => from_disk(dir.join("master.m3u8"), "master.m3u8").await,
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
    State(hls): State<Hls>,
    UrlPath((channel, rendition, file)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if !valid_name(&channel) || !valid_name(&rendition) || !valid_name(&file) {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource");
    }
    let query = q.unwrap_or_default();
    let Some(stream) = hls.stream(&channel) else {
        return match recording(&hls, &channel) {
            Some(dir) => from_disk(dir.join(&rendition).join(&file), &file).await,
            None => problem(StatusCode::NOT_FOUND, "not-found", "no such HLS resource"),
        };
    };
    let disk = stream.dir.join(&rendition).join(&file);
    if file == "index.m3u8" {
        return playlist(&stream, &rendition, &query, &disk).await;
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
            _ => return from_disk(disk, &file).await,
        }
    }
}

async fn playlist(
    stream: &crate::live::Stream,
    rendition: &str,
    query: &str,
    disk: &Path,
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
            None => return from_disk(disk.to_path_buf(), "index.m3u8").await,
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
