//! Where finished recordings live: the data dir, or an S3-compatible bucket they move to once
//! the broadcast has ended (DESIGN §6: segments behind a CDN, not on one node's disk). Key
//! naming, upload order and the retry policy are sans-IO; [`Storage`] is the thin shell over
//! the local disk and `object_store`.
//!
//! A recording is `<channel>/<recording>/master.m3u8` plus `<rendition>/{init.mp4, seg<N>.m4s,
//! index.m3u8}`, locally under the HLS root and in the bucket under its prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};

use crate::config::ObjectStorageConfig;

/// The multivariant playlist of a finished recording: written last locally, uploaded last, so
/// its presence means the rest is complete.
pub const MASTER: &str = "master.m3u8";
/// Files of one recording uploaded at once.
const UPLOAD_CONCURRENCY: usize = 8;
/// Recording ids probed for a complete copy when looking for a channel's newest one (newer ones
/// may be uploads in progress).
const LATEST_PROBES: usize = 4;

/// What can go wrong reading or writing recordings.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No such file or recording.
    #[error("no such file")]
    NotFound,
    /// The object store failed.
    #[error("object storage: {0}")]
    Remote(object_store::Error),
    /// The local disk failed.
    #[error("local storage: {0}")]
    Local(#[from] std::io::Error),
    /// The store could not be set up.
    #[error("storage set-up: {0}")]
    Config(String),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            e => Self::Remote(e),
        }
    }
}

