//! The AV1 dependency descriptor (AV1 RTP spec, appendix A) as the test clients use it: the
//! publisher describes its clip as one spatial and temporal layer (L1T1, libwebrtc's
//! two templates: keyframe, and delta referring to the previous frame), and the viewer reads
//! the frame number back to check the SFU keeps it continuous.

use bytes::Bytes;

/// The header extension's URI.
pub const AV1_DD_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// MSB-first bit writer.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    fn put(&mut self, value: u32, width: u32) {
        for i in (0..width).rev() {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1
                && let Some(b) = self.bytes.last_mut()
            {
                *b |= 0x80 >> (self.used % 8);
            }
            self.used += 1;
        }
    }
}

/// The descriptor for one packet of frame `frame_number`: the first packet of a keyframe
/// carries the template structure; every other packet has the 3 mandatory bytes only.
pub fn descriptor(frame_number: u16, keyframe: bool, first: bool, last: bool) -> Bytes {
    let mut b = Bits::default();
    b.put(u32::from(first), 1);
    b.put(u32::from(last), 1);
    // Template 0 is the keyframe, template 1 the delta frame.
    b.put(u32::from(!keyframe), 6);
    b.put(u32::from(frame_number), 16);
    if keyframe && first {
        // template_dependency_structure_present, no active-targets/custom dtis/fdiffs/chains.
        b.put(0b10000, 5);
        b.put(0, 6); // template_id_offset
        b.put(0, 5); // dt_cnt_minus_one: one decode target
        b.put(0, 2); // template 0, next_layer_idc: same layer
        b.put(3, 2); // template 1, next_layer_idc: no more templates
        b.put(2, 2); // template 0 dti: switch
        b.put(2, 2); // template 1 dti: switch
        b.put(0, 1); // template 0: no fdiffs
        b.put(1, 1); // template 1: fdiff 1 ...
        b.put(0, 4);
        b.put(0, 1); // ... and no more
        b.put(0, 1); // chain_cnt = ns(2) = 0
        b.put(0, 1); // resolutions_present_flag
    }
    Bytes::from(b.bytes)
}

/// The frame number of a received descriptor.
pub fn frame_number(descriptor: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([
        *descriptor.get(1)?,
        *descriptor.get(2)?,
    ]))
}

/// The `a=extmap` id negotiated for the descriptor in `sdp`.
pub fn extmap_id(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        (uri.split_whitespace().next()? == AV1_DD_URI)
            .then(|| id.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_start_carries_the_structure() {
        let d = descriptor(0x1234, true, true, false);
        // S=1 E=0 template 0; frame 0x1234; flags 10000 then the L1T1 structure.
        assert_eq!(&d[..3], &[0x80, 0x12, 0x34]);
        assert_eq!(d.len(), 8);
        assert_eq!(d[3], 0b1000_0000);
        assert_eq!(frame_number(&d), Some(0x1234));
        let delta = descriptor(7, false, false, true);
        assert_eq!(&delta[..], &[0x41, 0x00, 0x07]);
        assert_eq!(frame_number(&[1, 2]), None);
    }

    #[test]
    fn finds_the_extmap() {
        let sdp = format!("v=0\r\na=extmap:3 urn:x\r\na=extmap:12/sendonly {AV1_DD_URI}\r\n");
        assert_eq!(extmap_id(&sdp), Some(12));
        assert_eq!(extmap_id("a=extmap:3 urn:x\r\n"), None);
    }
}
