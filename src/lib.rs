//! The `onair` server: wires the API, the media plane and signaling into one HTTP service.
//! `main.rs` only parses the command line; this is what tests start in-process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use onair_api::{Api, ApiConfig};
use onair_chat::{Chat, ChatConfig};
use onair_sfu::{Sfu, SfuConfig};
use onair_signaling::Signaling;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Settings shared by every subcommand that touches the data (DESIGN §3).
#[derive(Debug, Clone, Args)]
pub struct DataSettings {
    /// Directory for the SQLite database, secrets and HLS output.
    #[arg(long, env = "ONAIR_DATA_DIR", default_value = "./onair-data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://...` (default: inside the data dir) or `postgres://...`.
    #[arg(long, env = "ONAIR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// JWT HS256 secret; default: generated once and kept in the data dir.
    #[arg(long, env = "ONAIR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

impl DataSettings {
    /// The API settings for this data.
    pub fn api_config(&self, registry: &prometheus::Registry) -> ApiConfig {
        let mut cfg = ApiConfig::new(self.data_dir.clone());
        cfg.database_url = self.database_url.clone();
        cfg.jwt_secret = self.jwt_secret.clone();
        cfg.registry = registry.clone();
        cfg
    }

    /// Opens the API (database, migrations, secret).
    pub async fn open_api(&self, registry: &prometheus::Registry) -> anyhow::Result<Api> {
        Api::open(self.api_config(registry))
            .await
            .context("opening the database")
    }
}

impl ServeSettings {
    fn payment_provider(&self) -> anyhow::Result<onair_api::PaymentProviderConfig> {
        match self.payment_provider.as_str() {
            "test" => Ok(onair_api::PaymentProviderConfig::Test),
            "webhook" => Ok(onair_api::PaymentProviderConfig::Webhook {
                secret: self.payment_webhook_secret.clone().context(
                    "--payment-webhook-secret is required with --payment-provider webhook",
                )?,
                payment_input_url: self
                    .payment_input_url
                    .clone()
                    .context("--payment-input-url is required with --payment-provider webhook")?,
            }),
            other => anyhow::bail!("unknown payment provider {other} (use test or webhook)"),
        }
    }
}

/// Settings of `onair serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// HTTP listen address (API, WHIP, WHEP, web app, metrics).
    #[arg(long, env = "ONAIR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Media address: one UDP port and ICE-TCP on the same port number.
    #[arg(long, env = "ONAIR_MEDIA_ADDR", default_value = "0.0.0.0:8189")]
    pub media_addr: SocketAddr,
    /// Address to advertise in ICE candidates (repeatable; comma-separated in the env var).
    /// Default: the bound address, or every interface address when bound to 0.0.0.0.
    #[arg(long = "public-ip", env = "ONAIR_PUBLIC_IP", value_delimiter = ',')]
    pub public_ip: Vec<IpAddr>,
    /// Redis URL for many nodes (chat bus and history cache). Unset: single node.
    #[arg(long, env = "ONAIR_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Media socket loops; 0 = one per core.
    #[arg(long, env = "ONAIR_SHARDS", default_value_t = 0)]
    pub shards: usize,
    /// Payment provider for paid subscriptions: `test` (confirms at once) or `webhook`.
    #[arg(long, env = "ONAIR_PAYMENT_PROVIDER", default_value = "test")]
    pub payment_provider: String,
    /// HMAC secret of `POST /api/payments/webhook` (webhook provider).
    #[arg(long, env = "ONAIR_PAYMENT_WEBHOOK_SECRET", hide_env_values = true)]
    pub payment_webhook_secret: Option<String>,
    /// Payment page for the webhook provider; `{paymentID}` is replaced.
    #[arg(long, env = "ONAIR_PAYMENT_INPUT_URL")]
    pub payment_input_url: Option<String>,
    /// Transcoded HLS ladder: output heights, largest first (rungs not below the source are
    /// skipped); `none` for the source rendition only.
    #[arg(long, env = "ONAIR_HLS_LADDER", default_value = "720,480,360")]
    pub hls_ladder: String,
    /// Height of an extra AV1 rendition encoded with rav1e, capped at the source height; 0 = off.
    /// A 360p one costs more CPU than the whole default H.264 ladder.
    #[arg(long, env = "ONAIR_HLS_AV1_HEIGHT", default_value_t = 0)]
    pub hls_av1_height: u32,
    /// HLS encoder effort: `fast`, `medium` or `quality`.
    #[arg(long, env = "ONAIR_HLS_ENCODER_SPEED", default_value = "fast")]
    pub hls_encoder_speed: onair_transcoder::EncoderSpeed,
    /// How long signed HLS URLs stay valid (`30m`, `6h`, `1d`).
    #[arg(long, env = "ONAIR_HLS_SIGNED_URL_TTL", default_value = "6h", value_parser = parse_duration)]
    pub hls_signed_url_ttl: Duration,
    /// Recordings older than this are deleted (`7d`); unset keeps them forever.
    #[arg(long, env = "ONAIR_HLS_RETENTION", value_parser = parse_duration)]
    pub hls_retention: Option<Duration>,
    /// Object storage that finished recordings move to: `s3://bucket/prefix` (credentials and
    /// region from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). Unset: the data dir.
    #[arg(long, env = "ONAIR_HLS_STORAGE")]
    pub hls_storage: Option<Box<str>>,
    /// Endpoint of an S3-compatible service other than AWS (MinIO, R2, ...), for `--hls-storage`.
    #[arg(long, env = "ONAIR_S3_ENDPOINT")]
    pub s3_endpoint: Option<Box<str>>,
    /// Database and secrets.
    #[command(flatten)]
    pub data: DataSettings,
}

