//! CMAF fragmented-MP4 writer (ISO/IEC 14496-12, CMAF ISO/IEC 23000-19), sans-IO: init segments
//! and `moof`+`mdat` fragments are returned as bytes for the LL-HLS layer to serve as parts.
//!
//! Every function sizes its output up front and writes it into one buffer, patching box sizes
//! in place, so a fragment costs one allocation (none with [`write_fragment`] and a reused buffer).

mod params;

pub use params::{Av1Config, aac_lc_config};

use bytes::Bytes;

/// A track's codec and the out-of-band parameters its sample entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// `avc1` + `avcC`. Samples are AVCC access units with 4-byte NAL lengths.
    H264 {
        /// Sequence parameter set NAL unit, header included, no start code.
        sps: Vec<u8>,
        /// Picture parameter set NAL unit, header included, no start code.
        pps: Vec<u8>,
        /// Display width in pixels.
        width: u16,
        /// Display height in pixels.
        height: u16,
    },
    /// `av01` + `av1C`. Samples are temporal units without the temporal delimiter, each OBU
    /// with `obu_size` (AV1-ISOBMFF §2.4).
    Av1 {
        /// Sequence header OBU, header included (`obu_size` is added if missing).
        sequence_header: Vec<u8>,
        /// Display width in pixels.
        width: u16,
        /// Display height in pixels.
        height: u16,
        /// Profile/level/tier/bit depth, usually from [`crate::depacketize::parse_av1_sequence_header`].
        config: Av1Config,
    },
    /// `Opus` + `dOps` (Opus-in-ISOBMFF, channel mapping family 0: mono or stereo). Use a
    /// 48 kHz track timescale.
    Opus {
        /// Output channel count, 1 or 2.
        channels: u8,
        /// Samples (at 48 kHz) to drop from the decoder start; libopus uses 312.
        pre_skip: u16,
        /// Informational original input rate, usually 48000.
        input_sample_rate: u32,
    },
    /// `mp4a` + `esds`. Samples are raw AAC frames (no ADTS header).
    Aac {
        /// AudioSpecificConfig, e.g. from [`aac_lc_config`].
        config: Vec<u8>,
        /// Channel count.
        channels: u8,
        /// Sample rate in Hz (use it as the track timescale).
        sample_rate: u32,
    },
}

impl Codec {
    /// Whether this is a video codec (`vide` handler) rather than audio (`soun`).
    pub fn is_video(&self) -> bool {
        matches!(self, Codec::H264 { .. } | Codec::Av1 { .. })
    }

    /// RFC 6381 `CODECS` value for HLS playlists, e.g. `avc1.64001f`, `av01.0.08M.08`.
    pub fn rfc6381(&self) -> String {
        match self {
            Codec::H264 { sps, .. } => {
                let b = |i: usize| sps.get(i).copied().unwrap_or(0);
                format!("avc1.{:02x}{:02x}{:02x}", b(1), b(2), b(3))
            }
            Codec::Av1 { config: c, .. } => format!(
                "av01.{}.{:02}{}.{:02}",
                c.profile,
                c.level,
                if c.high_tier { 'H' } else { 'M' },
                c.bit_depth
            ),
            Codec::Opus { .. } => "opus".to_owned(),
            Codec::Aac { config, .. } => format!("mp4a.40.{}", params::aac_object_type(config)),
        }
    }
}

/// One track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Track ID (non-zero, unique); fragments refer to it.
    pub id: u32,
    /// Media timescale in ticks per second (90000 for video, the sample rate for audio).
    pub timescale: u32,
    /// Codec and parameters.
    pub codec: Codec,
}

/// One media sample (an access unit / temporal unit / audio frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration in track timescale ticks.
    pub duration: u32,
    /// Whether decoding can start here (IDR / key frame; every audio frame).
    pub is_sync: bool,
    /// Presentation minus decode time in ticks; 0 without B-frames.
    pub composition_offset: i32,
    /// Sample payload in its ISOBMFF form (see [`Codec`]).
    pub data: Bytes,
}

/// The samples of one track in a fragment (one `traf`).
#[derive(Debug, Clone, Copy)]
pub struct TrackFragment<'a> {
    /// Track ID as given to [`init_segment`].
    pub track_id: u32,
    /// Decode time of the first sample in track timescale ticks (`tfdt`).
    pub base_decode_time: u64,
    /// Samples in decode order; an empty slice emits no `traf`.
    pub samples: &'a [Sample],
}

