//! RTP depacketizers for the LL-HLS path (checklist §6.2), sans-IO: no sockets, threads or clocks.
//!
//! Each depacketizer takes RTP packets in arrival order, puts them back in sequence order with a
//! small reorder buffer, and rebuilds complete frames in the form the fMP4 packager wants: H.264
//! access units as 4-byte length-prefixed NAL units, AV1 temporal units as OBUs with `obu_size`,
//! VP8 and Opus frames as they are. A gap that the buffer cannot repair breaks every later video
//! frame until the next keyframe, so video depacketizers then emit [`Output::NeedKeyframe`] and
//! drop frames until a keyframe arrives; audio simply carries on.
//!
//! The bitstream helpers (`parse_h264_sps`, `parse_av1_sequence_header`, `vp8_keyframe_size`,
//! `opus_packet_samples`) return `None` instead of panicking on garbage.

mod av1;
mod h264;
mod opus;
mod reorder;
mod vp8;

pub(crate) use av1::av1_sample;
pub use av1::{Av1Depacketizer, Av1SequenceHeader, parse_av1_sequence_header};
pub use h264::{H264Depacketizer, H264Sps, parse_h264_sps};
pub use opus::{OpusDepacketizer, opus_packet_samples};
pub use reorder::ReorderWindow;
pub use vp8::{Vp8Depacketizer, vp8_keyframe_size};

use reorder::{Admit, Reorder};

/// Frames larger than this are treated as garbage, so hostile input cannot grow memory unbounded.
const MAX_FRAME_BYTES: usize = 8 << 20;

/// One RTP packet as the depacketizer needs it (header already parsed, padding removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIn<'a> {
    /// RTP sequence number; wrap-around is handled inside.
    pub seq: u16,
    /// RTP timestamp (90 kHz for video, 48 kHz for Opus).
    pub timestamp: u32,
    /// RTP marker bit: last packet of a video frame.
    pub marker: bool,
    /// RTP payload without padding.
    pub payload: &'a [u8],
}

/// A complete access unit, temporal unit or audio frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// RTP timestamp of the frame (not unwrapped).
    pub timestamp: u32,
    /// True if decoding can start here (IDR, AV1 key frame, VP8 key frame; always for audio).
    pub keyframe: bool,
    /// Codec-specific sample bytes; see each depacketizer for the format.
    pub data: Vec<u8>,
}

/// What a depacketizer produces for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A complete frame, in decode order.
    Frame(Frame),
    /// Media was lost or damaged: frames are dropped until the next keyframe, ask upstream for one
    /// (PLI/FIR). Emitted once per loss event, so the caller should rate-limit its requests.
    NeedKeyframe,
}

/// Turns RTP packets into frames.
pub trait Depacketizer {
    /// Feeds one packet (in arrival order) and returns whatever it completed. The first packet
    /// fixes the sequence origin, so one that arrives later with a lower number is dropped.
    fn push(&mut self, pkt: &RtpIn<'_>) -> Vec<Output>;
}

/// What a codec assembler reports for one in-order packet.
enum Step {
    Frame(Frame),
    /// The frame being built turned out broken and was dropped.
    Damaged,
    /// The packet was ignored while waiting for the start of a clean frame.
    Skipped,
}

/// Codec-specific frame building over packets that are already in sequence order.
trait Assembler {
    /// Handles one packet with a non-empty payload.
    fn packet(&mut self, pkt: &RtpIn<'_>, steps: &mut Vec<Step>);
    /// Packets went missing: drop the frame in progress and resynchronise on a frame start.
    fn lost(&mut self);
}

/// Decides which frames reach the caller: after a loss a video decoder needs a keyframe.
struct KeyframeGate {
    video: bool,
    waiting: bool,
    requested: bool,
}

impl KeyframeGate {
    fn loss(&mut self, out: &mut Vec<Output>) {
        if self.video {
            self.waiting = true;
            self.requested = true;
            out.push(Output::NeedKeyframe);
        }
    }

    fn step(&mut self, step: Step, out: &mut Vec<Output>) {
        match step {
            Step::Frame(frame) => {
                if !self.video || frame.keyframe {
                    self.waiting = false;
                    self.requested = false;
                    out.push(Output::Frame(frame));
                } else if !self.waiting {
                    out.push(Output::Frame(frame));
                } else {
                    self.ask(out);
                }
            }
            Step::Damaged => self.loss(out),
            Step::Skipped => {
                if self.video {
                    self.waiting = true;
                    self.ask(out);
                }
            }
        }
    }

