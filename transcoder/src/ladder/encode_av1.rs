//! The opt-in AV1 rung's encoder: rav1e in low-latency mode (no frame reordering, no hidden
//! frames), one thread, bitrate rate control, no scene-cut or periodic key frames of its own, so
//! the ladder decides every key frame as it does for the H.264 rungs.
//!
//! rav1e looks a few frames ahead even without reordering, so a picture comes out three or so
//! pictures after it went in; each output carries the decode time and the key-frame decision of
//! its own input. Output is in the `av01` sample format of the AV1 source remux (OBUs with
//! `obu_size`, no temporal delimiter), with the sequence header OBU in every key frame.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rav1e::prelude::{
    Config, Context, EncoderConfig, EncoderStatus, FrameParameters, FrameType, FrameTypeOverride,
    Rational, SceneDetectionSpeed,
};

use super::{EncodeError, EncodedPicture, Picture};
use crate::config::EncoderSpeed;

/// AV1 can take this share of the H.264 rung bitrate for a similar picture.
pub const AV1_BITRATE_SHARE: f64 = 0.7;

/// rav1e's RDO lookahead (frames). Its presets use 10 at the fastest speeds; each frame of it
/// is a frame of latency, and past a few frames it buys little on live camera content.
const RDO_LOOKAHEAD_FRAMES: usize = 3;

/// rav1e's largest key-frame interval (`i32::MAX / 3` frames, months of video): "never".
const KEYINT_NEVER: u64 = i32::MAX as u64 / 3;

/// rav1e's rate-control buffer, in seconds of frames: short enough that each 1 s segment stays
/// near the target bitrate (what the playlist's BANDWIDTH promises).
const RESERVOIR_SECONDS: f64 = 1.5;

/// One AV1 picture out of the encoder.
#[derive(Debug, Clone)]
pub struct Av1Frame {
    /// Decode time of the source frame this picture was made from.
    pub dts: u64,
    /// The ladder asked for a key frame here (and got one).
    pub forced_key: bool,
    /// The temporal unit; `idr` is set on key frames, which carry `sequence_header`.
    pub picture: EncodedPicture,
}

/// An input picture on its way through rav1e's lookahead.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    frameno: u64,
    dts: u64,
    forced_key: bool,
}

/// rav1e set up for one rung.
pub struct Av1Encoder {
    ctx: Context<u8>,
    width: u32,
    height: u32,
    sent: u64,
    in_flight: VecDeque<InFlight>,
}

impl Av1Encoder {
    /// An encoder for `width` x `height` pictures aiming at `bitrate_bps` for `fps` frames per
    /// second with `speed`'s effort.
    pub fn new(
        width: u32,
        height: u32,
        bitrate_bps: u32,
        fps: f64,
        speed: EncoderSpeed,
    ) -> Result<Self, EncodeError> {
        if width < 16 || height < 16 || width > 8192 || height > 4352 {
            return Err(EncodeError::new(format!(
                "rav1e: unsupported size {width}x{height}"
            )));
        }
        let fps = if fps.is_finite() {
            fps.clamp(1.0, 240.0)
        } else {
            30.0
        };
        // 10 is rav1e's fastest preset and what keeps a 360p rung real time on one core; the
        // slower presets buy quality at 1.5-3x the time.
        let preset = match speed {
            EncoderSpeed::Fast => 10,
            EncoderSpeed::Medium => 9,
            EncoderSpeed::Quality => 8,
        };
        let mut enc = EncoderConfig::with_speed_preset(preset);
        enc.width = width as usize;
        enc.height = height as usize;
        enc.time_base = Rational::new(1000, (fps * 1000.0).round() as u64);
        enc.bit_depth = 8;
        enc.low_latency = true;
        enc.bitrate = i32::try_from(bitrate_bps).unwrap_or(i32::MAX);
        // In bitrate mode `quantizer` is the highest quantizer rate control may use; rav1e's
        // default (100) leaves it 2-3x over the target on detailed content. 255: no cap.
        enc.quantizer = 255;
        enc.reservoir_frame_delay = Some(((fps * RESERVOIR_SECONDS).round() as i32).max(12));
        // Key frames only where the ladder forces them: no periodic ones and no scene-cut
        // detection (which would also cost time on every frame).
        enc.set_key_frame_interval(KEYINT_NEVER, KEYINT_NEVER);
        enc.speed_settings.scene_detection_mode = SceneDetectionSpeed::None;
        enc.speed_settings.rdo_lookahead_frames = RDO_LOOKAHEAD_FRAMES;
        // rav1e writes level 31 (unconstrained) unless told; players read the level from the
        // CODECS string and the sample entry.
        enc.level_idx = Some(level_idx(width, height, fps, bitrate_bps));
        // No thread pool: without rav1e's `threading` feature it runs on the calling thread,
        // the ladder's, one thread per stream like the H.264 rungs.
        let cfg = Config::new().with_encoder_config(enc);
        let ctx = guarded(|| cfg.new_context::<u8>())?
            .map_err(|e| EncodeError::new(format!("rav1e: {e}")))?;
        Ok(Self {
            ctx,
            width,
            height,
            sent: 0,
            in_flight: VecDeque::new(),
        })
    }

