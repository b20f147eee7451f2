//! onair platform API: the domain of channels, accounts and stream keys, plus its HTTP edge.
//!
//! The domain lives in the top-level modules and never touches axum; [`http`] is the thin HTTP
//! adapter (`Api::router`). Everything hangs off [`Api`], which is cheap to clone.

pub mod accounts;
pub mod auth;
pub mod bans;
pub mod channels;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod live;
pub mod metrics;
pub mod payments;
pub mod ratelimit;
pub mod recordings;
pub mod relationship;
pub mod secrets;
pub mod subscriptions;
pub mod validate;

use std::sync::Arc;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

pub use auth::{Claims, TokenError};
pub use bans::BanInfo;
pub use channels::{Channel, CreatedChannel, NewChannel, StreamKeyError};
pub use config::{ApiConfig, PasswordHashing, PaymentProviderConfig, RateLimitConfig};
pub use error::ApiError;
pub use events::ChannelEvent;
pub use live::{Live, LiveStream, StreamId};
pub use payments::PaymentProvider;

/// The platform API: database, secrets, in-memory live state and event bus.
///
/// Cheap to clone (one `Arc` inside); hand a clone to every task that needs it.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    config: ApiConfig,
    jwt: auth::JwtKeys,
    secret: Vec<u8>,
    live: live::LiveState,
    events: broadcast::Sender<ChannelEvent>,
    bans: bans::BanCache,
    payments: Arc<dyn PaymentProvider>,
    metrics: metrics::HttpMetrics,
    auth_limiter: ratelimit::RateLimiter,
    known_channels: parking_lot::RwLock<std::collections::HashSet<String>>,
}

impl Api {
    /// Opens (and creates when missing) the data dir and the database, runs the migrations and
    /// loads or generates the JWT secret.
    pub async fn open(config: ApiConfig) -> anyhow::Result<Api> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let db = db::connect(&config).await?;
        db::migrate(&db)
            .await
            .context("running database migrations")?;
        let secret = secrets::load_jwt_secret(&config)?;
        let jwt = auth::JwtKeys::new(&secret);
        let metrics =
            metrics::HttpMetrics::register(&config.registry).context("registering API metrics")?;
        let payments = payments::provider_from_config(&config.payment_provider);
        let (events, _) = broadcast::channel(1024);
        let auth_limiter = ratelimit::RateLimiter::new(config.auth_rate_limit);
        let api = Api {
            inner: Arc::new(Inner {
                db,
                jwt,
                secret,
                live: live::LiveState::default(),
                events,
                bans: bans::BanCache::default(),
                payments,
                metrics,
                auth_limiter,
                known_channels: Default::default(),
                config,
            }),
        };
        api.spawn_sweeper();
        Ok(api)
    }

    /// A key for another purpose derived from the node secret (HMAC-SHA256 of `label`), so
    /// every node sharing the JWT secret derives the same key without another setting.
    pub fn derived_secret(&self, label: &str) -> Vec<u8> {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.inner.secret)
            .expect("HMAC takes keys of any length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Every minute: lapse expired subscriptions and timeouts. Stops when the last `Api` clone
    /// is dropped.
    fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let api = Api { inner };
                if let Err(e) = api.sweep_expired().await {
                    tracing::warn!(error = %e, "sweeping expired subscriptions and bans");
                }
            }
        });
    }

    /// The database connection (a pool).
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The configuration this API was opened with.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// Subscribes to channel events: stream key rotations, bans, stream start/end.
    pub fn subscribe_events(&self) -> broadcast::Receiver<ChannelEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn emit(&self, event: ChannelEvent) {
        // No receiver is not an error: nobody listens yet.
        let _ = self.inner.events.send(event);
    }

    /// The HTTP metrics (request counts and latencies) registered in the configured registry.
    pub fn metrics(&self) -> &metrics::HttpMetrics {
        &self.inner.metrics
    }

    /// The Prometheus registry the API's metrics live in (the one from [`ApiConfig::registry`]).
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.config.registry
    }
}
