//! Audio/video alignment from the publisher's RTCP sender reports. A sender report maps one
//! track's RTP clock to the publisher's wall clock; with one for each track, the first frame of
//! each rendition can be placed on one shared stream clock, so audio and video start in sync
//! however differently their packets travelled. Sans-IO: the reports and times come in.

use std::time::{Duration, Instant, SystemTime};

use onair_sfu::munger::SrMapping;

/// How long the packager waits for sender reports before it aligns by arrival time instead.
pub const SR_WAIT: Duration = Duration::from_secs(3);
/// Stream time of the earliest first frame: room for the other track's first frame to land a
/// little earlier in wall-clock time without a negative timestamp.
const MARGIN: Duration = Duration::from_millis(500);

/// Where each track's first frame goes on the stream clock.
#[derive(Debug)]
pub struct AvSync {
    started: Instant,
    need_audio: bool,
    anchor: Option<SystemTime>,
    given_up: bool,
}

/// The verdict for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wait: drop this frame, the reports needed are not there yet.
    Wait,
    /// Start the track at this many ticks of its clock.
    At(u64),
}

impl AvSync {
    /// Alignment for a stream that began at `started`; `need_audio` when it has an audio track
    /// (video-only streams need no report).
    pub fn new(started: Instant, need_audio: bool) -> Self {
        Self {
            started,
            need_audio,
            anchor: None,
            given_up: false,
        }
    }

    /// Whether alignment fell back to arrival time.
    pub fn by_arrival(&self) -> bool {
        self.given_up
    }

    /// The stream time (ticks at `rate`) for the first frame of a track: its RTP time `ts`, its
    /// source's latest report `sr`, the latest report of the other track `other_sr` (when there
    /// is one), and its arrival `received`.
    pub fn place(
        &mut self,
        ts: u32,
        rate: u32,
        sr: Option<SrMapping>,
        other_sr: Option<SrMapping>,
        received: Instant,
    ) -> Placement {
        let both = sr.is_some() && (other_sr.is_some() || !self.need_audio);
        if !self.given_up && !both && self.anchor.is_none() {
            if received.saturating_duration_since(self.started) < SR_WAIT {
                return Placement::Wait;
            }
            self.given_up = true;
            tracing::info!("no sender reports: aligning audio and video by arrival time");
        }
        if self.given_up {
            let d = received.saturating_duration_since(self.started) + MARGIN;
            return Placement::At(ticks(d, rate));
        }
        let Some(sr) = sr else {
            return Placement::Wait;
        };
        let wall = sr.wallclock_of(ts, rate);
        let anchor = *self.anchor.get_or_insert(wall);
        let d = match wall.duration_since(anchor) {
            Ok(after) => MARGIN + after,
            Err(before) => MARGIN.saturating_sub(before.duration()),
        };
        Placement::At(ticks(d, rate))
    }
}

fn ticks(d: Duration, rate: u32) -> u64 {
    (d.as_micros() as u64).saturating_mul(u64::from(rate)) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sr(ntp_ms: u64, rtp: u32) -> SrMapping {
        SrMapping {
            ntp: SystemTime::UNIX_EPOCH + Duration::from_millis(ntp_ms),
            rtp,
        }
    }

    #[test]
    fn reports_place_both_tracks_on_one_clock() {
        let t0 = Instant::now();
        let mut s = AvSync::new(t0, true);
        let video_sr = sr(10_000, 90_000);
        let audio_sr = sr(10_000, 48_000);
        // Video alone, or without the audio report yet, waits.
        assert_eq!(
            s.place(90_000, 90_000, Some(video_sr), None, t0),
            Placement::Wait
        );
        // Video at wall 10.0 s anchors the clock; audio at wall 10.1 s lands 100 ms later even
        // though it arrived 300 ms later.
        assert_eq!(
            s.place(90_000, 90_000, Some(video_sr), Some(audio_sr), t0),
            Placement::At(45_000)
        );
        assert_eq!(
            s.place(
                52_800,
                48_000,
                Some(audio_sr),
                Some(video_sr),
                t0 + Duration::from_millis(300)
            ),
            Placement::At(28_800)
        );
        // A frame that was captured before the anchor goes earlier, within the margin.
        assert_eq!(
            s.place(43_200, 48_000, Some(audio_sr), Some(video_sr), t0),
            Placement::At(19_200)
        );
        assert!(!s.by_arrival());
    }

    #[test]
    fn without_reports_it_falls_back_to_arrival_time() {
        let t0 = Instant::now();
        let mut s = AvSync::new(t0, true);
        assert_eq!(
            s.place(0, 90_000, None, None, t0 + Duration::from_secs(1)),
            Placement::Wait
        );
        assert_eq!(
            s.place(0, 90_000, None, None, t0 + SR_WAIT),
            Placement::At(ticks(SR_WAIT + MARGIN, 90_000))
        );
        assert!(s.by_arrival());
        assert_eq!(
            s.place(0, 48_000, Some(sr(1, 1)), None, t0 + SR_WAIT),
            Placement::At(ticks(SR_WAIT + MARGIN, 48_000))
        );
    }

    #[test]
    fn a_video_only_stream_needs_one_report() {
        let t0 = Instant::now();
        let mut s = AvSync::new(t0, false);
        assert_eq!(
            s.place(90_000, 90_000, Some(sr(5_000, 90_000)), None, t0),
            Placement::At(45_000)
        );
    }
}