    /// Encodes `picture`, the source frame at `dts`, as a key frame when `force_key`; returns
    /// the pictures that came out (earlier inputs, in order, or none while rav1e fills its
    /// lookahead).
    pub fn encode(
        &mut self,
        picture: &Picture,
        dts: u64,
        force_key: bool,
    ) -> Result<Vec<Av1Frame>, EncodeError> {
        if !picture.is_consistent() {
            return Err(EncodeError::new("rav1e: inconsistent picture"));
        }
        if (picture.width, picture.height) != (self.width, self.height) {
            return Err(EncodeError::new(format!(
                "rav1e: {}x{} picture for a {}x{} encoder",
                picture.width, picture.height, self.width, self.height
            )));
        }
        let mut frame = self.ctx.new_frame();
        let (w, h) = (self.width as usize, self.height as usize);
        for (p, plane) in frame.planes.iter_mut().enumerate() {
            let (pw, ph) = if p == 0 {
                (w, h)
            } else {
                (w.div_ceil(2), h.div_ceil(2))
            };
            let (src, src_stride) = (&picture.planes[p], picture.strides[p]);
            let stride = plane.cfg.stride;
            let rows = plane.data_origin_mut().chunks_mut(stride).take(ph);
            for (y, row) in rows.enumerate() {
                let (Some(dst), Some(line)) = (
                    row.get_mut(..pw),
                    src.get(y * src_stride..y * src_stride + pw),
                ) else {
                    return Err(EncodeError::new("rav1e: plane smaller than its size"));
                };
                dst.copy_from_slice(line);
            }
        }
        let params = FrameParameters {
            frame_type_override: if force_key {
                FrameTypeOverride::Key
            } else {
                FrameTypeOverride::No
            },
            ..FrameParameters::default()
        };
        let ctx = &mut self.ctx;
        guarded(|| ctx.send_frame((frame, params)))?
            .map_err(|e| EncodeError::new(format!("rav1e: {e}")))?;
        self.in_flight.push_back(InFlight {
            frameno: self.sent,
            dts,
            forced_key: force_key,
        });
        self.sent += 1;

        let mut out = Vec::new();
        loop {
            let ctx = &mut self.ctx;
            match guarded(|| ctx.receive_packet())? {
                Ok(packet) => {
                    // No reordering: packets come out in input order, one per input.
                    while self
                        .in_flight
                        .front()
                        .is_some_and(|f| f.frameno < packet.input_frameno)
                    {
                        self.in_flight.pop_front();
                    }
                    let Some(input) = self
                        .in_flight
                        .pop_front()
                        .filter(|f| f.frameno == packet.input_frameno)
                    else {
                        return Err(EncodeError::new("rav1e: packet for an unknown input"));
                    };
                    let Some(sample) = crate::depacketize::av1_sample(&packet.data) else {
                        return Err(EncodeError::new("rav1e: unparsable temporal unit"));
                    };
                    let key = packet.frame_type == FrameType::KEY && sample.key_frame;
                    if key && sample.sequence_header.is_none() {
                        return Err(EncodeError::new("rav1e: key frame without sequence header"));
                    }
                    out.push(Av1Frame {
                        dts: input.dts,
                        forced_key: input.forced_key && key,
                        picture: EncodedPicture {
                            data: sample.data,
                            idr: key,
                            sps: None,
                            pps: None,
                            sequence_header: sample.sequence_header,
                        },
                    });
                }
                // A frame went into the reference buffers without being shown (not in
                // low-latency mode, but harmless): ask again.
                Err(EncoderStatus::Encoded) => {}
                Err(EncoderStatus::NeedMoreData) => break,
                Err(e) => return Err(EncodeError::new(format!("rav1e: {e}"))),
            }
        }
        Ok(out)
    }
}

