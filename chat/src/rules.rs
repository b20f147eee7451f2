//! What a message must be and how often a user may post (Twitch's limits, configurable).
//! Sans-IO: time comes in as an argument.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::protocol::{Notice, NoticeCode};

/// Chat limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest message, in characters.
    pub max_chars: usize,
    /// Messages per window for ordinary users.
    pub user_messages: usize,
    /// Messages per window for the broadcaster.
    pub broadcaster_messages: usize,
    /// The rate-limit window.
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_chars: 500,
            user_messages: 20,
            broadcaster_messages: 100,
            window: Duration::from_secs(30),
        }
    }
}

/// Longest slow-mode wait a channel may set (Twitch's maximum).
pub const MAX_SLOW_MODE_SECS: u32 = 120;

/// Trims `raw` and checks it is 1..=`max_chars` characters with no control characters.
pub fn clean_text(raw: &str, max_chars: usize) -> Result<String, Notice> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Notice::new(NoticeCode::Empty, "the message is empty"));
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Notice::new(
            NoticeCode::TooLong,
            format!("messages are limited to {max_chars} characters (this one has {chars})"),
        ));
    }
    // Control characters (including newlines and bidi overrides) would let one message
    // spoof others on screen.
    if text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(Notice::new(
            NoticeCode::InvalidText,
            "messages cannot contain control characters or line breaks",
        ));
    }
    Ok(text.to_string())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Per-user rate limit (sliding window) and slow mode of one room.
#[derive(Debug, Default)]
pub struct Throttle {
    sent: HashMap<String, VecDeque<Instant>>,
}

impl Throttle {
    /// Checks whether `user` may post now and, if so, counts the message.
    /// The broadcaster gets the higher limit and is exempt from slow mode.
    pub fn admit(
        &mut self,
        limits: &Limits,
        user: &str,
        broadcaster: bool,
        slow_mode_secs: u32,
        now: Instant,
    ) -> Result<(), Notice> {
        let times = self.sent.entry(user.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.window)
        {
            times.pop_front();
        }
        if !broadcaster
            && slow_mode_secs > 0
            && let Some(last) = times.back()
        {
            let wait = Duration::from_secs(u64::from(slow_mode_secs));
            let since = now.duration_since(*last);
            if since < wait {
                let left = (wait - since).as_secs_f64().ceil() as u64;
                return Err(Notice::new(
                    NoticeCode::SlowMode,
                    format!("slow mode is on: you can send again in {left} s"),
                )
                .retry_after(left));
            }
        }
        let max = if broadcaster {
            limits.broadcaster_messages
        } else {
            limits.user_messages
        };
        if times.len() >= max {
            let oldest = times.front().copied().unwrap_or(now);
            let left = limits
                .window
                .saturating_sub(now.duration_since(oldest))
                .as_secs_f64()
                .ceil() as u64;
            return Err(Notice::new(
                NoticeCode::RateLimited,
                format!(
                    "you are sending messages too quickly ({max} per {} s); try again in {left} s",
                    limits.window.as_secs()
                ),
            )
            .retry_after(left.max(1)));
        }
        times.push_back(now);
        Ok(())
    }

    /// Forgets users with nothing in the window (bounded memory in busy rooms).
    pub fn prune(&mut self, limits: &Limits, slow_mode_secs: u32, now: Instant) {
        let keep = limits
            .window
            .max(Duration::from_secs(u64::from(slow_mode_secs)));
        self.sent.retain(|_, t| {
            t.back()
                .is_some_and(|last| now.duration_since(*last) < keep)
        });
    }

    /// Users currently tracked.
    pub fn tracked(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(clean_text("  hi  ", 500).unwrap(), "hi");
        assert_eq!(clean_text("   ", 500).unwrap_err().code, NoticeCode::Empty);
        assert_eq!(clean_text("", 500).unwrap_err().code, NoticeCode::Empty);
        assert_eq!(
            clean_text(&"é".repeat(500), 500).unwrap().chars().count(),
            500
        );
        assert_eq!(
            clean_text(&"é".repeat(501), 500).unwrap_err().code,
            NoticeCode::TooLong
        );
        for bad in ["a\nb", "a\u{0}b", "a\u{7}", "x\u{202E}y"] {
            assert_eq!(
                clean_text(bad, 500).unwrap_err().code,
                NoticeCode::InvalidText,
                "{bad:?}"
            );
        }
        assert!(clean_text("emoji 🎉 ok", 500).is_ok());
    }

    #[test]
    fn twenty_per_thirty_seconds_then_released() {
        let limits = Limits::default();
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..20 {
            t.admit(&limits, "u", false, 0, t0 + Duration::from_millis(i * 10))
                .unwrap();
        }
        let n = t
            .admit(&limits, "u", false, 0, t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(n.code, NoticeCode::RateLimited);
        assert_eq!(n.retry_after, Some(29));
        // Another user is not affected.
        t.admit(&limits, "v", false, 0, t0 + Duration::from_secs(1))
            .unwrap();
        // Once the first message leaves the window, one more fits.
        t.admit(&limits, "u", false, 0, t0 + Duration::from_secs(30))
            .unwrap();
        assert!(
            t.admit(&limits, "u", false, 0, t0 + Duration::from_secs(30))
                .is_err()
        );
    }

    #[test]
    fn broadcaster_gets_one_hundred_and_no_slow_mode() {
        let limits = Limits::default();
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            t.admit(&limits, "owner", true, 30, t0).unwrap();
        }
        assert_eq!(
            t.admit(&limits, "owner", true, 30, t0).unwrap_err().code,
            NoticeCode::RateLimited
        );
    }

    #[test]
    fn slow_mode_spaces_messages() {
        let limits = Limits::default();
        let mut t = Throttle::default();
        let t0 = Instant::now();
        t.admit(&limits, "u", false, 10, t0).unwrap();
        let n = t
            .admit(&limits, "u", false, 10, t0 + Duration::from_millis(2500))
            .unwrap_err();
        assert_eq!(n.code, NoticeCode::SlowMode);
        assert_eq!(n.retry_after, Some(8));
        t.admit(&limits, "u", false, 10, t0 + Duration::from_secs(10))
            .unwrap();
    }

    #[test]
    fn prune_forgets_idle_users() {
        let limits = Limits::default();
        let mut t = Throttle::default();
        let t0 = Instant::now();
        t.admit(&limits, "u", false, 0, t0).unwrap();
        t.prune(&limits, 0, t0 + Duration::from_secs(29));
        assert_eq!(t.tracked(), 1);
        t.prune(&limits, 0, t0 + Duration::from_secs(31));
        assert_eq!(t.tracked(), 0);
    }
}