/// `styp` to put in front of a media segment: brands `msdh` (media segment) and `cmfs` (CMAF
/// segment). Optional: LL-HLS parts are usually served without it.
pub const STYP: [u8; 24] = *b"\0\0\0\x18stypmsdh\0\0\0\0msdhcmfs";

// Sample flags (14496-12 §8.8.3.1): sample_depends_on = 2 (independent) for sync samples;
// depends_on = 1 plus sample_is_non_sync_sample for the rest.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTS: u32 = 0x800;

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Big-endian field writers for the box builders.
trait Put {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn u64(&mut self, v: u64);
    fn zeros(&mut self, n: usize);
}

impl Put for Vec<u8> {
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

/// Writes a box whose size is patched in once `body` has written its payload.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.u32(0);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).expect("box exceeds 4 GiB");
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box (version and flags before the payload).
fn full(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, kind, |o| {
        o.u32(u32::from(version) << 24 | flags);
        body(o);
    });
}

/// Upper bound of an init segment's size, so building it allocates once.
fn init_capacity(tracks: &[Track]) -> usize {
    let params_len: usize = tracks
        .iter()
        .map(|t| match &t.codec {
            Codec::H264 { sps, pps, .. } => sps.len() + pps.len(),
            Codec::Av1 {
                sequence_header, ..
            } => sequence_header.len() + 8,
            Codec::Aac { config, .. } => config.len() + 8,
            Codec::Opus { .. } => 0,
        })
        .sum();
    // Fixed parts: ftyp + moov header + mvhd + mvex ≈ 150; a trak + trex ≈ 600 plus parameters.
    160 + 640 * tracks.len() + params_len
}

/// Builds an init segment: `ftyp` + `moov` with one `trak` per track and `mvex`/`trex`.
pub fn init_segment(tracks: &[Track]) -> Vec<u8> {
    let mut out = Vec::with_capacity(init_capacity(tracks));
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        o.u32(0);
        o.extend_from_slice(b"iso6cmfcdash");
    });
    bx(&mut out, b"moov", |o| {
        let next_track_id = tracks
            .iter()
            .map(|t| t.id)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        full(o, b"mvhd", 0, 0, |o| {
            o.zeros(8); // creation/modification time
            o.u32(1000);
            o.u32(0); // duration: unknown, fragments carry it
            o.u32(0x0001_0000); // rate 1.0
            o.u16(0x0100); // volume 1.0
            o.zeros(10);
            MATRIX.iter().for_each(|&m| o.u32(m));
            o.zeros(24);
            o.u32(next_track_id);
        });
        for track in tracks {
            trak(o, track);
        }
        bx(o, b"mvex", |o| {
            for track in tracks {
                full(o, b"trex", 0, 0, |o| {
                    o.u32(track.id);
                    o.u32(1); // sample description index
                    o.zeros(12); // default duration, size, flags: every trun sets its own
                });
            }
        });
    });
    out
}

