//! Rewriting of sequence numbers and timestamps so a viewer sees one continuous RTP stream
//! while the SFU switches the source underneath (simulcast layer switch, publisher reconnect).
//!
//! Sans-IO: time comes in as arguments. Sequence numbers use str0m's extended (64-bit) form so
//! wrap-around never needs special cases here.

use std::time::{Duration, Instant, SystemTime};

/// An RTCP sender report mapping of one source: this NTP wall-clock instant equals this RTP time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrMapping {
    /// Wall clock of the report.
    pub ntp: SystemTime,
    /// RTP timestamp at that instant.
    pub rtp: u32,
}

impl SrMapping {
    /// The wall-clock instant of RTP time `ts`, extrapolated from the report.
    pub fn wallclock_of(&self, ts: u32, clock_rate: u32) -> SystemTime {
        let delta = ts.wrapping_sub(self.rtp) as i32 as i64;
        let nanos = delta * 1_000_000_000 / clock_rate as i64;
        if nanos >= 0 {
            self.ntp + Duration::from_nanos(nanos as u64)
        } else {
            self.ntp - Duration::from_nanos((-nanos) as u64)
        }
    }

    /// The RTP time of wall-clock instant `at` on this source's clock.
    fn rtp_of(&self, at: SystemTime, clock_rate: u32) -> u32 {
        let nanos: i128 = match at.duration_since(self.ntp) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let ticks = nanos * clock_rate as i128 / 1_000_000_000;
        self.rtp.wrapping_add(ticks as i64 as u32)
    }
}

/// What the munger knows about the packet it is asked to rewrite.
#[derive(Debug, Clone, Copy)]
pub struct InPacket {
    /// Extended sequence number on the source.
    pub seq: u64,
    /// RTP timestamp on the source.
    pub ts: u32,
    /// When the SFU received it.
    pub at: Instant,
    /// Latest sender report of the source, if any.
    pub sr: Option<SrMapping>,
}

/// Sequence/timestamp rewriter for one outgoing stream.
#[derive(Debug)]
pub struct Munger {
    clock_rate: u32,
    /// `out = in + seq_off` (wrapping).
    seq_off: u64,
    /// `out = in + ts_off` (wrapping).
    ts_off: u32,
    /// First source sequence number of the current source; older packets are from before the
    /// switch and are dropped so output stays monotonic.
    source_start: u64,
    last: Option<LastOut>,
    /// Sender report of the current source, to map a new source's time onto ours.
    current_sr: Option<SrMapping>,
    first_seq: u16,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u64,
    ts: u32,
    at: Instant,
}

/// A rewritten sequence number and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutPacket {
    /// Extended outgoing sequence number.
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub ts: u32,
}

impl Munger {
    /// A munger whose first output sequence number will be `first_seq` (keep it random, and below
    /// 2^16 so the receiver's SRTP rollover counter starts at 0).
    pub fn new(clock_rate: u32, first_seq: u16) -> Self {
        Self {
            clock_rate,
            seq_off: 0,
            ts_off: 0,
            source_start: 0,
            last: None,
            current_sr: None,
            first_seq,
        }
    }

    /// Whether any packet has been written.
    pub fn started(&self) -> bool {
        self.last.is_some()
    }

    /// Starts forwarding a new source (or the first one) at `p`, which must be where a decoder
    /// can begin (a keyframe for video).
    ///
    /// Output sequence numbers continue at last + 1. The output timestamp is placed where the new
    /// source's media belongs in time: through both sources' sender reports when available (so a
    /// layer switch neither jumps nor stalls), otherwise by the wall-clock time elapsed since the
    /// last packet; it always moves forward.
    pub fn switch_source(&mut self, p: &InPacket) {
        let Some(last) = self.last else {
            self.seq_off = (self.first_seq as u64).wrapping_sub(p.seq);
            self.ts_off = 0;
            self.source_start = p.seq;
            self.current_sr = p.sr;
            return;
        };
        self.seq_off = (last.seq + 1).wrapping_sub(p.seq);
        self.source_start = p.seq;

        let by_sr = match (self.current_sr, p.sr) {
            (Some(old), Some(new)) => {
                let wall = new.wallclock_of(p.ts, self.clock_rate);
                let old_src_ts = old.rtp_of(wall, self.clock_rate);
                Some(old_src_ts.wrapping_add(self.ts_off))
            }
            _ => None,
        };
        let by_clock = {
            let elapsed = p.at.saturating_duration_since(last.at);
            let ticks = elapsed.as_nanos() * self.clock_rate as u128 / 1_000_000_000;
            last.ts.wrapping_add(ticks as u32)
        };
        // A report-based placement that disagrees wildly with elapsed time is wrong (stale or
        // unrelated reports): trust the wall clock then.
        let max_skew = (self.clock_rate / 2) as i32;
        let mut out_ts = match by_sr {
            Some(t) if (t.wrapping_sub(by_clock) as i32).abs() <= max_skew => t,
            _ => by_clock,
        };
        if out_ts.wrapping_sub(last.ts) as i32 <= 0 {
            out_ts = last.ts.wrapping_add(1);
        }
        self.ts_off = out_ts.wrapping_sub(p.ts);
        self.current_sr = p.sr;
    }

