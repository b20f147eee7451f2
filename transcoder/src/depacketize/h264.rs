//! H.264 over RTP (RFC 6184, packetization-mode 1) to AVCC access units.

use super::{
    Assembler, Depacketizer, Frame, MAX_FRAME_BYTES, Output, Pipeline, ReorderWindow, RtpIn, Step,
};
use crate::bits::{BitReader, unescape_rbsp};

const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// H.264 depacketizer; frames are access units of 4-byte big-endian length-prefixed NAL units
/// (the `avc1` sample format) without AUDs. SPS and PPS stay in-band and are also kept for `avcC`.
pub struct H264Depacketizer {
    pipe: Pipeline<H264Assembler>,
}

impl H264Depacketizer {
    /// A depacketizer with the default video reorder window.
    pub fn new() -> Self {
        Self::with_window(ReorderWindow::VIDEO)
    }

    /// A depacketizer with a custom reorder window.
    pub fn with_window(window: ReorderWindow) -> Self {
        Self {
            pipe: Pipeline::new(H264Assembler::default(), window, true),
        }
    }

    /// The latest SPS NAL unit seen (with its header byte), for `avcC` and [`parse_h264_sps`].
    pub fn sps(&self) -> Option<&[u8]> {
        self.pipe.asm.params.sps.as_deref()
    }

    /// The latest PPS NAL unit seen (with its header byte), for `avcC`.
    pub fn pps(&self) -> Option<&[u8]> {
        self.pipe.asm.params.pps.as_deref()
    }
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer for H264Depacketizer {
    fn push(&mut self, pkt: &RtpIn<'_>) -> Vec<Output> {
        self.pipe.push(pkt)
    }
}

#[derive(Default)]
struct ParamSets {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

struct AccessUnit {
    timestamp: u32,
    data: Vec<u8>,
    keyframe: bool,
    /// Holds a coded slice (types 1-5); without one there is no picture to output.
    has_slice: bool,
    damaged: bool,
}

#[derive(Default)]
struct H264Assembler {
    params: ParamSets,
    au: Option<AccessUnit>,
    /// NAL unit being rebuilt from FU-A fragments.
    fu: Option<Vec<u8>>,
    /// AVCC NAL units (SPS, PPS, SEI) that some senders send under a timestamp of their own;
    /// they belong to the next picture.
    carry: Vec<u8>,
    /// False at start and after a loss: until a packet that can only open a frame arrives,
    /// whatever comes is the tail of a frame we cannot rebuild.
    synced: bool,
    /// Timestamp of the access unit cut by the last loss: its remaining packets must not start a
    /// new one, or a partial picture would pass for a whole one.
    damaged_ts: Option<u32>,
}

impl Assembler for H264Assembler {
    fn packet(&mut self, pkt: &RtpIn<'_>, steps: &mut Vec<Step>) {
        // Some senders forget the marker bit; a new timestamp ends the access unit as well.
        if self
            .au
            .as_ref()
            .is_some_and(|au| au.timestamp != pkt.timestamp)
        {
            self.finish(steps);
        }
        if self.au.is_none() {
            if !self.synced {
                if self.damaged_ts == Some(pkt.timestamp) || !starts_access_unit(pkt.payload) {
                    steps.push(Step::Skipped);
                    return;
                }
                self.synced = true;
                self.damaged_ts = None;
            }
            self.au = Some(AccessUnit {
                timestamp: pkt.timestamp,
                data: std::mem::take(&mut self.carry),
                keyframe: false,
                has_slice: false,
                damaged: false,
            });
        }
        self.payload(pkt.payload);
        if pkt.marker {
            self.finish(steps);
        }
    }

