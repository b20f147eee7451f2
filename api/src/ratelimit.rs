//! Per-key token buckets (login and register per client address).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::RateLimitConfig;

/// Token buckets keyed by a string (e.g. the client IP).
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter with the given burst and refill rate.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.config.per_minute.max(1)) / 60.0
    }

    /// Takes one token for `key`; `Err(wait)` tells how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(self.config.burst.max(1));
        let rate = self.rate_per_sec();
        let mut buckets = self.buckets.lock();
        if buckets.len() > 100_000 {
            // Drop buckets that are full again; they carry no information.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited() {
        let l = RateLimiter::new(RateLimitConfig {
            burst: 3,
            per_minute: 60,
        });
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").expect_err("limited");
        assert!(wait <= Duration::from_secs(1));
        assert!(l.check("b").is_ok());
    }
}