fn trak(o: &mut Vec<u8>, track: &Track) {
    let video = track.codec.is_video();
    let (width, height) = match track.codec {
        Codec::H264 { width, height, .. } | Codec::Av1 { width, height, .. } => (width, height),
        _ => (0, 0),
    };
    bx(o, b"trak", |o| {
        // flags: track_enabled | track_in_movie
        full(o, b"tkhd", 0, 3, |o| {
            o.zeros(8);
            o.u32(track.id);
            o.zeros(4);
            o.u32(0); // duration
            o.zeros(8);
            o.u16(0); // layer
            o.u16(0); // alternate group
            o.u16(if video { 0 } else { 0x0100 });
            o.zeros(2);
            MATRIX.iter().for_each(|&m| o.u32(m));
            o.u32(u32::from(width) << 16);
            o.u32(u32::from(height) << 16);
        });
        bx(o, b"mdia", |o| {
            full(o, b"mdhd", 0, 0, |o| {
                o.zeros(8);
                o.u32(track.timescale);
                o.u32(0);
                o.u16(0x55c4); // language "und", packed ISO 639-2/T
                o.u16(0);
            });
            full(o, b"hdlr", 0, 0, |o| {
                o.u32(0);
                o.extend_from_slice(if video { b"vide" } else { b"soun" });
                o.zeros(12);
                o.extend_from_slice(if video {
                    b"VideoHandler\0"
                } else {
                    b"SoundHandler\0"
                });
            });
            bx(o, b"minf", |o| {
                if video {
                    full(o, b"vmhd", 0, 1, |o| o.zeros(8));
                } else {
                    full(o, b"smhd", 0, 0, |o| o.zeros(4));
                }
                bx(o, b"dinf", |o| {
                    full(o, b"dref", 0, 0, |o| {
                        o.u32(1);
                        // flags 1: media is in this file
                        full(o, b"url ", 0, 1, |_| {});
                    });
                });
                bx(o, b"stbl", |o| {
                    full(o, b"stsd", 0, 0, |o| {
                        o.u32(1);
                        sample_entry(o, track);
                    });
                    // Fragmented: the sample tables are empty, trun describes the samples.
                    full(o, b"stts", 0, 0, |o| o.u32(0));
                    full(o, b"stsc", 0, 0, |o| o.u32(0));
                    full(o, b"stsz", 0, 0, |o| o.zeros(8));
                    full(o, b"stco", 0, 0, |o| o.u32(0));
                });
            });
        });
    });
}

fn sample_entry(o: &mut Vec<u8>, track: &Track) {
    match &track.codec {
        Codec::H264 {
            sps,
            pps,
            width,
            height,
        } => visual_entry(o, b"avc1", *width, *height, |o| {
            bx(o, b"avcC", |o| {
                let b = |i: usize| sps.get(i).copied().unwrap_or(0);
                let profile = b(1);
                o.u8(1); // configurationVersion
                o.u8(profile);
                o.u8(b(2));
                o.u8(b(3));
                o.u8(0xfc | 3); // lengthSizeMinusOne: 4-byte NAL lengths
                o.u8(0xe0 | 1);
                o.u16(sps.len() as u16);
                o.extend_from_slice(sps);
                o.u8(1);
                o.u16(pps.len() as u16);
                o.extend_from_slice(pps);
                // 14496-15 §5.3.3.1.2: profiles other than Baseline/Main/Extended carry chroma
                // format and bit depths; ffmpeg and Apple's validator expect them.
                if !matches!(profile, 66 | 77 | 88) {
                    // Unreadable SPS: 4:2:0 8-bit, what every high-profile stream we see uses.
                    let (chroma, luma, chroma_depth) = crate::depacketize::parse_h264_sps(sps)
                        .map_or((1, 8, 8), |p| {
                            (p.chroma_format_idc, p.bit_depth_luma, p.bit_depth_chroma)
                        });
                    o.u8(0xfc | (chroma & 0x03));
                    o.u8(0xf8 | (luma.saturating_sub(8) & 0x07));
                    o.u8(0xf8 | (chroma_depth.saturating_sub(8) & 0x07));
                    o.u8(0); // numOfSequenceParameterSetExt
                }
            });
        }),
        Codec::Av1 {
            sequence_header,
            width,
            height,
            config: c,
        } => visual_entry(o, b"av01", *width, *height, |o| {
            bx(o, b"av1C", |o| {
                o.u8(0x81); // marker, version 1
                o.u8(c.profile << 5 | c.level & 0x1f);
                o.u8(u8::from(c.high_tier) << 7
                    | u8::from(c.bit_depth > 8) << 6
                    | u8::from(c.bit_depth == 12) << 5
                    | u8::from(c.monochrome) << 4
                    | u8::from(c.chroma_subsampling_x) << 3
                    | u8::from(c.chroma_subsampling_y) << 2
                    | c.chroma_sample_position & 3);
                o.u8(0); // no initial_presentation_delay
                write_obu_with_size(o, sequence_header);
            });
        }),
        Codec::Opus {
            channels,
            pre_skip,
            input_sample_rate,
        } => audio_entry(o, b"Opus", *channels, 48000, |o| {
            bx(o, b"dOps", |o| {
                o.u8(0); // version
                o.u8(*channels);
                o.u16(*pre_skip);
                o.u32(*input_sample_rate);
                o.u16(0); // output gain
                o.u8(0); // channel mapping family 0: mono/stereo, no mapping table
            });
        }),
        Codec::Aac {
            config,
            channels,
            sample_rate,
        } => audio_entry(o, b"mp4a", *channels, *sample_rate, |o| {
            full(o, b"esds", 0, 0, |o| esds(o, track.id, config));
        }),
    }
}

