//! H.264 for the test clients: openh264 encode/decode, RTP packetization (RFC 6184,
//! packetization-mode 1) and reassembly of received RTP into access units.

use anyhow::Context;
use bytes::Bytes;
use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;

use super::pattern::{FrameStamp, YuvFrame, extract};

/// RTP payload budget per packet: 1200 bytes total like browsers and OBS, minus the fixed RTP
/// header and room for the mid/rid header extensions.
pub const RTP_PAYLOAD_MTU: usize = 1200 - 12 - 24;

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// One encoded picture in Annex B form.
pub struct EncodedFrame {
    /// NAL units with start codes.
    pub data: Vec<u8>,
    /// True for an IDR picture (with SPS/PPS in front).
    pub keyframe: bool,
}

/// openh264 encoder configured for real-time streaming (no frame skipping, no B-frames).
pub struct H264Encoder {
    encoder: Encoder,
}

impl H264Encoder {
    /// An encoder targeting `bitrate_bps` at `fps`; the size comes from the frames.
    pub fn new(bitrate_bps: u32, fps: u32) -> anyhow::Result<Self> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            // Every generated frame must go out: the receiver counts frame indices.
            .skip_frames(false)
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .context("creating openh264 encoder")?;
        Ok(Self { encoder })
    }

    /// Encodes one frame; `force_keyframe` makes it an IDR. `None` if the encoder produced nothing.
    pub fn encode(
        &mut self,
        frame: &YuvFrame,
        force_keyframe: bool,
    ) -> anyhow::Result<Option<EncodedFrame>> {
        if force_keyframe {
            self.encoder.force_intra_frame();
        }
        let bitstream = self.encoder.encode(frame).context("openh264 encode")?;
        let keyframe = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        let data = bitstream.to_vec();
        if data.is_empty() || bitstream.frame_type() == FrameType::Skip {
            return Ok(None);
        }
        Ok(Some(EncodedFrame { data, keyframe }))
    }
}

/// What a decoded picture showed.
#[derive(Debug, Clone, Copy)]
pub struct DecodedFrame {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The embedded stamp, if it could be read.
    pub stamp: Option<FrameStamp>,
}

/// openh264 decoder that reads the embedded [`FrameStamp`] from each picture.
pub struct H264Decoder {
    decoder: Decoder,
}

impl H264Decoder {
    /// A new decoder.
    pub fn new() -> anyhow::Result<Self> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .context("creating openh264 decoder")?;
        Ok(Self { decoder })
    }

    /// Decodes one Annex B access unit. `Ok(None)` means the decoder needs more data.
    pub fn decode(&mut self, access_unit: &[u8]) -> anyhow::Result<Option<DecodedFrame>> {
        let picture = self
            .decoder
            .decode(access_unit)
            .map_err(|e| anyhow::anyhow!("openh264 decode: {e}"))?;
        Ok(picture.map(|yuv| {
            let (w, h) = yuv.dimensions();
            let (stride, _, _) = yuv.strides();
            DecodedFrame {
                width: w as u32,
                height: h as u32,
                stamp: extract(yuv.y(), stride, w, h),
            }
        }))
    }
}

/// Splits an Annex B stream into NAL units (without start codes).
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                // A 4-byte start code leaves one extra zero on the previous NAL.
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(&data[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start
        && s < data.len()
    {
        nals.push(&data[s..]);
    }
    nals.retain(|n| !n.is_empty());
    nals
}

/// Whether an Annex B access unit contains an IDR slice.
pub fn is_keyframe(access_unit: &[u8]) -> bool {
    split_annexb(access_unit)
        .iter()
        .any(|nal| nal[0] & 0x1F == NAL_IDR)
}

/// Packetizes Annex B access units into RTP payloads (single NAL, STAP-A for SPS+PPS, FU-A).
#[derive(Default)]
pub struct H264Packetizer {
    payloader: H264Payloader,
}

impl H264Packetizer {
    /// Payloads for one access unit; the caller sets the marker bit on the last one.
    pub fn packetize(&mut self, access_unit: &[u8]) -> anyhow::Result<Vec<Bytes>> {
        self.payloader
            .payload(RTP_PAYLOAD_MTU, &Bytes::copy_from_slice(access_unit))
            .map_err(|e| anyhow::anyhow!("h264 payloader: {e}"))
    }
}

/// One access unit reassembled from RTP.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Annex B bytes.
    pub data: Vec<u8>,
    /// RTP timestamp shared by its packets.
    pub rtp_timestamp: u32,
    /// Contains an IDR slice.
    pub keyframe: bool,
    /// Contains an SPS.
    pub has_sps: bool,
    /// All packets arrived in sequence and the marker bit was seen.
    pub complete: bool,
}