    /// Rewrites a packet of the current source; `None` for packets from before the last switch.
    pub fn rewrite(&mut self, p: &InPacket) -> Option<OutPacket> {
        if p.seq < self.source_start {
            return None;
        }
        if p.sr.is_some() {
            self.current_sr = p.sr;
        }
        let out = OutPacket {
            seq: p.seq.wrapping_add(self.seq_off),
            ts: p.ts.wrapping_add(self.ts_off),
        };
        let newer = self.last.is_none_or(|l| out.seq > l.seq);
        if newer {
            self.last = Some(LastOut {
                seq: out.seq,
                ts: out.ts,
                at: p.at,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u64, ts: u32, at: Instant) -> InPacket {
        InPacket {
            seq,
            ts,
            at,
            sr: None,
        }
    }

    #[test]
    fn continuous_across_switch_by_clock() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000, 1000);
        let a = pkt(50_000, 3_000_000, t0);
        m.switch_source(&a);
        assert_eq!(
            m.rewrite(&a),
            Some(OutPacket {
                seq: 1000,
                ts: 3_000_000
            })
        );
        let a2 = pkt(50_001, 3_003_000, t0 + Duration::from_millis(33));
        assert_eq!(m.rewrite(&a2).map(|o| o.seq), Some(1001));

        // New source with unrelated numbering, 66 ms later.
        let b = pkt(7, 123, t0 + Duration::from_millis(66));
        m.switch_source(&b);
        let out = m.rewrite(&b).expect("forwarded");
        assert_eq!(out.seq, 1002);
        // 33 ms after the last output packet at 90 kHz = 2970 ticks.
        assert_eq!(out.ts, 3_003_000 + 2970);
        // A late packet of the new source from before the switch point is dropped.
        assert_eq!(m.rewrite(&pkt(6, 100, t0)), None);
        // Reordered packets after the switch keep their relative order.
        let b3 = m.rewrite(&pkt(9, 123 + 3000, t0)).expect("ok");
        let b2 = m.rewrite(&pkt(8, 123, t0)).expect("ok");
        assert_eq!((b2.seq, b3.seq), (1003, 1004));
    }

    #[test]
    fn switch_uses_sender_reports() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sr_a = SrMapping {
            ntp: wall,
            rtp: 10_000,
        };
        let sr_b = SrMapping {
            ntp: wall,
            rtp: 500_000,
        };
        let mut m = Munger::new(90_000, 0);
        let a = InPacket {
            seq: 1,
            ts: 10_000 + 9000,
            at: t0,
            sr: Some(sr_a),
        };
        m.switch_source(&a);
        m.rewrite(&a);
        // Layer B's packet captured 200 ms after the SR instant, arriving just 10 ms later on the
        // wire: the report places it at +200 ms of media time, not +10 ms.
        let b = InPacket {
            seq: 900,
            ts: 500_000 + 18_000,
            at: t0 + Duration::from_millis(10),
            sr: Some(sr_b),
        };
        m.switch_source(&b);
        let out = m.rewrite(&b).expect("ok");
        assert_eq!(out.ts, 10_000 + 18_000);
        assert_eq!(out.seq, 1);
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut m = Munger::new(90_000, 0);
        let a = InPacket {
            seq: 1,
            ts: 90_000,
            at: t0,
            sr: Some(SrMapping { ntp: wall, rtp: 0 }),
        };
        m.switch_source(&a);
        m.rewrite(&a);
        // B's report maps its packet to before A's last output (skew inside the tolerance).
        let b = InPacket {
            seq: 5,
            ts: 0,
            at: t0,
            sr: Some(SrMapping {
                ntp: wall + Duration::from_millis(900),
                rtp: 0,
            }),
        };
        m.switch_source(&b);
        let out = m.rewrite(&b).expect("ok");
        assert!(out.ts.wrapping_sub(90_000) as i32 > 0);
    }

    #[test]
    fn wraps_timestamps() {
        let t0 = Instant::now();
        let mut m = Munger::new(48_000, 65_535);
        let a = pkt(10, u32::MAX - 10, t0);
        m.switch_source(&a);
        assert_eq!(m.rewrite(&a).map(|o| o.seq), Some(65_535));
        let a2 = m.rewrite(&pkt(11, 949, t0)).expect("ok");
        assert_eq!(a2.seq, 65_536);
        assert_eq!(a2.ts, 949);
    }
}
