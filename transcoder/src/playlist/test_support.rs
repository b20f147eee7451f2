//! Drives a timeline with synthetic 30 fps video (90 kHz, a keyframe every 30 frames) and a
//! wall clock derived from the timestamps, so tests need no sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::timeline::{Action, PartRef, RenditionTimeline, SampleInfo, TimelineConfig};

/// Ticks per frame at 30 fps on a 90 kHz clock.
pub(crate) const FRAME: u64 = 3000;

/// 1 s segments, 250 ms parts, a window of 7 (short, so the tests see it slide early).
pub(crate) fn video_config() -> TimelineConfig {
    TimelineConfig {
        window_segments: 7,
        ..TimelineConfig::new(90_000)
    }
}

/// 2023-11-14T22:13:20Z, the wall-clock time of DTS 0.
pub(crate) fn base_wallclock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub(crate) struct Feed {
    pub(crate) timeline: RenditionTimeline,
    pub(crate) keyframe_every: u64,
    pub(crate) last_placement: Option<PartRef>,
    next_frame: u64,
    next_keyframe: u64,
    last_keyframe: u64,
}

impl Feed {
    pub(crate) fn new(cfg: TimelineConfig) -> Self {
        Feed {
            timeline: RenditionTimeline::new(cfg).expect("valid config"),
            keyframe_every: 30,
            last_placement: None,
            next_frame: 0,
            next_keyframe: 0,
            last_keyframe: 0,
        }
    }

    pub(crate) fn wallclock(&self, dts: u64) -> SystemTime {
        base_wallclock() + Duration::from_micros(dts * 1_000_000 / 90_000)
    }

    /// Makes the next keyframe come `keyframe_every` frames after the last one.
    pub(crate) fn align_keyframes_from_now(&mut self) {
        self.next_keyframe = self.last_keyframe + self.keyframe_every;
    }

    /// Pushes `n` frames of 1000 bytes and returns every action, in order.
    pub(crate) fn frames(&mut self, n: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..n {
            let i = self.next_frame;
            let keyframe = i == self.next_keyframe;
            if keyframe {
                self.last_keyframe = i;
                self.next_keyframe = i + self.keyframe_every;
            }
            let dts = i * FRAME;
            let sample = SampleInfo {
                dts,
                keyframe,
                size: 1000,
            };
            let pushed = self
                .timeline
                .push(sample, self.wallclock(dts))
                .expect("monotonic frames");
            actions.extend(pushed.actions);
            self.last_placement = pushed.placement;
            self.next_frame += 1;
        }
        actions
    }

    /// Pushes frames up to and including the first one that closes a part or a segment.
    pub(crate) fn until_part_closes(&mut self) -> Vec<Action> {
        loop {
            let actions = self.frames(1);
            if actions.iter().any(|a| matches!(a, Action::ClosePart(_))) {
                return actions;
            }
        }
    }
}
