//! Retention of recordings: which recorded streams are past the configured age. The decision
//! is sans-IO (time and the listings come in as arguments); [`scan`] reads the disk, and
//! [`merge`] adds what object storage lists.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One recorded (or recording) stream on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingDir {
    /// Channel.
    pub channel: String,
    /// Recording id (its start time in Unix milliseconds).
    pub id: String,
    /// Directory.
    pub path: PathBuf,
    /// Last write of the recording: its VOD playlist, else its start.
    pub last_write: SystemTime,
}

/// Recordings older than `keep` at `now`, except those in `live` (still being written).
pub fn expired<'a>(
    dirs: &'a [RecordingDir],
    live: &[PathBuf],
    now: SystemTime,
    keep: Duration,
) -> Vec<&'a RecordingDir> {
    dirs.iter()
        .filter(|d| !live.contains(&d.path))
        .filter(|d| now.duration_since(d.last_write).is_ok_and(|age| age > keep))
        .collect()
}

/// The recordings on disk (`local`) joined with those in object storage (`(channel, id, last
/// modified)`), each once, at its local path (so live and moving ones match by path) and its
/// newest write in either place.
pub fn merge(
    local: Vec<RecordingDir>,
    stored: impl IntoIterator<Item = (String, String, SystemTime)>,
    root: &Path,
) -> Vec<RecordingDir> {
    let mut out = local;
    for (channel, id, at) in stored {
        match out.iter_mut().find(|d| d.channel == channel && d.id == id) {
            Some(d) => d.last_write = d.last_write.max(at),
            None => out.push(RecordingDir {
                path: root.join(&channel).join(&id),
                channel,
                id,
                last_write: at,
            }),
        }
    }
    out
}

/// Every recording under `root` (`<root>/<channel>/<id>`).
pub fn scan(root: &Path) -> Vec<RecordingDir> {
    let mut out = Vec::new();
    let Ok(channels) = std::fs::read_dir(root) else {
        return out;
    };
    for ch in channels.flatten() {
        let Some(channel) = ch.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(streams) = std::fs::read_dir(ch.path()) else {
            continue;
        };
        for st in streams.flatten() {
            let Some(id) = st.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(ms) = id.parse::<u64>() else { continue };
            let started = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            let path = st.path();
            let ended = std::fs::metadata(path.join(crate::storage::MASTER))
                .and_then(|m| m.modified())
                .ok();
            out.push(RecordingDir {
                channel: channel.clone(),
                id,
                path,
                last_write: ended.map_or(started, |e| e.max(started)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(id: u64, last_write_secs: u64) -> RecordingDir {
        RecordingDir {
            channel: "c".into(),
            id: id.to_string(),
            path: PathBuf::from(format!("/r/c/{id}")),
            last_write: SystemTime::UNIX_EPOCH + Duration::from_secs(last_write_secs),
        }
    }

    #[test]
    fn only_old_finished_recordings_expire() {
        let dirs = vec![dir(1, 100), dir(2, 1000), dir(3, 50)];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1100);
        let live = vec![PathBuf::from("/r/c/3")];
        let gone: Vec<&str> = expired(&dirs, &live, now, Duration::from_secs(500))
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(gone, vec!["1"]);
        // A clock behind the files expires nothing.
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        assert!(expired(&dirs, &[], early, Duration::ZERO).is_empty());
    }

    #[test]
    fn stored_recordings_join_local_ones_once() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let merged = merge(
            vec![dir(1, 100)],
            vec![
                ("c".to_string(), "1".to_string(), at(300)),
                ("c".to_string(), "2".to_string(), at(50)),
            ],
            Path::new("/r"),
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].last_write, at(300));
        assert_eq!(merged[1].path, PathBuf::from("/r/c/2"));
        assert_eq!(merged[1].last_write, at(50));
    }

    #[test]
    fn scan_reads_channel_and_recording_dirs() {
        let root = tempfile::tempdir().expect("dir");
        let rec = root.path().join("chan").join("1700000000000");
        std::fs::create_dir_all(&rec).expect("mkdir");
        std::fs::create_dir_all(root.path().join("chan").join("not-a-recording")).expect("mkdir");
        let found = scan(root.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].channel, "chan");
        assert_eq!(
            found[0].last_write,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
        );
        std::fs::write(rec.join("master.m3u8"), "#EXTM3U\n").expect("write");
        assert!(
            scan(root.path())[0].last_write
                > SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001)
        );
    }
}
