//! AV1 dependency descriptor continuity (AV1 RTP spec, appendix A): the descriptor's 16-bit
//! frame number must keep counting from where a viewer was when the SFU switches its source
//! (simulcast layer, new publisher), or the receiver's frame-reference finder sees a jump and
//! waits for a keyframe. Only the frame number is rewritten; the template structure travels
//! with every keyframe of every layer, so it needs no help. Sans-IO, but for the str0m
//! serializer that moves the bytes in and out of RTP headers.

use std::sync::Arc;

use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues};

/// The extension's URI, as Chrome and libwebrtc negotiate it.
pub const DD_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Extension id we use when we write the offer; in answers the offer's id wins.
pub const DD_EXTMAP_ID: u8 = 12;

/// The mandatory fields: start/end of frame, template id (1 byte), frame number (2 bytes).
const MANDATORY_LEN: usize = 3;

/// A received descriptor, exactly as the publisher sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDd(pub Arc<[u8]>);

impl ReceivedDd {
    /// The descriptor's frame number.
    pub fn frame_number(&self) -> u16 {
        u16::from_be_bytes([self.0[1], self.0[2]])
    }
}

/// A descriptor to send: the received bytes with another frame number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingDd {
    /// The publisher's descriptor, shared by every viewer.
    pub raw: Arc<[u8]>,
    /// This viewer's frame number.
    pub frame_number: u16,
}

/// Moves descriptors between RTP headers and [`ExtensionValues::user_values`]: parsed as
/// [`ReceivedDd`], written from [`OutgoingDd`].
#[derive(Debug)]
pub struct DdSerializer;

impl ExtensionSerializer for DdSerializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        let Some(dd) = ev.user_values.get::<OutgoingDd>() else {
            return 0;
        };
        let n = dd.raw.len();
        if n < MANDATORY_LEN || buf.len() < n {
            return 0;
        }
        buf[..n].copy_from_slice(&dd.raw);
        buf[1..3].copy_from_slice(&dd.frame_number.to_be_bytes());
        n
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        if buf.len() < MANDATORY_LEN {
            return false;
        }
        ev.user_values.set(ReceivedDd(Arc::from(buf)));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        // One-byte elements carry at most 16 bytes; keyframes with a template structure
        // attached are longer.
        ev.user_values
            .get::<OutgoingDd>()
            .is_some_and(|dd| dd.raw.len() > 16)
    }
}

/// The extension to register on AV1 sessions.
pub fn extension() -> Extension {
    Extension::with_serializer(DD_URI, DdSerializer)
}

/// Keeps one viewer's frame numbers continuous across source changes.
#[derive(Debug, Default)]
pub struct DdMunger {
    offset: u16,
    /// Highest frame number sent (in the 16-bit circle), to continue after it.
    last: Option<u16>,
}

impl DdMunger {
    /// Starts a new source at its keyframe numbered `frame_number`: it becomes last + 1.
    pub fn switch_source(&mut self, frame_number: u16) {
        self.offset = match self.last {
            Some(last) => last.wrapping_add(1).wrapping_sub(frame_number),
            None => 0,
        };
    }

    /// This viewer's number for the current source's `frame_number`.
    pub fn rewrite(&mut self, frame_number: u16) -> u16 {
        let out = frame_number.wrapping_add(self.offset);
        // Packets of one frame share a number; retransmitted or reordered older frames must
        // not pull `last` back.
        if self.last.is_none_or(|l| (out.wrapping_sub(l) as i16) > 0) {
            self.last = Some(out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_numbers_continue_across_switches_and_wrap() {
        let mut m = DdMunger::default();
        m.switch_source(500);
        assert_eq!(m.rewrite(500), 500);
        assert_eq!(m.rewrite(501), 501);
        // A late packet of an older frame keeps its number and does not move `last`.
        assert_eq!(m.rewrite(500), 500);
        m.switch_source(65_534);
        assert_eq!(m.rewrite(65_534), 502);
        assert_eq!(m.rewrite(65_535), 503);
        assert_eq!(m.rewrite(0), 504);
        // Our own count wraps too.
        let mut m = DdMunger::default();
        m.switch_source(65_535);
        assert_eq!(m.rewrite(65_535), 65_535);
        m.switch_source(9);
        assert_eq!(m.rewrite(9), 0);
        assert_eq!(m.rewrite(10), 1);
    }

    #[test]
    fn serializer_rewrites_only_the_frame_number() {
        let s = DdSerializer;
        let mut ev = ExtensionValues::default();
        // Start of a keyframe with a template structure attached (7 bytes).
        let wire = [0x80, 0x12, 0x34, 0x80, 0x00, 0x14, 0x40];
        assert!(s.parse_value(&wire, &mut ev));
        let rx = ev.user_values.get::<ReceivedDd>().expect("parsed").clone();
        assert_eq!(rx.frame_number(), 0x1234);
        assert!(!s.parse_value(&wire[..2], &mut ExtensionValues::default()));

        let mut out = ExtensionValues::default();
        out.user_values.set(OutgoingDd {
            raw: rx.0.clone(),
            frame_number: 7,
        });
        assert!(!s.requires_two_byte_form(&out));
        let mut buf = [0u8; 32];
        assert_eq!(s.write_to(&mut buf, &out), wire.len());
        assert_eq!(&buf[..7], &[0x80, 0x00, 0x07, 0x80, 0x00, 0x14, 0x40]);
        assert_eq!(s.write_to(&mut buf[..4], &out), 0);
        assert_eq!(s.write_to(&mut buf, &ExtensionValues::default()), 0);

        let mut long = ExtensionValues::default();
        long.user_values.set(OutgoingDd {
            raw: Arc::from(vec![0u8; 20]),
            frame_number: 1,
        });
        assert!(s.requires_two_byte_form(&long));
    }
}
