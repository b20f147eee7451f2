//! The AV1 source decoder: dav1d over the depacketizer's temporal units (OBUs with `obu_size`,
//! the low-overhead bitstream format dav1d reads directly).
//!
//! Whatever dav1d outputs becomes 8-bit I420: high bit depths are shifted down, 4:2:2 and 4:4:4
//! chroma is averaged down to 4:2:0, monochrome gets neutral chroma, and an odd size loses its
//! last row or column (the ladder's scaler and encoder work on even sizes).

use dav1d::{Decoder, PixelLayout, PlanarImageComponent, Settings};

use super::{DecodeError, Picture, SourceFrame, VideoDecoder};

/// Largest picture accepted, in luma samples (8K); larger sequence headers are refused before
/// dav1d allocates for them, so garbage cannot make it reserve gigabytes.
const MAX_PIXELS: u32 = 7680 * 4320;

/// dav1d decoding AV1 temporal units, one picture out per temporal unit.
pub struct Av1Decoder {
    decoder: Decoder,
}

impl Av1Decoder {
    /// A new decoder: one thread and no frame delay, so each temporal unit's picture comes out
    /// before the next one goes in (the ladder paces itself on that).
    pub fn new() -> Result<Self, DecodeError> {
        let mut settings = Settings::new();
        settings.set_n_threads(1);
        settings.set_max_frame_delay(1);
        settings.set_frame_size_limit(MAX_PIXELS);
        let decoder = Decoder::with_settings(&settings)
            .map_err(|e| DecodeError::Codec(format!("dav1d: {e}")))?;
        Ok(Self { decoder })
    }

    /// Feeds one temporal unit and returns the last picture it produced, if any.
    fn send(&mut self, data: Vec<u8>) -> Result<Option<dav1d::Picture>, DecodeError> {
        let codec = |e: dav1d::Error| DecodeError::Codec(format!("dav1d: {e}"));
        let mut picture = None;
        let mut sent = self.decoder.send_data(data, None, None, None);
        // `Again` on send means a picture must be taken out before the rest of the data fits;
        // the wrapper panics if new data is sent while some is still pending, so drain fully.
        let mut rounds = 0;
        while let Err(dav1d::Error::Again) = sent {
            rounds += 1;
            match self.decoder.get_picture() {
                Ok(p) => picture = Some(p),
                Err(dav1d::Error::Again) if rounds > 64 => {
                    // Neither side makes progress: drop the rest rather than spin.
                    self.decoder.flush();
                    return Err(DecodeError::Codec("dav1d: stuck on pending data".into()));
                }
                Err(dav1d::Error::Again) => {}
                Err(e) => {
                    self.decoder.flush();
                    return Err(codec(e));
                }
            }
            sent = self.decoder.send_pending_data();
        }
        if let Err(e) = sent {
            return Err(codec(e));
        }
        match self.decoder.get_picture() {
            Ok(p) => Ok(Some(p)),
            Err(dav1d::Error::Again) => Ok(picture),
            Err(e) => Err(codec(e)),
        }
    }
}

impl VideoDecoder for Av1Decoder {
    fn decode(&mut self, frame: &SourceFrame<'_>, out: &mut Picture) -> Result<bool, DecodeError> {
        if frame.data.is_empty() {
            return Err(DecodeError::Malformed("empty temporal unit"));
        }
        let Some(pic) = self.send(frame.data.to_vec())? else {
            return Ok(false);
        };
        convert(&pic, out)?;
        Ok(true)
    }
}