/// Runs a rav1e call, turning a panic into an error: rav1e documents panics on internal
/// invariants, and one stream's AV1 rung failing must only drop that rung.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, EncodeError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| EncodeError::new("rav1e panicked"))
}

/// The lowest AV1 level (`seq_level_idx`) whose picture size, dimensions, display rate and
/// main-tier bitrate fit (AV1 spec Annex A.3); 31 (no level) beyond level 6.3.
fn level_idx(width: u32, height: u32, fps: f64, bitrate_bps: u32) -> u8 {
    // (seq_level_idx, MaxPicSize, MaxHSize, MaxVSize, MaxDisplayRate, MaxBitrate main tier)
    const LEVELS: [(u8, u64, u32, u32, u64, u64); 14] = [
        (0, 147_456, 2048, 1152, 4_423_680, 1_500_000),
        (1, 278_784, 2816, 1584, 8_363_520, 3_000_000),
        (4, 665_856, 4352, 2448, 19_975_680, 6_000_000),
        (5, 1_065_024, 5504, 3096, 31_950_720, 10_000_000),
        (8, 2_359_296, 6144, 3456, 70_778_880, 12_000_000),
        (9, 2_359_296, 6144, 3456, 141_557_760, 20_000_000),
        (12, 8_912_896, 8192, 4352, 267_386_880, 30_000_000),
        (13, 8_912_896, 8192, 4352, 534_773_760, 40_000_000),
        (14, 8_912_896, 8192, 4352, 1_069_547_520, 60_000_000),
        (15, 8_912_896, 8192, 4352, 1_069_547_520, 60_000_000),
        (16, 35_651_584, 16384, 8704, 1_069_547_520, 60_000_000),
        (17, 35_651_584, 16384, 8704, 2_139_095_040, 100_000_000),
        (18, 35_651_584, 16384, 8704, 4_278_190_080, 160_000_000),
        (19, 35_651_584, 16384, 8704, 4_278_190_080, 160_000_000),
    ];
    let pixels = u64::from(width) * u64::from(height);
    let rate = (pixels as f64 * fps).ceil() as u64;
    LEVELS
        .iter()
        .find(|&&(_, pic, w, h, display, bits)| {
            pixels <= pic
                && width <= w
                && height <= h
                && rate <= display
                && u64::from(bitrate_bps) <= bits
        })
        .map_or(31, |l| l.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_size_rate_and_bitrate() {
        assert_eq!(level_idx(320, 180, 30.0, 175_000), 0); // 2.0
        assert_eq!(level_idx(640, 360, 30.0, 490_000), 1); // 2.1 (over 2.0's picture size)
        assert_eq!(level_idx(854, 480, 30.0, 840_000), 4); // 3.0
        assert_eq!(level_idx(1280, 720, 30.0, 1_750_000), 5); // 3.1
        assert_eq!(level_idx(1280, 720, 60.0, 3_000_000), 8); // 4.0 (display rate)
        assert_eq!(level_idx(1920, 1080, 30.0, 3_150_000), 8); // 4.0
        assert_eq!(level_idx(3840, 2160, 30.0, 12_000_000), 12); // 5.0
        assert_eq!(level_idx(320, 180, 30.0, 2_000_000), 1); // bitrate over 2.0's
        assert_eq!(level_idx(20_000, 20_000, 30.0, 1_000_000), 31);
    }

    #[test]
    fn bad_sizes_and_pictures_are_errors_not_panics() {
        for (w, h) in [(0, 0), (8, 8), (10_000, 100)] {
            assert!(Av1Encoder::new(w, h, 200_000, 30.0, EncoderSpeed::Fast).is_err());
        }
        let mut enc =
            Av1Encoder::new(64, 48, 100_000, f64::NAN, EncoderSpeed::Fast).expect("encoder");
        let mut p = Picture::default();
        p.reset(64, 48);
        // Wrong size, then planes shorter than the size says.
        let mut other = Picture::default();
        other.reset(32, 48);
        assert!(enc.encode(&other, 0, true).is_err());
        let mut short = p.clone();
        short.planes[2].truncate(10);
        assert!(enc.encode(&short, 0, true).is_err());
        assert!(enc.encode(&Picture::default(), 0, true).is_err());
        // The encoder still works after refusing those.
        let mut frames = Vec::new();
        for i in 0..8u64 {
            frames.extend(enc.encode(&p, i * 3000, i == 0).expect("encode"));
        }
        assert!(!frames.is_empty());
        assert!(frames[0].forced_key && frames[0].picture.sequence_header.is_some());
    }
}
