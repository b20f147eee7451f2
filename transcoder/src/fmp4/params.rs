//! Codec parameter parsing and building: the few bitstream fields the sample entries and RFC 6381
//! codec strings need (H.264 SPS, AV1 sequence header, AAC AudioSpecificConfig).

/// MSB-first bit reader; every read returns `None` past the end so malformed input cannot panic.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v = 0u32;
        for _ in 0..n {
            v = v << 1 | u32::from(self.bit()?);
        }
        Some(v)
    }

    fn leading_zeros(&mut self) -> Option<u32> {
        let mut n = 0;
        while !self.bit()? {
            n += 1;
            if n >= 32 {
                return None;
            }
        }
        Some(n)
    }

    /// H.264 `ue(v)`.
    fn ue(&mut self) -> Option<u32> {
        let n = self.leading_zeros()?;
        Some(((1u64 << n) - 1 + u64::from(self.bits(n)?)) as u32)
    }

    /// AV1 `uvlc()`; same code as `ue(v)` for the values a sequence header can hold.
    fn uvlc(&mut self) -> Option<u32> {
        self.ue()
    }
}

/// Chroma format and bit depths from an H.264 SPS (NAL header included), for the avcC
/// high-profile extension. Baseline-family SPSs carry none of these, so 4:2:0 8-bit is implied.
pub(super) struct AvcChroma {
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
}

pub(super) fn avc_chroma(sps: &[u8]) -> AvcChroma {
    let implied = AvcChroma {
        chroma_format_idc: 1,
        bit_depth_luma_minus8: 0,
        bit_depth_chroma_minus8: 0,
    };
    let Some(&profile_idc) = sps.get(1) else {
        return implied;
    };
    if !matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        return implied;
    }
    // Only a handful of bytes are read, so unescaping a bounded prefix is enough.
    let mut rbsp = [0u8; 16];
    let mut len = 0;
    let mut zeros = 0;
    for &b in sps.iter().skip(4) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp[len] = b;
        len += 1;
        if len == rbsp.len() {
            break;
        }
    }
    let mut r = Bits::new(&rbsp[..len]);
    let parsed = (|| {
        r.ue()?; // seq_parameter_set_id
        let chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        let luma = r.ue()?;
        let chroma = r.ue()?;
        (chroma_format_idc <= 3 && luma <= 7 && chroma <= 7).then_some(AvcChroma {
            chroma_format_idc: chroma_format_idc as u8,
            bit_depth_luma_minus8: luma as u8,
            bit_depth_chroma_minus8: chroma as u8,
        })
    })();
    parsed.unwrap_or(implied)
}

/// The fields of an `av1C` box besides the config OBUs (AV1-ISOBMFF §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1Config {
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// `seq_level_idx[0]` (e.g. 8 = level 4.0).
    pub level: u8,
    /// `seq_tier[0]`: high tier.
    pub high_tier: bool,
    /// 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `subsampling_x`.
    pub chroma_subsampling_x: bool,
    /// `subsampling_y`.
    pub chroma_subsampling_y: bool,
    /// `chroma_sample_position` (0 unknown, 1 vertical, 2 colocated).
    pub chroma_sample_position: u8,
}

impl Default for Av1Config {
    /// Main profile, level 4.0, main tier, 8-bit 4:2:0: what browsers and OBS send by default.
    fn default() -> Self {
        Self {
            profile: 0,
            level: 8,
            high_tier: false,
            bit_depth: 8,
            monochrome: false,
            chroma_subsampling_x: true,
            chroma_subsampling_y: true,
            chroma_sample_position: 0,
        }
    }
}

/// What [`parse_av1_sequence_header`] extracts from a sequence header OBU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1SequenceHeader {
    /// The `av1C` fields.
    pub config: Av1Config,
    /// `max_frame_width_minus_1 + 1`.
    pub max_width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub max_height: u32,
}

/// Splits an OBU (header included) into its type and payload; `None` if truncated.
fn split_obu(obu: &[u8]) -> Option<(u8, &[u8])> {
    let header = *obu.first()?;
    let obu_type = header >> 3 & 0x0f;
    let has_extension = header & 0x04 != 0;
    let has_size = header & 0x02 != 0;
    let mut rest = obu.get(1 + usize::from(has_extension)..)?;
    if has_size {
        let (size, n) = read_leb128(rest)?;
        rest = rest.get(n..)?.get(..usize::try_from(size).ok()?)?;
    }
    Some((obu_type, rest))
}

fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub(super) fn write_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Parses an AV1 sequence header OBU (OBU header included, `obu_size` optional) far enough to
/// fill `av1C` and the codec string (AV1 spec §5.5). `None` if it is not one or is truncated.
pub fn parse_av1_sequence_header(obu: &[u8]) -> Option<Av1SequenceHeader> {
    const OBU_SEQUENCE_HEADER: u8 = 1;
    let (obu_type, payload) = split_obu(obu)?;
    if obu_type != OBU_SEQUENCE_HEADER {
        return None;
    }
    let mut r = Bits::new(payload);
    let profile = r.bits(3)? as u8;
    r.bit()?; // still_picture
    let reduced_still_picture_header = r.bit()?;
    let level;
    let mut high_tier = false;
    if reduced_still_picture_header {
        level = r.bits(5)? as u8;
    } else {
        let mut buffer_delay_length = 0;
        let mut decoder_model_info_present = false;
        if r.bit()? {
            // timing_info()
            r.bits(32)?;
            r.bits(32)?;
            if r.bit()? {
                r.uvlc()?;
            }
            decoder_model_info_present = r.bit()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? + 1;
                r.bits(32)?;
                r.bits(10)?; // buffer_removal_time_length_minus_1, frame_presentation_time_…
            }
        }
        let initial_display_delay_present = r.bit()?;
        let operating_points = r.bits(5)? + 1;
        let mut first = None;
        for _ in 0..operating_points {
            r.bits(12)?; // operating_point_idc
            let op_level = r.bits(5)? as u8;
            let op_tier = op_level > 7 && r.bit()?;
            first.get_or_insert((op_level, op_tier));
            if decoder_model_info_present && r.bit()? {
                r.bits(buffer_delay_length)?;
                r.bits(buffer_delay_length)?;
                r.bit()?;
            }
            if initial_display_delay_present && r.bit()? {
                r.bits(4)?;
            }
        }
        (level, high_tier) = first?;
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let max_width = r.bits(width_bits)? + 1;
    let max_height = r.bits(height_bits)? + 1;
    if !reduced_still_picture_header && r.bit()? {
        r.bits(7)?; // delta_frame_id_length_minus_2, additional_frame_id_length_minus_1
    }
    r.bits(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if !reduced_still_picture_header {
        r.bits(4)?; // interintra, masked compound, warped motion, dual filter
        let enable_order_hint = r.bit()?;
        if enable_order_hint {
            r.bits(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        let seq_force_screen_content_tools = if r.bit()? { 2 } else { r.bits(1)? };
        if seq_force_screen_content_tools > 0 && !r.bit()? {
            r.bits(1)?; // seq_force_integer_mv
        }
        if enable_order_hint {
            r.bits(3)?;
        }
    }
    r.bits(3)?; // enable_superres, enable_cdef, enable_restoration

    // color_config()
    let high_bitdepth = r.bit()?;
    let bit_depth = match (profile, high_bitdepth) {
        (2, true) => {
            if r.bit()? {
                12
            } else {
                10
            }
        }
        (_, true) => 10,
        (_, false) => 8,
    };
    let monochrome = profile != 1 && r.bit()?;
    let (mut cp, mut tc, mut mc) = (2, 2, 2);
    if r.bit()? {
        cp = r.bits(8)?;
        tc = r.bits(8)?;
        mc = r.bits(8)?;
    }
    let (sx, sy, csp);
    if monochrome {
        (sx, sy, csp) = (true, true, 0);
    } else if cp == 1 && tc == 13 && mc == 0 {
        (sx, sy, csp) = (false, false, 0);
    } else {
        r.bit()?; // color_range
        (sx, sy) = match profile {
            0 => (true, true),
            1 => (false, false),
            _ if bit_depth == 12 => {
                let sx = r.bit()?;
                (sx, sx && r.bit()?)
            }
            _ => (true, false),
        };
        csp = if sx && sy { r.bits(2)? as u8 } else { 0 };
    }
    Some(Av1SequenceHeader {
        config: Av1Config {
            profile,
            level,
            high_tier,
            bit_depth,
            monochrome,
            chroma_subsampling_x: sx,
            chroma_subsampling_y: sy,
            chroma_sample_position: csp,
        },
        max_width,
        max_height,
    })
}

const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Builds an AAC-LC AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1). `None` for a zero sample
/// rate or a channel count with no channelConfiguration (valid: 1–6 and 8).
pub fn aac_lc_config(sample_rate: u32, channels: u8) -> Option<Vec<u8>> {
    const AOT_AAC_LC: u64 = 2;
    if sample_rate == 0 || sample_rate >= 1 << 24 {
        return None;
    }
    let channel_config = match channels {
        1..=6 => u64::from(channels),
        8 => 7,
        _ => return None,
    };
    // Fields are packed MSB-first into a u64, then the used bytes are emitted.
    let (mut v, mut n) = (AOT_AAC_LC, 5u32);
    let mut push = |value: u64, bits: u32| {
        v = v << bits | value;
        n += bits;
    };
    match AAC_SAMPLE_RATES.iter().position(|&r| r == sample_rate) {
        Some(index) => push(index as u64, 4),
        None => {
            push(15, 4);
            push(u64::from(sample_rate), 24);
        }
    }
    push(channel_config, 4);
    push(0, 3); // GASpecificConfig: frameLengthFlag (1024), dependsOnCoreCoder, extensionFlag
    let bytes = n.div_ceil(8);
    v <<= bytes * 8 - n;
    Some(v.to_be_bytes()[8 - bytes as usize..].to_vec())
}

/// `audioObjectType` of an AudioSpecificConfig, defaulting to AAC-LC when unreadable.
pub(super) fn aac_object_type(config: &[u8]) -> u32 {
    let mut r = Bits::new(config);
    match r.bits(5) {
        Some(31) => r.bits(6).map_or(2, |ext| 32 + ext),
        Some(aot) if aot != 0 => aot,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_config_known_values() {
        assert_eq!(aac_lc_config(48000, 2).unwrap(), [0x11, 0x90]);
        assert_eq!(aac_lc_config(44100, 2).unwrap(), [0x12, 0x10]);
        assert_eq!(aac_lc_config(48000, 1).unwrap(), [0x11, 0x88]);
        // Explicit frequency: AOT 2, index 15, 24-bit rate, channels, GASpecificConfig = 40 bits.
        let explicit = aac_lc_config(50000, 2).unwrap();
        assert_eq!(explicit.len(), 5);
        let mut r = Bits::new(&explicit);
        assert_eq!(
            [r.bits(5), r.bits(4), r.bits(24), r.bits(4)],
            [Some(2), Some(15), Some(50000), Some(2)]
        );
        assert_eq!(aac_lc_config(48000, 7), None);
        assert_eq!(aac_lc_config(0, 2), None);
        assert_eq!(aac_object_type(&[0x11, 0x90]), 2);
        assert_eq!(aac_object_type(&[0xf8, 0x20]), 33);
    }

    #[test]
    fn avc_chroma_from_high_profile_sps() {
        // libx264 High profile 320x180 SPS.
        let sps = [
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xb4, 0x0a, 0x0c, 0xfc, 0xf8, 0x08, 0x80,
        ];
        let c = avc_chroma(&sps);
        assert_eq!(
            (
                c.chroma_format_idc,
                c.bit_depth_luma_minus8,
                c.bit_depth_chroma_minus8
            ),
            (1, 0, 0)
        );
        // Truncated input falls back to 4:2:0 8-bit instead of failing.
        assert_eq!(avc_chroma(&[0x67, 0x64]).chroma_format_idc, 1);
    }

    #[test]
    fn leb128_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 21, u32::MAX as u64] {
            let mut out = Vec::new();
            write_leb128(&mut out, v);
            assert_eq!(
                out.len(),
                (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
            );
            assert_eq!(read_leb128(&out), Some((v, out.len())));
        }
    }

    #[test]
    fn av1_sequence_header_libaom() {
        // libaom realtime 320x180 main profile 8-bit sequence header OBU.
        let obu = [
            0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xcc, 0xda, 0xf9, 0x00, 0x40,
        ];
        let seq = parse_av1_sequence_header(&obu).unwrap();
        assert_eq!((seq.max_width, seq.max_height), (320, 180));
        assert_eq!(seq.config.profile, 0);
        assert_eq!(seq.config.level, 0);
        assert_eq!(seq.config.bit_depth, 8);
        assert!(seq.config.chroma_subsampling_x && seq.config.chroma_subsampling_y);
        assert!(parse_av1_sequence_header(&obu[..6]).is_none());
        assert!(parse_av1_sequence_header(&[0x12, 0x00]).is_none());
    }
}
