//! Pre-encoded AV1 and VP8 clips for the WHIP publisher: encoded once by `ffmpeg` (its
//! `testsrc2` pattern) into an IVF file in a temporary directory, read back as frames, and
//! looped by the publisher. Nothing binary is kept in the repository.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

/// The codec of an [`EncodedClip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipCodec {
    /// AV1 temporal units (low-overhead OBUs, as IVF stores them).
    Av1,
    /// VP8 frames.
    Vp8,
}

impl ClipCodec {
    /// The ffmpeg encoders tried for this codec, in order of preference, with their options
    /// for low-latency realtime output (no hidden or reordered frames).
    fn encoders(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            ClipCodec::Av1 => &[
                (
                    "libaom-av1",
                    &[
                        "-usage",
                        "realtime",
                        "-cpu-used",
                        "8",
                        "-lag-in-frames",
                        "0",
                        "-row-mt",
                        "1",
                    ],
                ),
                ("libsvtav1", &["-preset", "12"]),
                ("librav1e", &["-speed", "10"]),
            ],
            ClipCodec::Vp8 => &[(
                "libvpx",
                &[
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-auto-alt-ref",
                    "0",
                    "-lag-in-frames",
                    "0",
                ],
            )],
        }
    }
}

/// One encoded frame of a clip.
#[derive(Debug, Clone)]
pub struct ClipFrame {
    /// AV1 temporal unit or VP8 frame.
    pub data: Bytes,
    /// Decoding can start here.
    pub keyframe: bool,
}

/// A pre-encoded video clip that the publisher loops.
#[derive(Debug, Clone)]
pub struct EncodedClip {
    /// The frames' codec.
    pub codec: ClipCodec,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second the clip was encoded at.
    pub fps: u32,
    /// Frames in decode order; the first is a keyframe.
    pub frames: Vec<ClipFrame>,
}

/// Whether ffmpeg on `PATH` has an encoder for `codec`.
pub fn ffmpeg_can_encode(codec: ClipCodec) -> bool {
    available_encoder(codec).is_ok()
}

/// The first of `codec`'s encoders that ffmpeg on `PATH` has, with its options.
fn available_encoder(
    codec: ClipCodec,
) -> anyhow::Result<&'static (&'static str, &'static [&'static str])> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .context("running ffmpeg (scripts/test installs it)")?;
    let list = String::from_utf8_lossy(&out.stdout);
    codec
        .encoders()
        .iter()
        .find(|(name, _)| list.split_whitespace().any(|w| w == *name))
        .with_context(|| format!("ffmpeg has no {codec:?} encoder"))
}

impl EncodedClip {
    /// Encodes `duration` of ffmpeg's `testsrc2` at `width` x `height` and `fps`, a keyframe
    /// every `keyframe_interval`, with the first available encoder for `codec`.
    pub fn encode_with_ffmpeg(
        codec: ClipCodec,
        width: u32,
        height: u32,
        fps: u32,
        duration: Duration,
        keyframe_interval: Duration,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(fps > 0 && width > 0 && height > 0, "empty clip geometry");
        let (encoder, options) = available_encoder(codec)?;
        let dir = tempfile::tempdir().context("creating a temp dir")?;
        let path = dir.path().join("clip.ivf");
        let frames = (duration.as_secs_f64() * f64::from(fps)).round().max(1.0) as u32;
        let gop = (keyframe_interval.as_secs_f64() * f64::from(fps))
            .round()
            .max(1.0) as u32;
        let bitrate = (u64::from(width) * u64::from(height) * u64::from(fps) / 10).max(100_000);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={width}x{height}:rate={fps}"))
            .args(["-frames:v", &frames.to_string(), "-c:v", encoder])
            .args(*options)
            .args(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()])
            .args(["-b:v", &bitrate.to_string(), "-pix_fmt", "yuv420p"])
            .args(["-f", "ivf", "-y"])
            .arg(&path)
            .status()
            .context("running ffmpeg")?;
        anyhow::ensure!(status.success(), "ffmpeg {encoder} failed ({status})");
        let ivf = std::fs::read(&path).context("reading the IVF clip")?;
        let mut clip = Self::from_ivf(codec, &ivf)?;
        clip.fps = fps;
        Ok(clip)
    }

    /// Reads an IVF file (32-byte header, then 12-byte frame headers).
    pub fn from_ivf(codec: ClipCodec, ivf: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(ivf.len() >= 32 && &ivf[..4] == b"DKIF", "not an IVF file");
        let le16 = |i: usize| u16::from_le_bytes([ivf[i], ivf[i + 1]]);
        let header_len = usize::from(le16(6)).max(32);
        let (width, height) = (u32::from(le16(12)), u32::from(le16(14)));
        let rate = u32::from_le_bytes([ivf[16], ivf[17], ivf[18], ivf[19]]);
        let scale = u32::from_le_bytes([ivf[20], ivf[21], ivf[22], ivf[23]]);
        let mut rest = ivf.get(header_len..).context("short IVF header")?;
        let mut frames = Vec::new();
        while rest.len() >= 12 {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let data = rest.get(12..12 + len).context("truncated IVF frame")?;
            let data = match codec {
                ClipCodec::Av1 => strip_temporal_delimiters(data)?,
                ClipCodec::Vp8 => data.to_vec(),
            };
            let keyframe = match codec {
                ClipCodec::Av1 => av1_is_key(&data),
                ClipCodec::Vp8 => data.first().is_some_and(|b| b & 0x01 == 0),
            };
            if !data.is_empty() {
                frames.push(ClipFrame {
                    data: Bytes::from(data),
                    keyframe,
                });
            }
            rest = &rest[12 + len..];
        }
        anyhow::ensure!(
            frames.first().is_some_and(|f| f.keyframe),
            "the clip does not start with a keyframe"
        );
        Ok(Self {
            codec,
            width,
            height,
            fps: if scale > 0 && rate > 0 {
                (rate / scale).max(1)
            } else {
                30
            },
            frames,
        })
    }
}

