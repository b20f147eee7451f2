//! Opus over RTP (RFC 7587): one Opus packet per RTP payload, no payload header.

use super::{Assembler, Depacketizer, Frame, Output, Pipeline, ReorderWindow, RtpIn, Step};

/// Opus depacketizer; frames are Opus packets with their 48 kHz RTP timestamps. Losses never ask
/// for a keyframe: the caller sees a timestamp gap (as with DTX) and fills it.
pub struct OpusDepacketizer {
    pipe: Pipeline<OpusAssembler>,
}

impl OpusDepacketizer {
    /// A depacketizer with the default audio reorder window.
    pub fn new() -> Self {
        Self::with_window(ReorderWindow::AUDIO)
    }

    /// A depacketizer with a custom reorder window.
    pub fn with_window(window: ReorderWindow) -> Self {
        Self {
            pipe: Pipeline::new(OpusAssembler, window, false),
        }
    }
}

impl Default for OpusDepacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer for OpusDepacketizer {
    fn push(&mut self, pkt: &RtpIn<'_>) -> Vec<Output> {
        self.pipe.push(pkt)
    }
}

struct OpusAssembler;

impl Assembler for OpusAssembler {
    fn packet(&mut self, pkt: &RtpIn<'_>, steps: &mut Vec<Step>) {
        steps.push(Step::Frame(Frame {
            timestamp: pkt.timestamp,
            keyframe: true,
            data: pkt.payload.to_vec(),
        }));
    }

    fn lost(&mut self) {}
}

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1); `None` if
/// the packet is malformed.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = usize::from(toc >> 3);
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][config % 4], // SILK: 10, 20, 40, 60 ms
        12..=15 => [480, 960][config % 2],            // hybrid: 10, 20 ms
        _ => [120, 240, 480, 960][config % 4],        // CELT: 2.5, 5, 10, 20 ms
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    // A packet holds at least one frame and at most 120 ms.
    (frames > 0 && total <= 5760).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{frames, fuzz, pkt, run};
    use super::*;

    #[test]
    fn packets_pass_through_with_timestamps_and_loss_is_silent() {
        let mut d = OpusDepacketizer::new();
        let pkts = vec![
            pkt(65535, 960, false, vec![0xfc, 1, 2]),
            pkt(1, 2880, false, vec![0xfc, 5]), // seq 0 arrives late
            pkt(0, 1920, false, vec![0xfc, 3, 4]),
            pkt(2, 3840, false, vec![]), // padding only
            // seq 3..=5 lost: given up once packets have waited 50 ms (2400 ticks) behind them.
            pkt(6, 7680, true, vec![0xfc, 9]),
            pkt(7, 8640, false, vec![0xfc, 10]),
            pkt(8, 9600, false, vec![0xfc, 11]),
        ];
        let out = run(&mut d, &pkts);
        assert!(!out.contains(&Output::NeedKeyframe));
        let f = frames(&out);
        assert_eq!(
            f.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            vec![960, 1920, 2880]
        );
        let out = run(&mut d, &[pkt(9, 10560, false, vec![0xfc, 12])]);
        assert_eq!(
            frames(&out).iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            vec![7680, 8640, 9600, 10560]
        );
        assert!(f.iter().all(|f| f.keyframe));
        assert_eq!(f[1].data, vec![0xfc, 3, 4]);
    }

    #[test]
    fn packet_durations() {
        assert_eq!(opus_packet_samples(&[0xfc]), Some(960)); // CELT FB 20 ms, one frame
        assert_eq!(opus_packet_samples(&[0x78]), Some(960)); // hybrid FB 20 ms
        assert_eq!(opus_packet_samples(&[0x09]), Some(1920)); // SILK 20 ms, two frames
        assert_eq!(opus_packet_samples(&[0x0b, 3, 3]), Some(2880)); // SILK 20 ms, code 3 x3
        assert_eq!(opus_packet_samples(&[0x1b, 0x02]), Some(5760)); // SILK 60 ms x2
        assert_eq!(opus_packet_samples(&[0xe3, 0x06]), Some(720)); // CELT 2.5 ms x6
        assert_eq!(opus_packet_samples(&[0x1b, 0x03]), None); // 180 ms is too long
        assert_eq!(opus_packet_samples(&[0xff, 0x00]), None); // zero frames
        assert_eq!(opus_packet_samples(&[0xff]), None);
        assert_eq!(opus_packet_samples(&[]), None);
    }

    #[test]
    fn random_packets_never_panic() {
        let mut d = OpusDepacketizer::new();
        fuzz(&mut d, 5, 20_000, &[]);
    }
}
