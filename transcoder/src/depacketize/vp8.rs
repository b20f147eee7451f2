//! VP8 over RTP (RFC 7741) to whole VP8 frames, for decoding (VP8 has no HLS packaging).

use super::{
    Assembler, Depacketizer, Frame, MAX_FRAME_BYTES, Output, Pipeline, ReorderWindow, RtpIn, Step,
};

/// VP8 depacketizer; frames are raw VP8 frames (payload descriptors removed).
pub struct Vp8Depacketizer {
    pipe: Pipeline<Vp8Assembler>,
}

impl Vp8Depacketizer {
    /// A depacketizer with the default video reorder window.
    pub fn new() -> Self {
        Self::with_window(ReorderWindow::VIDEO)
    }

    /// A depacketizer with a custom reorder window.
    pub fn with_window(window: ReorderWindow) -> Self {
        Self {
            pipe: Pipeline::new(Vp8Assembler::default(), window, true),
        }
    }
}

impl Default for Vp8Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer for Vp8Depacketizer {
    fn push(&mut self, pkt: &RtpIn<'_>) -> Vec<Output> {
        self.pipe.push(pkt)
    }
}

struct Vp8Frame {
    timestamp: u32,
    data: Vec<u8>,
    damaged: bool,
}

#[derive(Default)]
struct Vp8Assembler {
    frame: Option<Vp8Frame>,
    /// False at start and after a loss: until a packet that can only open a frame arrives,
    /// whatever comes is the tail of a frame we cannot rebuild.
    synced: bool,
    /// Timestamp of the frame cut by the last loss, never to be restarted.
    damaged_ts: Option<u32>,
}

/// Parses the payload descriptor (RFC 7741 §4.2): whether the packet starts a frame (S = 1 and
/// PID = 0) and where the VP8 data begins.
fn descriptor(p: &[u8]) -> Option<(bool, usize)> {
    let b0 = *p.first()?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let ext = *p.get(1)?;
        len = 2;
        if ext & 0x80 != 0 {
            // PictureID: M bit selects 15 bits over 7.
            len += if *p.get(len)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // TID | Y | KEYIDX
        }
    }
    (len <= p.len()).then_some((start, len))
}

impl Assembler for Vp8Assembler {
    fn packet(&mut self, pkt: &RtpIn<'_>, steps: &mut Vec<Step>) {
        let desc = descriptor(pkt.payload);
        let start = desc.is_some_and(|(start, _)| start);
        if self
            .frame
            .as_ref()
            .is_some_and(|f| f.timestamp != pkt.timestamp || start)
        {
            self.finish(steps);
        }
        if self.frame.is_none() {
            if !start || self.damaged_ts == Some(pkt.timestamp) {
                if self.synced {
                    // No loss, yet the frame does not begin at its first partition.
                    self.lost();
                    self.damaged_ts = Some(pkt.timestamp);
                    steps.push(Step::Damaged);
                } else {
                    steps.push(Step::Skipped);
                }
                return;
            }
            self.synced = true;
            self.damaged_ts = None;
            self.frame = Some(Vp8Frame {
                timestamp: pkt.timestamp,
                data: Vec::new(),
                damaged: false,
            });
        }
        if let Some(frame) = self.frame.as_mut() {
            match desc {
                Some((_, len)) if frame.data.len() + pkt.payload.len() <= MAX_FRAME_BYTES => {
                    frame.data.extend_from_slice(&pkt.payload[len..]);
                }
                _ => frame.damaged = true,
            }
        }
        if pkt.marker {
            self.finish(steps);
        }
    }

    fn lost(&mut self) {
        if let Some(frame) = self.frame.take() {
            self.damaged_ts = Some(frame.timestamp);
        }
        self.synced = false;
    }
}

impl Vp8Assembler {
    fn finish(&mut self, steps: &mut Vec<Step>) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        // Frame tag (RFC 6386 §9.1): bit 0 is the inverse key frame flag.
        let keyframe = frame.data.first().is_some_and(|b| b & 0x01 == 0);
        let valid =
            frame.data.len() >= 3 && (!keyframe || vp8_keyframe_size(&frame.data).is_some());
        if frame.damaged || !valid {
            steps.push(Step::Damaged);
        } else {
            steps.push(Step::Frame(Frame {
                timestamp: frame.timestamp,
                keyframe,
                data: frame.data,
            }));
        }
    }
}

