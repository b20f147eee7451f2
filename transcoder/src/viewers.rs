//! HLS viewers by playback session: a player is counted while it keeps polling, and drops out
//! once it has been quiet for [`IDLE`]. Sans-IO: time comes in as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A session with no request for this long has stopped watching. Players poll at least once
/// per target duration (1–2 s here), LL-HLS players several times a second.
pub const IDLE: Duration = Duration::from_secs(10);

/// The query parameter that carries a playback session id.
pub const SESSION_PARAM: &str = "sid";

/// Live playback sessions per channel.
#[derive(Default)]
pub struct PlaybackSessions {
    channels: HashMap<String, HashMap<String, Instant>>,
    reported: HashMap<String, u64>,
}

impl PlaybackSessions {
    /// Records a request of `session` on `channel` at `now`.
    pub fn touch(&mut self, channel: &str, session: &str, now: Instant) {
        match self.channels.get_mut(channel) {
            Some(s) => match s.get_mut(session) {
                Some(t) => *t = now,
                None => {
                    s.insert(session.to_string(), now);
                }
            },
            None => {
                self.channels.insert(
                    channel.to_string(),
                    HashMap::from([(session.to_string(), now)]),
                );
            }
        }
    }

    /// Sessions watching `channel`.
    pub fn count(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(0, |s| s.len() as u64)
    }

    /// Forgets idle sessions and returns every channel whose count changed since the last
    /// sweep, with its new count (0 included, once).
    pub fn sweep(&mut self, now: Instant) -> Vec<(String, u64)> {
        for sessions in self.channels.values_mut() {
            sessions.retain(|_, t| now.saturating_duration_since(*t) < IDLE);
        }
        self.channels.retain(|_, s| !s.is_empty());
        let mut changed = Vec::new();
        for (channel, sessions) in &self.channels {
            let n = sessions.len() as u64;
            if self.reported.get(channel) != Some(&n) {
                changed.push((channel.clone(), n));
            }
        }
        for channel in self.reported.keys() {
            if !self.channels.contains_key(channel) {
                changed.push((channel.clone(), 0));
            }
        }
        for (channel, n) in &changed {
            if *n == 0 {
                self.reported.remove(channel);
            } else {
                self.reported.insert(channel.clone(), *n);
            }
        }
        changed
    }
}

/// A new random session id (128 bits, URL-safe).
pub fn new_session_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_until_they_go_quiet() {
        let t0 = Instant::now();
        let mut s = PlaybackSessions::default();
        s.touch("demo", "a", t0);
        s.touch("demo", "b", t0);
        s.touch("demo", "a", t0 + Duration::from_secs(1));
        s.touch("other", "c", t0);
        let mut changed = s.sweep(t0 + Duration::from_secs(2));
        changed.sort();
        assert_eq!(changed, vec![("demo".into(), 2), ("other".into(), 1)]);
        // Nothing changed: nothing reported.
        assert!(s.sweep(t0 + Duration::from_secs(3)).is_empty());
        // b and c go quiet; a keeps polling.
        s.touch("demo", "a", t0 + Duration::from_secs(9));
        let mut changed = s.sweep(t0 + IDLE + Duration::from_millis(1));
        changed.sort();
        assert_eq!(changed, vec![("demo".into(), 1), ("other".into(), 0)]);
        assert_eq!(s.count("demo"), 1);
        assert_eq!(s.count("other"), 0);
        assert!(s.sweep(t0 + IDLE + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn session_ids_differ() {
        let a = new_session_id();
        assert_ne!(a, new_session_id());
        assert_eq!(a.len(), 22);
    }
}
