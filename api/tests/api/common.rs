//! Test harness: an `Api` on SQLite (temp dir) or PostgreSQL (fresh database per test),
//! served over real HTTP on 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use onair_api::{Api, ApiConfig, PasswordHashing, RateLimitConfig};
use sea_orm::{ConnectionTrait as _, Database};

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body against both backends as two `#[tokio::test]`s.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    };
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

pub fn pg_admin_url() -> String {
    std::env::var("ONAIR_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG.to_string())
}

/// `postgres://u@h:p/db?x` with the database replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Drops the PostgreSQL database or the temp dir, even when the test panics.
pub struct Cleanup {
    dir: PathBuf,
    pg_db: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(db) = self.pg_db.take() {
            // Our runtime may be shutting down: use a private one on a plain thread.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(conn) = Database::connect(pg_admin_url()).await {
                        let _ = conn
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                            ))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct Server {
    pub api: Api,
    pub base: String,
    pub http: reqwest::Client,
    pub config: ApiConfig,
    pub _cleanup: Cleanup,
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onair-api-test-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A config for `backend`; PostgreSQL gets a fresh database (the test FAILS when PostgreSQL
/// is unreachable).
pub async fn config(backend: Backend) -> (ApiConfig, Cleanup) {
    let dir = temp_dir();
    let mut cfg = ApiConfig::new(dir.join("data"));
    cfg.password_hashing = PasswordHashing::Fast;
    cfg.auth_rate_limit = RateLimitConfig {
        burst: 10_000,
        per_minute: 10_000,
    };
    cfg.max_db_connections = 4;
    let mut pg_db = None;
    if backend == Backend::Postgres {
        let admin = pg_admin_url();
        let conn = Database::connect(admin.clone()).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is unreachable ({e}); start it (scripts/test does)")
        });
        let name = format!("onair_t_{}", rand_suffix());
        conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        cfg.database_url = Some(with_database(&admin, &name));
        pg_db = Some(name);
    }
    (cfg, Cleanup { dir, pg_db })
}

pub async fn serve_api(api: &Api) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = api.router();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

pub async fn start(backend: Backend) -> Server {
    start_with(backend, |_| {}).await
}

pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ApiConfig)) -> Server {
    let (mut cfg, cleanup) = config(backend).await;
    tweak(&mut cfg);
    let api = Api::open(cfg.clone()).await.expect("Api::open");
    let base = serve_api(&api).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    Server {
        api,
        base,
        http,
        config: cfg,
        _cleanup: cleanup,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn token(&self, user: &str) -> String {
        self.api
            .mint_token(user, user, Duration::from_secs(3600))
            .expect("mint")
    }

    pub fn admin_token(&self, user: &str) -> String {
        self.api
            .mint_token_with_roles(user, user, Duration::from_secs(3600), &["admin"])
            .expect("mint")
    }

    /// Creates a channel owned by `owner` through the domain; returns the stream key.
    pub async fn channel(&self, id: &str, owner: &str) -> String {
        self.api
            .create_channel(onair_api::NewChannel {
                channel_id: id.to_string(),
                name: Some(format!("{id} name")),
                description: "desc".into(),
                owner_id: Some(owner.to_string()),
            })
            .await
            .expect("create channel")
            .stream_key
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("GET")
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut r = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("POST")
    }

    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.http.post(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("POST")
    }
}

/// Asserts a problem+json response with `status` and `slug`; returns the body.
pub async fn expect_problem(resp: reqwest::Response, status: u16, slug: &str) -> serde_json::Value {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let www = resp.headers().get("www-authenticate").cloned();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    assert_eq!(got, status, "status; body {body}");
    assert_eq!(ct, "application/problem+json", "content type; body {body}");
    assert_eq!(
        body["type"],
        format!("https://onair.dev/problems/{slug}"),
        "problem type; body {body}"
    );
    assert_eq!(body["status"], status);
    if status == 401 {
        assert!(www.is_some(), "401 without WWW-Authenticate");
    }
    body
}

pub async fn json(resp: reqwest::Response, status: u16) -> serde_json::Value {
    let got = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    assert_eq!(got, status, "status; body {body}");
    body
}
