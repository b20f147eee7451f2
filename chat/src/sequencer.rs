//! In-order delivery of a channel's messages on one node. Messages arrive from this node's own
//! writer, from other nodes over the bus (at-most-once, in any order across nodes) and from
//! history reads; viewers must see them by offset, each once, with no holes. Sans-IO: time
//! comes in as an argument and a hole is reported for the shell to fill from history.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a hole may stay open before it is read from history: long enough for the bus to
/// deliver a message another node committed a moment earlier, short enough to be unnoticed.
pub const GAP_WAIT: Duration = Duration::from_millis(150);
/// A history read that has not answered by then is retried.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(2);
/// History reads that find nothing before a hole is skipped (the messages were pruned).
pub const FILL_ATTEMPTS: u32 = 3;

/// Orders items by offset.
#[derive(Debug)]
pub struct Sequencer<T> {
    next: u64,
    pending: BTreeMap<u64, T>,
    known_top: u64,
    gap_since: Option<Instant>,
    fill_sent: Option<Instant>,
    empty_fills: u32,
}

/// A range of offsets to read from history, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// First missing offset.
    pub from: u64,
    /// Last missing offset.
    pub to: u64,
}

impl<T> Sequencer<T> {
    /// Starts after `top`, the newest offset already in history.
    pub fn new(top: u64) -> Self {
        Self {
            next: top + 1,
            pending: BTreeMap::new(),
            known_top: top,
            gap_since: None,
            fill_sent: None,
            empty_fills: 0,
        }
    }

    /// Newest offset delivered.
    pub fn delivered(&self) -> u64 {
        self.next - 1
    }

    /// Items waiting behind a hole.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes an item; returns every item now deliverable, in order. Duplicates and items
    /// already delivered are dropped.
    pub fn push(&mut self, offset: u64, item: T, now: Instant) -> Vec<(u64, T)> {
        if offset < self.next {
            return Vec::new();
        }
        self.known_top = self.known_top.max(offset);
        self.pending.entry(offset).or_insert(item);
        self.drain(now)
    }

    /// Learns that history holds messages up to `top` (a periodic sync, or a reconnect).
    pub fn observe_top(&mut self, top: u64, now: Instant) {
        if top > self.known_top {
            self.known_top = top;
        }
        self.update_gap(now);
    }

    fn drain(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        while let Some(item) = self.pending.remove(&self.next) {
            out.push((self.next, item));
            self.next += 1;
        }
        if !out.is_empty() {
            self.empty_fills = 0;
        }
        self.update_gap(now);
        out
    }

    fn has_gap(&self) -> bool {
        self.known_top >= self.next
    }

    fn update_gap(&mut self, now: Instant) {
        if self.has_gap() {
            self.gap_since.get_or_insert(now);
        } else {
            self.gap_since = None;
            self.fill_sent = None;
        }
    }

    /// The hole to read from history now, if one has waited [`GAP_WAIT`] and no read is out.
    pub fn poll_hole(&mut self, now: Instant) -> Option<Hole> {
        let since = self.gap_since?;
        if now.duration_since(since) < GAP_WAIT {
            return None;
        }
        if self
            .fill_sent
            .is_some_and(|s| now.duration_since(s) < FILL_TIMEOUT)
        {
            return None;
        }
        self.fill_sent = Some(now);
        let to = match self.pending.keys().next() {
            Some(first) => first - 1,
            None => self.known_top,
        };
        Some(Hole {
            from: self.next,
            to,
        })
    }

    /// A history read answered with `items` (ascending or not). When reads keep finding
    /// nothing where the hole starts, the hole is skipped so the room does not stall.
    pub fn fill(&mut self, items: Vec<(u64, T)>, now: Instant) -> Vec<(u64, T)> {
        self.fill_sent = None;
        let starts_hole = items.iter().any(|(o, _)| *o == self.next);
        for (o, item) in items {
            if o >= self.next {
                self.known_top = self.known_top.max(o);
                self.pending.entry(o).or_insert(item);
            }
        }
        if !starts_hole && self.has_gap() {
            self.empty_fills += 1;
            if self.empty_fills >= FILL_ATTEMPTS {
                let skip_to = self
                    .pending
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(self.known_top + 1);
                tracing::error!(
                    from = self.next,
                    to = skip_to - 1,
                    "chat history has no messages for these offsets; skipping them"
                );
                self.next = skip_to;
                self.empty_fills = 0;
            }
        }
        self.drain(now)
    }