/// A duration like `90`, `90s`, `30m`, `6h` or `7d`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("bad duration {s}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => anyhow::bail!("bad duration unit in {s} (use s, m, h or d)"),
    };
    Ok(Duration::from_secs(secs))
}

impl ServeSettings {
    /// The defaults of `onair serve` on loopback with ephemeral ports and `data_dir` (tests,
    /// examples).
    pub fn loopback(data_dir: PathBuf) -> Self {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeSettings,
        }
        let mut s = <Cli as clap::Parser>::parse_from(["onair"]).serve;
        s.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        s.media_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        s.data.data_dir = data_dir;
        s
    }

    fn hls_config(&self, signing_secret: Vec<u8>) -> anyhow::Result<onair_transcoder::HlsConfig> {
        let mut cfg =
            onair_transcoder::HlsConfig::new(self.data.data_dir.join("hls"), signing_secret);
        cfg.ladder.heights = match self.hls_ladder.trim() {
            "" | "none" => Vec::new(),
            list => {
                let mut heights = list
                    .split(',')
                    .map(|h| h.trim().trim_end_matches('p').parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("bad --hls-ladder {list} (e.g. 720,480,360)"))?;
                anyhow::ensure!(
                    heights
                        .iter()
                        .all(|h| (144..=2160).contains(h) && h % 2 == 0),
                    "--hls-ladder heights must be even, 144 to 2160"
                );
                heights.sort_unstable_by(|a, b| b.cmp(a));
                heights.dedup();
                heights
            }
        };
        cfg.ladder.av1_height = match self.hls_av1_height {
            0 => None,
            h => {
                anyhow::ensure!(
                    (144..=2160).contains(&h) && h % 2 == 0,
                    "--hls-av1-height must be 0 (off) or even, 144 to 2160"
                );
                Some(h)
            }
        };
        cfg.ladder.speed = self.hls_encoder_speed;
        cfg.signed_url_ttl = self.hls_signed_url_ttl;
        cfg.retention = self.hls_retention;
        cfg.storage = self
            .hls_storage
            .as_deref()
            .map(|url| {
                onair_transcoder::config::ObjectStorageConfig::parse(
                    url,
                    self.s3_endpoint.as_deref().map(str::to_string),
                )
            })
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--hls-storage")?;
        Ok(cfg)
    }
}