/// Exponential backoff with jitter for uploads (on top of `object_store`'s own short retry of
/// single requests, so a store that is down for a minute does not lose a recording's upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait after the first failure.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first: Duration::from_millis(250),
            max: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failed` failed attempts, or `None` when no attempt is left; `jitter` in
    /// `[0, 1)` spreads the wait over its upper half so many uploads do not retry in step.
    pub fn backoff(&self, failed: u32, jitter: f64) -> Option<Duration> {
        if failed == 0 || failed >= self.attempts {
            return None;
        }
        let doubled = self
            .first
            .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1).min(31)));
        let wait = doubled.min(self.max);
        Some(wait.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

/// The object key of `rel` (`master.m3u8` or `<rendition>/<file>`) of a recording.
pub fn object_key(prefix: &str, channel: &str, recording: &str, rel: &str) -> String {
    [prefix, channel, recording, rel]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// `(channel, recording, rel)` of a key under `prefix`; `None` for keys that are not part of a
/// recording.
pub fn split_key<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let (channel, rest) = rest.split_once('/')?;
    let (recording, rel) = rest.split_once('/')?;
    (!channel.is_empty() && recording.parse::<u64>().is_ok() && !rel.is_empty())
        .then_some((channel, recording, rel))
}

/// The files of a recording in upload phases: media first, then the media playlists, then the
/// multivariant playlist, so a reader never finds a playlist whose files are missing.
pub fn upload_phases(mut files: Vec<String>) -> Vec<Vec<String>> {
    files.sort();
    let (playlists, media): (Vec<String>, Vec<String>) =
        files.into_iter().partition(|f| f.ends_with(".m3u8"));
    let (master, renditions): (Vec<String>, Vec<String>) =
        playlists.into_iter().partition(|f| f == MASTER);
    vec![media, renditions, master]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

/// A recording in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecording {
    /// Channel.
    pub channel: String,
    /// Recording id (its start in Unix milliseconds).
    pub id: String,
    /// Newest write of any of its objects.
    pub last_modified: SystemTime,
    /// Whether its multivariant playlist is there (the upload completed).
    pub complete: bool,
}

/// Groups listed objects (key, last modified) into recordings, ordered by channel and id.
pub fn group_recordings<'a>(
    prefix: &str,
    objects: impl IntoIterator<Item = (&'a str, SystemTime)>,
) -> Vec<StoredRecording> {
    let mut by: BTreeMap<(String, u64), StoredRecording> = BTreeMap::new();
    for (key, at) in objects {
        let Some((channel, id, rel)) = split_key(prefix, key) else {
            continue;
        };
        let Ok(n) = id.parse::<u64>() else { continue };
        let r = by
            .entry((channel.to_string(), n))
            .or_insert_with(|| StoredRecording {
                channel: channel.to_string(),
                id: id.to_string(),
                last_modified: at,
                complete: false,
            });
        r.last_modified = r.last_modified.max(at);
        r.complete |= rel == MASTER;
    }
    by.into_values().collect()
}

/// A path part that stays inside its directory.
fn safe_part(p: &str) -> bool {
    !p.is_empty() && p != "." && p != ".." && !p.contains(['\\', '\0'])
}

/// Recordings on the local disk and, when configured, in an S3-compatible bucket.
#[derive(Clone)]
pub struct Storage {
    root: PathBuf,
    remote: Option<Arc<Remote>>,
}

struct Remote {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    retry: RetryPolicy,
}

impl Remote {
    fn key(&self, channel: &str, recording: &str, rel: &str) -> Key {
        Key::from(object_key(&self.prefix, channel, recording, rel))
    }

    /// Puts one file, retrying with backoff.
    async fn put(&self, path: PathBuf, key: Key) -> Result<(), StorageError> {
        let data = Bytes::from(tokio::fs::read(&path).await?);
        let mut failed = 0;
        loop {
            match self.store.put(&key, PutPayload::from(data.clone())).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    failed += 1;
                    let Some(wait) = self.retry.backoff(failed, rand::random::<f64>()) else {
                        return Err(e.into());
                    };
                    tracing::warn!(%key, error = %e, retry_in = ?wait, "upload failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

impl Storage {
    /// Recordings kept under `root` only.
    pub fn local(root: PathBuf) -> Self {
        Self { root, remote: None }
    }

    /// Recordings under `root`, moved to the bucket of `config` when one is set. Credentials
    /// and region come from the `AWS_*` environment variables (or the instance's role).
    pub fn open(root: PathBuf, config: Option<&ObjectStorageConfig>) -> Result<Self, StorageError> {
        let Some(c) = config else {
            return Ok(Self::local(root));
        };
        // Short per-request retries: uploads retry on their own with longer backoff, and a
        // player waiting on a read is better served by a quick failure it can retry.
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_retry(retry);
        if let Some(e) = &c.endpoint {
            builder = builder
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(Self {
            root,
            remote: Some(Arc::new(Remote {
                store: Arc::new(store),
                bucket: c.bucket.clone(),
                prefix: c.prefix.clone(),
                retry: RetryPolicy::default(),
            })),
        })
    }

    /// Whether finished recordings move to object storage.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Where recordings end up, for logs (`s3://bucket/prefix` or the local root).
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => format!("s3://{}/{}", r.bucket, r.prefix),
            None => self.root.display().to_string(),
        }
    }

    /// The local directory of a recording.
    pub fn local_dir(&self, channel: &str, recording: &str) -> PathBuf {
        self.root.join(channel).join(recording)
    }

    /// A file of a recording (`rel` is `master.m3u8` or `<rendition>/<file>`): the local copy,
    /// else the bucket's.
    pub async fn get(
        &self,
        channel: &str,
        recording: &str,
        rel: &str,
    ) -> Result<Bytes, StorageError> {
        if !(safe_part(channel) && safe_part(recording) && rel.split('/').all(safe_part)) {
            return Err(StorageError::NotFound);
        }
        let path = self.local_dir(channel, recording).join(rel);
        match tokio::fs::read(&path).await {
            Ok(b) => return Ok(Bytes::from(b)),
            // Not here, or deleted after its upload while we looked: the bucket has it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(r) = &self.remote else {
            return Err(StorageError::NotFound);
        };
        Ok(r.store
            .get(&r.key(channel, recording, rel))
            .await?
            .bytes()
            .await?)
    }

    /// Whether the bucket holds a complete copy of a recording (false without a bucket).
    pub async fn is_uploaded(&self, channel: &str, recording: &str) -> Result<bool, StorageError> {
        let Some(r) = &self.remote else {
            return Ok(false);
        };
        match r.store.head(&r.key(channel, recording, MASTER)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads every file of a local recording, playlists last; the number of files.
    pub async fn upload_recording(
        &self,
        channel: &str,
        recording: &str,
    ) -> Result<usize, StorageError> {
        let Some(r) = &self.remote else {
            return Ok(0);
        };
        let dir = self.local_dir(channel, recording);
        let listed = dir.clone();
        let files = tokio::task::spawn_blocking(move || local_files(&listed))
            .await
            .map_err(|e| StorageError::Local(std::io::Error::other(e)))??;
        let count = files.len();
        for phase in upload_phases(files) {
            futures::stream::iter(phase)
                .map(|rel| r.put(dir.join(&rel), r.key(channel, recording, &rel)))
                .buffer_unordered(UPLOAD_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(count)
    }

    /// Moves a finished local recording (one with its multivariant playlist) to the bucket:
    /// uploads it unless a complete copy is there, then deletes the local copy. False when
    /// there was nothing to move (no bucket, or not finished).
    pub async fn offload(&self, channel: &str, recording: &str) -> Result<bool, StorageError> {
        if self.remote.is_none() {
            return Ok(false);
        }
        let dir = self.local_dir(channel, recording);
        if !tokio::fs::try_exists(dir.join(MASTER)).await? {
            return Ok(false);
        }
        if !self.is_uploaded(channel, recording).await? {
            self.upload_recording(channel, recording).await?;
        }
        tokio::fs::remove_dir_all(&dir).await?;
        Ok(true)
    }

    /// Every recording in the bucket, complete or not (empty without a bucket). Walks the
    /// channel and recording prefixes and reads one master playlist per recording rather than
    /// listing every segment; only an incomplete upload is listed in full.
    pub async fn list_recordings(&self) -> Result<Vec<StoredRecording>, StorageError> {
        let Some(r) = &self.remote else {
            return Ok(Vec::new());
        };
        let root = (!r.prefix.is_empty()).then(|| Key::from(r.prefix.as_str()));
        let mut out = Vec::new();
        for channel_dir in r
            .store
            .list_with_delimiter(root.as_ref())
            .await?
            .common_prefixes
        {
            let Some(channel) = channel_dir.filename().map(str::to_string) else {
                continue;
            };
            let recordings = r.store.list_with_delimiter(Some(&channel_dir)).await?;
            for dir in recordings.common_prefixes {
                let Some(id) = dir.filename().filter(|id| id.parse::<u64>().is_ok()) else {
                    continue;
                };
                match r.store.head(&dir.clone().join(MASTER)).await {
                    Ok(meta) => out.push(StoredRecording {
                        channel: channel.clone(),
                        id: id.to_string(),
                        last_modified: SystemTime::from(meta.last_modified),
                        complete: true,
                    }),
                    Err(object_store::Error::NotFound { .. }) => {
                        let objects: Vec<_> = r.store.list(Some(&dir)).try_collect().await?;
                        out.extend(group_recordings(
                            &r.prefix,
                            objects
                                .iter()
                                .map(|m| (m.location.as_ref(), SystemTime::from(m.last_modified))),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }

    /// The id of a channel's newest complete recording in the bucket.
    pub async fn latest_recording(&self, channel: &str) -> Result<Option<String>, StorageError> {
        let Some(r) = &self.remote else {
            return Ok(None);
        };
        if !safe_part(channel) {
            return Ok(None);
        }
        let dir = Key::from(object_key(&r.prefix, channel, "", ""));
        let listed = r.store.list_with_delimiter(Some(&dir)).await?;
        let mut ids: Vec<u64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids.into_iter().take(LATEST_PROBES) {
            let id = id.to_string();
            if self.is_uploaded(channel, &id).await? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Deletes a recording, locally and from the bucket.
    pub async fn delete_recording(
        &self,
        channel: &str,
        recording: &str,
    ) -> Result<(), StorageError> {
        if !(safe_part(channel) && safe_part(recording)) {
            return Err(StorageError::NotFound);
        }
        match tokio::fs::remove_dir_all(self.local_dir(channel, recording)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let Some(r) = &self.remote else {
            return Ok(());
        };
        let dir = Key::from(object_key(&r.prefix, channel, recording, ""));
        let keys = r.store.list(Some(&dir)).map_ok(|m| m.location).boxed();
        r.store.delete_stream(keys).try_collect::<Vec<_>>().await?;
        Ok(())
    }
}

/// The files of a recording directory: `master.m3u8` and `<rendition>/<file>`.
fn local_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let kind = e.file_type()?;
        if kind.is_file() {
            out.push(name);
        } else if kind.is_dir() {
            for f in std::fs::read_dir(e.path())? {
                let f = f?;
                if f.file_type()?.is_file()
                    && let Some(file) = f.file_name().to_str()
                {
                    out.push(format!("{name}/{file}"));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_channel_recording_rendition_and_file() {
        assert_eq!(
            object_key("vod/hls", "chan", "1700000000000", "source/seg3.m4s"),
            "vod/hls/chan/1700000000000/source/seg3.m4s"
        );
        assert_eq!(object_key("", "chan", "17", MASTER), "chan/17/master.m3u8");
        assert_eq!(object_key("p", "chan", "", ""), "p/chan");
        assert_eq!(
            split_key("vod/hls", "vod/hls/chan/17/source/init.mp4"),
            Some(("chan", "17", "source/init.mp4"))
        );
        assert_eq!(
            split_key("", "chan/17/master.m3u8"),
            Some(("chan", "17", MASTER))
        );
        // Other prefixes, non-numeric recordings and loose objects are not recordings.
        assert_eq!(split_key("vod", "vodka/chan/17/master.m3u8"), None);
        assert_eq!(split_key("vod", "vod/chan/notes/x"), None);
        assert_eq!(split_key("vod", "vod/chan/17"), None);
    }

    #[test]
    fn playlists_upload_after_their_media_and_the_master_last() {
        let files = [
            "master.m3u8",
            "source/index.m3u8",
            "source/seg1.m4s",
            "audio/index.m3u8",
            "source/init.mp4",
            "audio/seg1.m4s",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            upload_phases(files),
            vec![
                vec!["audio/seg1.m4s", "source/init.mp4", "source/seg1.m4s"],
                vec!["audio/index.m3u8", "source/index.m3u8"],
                vec![MASTER],
            ]
        );
        assert!(upload_phases(Vec::new()).is_empty());
    }

    #[test]
    fn listed_objects_group_into_recordings() {
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let listed = [
            ("p/chan/20/source/seg1.m4s", t(5)),
            ("p/chan/20/master.m3u8", t(9)),
            ("p/chan/10/source/seg1.m4s", t(3)),
            ("p/other/30/audio/init.mp4", t(1)),
            ("p/stray.txt", t(1)),
        ];
        let got = group_recordings("p", listed);
        let brief: Vec<_> = got
            .iter()
            .map(|r| {
                (
                    r.channel.as_str(),
                    r.id.as_str(),
                    r.last_modified,
                    r.complete,
                )
            })
            .collect();
        assert_eq!(
            brief,
            vec![
                ("chan", "10", t(3), false),
                ("chan", "20", t(9), true),
                ("other", "30", t(1), false),
            ]
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap_then_give_up() {
        let p = RetryPolicy {
            attempts: 5,
            first: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        let full: Vec<_> = (1..=5).map(|n| p.backoff(n, 1.0)).collect();
        assert_eq!(
            full,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(300)),
                Some(Duration::from_millis(300)),
                None,
            ]
        );
        // Jitter only shortens a wait, to no less than half of it.
        assert_eq!(p.backoff(2, 0.0), Some(Duration::from_millis(100)));
        assert_eq!(p.backoff(2, 7.0), Some(Duration::from_millis(200)));
        assert_eq!(p.backoff(0, 0.5), None);
        // Huge attempt counts neither overflow nor exceed the cap.
        let long = RetryPolicy {
            attempts: u32::MAX,
            ..p
        };
        assert_eq!(long.backoff(1000, 1.0), Some(Duration::from_millis(300)));
    }

    #[test]
    fn a_recording_dir_lists_master_and_rendition_files() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("source")).expect("mkdir");
        std::fs::write(dir.path().join(MASTER), "#EXTM3U\n").expect("write");
        std::fs::write(dir.path().join("source/init.mp4"), b"i").expect("write");
        let mut files = local_files(dir.path()).expect("list");
        files.sort();
        assert_eq!(files, vec![MASTER.to_string(), "source/init.mp4".into()]);
    }

    #[tokio::test]
    async fn without_a_bucket_reads_stay_local_and_nothing_moves() {
        let root = tempfile::tempdir().expect("dir");
        let s = Storage::open(root.path().to_path_buf(), None).expect("local");
        assert!(!s.is_remote());
        let dir = s.local_dir("chan", "17");
        std::fs::create_dir_all(dir.join("source")).expect("mkdir");
        std::fs::write(dir.join(MASTER), "#EXTM3U\n").expect("write");
        assert_eq!(
            s.get("chan", "17", MASTER).await.expect("get"),
            Bytes::from_static(b"#EXTM3U\n")
        );
        assert!(matches!(
            s.get("chan", "17", "source/seg9.m4s").await,
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            s.get("chan", "..", MASTER).await,
            Err(StorageError::NotFound)
        ));
        assert!(!s.offload("chan", "17").await.expect("offload"));
        assert!(dir.join(MASTER).is_file());
        s.delete_recording("chan", "17").await.expect("delete");
        assert!(!dir.exists());
    }
}
