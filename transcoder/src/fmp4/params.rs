//! Codec parameter parsing and building: the few bitstream fields the sample entries and RFC 6381
//! codec strings need that the depacketizers' bitstream parsers do not give directly: the
//! `av1C` fields and the AAC AudioSpecificConfig.

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

impl From<&crate::depacketize::Av1SequenceHeader> for Av1Config {
    fn from(h: &crate::depacketize::Av1SequenceHeader) -> Self {
        Self {
            profile: h.seq_profile,
            level: h.seq_level_idx_0,
            high_tier: h.seq_tier_0,
            bit_depth: h.bit_depth(),
            monochrome: h.mono_chrome,
            chroma_subsampling_x: h.chroma_subsampling_x,
            chroma_subsampling_y: h.chroma_subsampling_y,
            chroma_sample_position: h.chroma_sample_position,
        }
    }
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
    let mut r = crate::bits::BitReader::new(config);
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
        let mut r = crate::bits::BitReader::new(&explicit);
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
    fn av1_config_from_a_libaom_sequence_header() {
        // libaom realtime 320x180 main profile 8-bit sequence header OBU.
        let obu = [
            0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xcc, 0xda, 0xf9, 0x00, 0x40,
        ];
        let seq = crate::depacketize::parse_av1_sequence_header(&obu).unwrap();
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (320, 180));
        let config = Av1Config::from(&seq);
        assert_eq!((config.profile, config.level, config.bit_depth), (0, 0, 8));
        assert!(config.chroma_subsampling_x && config.chroma_subsampling_y);
    }
}