fn visual_entry(
    o: &mut Vec<u8>,
    kind: &[u8; 4],
    width: u16,
    height: u16,
    children: impl FnOnce(&mut Vec<u8>),
) {
    bx(o, kind, |o| {
        o.zeros(6);
        o.u16(1); // data_reference_index
        o.zeros(16);
        o.u16(width);
        o.u16(height);
        o.u32(0x0048_0000); // 72 dpi
        o.u32(0x0048_0000);
        o.u32(0);
        o.u16(1); // frame_count
        o.zeros(32); // compressorname
        o.u16(0x0018); // depth
        o.u16(0xffff); // pre_defined = -1
        children(o);
    });
}

fn audio_entry(
    o: &mut Vec<u8>,
    kind: &[u8; 4],
    channels: u8,
    sample_rate: u32,
    children: impl FnOnce(&mut Vec<u8>),
) {
    bx(o, kind, |o| {
        o.zeros(6);
        o.u16(1); // data_reference_index
        o.zeros(8);
        o.u16(u16::from(channels));
        o.u16(16); // samplesize
        o.zeros(4);
        // 16.16 fixed point; rates above 65535 Hz do not fit and decoders take the rate from
        // the codec configuration anyway.
        o.u32(if sample_rate <= 0xffff {
            sample_rate << 16
        } else {
            0
        });
        children(o);
    });
}

/// `esds` payload: ES_Descriptor{DecoderConfigDescriptor{DecoderSpecificInfo}, SLConfigDescriptor}.
fn esds(o: &mut Vec<u8>, track_id: u32, config: &[u8]) {
    fn header_len(len: usize) -> usize {
        1 + (usize::BITS - len.leading_zeros()).div_ceil(7).max(1) as usize
    }
    fn header(o: &mut Vec<u8>, tag: u8, len: usize) {
        o.u8(tag);
        let n = (usize::BITS - len.leading_zeros()).div_ceil(7).max(1);
        for i in (0..n).rev() {
            let more = if i > 0 { 0x80 } else { 0 };
            o.u8(more | (len >> (7 * i)) as u8 & 0x7f);
        }
    }
    let dcd_len = 13 + header_len(config.len()) + config.len();
    let es_len = 3 + header_len(dcd_len) + dcd_len + 3;
    header(o, 0x03, es_len);
    o.u16(track_id as u16); // ES_ID
    o.u8(0); // no dependsOn/URL/OCR
    header(o, 0x04, dcd_len);
    o.u8(0x40); // objectTypeIndication: MPEG-4 Audio
    o.u8(0x15); // streamType 5 (audio) << 2 | reserved 1
    o.zeros(3 + 4 + 4); // bufferSizeDB, maxBitrate, avgBitrate: unknown
    header(o, 0x05, config.len());
    o.extend_from_slice(config);
    header(o, 0x06, 1);
    o.u8(0x02); // SLConfig predefined = MP4
}

/// AV1-ISOBMFF wants `obu_size` on config OBUs, but RTP-depacketized OBUs usually lack it.
fn write_obu_with_size(o: &mut Vec<u8>, obu: &[u8]) {
    let Some(&header) = obu.first() else {
        return;
    };
    if header & 0x02 != 0 {
        o.extend_from_slice(obu);
        return;
    }
    let header_len = if header & 0x04 != 0 { 2 } else { 1 };
    let (head, payload) = obu.split_at(header_len.min(obu.len()));
    o.u8(header | 0x02);
    o.extend_from_slice(&head[1..]);
    crate::bits::write_leb128(o, payload.len());
    o.extend_from_slice(payload);
}

/// Bytes per trun sample entry and the trun flags for a run of samples.
fn trun_layout(samples: &[Sample]) -> (usize, u32, u8) {
    let has_cts = samples.iter().any(|s| s.composition_offset != 0);
    let negative_cts = samples.iter().any(|s| s.composition_offset < 0);
    let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS;
    if has_cts {
        flags |= TRUN_CTS;
    }
    // Version 1 makes the composition offset signed; version 0 keeps old parsers happy.
    (if has_cts { 16 } else { 12 }, flags, u8::from(negative_cts))
}

