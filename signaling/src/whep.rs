//! WHEP handlers (draft-ietf-wish-whep) and its core extensions: server-sent events and layer
//! selection.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use onair_api::http::problem::Problem;
use onair_sfu::SdpAnswer;
use tokio::sync::mpsc;

use crate::Signaling;
use crate::http::{base_url, bearer, content_type, read_body, require_content_type};
use crate::sdp;
use crate::sessions::{EventStream, Kind, Session, SseEvent, new_etag, random_id};
use crate::whip::{
    end, ice_patch, not_live, parse_offer, policy_problem, sdp_response, sfu_problem,
};

/// SSE event types we can send.
pub const EVENTS: [&str; 4] = ["active", "inactive", "layers", "viewercount"];

async fn require_channel(s: &Signaling, channel: &str) -> Result<(), Problem> {
    match s.inner.api.channel_exists(channel).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Problem::not_found(format!("no channel {channel}"))),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// `POST /whep/{channel}`: start playing (client offer), or get a server offer (empty body).
pub(crate) async fn post(
    State(s): State<Signaling>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    require_channel(&s, &channel).await?;
    let user = match bearer(&headers) {
        None => None,
        Some(t) => Some(
            s.inner
                .api
                .verify_token(&t)
                .map_err(|_| Problem::unauthorized("the bearer token is not valid", true))?,
        ),
    };
    let body = read_body(body).await?;
    if !body.is_empty() || content_type(&headers).is_some_and(|c| c != "application/sdp") {
        require_content_type(&headers, "application/sdp")?;
    }
    let track = s.inner.sfu.track(&channel).ok_or_else(not_live)?;
    let (session, remote_ufrag, awaiting_answer) = if body.iter().all(|b| b.is_ascii_whitespace()) {
        // Legacy clients POST nothing and expect our offer, answered later by PATCH.
        let sess = s
            .inner
            .sfu
            .play_server_offer(&channel)
            .map_err(sfu_problem)?;
        (sess, String::new(), true)
    } else {
        let (offer, parsed) = parse_offer(&body)?;
        let plan = sdp::viewer_plan(
            &offer,
            track.video.as_ref().map(|v| &v.spec),
            track.audio.as_ref(),
        )
        .map_err(policy_problem)?;
        let ufrag = offer.ice_credentials().map(|c| c.0).unwrap_or_default();
        (
            s.inner
                .sfu
                .play(&channel, parsed, plan)
                .map_err(sfu_problem)?,
            ufrag,
            false,
        )
    };
    let id = random_id();
    let etag = new_etag();
    s.inner.sessions.insert(Session {
        id: id.clone(),
        kind: Kind::Whep,
        channel: channel.clone(),
        peer: session.peer,
        etag: etag.clone(),
        remote_ufrag,
        user,
        stream: None,
        awaiting_answer,
        sse: Default::default(),
    });
    let base = format!(
        "{}/whep/{channel}/{id}",
        base_url(&headers, &s.inner.fallback_base)
    );
    let links = [
        format!(
            "<{base}/sse>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"; events=\"{}\"",
            EVENTS.join(",")
        ),
        format!("<{base}/layer>; rel=\"urn:ietf:params:whep:ext:core:layer\""),
    ];
    tracing::info!(channel = %channel, session = %id, "WHEP session created");
    Ok(sdp_response(
        StatusCode::CREATED,
        &base,
        &etag,
        sdp::finish_answer(&session.sdp),
        &links,
    ))
}

/// `HEAD`/`GET /whep/{channel}`: discovery (200, `application/sdp`, no body).
pub(crate) async fn head() -> Response {
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    r
}