/// A running server.
pub struct Server {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where media listens.
    pub media_addr: SocketAddr,
    /// The API (channels, accounts, live state).
    pub api: Api,
    /// WHIP/WHEP signaling and the media plane under it.
    pub signaling: Signaling,
    /// Live chat.
    pub chat: Chat,
    /// The demo channel's stream key, when this start created it.
    pub demo_key: Option<String>,
    registry: prometheus::Registry,
    stop: tokio::sync::watch::Sender<bool>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[derive(Clone)]
struct AppState {
    registry: prometheus::Registry,
    api: Api,
}

impl Server {
    /// Opens the database, binds HTTP and media, and starts serving.
    pub async fn start(s: &ServeSettings) -> anyhow::Result<Server> {
        let registry = prometheus::Registry::new();
        let mut cfg = s.data.api_config(&registry);
        cfg.payment_provider = s.payment_provider()?;
        let api = Api::open(cfg).await.context("opening the database")?;
        if s.redis_url.is_none() {
            // One node owns every live stream: rows left open by a crash are not live.
            let closed = api
                .live()
                .close_orphan_streams()
                .await
                .context("closing orphaned streams")?;
            if closed > 0 {
                tracing::info!(
                    closed,
                    "ended live-stream rows left open by the previous run"
                );
            }
        }
        let demo_key = api
            .ensure_demo_channel()
            .await
            .context("creating the demo channel")?;
        let sfu = Sfu::start(
            SfuConfig {
                bind: s.media_addr,
                advertise: s.public_ip.clone(),
                shards: s.shards,
            },
            &registry,
        )
        .context("binding the media port")?;
        let listener = tokio::net::TcpListener::bind(s.http_addr)
            .await
            .with_context(|| format!("binding {}", s.http_addr))?;
        let http_addr = listener.local_addr()?;
        let fallback = format!("http://{http_addr}");
        let signaling = Signaling::new(sfu.clone(), api.clone(), fallback);
        signaling.spawn_event_pump();
        let chat = Chat::start(
            api.clone(),
            ChatConfig {
                redis_url: s.redis_url.clone(),
                ..Default::default()
            },
            &registry,
        )
        .context("starting chat")?;
        let hls_config = s.hls_config(api.derived_secret(onair_transcoder::signing::KEY_LABEL))?;
        let hls = onair_transcoder::Hls::start(sfu.clone(), hls_config.clone(), &registry);
        let sessions = signaling.clone();
        onair_chat::datachannel::spawn_bridge(
            chat.clone(),
            sfu.clone(),
            std::sync::Arc::new(move |peer| {
                sessions.peer_session(peer).map(|(kind, channel, claims)| {
                    onair_chat::datachannel::PeerSession {
                        channel,
                        claims,
                        publisher: kind == onair_signaling::sessions::Kind::Whip,
                    }
                })
            }),
        );

        let app = Router::new()
            .merge(signaling.router())
            .merge(chat.router())
            .merge(hls.router(api.clone(), &hls_config))
            .merge(api.router())
            .merge(onair_web::router())
            .merge(
                Router::new()
                    .route("/metrics", get(metrics))
                    .route("/healthz", get(|| async { "ok" }))
                    .route("/readyz", get(readyz))
                    .with_state(AppState {
                        registry: registry.clone(),
                        api: api.clone(),
                    }),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));

        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let serve = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        });
        tracing::info!(%http_addr, media = %sfu.local_addr(), "onair serving");
        Ok(Server {
            http_addr,
            media_addr: sfu.local_addr(),
            api,
            signaling,
            chat,
            demo_key,
            registry,
            stop,
            serve,
        })
    }

    /// The metrics registry (for tests that read counters directly).
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// Graceful stop: every session is ended as if DELETEd, then HTTP stops.
    pub async fn stop(self, grace: Duration) {
        self.signaling.shutdown(grace).await;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace + Duration::from_secs(5), self.serve).await;
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut buf = String::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode_utf8(&s.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let mut r = buf.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.api.count_channels().await {
        Ok(_) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_av1_rendition_is_off_at_zero_and_its_height_checked() {
        let mut s = ServeSettings::loopback(PathBuf::from("unused"));
        s.hls_av1_height = 0;
        let cfg = s.hls_config(vec![1]).expect("config");
        assert_eq!(cfg.ladder.av1_height, None);
        assert!(!cfg.ladder.heights.is_empty());
        s.hls_av1_height = 360;
        assert_eq!(
            s.hls_config(vec![1]).expect("config").ladder.av1_height,
            Some(360)
        );
        for bad in [100, 361, 4320] {
            s.hls_av1_height = bad;
            assert!(s.hls_config(vec![1]).is_err(), "{bad}");
        }
    }
}
