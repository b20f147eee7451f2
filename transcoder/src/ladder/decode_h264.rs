//! The H.264 source decoder: openh264 over the depacketizer's AVCC access units.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::formats::YUVSource;

use super::{DecodeError, Picture, SourceFrame, VideoDecoder};

/// openh264 decoding AVCC access units (4-byte NAL lengths, SPS/PPS in-band at keyframes).
pub struct H264Decoder {
    decoder: Decoder,
    annexb: Vec<u8>,
}

impl H264Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, DecodeError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| DecodeError::Codec(e.to_string()))?;
        Ok(Self {
            decoder,
            annexb: Vec::new(),
        })
    }
}

impl VideoDecoder for H264Decoder {
    fn decode(&mut self, frame: &SourceFrame<'_>, out: &mut Picture) -> Result<bool, DecodeError> {
        avcc_to_annexb(frame.data, &mut self.annexb)?;
        let Some(yuv) = self
            .decoder
            .decode(&self.annexb)
            .map_err(|e| DecodeError::Codec(e.to_string()))?
        else {
            return Ok(false);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
            return Err(DecodeError::Malformed("odd or empty picture size"));
        }
        out.reset(w as u32, h as u32);
        copy_plane(yuv.y(), sy, &mut out.planes[0], w, h)?;
        copy_plane(yuv.u(), su, &mut out.planes[1], w / 2, h / 2)?;
        copy_plane(yuv.v(), sv, &mut out.planes[2], w / 2, h / 2)?;
        Ok(true)
    }
}

/// Copies `h` rows of `w` bytes from a strided plane into a tight one.
fn copy_plane(
    src: &[u8],
    stride: usize,
    dst: &mut [u8],
    w: usize,
    h: usize,
) -> Result<(), DecodeError> {
    if stride < w || src.len() < stride * (h - 1) + w || dst.len() < w * h {
        return Err(DecodeError::Malformed(
            "decoder plane smaller than its size",
        ));
    }
    for (row, out) in src.chunks(stride).zip(dst.chunks_exact_mut(w)).take(h) {
        out.copy_from_slice(&row[..w]);
    }
    Ok(())
}

/// Rewrites 4-byte length prefixes as Annex B start codes; refuses lengths that overrun.
pub(crate) fn avcc_to_annexb(avcc: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    let mut rest = avcc;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(DecodeError::Malformed("truncated NAL length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > tail.len() {
            return Err(DecodeError::Malformed("NAL length past the end"));
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&tail[..len]);
        rest = &tail[len..];
    }
    if out.is_empty() {
        return Err(DecodeError::Malformed("empty access unit"));
    }
    Ok(())
}