    fn lost(&mut self) {
        if let Some(au) = self.au.take() {
            self.damaged_ts = Some(au.timestamp);
        }
        self.fu = None;
        self.carry.clear();
        self.synced = false;
    }
}

impl H264Assembler {
    fn payload(&mut self, p: &[u8]) {
        let Some(au) = self.au.as_mut() else {
            return;
        };
        match p[0] & 0x1f {
            1..=23 => push_nal(au, &mut self.params, p),
            STAP_A => {
                let mut rest = &p[1..];
                while !rest.is_empty() {
                    let Some(&[hi, lo]) = rest.get(..2) else {
                        au.damaged = true;
                        return;
                    };
                    let size = usize::from(u16::from_be_bytes([hi, lo]));
                    let Some(nal) = rest.get(2..2 + size).filter(|n| !n.is_empty()) else {
                        au.damaged = true;
                        return;
                    };
                    push_nal(au, &mut self.params, nal);
                    rest = &rest[2 + size..];
                }
            }
            FU_A => {
                let Some(&header) = p.get(1) else {
                    au.damaged = true;
                    return;
                };
                let (start, end) = (header & 0x80 != 0, header & 0x40 != 0);
                if start {
                    if self.fu.is_some() {
                        au.damaged = true;
                    }
                    let mut nal = Vec::with_capacity(p.len() * 4);
                    nal.push((p[0] & 0xe0) | (header & 0x1f));
                    nal.extend_from_slice(&p[2..]);
                    self.fu = Some(nal);
                } else if let Some(nal) = self.fu.as_mut() {
                    nal.extend_from_slice(&p[2..]);
                    if nal.len() > MAX_FRAME_BYTES {
                        self.fu = None;
                        au.damaged = true;
                        return;
                    }
                } else {
                    au.damaged = true;
                    return;
                }
                if end && let Some(nal) = self.fu.take() {
                    push_nal(au, &mut self.params, &nal);
                }
            }
            // RFC 6184 §5.4: receivers ignore the undefined types.
            0 | 30 | 31 => {}
            other => {
                // STAP-B, MTAP16/24 and FU-B are not allowed in packetization-mode 1.
                tracing::debug!(nal_type = other, "unsupported H.264 RTP packet type");
                au.damaged = true;
            }
        }
    }

    fn finish(&mut self, steps: &mut Vec<Step>) {
        let Some(au) = self.au.take() else {
            return;
        };
        // A NAL unit still being reassembled when the access unit ends is missing its tail.
        let cut_nal = self.fu.take().is_some();
        if au.damaged || cut_nal {
            steps.push(Step::Damaged);
        } else if !au.has_slice {
            self.carry = au.data;
        } else {
            steps.push(Step::Frame(Frame {
                timestamp: au.timestamp,
                keyframe: au.keyframe,
                data: au.data,
            }));
        }
    }
}

fn push_nal(au: &mut AccessUnit, params: &mut ParamSets, nal: &[u8]) {
    let nal_type = nal[0] & 0x1f;
    match nal_type {
        NAL_AUD => return,
        NAL_SPS => params.sps = Some(nal.to_vec()),
        NAL_PPS => params.pps = Some(nal.to_vec()),
        _ => {}
    }
    if (NAL_SLICE..=NAL_IDR).contains(&nal_type) {
        au.has_slice = true;
        au.keyframe |= nal_type == NAL_IDR;
    }
    if au.data.len() + 4 + nal.len() > MAX_FRAME_BYTES {
        au.damaged = true;
        return;
    }
    au.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    au.data.extend_from_slice(nal);
}

/// True if the packet can only be the first of an access unit: parameter sets, SEI, AUD, or the
/// slice with `first_mb_in_slice == 0` (ue(v) of 0 is a single 1 bit).
fn starts_access_unit(p: &[u8]) -> bool {
    let (nal_type, body) = match p[0] & 0x1f {
        STAP_A => {
            let Some(&[hi, lo]) = p.get(1..3) else {
                return false;
            };
            let size = usize::from(u16::from_be_bytes([hi, lo]));
            match p.get(3..3 + size) {
                Some([first, body @ ..]) => (first & 0x1f, body.first()),
                _ => return false,
            }
        }
        FU_A => match p.get(1) {
            Some(&header) if header & 0x80 != 0 => (header & 0x1f, p.get(2)),
            _ => return false,
        },
        t => (t, p.get(1)),
    };
    match nal_type {
        NAL_SEI | NAL_SPS | NAL_PPS | NAL_AUD => true,
        NAL_SLICE | NAL_IDR => body.is_some_and(|b| b & 0x80 != 0),
        _ => false,
    }
}

/// What the packager needs from an SPS: size for `RESOLUTION`/`tkhd`, profile and level for the
/// `avc1.PPCCLL` CODECS string and `avcC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Sps {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The byte holding `constraint_set0..5_flag`.
    pub constraint_flags: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
    /// `chroma_format_idc` (1 = 4:2:0), needed by `avcC` for high profiles.
    pub chroma_format_idc: u8,
    /// Luma bit depth (8 unless a high profile says otherwise).
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width in pixels, after frame cropping.
    pub width: u32,
    /// Displayed height in pixels, after frame cropping.
    pub height: u32,
}

impl H264Sps {
    /// The RFC 6381 CODECS value, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// Parses an SPS NAL unit (header byte included, emulation prevention still in place).
pub fn parse_h264_sps(nal: &[u8]) -> Option<H264Sps> {
    if nal.first()? & 0x1f != NAL_SPS {
        return None;
    }
    let rbsp = unescape_rbsp(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    if r.ue()? > 31 {
        return None;
    }
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let (mut bit_depth_luma, mut bit_depth_chroma) = (8, 8);
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        bit_depth_luma = 8 + r.ue()?;
        bit_depth_chroma = 8 + r.ue()?;
        if bit_depth_luma > 14 || bit_depth_chroma > 14 {
            return None;
        }
        let _qpprime_y_zero_transform_bypass = r.flag()?;
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let _log2_max_frame_num_minus4 = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_pic_order_cnt_lsb_minus4 = r.ue()?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.flag()?;
            let _offset_for_non_ref_pic = r.se()?;
            let _offset_for_top_to_bottom_field = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_in_frame_num_value_allowed = r.flag()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.flag()?;
    }
    let _direct_8x8_inference = r.flag()?;
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.flag()? {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }

    // Cropping is counted in chroma samples (H.264 §7.4.2.1.1, CropUnitX/CropUnitY).
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left + right))?;
    let height = (field_factor * height_map_units * 16).checked_sub(crop_y * (top + bottom))?;
    if width == 0 || height == 0 {
        return None;
    }
    Some(H264Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: bit_depth_luma as u8,
        bit_depth_chroma: bit_depth_chroma as u8,
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
    })
}

