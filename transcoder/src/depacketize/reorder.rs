//! Puts RTP packets back in sequence order, within a small window.

use std::collections::BTreeMap;

use super::RtpIn;

/// How long packets wait behind a missing one before the gap is declared lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderWindow {
    /// Most packets held behind a gap; one more and the gap is given up (0: never wait).
    pub max_packets: usize,
    /// Most RTP ticks between the oldest held packet and the newest arrival before giving up.
    pub max_delay: u32,
}

impl ReorderWindow {
    /// 16 packets or 50 ms at 90 kHz, the default for video.
    pub const VIDEO: Self = Self::new(16, 50, 90_000);
    /// 16 packets or 50 ms at 48 kHz, the default for Opus.
    pub const AUDIO: Self = Self::new(16, 50, 48_000);

    /// At most `max_packets` packets or `millis` ms of RTP time at `clock_rate` Hz.
    pub const fn new(max_packets: usize, millis: u32, clock_rate: u32) -> Self {
        let ticks = millis as u64 * clock_rate as u64 / 1000;
        Self {
            max_packets,
            max_delay: if ticks > u32::MAX as u64 {
                u32::MAX
            } else {
                ticks as u32
            },
        }
    }
}

/// A packet copied out of the caller's buffer while it waits for its predecessors.
pub(super) struct Held {
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: Vec<u8>,
}

impl Held {
    pub(super) fn as_rtp(&self) -> RtpIn<'_> {
        RtpIn {
            seq: self.seq,
            timestamp: self.timestamp,
            marker: self.marker,
            payload: &self.payload,
        }
    }
}

/// What to do with an arriving packet.
pub(super) enum Admit {
    /// It is the next one expected: process it now.
    Now,
    /// The sender renumbered its packets: whatever was in flight is lost, then process this one.
    Resync,
    /// It is ahead of a gap: keep it under this extended sequence number.
    Hold(i64),
    /// Duplicate, or too late to be useful.
    Drop,
}

pub(super) struct Reorder {
    window: ReorderWindow,
    /// Extended (wrap-free) sequence number expected next; `None` before the first packet.
    next: Option<i64>,
    held: BTreeMap<i64, Held>,
    /// Consecutive late packets: many in a row mean the sequence restarted, not reordering.
    late_run: usize,
}

/// A sender restart must not be mistaken for a burst of stale duplicates, nor the reverse.
const MIN_RESYNC_RUN: usize = 8;

impl Reorder {
    pub(super) fn new(window: ReorderWindow) -> Self {
        Self {
            window,
            next: None,
            held: BTreeMap::new(),
            late_run: 0,
        }
    }

    pub(super) fn admit(&mut self, seq: u16) -> Admit {
        let Some(next) = self.next else {
            self.next = Some(i64::from(seq) + 1);
            return Admit::Now;
        };
        // The nearest extended number whose low 16 bits are `seq`: this is what handles wrap.
        let delta = i64::from(seq.wrapping_sub(next as u16) as i16);
        let ext = next + delta;
        if delta == 0 {
            self.late_run = 0;
            self.next = Some(next + 1);
            Admit::Now
        } else if delta < 0 {
            self.late_run += 1;
            if self.late_run > self.window.max_packets.max(MIN_RESYNC_RUN) {
                self.late_run = 0;
                self.held.clear();
                self.next = Some(ext + 1);
                Admit::Resync
            } else {
                Admit::Drop
            }
        } else {
            self.late_run = 0;
            if self.held.contains_key(&ext) {
                Admit::Drop
            } else {
                Admit::Hold(ext)
            }
        }
    }

    pub(super) fn hold(&mut self, ext: i64, pkt: &RtpIn<'_>) {
        self.held.insert(
            ext,
            Held {
                seq: pkt.seq,
                timestamp: pkt.timestamp,
                marker: pkt.marker,
                payload: pkt.payload.to_vec(),
            },
        );
    }

    /// True if the wait for the current gap has exceeded the window, `newest_ts` being the
    /// timestamp of the latest arrival (RTP time stands in for a clock).
    pub(super) fn should_give_up(&self, newest_ts: u32) -> bool {
        let Some((_, oldest)) = self.held.first_key_value() else {
            return false;
        };
        let waited = i64::from(newest_ts.wrapping_sub(oldest.timestamp) as i32);
        self.held.len() > self.window.max_packets || waited > i64::from(self.window.max_delay)
    }

    /// Declares the current gap lost and returns how many packets it spanned.
    pub(super) fn skip_gap(&mut self) -> i64 {
        match (self.next, self.held.keys().next()) {
            (Some(next), Some(&first)) => {
                self.next = Some(first);
                first - next
            }
            _ => 0,
        }
    }

    /// The next in-order held packet, if it has arrived.
    pub(super) fn pop_ready(&mut self) -> Option<Held> {
        let next = self.next?;
        let entry = self.held.first_entry()?;
        if *entry.key() != next {
            return None;
        }
        self.next = Some(next + 1);
        Some(entry.remove())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(window: ReorderWindow, seqs: &[u16]) -> (Vec<u16>, usize) {
        let mut r = Reorder::new(window);
        let mut out = Vec::new();
        let mut losses = 0;
        for &seq in seqs {
            let pkt = RtpIn {
                seq,
                timestamp: 0,
                marker: false,
                payload: &[1],
            };
            match r.admit(seq) {
                Admit::Now => out.push(seq),
                Admit::Resync => {
                    losses += 1;
                    out.push(seq);
                }
                Admit::Hold(ext) => {
                    r.hold(ext, &pkt);
                    while r.should_give_up(0) {
                        r.skip_gap();
                        losses += 1;
                        while let Some(h) = r.pop_ready() {
                            out.push(h.seq);
                        }
                    }
                    continue;
                }
                Admit::Drop => {}
            }
            while let Some(h) = r.pop_ready() {
                out.push(h.seq);
            }
        }
        (out, losses)
    }

    #[test]
    fn reorders_across_wrap_and_drops_duplicates() {
        let (out, losses) = order(ReorderWindow::VIDEO, &[65534, 0, 65535, 65535, 1, 0, 2]);
        assert_eq!(out, vec![65534, 65535, 0, 1, 2]);
        assert_eq!(losses, 0);
    }

    #[test]
    fn gives_up_when_window_is_full() {
        let w = ReorderWindow {
            max_packets: 2,
            max_delay: u32::MAX,
        };
        let (out, losses) = order(w, &[10, 12, 13, 14, 11, 15]);
        // 11 is declared lost when 14 arrives, so its late arrival is dropped.
        assert_eq!(out, vec![10, 12, 13, 14, 15]);
        assert_eq!(losses, 1);
    }

    #[test]
    fn resyncs_after_sequence_restart() {
        let mut seqs = vec![30000, 30001];
        seqs.extend(100..120);
        let (out, losses) = order(ReorderWindow::VIDEO, &seqs);
        assert_eq!(losses, 1);
        assert_eq!(out[..2], [30000, 30001]);
        assert_eq!(out.last(), Some(&119));
    }
}
