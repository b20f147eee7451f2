//! One rung's H.264 encoder: openh264 (its bundled C++), baseline profile, bitrate rate control,
//! one thread, no frame skipping and no IDRs of its own, so the ladder decides every keyframe.

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;

use super::{EncodeError, EncodedPicture, Picture};
use crate::config::EncoderSpeed;

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// openh264 set up for one rung.
pub struct H264Encoder {
    encoder: Encoder,
}

impl H264Encoder {
    /// An encoder aiming at `bitrate_bps` for `fps` frames per second with `speed`'s effort.
    pub fn new(bitrate_bps: u32, fps: f32, speed: EncoderSpeed) -> Result<Self, EncodeError> {
        let complexity = match speed {
            EncoderSpeed::Fast => Complexity::Low,
            EncoderSpeed::Medium => Complexity::Medium,
            EncoderSpeed::Quality => Complexity::High,
        };
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(complexity)
            // Every source frame must come out of every rung with the same timestamp, and only
            // the ladder's aligned IDRs may start segments.
            .skip_frames(false)
            .scene_change_detect(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncodeError::new(format!("openh264: {e}")))?;
        Ok(Self { encoder })
    }

    /// Encodes `picture` at `millis` (rate-control clock); `force_idr` makes it an IDR.
    pub fn encode(
        &mut self,
        picture: &Picture,
        millis: u64,
        force_idr: bool,
    ) -> Result<Option<EncodedPicture>, EncodeError> {
        if !picture.is_consistent() {
            return Err(EncodeError::new("openh264: inconsistent picture"));
        }
        if force_idr {
            self.encoder.force_intra_frame();
        }
        let stream = self
            .encoder
            .encode_at(&View(picture), openh264::Timestamp::from_millis(millis))
            .map_err(|e| EncodeError::new(format!("openh264: {e}")))?;
        let idr = stream.frame_type() == FrameType::IDR;
        if matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let mut out = EncodedPicture {
            data: Vec::with_capacity(16 * 1024),
            idr,
            sps: None,
            pps: None,
            sequence_header: None,
        };
        for l in 0..stream.num_layers() {
            let Some(layer) = stream.layer(l) else {
                continue;
            };
            for n in 0..layer.nal_count() {
                let Some(nal) = layer.nal_unit(n).map(strip_start_code) else {
                    continue;
                };
                let Some(&header) = nal.first() else {
                    continue;
                };
                match header & 0x1f {
                    NAL_SPS => out.sps = Some(nal.to_vec()),
                    NAL_PPS => out.pps = Some(nal.to_vec()),
                    _ => {}
                }
                let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
                out.data.extend_from_slice(&len.to_be_bytes());
                out.data.extend_from_slice(nal);
            }
        }
        Ok((!out.data.is_empty()).then_some(out))
    }
}

/// openh264 hands out NAL units with their Annex B start code.
fn strip_start_code(nal: &[u8]) -> &[u8] {
    if let Some(rest) = nal.strip_prefix(&[0, 0, 0, 1]) {
        rest
    } else if let Some(rest) = nal.strip_prefix(&[0, 0, 1]) {
        rest
    } else {
        nal
    }
}

/// A [`Picture`] as openh264 input.
struct View<'a>(&'a Picture);

impl YUVSource for View<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let s = self.0.strides;
        (s[0], s[1], s[2])
    }

    fn y(&self) -> &[u8] {
        &self.0.planes[0]
    }

    fn u(&self) -> &[u8] {
        &self.0.planes[1]
    }

    fn v(&self) -> &[u8] {
        &self.0.planes[2]
    }
}
