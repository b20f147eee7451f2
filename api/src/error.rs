//! The domain error of the API crate. The HTTP edge maps it to a problem document.

use sea_orm::DbErr;

/// What a domain operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The named thing does not exist (`what` is e.g. `channel`).
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Kind of the missing thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A unique thing already exists.
    #[error("{detail}")]
    Conflict {
        /// Stable problem slug.
        slug: &'static str,
        /// Human explanation.
        detail: String,
    },
    /// The request is well-formed but not acceptable (422).
    #[error("{detail}")]
    Invalid {
        /// Stable problem slug.
        slug: &'static str,
        /// Human explanation.
        detail: String,
    },
    /// The request is malformed (400).
    #[error("{detail}")]
    BadRequest {
        /// Stable problem slug.
        slug: &'static str,
        /// Human explanation.
        detail: String,
    },
    /// Missing or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not allowed, with a specific problem slug (403).
    #[error("{detail}")]
    Denied {
        /// Stable problem slug.
        slug: &'static str,
        /// Human explanation.
        detail: String,
    },
    /// Too many requests from this client (429).
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be accepted.
        retry_after_secs: u64,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// Anything else that is our fault.
    #[error("internal: {0}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// `NotFound` for a channel.
    pub fn no_channel(id: &str) -> Self {
        Self::NotFound {
            what: "channel",
            id: id.to_string(),
        }
    }

    /// `Invalid` shorthand.
    pub fn invalid(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            slug,
            detail: detail.into(),
        }
    }
}

/// Result with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;