/// Copies a dav1d picture into an 8-bit I420 [`Picture`].
fn convert(pic: &dav1d::Picture, out: &mut Picture) -> Result<(), DecodeError> {
    let (w, h) = (pic.width() & !1, pic.height() & !1);
    if w == 0 || h == 0 {
        return Err(DecodeError::Malformed("picture smaller than 2x2"));
    }
    let bits = pic.bits_per_component().map_or(8, |b| b.0);
    let wide = match pic.bit_depth() {
        8 => false,
        16 => true,
        _ => return Err(DecodeError::Codec("dav1d: unknown sample size".into())),
    };
    if !(8..=12).contains(&bits) || (bits > 8) != wide {
        return Err(DecodeError::Codec(format!(
            "dav1d: {bits}-bit samples in {}-bit storage",
            pic.bit_depth()
        )));
    }
    let src = Source {
        pic,
        wide,
        shift: bits as u32 - 8,
    };
    out.reset(w, h);
    let (w, h) = (w as usize, h as usize);
    let (cw, ch) = (w / 2, h / 2);
    src.copy(PlanarImageComponent::Y, &mut out.planes[0], w, h, (1, 1))?;
    let chroma_step = match pic.pixel_layout() {
        PixelLayout::I420 => (1, 1),
        PixelLayout::I422 => (1, 2),
        PixelLayout::I444 => (2, 2),
        PixelLayout::I400 => {
            out.planes[1][..cw * ch].fill(128);
            out.planes[2][..cw * ch].fill(128);
            return Ok(());
        }
    };
    src.copy(
        PlanarImageComponent::U,
        &mut out.planes[1],
        cw,
        ch,
        chroma_step,
    )?;
    src.copy(
        PlanarImageComponent::V,
        &mut out.planes[2],
        cw,
        ch,
        chroma_step,
    )?;
    Ok(())
}

/// One decoded picture's planes as 8-bit samples.
struct Source<'a> {
    pic: &'a dav1d::Picture,
    /// Samples are 16-bit little-endian words (10/12-bit content).
    wide: bool,
    /// Right shift down to 8 bits.
    shift: u32,
}