/// Reads a LEB128 value; `None` when it runs past the end or over 8 bytes.
fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &b) in data.iter().take(8).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The sized OBUs of a temporal unit as (type, whole OBU bytes, payload offset).
fn obus(mut tu: &[u8]) -> anyhow::Result<Vec<(u8, &[u8], usize)>> {
    let mut out = Vec::new();
    while let Some(&first) = tu.first() {
        anyhow::ensure!(first & 0x02 != 0, "AV1 OBU without obu_size in IVF");
        let header = if first & 0x04 != 0 { 2 } else { 1 };
        let (len, used) = tu.get(header..).and_then(leb128).context("bad obu_size")?;
        let end = header + used + len;
        let obu = tu.get(..end).context("OBU past the end")?;
        out.push(((first >> 3) & 0x0f, obu, header + used));
        tu = &tu[end..];
    }
    Ok(out)
}

/// Drops temporal delimiter OBUs (RTP leaves them out).
fn strip_temporal_delimiters(tu: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(obus(tu)?
        .into_iter()
        .filter(|(t, ..)| *t != 2)
        .flat_map(|(_, obu, _)| obu.iter().copied())
        .collect())
}

/// A temporal unit with a sequence header and a KEY_FRAME frame header.
fn av1_is_key(tu: &[u8]) -> bool {
    let Ok(list) = obus(tu) else { return false };
    let has_seq = list.iter().any(|(t, ..)| *t == 1);
    let key = list.iter().any(|(t, obu, off)| {
        // OBU_FRAME_HEADER or OBU_FRAME: show_existing_frame = 0, frame_type = KEY_FRAME.
        (*t == 3 || *t == 6) && obu.get(*off).is_some_and(|b| b & 0xe0 == 0)
    });
    has_seq && key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av1_and_vp8_clips_from_ffmpeg() {
        for codec in [ClipCodec::Av1, ClipCodec::Vp8] {
            if !ffmpeg_can_encode(codec) {
                eprintln!("ffmpeg cannot encode {codec:?}; skipping");
                continue;
            }
            let clip = EncodedClip::encode_with_ffmpeg(
                codec,
                320,
                180,
                30,
                Duration::from_secs(2),
                Duration::from_secs(1),
            )
            .expect("clip");
            assert_eq!((clip.width, clip.height, clip.fps), (320, 180, 30));
            assert_eq!(clip.frames.len(), 60, "{codec:?}");
            let keys: Vec<usize> = clip
                .frames
                .iter()
                .enumerate()
                .filter(|(_, f)| f.keyframe)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(keys, vec![0, 30], "{codec:?}");
        }
    }

    #[test]
    fn garbage_ivf_is_an_error() {
        assert!(EncodedClip::from_ivf(ClipCodec::Av1, b"nope").is_err());
        let mut ivf = b"DKIF".to_vec();
        ivf.resize(32, 0);
        ivf.extend_from_slice(&[200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert!(EncodedClip::from_ivf(ClipCodec::Vp8, &ivf).is_err());
    }
}
