//! Settings of the API crate. The binary fills them from its flags and `ONAIR_*` variables.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::payments::PaymentProvider;

/// Everything [`crate::Api::open`] needs.
#[derive(Clone)]
pub struct ApiConfig {
    /// `sqlite://...` or `postgres://...`; `None` = `sqlite://<data_dir>/onair.db?mode=rwc`.
    pub database_url: Option<String>,
    /// Holds the SQLite database and the generated JWT secret. Created when missing.
    pub data_dir: PathBuf,
    /// HS256 secret; `None` = read `<data_dir>/jwt-secret`, generating it on first use.
    pub jwt_secret: Option<String>,
    /// Who takes the money for subscriptions.
    pub payment_provider: PaymentProviderConfig,
    /// Where the API registers its metrics (the binary serves it at `/metrics`).
    pub registry: prometheus::Registry,
    /// Lifetime of tokens issued by register and login.
    pub token_ttl: Duration,
    /// Per client address limit of `POST /api/auth/register` and `/api/auth/login` together.
    pub auth_rate_limit: RateLimitConfig,
    /// Largest accepted request body (413 above it).
    pub max_body_bytes: usize,
    /// argon2id cost. `Fast` is for tests only.
    pub password_hashing: PasswordHashing,
    /// Most database connections in the pool (SQLite and PostgreSQL).
    pub max_db_connections: u32,
}

impl ApiConfig {
    /// Defaults for a data dir: SQLite inside it, generated secret, `test` payments.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            data_dir: data_dir.into(),
            jwt_secret: None,
            payment_provider: PaymentProviderConfig::Test,
            registry: prometheus::Registry::new(),
            token_ttl: Duration::from_secs(24 * 3600),
            auth_rate_limit: RateLimitConfig::default(),
            max_body_bytes: 64 * 1024,
            password_hashing: PasswordHashing::Default,
            max_db_connections: 8,
        }
    }

    /// The database URL in force.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("onair.db").display()
            ),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self::new("./onair-data")
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("ApiConfig")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("data_dir", &self.data_dir)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("payment_provider", &self.payment_provider)
            .field("token_ttl", &self.token_ttl)
            .field("auth_rate_limit", &self.auth_rate_limit)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("password_hashing", &self.password_hashing)
            .field("max_db_connections", &self.max_db_connections)
            .finish()
    }
}

/// Which payment provider confirms subscriptions.
#[derive(Clone, Default)]
pub enum PaymentProviderConfig {
    /// Confirms every payment at once (local use and tests).
    #[default]
    Test,
    /// Sends the buyer to `payment_input_url` (with `{paymentID}` replaced) and activates the
    /// subscription when `POST /api/payments/webhook` arrives signed with `secret`
    /// (header `Onair-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`).
    Webhook {
        /// Shared HMAC secret.
        secret: String,
        /// Payment page template, e.g. `https://pay.example/checkout/{paymentID}`.
        payment_input_url: String,
    },
    /// Any other implementation.
    Custom(Arc<dyn PaymentProvider>),
}

impl std::fmt::Debug for PaymentProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Test => f.write_str("Test"),
            Self::Webhook {
                payment_input_url, ..
            } => f
                .debug_struct("Webhook")
                .field("payment_input_url", payment_input_url)
                .finish_non_exhaustive(),
            Self::Custom(p) => write!(f, "Custom({})", p.name()),
        }
    }
}

/// Token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate.
    pub per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            burst: 10,
            per_minute: 10,
        }
    }
}

/// argon2id parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordHashing {
    /// OWASP's argon2id recommendation (19 MiB, 2 passes).
    #[default]
    Default,
    /// Cheap parameters for tests; never in production.
    Fast,
}
