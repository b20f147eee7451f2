//! `POST /api/auth/register`, `POST /api/auth/login`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::dto::{LoginRequest, ProblemDoc, RegisterRequest, TokenResponse};
use super::extract::{ClientAddr, JsonBody};
use super::{NO_STORE, cache};
use crate::Api;
use crate::accounts::Account;
use crate::http::problem::Problem;

fn token_response(api: &Api, account: &Account, status: StatusCode) -> Result<Response, Problem> {
    let token = api.issue_token(account)?;
    let ttl = chrono::Duration::from_std(api.config().token_ttl).unwrap_or_default();
    Ok((
        status,
        cache(NO_STORE),
        axum::Json(TokenResponse {
            token,
            user_id: account.user_id.clone(),
            name: account.name.clone(),
            expires_at: chrono::Utc::now() + ttl,
        }),
    )
        .into_response())
}

/// Creates an account and returns a token.
#[utoipa::path(
    post, path = "/api/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Username taken", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username, password or display name", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn register(
    State(api): State<Api>,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Response, Problem> {
    api.check_auth_rate(&addr)?;
    let account = api
        .register(&req.username, &req.password, req.display_name.as_deref())
        .await?;
    token_response(&api, &account, StatusCode::CREATED)
}

/// Checks a username and password and returns a token.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Body of the wrong shape", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(api): State<Api>,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, Problem> {
    api.check_auth_rate(&addr)?;
    let account = api.login(&req.username, &req.password).await?;
    token_response(&api, &account, StatusCode::OK)
}
