//! Throttling of keyframe requests sent upstream to a publisher.
//!
//! Every viewer join and layer switch wants a keyframe; a room of viewers must not turn into a
//! storm of PLIs (encoders answer each with a large frame). DESIGN §4: at most one request per
//! 500 ms for the lowest layer and per second for the others. Sans-IO.

use std::time::{Duration, Instant};

/// Minimum interval between requests for the lowest layer.
pub const LOW_LAYER_INTERVAL: Duration = Duration::from_millis(500);
/// Minimum interval between requests for the other layers.
pub const OTHER_LAYER_INTERVAL: Duration = Duration::from_secs(1);

/// Remembers when each layer was last asked for a keyframe, and which requests were held back.
///
/// A request inside the interval is not dropped but deferred: a viewer that joins just after
/// another one's keyframe went by still gets its own as soon as the interval allows, instead of
/// waiting for the encoder's next periodic keyframe.
#[derive(Debug, Default)]
pub struct KeyframeThrottle {
    last: Vec<Option<Instant>>,
    deferred: Vec<bool>,
}

fn interval(layer: usize) -> Duration {
    if layer == 0 {
        LOW_LAYER_INTERVAL
    } else {
        OTHER_LAYER_INTERVAL
    }
}

impl KeyframeThrottle {
    /// Whether a request for `layer` (0 = lowest) may go out now; records it if so, and defers
    /// it otherwise.
    pub fn allow(&mut self, now: Instant, layer: usize) -> bool {
        if self.last.len() <= layer {
            self.last.resize(layer + 1, None);
            self.deferred.resize(layer + 1, false);
        }
        match self.last[layer] {
            Some(t) if now.saturating_duration_since(t) < interval(layer) => {
                self.deferred[layer] = true;
                false
            }
            _ => {
                self.last[layer] = Some(now);
                self.deferred[layer] = false;
                true
            }
        }
    }

    /// Deferred requests whose interval has now passed (recorded as sent).
    pub fn due(&mut self, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        for layer in 0..self.deferred.len() {
            if self.deferred[layer] && self.allow(now, layer) {
                out.push(layer);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_per_layer() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!(k.allow(t, 0));
        assert!(k.allow(t, 2));
        assert!(!k.allow(t + Duration::from_millis(499), 0));
        assert!(k.allow(t + Duration::from_millis(500), 0));
        assert!(!k.allow(t + Duration::from_millis(999), 2));
        assert!(k.allow(t + Duration::from_millis(1000), 2));
    }

    #[test]
    fn held_back_requests_go_out_when_the_interval_ends() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!(k.allow(t, 0));
        assert!(!k.allow(t + Duration::from_millis(100), 0));
        assert!(k.due(t + Duration::from_millis(499)).is_empty());
        assert_eq!(k.due(t + Duration::from_millis(500)), vec![0]);
        // Sent once only.
        assert!(k.due(t + Duration::from_millis(2000)).is_empty());
    }
}
