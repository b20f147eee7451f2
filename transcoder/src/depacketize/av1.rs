//! AV1 over RTP (AOM "RTP Payload Format For AV1" v1.0) to low-overhead-format temporal units.

use super::{
    Assembler, Depacketizer, Frame, MAX_FRAME_BYTES, Output, Pipeline, ReorderWindow, RtpIn, Step,
};
use crate::bits::{BitReader, read_leb128, write_leb128};

const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_FRAME: u8 = 6;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

const OBU_HAS_SIZE_FIELD: u8 = 0x02;

/// AV1 depacketizer; frames are temporal units as OBUs that all carry `obu_size` (the `av01`
/// sample format), without temporal delimiters, tile lists or padding.
pub struct Av1Depacketizer {
    pipe: Pipeline<Av1Assembler>,
}

impl Av1Depacketizer {
    /// A depacketizer with the default video reorder window.
    pub fn new() -> Self {
        Self::with_window(ReorderWindow::VIDEO)
    }

    /// A depacketizer with a custom reorder window.
    pub fn with_window(window: ReorderWindow) -> Self {
        Self {
            pipe: Pipeline::new(Av1Assembler::default(), window, true),
        }
    }

    /// The latest sequence header OBU (with `obu_size`), for `av1C` configOBUs and
    /// [`parse_av1_sequence_header`].
    pub fn sequence_header(&self) -> Option<&[u8]> {
        self.pipe.asm.seq_header.as_deref()
    }
}

impl Default for Av1Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer for Av1Depacketizer {
    fn push(&mut self, pkt: &RtpIn<'_>) -> Vec<Output> {
        self.pipe.push(pkt)
    }
}

struct TemporalUnit {
    timestamp: u32,
    data: Vec<u8>,
    /// N bit of the first packet: a new coded video sequence, which starts with a key frame.
    new_sequence: bool,
    has_sequence_header: bool,
    has_key_frame: bool,
    damaged: bool,
}

#[derive(Default)]
struct Av1Assembler {
    seq_header: Option<Vec<u8>>,
    /// From the latest sequence header: frame headers are laid out differently when set.
    reduced_still_picture_header: bool,
    tu: Option<TemporalUnit>,
    /// OBU element that continues in the next packet (Y bit).
    fragment: Option<Vec<u8>>,
    /// False at start and after a loss: until a packet that can only open a frame arrives,
    /// whatever comes is the tail of a frame we cannot rebuild.
    synced: bool,
    /// Timestamp of the temporal unit cut by the last loss, never to be restarted.
    damaged_ts: Option<u32>,
}

impl Assembler for Av1Assembler {
    fn packet(&mut self, pkt: &RtpIn<'_>, steps: &mut Vec<Step>) {
        let p = pkt.payload;
        if self
            .tu
            .as_ref()
            .is_some_and(|tu| tu.timestamp != pkt.timestamp)
        {
            self.finish(steps);
        }
        let aggregation = p[0];
        let z = aggregation & 0x80 != 0;
        let y = aggregation & 0x40 != 0;
        let w = (aggregation >> 4) & 0x03;
        let n = aggregation & 0x08 != 0;
        if self.tu.is_none() {
            if !self.synced {
                // Only a key temporal unit can follow a loss, and those open with a sequence
                // header (or a temporal delimiter, from senders that keep it) or set N.
                let starts = !z
                    && (n
                        || first_obu_type(p, w).is_some_and(|t| {
                            t == OBU_SEQUENCE_HEADER || t == OBU_TEMPORAL_DELIMITER
                        }));
                if !starts || self.damaged_ts == Some(pkt.timestamp) {
                    steps.push(Step::Skipped);
                    return;
                }
                self.synced = true;
                self.damaged_ts = None;
            }
            self.tu = Some(TemporalUnit {
                timestamp: pkt.timestamp,
                data: Vec::new(),
                new_sequence: n,
                has_sequence_header: false,
                has_key_frame: false,
                damaged: false,
            });
        }
        self.elements(&p[1..], z, y, w);
        if pkt.marker {
            self.finish(steps);
        }
    }

    fn lost(&mut self) {
        if let Some(tu) = self.tu.take() {
            self.damaged_ts = Some(tu.timestamp);
        }
        self.fragment = None;
        self.synced = false;
    }
}