/// scaling_list() of H.264 §7.3.2.1.1.1, read only to get past it.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Pkt, Rng, frames, fuzz, pkt, run};
    use super::*;

    const SPS_720P: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: [u8; 4] = [0x68, 0xeb, 0xe3, 0xcb];
    const AUD: [u8; 2] = [0x09, 0xf0];

    /// An IDR slice with `first_mb_in_slice == 0` and a recognisable body.
    fn idr(len: usize) -> Vec<u8> {
        let mut nal = vec![0x65, 0x88];
        nal.extend((0..len).map(|i| (i * 7 + 3) as u8));
        nal
    }

    /// A non-IDR slice with `first_mb_in_slice == 0`.
    fn p_slice(len: usize) -> Vec<u8> {
        let mut nal = vec![0x41, 0x9a];
        nal.extend((0..len).map(|i| (i * 5 + 1) as u8));
        nal
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// Splits one NAL unit into `parts` FU-A payloads.
    fn fu_a(nal: &[u8], parts: usize) -> Vec<Vec<u8>> {
        let body = &nal[1..];
        let chunk = body.len().div_ceil(parts);
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut header = nal[0] & 0x1f;
                if i == 0 {
                    header |= 0x80;
                }
                if i == chunks.len() - 1 {
                    header |= 0x40;
                }
                let mut p = vec![(nal[0] & 0xe0) | FU_A, header];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// Packets for one access unit: the payloads get consecutive sequence numbers from `seq`.
    fn au(seq: u16, ts: u32, payloads: Vec<Vec<u8>>) -> Vec<Pkt> {
        let n = payloads.len();
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| pkt(seq.wrapping_add(i as u16), ts, i == n - 1, p))
            .collect()
    }

    fn keyframe_au(seq: u16, ts: u32) -> Vec<Pkt> {
        let mut payloads = vec![stap_a(&[&SPS_720P, &PPS])];
        payloads.extend(fu_a(&idr(300), 3));
        au(seq, ts, payloads)
    }

    #[test]
    fn single_nal_units() {
        let mut d = H264Depacketizer::new();
        let idr = idr(20);
        let out = run(
            &mut d,
            &au(
                1,
                0,
                vec![SPS_720P.to_vec(), PPS.to_vec(), AUD.to_vec(), idr.clone()],
            ),
        );
        assert_eq!(
            out,
            vec![Output::Frame(Frame {
                timestamp: 0,
                keyframe: true,
                data: avcc(&[&SPS_720P, &PPS, &idr]),
            })]
        );
        assert_eq!(d.sps(), Some(&SPS_720P[..]));
        assert_eq!(d.pps(), Some(&PPS[..]));
    }

    #[test]
    fn stap_a_with_parameter_sets_and_idr() {
        let mut d = H264Depacketizer::new();
        let idr = idr(40);
        let out = run(
            &mut d,
            &[pkt(7, 9000, true, stap_a(&[&AUD, &SPS_720P, &PPS, &idr]))],
        );
        let f = frames(&out);
        assert_eq!(f.len(), 1);
        assert!(f[0].keyframe);
        assert_eq!(f[0].timestamp, 9000);
        assert_eq!(f[0].data, avcc(&[&SPS_720P, &PPS, &idr]));
        let sps = parse_h264_sps(d.sps().unwrap()).unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
    }

    #[test]
    fn fu_a_across_three_packets() {
        let mut d = H264Depacketizer::new();
        let out = run(&mut d, &keyframe_au(100, 0));
        assert_eq!(out.len(), 1);
        assert_eq!(frames(&out)[0].data, avcc(&[&SPS_720P, &PPS, &idr(300)]));
    }

    #[test]
    fn fu_a_lost_middle_asks_for_keyframe_and_recovers_at_next_idr() {
        let mut d = H264Depacketizer::new();
        let mut pkts = keyframe_au(10, 0); // seq 10..=13
        let mut p_frame = au(14, 3000, fu_a(&p_slice(200), 3));
        p_frame.remove(1); // seq 15 lost
        pkts.extend(p_frame);
        pkts.extend(au(17, 6000, vec![p_slice(10)]));
        pkts.extend(au(18, 9000, vec![p_slice(10)]));
        pkts.extend(au(19, 12000, vec![p_slice(10)]));
        pkts.extend(keyframe_au(20, 15000));
        let out = run(&mut d, &pkts);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(&out[0], Output::Frame(f) if f.timestamp == 0 && f.keyframe));
        assert_eq!(out[1], Output::NeedKeyframe);
        assert!(matches!(&out[2], Output::Frame(f) if f.timestamp == 15000 && f.keyframe));
    }

    #[test]
    fn big_keyframe_with_loss_gives_up_after_window() {
        let mut d = H264Depacketizer::new();
        let mut pkts = au(0, 0, fu_a(&idr(4000), 40));
        pkts.remove(5);
        let out = run(&mut d, &pkts);
        // The window (16 packets) runs out long before the frame ends.
        assert_eq!(out, vec![Output::NeedKeyframe]);
    }

    #[test]
    fn reordered_packets_are_repaired() {
        let mut d = H264Depacketizer::new();
        let mut pkts = keyframe_au(500, 0);
        pkts.swap(2, 3);
        pkts.extend(au(504, 3000, fu_a(&p_slice(90), 3)));
        pkts.swap(4, 5);
        let out = run(&mut d, &pkts);
        let f = frames(&out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(f[0].data, avcc(&[&SPS_720P, &PPS, &idr(300)]));
        assert_eq!(f[1].data, avcc(&[&p_slice(90)]));
        assert!(!f[1].keyframe);
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let mut d = H264Depacketizer::new();
        let mut pkts = keyframe_au(65534, 0); // 65534, 65535, 0, 1
        pkts.swap(1, 2);
        pkts.extend(au(2, 3000, vec![p_slice(10)]));
        let out = run(&mut d, &pkts);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(frames(&out)[1].timestamp, 3000);
    }

    #[test]
    fn timestamp_change_ends_access_unit_without_marker() {
        let mut d = H264Depacketizer::new();
        let idr = idr(10);
        let p = p_slice(10);
        let pkts = vec![
            pkt(1, 0, false, SPS_720P.to_vec()),
            pkt(2, 0, false, PPS.to_vec()),
            pkt(3, 0, false, idr.clone()),
            pkt(4, 3000, false, p.clone()),
            pkt(5, 6000, true, p.clone()),
        ];
        let out = run(&mut d, &pkts);
        let f = frames(&out);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].data, avcc(&[&SPS_720P, &PPS, &idr]));
        assert_eq!((f[1].timestamp, f[1].keyframe), (3000, false));
        assert_eq!((f[2].timestamp, f[2].keyframe), (6000, false));
    }

    #[test]
    fn parameter_sets_under_their_own_timestamp_join_the_next_picture() {
        let mut d = H264Depacketizer::new();
        let idr = idr(10);
        let pkts = vec![
            pkt(1, 0, true, stap_a(&[&SPS_720P, &PPS])),
            pkt(2, 3000, true, idr.clone()),
            pkt(3, 6000, true, p_slice(4)),
        ];
        let out = run(&mut d, &pkts);
        let f = frames(&out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(f[0].data, avcc(&[&SPS_720P, &PPS, &idr]));
        assert_eq!((f[0].timestamp, f[0].keyframe), (3000, true));
    }

    #[test]
    fn joining_mid_stream_asks_once_then_waits_for_idr() {
        let mut d = H264Depacketizer::new();
        let mut pkts = au(1, 0, fu_a(&p_slice(60), 2));
        pkts.remove(0); // we joined in the middle of a frame
        pkts.extend(au(3, 3000, vec![p_slice(10)]));
        pkts.extend(au(4, 6000, vec![p_slice(10)]));
        pkts.extend(keyframe_au(5, 9000));
        let out = run(&mut d, &pkts);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], Output::NeedKeyframe);
        assert!(matches!(&out[1], Output::Frame(f) if f.keyframe && f.timestamp == 9000));
    }

    #[test]
    fn fu_b_and_mtap_are_rejected() {
        for bad in [
            vec![0x7d, 0x85, 0, 0, 1],
            vec![0x7a, 0, 0, 0, 0],
            vec![0x79, 1],
        ] {
            let mut d = H264Depacketizer::new();
            let mut pkts = keyframe_au(1, 0);
            pkts.extend(au(5, 3000, vec![p_slice(5), bad]));
            pkts.extend(au(7, 6000, vec![p_slice(5)]));
            let out = run(&mut d, &pkts);
            assert_eq!(out.len(), 2, "{out:?}");
            assert_eq!(out[1], Output::NeedKeyframe);
        }
    }

    #[test]
    fn sps_1280x720_high() {
        let sps = parse_h264_sps(&SPS_720P).unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!((sps.profile_idc, sps.level_idc), (100, 31));
        assert_eq!(sps.codec_string(), "avc1.64001f");
        assert_eq!(
            (
                sps.chroma_format_idc,
                sps.bit_depth_luma,
                sps.bit_depth_chroma
            ),
            (1, 8, 8)
        );
    }

    #[test]
    fn sps_real_world_samples() {
        // Byte strings from bluenviron/mediacommon's SPS tests (camera and encoder output).
        let cases: [(&[u8], u32, u32, &str); 3] = [
            (
                // Baseline, constraint_set0/1, frame cropping 1088 -> 1080.
                &[
                    0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00,
                    0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
                ],
                1920,
                1080,
                "avc1.42c028",
            ),
            (
                // High profile with seq_scaling_matrix_present_flag.
                &[
                    103, 100, 0, 50, 173, 132, 1, 12, 32, 8, 97, 0, 67, 8, 2, 24, 64, 16, 194, 0,
                    132, 59, 80, 20, 0, 90, 211, 112, 16, 16, 20, 0, 0, 3, 0, 4, 0, 0, 3, 0, 162,
                    16,
                ],
                2560,
                1440,
                "avc1.640032",
            ),
            (
                // Interlaced (frame_mbs_only_flag = 0) with cropping.
                &[
                    0x67, 0x4d, 0x40, 0x28, 0xab, 0x60, 0x3c, 0x02, 0x23, 0xef, 0x01, 0x10, 0x00,
                    0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x2e, 0x94, 0x00, 0x35, 0x64,
                    0x06, 0xb2, 0x85, 0x08, 0x0e, 0xe2, 0xc5, 0x22, 0xc0,
                ],
                1920,
                1080,
                "avc1.4d4028",
            ),
        ];
        for (nal, w, h, codec) in cases {
            let sps = parse_h264_sps(nal).unwrap();
            assert_eq!((sps.width, sps.height), (w, h), "{codec}");
            assert_eq!(sps.codec_string(), codec);
        }
    }

    /// Writes H.264 syntax elements, then adds emulation prevention like an encoder would.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        fn u(&mut self, n: u32, v: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.bits.push((v >> i) & 1 == 1);
            }
            self
        }

        fn ue(&mut self, v: u32) -> &mut Self {
            let len = 32 - (v + 1).leading_zeros();
            self.u(len - 1, 0).u(len, v + 1)
        }

        fn se(&mut self, v: i32) -> &mut Self {
            let k = if v > 0 { 2 * v - 1 } else { -2 * v };
            self.ue(k as u32)
        }

        fn nal(&mut self, header: u8) -> Vec<u8> {
            self.bits.push(true); // rbsp_stop_one_bit
            while !self.bits.len().is_multiple_of(8) {
                self.bits.push(false);
            }
            let mut out = vec![header];
            let mut zeros = 0;
            for byte in self.bits.chunks(8) {
                let b = byte.iter().fold(0u8, |acc, &bit| (acc << 1) | bit as u8);
                if zeros >= 2 && b <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                out.push(b);
            }
            out
        }
    }

    #[test]
    fn sps_320x180_baseline_with_cropping() {
        let mut w = BitWriter::default();
        w.u(8, 66).u(8, 0xc0).u(8, 12); // profile, constraint_set0/1, level 1.2
        w.ue(0).ue(0).ue(2).ue(1).u(1, 0); // sps id, frame_num bits, poc type 2, refs, gaps
        w.ue(19).ue(11).u(1, 1).u(1, 1); // 20x12 macroblocks, frame_mbs_only, direct_8x8
        w.u(1, 1).ue(0).ue(0).ue(0).ue(6); // crop 192 -> 180 rows (6 chroma rows)
        w.u(1, 0); // no VUI
        let nal = w.nal(0x67);
        let sps = parse_h264_sps(&nal).unwrap();
        assert_eq!((sps.width, sps.height), (320, 180));
        assert_eq!(sps.codec_string(), "avc1.42c00c");
    }

    #[test]
    fn sps_320x180_baseline_from_x264() {
        // libx264 `-profile:v baseline` at 320x180: 12 macroblock rows cropped by 6 chroma rows.
        let nal = [
            0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x06, 0x7e, 0x7c, 0x04, 0x40, 0x00, 0x00, 0x03,
            0x00, 0x40, 0x00, 0x00, 0x0f, 0x03, 0xc5, 0x0a, 0xa8,
        ];
        let sps = parse_h264_sps(&nal).unwrap();
        assert_eq!((sps.width, sps.height), (320, 180));
        assert_eq!(sps.codec_string(), "avc1.42c00d");
    }

    #[test]
    fn sps_high_profile_with_scaling_lists_and_444() {
        let mut w = BitWriter::default();
        w.u(8, 244).u(8, 0).u(8, 40).ue(0);
        w.ue(3).u(1, 0).ue(2).ue(2).u(1, 0); // 4:4:4, 10-bit
        w.u(1, 1); // seq_scaling_matrix_present_flag: 12 lists for 4:4:4
        for i in 0..12 {
            if i % 3 == 0 {
                w.u(1, 0);
            } else {
                w.u(1, 1);
                // Deltas to 11, 6, 126, then 0, which repeats the last value to the end.
                w.se(3).se(-5).se(120).se(-126);
            }
        }
        w.ue(0).ue(1).u(1, 0).se(-3).se(2).ue(2).se(1).se(-1); // poc type 1
        w.ue(4).u(1, 0).ue(119).ue(67).u(1, 1).u(1, 1);
        w.u(1, 1).ue(0).ue(0).ue(0).ue(8); // 4:4:4 crop unit is one row: 1088 -> 1080
        w.u(1, 0);
        let sps = parse_h264_sps(&w.nal(0x67)).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(
            (
                sps.chroma_format_idc,
                sps.bit_depth_luma,
                sps.bit_depth_chroma
            ),
            (3, 10, 10)
        );
    }

    #[test]
    fn sps_garbage_is_rejected_without_panicking() {
        assert_eq!(parse_h264_sps(&[]), None);
        assert_eq!(parse_h264_sps(&[0x68, 1, 2, 3]), None);
        assert_eq!(parse_h264_sps(&SPS_720P[..8]), None);
        let mut rng = Rng(0x5eed);
        for _ in 0..20_000 {
            let mut nal = rng.bytes(40);
            if let Some(b) = nal.first_mut() {
                *b = 0x67;
            }
            let _ = parse_h264_sps(&nal);
        }
    }

    #[test]
    fn random_packets_never_panic() {
        let mut d = H264Depacketizer::new();
        fuzz(
            &mut d,
            1,
            50_000,
            &[0x65, 0x41, 0x67, 0x78, 0x7c, 0x1c, 0x5c, 0x3c],
        );
        let mut d = H264Depacketizer::with_window(ReorderWindow {
            max_packets: 0,
            max_delay: 0,
        });
        fuzz(&mut d, 2, 50_000, &[0x65, 0x78, 0x7c, 0x1c]);
    }
}
