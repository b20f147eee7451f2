//! Settings of the HLS fallback: where it writes, which ladder it encodes, how URLs are signed,
//! where finished recordings are kept and for how long.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of [`crate::Hls`].
#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// Directory of live and recorded streams (`<root>/<channel>/<stream>/...`).
    pub root: PathBuf,
    /// The transcoded H.264 ladder (and the opt-in AV1 rendition).
    pub ladder: LadderConfig,
    /// HMAC secret of signed playlist and segment URLs (channels that require them).
    pub signing_secret: Vec<u8>,
    /// How long a signed URL stays valid.
    pub signed_url_ttl: Duration,
    /// Recordings older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// Object storage that finished recordings move to; `None` keeps them under `root`.
    pub storage: Option<ObjectStorageConfig>,
}

impl HlsConfig {
    /// Defaults under `root`, with a signing secret.
    pub fn new(root: PathBuf, signing_secret: Vec<u8>) -> Self {
        Self {
            root,
            ladder: LadderConfig::default(),
            signing_secret,
            signed_url_ttl: Duration::from_secs(6 * 3600),
            retention: None,
            storage: None,
        }
    }
}

/// An S3-compatible bucket for recordings (`s3://bucket/prefix`); credentials and region come
/// from the standard `AWS_*` environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStorageConfig {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Endpoint of a non-AWS service (MinIO, R2, moto ...); `None` is AWS itself.
    pub endpoint: Option<String>,
}

impl ObjectStorageConfig {
    /// Parses `s3://bucket[/prefix]` (`s3a://` too), with an optional endpoint URL.
    pub fn parse(url: &str, endpoint: Option<String>) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .or_else(|| url.strip_prefix("s3a://"))
            .ok_or_else(|| format!("storage URL {url} is not s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!("storage URL {url}: bad bucket name {bucket:?}"));
        }
        let prefix = prefix.trim_matches('/');
        // Empty segments ("a//b") would make keys the store normalises differently.
        if prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
            return Err(format!("storage URL {url}: empty segment in the prefix"));
        }
        let endpoint = endpoint.filter(|e| !e.trim().is_empty());
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!("storage endpoint {e} is not an http(s) URL"));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
        })
    }
}

/// Encoder effort: faster encodes fit more renditions per core at some quality cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderSpeed {
    /// Lowest complexity.
    #[default]
    Fast,
    /// Medium complexity.
    Medium,
    /// Highest complexity.
    Quality,
}

impl std::str::FromStr for EncoderSpeed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fast" => Ok(Self::Fast),
            "medium" => Ok(Self::Medium),
            "quality" => Ok(Self::Quality),
            other => Err(format!(
                "unknown encoder speed {other} (fast, medium, quality)"
            )),
        }
    }
}

/// The transcoded renditions.
#[derive(Debug, Clone)]
pub struct LadderConfig {
    /// Output heights, largest first; rungs at or above the source height are skipped. Empty:
    /// no transcoding, only the source rendition (H.264/AV1 sources).
    pub heights: Vec<u32>,
    /// Height of the opt-in AV1 rendition (rav1e), listed after the H.264 ones; capped at the
    /// source height. `None`: no AV1 rendition.
    pub av1_height: Option<u32>,
    /// Encoder effort.
    pub speed: EncoderSpeed,
    /// Keyframe interval, and so segment duration, of transcoded renditions.
    pub segment: Duration,
}

impl LadderConfig {
    /// Whether any video is transcoded (an H.264 rung or the AV1 rendition).
    pub fn transcodes(&self) -> bool {
        !self.heights.is_empty() || self.av1_height.is_some()
    }

    /// Transcodes nothing from now on.
    pub fn disable(&mut self) {
        self.heights.clear();
        self.av1_height = None;
    }
}

impl Default for LadderConfig {
    fn default() -> Self {
        Self {
            heights: vec![720, 480, 360],
            av1_height: None,
            speed: EncoderSpeed::Fast,
            segment: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse_into_bucket_and_prefix() {
        let c = ObjectStorageConfig::parse("s3://vod/onair/hls/", None).expect("url");
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("vod", "onair/hls"));
        let c = ObjectStorageConfig::parse("s3a://vod-1", Some("http://127.0.0.1:9000".into()))
            .expect("url");
        assert_eq!(c.prefix, "");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            ObjectStorageConfig::parse("s3://vod", Some(String::new()))
                .expect("url")
                .endpoint,
            None
        );
        for bad in [
            "vod",
            "gs://vod/x",
            "s3://",
            "s3://Vod",
            "s3://v",
            "s3://vod/a//b",
        ] {
            assert!(ObjectStorageConfig::parse(bad, None).is_err(), "{bad}");
        }
        assert!(ObjectStorageConfig::parse("s3://vod", Some("ftp://x".into())).is_err());
    }
}