impl Source<'_> {
    /// Writes a `w` x `h` 8-bit plane to `dst`, averaging `step` (x, y) source samples into
    /// each output sample (1 = plain copy, 2 = halve that direction).
    fn copy(
        &self,
        c: PlanarImageComponent,
        dst: &mut [u8],
        w: usize,
        h: usize,
        step: (usize, usize),
    ) -> Result<(), DecodeError> {
        let plane = self.pic.plane(c);
        let data: &[u8] = &plane;
        let stride = self.pic.stride(c) as usize;
        let bytes = if self.wide { 2 } else { 1 };
        let (sx, sy) = step;
        let row_bytes = w * sx * bytes;
        let rows = h * sy;
        if stride < row_bytes || data.len() < stride * (rows - 1) + row_bytes || dst.len() < w * h {
            return Err(DecodeError::Malformed(
                "decoder plane smaller than its size",
            ));
        }
        let sample = |row: &[u8], x: usize| -> u32 {
            if self.wide {
                u32::from(u16::from_le_bytes([row[2 * x], row[2 * x + 1]]))
            } else {
                u32::from(row[x])
            }
        };
        let n = (sx * sy) as u32;
        for (y, out) in dst.chunks_exact_mut(w).take(h).enumerate() {
            let first = y * sy * stride;
            let rows: [&[u8]; 2] = [
                &data[first..first + row_bytes],
                &data[first + (sy - 1) * stride..first + (sy - 1) * stride + row_bytes],
            ];
            if n == 1 && !self.wide {
                out.copy_from_slice(rows[0]);
                continue;
            }
            for (x, o) in out.iter_mut().enumerate() {
                let mut sum = 0;
                for row in &rows[..sy] {
                    for k in 0..sx {
                        sum += sample(row, x * sx + k);
                    }
                }
                let avg = (sum + n / 2) / n;
                *o = (avg >> self.shift).min(255) as u8;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::{
        Av1Depacketizer, Depacketizer, Output, RtpIn, parse_av1_sequence_header,
    };

    #[test]
    fn garbage_never_panics_and_is_an_error_or_nothing() {
        let mut d = Av1Decoder::new().expect("dav1d");
        let mut out = Picture::default();
        let mut seed = 0x1234_5678_9abc_def0u64;
        for i in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 200) as usize;
            let mut data: Vec<u8> = (0..len)
                .map(|k| (seed >> (k % 56)) as u8 ^ k as u8)
                .collect();
            // Some with a plausible sequence header OBU type in front, to get past the parser.
            if i % 3 == 0 && !data.is_empty() {
                data[0] = 0x0a;
            }
            let frame = SourceFrame {
                dts: i,
                keyframe: i % 10 == 0,
                data: &data,
            };
            if let Ok(true) = d.decode(&frame, &mut out) {
                assert!(out.is_consistent());
            }
        }
        assert!(
            d.decode(
                &SourceFrame {
                    dts: 0,
                    keyframe: true,
                    data: &[]
                },
                &mut out
            )
            .is_err()
        );
    }

    /// A real stream through the depacketizer and the decoder: needs ffmpeg with an AV1
    /// encoder (scripts/test installs it); skipped with a note when there is none.
    #[test]
    fn decodes_an_ffmpeg_stream_through_the_depacketizer() {
        let Some(units) = super::super::test_clip::ffmpeg_ivf_frames(
            176,
            144,
            10,
            &[
                "-c:v",
                "libaom-av1",
                "-usage",
                "realtime",
                "-cpu-used",
                "8",
                "-lag-in-frames",
                "0",
                "-g",
                "30",
                "-pix_fmt",
                "yuv420p",
            ],
        ) else {
            eprintln!("no ffmpeg AV1 encoder; skipping");
            return;
        };
        let seq = units
            .iter()
            .find_map(|u| first_sequence_header(u))
            .expect("sequence header");
        let info = parse_av1_sequence_header(&seq).expect("parse");
        assert_eq!((info.max_frame_width, info.max_frame_height), (176, 144));

        // Packetize the way senders do (one OBU per element, W = 0 with sizes), depacketize.
        let mut depack = Av1Depacketizer::new();
        let mut dec = Av1Decoder::new().expect("dav1d");
        let mut out = Picture::default();
        let mut decoded = 0;
        for (i, unit) in units.iter().enumerate() {
            let payload = rtp_payload(unit, i == 0);
            for o in depack.push(&RtpIn {
                seq: i as u16,
                timestamp: i as u32 * 3000,
                marker: true,
                payload: &payload,
            }) {
                let Output::Frame(f) = o else { continue };
                let frame = SourceFrame {
                    dts: u64::from(f.timestamp),
                    keyframe: f.keyframe,
                    data: &f.data,
                };
                if dec.decode(&frame, &mut out).expect("decodes") {
                    decoded += 1;
                    assert_eq!((out.width, out.height), (176, 144));
                    assert!(out.is_consistent());
                }
            }
        }
        assert_eq!(decoded, units.len());
        // The test pattern is not flat: the luma plane has detail.
        let (min, max) = out.planes[0]
            .iter()
            .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(max - min > 50, "luma {min}..{max}");
    }

    /// Splits sized OBUs into (header byte + extension, payload).
    fn obus(mut tu: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(&first) = tu.first() {
            let hlen = if first & 0x04 != 0 { 2 } else { 1 };
            let (len, used) = crate::bits::read_leb128(&tu[hlen..]).expect("obu_size");
            let header = tu[..hlen].to_vec();
            let payload = tu[hlen + used..hlen + used + len].to_vec();
            tu = &tu[hlen + used + len..];
            out.push((header, payload));
        }
        out
    }

    fn first_sequence_header(tu: &[u8]) -> Option<Vec<u8>> {
        obus(tu).into_iter().find_map(|(h, p)| {
            ((h[0] >> 3) & 0x0f == 1).then(|| {
                let mut obu = h.clone();
                crate::bits::write_leb128(&mut obu, p.len());
                obu.extend_from_slice(&p);
                obu
            })
        })
    }

    /// One RTP payload for a whole temporal unit: W = 0, every OBU length-prefixed without
    /// its own `obu_size`, temporal delimiters left out.
    fn rtp_payload(tu: &[u8], first: bool) -> Vec<u8> {
        let mut p = vec![if first { 0x08 } else { 0x00 }];
        for (mut header, payload) in obus(tu) {
            if (header[0] >> 3) & 0x0f == 2 {
                continue;
            }
            header[0] &= !0x02;
            crate::bits::write_leb128(&mut p, header.len() + payload.len());
            p.extend_from_slice(&header);
            p.extend_from_slice(&payload);
        }
        p
    }
}
