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

/// Remembers when each layer was last asked for a keyframe.
#[derive(Debug, Default)]
pub struct KeyframeThrottle {
    last: Vec<Option<Instant>>,
}

impl KeyframeThrottle {
    /// Whether a request for `layer` (0 = lowest) may go out now; records it if so.
    pub fn allow(&mut self, now: Instant, layer: usize) -> bool {
        if self.last.len() <= layer {
            self.last.resize(layer + 1, None);
        }
        let interval = if layer == 0 {
            LOW_LAYER_INTERVAL
        } else {
            OTHER_LAYER_INTERVAL
        };
        match self.last[layer] {
            Some(t) if now.saturating_duration_since(t) < interval => false,
            _ => {
                self.last[layer] = Some(now);
                true
            }
        }
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
}