impl Av1Assembler {
    /// Walks the OBU elements after the aggregation header.
    fn elements(&mut self, mut rest: &[u8], z: bool, y: bool, w: u8) {
        let mut index = 0usize;
        while !rest.is_empty() {
            index += 1;
            // With W = 0 every element has a length; otherwise the W-th (last) one has none.
            let element = if w == 0 || index < usize::from(w) {
                let Some((len, used)) = read_leb128(rest) else {
                    self.damage();
                    return;
                };
                let Some(element) = rest.get(used..).and_then(|r| r.get(..len)) else {
                    self.damage();
                    return;
                };
                rest = &rest[used + len..];
                element
            } else {
                std::mem::take(&mut rest)
            };
            let first = index == 1;
            let last = rest.is_empty();
            if first && z {
                let Some(fragment) = self.fragment.as_mut() else {
                    self.damage();
                    return;
                };
                fragment.extend_from_slice(element);
                if fragment.len() > MAX_FRAME_BYTES {
                    self.fragment = None;
                    self.damage();
                    return;
                }
                if !(last && y)
                    && let Some(obu) = self.fragment.take()
                {
                    self.obu(&obu);
                }
            } else {
                if first && self.fragment.take().is_some() {
                    // Z = 0 although the previous packet said its last OBU would continue.
                    self.damage();
                }
                if last && y {
                    self.fragment = Some(element.to_vec());
                } else {
                    self.obu(element);
                }
            }
        }
    }

    /// Rewrites one complete OBU with `obu_size` and appends it to the temporal unit.
    fn obu(&mut self, element: &[u8]) {
        if element.is_empty() {
            return;
        }
        let Some((obu_type, header, payload)) = split_obu(element) else {
            self.damage();
            return;
        };
        if matches!(
            obu_type,
            OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING
        ) {
            return;
        }
        let obu = sized_obu(header, payload);

        let mut key_frame = false;
        if obu_type == OBU_SEQUENCE_HEADER {
            self.reduced_still_picture_header =
                parse_av1_sequence_header(&obu).is_some_and(|s| s.reduced_still_picture_header);
            self.seq_header = Some(obu.clone());
        } else if obu_type == OBU_FRAME_HEADER || obu_type == OBU_FRAME {
            key_frame = is_key_frame_header(payload, self.reduced_still_picture_header);
        }
        let Some(tu) = self.tu.as_mut() else {
            return;
        };
        if tu.data.len() + obu.len() > MAX_FRAME_BYTES {
            tu.damaged = true;
            return;
        }
        tu.has_sequence_header |= obu_type == OBU_SEQUENCE_HEADER;
        tu.has_key_frame |= key_frame;
        tu.data.extend_from_slice(&obu);
    }

    fn damage(&mut self) {
        if let Some(tu) = self.tu.as_mut() {
            tu.damaged = true;
        }
    }

    fn finish(&mut self, steps: &mut Vec<Step>) {
        let Some(tu) = self.tu.take() else {
            return;
        };
        // An OBU still waiting for its continuation when the temporal unit ends lost its tail.
        let cut_obu = self.fragment.take().is_some();
        if tu.damaged || cut_obu {
            steps.push(Step::Damaged);
        } else if !tu.data.is_empty() {
            steps.push(Step::Frame(Frame {
                timestamp: tu.timestamp,
                keyframe: tu.new_sequence || (tu.has_sequence_header && tu.has_key_frame),
                data: tu.data,
            }));
        }
    }
}

/// The OBU type of the first element of a packet, if that element starts an OBU.
fn first_obu_type(p: &[u8], w: u8) -> Option<u8> {
    let rest = p.get(1..)?;
    let header = if w == 1 {
        *rest.first()?
    } else {
        let (len, used) = read_leb128(rest)?;
        if len == 0 {
            return None;
        }
        *rest.get(used)?
    };
    Some((header >> 3) & 0x0f)
}

/// An OBU's type, header bytes (1 or 2) and payload.
type ObuParts<'a> = (u8, &'a [u8], &'a [u8]);

/// Splits an OBU into type, header bytes (1 or 2) and payload, honouring `obu_size` if present.
fn split_obu(obu: &[u8]) -> Option<ObuParts<'_>> {
    next_obu(obu).map(|(obu, _)| obu)
}