/// Reassembles access units from RTP packets of one stream, in arrival order.
///
/// A gap in sequence numbers, a fragment without its start, or an unknown NAL type marks the
/// unit as incomplete rather than dropping it, so the caller decides (skip until keyframe,
/// send PLI).
#[derive(Default)]
pub struct AccessUnitAssembler {
    current: Option<AccessUnit>,
    fragment: Option<Vec<u8>>,
    last_seq: Option<u16>,
}

impl AccessUnitAssembler {
    /// Forgets all state (for example when the sender's SSRC changes).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Feeds one packet; returns the access units it finished (zero, one, or two when a lost
    /// marker packet is detected by a timestamp change).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        let in_order = match self.last_seq {
            Some(last) => seq == last.wrapping_add(1),
            None => true,
        };
        if let Some(last) = self.last_seq {
            // Late or duplicate packets (retransmissions after the unit was emitted): ignore.
            let delta = seq.wrapping_sub(last);
            if delta == 0 || delta > 0x8000 {
                return out;
            }
        }
        self.last_seq = Some(seq);

        if let Some(cur) = &self.current
            && cur.rtp_timestamp != timestamp
        {
            // The previous unit never saw its marker packet.
            if let Some(mut unit) = self.current.take() {
                unit.complete = false;
                out.push(unit);
            }
            self.fragment = None;
        }
        let unit = self.current.get_or_insert_with(|| AccessUnit {
            data: Vec::new(),
            rtp_timestamp: timestamp,
            keyframe: false,
            has_sps: false,
            // A unit whose first packet we did not see in order may be missing its head.
            complete: in_order,
        });
        if !in_order {
            unit.complete = false;
            self.fragment = None;
        }
        if !depacketize(payload, unit, &mut self.fragment) {
            unit.complete = false;
        }
        if marker {
            if self.fragment.take().is_some() {
                unit.complete = false;
            }
            if let Some(unit) = self.current.take() {
                out.push(unit);
            }
        }
        out
    }
}

fn append_nal(unit: &mut AccessUnit, nal: &[u8]) {
    if nal.is_empty() {
        return;
    }
    match nal[0] & 0x1F {
        NAL_IDR => unit.keyframe = true,
        NAL_SPS => unit.has_sps = true,
        _ => {}
    }
    unit.data.extend_from_slice(&[0, 0, 0, 1]);
    unit.data.extend_from_slice(nal);
}