fn traf_len(t: &TrackFragment<'_>) -> usize {
    let (per_sample, _, _) = trun_layout(t.samples);
    // traf header + tfhd + tfdt v1 + trun header/sample_count/data_offset + entries
    8 + 16 + 20 + 20 + per_sample * t.samples.len()
}

/// Builds one fragment: `moof` (mfhd + a `traf` per non-empty track) + `mdat`.
///
/// # Panics
/// If the media data exceeds 2 GiB (trun data offsets are 32-bit signed).
pub fn fragment(sequence: u32, tracks: &[TrackFragment<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    write_fragment(&mut out, sequence, tracks);
    out
}

/// Appends one fragment to `out` (see [`fragment`]), reserving its exact size first.
///
/// # Panics
/// If the media data exceeds 2 GiB (trun data offsets are 32-bit signed).
pub fn write_fragment(out: &mut Vec<u8>, sequence: u32, tracks: &[TrackFragment<'_>]) {
    let trafs = || tracks.iter().filter(|t| !t.samples.is_empty());
    let moof_len = 8 + 16 + trafs().map(traf_len).sum::<usize>();
    let payload_len: usize = trafs().flat_map(|t| t.samples).map(|s| s.data.len()).sum();
    let mdat_len = 8 + payload_len;
    assert!(
        moof_len + mdat_len <= i32::MAX as usize,
        "fragment exceeds 2 GiB"
    );
    out.reserve(moof_len + mdat_len);

    let moof_start = out.len();
    bx(out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| o.u32(sequence));
        // default-base-is-moof: offsets count from the moof start to this track's first byte.
        let mut data_offset = moof_len + 8;
        for t in trafs() {
            bx(o, b"traf", |o| {
                full(o, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |o| {
                    o.u32(t.track_id)
                });
                full(o, b"tfdt", 1, 0, |o| o.u64(t.base_decode_time));
                let (_, flags, version) = trun_layout(t.samples);
                full(o, b"trun", version, flags, |o| {
                    o.u32(t.samples.len() as u32);
                    o.u32(data_offset as u32);
                    for s in t.samples {
                        o.u32(s.duration);
                        o.u32(s.data.len() as u32);
                        o.u32(if s.is_sync {
                            SYNC_SAMPLE_FLAGS
                        } else {
                            NON_SYNC_SAMPLE_FLAGS
                        });
                        if flags & TRUN_CTS != 0 {
                            o.u32(s.composition_offset as u32);
                        }
                    }
                });
            });
            data_offset += t.samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
    });
    debug_assert_eq!(out.len() - moof_start, moof_len);

    out.u32(mdat_len as u32);
    out.extend_from_slice(b"mdat");
    for s in trafs().flat_map(|t| t.samples) {
        out.extend_from_slice(&s.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed box: type, absolute offset, total size, payload offset, children.
    #[derive(Debug)]
    struct Node {
        kind: [u8; 4],
        start: usize,
        size: usize,
        body: usize,
        children: Vec<Node>,
    }

    impl Node {
        fn child(&self, kind: &[u8; 4]) -> &Node {
            self.children
                .iter()
                .find(|c| &c.kind == kind)
                .unwrap_or_else(|| panic!("no {} in {}", fourcc(kind), fourcc(&self.kind)))
        }
        fn path(&self, path: &[&[u8; 4]]) -> &Node {
            path.iter().fold(self, |n, k| n.child(k))
        }
        fn all(&self, kind: &[u8; 4]) -> Vec<&Node> {
            self.children.iter().filter(|c| &c.kind == kind).collect()
        }
    }

    fn fourcc(k: &[u8; 4]) -> String {
        String::from_utf8_lossy(k).into_owned()
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Walks `buf[from..to]` as a box sequence, asserting the sizes tile it exactly, and
    /// descends into the containers this writer emits.
    fn walk(buf: &[u8], from: usize, to: usize) -> Vec<Node> {
        let mut nodes = Vec::new();
        let mut at = from;
        while at < to {
            assert!(to - at >= 8, "truncated box header at {at}");
            let size = be32(buf, at) as usize;
            let kind: [u8; 4] = buf[at + 4..at + 8].try_into().unwrap();
            assert!(
                size >= 8 && at + size <= to,
                "{} at {at} overruns",
                fourcc(&kind)
            );
            // Offset of the children inside the box, for containers.
            let children_at = match &kind {
                b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof"
                | b"traf" => Some(8),
                b"stsd" | b"dref" => Some(16),
                b"avc1" | b"av01" => Some(86),
                b"mp4a" | b"Opus" => Some(36),
                _ => None,
            };
            let children = children_at.map_or_else(Vec::new, |c| walk(buf, at + c, at + size));
            nodes.push(Node {
                kind,
                start: at,
                size,
                body: at + 8,
                children,
            });
            at += size;
        }
        assert_eq!(at, to, "boxes do not tile their parent");
        nodes
    }

    fn root(buf: &[u8]) -> Node {
        Node {
            kind: *b"root",
            start: 0,
            size: buf.len(),
            body: 0,
            children: walk(buf, 0, buf.len()),
        }
    }

    fn h264() -> Codec {
        Codec::H264 {
            sps: vec![0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50],
            pps: vec![0x68, 0xeb, 0xe3, 0xcb],
            width: 1280,
            height: 720,
        }
    }

    fn all_tracks() -> Vec<Track> {
        vec![
            Track {
                id: 1,
                timescale: 90000,
                codec: h264(),
            },
            Track {
                id: 2,
                timescale: 48000,
                codec: Codec::Opus {
                    channels: 2,
                    pre_skip: 312,
                    input_sample_rate: 48000,
                },
            },
            Track {
                id: 3,
                timescale: 48000,
                codec: Codec::Aac {
                    config: aac_lc_config(48000, 2).unwrap(),
                    channels: 2,
                    sample_rate: 48000,
                },
            },
            Track {
                id: 4,
                timescale: 90000,
                codec: Codec::Av1 {
                    // Sequence header without obu_size: the writer must add it.
                    sequence_header: vec![
                        0x08, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xcc, 0xda, 0xf9, 0x00, 0x40,
                    ],
                    width: 320,
                    height: 180,
                    config: Av1Config::default(),
                },
            },
        ]
    }

    fn sample(len: usize, fill: u8, is_sync: bool, cts: i32) -> Sample {
        Sample {
            duration: 3000,
            is_sync,
            composition_offset: cts,
            data: Bytes::from(vec![fill; len]),
        }
    }

    #[test]
    fn init_segment_layout() {
        let tracks = all_tracks();
        let init = init_segment(&tracks);
        let r = root(&init);
        let kinds: Vec<_> = r.children.iter().map(|n| fourcc(&n.kind)).collect();
        assert_eq!(kinds, ["ftyp", "moov"]);
        assert_eq!(&init[8..12], b"iso6");

        let moov = r.child(b"moov");
        let mvhd = moov.child(b"mvhd");
        assert_eq!(mvhd.size, 108);
        assert_eq!(be32(&init, mvhd.start + mvhd.size - 4), 5, "next_track_ID");
        let traks = moov.all(b"trak");
        assert_eq!(traks.len(), 4);
        let trexs = moov.child(b"mvex").all(b"trex");
        assert_eq!(trexs.len(), 4);

        let expect = [
            (b"vide", b"avc1", b"avcC", 90000),
            (b"soun", b"Opus", b"dOps", 48000),
            (b"soun", b"mp4a", b"esds", 48000),
            (b"vide", b"av01", b"av1C", 90000),
        ];
        for (i, (trak, (handler, entry, config, timescale))) in traks.iter().zip(expect).enumerate()
        {
            let tkhd = trak.child(b"tkhd");
            assert_eq!(tkhd.size, 92);
            assert_eq!(be32(&init, tkhd.body + 12), i as u32 + 1, "track id");
            assert_eq!(
                be32(&init, trexs[i].body + 4),
                i as u32 + 1,
                "trex track id"
            );
            let mdhd = trak.path(&[b"mdia", b"mdhd"]);
            assert_eq!(be32(&init, mdhd.body + 12), timescale);
            let hdlr = trak.path(&[b"mdia", b"hdlr"]);
            assert_eq!(&init[hdlr.body + 8..hdlr.body + 12], handler);
            let minf = trak.path(&[b"mdia", b"minf"]);
            minf.child(if handler == b"vide" { b"vmhd" } else { b"smhd" });
            minf.path(&[b"dinf", b"dref", b"url "]);
            let stbl = minf.child(b"stbl");
            for empty in [b"stts", b"stsc", b"stco"] {
                assert_eq!(stbl.child(empty).size, 16);
            }
            assert_eq!(stbl.child(b"stsz").size, 20);
            let stsd = stbl.child(b"stsd");
            assert_eq!(stsd.children.len(), 1);
            stsd.child(entry).child(config);
        }

        // avcC: High profile gets the chroma/bit depth extension after the PPS.
        let avcc = traks[0].path(&[b"mdia", b"minf", b"stbl", b"stsd", b"avc1", b"avcC"]);
        assert_eq!(avcc.size, 8 + 6 + 2 + 8 + 3 + 4 + 4);
        assert_eq!(
            &init[avcc.body..avcc.body + 6],
            [1, 0x64, 0x00, 0x1f, 0xff, 0xe1]
        );
        assert_eq!(
            &init[avcc.start + avcc.size - 4..avcc.start + avcc.size],
            [0xfd, 0xf8, 0xf8, 0]
        );

        let dops = traks[1].path(&[b"mdia", b"minf", b"stbl", b"stsd", b"Opus", b"dOps"]);
        assert_eq!(
            &init[dops.body..dops.start + dops.size],
            [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
        );

        let esds = traks[2].path(&[b"mdia", b"minf", b"stbl", b"stsd", b"mp4a", b"esds"]);
        assert_eq!(
            &init[esds.body + 4..esds.start + esds.size],
            [
                0x03, 25, 0, 3, 0, // ES_Descriptor, ES_ID 3
                0x04, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // DecoderConfig
                0x05, 2, 0x11, 0x90, // AudioSpecificConfig
                0x06, 1, 0x02, // SLConfig
            ]
        );

        let av1c = traks[3].path(&[b"mdia", b"minf", b"stbl", b"stsd", b"av01", b"av1C"]);
        assert_eq!(&init[av1c.body..av1c.body + 4], [0x81, 0x08, 0x0c, 0]);
        assert_eq!(
            &init[av1c.body + 4..av1c.body + 6],
            [0x0a, 11],
            "obu_size added"
        );
        assert_eq!(av1c.size, 8 + 4 + 12 + 1);
    }

    #[test]
    fn init_segment_fits_its_reservation() {
        for n in 0..=4 {
            let tracks = &all_tracks()[..n];
            assert!(init_segment(tracks).len() <= init_capacity(tracks));
        }
    }

    #[test]
    fn fragment_layout_and_data_offsets() {
        let video = [
            sample(100, 0xa0, true, 0),
            sample(50, 0xa1, false, 0),
            sample(70, 0xa2, false, 0),
        ];
        let audio = [sample(10, 0xb0, true, 0), sample(11, 0xb1, true, 0)];
        let tracks = [
            TrackFragment {
                track_id: 1,
                base_decode_time: 90000,
                samples: &video,
            },
            TrackFragment {
                track_id: 2,
                base_decode_time: 0,
                samples: &[],
            },
            TrackFragment {
                track_id: 3,
                base_decode_time: 1 << 40,
                samples: &audio,
            },
        ];
        let mut buf = STYP.to_vec();
        write_fragment(&mut buf, 7, &tracks);
        assert_eq!(buf.capacity(), buf.len(), "exact reservation");
        let r = root(&buf);
        let kinds: Vec<_> = r.children.iter().map(|n| fourcc(&n.kind)).collect();
        assert_eq!(kinds, ["styp", "moof", "mdat"]);
        let moof = r.child(b"moof");
        let mdat = r.child(b"mdat");
        assert_eq!(mdat.size, 8 + 100 + 50 + 70 + 10 + 11);
        assert_eq!(be32(&buf, moof.child(b"mfhd").body + 4), 7);

        let trafs = moof.all(b"traf");
        assert_eq!(trafs.len(), 2, "empty track fragment is skipped");
        for (traf, (id, bdt, samples)) in trafs
            .iter()
            .zip([(1, 90000u64, &video[..]), (3, 1 << 40, &audio[..])])
        {
            let tfhd = traf.child(b"tfhd");
            assert_eq!(be32(&buf, tfhd.body), TFHD_DEFAULT_BASE_IS_MOOF);
            assert_eq!(be32(&buf, tfhd.body + 4), id);
            let tfdt = traf.child(b"tfdt");
            assert_eq!(buf[tfdt.body], 1, "tfdt version 1");
            assert_eq!(
                u64::from_be_bytes(buf[tfdt.body + 4..tfdt.body + 12].try_into().unwrap()),
                bdt
            );

            let trun = traf.child(b"trun");
            let flags = be32(&buf, trun.body);
            assert_eq!(flags, 0x701);
            assert_eq!(be32(&buf, trun.body + 4) as usize, samples.len());
            let mut at = moof.start + be32(&buf, trun.body + 8) as usize;
            assert!(at >= mdat.body && at <= mdat.start + mdat.size);
            for (i, s) in samples.iter().enumerate() {
                let entry = trun.body + 12 + 12 * i;
                assert_eq!(be32(&buf, entry), 3000);
                let size = be32(&buf, entry + 4) as usize;
                let expected_flags = if s.is_sync { 0x0200_0000 } else { 0x0101_0000 };
                assert_eq!(be32(&buf, entry + 8), expected_flags);
                assert_eq!(
                    &buf[at..at + size],
                    &s.data[..],
                    "data offset of track {id} sample {i}"
                );
                at += size;
            }
            assert_eq!(trun.size, 20 + 12 * samples.len());
        }
    }

    #[test]
    fn fragment_composition_offsets() {
        let samples = [sample(4, 1, true, 3000), sample(4, 2, false, -3000)];
        let buf = fragment(
            1,
            &[TrackFragment {
                track_id: 1,
                base_decode_time: 0,
                samples: &samples,
            }],
        );
        let r = root(&buf);
        let trun = r.path(&[b"moof", b"traf", b"trun"]);
        assert_eq!(buf[trun.body], 1, "signed offsets need trun v1");
        assert_eq!(be32(&buf, trun.body) & 0xffffff, 0xf01);
        assert_eq!(be32(&buf, trun.body + 12 + 12) as i32, 3000);
        assert_eq!(be32(&buf, trun.body + 12 + 16 + 12) as i32, -3000);

        let positive = [sample(4, 1, true, 0), sample(4, 2, false, 6000)];
        let buf = fragment(
            1,
            &[TrackFragment {
                track_id: 1,
                base_decode_time: 0,
                samples: &positive,
            }],
        );
        let trun = root(&buf).path(&[b"moof", b"traf", b"trun"]).body;
        assert_eq!(buf[trun], 0);
    }

    #[test]
    fn empty_fragment_is_well_formed() {
        let buf = fragment(1, &[]);
        let r = root(&buf);
        assert_eq!(r.child(b"moof").size, 24);
        assert_eq!(r.child(b"mdat").size, 8);
    }

    #[test]
    fn styp_is_a_box() {
        let r = root(&STYP);
        assert_eq!(r.children.len(), 1);
        assert_eq!(&STYP[8..12], b"msdh");
        assert_eq!(&STYP[16..24], b"msdhcmfs");
    }

    #[test]
    fn codec_strings() {
        assert_eq!(h264().rfc6381(), "avc1.64001f");
        let av1 = Codec::Av1 {
            sequence_header: vec![],
            width: 0,
            height: 0,
            config: Av1Config {
                level: 13,
                high_tier: true,
                bit_depth: 10,
                ..Av1Config::default()
            },
        };
        assert_eq!(av1.rfc6381(), "av01.0.13H.10");
        let tracks = all_tracks();
        assert_eq!(tracks[1].codec.rfc6381(), "opus");
        assert_eq!(tracks[2].codec.rfc6381(), "mp4a.40.2");
        assert_eq!(tracks[3].codec.rfc6381(), "av01.0.08M.08");
        let he_aac = Codec::Aac {
            config: vec![0x2b, 0x92, 0x08, 0x00],
            channels: 2,
            sample_rate: 48000,
        };
        assert_eq!(he_aac.rfc6381(), "mp4a.40.5");
    }
}
