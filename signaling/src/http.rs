//! HTTP helpers shared by the WHIP and WHEP handlers: bodies, content types, bearer tokens,
//! absolute URLs, CORS.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onair_api::http::problem::Problem;

/// Largest SDP or fragment body accepted (RFC 9725 sets none; 64 KiB fits any real offer).
pub const MAX_BODY: usize = 64 * 1024;

/// Reads a body of at most [`MAX_BODY`] bytes (413 beyond).
pub async fn read_body(body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Problem::too_large(MAX_BODY))
}

/// The media type of the request without parameters, lower-cased.
pub fn content_type(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Checks the request's content type (415 otherwise).
pub fn require_content_type(h: &HeaderMap, expected: &str) -> Result<(), Problem> {
    match content_type(h) {
        Some(ct) if ct == expected => Ok(()),
        _ => Err(Problem::unsupported_media_type(expected)),
    }
}

/// The bearer token, if any. `Bearer undefined` (sent by a known JS client with no key set) and
/// an empty token count as none.
pub fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token == "undefined" {
        return None;
    }
    Some(token.to_string())
}

/// The scheme and authority clients reached us at, for absolute `Location` URLs (OBS needs them).
pub fn base_url(h: &HeaderMap, fallback: &str) -> String {
    let host = h
        .get("x-forwarded-host")
        .or_else(|| h.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic()));
    let proto = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    match host {
        Some(host) => format!("{proto}://{host}"),
        None => fallback.to_string(),
    }
}

/// The entity tag a client presented: `If-Match`, or the `ETag` request header one client sends
/// instead.
pub fn presented_etag(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .or_else(|| h.get(header::ETAG))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

const ALLOW_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, If-Match, ETag";
const EXPOSE_HEADERS: &str = "Location, ETag, Link, Retry-After, Accept-Post, Accept-Patch";

/// CORS for WHIP/WHEP: answers every OPTIONS itself (preflights carry no credentials, so never
/// require them) and lets browsers read `Location`, `ETag` and `Link` on every response.
pub async fn cors(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        h.insert("accept-post", HeaderValue::from_static("application/sdp"));
        h.insert(
            "accept-patch",
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
        h.insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
        add_cors(h);
        return r;
    }
    let mut r = next.run(req).await;
    add_cors(r.headers_mut());
    r
}

fn add_cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

/// 405 with `Allow` for methods a resource does not have.
pub fn method_not_allowed(allow: &str) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .header(header::ALLOW, allow)
}
