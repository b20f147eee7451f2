//! WHIP handlers (RFC 9725).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onair_api::StreamKeyError;
use onair_api::http::problem::Problem;
use onair_sfu::{Candidate, SdpOffer, SfuError};

use crate::Signaling;
use crate::http::{base_url, bearer, presented_etag, read_body, require_content_type};
use crate::sdp::{self, IceFragment, Offer, PolicyError};
use crate::sessions::{Kind, Session, new_etag, random_id};

/// Maps policy and media-plane errors to problems.
pub(crate) fn policy_problem(e: PolicyError) -> Problem {
    match e {
        PolicyError::Malformed(d) => Problem::bad_request("bad-sdp", d),
        PolicyError::Unacceptable(d) => Problem::unprocessable("unacceptable-sdp", d),
    }
}

pub(crate) fn sfu_problem(e: SfuError) -> Problem {
    match e {
        SfuError::Sdp(d) => Problem::bad_request("bad-sdp", d),
        SfuError::NoCommonCodec(d) => Problem::unprocessable("no-common-codec", d),
        SfuError::NotLive => not_live(),
        SfuError::UnknownPeer => Problem::not_found("no such session"),
        SfuError::Conflict(d) => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(d)
        }
        SfuError::ShuttingDown => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "Service unavailable",
        )
        .detail("the server is shutting down")
        .header(header::RETRY_AFTER, "5"),
    }
}

pub(crate) fn not_live() -> Problem {
    Problem::new(StatusCode::CONFLICT, "not-live", "Channel not live")
        .detail("the channel has no live publisher yet")
        .header(header::RETRY_AFTER, "5")
}

/// Parses an SDP body both ways: our policy view and str0m's.
pub(crate) fn parse_offer(body: &[u8]) -> Result<(Offer, SdpOffer), Problem> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Problem::bad_request("bad-sdp", "the SDP is not UTF-8"))?;
    let offer = Offer::parse(text).map_err(policy_problem)?;
    let parsed = SdpOffer::from_sdp_string(text)
        .map_err(|e| Problem::bad_request("bad-sdp", e.to_string()))?;
    Ok((offer, parsed))
}

pub(crate) fn sdp_response(
    status: StatusCode,
    location: &str,
    etag: &str,
    sdp: String,
    links: &[String],
) -> Response {
    let mut r = (status, sdp).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        "accept-patch",
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    for l in links {
        if let Ok(v) = HeaderValue::from_str(l) {
            h.append(header::LINK, v);
        }
    }
    r
}

/// `POST /whip/{channel}`: start publishing.
pub(crate) async fn post(
    State(s): State<Signaling>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let key = bearer(&headers);
    let verified = s
        .inner
        .api
        .verify_stream_key(&channel, key.as_deref().unwrap_or(""))
        .await;
    match verified {
        Ok(_) => {}
        Err(StreamKeyError::UnknownChannel) => {
            return Err(Problem::not_found(format!("no channel {channel}")));
        }
        Err(StreamKeyError::BadKey) => {
            return Err(match key {
                None => Problem::unauthorized(
                    "send the stream key as Authorization: Bearer <key>",
                    false,
                ),
                Some(_) => {
                    Problem::unauthorized("the stream key is not valid for this channel", true)
                }
            });
        }
        Err(e) => return Err(Problem::internal(e)),
    }
    require_content_type(&headers, "application/sdp")?;
    let body = read_body(body).await?;
    let (offer, parsed) = parse_offer(&body)?;
    let plan = sdp::publisher_plan(&offer).map_err(policy_problem)?;
    let remote_ufrag = offer.ice_credentials().map(|c| c.0).unwrap_or_default();
    let session = s
        .inner
        .sfu
        .publish(&channel, parsed, plan)
        .map_err(sfu_problem)?;
    let stream = match s.inner.api.live().stream_started(&channel).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "could not record the live stream");
            None
        }
    };
    let id = random_id();
    let etag = new_etag();
    s.inner.sessions.insert(Session {
        id: id.clone(),
        kind: Kind::Whip,
        channel: channel.clone(),
        peer: session.peer,
        etag: etag.clone(),
        remote_ufrag,
        user: None,
        stream,
        awaiting_answer: false,
        sse: Default::default(),
    });
    let location = format!(
        "{}/whip/{channel}/{id}",
        base_url(&headers, &s.inner.fallback_base)
    );
    tracing::info!(channel = %channel, session = %id, "WHIP session created");
    Ok(sdp_response(
        StatusCode::CREATED,
        &location,
        &etag,
        sdp::finish_answer(&session.sdp),
        &[],
    ))
}