    /// Joining mid-stream asks once; repeated asks would only flood the sender with PLIs.
    fn ask(&mut self, out: &mut Vec<Output>) {
        if !self.requested {
            self.requested = true;
            out.push(Output::NeedKeyframe);
        }
    }
}

/// Reorder buffer + assembler + keyframe gate: the part every depacketizer shares.
struct Pipeline<A> {
    reorder: Reorder,
    asm: A,
    gate: KeyframeGate,
    steps: Vec<Step>,
}

impl<A: Assembler> Pipeline<A> {
    fn new(asm: A, window: ReorderWindow, video: bool) -> Self {
        Self {
            reorder: Reorder::new(window),
            asm,
            gate: KeyframeGate {
                video,
                // A viewer may join mid-GOP: nothing decodes before the first keyframe.
                waiting: video,
                requested: false,
            },
            steps: Vec::new(),
        }
    }

    fn push(&mut self, pkt: &RtpIn<'_>) -> Vec<Output> {
        let mut out = Vec::new();
        match self.reorder.admit(pkt.seq) {
            Admit::Now => {
                self.feed(pkt, &mut out);
                self.drain(&mut out);
            }
            Admit::Resync => {
                tracing::debug!(seq = pkt.seq, "RTP sequence jumped back; resynchronising");
                self.loss(&mut out);
                self.feed(pkt, &mut out);
            }
            Admit::Hold(ext) => {
                self.reorder.hold(ext, pkt);
                while self.reorder.should_give_up(pkt.timestamp) {
                    let missing = self.reorder.skip_gap();
                    tracing::debug!(missing, "RTP gap not repaired in time");
                    self.loss(&mut out);
                    self.drain(&mut out);
                }
            }
            Admit::Drop => {}
        }
        out
    }

    fn loss(&mut self, out: &mut Vec<Output>) {
        self.asm.lost();
        self.gate.loss(out);
    }

    fn drain(&mut self, out: &mut Vec<Output>) {
        while let Some(held) = self.reorder.pop_ready() {
            self.feed(&held.as_rtp(), out);
        }
    }

    fn feed(&mut self, pkt: &RtpIn<'_>, out: &mut Vec<Output>) {
        // Padding-only packets (bandwidth probes) use up sequence numbers but carry no media.
        if pkt.payload.is_empty() {
            return;
        }
        self.asm.packet(pkt, &mut self.steps);
        for step in self.steps.drain(..) {
            self.gate.step(step, out);
        }
    }
}

#[cfg(test)]
mod test_util {
    use super::{Depacketizer, Frame, Output, RtpIn};

    /// An owned packet for building test streams.
    #[derive(Clone, Debug)]
    pub struct Pkt {
        pub seq: u16,
        pub ts: u32,
        pub marker: bool,
        pub payload: Vec<u8>,
    }

    pub fn pkt(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> Pkt {
        Pkt {
            seq,
            ts,
            marker,
            payload,
        }
    }

    pub fn run(d: &mut impl Depacketizer, pkts: &[Pkt]) -> Vec<Output> {
        pkts.iter()
            .flat_map(|p| {
                d.push(&RtpIn {
                    seq: p.seq,
                    timestamp: p.ts,
                    marker: p.marker,
                    payload: &p.payload,
                })
            })
            .collect()
    }

    pub fn frames(out: &[Output]) -> Vec<&Frame> {
        out.iter()
            .filter_map(|o| match o {
                Output::Frame(f) => Some(f),
                Output::NeedKeyframe => None,
            })
            .collect()
    }

    /// Tiny xorshift so the fuzz-ish tests need no extra dependency.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        pub fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// Feeds `count` random packets (mostly in order, sometimes jumping) and checks nothing panics.
    pub fn fuzz(d: &mut impl Depacketizer, seed: u64, count: usize, first_bytes: &[u8]) {
        let mut rng = Rng(seed);
        let mut seq: u16 = rng.next() as u16;
        let mut ts: u32 = rng.next() as u32;
        for _ in 0..count {
            seq = match rng.below(20) {
                0 => rng.next() as u16,
                1 => seq.wrapping_sub(rng.below(40) as u16),
                2 => seq.wrapping_add(rng.below(40) as u16),
                _ => seq.wrapping_add(1),
            };
            if rng.below(4) == 0 {
                ts = ts.wrapping_add(rng.below(6000) as u32);
            }
            let mut payload = rng.bytes(48);
            if let Some(b) = payload.first_mut()
                && !first_bytes.is_empty()
                && rng.below(2) == 0
            {
                *b = first_bytes[rng.below(first_bytes.len() as u64) as usize];
            }
            d.push(&RtpIn {
                seq,
                timestamp: ts,
                marker: rng.below(3) == 0,
                payload: &payload,
            });
        }
    }
}
