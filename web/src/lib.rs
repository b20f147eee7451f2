//! The onair web app: the directory (`/`), the channel page (`/c/{channelID}`), the studio
//! (`/studio`) and the TV page (`/tv/{channelID}`), with their scripts, styles and hls.js,
//! embedded in the binary at build time (see `build.rs`).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// `(path under /assets/, content type, quoted etag, bytes)`.
type Asset = (&'static str, &'static str, &'static str, &'static [u8]);

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|a| a.0.cmp(path))
        .ok()
        .map(|i| &ASSETS[i])
}

/// The pages and the routes they are served at.
const PAGES: [(&str, &str); 4] = [
    ("/", "index.html"),
    ("/c/{channel}", "channel.html"),
    ("/studio", "studio.html"),
    ("/tv/{channel}", "tv.html"),
];

/// Every web-app route. Pages are HTML shells that load their ES module from `/assets/`.
pub fn router() -> Router {
    let mut router = Router::new();
    for (route, name) in PAGES {
        router = router.route(
            route,
            get(move |h: HeaderMap| async move { page(name, &h) }),
        );
    }
    router.route("/assets/{*path}", get(asset)).route(
        "/favicon.ico",
        get(|h: HeaderMap| async move { serve("favicon.svg", &h) }),
    )
}

fn page(name: &str, h: &HeaderMap) -> Response {
    serve(&format!("pages/{name}"), h)
}

async fn asset(Path(path): Path<String>, h: HeaderMap) -> Response {
    // Pages are served at their routes only, so one document has one URL.
    if path.starts_with("pages/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve(&path, &h)
}

/// For working on the pages: `ONAIR_WEB_DEV_DIR=web/assets` serves them from disk, uncached.
fn from_disk(path: &str) -> Option<Response> {
    let dir = std::env::var_os("ONAIR_WEB_DEV_DIR")?;
    if path.split('/').any(|p| p == ".." || p.is_empty()) {
        return Some(StatusCode::NOT_FOUND.into_response());
    }
    let &(_, ct, _, _) = find(path)?;
    let body = std::fs::read(std::path::Path::new(&dir).join(path)).ok()?;
    Some(
        (
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
    )
}

fn serve(path: &str, h: &HeaderMap) -> Response {
    if let Some(r) = from_disk(path) {
        return r;
    }
    let Some(&(_, ct, etag, body)) = find(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    // Assets are not fingerprinted in their URLs (ES module imports name plain paths), so
    // caches revalidate every time; the ETag makes that a 304 without a body.
    let cache = HeaderValue::from_static("no-cache");
    let matches = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], body).into_response()
    };
    let hs = r.headers_mut();
    hs.insert(header::ETAG, HeaderValue::from_static(etag));
    hs.insert(header::CACHE_CONTROL, cache);
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if ct.starts_with("text/html") {
        hs.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_has_every_page_and_hls_js() {
        assert!(ASSETS.windows(2).all(|w| w[0].0 < w[1].0));
        for p in [
            "pages/index.html",
            "pages/channel.html",
            "pages/studio.html",
            "pages/tv.html",
            "vendor/hls.min.js",
        ] {
            assert!(find(p).is_some(), "{p} is embedded");
        }
        let (_, ct, _, body) = find("vendor/hls.min.js").expect("hls.js");
        assert!(ct.starts_with("text/javascript"));
        assert!(body.len() > 100_000);
    }

    async fn get(path: &str, etag: Option<&str>) -> Response {
        use tower::ServiceExt;
        let mut req = axum::http::Request::get(path);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        router()
            .oneshot(req.body(axum::body::Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[tokio::test]
    async fn pages_and_assets_with_types_and_revalidation() {
        let r = get("/c/some_channel", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let r = get("/assets/app.css", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let tag = r.headers()[header::ETAG]
            .to_str()
            .expect("etag")
            .to_string();
        let r = get("/assets/app.css", Some(&tag)).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        for missing in [
            "/assets/nope.js",
            "/assets/pages/index.html",
            "/assets/../Cargo.toml",
        ] {
            assert_eq!(
                get(missing, None).await.status(),
                StatusCode::NOT_FOUND,
                "{missing}"
            );
        }
    }
}