    /// A history read failed; it is retried after [`GAP_WAIT`].
    pub fn fill_failed(&mut self, now: Instant) {
        self.fill_sent = None;
        if self.has_gap() {
            self.gap_since = Some(now);
        }
    }

    /// When [`Self::poll_hole`] may next return something.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.gap_since?;
        Some(match self.fill_sent {
            Some(s) => s + FILL_TIMEOUT,
            None => since + GAP_WAIT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(v: Vec<(u64, &str)>) -> Vec<u64> {
        v.into_iter().map(|(o, _)| o).collect()
    }

    #[test]
    fn in_order_items_flow_through() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(10);
        assert_eq!(offsets(s.push(11, "a", t0)), vec![11]);
        assert_eq!(offsets(s.push(12, "b", t0)), vec![12]);
        assert!(s.push(12, "dup", t0).is_empty());
        assert!(s.push(3, "old", t0).is_empty());
        assert_eq!(s.delivered(), 12);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_late_bus_message_closes_the_hole_without_a_read() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(0);
        assert!(s.push(2, "b", t0).is_empty());
        assert_eq!(s.poll_hole(t0 + Duration::from_millis(100)), None);
        assert_eq!(
            offsets(s.push(1, "a", t0 + Duration::from_millis(120))),
            vec![1, 2]
        );
        assert_eq!(s.poll_hole(t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_hole_is_read_from_history_after_the_wait() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(0);
        s.push(4, "d", t0);
        assert_eq!(s.poll_timeout(), Some(t0 + GAP_WAIT));
        let at = t0 + GAP_WAIT;
        assert_eq!(s.poll_hole(at), Some(Hole { from: 1, to: 3 }));
        // One read at a time.
        assert_eq!(s.poll_hole(at + Duration::from_millis(10)), None);
        let out = s.fill(vec![(2, "b"), (1, "a"), (3, "c")], at);
        assert_eq!(offsets(out), vec![1, 2, 3, 4]);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_sync_reveals_messages_the_bus_lost() {
        let t0 = Instant::now();
        let mut s: Sequencer<&str> = Sequencer::new(5);
        s.observe_top(5, t0);
        assert_eq!(s.poll_timeout(), None);
        s.observe_top(8, t0);
        assert_eq!(s.poll_hole(t0 + GAP_WAIT), Some(Hole { from: 6, to: 8 }));
        let out = s.fill(vec![(6, "f"), (7, "g"), (8, "h")], t0 + GAP_WAIT);
        assert_eq!(offsets(out), vec![6, 7, 8]);
    }

    #[test]
    fn a_lost_read_is_retried_and_a_failed_one_waits() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(0);
        s.push(2, "b", t0);
        assert!(s.poll_hole(t0 + GAP_WAIT).is_some());
        assert_eq!(s.poll_hole(t0 + GAP_WAIT + FILL_TIMEOUT / 2), None);
        assert!(s.poll_hole(t0 + GAP_WAIT + FILL_TIMEOUT).is_some());
        let t1 = t0 + GAP_WAIT + FILL_TIMEOUT;
        s.fill_failed(t1);
        assert_eq!(s.poll_hole(t1), None);
        assert_eq!(s.poll_hole(t1 + GAP_WAIT), Some(Hole { from: 1, to: 1 }));
    }

    #[test]
    fn a_hole_history_cannot_fill_is_skipped_after_three_reads() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(0);
        s.push(3, "c", t0);
        let mut now = t0;
        for _ in 0..FILL_ATTEMPTS - 1 {
            now += GAP_WAIT;
            assert!(s.poll_hole(now).is_some());
            assert!(s.fill(vec![], now).is_empty());
        }
        now += GAP_WAIT;
        assert!(s.poll_hole(now).is_some());
        assert_eq!(offsets(s.fill(vec![], now)), vec![3]);
        assert_eq!(s.delivered(), 3);
    }
}