/// `PATCH /whep/{channel}/{session}`: trickle/restart, or a legacy client's SDP answer.
pub(crate) async fn patch(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let (peer, awaiting) = s
        .inner
        .sessions
        .with(Kind::Whep, &channel, &id, |x| (x.peer, x.awaiting_answer))
        .ok_or_else(|| Problem::not_found("no such session"))?;
    let body = read_body(body).await?;
    match content_type(&headers).as_deref() {
        Some("application/sdp") => {
            if !awaiting {
                return Err(
                    Problem::new(StatusCode::CONFLICT, "not-awaiting-answer", "Conflict")
                        .detail("this session is not waiting for an SDP answer"),
                );
            }
            let text = std::str::from_utf8(&body)
                .map_err(|_| Problem::bad_request("bad-sdp", "not UTF-8"))?;
            let answer = SdpAnswer::from_sdp_string(text)
                .map_err(|e| Problem::bad_request("bad-sdp", e.to_string()))?;
            s.inner
                .sfu
                .complete_server_offer(peer, answer)
                .await
                .map_err(sfu_problem)?;
            let ufrag = sdp::Offer::parse(text)
                .ok()
                .and_then(|o| o.ice_credentials())
                .map(|c| c.0);
            s.inner.sessions.with(Kind::Whep, &channel, &id, |x| {
                x.awaiting_answer = false;
                x.remote_ufrag = ufrag.unwrap_or_default();
            });
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Some("application/trickle-ice-sdpfrag") => {
            ice_patch(&s, Kind::Whep, &channel, &id, &headers, &body).await
        }
        _ => Err(Problem::unsupported_media_type(
            "application/trickle-ice-sdpfrag or application/sdp",
        )),
    }
}

/// `DELETE /whep/{channel}/{session}`: stop playing.
pub(crate) async fn delete(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    end(&s, Kind::Whep, &channel, &id).await
}

/// `POST .../sse`: create an event stream for the listed event types.
pub(crate) async fn sse_create(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = read_body(body).await?;
    let events: Vec<String> = if body.is_empty() {
        EVENTS.iter().map(|e| e.to_string()).collect()
    } else {
        require_content_type(&headers, "application/json")?;
        serde_json::from_slice(&body).map_err(|e| {
            Problem::bad_request(
                "bad-json",
                format!("expected a JSON array of event names: {e}"),
            )
        })?
    };
    if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(Problem::bad_request(
            "unsupported-event",
            format!("event type {bad} is not supported"),
        ));
    }
    let stream_id = random_id();
    let (tx, rx) = mpsc::channel(64);
    // Current state first, so a client learns it without waiting for a change.
    let live = s.inner.sfu.is_live(&channel);
    if events.iter().any(|e| e == "active") && live {
        let _ = tx.try_send(SseEvent {
            kind: "active",
            data: serde_json::json!({}),
        });
    }
    if events.iter().any(|e| e == "viewercount") {
        let n = s.inner.sfu.viewer_count(&channel);
        let _ = tx.try_send(SseEvent {
            kind: "viewercount",
            data: serde_json::json!({ "viewercount": n }),
        });
    }
    s.inner
        .sessions
        .with(Kind::Whep, &channel, &id, |x| {
            x.sse.insert(
                stream_id.clone(),
                EventStream {
                    events,
                    tx,
                    rx: Some(rx),
                },
            );
        })
        .ok_or_else(|| Problem::not_found("no such session"))?;
    let location = format!(
        "{}/whep/{channel}/{id}/sse/{stream_id}",
        base_url(&headers, &s.inner.fallback_base)
    );
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `GET .../sse/{stream}`: the event stream itself. Each event goes out named (as the extension
/// specifies) and unnamed with its type inside the JSON (a common player only reads unnamed ones).
pub(crate) async fn sse_get(
    State(s): State<Signaling>,
    Path((channel, id, stream)): Path<(String, String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let rx = s
        .inner
        .sessions
        .with(Kind::Whep, &channel, &id, |x| {
            x.sse.get_mut(&stream).and_then(|st| st.rx.take())
        })
        .flatten()
        .ok_or_else(|| Problem::not_found("no such event stream (or it is already open)"))?;
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut unnamed = ev.data.clone();
        if let Some(o) = unnamed.as_object_mut() {
            o.insert("type".into(), serde_json::Value::from(ev.kind));
        }
        let items = vec![
            Ok(Event::default().event(ev.kind).data(ev.data.to_string())),
            Ok(Event::default().data(unnamed.to_string())),
        ];
        Some((futures::stream::iter(items), rx))
    });
    use futures::StreamExt;
    Ok(Sse::new(events.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `DELETE .../sse/{stream}`.
pub(crate) async fn sse_delete(
    State(s): State<Signaling>,
    Path((channel, id, stream)): Path<(String, String, String)>,
) -> Result<StatusCode, Problem> {
    s.inner
        .sessions
        .with(Kind::Whep, &channel, &id, |x| x.sse.remove(&stream))
        .flatten()
        .map(|_| StatusCode::OK)
        .ok_or_else(|| Problem::not_found("no such event stream"))
}

/// Body of a layer selection request.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LayerRequest {
    #[serde(default)]
    #[allow(dead_code)]
    media_id: Option<String>,
    #[serde(default)]
    rid: Option<String>,
    #[serde(default)]
    spatial_layer_id: Option<u32>,
    #[serde(default)]
    temporal_layer_id: Option<u32>,
}

/// `POST .../layer`: pin a simulcast layer by RID; `{mediaId}` alone restores automatic choice.
pub(crate) async fn layer_select(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Problem> {
    let peer = s
        .inner
        .sessions
        .with(Kind::Whep, &channel, &id, |x| x.peer)
        .ok_or_else(|| Problem::not_found("no such session"))?;
    require_content_type(&headers, "application/json")?;
    let body = read_body(body).await?;
    let req: LayerRequest = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request("bad-json", e.to_string()))?;
    if req.spatial_layer_id.is_some() || req.temporal_layer_id.is_some() {
        return Err(Problem::bad_request(
            "unsupported-layer",
            "only simulcast layers (rid) can be selected",
        ));
    }
    s.inner
        .sfu
        .select_layer(peer, req.rid)
        .map_err(|e| match e {
            onair_sfu::SfuError::Conflict(d) => Problem::bad_request("unknown-layer", d),
            other => sfu_problem(other),
        })?;
    Ok(StatusCode::OK)
}

/// `DELETE .../layer`: back to automatic layer choice.
pub(crate) async fn layer_auto(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let peer = s
        .inner
        .sessions
        .with(Kind::Whep, &channel, &id, |x| x.peer)
        .ok_or_else(|| Problem::not_found("no such session"))?;
    s.inner.sfu.select_layer(peer, None).map_err(sfu_problem)?;
    Ok(StatusCode::OK)
}
