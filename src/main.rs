//! `onair`: command line and wiring only; see `lib.rs` for the server.

use std::time::Duration;

use clap::{Parser, Subcommand};
use onair::{DataSettings, ServeSettings, Server};

#[derive(Parser)]
#[command(
    name = "onair",
    version,
    about = "Self-hostable live streaming: WHIP in, WHEP out, live chat"
)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, env = "ONAIR_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve(ServeSettings),
    /// Manage channels.
    Channel {
        #[command(subcommand)]
        cmd: ChannelCmd,
    },
    /// Print a JWT for a user id (for your own identity system, or testing).
    Token {
        /// The user id (`sub` claim).
        user_id: String,
        /// Display name (`name` claim); default: the user id.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. `30m`, `1h`, `7d`.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[command(flatten)]
        data: DataSettings,
    },
}

#[derive(Subcommand)]
enum ChannelCmd {
    /// Create a channel and print `{"channelID","streamKey"}` (the key is shown only once).
    Create {
        /// Channel id: 3-25 of `a-z`, `0-9`, `_`.
        channel_id: String,
        /// Owner user id.
        #[arg(long)]
        owner: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        data: DataSettings,
    },
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,str0m=warn,sqlx=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    match cli.cmd {
        Cmd::Serve(s) => {
            let server = Server::start(&s).await?;
            let host = if s.http_addr.ip().is_unspecified() {
                format!("127.0.0.1:{}", server.http_addr.port())
            } else {
                server.http_addr.to_string()
            };
            println!("onair is up: http://{host}/");
            if let Some(key) = &server.demo_key {
                println!("Go live on the demo channel:");
                println!("  WHIP URL:     http://{host}/whip/demo");
                println!("  Bearer token: {key}");
                println!("  Watch (WHEP): http://{host}/whep/demo");
            }
            shutdown_signal().await;
            tracing::info!("shutting down: ending every session");
            server.stop(Duration::from_secs(3)).await;
        }
        Cmd::Channel {
            cmd:
                ChannelCmd::Create {
                    channel_id,
                    owner,
                    name,
                    description,
                    data,
                },
        } => {
            let api = data.open_api(&prometheus::Registry::new()).await?;
            let created = api
                .create_channel(onair_api::NewChannel {
                    channel_id,
                    name,
                    description,
                    owner_id: owner,
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}",
                serde_json::json!({ "channelID": created.channel.channel_id, "streamKey": created.stream_key })
            );
        }
        Cmd::Token {
            user_id,
            name,
            ttl,
            data,
        } => {
            let api = data.open_api(&prometheus::Registry::new()).await?;
            let name = name.unwrap_or_else(|| user_id.clone());
            println!(
                "{}",
                api.mint_token(&user_id, &name, onair::parse_duration(&ttl)?)?
            );
        }
    }
    Ok(())
}
