//! What the latency examples share: a loopback server with its demo channel, and a publisher
//! on it that draws its clock into every frame.

// Compiled into each example; not every example uses every item.
#![allow(dead_code)]

use std::time::Duration;

use onair::{ServeSettings, Server};
use onair_loadtest::client::publisher::{LayerSpec, Publisher, PublisherConfig, publish};

/// A running server, its data dir (removed on drop) and the demo channel's publisher.
pub struct Live {
    /// The server's data dir; kept alive as long as the server runs.
    pub _dir: tempfile::TempDir,
    /// The server.
    pub server: Server,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The publisher on `/whip/demo`.
    pub publisher: Publisher,
}

/// Starts a loopback server (`hls_ladder` as `--hls-ladder`, `None` for the default) and
/// publishes one `width`x`height` layer at `bitrate` with Opus audio to its demo channel.
pub async fn serve_and_publish(
    hls_ladder: Option<&str>,
    (width, height, fps): (u32, u32, u32),
    bitrate: u32,
    keyframe_interval: Duration,
) -> anyhow::Result<Live> {
    let dir = tempfile::tempdir()?;
    let mut settings = ServeSettings::loopback(dir.path().into());
    if let Some(ladder) = hls_ladder {
        settings.hls_ladder = ladder.into();
    }
    let server = Server::start(&settings).await?;
    let key = server
        .demo_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no demo channel"))?;
    let base = format!("http://{}", server.http_addr);
    let mut cfg = PublisherConfig::new(format!("{base}/whip/demo"), Some(key));
    cfg.layers = vec![LayerSpec::single(width, height, bitrate)];
    cfg.fps = fps;
    cfg.keyframe_interval = keyframe_interval;
    cfg.audio = true;
    let publisher = publish(cfg).await?;
    Ok(Live {
        _dir: dir,
        server,
        base,
        publisher,
    })
}

/// Runs `loadtest/browser/<script>` with `args` in node and returns its trimmed standard output
/// (one JSON line), or its standard error as the error.
pub async fn run_browser_script(script: &str, args: &[String]) -> anyhow::Result<String> {
    let path = format!("{}/loadtest/browser/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("node")
        .arg(path)
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
