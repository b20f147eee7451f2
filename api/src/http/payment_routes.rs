//! `POST /api/payments/webhook`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::dto::{ProblemDoc, WebhookEvent, WebhookResponse};
use super::extract::RawJson;
use crate::Api;
use crate::http::problem::Problem;
use crate::payments::{SIGNATURE_HEADER, WebhookError};
use crate::subscriptions::{WebhookFailure, WebhookOutcome};

fn invalid_signature(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-signature",
        "Invalid signature",
    )
    .detail(detail)
    .header(
        axum::http::header::WWW_AUTHENTICATE,
        r#"HMAC-SHA256 realm="onair-payments""#,
    )
}

/// A payment provider's notification, signed with
/// `Onair-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
#[utoipa::path(
    post, path = "/api/payments/webhook", tag = "subscriptions",
    request_body(content = WebhookEvent, description = "The event; the signature covers the raw bytes"),
    params(("Onair-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses(
        (status = 200, description = "Processed, or ignored (replay)", body = WebhookResponse),
        (status = 400, description = "Malformed event", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing, wrong or stale signature", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The configured provider takes no webhooks", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn webhook(
    State(api): State<Api>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> Result<Response, Problem> {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if signature.is_none() {
        return Err(invalid_signature("missing Onair-Signature header"));
    }
    let outcome = api
        .handle_payment_webhook(signature, &body)
        .await
        .map_err(|e| match e {
            WebhookFailure::Api(e) => Problem::from(e),
            WebhookFailure::Webhook(e) => match e {
                WebhookError::BadSignature | WebhookError::Stale => {
                    invalid_signature(e.to_string())
                }
                WebhookError::Malformed(d) => Problem::bad_request("malformed-event", d),
                WebhookError::NotSupported => {
                    Problem::not_found("the configured payment provider takes no webhooks")
                }
            },
        })?;
    let status = match outcome {
        WebhookOutcome::Processed => "processed",
        WebhookOutcome::Ignored => "ignored",
    };
    Ok(axum::Json(WebhookResponse {
        status: status.into(),
    })
    .into_response())
}
