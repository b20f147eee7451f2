//! HTTP edge of the API crate: the `/api` router and types shared by every onair HTTP surface.
//!
//! Handlers are thin: extract, call the domain on [`Api`], map the error to a [`Problem`].

mod auth_routes;
mod channel_routes;
pub mod dto;
pub mod extract;
mod payment_routes;
pub mod problem;
mod social_routes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Api;
use crate::auth::Claims;
use crate::channels::Channel;
use crate::subscriptions::SubscriptionInfo;
use dto::{ChannelInfo, CurrentStreamInfo, SubscriptionInfoDto};
use problem::Problem;

/// `Cache-Control` of public, briefly cacheable reads.
pub const PUBLIC_SHORT: &str = "public, max-age=5";
/// `Cache-Control` of per-user or secret responses.
pub const NO_STORE: &str = "private, no-store";
/// Request id header (set by the binary's layer, or here when missing).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn cache(value: &'static str) -> [(HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static(value))]
}

pub(crate) fn channel_info(api: &Api, ch: &Channel) -> ChannelInfo {
    let live = api.live();
    ChannelInfo {
        channel_id: ch.channel_id.clone(),
        name: ch.name.clone(),
        description: ch.description.clone(),
        owner_id: ch.owner_id.clone(),
        stream_title: ch.stream_title.clone(),
        current_stream_info: live.current(&ch.channel_id).map(|s| CurrentStreamInfo {
            stream_id: s.stream_id.to_string(),
            title: s.title,
            current_watcher_count: live.watchers(&ch.channel_id),
            started_at: s.started_at,
        }),
        follower_count: ch.follower_count,
        require_signed_hls: ch.require_signed_hls,
    }
}

pub(crate) fn sub_dto(s: SubscriptionInfo) -> SubscriptionInfoDto {
    SubscriptionInfoDto {
        tier: s.tier,
        started_at: s.started_at,
        current_period_end: s.current_period_end,
        renews: s.renews,
    }
}

/// 403 unless `user` owns `ch` (or is an admin).
pub fn ensure_owner(user: &Claims, ch: &Channel) -> Result<(), Problem> {
    if ch.owner_id.as_deref() == Some(user.sub.as_str()) || user.is_admin() {
        Ok(())
    } else {
        Err(Problem::forbidden("only the channel owner may do this"))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onair platform API",
        description = "Channels, accounts, follows, subscriptions, bans and live counts. \
            Errors are RFC 9457 problem documents (application/problem+json).",
        license(name = "MIT OR Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    components(schemas(dto::ProblemDoc)),
    tags(
        (name = "auth", description = "Built-in accounts"),
        (name = "channels", description = "Channels and stream keys"),
        (name = "relationship", description = "Follow state"),
        (name = "subscriptions", description = "Paid subscriptions"),
        (name = "bans", description = "Bans and timeouts"),
        (name = "live", description = "Live counts"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3.1 document of the `/api` routes, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

fn api_routes() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth_routes::register))
        .routes(routes!(auth_routes::login))
        .routes(routes!(
            channel_routes::list_channels,
            channel_routes::create_channel
        ))
        .routes(routes!(
            channel_routes::get_channel,
            channel_routes::update_channel
        ))
        .routes(routes!(channel_routes::rotate_stream_key))
        .routes(routes!(channel_routes::watcher_count))
        .routes(routes!(social_routes::relationship))
        .routes(routes!(social_routes::following))
        .routes(routes!(social_routes::subscriptions))
        .routes(routes!(social_routes::ban, social_routes::list_bans))
        .routes(routes!(social_routes::unban))
        .routes(routes!(payment_routes::webhook))
}

async fn not_found() -> Problem {
    Problem::not_found("no such API endpoint")
}

/// Request id, tracing span, metrics, and problem documents for axum's bare 405s.
async fn edge(State(api): State<Api>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = match req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 200)
    {
        Some(v) => v.clone(),
        None => {
            let v = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
            req.headers_mut().insert(REQUEST_ID, v.clone());
            v
        }
    };
    let span = tracing::info_span!(
        "api",
        method = %method,
        route = %route,
        request_id = %request_id.to_str().unwrap_or("?"),
    );
    let mut resp = next.run(req).instrument(span).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = Problem::method_not_allowed().into_response();
        if let Some(allow) = allow {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
    }
    if !resp.headers().contains_key(&REQUEST_ID) {
        resp.headers_mut().insert(REQUEST_ID, request_id);
    }
    api.metrics().observe(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

impl Api {
    /// Every `/api/...` route, with its own body limit (413), content-type checks (415),
    /// request ids (`x-request-id`, kept or generated) and metrics. Merge it into the app and
    /// serve with `into_make_service_with_connect_info::<SocketAddr>()` (login and register are
    /// rate limited per client address).
    pub fn router(&self) -> Router {
        let (router, doc) = api_routes().split_for_parts();
        let doc_json: Arc<str> = match doc.to_json() {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(error = %e, "serializing the OpenAPI document");
                "{}".into()
            }
        };
        router
            .route(
                "/api/openapi.json",
                get(move || {
                    let doc = doc_json.clone();
                    async move {
                        (
                            [
                                (header::CONTENT_TYPE, "application/json"),
                                (header::CACHE_CONTROL, "public, max-age=60"),
                            ],
                            doc.to_string(),
                        )
                    }
                }),
            )
            .route("/api", get(not_found).fallback(not_found))
            .route("/api/{*rest}", get(not_found).fallback(not_found))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), edge))
            .layer(axum::extract::DefaultBodyLimit::max(
                self.config().max_body_bytes,
            ))
            .with_state(self.clone())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_is_3_1_and_documents_problems() {
        let doc = super::openapi();
        let json = doc.to_pretty_json().expect("json");
        if let Ok(path) = std::env::var("ONAIR_DUMP_OPENAPI") {
            let _ = std::fs::write(path, &json);
        }
        let v: serde_json::Value = serde_json::from_str(&json).expect("parse");
        assert_eq!(v["openapi"], "3.1.0");
        assert!(v["components"]["schemas"]["Problem"].is_object());
        assert!(v["components"]["securitySchemes"]["bearer"].is_object());
        // every non-2xx response is a problem document
        for (path, item) in v["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                for (status, resp) in op["responses"].as_object().expect("responses") {
                    if !status.starts_with('2') {
                        assert!(
                            resp["content"]["application/problem+json"].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
