//! Extractors of the `/api` routes. Every rejection is a [`Problem`].

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{HeaderMap, header, request::Parts};
use serde::de::DeserializeOwned;

use crate::Api;
use crate::auth::{Claims, TokenError};
use crate::http::problem::Problem;

/// `application/json` or any `application/*+json`, parameters allowed.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Reads the whole body, at most `limit` bytes (413 above).
async fn read_body(req: Request, limit: usize) -> Result<Bytes, Problem> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Problem::too_large(limit));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| Problem::too_large(limit))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // serde accepts a struct written as an array; our bodies are objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Problem::unprocessable(
            "invalid-body",
            "expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Problem::unprocessable("invalid-body", e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::bad_request("malformed-json", e.to_string())
            }
        }
    })
}

/// A JSON body: 415 for another content type, 413 over the limit, 400 for malformed JSON,
/// 422 for JSON of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T>
where
    Api: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let api = Api::from_ref(state);
        if !is_json(req.headers()) {
            return Err(Problem::unsupported_media_type("application/json"));
        }
        let bytes = read_body(req, api.config().max_body_bytes).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body (or JSON `null`) is `None`.
pub struct MaybeJson<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<Api> for MaybeJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, api: &Api) -> Result<Self, Problem> {
        let json = is_json(req.headers());
        let bytes = read_body(req, api.config().max_body_bytes).await?;
        if bytes.is_empty() {
            return Ok(MaybeJson(None));
        }
        if !json {
            return Err(Problem::unsupported_media_type("application/json"));
        }
        parse_json::<Option<T>>(&bytes).map(MaybeJson)
    }
}

/// A body that must be JSON, kept as raw bytes (for signature checks).
pub struct RawJson(pub Bytes);

impl FromRequest<Api> for RawJson {
    type Rejection = Problem;

    async fn from_request(req: Request, api: &Api) -> Result<Self, Problem> {
        if !is_json(req.headers()) {
            return Err(Problem::unsupported_media_type("application/json"));
        }
        read_body(req, api.config().max_body_bytes)
            .await
            .map(RawJson)
    }
}

fn bearer(parts: &Parts) -> Result<Option<&str>, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Problem::unauthorized("malformed Authorization header", true))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(Problem::unauthorized(
            "expected Authorization: Bearer <token>",
            true,
        )),
    }
}

fn verify(api: &Api, token: &str) -> Result<Claims, Problem> {
    api.verify_token(token).map_err(|e| {
        let detail = match e {
            TokenError::Expired => "the token has expired",
            TokenError::Invalid => "the token is not valid",
            TokenError::BadSubject => "the token's subject is not a valid user id",
        };
        Problem::unauthorized(detail, true)
    })
}

/// The caller's verified JWT claims; 401 (with `WWW-Authenticate: Bearer`) when missing or bad.
pub struct AuthUser(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser
where
    Api: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match bearer(parts)? {
            Some(token) => verify(&Api::from_ref(state), token).map(AuthUser),
            None => Err(Problem::unauthorized(
                "this request needs Authorization: Bearer <token>",
                false,
            )),
        }
    }
}

/// Claims when a token is sent; a bad token is still 401 (never silently anonymous).
pub struct MaybeUser(pub Option<Claims>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser
where
    Api: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match bearer(parts)? {
            Some(token) => verify(&Api::from_ref(state), token).map(|c| MaybeUser(Some(c))),
            None => Ok(MaybeUser(None)),
        }
    }
}

/// The client's IP address (from `ConnectInfo<SocketAddr>`; `unknown` without it).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip().to_string())
                .unwrap_or_else(|| "unknown".to_string()),
        ))
    }
}

/// `Path` with a problem rejection.
pub struct P<T>(pub T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| Problem::bad_request("bad-path", e.body_text()))
    }
}

/// `Query` with a problem rejection.
pub struct Q<T>(pub T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| Problem::bad_request("bad-query", e.body_text()))
    }
}
