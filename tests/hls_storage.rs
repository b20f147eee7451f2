//! Durable VOD in S3-compatible object storage, against a real moto S3 server on loopback: a
//! finished recording moves to the bucket (and off the local disk), plays from there as VOD
//! before and after a restart, a finished recording left on disk (a crash before its upload)
//! moves at start-up, and retention deletes them from the bucket.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestServer;
use common::hls::{bytes_ok, ffprobe_with, get, publish_pattern, text_when_ok, uris};
use onair::ServeSettings;
use onair_transcoder::config::ObjectStorageConfig;
use onair_transcoder::storage::{Storage, StoredRecording};
use serde_json::Value;

const BUCKET_URL: &str = "s3://vod/onair/hls";

/// A moto server, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` from the repo's test virtualenv (scripts/test installs it), else from PATH.
fn moto_binary() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/moto_server");
    let candidates = std::iter::once(venv).chain(
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("moto_server"))
            .collect::<Vec<_>>(),
    );
    candidates.filter(|p| p.is_file()).find(|p| {
        // A pyenv shim can exist without the package behind it.
        Command::new(p)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

async fn start_moto(bin: &Path) -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(&moto.endpoint).send().await.is_ok() {
            // moto does not check signatures: a plain PUT creates the bucket.
            let r = http
                .put(format!("{}/vod", moto.endpoint))
                .send()
                .await
                .expect("create bucket");
            assert!(r.status().is_success(), "create bucket: {}", r.status());
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server never answered on {}", moto.endpoint);
}

/// Video codec and decoded frame count of an fMP4 init segment plus a media segment.
fn ffprobe_frames(init: &[u8], segment: &[u8]) -> (String, u64) {
    let v = ffprobe_with(
        &[init, segment].concat(),
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
        ],
    );
    let s = &v["streams"][0];
    let frames = s["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (s["codec_name"].as_str().unwrap_or("").to_string(), frames)
}

async fn videos(t: &TestServer) -> Vec<Value> {
    let v: Value = get(t, "/api/channels/chan/videos")
        .await
        .json()
        .await
        .expect("json");
    v["videos"].as_array().cloned().unwrap_or_default()
}

/// Plays a recording through its VOD URL: master, media playlist (ended), init and first
/// segment, which ffprobe decodes.
async fn play(t: &TestServer, url: &str) {
    let master = text_when_ok(t, url).await;
    let variant = uris(&master)
        .into_iter()
        .find(|u| u.starts_with("source/"))
        .unwrap_or_else(|| panic!("no source variant: {master}"))
        .to_string();
    let base = url.trim_end_matches("master.m3u8");
    let media = text_when_ok(t, &format!("{base}{variant}")).await;
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    let first = uris(&media)[0].to_string();
    let init = bytes_ok(t, &format!("{base}source/init.mp4")).await;
    let seg = bytes_ok(t, &format!("{base}source/{first}")).await;
    let (codec, frames) = ffprobe_frames(&init, &seg);
    assert_eq!(codec, "h264");
    assert!(frames > 0, "no frame decoded from {first}");
}

/// Publishes a few seconds to `chan` (running `while_live` once it plays) and stops.
async fn broadcast<F, Fut>(t: &TestServer, while_live: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let publisher = publish_pattern(t).await;
    text_when_ok(t, "/hls/chan/source/index.m3u8?_HLS_msn=2").await;
    while_live().await;
    publisher.stop().await.expect("stop");
}

async fn stored(bucket: &Storage) -> Vec<StoredRecording> {
    bucket.list_recordings().await.expect("list the bucket")
}

#[test]
fn finished_recordings_move_to_object_storage_and_play_from_there() {
    let Some(bin) = moto_binary() else {
        eprintln!(
            "SKIPPED hls_storage: moto_server is not installed (scripts/test installs it into \
             .venv-test with pip install 'moto[server]')"
        );
        return;
    };
    // SAFETY: this binary's only test sets them before it starts any thread of its own; moto
    // accepts any credentials, object_store reads them from the environment like production.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "onair-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "onair-test-secret");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario(&bin));
}

async fn scenario(bin: &Path) {
    let moto = start_moto(bin).await;
    let endpoint = moto.endpoint.clone();
    let configure = |s: &mut ServeSettings| {
        s.hls_storage = Some(BUCKET_URL.into());
        s.s3_endpoint = Some(endpoint.as_str().into());
    };
    // Our own view of the bucket (its local root stays empty, so reads come from the bucket).
    let view_root = tempfile::tempdir().expect("dir");
    let bucket = Storage::open(
        view_root.path().to_path_buf(),
        Some(&ObjectStorageConfig::parse(BUCKET_URL, Some(endpoint.clone())).expect("url")),
    )
    .expect("bucket");

    let t = TestServer::start_with(configure).await;
    broadcast(&t, || async {
        // Live, nothing is in the bucket yet: the stream is served from memory and disk.
        assert!(stored(&bucket).await.is_empty());
    })
    .await;

    // The finished recording moves to the bucket, then leaves the local disk.
    let local = t.dir.path().join("hls").join("chan");
    let mut moved = None;
    for _ in 0..600 {
        let list = stored(&bucket).await;
        if let [r] = list.as_slice()
            && r.complete
            && !local.join(&r.id).exists()
        {
            moved = Some(r.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rec = moved.expect("the recording never moved to the bucket");
    assert_eq!(rec.channel, "chan");
    let index = bucket
        .get("chan", &rec.id, "source/index.m3u8")
        .await
        .expect("media playlist in the bucket");
    assert!(String::from_utf8_lossy(&index).contains("#EXT-X-ENDLIST"));
    assert!(bucket.get("chan", &rec.id, "audio/init.mp4").await.is_ok());

    // Listed by its broadcast row and played from the bucket.
    let mut list = Vec::new();
    for _ in 0..100 {
        list = videos(&t).await;
        if list.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list.len(), 1, "{list:?}");
    let url = list[0]["url"].as_str().expect("url").to_string();
    assert_eq!(url, format!("/hls/chan/vod/{}/master.m3u8", rec.id));
    play(&t, &url).await;
    assert_eq!(
        get(&t, "/hls/chan/vod/1/master.m3u8").await.status(),
        404,
        "an unknown recording"
    );

    // After a restart: still listed, still playable, and the offline channel URL serves it.
    let t = t.restart_with(configure).await;
    assert_eq!(videos(&t).await.len(), 1);
    play(&t, &url).await;
    let offline = text_when_ok(&t, "/hls/chan/master.m3u8").await;
    assert_eq!(offline, text_when_ok(&t, &url).await);
    let media = text_when_ok(&t, "/hls/chan/source/index.m3u8").await;
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");

    // A node without the bucket keeps its next recording on disk, as a crash before or during
    // the upload would; the next start with the bucket moves it.
    let t = t.restart().await;
    broadcast(&t, || async {}).await;
    let mut second = None;
    for _ in 0..100 {
        let list = videos(&t).await;
        if list.len() == 2 {
            second = list[0]["url"].as_str().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = second.expect("the second broadcast is never listed");
    let second_id = second
        .split('/')
        .nth(4)
        .expect("recording id in the URL")
        .to_string();
    let master = local.join(&second_id).join("master.m3u8");
    assert!(
        t.wait_for(Duration::from_secs(10), || async { master.is_file() })
            .await,
        "the second recording is never finished on disk"
    );
    assert_eq!(stored(&bucket).await.len(), 1);
    // A crash mid-upload: some of its files are in the bucket, its master playlist is not.
    let partial = view_root
        .path()
        .join("chan")
        .join(&second_id)
        .join("source");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::copy(
        local.join(&second_id).join("source/init.mp4"),
        partial.join("init.mp4"),
    )
    .expect("copy");
    assert_eq!(
        bucket
            .upload_recording("chan", &second_id)
            .await
            .expect("partial upload"),
        1
    );
    std::fs::remove_dir_all(view_root.path().join("chan")).expect("rm");
    let incomplete = stored(&bucket).await;
    assert!(
        incomplete.iter().any(|r| r.id == second_id && !r.complete),
        "{incomplete:?}"
    );
    let t = t.restart_with(configure).await;
    let mut moved = false;
    for _ in 0..300 {
        let list = stored(&bucket).await;
        if list.len() == 2 && list.iter().all(|r| r.complete) && !local.join(&second_id).exists() {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "the recording left on disk never moved at start-up");
    play(&t, &second).await;
    play(&t, &url).await;
    // Offline, the channel URL serves the newest recording, now only in the bucket.
    let offline = text_when_ok(&t, "/hls/chan/master.m3u8").await;
    assert_eq!(offline, text_when_ok(&t, &second).await);

    // Retention shorter than its age deletes it from the bucket and unlinks it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = t
        .restart_with(|s| {
            configure(s);
            s.hls_retention = Some(Duration::from_secs(1));
        })
        .await;
    let mut gone = false;
    for _ in 0..200 {
        if stored(&bucket).await.is_empty() && get(&t, &url).await.status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "an expired recording is still in the bucket or served"
    );
    assert_eq!(get(&t, &second).await.status(), 404);
    assert!(videos(&t).await.is_empty());
    t.stop().await;
    drop(moto);
}
