//! Per-viewer simulcast layer choice from the bandwidth estimate, with hysteresis.
//!
//! Sans-IO: the caller passes the current time, the viewer's estimate and the publisher's
//! measured per-layer bitrates. Down-switches happen at once (a congested viewer must stop
//! drowning); up-switches need the estimate to stay comfortably above the next layer's rate for a
//! while, and go one layer at a time, so a noisy estimate does not make the picture flap.

use std::time::{Duration, Instant};

/// How long the estimate must hold above the next layer before switching up.
pub const UP_HOLD: Duration = Duration::from_secs(2);
/// Headroom the estimate needs over a layer's bitrate to go up to it.
pub const UP_HEADROOM: f64 = 1.15;
/// A layer is kept while it uses at most this share of the estimate... above it we go down.
pub const DOWN_THRESHOLD: f64 = 1.0;

/// Chooses one of the publisher's layers for one viewer.
#[derive(Debug)]
pub struct LayerSelector {
    target: Option<usize>,
    up_since: Option<Instant>,
}

impl Default for LayerSelector {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerSelector {
    /// A selector with no choice made yet.
    pub fn new() -> Self {
        Self {
            target: None,
            up_since: None,
        }
    }

    /// The current choice.
    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// Re-evaluates the choice. `rates[i]` is layer `i`'s measured bitrate in bit/s, layers
    /// ordered from lowest to highest quality; 0 means inactive (not sending). Returns the layer
    /// to forward, or `None` when no layer is active.
    pub fn update(&mut self, now: Instant, estimate_bps: u64, rates: &[u64]) -> Option<usize> {
        let active: Vec<usize> = (0..rates.len()).filter(|&i| rates[i] > 0).collect();
        let Some(&lowest) = active.first() else {
            self.target = None;
            self.up_since = None;
            return None;
        };
        let estimate = estimate_bps as f64;
        // Best layer that fits the estimate now (the lowest active one if none fits).
        let fits = active
            .iter()
            .copied()
            .filter(|&i| rates[i] as f64 <= estimate * DOWN_THRESHOLD)
            .max()
            .unwrap_or(lowest);

        let current = match self.target {
            Some(c) if rates.get(c).is_some_and(|&r| r > 0) => c,
            // First decision, or our layer went inactive: take what fits now.
            _ => {
                self.target = Some(fits);
                self.up_since = None;
                return self.target;
            }
        };

        if fits < current {
            self.target = Some(fits);
            self.up_since = None;
        } else if let Some(&next) = active.iter().find(|&&i| i > current) {
            if estimate >= rates[next] as f64 * UP_HEADROOM {
                let since = *self.up_since.get_or_insert(now);
                if now.duration_since(since) >= UP_HOLD {
                    self.target = Some(next);
                    self.up_since = None;
                }
            } else {
                self.up_since = None;
            }
        } else {
            self.up_since = None;
        }
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];

    #[test]
    fn starts_at_what_fits() {
        let t = Instant::now();
        let mut s = LayerSelector::new();
        assert_eq!(s.update(t, 2_000_000, &RATES), Some(2));
        let mut s = LayerSelector::new();
        assert_eq!(s.update(t, 600_000, &RATES), Some(1));
        let mut s = LayerSelector::new();
        assert_eq!(s.update(t, 10_000, &RATES), Some(0));
    }

    #[test]
    fn down_at_once_up_after_hold() {
        let t = Instant::now();
        let mut s = LayerSelector::new();
        assert_eq!(s.update(t, 2_000_000, &RATES), Some(2));
        // Congestion: straight down to what fits.
        assert_eq!(
            s.update(t + Duration::from_millis(100), 200_000, &RATES),
            Some(0)
        );
        // Recovery: estimate enough for the top, but we climb one layer per hold period.
        let mut now = t + Duration::from_millis(200);
        assert_eq!(s.update(now, 2_000_000, &RATES), Some(0));
        now += UP_HOLD - Duration::from_millis(1);
        assert_eq!(s.update(now, 2_000_000, &RATES), Some(0));
        now += Duration::from_millis(1);
        assert_eq!(s.update(now, 2_000_000, &RATES), Some(1));
        now += Duration::from_millis(10);
        assert_eq!(s.update(now, 2_000_000, &RATES), Some(1));
        now += UP_HOLD;
        assert_eq!(s.update(now, 2_000_000, &RATES), Some(2));
    }

    #[test]
    fn hysteresis_resets_when_estimate_dips() {
        let t = Instant::now();
        let mut s = LayerSelector::new();
        assert_eq!(s.update(t, 160_000, &RATES), Some(0));
        s.update(t + Duration::from_secs(1), 600_000, &RATES);
        // Dips below the headroom for the next layer: the hold restarts.
        s.update(t + Duration::from_millis(1500), 520_000, &RATES);
        assert_eq!(
            s.update(t + Duration::from_millis(3100), 600_000, &RATES),
            Some(0)
        );
        assert_eq!(
            s.update(t + Duration::from_millis(5100), 600_000, &RATES),
            Some(1)
        );
    }

    #[test]
    fn skips_inactive_layers() {
        let t = Instant::now();
        let mut s = LayerSelector::new();
        assert_eq!(s.update(t, 2_000_000, &[150_000, 0, 1_500_000]), Some(2));
        assert_eq!(s.update(t, 2_000_000, &[150_000, 0, 0]), Some(0));
        assert_eq!(s.update(t, 2_000_000, &[0, 0, 0]), None);
    }
}