/// Splits the first OBU off `data`: (type, header bytes, payload), and the bytes after it (an
/// OBU without `obu_size` runs to the end).
fn next_obu(data: &[u8]) -> Option<(ObuParts<'_>, &[u8])> {
    let first = *data.first()?;
    if first & 0x80 != 0 {
        return None; // obu_forbidden_bit
    }
    let header_len = if first & 0x04 != 0 { 2 } else { 1 };
    let header = data.get(..header_len)?;
    let body = &data[header_len..];
    let (payload, rest) = if first & OBU_HAS_SIZE_FIELD != 0 {
        let (len, used) = read_leb128(body)?;
        let sized = body.get(used..)?;
        (sized.get(..len)?, &sized[len..])
    } else {
        (body, &body[body.len()..])
    };
    Some((((first >> 3) & 0x0f, header, payload), rest))
}

/// An OBU rebuilt with `obu_size` (the `av01` sample format wants it on every OBU).
fn sized_obu(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut obu = Vec::with_capacity(header.len() + 5 + payload.len());
    obu.push(header[0] | OBU_HAS_SIZE_FIELD);
    obu.extend_from_slice(&header[1..]);
    write_leb128(&mut obu, payload.len());
    obu.extend_from_slice(payload);
    obu
}

/// An encoder's temporal unit as an `av01` sample, see [`av1_sample`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Av1Sample {
    /// The OBUs, each with `obu_size`, without temporal delimiters, tile lists or padding (the
    /// format the depacketizer produces and the fMP4 writer takes).
    pub data: Vec<u8>,
    /// The sequence header OBU (with `obu_size`) the unit carried, if any.
    pub sequence_header: Option<Vec<u8>>,
    /// The unit holds a key frame.
    pub key_frame: bool,
}

/// Rewrites a low-overhead-format temporal unit (what an encoder such as rav1e emits) into the
/// sample format of [`Av1Depacketizer`]; `None` when the OBUs do not parse or there are none.
pub(crate) fn av1_sample(mut tu: &[u8]) -> Option<Av1Sample> {
    let mut out = Av1Sample {
        data: Vec::with_capacity(tu.len()),
        sequence_header: None,
        key_frame: false,
    };
    let mut reduced_still_picture_header = false;
    while !tu.is_empty() {
        let ((obu_type, header, payload), rest) = next_obu(tu)?;
        tu = rest;
        if matches!(
            obu_type,
            OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING
        ) {
            continue;
        }
        let obu = sized_obu(header, payload);
        if obu_type == OBU_SEQUENCE_HEADER {
            reduced_still_picture_header =
                parse_av1_sequence_header(&obu).is_some_and(|s| s.reduced_still_picture_header);
            out.sequence_header = Some(obu.clone());
        } else if obu_type == OBU_FRAME_HEADER || obu_type == OBU_FRAME {
            out.key_frame |= is_key_frame_header(payload, reduced_still_picture_header);
        }
        out.data.extend_from_slice(&obu);
    }
    (!out.data.is_empty()).then_some(out)
}

/// True if a frame header (or frame) OBU payload starts a KEY_FRAME (AV1 §5.9.2).
fn is_key_frame_header(payload: &[u8], reduced_still_picture_header: bool) -> bool {
    if reduced_still_picture_header {
        return true;
    }
    match payload.first() {
        // show_existing_frame = 0, then frame_type (2 bits) = KEY_FRAME (0).
        Some(&b) => b & 0x80 == 0 && (b >> 5) & 0x03 == 0,
        None => false,
    }
}

/// What the packager needs from a sequence header: `av1C` fields, the `av01.P.LLT.DD` CODECS
/// string, and the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1SequenceHeader {
    /// `seq_profile` (0 main, 1 high, 2 professional).
    pub seq_profile: u8,
    /// `still_picture`.
    pub still_picture: bool,
    /// `reduced_still_picture_header`.
    pub reduced_still_picture_header: bool,
    /// `seq_level_idx[0]` (8 = level 4.0).
    pub seq_level_idx_0: u8,
    /// `seq_tier[0]`: true for the High tier.
    pub seq_tier_0: bool,
    /// `high_bitdepth`.
    pub high_bitdepth: bool,
    /// `twelve_bit`.
    pub twelve_bit: bool,
    /// `mono_chrome`.
    pub mono_chrome: bool,
    /// `subsampling_x`.
    pub chroma_subsampling_x: bool,
    /// `subsampling_y`.
    pub chroma_subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
    /// `initial_display_delay_minus_1[0]`, if present (`av1C` initial_presentation_delay).
    pub initial_display_delay_minus_1: Option<u8>,
    /// `max_frame_width_minus_1 + 1`.
    pub max_frame_width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub max_frame_height: u32,
}

