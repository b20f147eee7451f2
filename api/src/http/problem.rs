//! RFC 9457 `application/problem+json` errors, the one error shape of every onair HTTP endpoint.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An RFC 9457 problem document plus the extra headers its status needs.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Stable URI naming the kind of problem (`https://onair.dev/problems/<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary of the kind.
    pub title: String,
    /// HTTP status, repeated in the body as RFC 9457 suggests.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with a stable slug (the last path segment of its `type` URI).
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            kind: format!("https://onair.dev/problems/{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds the request-specific explanation.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a response header (e.g. `WWW-Authenticate`, `Retry-After`, `Allow`).
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// 400 with the given slug.
    pub fn bad_request(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, "Bad request").detail(detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`, as RFC 6750 asks.
    pub fn unauthorized(detail: impl Into<String>, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            r#"Bearer realm="onair", error="invalid_token""#
        } else {
            r#"Bearer realm="onair""#
        };
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .detail(detail)
            .header(header::WWW_AUTHENTICATE, challenge)
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
    }

    /// 404 for a missing resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
        )
        .detail(format!("the request body is larger than {limit} bytes"))
    }

    /// 415 for a body of the wrong media type.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .detail(format!("expected Content-Type: {expected}"))
    }

    /// 422 for a well-formed request we cannot act on.
    pub fn unprocessable(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Unprocessable content",
        )
        .detail(detail)
    }

    /// 409 for a duplicate (channel id, username).
    pub fn conflict(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "Conflict").detail(detail)
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
        )
        .detail(format!("retry in {retry_after_secs} s"))
        .header(header::RETRY_AFTER, &retry_after_secs.to_string())
    }

    /// 405; keep the `Allow` header of the original response.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
        )
    }

    /// 500 without leaking internals; the cause goes to the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (k, v) in &self.headers {
            headers.append(k.clone(), v.clone());
        }
        (status, headers, body).into_response()
    }
}

impl From<crate::error::ApiError> for Problem {
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError as E;
        match e {
            E::NotFound { what, id } => Self::not_found(format!("{what} {id:?} not found")),
            E::Conflict { slug, detail } => Self::conflict(slug, detail),
            E::Invalid { slug, detail } => Self::unprocessable(slug, detail),
            E::BadRequest { slug, detail } => Self::bad_request(slug, detail),
            E::Unauthorized(detail) => Self::unauthorized(detail, false),
            E::Forbidden(detail) => Self::forbidden(detail),
            E::Denied { slug, detail } => {
                Self::new(StatusCode::FORBIDDEN, slug, "Forbidden").detail(detail)
            }
            E::RateLimited { retry_after_secs } => Self::too_many_requests(retry_after_secs),
            E::Db(e) => Self::internal(e),
            E::Internal(e) => Self::internal(format!("{e:#}")),
        }
    }
}
