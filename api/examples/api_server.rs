//! Serves only the platform API, for Schemathesis and `wrk`:
//! `cargo run -p onair-api --example api_server -- [ADDR] [DATA_DIR]`
//! (`ONAIR_DATABASE_URL` selects PostgreSQL). Prints a token for user `fuzzer`, who owns the
//! channel `fuzz_ch`.

use std::net::SocketAddr;
use std::time::Duration;

use onair_api::{Api, ApiConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()?;
    let data_dir = args.next().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("onair-api-server")
            .display()
            .to_string()
    });
    let mut cfg = ApiConfig::new(data_dir);
    cfg.database_url = std::env::var("ONAIR_DATABASE_URL").ok();
    let api = Api::open(cfg).await?;
    if api.channel("fuzz_ch").await?.is_none() {
        api.create_channel(onair_api::NewChannel {
            channel_id: "fuzz_ch".into(),
            owner_id: Some("fuzzer".into()),
            ..Default::default()
        })
        .await?;
    }
    println!(
        "{}",
        api.mint_token("fuzzer", "Fuzzer", Duration::from_secs(24 * 3600))?
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("serving the API on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        api.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
