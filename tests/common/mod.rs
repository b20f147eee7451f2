//! Shared test set-up: an in-process `onair` on loopback with a fresh data dir.
#![allow(dead_code)]

pub mod hls;

use std::path::PathBuf;
use std::time::Duration;

use onair::{ServeSettings, Server};

/// A running server, its data dir and a channel with a known key.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub channel: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts a server with a channel `chan` (and the auto-created `demo`).
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], with the settings changed by `f` first.
    pub async fn start_with(f: impl FnOnce(&mut ServeSettings)) -> TestServer {
        let _ = tracing_subscriber_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = settings(dir.path());
        f(&mut s);
        let server = Server::start(&s).await.expect("server starts");
        let created = server
            .api
            .create_channel(onair_api::NewChannel {
                channel_id: "chan".into(),
                name: Some("Test channel".into()),
                description: String::new(),
                owner_id: Some("owner".into()),
            })
            .await
            .expect("channel");
        TestServer {
            server,
            dir,
            channel: "chan".into(),
            key: created.stream_key,
            http: reqwest::Client::new(),
        }
    }

    /// A user JWT for `user` (no account needed to chat).
    pub fn token(&self, user: &str) -> String {
        self.server
            .api
            .issue_token(&onair_api::accounts::Account {
                user_id: user.into(),
                name: format!("{user} name"),
                roles: vec![],
            })
            .expect("token")
    }

    /// Base URL of the HTTP server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.http_addr, path)
    }

    /// Reads one metric's value from `/metrics` (sum over label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        let body = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split([' ', '{']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `f` holds, up to `timeout`.
    pub async fn wait_for<F, Fut>(&self, timeout: Duration, mut f: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < end {
            if f().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stops the server and starts a new one on the same data dir (a node restart).
    pub async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestServer::restart`], with the settings changed by `f` first.
    pub async fn restart_with(self, f: impl FnOnce(&mut ServeSettings)) -> TestServer {
        let TestServer {
            server,
            dir,
            channel,
            key,
            http,
        } = self;
        server.stop(Duration::from_secs(2)).await;
        let mut s = settings(dir.path());
        f(&mut s);
        let server = Server::start(&s).await.expect("server restarts");
        TestServer {
            server,
            dir,
            channel,
            key,
            http,
        }
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.stop(Duration::from_secs(2)).await;
    }
}

/// Loopback settings on `dir` with two media shards.
fn settings(dir: &std::path::Path) -> ServeSettings {
    let mut s = ServeSettings::loopback(PathBuf::from(dir));
    s.shards = 2;
    s
}

fn tracing_subscriber_init() -> Option<()> {
    if std::env::var("ONAIR_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("ONAIR_TEST_LOG").ok()?,
            ))
            .with_test_writer()
            .try_init();
    }
    Some(())
}

/// A fixture SDP from tests/fixtures.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The m-sections of an SDP (each starting with its m= line).
pub fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for l in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        if l.starts_with("m=") {
            out.push(vec![l]);
        } else if let Some(s) = out.last_mut() {
            s.push(l);
        }
    }
    out
}