/// Appends the NAL units in one RTP payload; false if the payload is malformed.
fn depacketize(payload: &[u8], unit: &mut AccessUnit, fragment: &mut Option<Vec<u8>>) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1F {
        1..=23 => {
            append_nal(unit, payload);
            true
        }
        NAL_STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() >= 2 {
                let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(nal) = rest.get(2..2 + len) else {
                    return false;
                };
                append_nal(unit, nal);
                rest = &rest[2 + len..];
            }
            rest.is_empty()
        }
        NAL_FU_A => {
            let Some(&fu_header) = payload.get(1) else {
                return false;
            };
            let start = fu_header & 0x80 != 0;
            let end = fu_header & 0x40 != 0;
            if start {
                let mut nal = Vec::with_capacity(8 * payload.len());
                nal.push((header & 0xE0) | (fu_header & 0x1F));
                nal.extend_from_slice(&payload[2..]);
                *fragment = Some(nal);
            } else if let Some(nal) = fragment.as_mut() {
                nal.extend_from_slice(&payload[2..]);
            } else {
                return false;
            }
            if end && let Some(nal) = fragment.take() {
                append_nal(unit, &nal);
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pattern::PatternGenerator;
    use super::*;

    /// generate -> encode -> packetize -> reassemble -> decode -> extract, at the three sizes
    /// a 720p publisher's simulcast layers use.
    #[test]
    fn pattern_survives_encode_packetize_decode() {
        for (w, h, bitrate) in [
            (1280, 720, 1_500_000),
            (640, 360, 500_000),
            (320, 180, 150_000),
        ] {
            let mut generator = PatternGenerator::new(w, h).expect("valid size");
            let mut encoder = H264Encoder::new(bitrate, 30).expect("encoder");
            let mut decoder = H264Decoder::new().expect("decoder");
            let mut packetizer = H264Packetizer::default();
            let mut assembler = AccessUnitAssembler::default();
            let mut seq: u16 = 65530; // exercise wrap-around
            let base_ts = 1_700_000_000_000_000u64;
            let mut decoded = 0;
            for i in 0..12u32 {
                let stamp = FrameStamp {
                    index: 1000 + i,
                    timestamp_us: base_ts + i as u64 * 33_333,
                };
                let frame = generator.render(stamp);
                let encoded = encoder
                    .encode(frame, i == 0 || i == 8)
                    .expect("encode")
                    .expect("frame not skipped");
                assert_eq!(
                    encoded.keyframe,
                    i == 0 || i == 8,
                    "frame {i} keyframe flag"
                );
                assert_eq!(is_keyframe(&encoded.data), encoded.keyframe);
                let payloads = packetizer.packetize(&encoded.data).expect("packetize");
                let n = payloads.len();
                let mut units = Vec::new();
                for (k, p) in payloads.iter().enumerate() {
                    units.extend(assembler.push(seq, i * 3000, k + 1 == n, p));
                    seq = seq.wrapping_add(1);
                }
                assert_eq!(units.len(), 1, "one access unit per frame");
                let unit = &units[0];
                assert!(unit.complete);
                assert_eq!(unit.keyframe, encoded.keyframe);
                if unit.keyframe {
                    assert!(unit.has_sps, "IDR carries SPS");
                }
                let pic = decoder
                    .decode(&unit.data)
                    .expect("decode")
                    .expect("a picture per access unit");
                assert_eq!((pic.width, pic.height), (w, h));
                assert_eq!(pic.stamp, Some(stamp), "{w}x{h} frame {i}");
                decoded += 1;
            }
            assert_eq!(decoded, 12);
        }
    }

    /// The encoder spends roughly its target on the pattern (the noise band makes it work).
    #[test]
    fn bitrate_tracks_target() {
        for (w, h, bitrate) in [(640, 360, 600_000u32), (320, 180, 150_000)] {
            let mut generator = PatternGenerator::new(w, h).expect("valid size");
            let mut encoder = H264Encoder::new(bitrate, 30).expect("encoder");
            let mut bytes = 0usize;
            let frames = 60u32;
            for i in 0..frames {
                let stamp = FrameStamp {
                    index: i,
                    timestamp_us: 0,
                };
                let frame = generator.render(stamp);
                if let Some(e) = encoder.encode(frame, i == 0).expect("encode") {
                    // Skip the first keyframe, like a steady-state measurement.
                    if i > 0 {
                        bytes += e.data.len();
                    }
                }
            }
            let bps = bytes as f64 * 8.0 * 30.0 / (frames - 1) as f64;
            eprintln!("{w}x{h}: target {bitrate} got {bps:.0}");
            assert!(
                bps > bitrate as f64 * 0.5 && bps < bitrate as f64 * 1.6,
                "{w}x{h}: target {bitrate} bit/s, got {bps:.0}"
            );
        }
    }

    #[test]
    fn assembler_flags_loss() {
        let mut a = AccessUnitAssembler::default();
        // FU-A of an IDR split in three, middle packet lost.
        let start = [0x7C, 0x85, 1, 2];
        let end = [0x7C, 0x45, 5, 6];
        assert!(a.push(10, 100, false, &start).is_empty());
        let units = a.push(12, 100, true, &end);
        assert_eq!(units.len(), 1);
        assert!(!units[0].complete);
        // Next unit arrives in order and is complete.
        let units = a.push(13, 200, true, &[0x41, 9, 9]);
        assert_eq!(units.len(), 1);
        assert!(units[0].complete);
        assert!(!units[0].keyframe);
        // Marker lost: the timestamp change closes the unit as incomplete.
        assert!(a.push(14, 300, false, &[0x41, 1, 1]).is_empty());
        let units = a.push(16, 400, true, &[0x41, 2, 2]);
        assert_eq!(units.len(), 2);
        assert!(!units[0].complete);
        assert!(!units[1].complete, "gap before it: may lack its head");
    }

    #[test]
    fn split_annexb_handles_3_and_4_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals = split_annexb(&data);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
    }
}
