//! Codec-specific inspection of RTP payloads: is this packet the first packet of a keyframe?
//!
//! The forwarder switches simulcast layers only at the start of a keyframe of the target layer,
//! so this runs once per published packet (at the publisher's shard) and the answer travels with
//! the packet to every viewer.

/// Video codecs the SFU forwards untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264, RFC 6184 packetization-mode 1.
    H264,
    /// VP8, RFC 7741.
    Vp8,
    /// VP9, RFC 9628.
    Vp9,
    /// AV1, AOM RTP payload format.
    Av1,
}

impl VideoCodec {
    /// Whether `payload` starts a keyframe (a decoder can begin here).
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            VideoCodec::H264 => h264_keyframe_start(payload),
            VideoCodec::Vp8 => vp8_keyframe_start(payload),
            VideoCodec::Vp9 => vp9_keyframe_start(payload),
            VideoCodec::Av1 => av1_keyframe_start(payload),
        }
    }
}

const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;

/// SPS or IDR in a single NAL, a STAP-A, or the first fragment of an FU-A.
///
/// Switching at the SPS (which encoders put before the IDR) keeps the parameter sets with the
/// keyframe; an IDR without a preceding SPS still counts so a stream that sends SPS out of band
/// can be switched to.
fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        t @ 1..=23 => t == H264_IDR || t == H264_SPS,
        24 => {
            // STAP-A: [hdr] then (u16 size, NAL)*
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                let nal_type = p[i + 2] & 0x1f;
                if nal_type == H264_IDR || nal_type == H264_SPS {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == H264_IDR),
        _ => false,
    }
}

/// RFC 7741: S=1, PID=0 and the payload header's P bit clear.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else {
        return false;
    };
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !start || pid != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            let Some(&pid0) = p.get(i) else { return false };
            i += if pid0 & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 9628: B (start of frame) set, P (inter-picture predicted) clear, spatial layer 0.
fn vp9_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else {
        return false;
    };
    let has_pid = b0 & 0x80 != 0;
    let inter = b0 & 0x40 != 0;
    let has_layers = b0 & 0x20 != 0;
    let begin = b0 & 0x08 != 0;
    if inter || !begin {
        return false;
    }
    if !has_layers {
        return true;
    }
    let mut i = 1;
    if has_pid {
        let Some(&pid0) = p.get(i) else { return false };
        i += if pid0 & 0x80 != 0 { 2 } else { 1 };
    }
    p.get(i).is_some_and(|l| (l >> 1) & 0x07 == 0)
}

/// AV1 aggregation header: N (new coded video sequence) set and Z (continuation) clear.
fn av1_keyframe_start(p: &[u8]) -> bool {
    p.first().is_some_and(|h| h & 0x08 != 0 && h & 0x80 == 0)
}

/// Keeps one keyframe start per picture and layer. An H.264 keyframe flags both its SPS packet
/// and the first fragment of its IDR; a viewer started at the second would get the IDR without
/// its parameter sets and could not decode it.
#[derive(Debug, Default)]
pub struct KeyframeStarts {
    /// RTP timestamp of the last picture that started a keyframe, per layer.
    last: Vec<Option<u32>>,
}

impl KeyframeStarts {
    /// Whether a packet of `layer` at RTP time `ts` that looks like a keyframe start is the
    /// first such packet of its picture.
    pub fn first_of_picture(&mut self, layer: usize, ts: u32) -> bool {
        if self.last.len() <= layer {
            self.last.resize(layer + 1, None);
        }
        let first = self.last[layer] != Some(ts);
        self.last[layer] = Some(ts);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_h264_keyframe_starts_once_at_its_parameter_sets() {
        let c = VideoCodec::H264;
        let mut starts = KeyframeStarts::default();
        let mut flag = |layer: usize, ts: u32, p: &[u8]| {
            c.is_keyframe_start(p) && starts.first_of_picture(layer, ts)
        };
        // STAP-A with SPS + PPS, then the IDR's first FU-A fragment, same picture.
        assert!(flag(0, 9000, &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]));
        assert!(!flag(0, 9000, &[0x7c, 0x85, 0xb8]));
        // Another layer's keyframe at the same time is its own start.
        assert!(flag(1, 9000, &[0x67, 0x42]));
        // The next keyframe, a retransmitted SPS of it, and a delta frame.
        assert!(flag(0, 12000, &[0x67, 0x42]));
        assert!(!flag(0, 12000, &[0x67, 0x42]));
        assert!(!flag(0, 15000, &[0x41, 0x9a]));
    }

    #[test]
    fn h264_variants() {
        let c = VideoCodec::H264;
        assert!(c.is_keyframe_start(&[0x67, 0x42])); // SPS
        assert!(c.is_keyframe_start(&[0x65, 0x88])); // IDR
        assert!(!c.is_keyframe_start(&[0x41, 0x9a])); // non-IDR slice
        // STAP-A with SPS + PPS.
        assert!(c.is_keyframe_start(&[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]));
        // STAP-A with SEI only.
        assert!(!c.is_keyframe_start(&[0x78, 0, 2, 0x06, 0x05]));
        // FU-A start of IDR, and a middle fragment.
        assert!(c.is_keyframe_start(&[0x7c, 0x85, 1, 2]));
        assert!(!c.is_keyframe_start(&[0x7c, 0x05, 1, 2]));
        assert!(!c.is_keyframe_start(&[]));
        // Truncated STAP-A must not panic.
        assert!(!c.is_keyframe_start(&[0x78, 0xff]));
    }

    #[test]
    fn vp8_variants() {
        let c = VideoCodec::Vp8;
        // S=1, no extension, payload header P=0.
        assert!(c.is_keyframe_start(&[0x10, 0x00]));
        // Interframe.
        assert!(!c.is_keyframe_start(&[0x10, 0x01]));
        // Extended with 15-bit PictureID and TL0PICIDX.
        assert!(c.is_keyframe_start(&[0x90, 0xc0, 0x80, 0x01, 0x05, 0x00]));
        // Not a start.
        assert!(!c.is_keyframe_start(&[0x00, 0x00]));
        assert!(!c.is_keyframe_start(&[0x90]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(VideoCodec::Vp9.is_keyframe_start(&[0x08]));
        assert!(!VideoCodec::Vp9.is_keyframe_start(&[0x48]));
        // With layers, SID 1 is not a keyframe start of the stream.
        assert!(!VideoCodec::Vp9.is_keyframe_start(&[0x28, 0x02]));
        assert!(VideoCodec::Vp9.is_keyframe_start(&[0x28, 0x00]));
        assert!(VideoCodec::Av1.is_keyframe_start(&[0x18]));
        assert!(!VideoCodec::Av1.is_keyframe_start(&[0x10]));
        assert!(!VideoCodec::Av1.is_keyframe_start(&[0x88]));
    }
}