/// `GET` on an endpoint or session: 2xx with no content (RFC 9725 §4.1).
pub(crate) async fn get() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Shared PATCH logic (trickle and ICE restart) for WHIP and WHEP sessions.
pub(crate) async fn ice_patch(
    s: &Signaling,
    kind: Kind,
    channel: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Problem> {
    let (peer, etag, current_ufrag) = s
        .inner
        .sessions
        .with(kind, channel, id, |x| {
            (x.peer, x.etag.clone(), x.remote_ufrag.clone())
        })
        .ok_or_else(|| Problem::not_found("no such session"))?;
    let text =
        std::str::from_utf8(body).map_err(|_| Problem::bad_request("bad-fragment", "not UTF-8"))?;
    let frag = IceFragment::parse(text)
        .map_err(|e| Problem::bad_request("bad-fragment", e.to_string()))?;
    let presented = presented_etag(headers).ok_or_else(|| {
        Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "Precondition required",
        )
        .detail("send If-Match with the session's ETag")
    })?;
    let restart = frag.ufrag.as_deref().is_some_and(|u| u != current_ufrag);
    let matches = presented == etag || (restart && presented == "*");
    if !matches {
        return Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
        )
        .detail("If-Match does not match the session's current ETag"));
    }
    // Candidates we cannot use (mDNS names, unknown transports) are dropped, the rest applied.
    let candidates: Vec<Candidate> = frag
        .candidates
        .iter()
        .filter_map(|c| Candidate::from_sdp_string(c).ok())
        .collect();
    if !restart {
        s.inner.sfu.trickle(peer, candidates).map_err(sfu_problem)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (Some(ufrag), Some(pwd)) = (frag.ufrag.clone(), frag.pwd.clone()) else {
        return Err(Problem::bad_request(
            "bad-fragment",
            "an ICE restart needs a=ice-ufrag and a=ice-pwd",
        ));
    };
    let (lufrag, lpwd) = s
        .inner
        .sfu
        .ice_restart(peer, ufrag.clone(), pwd, candidates)
        .await
        .map_err(sfu_problem)?;
    let new_etag = new_etag();
    s.inner.sessions.with(kind, channel, id, |x| {
        x.etag = new_etag.clone();
        x.remote_ufrag = ufrag;
    });
    let mut frag = format!("a=ice-lite\r\na=ice-ufrag:{lufrag}\r\na=ice-pwd:{lpwd}\r\n");
    for c in s.inner.sfu.candidates() {
        frag.push_str(&format!("a={}\r\n", c.to_sdp_string()));
    }
    frag.push_str("a=end-of-candidates\r\n");
    let mut r = (StatusCode::OK, frag).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    if let Ok(v) = HeaderValue::from_str(&new_etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

/// `PATCH /whip/{channel}/{session}`: trickle ICE or ICE restart.
pub(crate) async fn patch(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    s.inner
        .sessions
        .with(Kind::Whip, &channel, &id, |_| ())
        .ok_or_else(|| Problem::not_found("no such session"))?;
    require_content_type(&headers, "application/trickle-ice-sdpfrag")?;
    let body = read_body(body).await?;
    ice_patch(&s, Kind::Whip, &channel, &id, &headers, &body).await
}

/// Ends a session; `If-Match` is ignored on DELETE (RFC 9725 §4.3.1) and the unguessable URL is
/// the capability (a known client sends DELETE without credentials).
pub(crate) async fn end(
    s: &Signaling,
    kind: Kind,
    channel: &str,
    id: &str,
) -> Result<StatusCode, Problem> {
    let sess = s
        .inner
        .sessions
        .take(kind, channel, id)
        .ok_or_else(|| Problem::not_found("no such session"))?;
    let _ = s.inner.sfu.close(sess.peer);
    s.end_stream(&sess).await;
    tracing::info!(channel = %channel, session = %id, ?kind, "session deleted");
    Ok(StatusCode::OK)
}

/// `DELETE /whip/{channel}/{session}`: stop publishing.
pub(crate) async fn delete(
    State(s): State<Signaling>,
    Path((channel, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    end(&s, Kind::Whip, &channel, &id).await
}