impl Av1SequenceHeader {
    /// Bits per sample: 8, 10 or 12.
    pub fn bit_depth(&self) -> u8 {
        match (self.high_bitdepth, self.twelve_bit) {
            (false, _) => 8,
            (true, false) => 10,
            (true, true) => 12,
        }
    }

    /// The short CODECS value, e.g. `av01.0.08M.08`.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx_0,
            if self.seq_tier_0 { 'H' } else { 'M' },
            self.bit_depth()
        )
    }
}

/// Parses a sequence header OBU (header byte included; `obu_size` optional).
pub fn parse_av1_sequence_header(obu: &[u8]) -> Option<Av1SequenceHeader> {
    let (obu_type, _, payload) = split_obu(obu)?;
    if obu_type != OBU_SEQUENCE_HEADER {
        return None;
    }
    let mut r = BitReader::new(payload);
    let seq_profile = r.bits(3)? as u8;
    if seq_profile > 2 {
        return None;
    }
    let still_picture = r.flag()?;
    let reduced_still_picture_header = r.flag()?;
    let mut seq_level_idx_0 = 0;
    let mut seq_tier_0 = false;
    let mut initial_display_delay_minus_1 = None;
    if reduced_still_picture_header {
        seq_level_idx_0 = r.bits(5)? as u8;
    } else {
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if r.flag()? {
            // timing_info(): num_units_in_display_tick, time_scale, equal_picture_interval.
            r.skip(64)?;
            if r.flag()? {
                r.uvlc()?;
            }
            decoder_model_info_present = r.flag()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? + 1;
                // num_units_in_decoding_tick, buffer_removal_time_length_minus_1,
                // frame_presentation_time_length_minus_1.
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay_present = r.flag()?;
        let operating_points = r.bits(5)? + 1;
        for i in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let level = r.bits(5)? as u8;
            let tier = level > 7 && r.flag()?;
            if decoder_model_info_present && r.flag()? {
                // decoder_buffer_delay, encoder_buffer_delay, low_delay_mode_flag.
                r.skip(2 * buffer_delay_length + 1)?;
            }
            let mut delay = None;
            if initial_display_delay_present && r.flag()? {
                delay = Some(r.bits(4)? as u8);
            }
            if i == 0 {
                seq_level_idx_0 = level;
                seq_tier_0 = tier;
                initial_display_delay_minus_1 = delay;
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let max_frame_width = r.bits(width_bits)? + 1;
    let max_frame_height = r.bits(height_bits)? + 1;
    if !reduced_still_picture_header && r.flag()? {
        // delta_frame_id_length_minus_2, additional_frame_id_length_minus_1.
        r.skip(4 + 3)?;
    }
    // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter.
    r.skip(3)?;
    if !reduced_still_picture_header {
        // enable_interintra_compound, enable_masked_compound, enable_warped_motion,
        // enable_dual_filter.
        r.skip(4)?;
        let enable_order_hint = r.flag()?;
        if enable_order_hint {
            r.skip(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        let seq_choose_screen_content_tools = r.flag()?;
        let seq_force_screen_content_tools = seq_choose_screen_content_tools || r.flag()?;
        if seq_force_screen_content_tools && !r.flag()? {
            r.skip(1)?; // seq_force_integer_mv
        }
        if enable_order_hint {
            r.skip(3)?; // order_hint_bits_minus_1
        }
    }
    r.skip(3)?; // enable_superres, enable_cdef, enable_restoration

    // color_config()
    let high_bitdepth = r.flag()?;
    let twelve_bit = seq_profile == 2 && high_bitdepth && r.flag()?;
    let mono_chrome = seq_profile != 1 && r.flag()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if r.flag()? {
        primaries = r.bits(8)?;
        transfer = r.bits(8)?;
        matrix = r.bits(8)?;
    }
    let (subsampling_x, subsampling_y, chroma_sample_position);
    if mono_chrome {
        r.skip(1)?; // color_range
        (subsampling_x, subsampling_y, chroma_sample_position) = (true, true, 0);
    } else {
        // BT.709 primaries + sRGB transfer + identity matrix: 4:4:4 with implied full range.
        if primaries == 1 && transfer == 13 && matrix == 0 {
            (subsampling_x, subsampling_y) = (false, false);
        } else {
            r.skip(1)?; // color_range
            (subsampling_x, subsampling_y) = match seq_profile {
                0 => (true, true),
                1 => (false, false),
                _ if twelve_bit => {
                    let x = r.flag()?;
                    (x, x && r.flag()?)
                }
                _ => (true, false),
            };
        }
        chroma_sample_position = if subsampling_x && subsampling_y {
            r.bits(2)? as u8
        } else {
            0
        };
        r.skip(1)?; // separate_uv_delta_q
    }
    r.skip(1)?; // film_grain_params_present

    Some(Av1SequenceHeader {
        seq_profile,
        still_picture,
        reduced_still_picture_header,
        seq_level_idx_0,
        seq_tier_0,
        high_bitdepth,
        twelve_bit,
        mono_chrome,
        chroma_subsampling_x: subsampling_x,
        chroma_subsampling_y: subsampling_y,
        chroma_sample_position,
        initial_display_delay_minus_1,
        max_frame_width,
        max_frame_height,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Pkt, Rng, frames, fuzz, pkt, run};
    use super::*;

    /// An OBU as RTP carries it: no `obu_size`.
    fn obu(obu_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![obu_type << 3];
        out.extend_from_slice(payload);
        out
    }

    /// The same OBU in the low-overhead format the depacketizer outputs.
    fn sized(obu_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(obu_type << 3) | OBU_HAS_SIZE_FIELD];
        write_leb128(&mut out, payload.len());
        out.extend_from_slice(payload);
        out
    }

    fn aggregation(z: bool, y: bool, w: u8, n: bool) -> u8 {
        (u8::from(z) << 7) | (u8::from(y) << 6) | (w << 4) | (u8::from(n) << 3)
    }

    /// A packet payload; elements listed in `with_len` get a leb128 length prefix.
    fn payload(header: u8, elements: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = vec![header];
        for (element, with_len) in elements {
            if *with_len {
                write_leb128(&mut out, element.len());
            }
            out.extend_from_slice(element);
        }
        out
    }

    /// Writes f(n) fields MSB first.
    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn f(&mut self, n: u32, v: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.0.push((v >> i) & 1 == 1);
            }
            self
        }

        fn bytes(&mut self) -> Vec<u8> {
            self.0.push(true); // trailing_one_bit
            while !self.0.len().is_multiple_of(8) {
                self.0.push(false);
            }
            self.0
                .chunks(8)
                .map(|c| c.iter().fold(0, |acc, &b| (acc << 1) | u8::from(b)))
                .collect()
        }
    }

    /// Sequence header payload: main profile, 8-bit 4:2:0, level 4.0 Main tier, 1280x720.
    fn seq_header_720p() -> Vec<u8> {
        let mut b = Bits::default();
        b.f(3, 0).f(1, 0).f(1, 0); // seq_profile, still_picture, reduced_still_picture_header
        b.f(1, 0).f(1, 0).f(5, 0); // timing_info_present, initial_display_delay_present, 1 op
        b.f(12, 0).f(5, 8).f(1, 0); // operating_point_idc, seq_level_idx 8 (4.0), tier
        b.f(4, 10).f(4, 9).f(11, 1279).f(10, 719); // frame size bits and max size
        b.f(1, 0); // frame_id_numbers_present_flag
        b.f(3, 0b011); // 128x128 sb, filter intra, intra edge
        b.f(4, 0).f(1, 1).f(2, 0b11); // compound tools, enable_order_hint, jnt_comp, ref mvs
        b.f(1, 1).f(1, 1).f(3, 6); // screen content SELECT, integer mv SELECT, order hint bits
        b.f(3, 0b011); // superres, cdef, restoration
        b.f(1, 0).f(1, 0).f(1, 0); // high_bitdepth, mono_chrome, color_description_present
        b.f(1, 0).f(2, 0).f(1, 0); // color_range, chroma_sample_position, separate_uv_delta_q
        b.f(1, 0); // film_grain_params_present
        b.bytes()
    }

    const KEY_FRAME_HEADER: [u8; 3] = [0x10, 0xab, 0xcd]; // show_frame = 1, frame_type = KEY
    const INTER_FRAME_HEADER: [u8; 3] = [0x30, 0x12, 0x34]; // frame_type = INTER

    #[test]
    fn encoder_temporal_units_become_samples_like_the_depacketizer_makes() {
        let seq = seq_header_720p();
        // What rav1e writes: a temporal delimiter, the sequence header, the frame, all sized;
        // the last OBU here without obu_size (allowed at the end of a low-overhead unit).
        let mut tu = sized(OBU_TEMPORAL_DELIMITER, &[]);
        tu.extend(sized(OBU_SEQUENCE_HEADER, &seq));
        tu.extend(sized(OBU_PADDING, &[0; 3]));
        tu.extend(obu(OBU_FRAME, &KEY_FRAME_HEADER));
        let sample = av1_sample(&tu).expect("sample");
        let mut want = sized(OBU_SEQUENCE_HEADER, &seq);
        want.extend(sized(OBU_FRAME, &KEY_FRAME_HEADER));
        assert_eq!(sample.data, want);
        assert_eq!(
            sample.sequence_header,
            Some(sized(OBU_SEQUENCE_HEADER, &seq))
        );
        assert!(sample.key_frame);

        let mut tu = sized(OBU_TEMPORAL_DELIMITER, &[]);
        tu.extend(sized(OBU_FRAME, &INTER_FRAME_HEADER));
        let sample = av1_sample(&tu).expect("sample");
        assert_eq!(sample.data, sized(OBU_FRAME, &INTER_FRAME_HEADER));
        assert!(!sample.key_frame && sample.sequence_header.is_none());

        // Nothing but a delimiter, a size past the end, the forbidden bit: no sample.
        assert_eq!(av1_sample(&sized(OBU_TEMPORAL_DELIMITER, &[])), None);
        assert_eq!(
            av1_sample(&[(OBU_FRAME << 3) | OBU_HAS_SIZE_FIELD, 9, 1]),
            None
        );
        assert_eq!(av1_sample(&[0x80 | (OBU_FRAME << 3)]), None);
        assert_eq!(av1_sample(&[]), None);
    }

    fn key_tu(seq: u16, ts: u32, n: bool) -> Vec<Pkt> {
        let sh = obu(OBU_SEQUENCE_HEADER, &seq_header_720p());
        let frame = obu(OBU_FRAME, &KEY_FRAME_HEADER);
        vec![pkt(
            seq,
            ts,
            true,
            payload(
                aggregation(false, false, 2, n),
                &[(&sh, true), (&frame, false)],
            ),
        )]
    }

    fn inter_tu(seq: u16, ts: u32) -> Pkt {
        let frame = obu(OBU_FRAME, &INTER_FRAME_HEADER);
        pkt(
            seq,
            ts,
            true,
            payload(aggregation(false, false, 1, false), &[(&frame, false)]),
        )
    }

    #[test]
    fn w1_and_w2_packets_make_one_temporal_unit() {
        let mut d = Av1Depacketizer::new();
        let sh = seq_header_720p();
        let frame_payload = [KEY_FRAME_HEADER.as_slice(), &[9; 20]].concat();
        let metadata = [1, 2, 3];
        let pkts = vec![
            pkt(
                1,
                0,
                false,
                payload(
                    aggregation(false, false, 1, true),
                    &[(&obu(OBU_SEQUENCE_HEADER, &sh), false)],
                ),
            ),
            pkt(
                2,
                0,
                true,
                payload(
                    aggregation(false, false, 2, false),
                    &[
                        (&obu(OBU_FRAME, &frame_payload), true),
                        (&obu(5, &metadata), false),
                    ],
                ),
            ),
        ];
        let out = run(&mut d, &pkts);
        assert_eq!(
            out,
            vec![Output::Frame(Frame {
                timestamp: 0,
                keyframe: true,
                data: [
                    sized(OBU_SEQUENCE_HEADER, &sh),
                    sized(OBU_FRAME, &frame_payload),
                    sized(5, &metadata),
                ]
                .concat(),
            })]
        );
        assert_eq!(
            d.sequence_header(),
            Some(&sized(OBU_SEQUENCE_HEADER, &sh)[..])
        );
    }

    #[test]
    fn w0_length_fields_drop_temporal_delimiter_and_keep_existing_obu_size() {
        let mut d = Av1Depacketizer::new();
        let sh = seq_header_720p();
        let td = obu(OBU_TEMPORAL_DELIMITER, &[]);
        let tile_list = obu(OBU_TILE_LIST, &[7, 7]);
        // An OBU that already carries obu_size, followed by junk that obu_size excludes.
        let mut frame_with_size = sized(OBU_FRAME, &KEY_FRAME_HEADER);
        frame_with_size.push(0xee);
        let extended = [(OBU_FRAME_HEADER << 3) | 0x04, 0x28, 0x10]; // with extension byte
        let p = payload(
            aggregation(false, false, 0, false),
            &[
                (&td, true),
                (&obu(OBU_SEQUENCE_HEADER, &sh), true),
                (&frame_with_size, true),
                (&tile_list, true),
                (&extended, true),
            ],
        );
        let out = run(&mut d, &[pkt(9, 90, true, p)]);
        let f = frames(&out);
        assert_eq!(f.len(), 1, "{out:?}");
        assert!(f[0].keyframe, "sequence header + KEY_FRAME without N");
        assert_eq!(
            f[0].data,
            [
                sized(OBU_SEQUENCE_HEADER, &sh),
                sized(OBU_FRAME, &KEY_FRAME_HEADER),
                vec![
                    (OBU_FRAME_HEADER << 3) | 0x04 | OBU_HAS_SIZE_FIELD,
                    0x28,
                    1,
                    0x10
                ],
            ]
            .concat()
        );
    }

    #[test]
    fn fragmented_obu_across_three_packets() {
        let mut d = Av1Depacketizer::new();
        let big: Vec<u8> = KEY_FRAME_HEADER
            .iter()
            .copied()
            .chain((0..3000).map(|i| i as u8))
            .collect();
        let whole = obu(OBU_FRAME, &big);
        let sh = obu(OBU_SEQUENCE_HEADER, &seq_header_720p());
        let (a, rest) = whole.split_at(1000);
        let (b, c) = rest.split_at(1000);
        let pkts = vec![
            pkt(
                40,
                3000,
                false,
                payload(
                    aggregation(false, true, 2, false),
                    &[(&sh, true), (a, false)],
                ),
            ),
            pkt(
                41,
                3000,
                false,
                payload(aggregation(true, true, 1, false), &[(b, false)]),
            ),
            pkt(
                42,
                3000,
                true,
                payload(aggregation(true, false, 1, false), &[(c, false)]),
            ),
        ];
        let out = run(&mut d, &pkts);
        let f = frames(&out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(f[0].keyframe);
        assert_eq!(
            f[0].data,
            [
                sized(OBU_SEQUENCE_HEADER, &seq_header_720p()),
                sized(OBU_FRAME, &big)
            ]
            .concat()
        );
    }

    #[test]
    fn lost_fragment_asks_for_keyframe_and_recovers() {
        let mut d = Av1Depacketizer::new();
        let mut pkts = key_tu(1, 0, true);
        let big = obu(
            OBU_FRAME,
            &[INTER_FRAME_HEADER.as_slice(), &[5; 600]].concat(),
        );
        let (a, rest) = big.split_at(200);
        let (_b, c) = rest.split_at(200);
        pkts.push(pkt(
            2,
            3000,
            false,
            payload(aggregation(false, true, 1, false), &[(a, false)]),
        ));
        // seq 3 (the middle fragment) is lost.
        pkts.push(pkt(
            4,
            3000,
            true,
            payload(aggregation(true, false, 1, false), &[(c, false)]),
        ));
        pkts.push(inter_tu(5, 6000));
        pkts.push(inter_tu(6, 9000));
        pkts.push(inter_tu(7, 12000));
        pkts.extend(key_tu(8, 15000, false));
        pkts.push(inter_tu(9, 18000));
        let out = run(&mut d, &pkts);
        let kinds: Vec<_> = out
            .iter()
            .map(|o| match o {
                Output::Frame(f) => Some((f.timestamp, f.keyframe)),
                Output::NeedKeyframe => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some((0, true)),
                None,
                Some((15000, true)),
                Some((18000, false))
            ]
        );
    }

    #[test]
    fn timestamp_change_ends_temporal_unit() {
        let mut d = Av1Depacketizer::new();
        let mut pkts = key_tu(1, 0, true);
        pkts[0].marker = false;
        let mut next = inter_tu(2, 3000);
        next.marker = false;
        pkts.push(next);
        pkts.push(inter_tu(3, 6000));
        let out = run(&mut d, &pkts);
        assert_eq!(frames(&out).len(), 3, "{out:?}");
    }

    #[test]
    fn sequence_header_1280x720_main_8bit_level_4_0() {
        let sh = parse_av1_sequence_header(&obu(OBU_SEQUENCE_HEADER, &seq_header_720p())).unwrap();
        assert_eq!((sh.max_frame_width, sh.max_frame_height), (1280, 720));
        assert_eq!(
            (sh.seq_profile, sh.seq_level_idx_0, sh.seq_tier_0),
            (0, 8, false)
        );
        assert_eq!(sh.bit_depth(), 8);
        assert!(sh.chroma_subsampling_x && sh.chroma_subsampling_y && !sh.mono_chrome);
        assert_eq!(sh.codec_string(), "av01.0.08M.08");
        // The same OBU with obu_size parses identically.
        assert_eq!(
            parse_av1_sequence_header(&sized(OBU_SEQUENCE_HEADER, &seq_header_720p())),
            Some(sh)
        );
    }

    #[test]
    fn sequence_header_from_chrome_and_libaom() {
        // Byte strings from bluenviron/mediacommon's tests: Chrome WebRTC (no obu_size) and a
        // file sample (with obu_size). Expected values were decoded by hand per AV1 §5.5.
        let chrome = [8, 0, 0, 0, 66, 167, 191, 228, 96, 13, 0, 64];
        let sh = parse_av1_sequence_header(&chrome).unwrap();
        assert_eq!((sh.max_frame_width, sh.max_frame_height), (1920, 804));
        assert_eq!(sh.codec_string(), "av01.0.08M.08");
        let sample = [10, 11, 0, 0, 0, 66, 167, 191, 230, 46, 223, 200, 66];
        let sh = parse_av1_sequence_header(&sample).unwrap();
        assert_eq!((sh.max_frame_width, sh.max_frame_height), (1920, 818));
        assert!(!sh.mono_chrome && sh.chroma_subsampling_x && sh.chroma_subsampling_y);
        assert_eq!(sh.codec_string(), "av01.0.08M.08");
    }

    #[test]
    fn sequence_header_from_libaom_and_svt_av1() {
        // ffmpeg 5.1 `-f obu` output; ffprobe reports the same levels (5 and 1).
        let libaom = [
            0x0a, 0x0b, 0x00, 0x00, 0x00, 0x2d, 0x4c, 0xff, 0xb3, 0xcd, 0xaf, 0x90, 0x04,
        ];
        let sh = parse_av1_sequence_header(&libaom).unwrap();
        assert_eq!((sh.max_frame_width, sh.max_frame_height), (1280, 720));
        assert_eq!(sh.codec_string(), "av01.0.05M.08");
        let svt_10bit = [
            0x0a, 0x0b, 0x00, 0x00, 0x00, 0x0c, 0xc4, 0xff, 0x67, 0x3e, 0xfe, 0x50, 0x10,
        ];
        let sh = parse_av1_sequence_header(&svt_10bit).unwrap();
        assert_eq!((sh.max_frame_width, sh.max_frame_height), (640, 360));
        assert_eq!(sh.codec_string(), "av01.0.01M.10");
    }

    #[test]
    fn sequence_header_garbage_is_rejected_without_panicking() {
        assert_eq!(parse_av1_sequence_header(&[]), None);
        assert_eq!(parse_av1_sequence_header(&obu(OBU_FRAME, &[0; 12])), None);
        let full = obu(OBU_SEQUENCE_HEADER, &seq_header_720p());
        for len in 0..full.len() - 1 {
            assert_eq!(parse_av1_sequence_header(&full[..len]), None, "len {len}");
        }
        let mut rng = Rng(77);
        for _ in 0..20_000 {
            let mut bytes = rng.bytes(32);
            if let Some(b) = bytes.first_mut() {
                *b = (OBU_SEQUENCE_HEADER << 3) | (*b & 0x06);
            }
            let _ = parse_av1_sequence_header(&bytes);
        }
    }

    #[test]
    fn random_packets_never_panic() {
        let mut d = Av1Depacketizer::new();
        fuzz(
            &mut d,
            3,
            50_000,
            &[0x08, 0x18, 0x28, 0x00, 0x10, 0x50, 0x90, 0xd0],
        );
    }
}
