//! The web app in real Chromium (Debian `chromium`, driven by `playwright-core` from
//! `web/node_modules`): each test starts an in-process `onair serve` and runs one scenario
//! script from `web/tests/`, which exits non-zero when any of its checks fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::TestServer;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// `npm ci` once when playwright-core is missing (node_modules installed without dev packages).
fn ensure_node_modules() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if web_dir().join("node_modules/playwright-core").exists() {
            return;
        }
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(web_dir())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "npm ci in web/ failed (scripts/test installs nodejs and npm)"
        );
    });
}

/// Runs `node web/tests/<name>.mjs` against `t` with extra environment; returns its output.
async fn scenario(t: &TestServer, name: &str, env: &[(&str, String)]) -> String {
    ensure_node_modules();
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Debian chromium is needed (scripts/test installs it)"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(web_dir().join(format!("tests/{name}.mjs")))
        .env("ONAIR_URL", t.url(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .expect("node runs (scripts/test installs nodejs)");
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("scenario {name} took over 180 s"))
        .expect("scenario output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("---- {name} ----\n{text}");
    assert!(out.status.success(), "scenario {name} failed:\n{text}");
    text
}

/// One scenario at a time, server and publisher included: a second one would fight over two
/// cores and make the timing checks lie.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// A test server without the transcoded HLS ladder (the source rendition is still packaged):
/// the browsers need the two cores more than an encoder nobody watches.
async fn server() -> TestServer {
    TestServer::start_with(|s| s.hls_ladder = "none".into()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn studio_goes_live_and_a_viewer_plays_it_over_whep() {
    let _turn = turn().await;
    let t = server().await;
    scenario(&t, "playback", &[]).await;
    t.stop().await;
}

/// Publishes into `chan` from a webrtc-rs client (lighter than a second browser encoder).
async fn publish(
    t: &TestServer,
    layers: Vec<onair_loadtest::client::publisher::LayerSpec>,
) -> onair_loadtest::client::publisher::Publisher {
    use onair_loadtest::client::publisher::{PublisherConfig, publish};
    let mut cfg = PublisherConfig::new(t.url("/whip/chan"), Some(t.key.clone()));
    cfg.layers = layers;
    cfg.fps = 15;
    cfg.keyframe_interval = Duration::from_secs(1);
    publish(cfg).await.expect("publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_chat_see_emotes_and_the_owner_bans_one() {
    use onair_loadtest::client::publisher::LayerSpec;
    let _turn = turn().await;
    let t = server().await;
    let publisher = publish(&t, vec![LayerSpec::single(640, 360, 600_000)]).await;
    scenario(
        &t,
        "chat",
        &[
            ("ONAIR_OWNER_TOKEN", t.token("owner")),
            ("ONAIR_ANN_TOKEN", t.token("ann")),
            ("ONAIR_BOB_TOKEN", t.token("bob")),
        ],
    )
    .await;
    let _ = publisher.stop().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quality_pause_follow_and_subscribe_in_the_browser() {
    use onair_loadtest::client::publisher::LayerSpec;
    let _turn = turn().await;
    let t = server().await;
    let publisher = publish(&t, LayerSpec::simulcast_hml(1280, 720, 1_500_000)).await;
    scenario(&t, "viewer", &[("ONAIR_VIEWER_TOKEN", t.token("vic"))]).await;
    let _ = publisher.stop().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tv_page_plays_the_ll_hls_fallback_with_hls_js() {
    use onair_loadtest::client::publisher::LayerSpec;
    let _turn = turn().await;
    let t = server().await;
    let publisher = publish(&t, vec![LayerSpec::single(640, 360, 800_000)]).await;
    let out = scenario(&t, "tv", &[("ONAIR_CHATTER_TOKEN", t.token("tess"))]).await;
    // The latency the browser saw, for the test log and the HLS issue.
    for line in out.lines().filter(|l| l.contains("TV page result")) {
        println!("{line}");
    }
    let _ = publisher.stop().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_paging_and_resume_payment_step_and_screen_capture() {
    const SECRET: &str = "whsec-browser-test";
    let _turn = turn().await;
    // The `webhook` provider answers SUBSCRIBE with a payment page; the scenario plays the
    // provider: it opens that page and sends the signed webhook.
    let t = TestServer::start_with(|s| {
        s.hls_ladder = "none".into();
        s.payment_provider = "webhook".into();
        s.payment_webhook_secret = Some(SECRET.into());
        s.payment_input_url = Some("https://pay.onair.test/checkout/{paymentID}".into());
    })
    .await;
    // Six chatters at 20 messages each (the per-user limit per 30 s): 120 messages, 3 pages.
    let seeders: Vec<String> = (1..=6).map(|i| t.token(&format!("seed{i}"))).collect();
    scenario(
        &t,
        "extras",
        &[
            ("ONAIR_OWNER_TOKEN", t.token("owner")),
            ("ONAIR_STREAM_KEY", t.key.clone()),
            ("ONAIR_VIEWER_TOKEN", t.token("val")),
            ("ONAIR_SEED_TOKENS", seeders.join(",")),
            ("ONAIR_PAYMENT_SECRET", SECRET.into()),
        ],
    )
    .await;
    t.stop().await;
}