/// Width and height from a VP8 key frame (start code `9d 01 2a`); `None` for other frames.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    // The top two bits of each are the upscaling mode, not part of the size.
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Rng, frames, fuzz, pkt, run};
    use super::*;

    /// A key frame: frame tag (P = 0, show_frame, partition size), start code, 640x480 with
    /// scaling bits set to check they are masked off.
    fn key_frame(len: usize) -> Vec<u8> {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0xe0, 0xc1];
        f.extend((0..len).map(|i| i as u8));
        f
    }

    fn inter_frame(len: usize) -> Vec<u8> {
        let mut f = vec![0x31, 0x01, 0x00];
        f.extend((0..len).map(|i| (i * 3) as u8));
        f
    }

    /// Descriptor with X, I (15-bit PictureID), L and T/K extensions.
    fn long_descriptor(start: bool, picture_id: u16) -> Vec<u8> {
        let [hi, lo] = (picture_id | 0x8000).to_be_bytes();
        vec![
            0x80 | if start { 0x10 } else { 0 },
            0xf0,
            hi,
            lo,
            0x07,
            0x20,
        ]
    }

    fn with(desc: Vec<u8>, data: &[u8]) -> Vec<u8> {
        [desc, data.to_vec()].concat()
    }

    #[test]
    fn keyframe_across_packets_with_extensions() {
        let mut d = Vp8Depacketizer::new();
        let kf = key_frame(100);
        let (a, b) = kf.split_at(40);
        let pkts = vec![
            pkt(1, 0, false, with(long_descriptor(true, 300), a)),
            pkt(2, 0, true, with(long_descriptor(false, 300), b)),
            // 7-bit PictureID only.
            pkt(
                3,
                3000,
                true,
                with(vec![0x90, 0x80, 0x05], &inter_frame(10)),
            ),
        ];
        let out = run(&mut d, &pkts);
        let f = frames(&out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(f[0].keyframe);
        assert_eq!(f[0].data, kf);
        assert_eq!(vp8_keyframe_size(&f[0].data), Some((640, 480)));
        assert!(!f[1].keyframe);
        assert_eq!(f[1].data, inter_frame(10));
        assert_eq!(vp8_keyframe_size(&f[1].data), None);
    }

    #[test]
    fn loss_waits_for_next_keyframe() {
        let mut d = Vp8Depacketizer::new();
        let kf = key_frame(30);
        let inter = inter_frame(60);
        let (ia, ib) = inter.split_at(30);
        let pkts = vec![
            pkt(1, 0, true, with(vec![0x10], &kf)),
            pkt(2, 3000, false, with(vec![0x10], ia)),
            // seq 3 lost
            pkt(4, 3000, true, with(vec![0x00], ib)),
            pkt(5, 6000, true, with(vec![0x10], &inter_frame(5))),
            pkt(6, 9000, true, with(vec![0x10], &inter_frame(5))),
            pkt(7, 12000, true, with(vec![0x10], &inter_frame(5))),
            pkt(8, 15000, true, with(vec![0x10], &kf)),
            pkt(9, 18000, true, with(vec![0x10], &inter_frame(5))),
        ];
        let out = run(&mut d, &pkts);
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[1], Output::NeedKeyframe);
        let f = frames(&out);
        assert_eq!(
            f.iter()
                .map(|f| (f.timestamp, f.keyframe))
                .collect::<Vec<_>>(),
            vec![(0, true), (15000, true), (18000, false)]
        );
    }

    #[test]
    fn later_partition_without_frame_start_is_not_a_frame() {
        let mut d = Vp8Depacketizer::new();
        // S = 1 but PID = 1: the start of partition 1, not of the frame.
        let out = run(&mut d, &[pkt(1, 0, true, with(vec![0x11], &key_frame(5)))]);
        assert_eq!(out, vec![Output::NeedKeyframe]);
    }

    #[test]
    fn keyframe_size_rejects_garbage() {
        assert_eq!(vp8_keyframe_size(&[]), None);
        assert_eq!(vp8_keyframe_size(&key_frame(0)[..9]), None);
        let mut bad = key_frame(0);
        bad[4] = 0;
        assert_eq!(vp8_keyframe_size(&bad), None);
    }

    #[test]
    fn random_packets_never_panic() {
        let mut d = Vp8Depacketizer::new();
        fuzz(&mut d, 4, 50_000, &[0x10, 0x90, 0x00, 0x80, 0x11]);
        let mut rng = Rng(9);
        for _ in 0..10_000 {
            let _ = descriptor(&rng.bytes(6));
        }
    }
}
