//! [`RenditionTimeline`]: decides where parts and segments of one rendition end, numbers them,
//! and keeps the live window. Pure bookkeeping: durations, counts, flags and payload sizes; the
//! caller keeps the bytes.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::naming::MediaUri;

/// Settings of one rendition's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineConfig {
    /// Ticks per second of the sample timestamps (90 000 for video, 48 000 for Opus).
    pub timescale: u32,
    /// A segment ends at the first keyframe at or after this duration. A source rendition with a
    /// longer keyframe interval gets longer segments.
    pub segment_target: Duration,
    /// A part ends at the first sample at or after this duration (typically 200–333 ms).
    pub part_target: Duration,
    /// Complete segments listed in the live playlist.
    pub window_segments: usize,
    /// Complete segments, counted from the newest, whose `EXT-X-PART` tags stay listed.
    pub part_window_segments: usize,
    /// Segments kept downloadable after they leave the window, before [`Action::Evict`].
    pub eviction_delay_segments: usize,
    /// Lowest `EXT-X-TARGETDURATION` to advertise, in whole seconds. Set it to the expected
    /// keyframe interval of a source rendition so the target never has to grow mid-stream.
    pub min_target_duration_secs: u64,
    /// Keep every segment (no eviction) so the ended stream can be served as VOD.
    pub keep_history: bool,
    /// Media sequence number of the first segment.
    pub first_msn: u64,
}

impl TimelineConfig {
    /// Defaults for a rendition with the given timescale: 1 s segments, 250 ms parts, a window
    /// of 24 segments with parts on the last 3, eviction 3 segments after leaving the window.
    ///
    /// The window is twice `CAN-SKIP-UNTIL` (six target durations) for 2 s targets, so a
    /// player's delta update (`_HLS_skip=YES`) leaves out half of it; with a window shorter
    /// than `CAN-SKIP-UNTIL` a delta update would skip nothing.
    pub fn new(timescale: u32) -> Self {
        TimelineConfig {
            timescale,
            segment_target: Duration::from_secs(1),
            part_target: Duration::from_millis(250),
            window_segments: 24,
            part_window_segments: 3,
            eviction_delay_segments: 3,
            min_target_duration_secs: 1,
            keep_history: false,
            first_msn: 0,
        }
    }
}

/// What the timeline needs to know about one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleInfo {
    /// Decode timestamp in [`TimelineConfig::timescale`] ticks; must not decrease.
    pub dts: u64,
    /// Whether the sample is a sync sample (IDR / keyframe; every audio frame).
    pub keyframe: bool,
    /// Payload size in bytes, used only for bitrate statistics.
    pub size: u32,
}

/// A part that has ended: the caller writes its fragment under [`PartInfo::uri`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// Media sequence number of the parent segment.
    pub msn: u64,
    /// Index of the part inside its parent segment.
    pub index: u64,
    /// Decode timestamp of the part's first sample.
    pub start_dts: u64,
    /// Duration in ticks (the next part's start minus this one's).
    pub duration: u64,
    /// Whether the part holds a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// Number of samples in the part.
    pub samples: u32,
    /// Sum of the samples' payload sizes.
    pub bytes: u64,
}

impl PartInfo {
    /// The part's resource name.
    pub fn uri(&self) -> MediaUri {
        MediaUri::Part {
            msn: self.msn,
            index: self.index,
        }
    }
}

/// A segment that has ended: the caller writes (or concatenates its parts into)
/// [`SegmentInfo::uri`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Media sequence number.
    pub msn: u64,
    /// Decode timestamp of the first sample.
    pub start_dts: u64,
    /// Duration in ticks.
    pub duration: u64,
    /// Number of parts the segment was cut into.
    pub parts: u64,
    /// Sum of the samples' payload sizes.
    pub bytes: u64,
    /// Wall-clock time of the first sample (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time: SystemTime,
}

impl SegmentInfo {
    /// The segment's resource name.
    pub fn uri(&self) -> MediaUri {
        MediaUri::Segment { msn: self.msn }
    }
}

/// What the caller must do, in order, before writing the sample that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Finish the fragment of the samples written since the previous part and publish it.
    ClosePart(PartInfo),
    /// Publish the whole segment (its parts were all closed just before).
    CloseSegment(SegmentInfo),
    /// The segment and its parts are no longer served: drop their bytes.
    Evict {
        /// Media sequence number of the evicted segment.
        msn: u64,
        /// How many parts it had (`part{msn}.0.m4s` … `part{msn}.{parts-1}.m4s`).
        parts: u64,
    },
}

/// Where a sample goes: part `index` of segment `msn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartRef {
    /// Media sequence number of the segment.
    pub msn: u64,
    /// Part index inside the segment.
    pub index: u64,
}

/// The result of [`RenditionTimeline::push`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Things to do before writing the sample.
    pub actions: Vec<Action>,
    /// The part the sample belongs to, or `None` if it was dropped (no keyframe seen yet).
    pub placement: Option<PartRef>,
}

/// Why the timeline refused a sample or a configuration.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TimelineError {
    /// The configuration cannot produce a valid playlist.
    #[error("invalid timeline config: {0}")]
    InvalidConfig(&'static str),
    /// A sample's DTS went backwards.
    #[error("decode timestamp {dts} is before the previous one ({last})")]
    NonMonotonicDts {
        /// The offending timestamp.
        dts: u64,
        /// The previous sample's timestamp.
        last: u64,
    },
    /// The timeline was finished; start a new one (with a later `first_msn`).
    #[error("the rendition has ended")]
    Ended,
}

/// The advertised `EXT-X-TARGETDURATION` and `PART-TARGET`.
///
/// All media playlists of a ladder must carry the same target duration and an identical
/// `EXT-X-SERVER-CONTROL` (rfc8216bis §6.2.4), so the caller can take the [`max`](Self::max)
/// over its renditions and pass it to every render.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaylistTiming {
    /// `EXT-X-TARGETDURATION`, whole seconds.
    pub target_duration_secs: u64,
    /// `PART-TARGET`, whole milliseconds.
    pub part_target_ms: u64,
}

impl PlaylistTiming {
    /// The field-wise maximum of two timings.
    pub fn max(self, other: PlaylistTiming) -> PlaylistTiming {
        PlaylistTiming {
            target_duration_secs: self.target_duration_secs.max(other.target_duration_secs),
            part_target_ms: self.part_target_ms.max(other.part_target_ms),
        }
    }
}

/// A closed segment still known to the timeline (in the window, waiting for eviction, or kept
/// as history).
#[derive(Clone, Debug)]
pub(super) struct SegmentRecord {
    pub(super) info: SegmentInfo,
    pub(super) parts: Vec<PartInfo>,
}

/// The segment being built: its closed parts plus the part receiving samples.
#[derive(Clone, Debug)]
pub(super) struct OpenSegment {
    pub(super) msn: u64,
    pub(super) start_dts: u64,
    pub(super) program_date_time: SystemTime,
    pub(super) parts: Vec<PartInfo>,
    part: OpenPart,
}

#[derive(Clone, Debug)]
struct OpenPart {
    start_dts: u64,
    samples: u32,
    bytes: u64,
    independent: bool,
}

impl OpenPart {
    fn starting_at(start_dts: u64) -> Self {
        OpenPart {
            start_dts,
            samples: 0,
            bytes: 0,
            independent: false,
        }
    }
}

/// Part and segment bookkeeping of one rendition; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct RenditionTimeline {
    pub(super) cfg: TimelineConfig,
    segment_target_ticks: u64,
    part_target_ticks: u64,
    pub(super) segments: VecDeque<SegmentRecord>,
    pub(super) first_live_msn: u64,
    pub(super) open: Option<OpenSegment>,
    next_msn: u64,
    last_dts: Option<u64>,
    last_delta: u64,
    timing: PlaylistTiming,
    segments_closed: u64,
    started: bool,
    pub(super) ended: bool,
}

impl RenditionTimeline {
    /// A timeline that has seen no sample yet.
    pub fn new(cfg: TimelineConfig) -> Result<Self, TimelineError> {
        if cfg.timescale == 0 {
            return Err(TimelineError::InvalidConfig("timescale must be positive"));
        }
        if cfg.part_target.is_zero() {
            return Err(TimelineError::InvalidConfig("part target must be positive"));
        }
        if cfg.segment_target < cfg.part_target {
            return Err(TimelineError::InvalidConfig(
                "segment target must be at least the part target",
            ));
        }
        if cfg.window_segments == 0 {
            return Err(TimelineError::InvalidConfig(
                "the window must hold at least one segment",
            ));
        }
        let segment_target_ticks = duration_to_ticks(cfg.segment_target, cfg.timescale);
        let part_target_ticks = duration_to_ticks(cfg.part_target, cfg.timescale);
        let timing = PlaylistTiming {
            target_duration_secs: cfg
                .min_target_duration_secs
                .max(segment_target_ticks.div_ceil(u64::from(cfg.timescale)))
                .max(1),
            part_target_ms: ticks_to_ceil_ms(part_target_ticks, cfg.timescale).max(1),
        };
        Ok(RenditionTimeline {
            segment_target_ticks,
            part_target_ticks,
            segments: VecDeque::new(),
            first_live_msn: cfg.first_msn,
            open: None,
            next_msn: cfg.first_msn,
            last_dts: None,
            last_delta: 0,
            timing,
            segments_closed: 0,
            started: false,
            ended: false,
            cfg,
        })
    }

    /// The configuration this timeline was built with.
    pub fn config(&self) -> &TimelineConfig {
        &self.cfg
    }

    /// Places one sample; the returned actions must be carried out before the sample is written.
    ///
    /// `wallclock` is the sample's wall-clock time; the first sample of each segment gives that
    /// segment's `EXT-X-PROGRAM-DATE-TIME`. Samples before the first keyframe are dropped since a
    /// segment must start with one.
    pub fn push(
        &mut self,
        sample: SampleInfo,
        wallclock: SystemTime,
    ) -> Result<Pushed, TimelineError> {
        if self.ended {
            return Err(TimelineError::Ended);
        }
        if let Some(last) = self.last_dts {
            if sample.dts < last {
                return Err(TimelineError::NonMonotonicDts {
                    dts: sample.dts,
                    last,
                });
            }
            if sample.dts > last {
                self.last_delta = sample.dts - last;
            }
        }
        self.last_dts = Some(sample.dts);

        let mut actions = Vec::new();
        match &self.open {
            None if !sample.keyframe => {
                return Ok(Pushed {
                    actions,
                    placement: None,
                });
            }
            None => self.open_segment(sample.dts, wallclock),
            Some(open) => {
                let in_segment = sample.dts - open.start_dts;
                let in_part = sample.dts - open.part.start_dts;
                if sample.keyframe && in_segment >= self.segment_target_ticks {
                    self.close_segment(sample.dts, &mut actions);
                    self.open_segment(sample.dts, wallclock);
                } else if in_part >= self.part_target_ticks {
                    self.close_part(sample.dts, &mut actions);
                }
            }
        }

        let open = self
            .open
            .as_mut()
            .expect("a segment is open after placement");
        open.part.samples += 1;
        open.part.bytes += u64::from(sample.size);
        open.part.independent |= sample.keyframe;
        Ok(Pushed {
            actions,
            placement: Some(PartRef {
                msn: open.msn,
                index: open.parts.len() as u64,
            }),
        })
    }

    /// Ends the rendition: closes the open part and segment at `end_dts` (the end of the last
    /// sample) and makes the playlists carry `EXT-X-ENDLIST`.
    ///
    /// When `end_dts` is unknown or not after the last sample, the last sample is given the
    /// duration of the one before it.
    pub fn finish(&mut self, end_dts: Option<u64>) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.ended {
            return actions;
        }
        if self.open.is_some() {
            let last = self.last_dts.unwrap_or_default();
            let end = match end_dts {
                Some(end) if end > last => end,
                _ => last + self.last_delta.max(1),
            };
            self.close_segment(end, &mut actions);
        }
        self.ended = true;
        actions
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether a keyframe has been accepted, so the init segment can be served.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Whether a playlist can be served: at least one complete segment, or the end.
    pub fn has_content(&self) -> bool {
        self.ended || !self.segments.is_empty()
    }

    /// The advertised target duration and part target of this rendition alone. Neither ever
    /// decreases.
    pub fn timing(&self) -> PlaylistTiming {
        self.timing
    }

    /// `EXT-X-MEDIA-SEQUENCE` of the live playlist.
    pub fn media_sequence(&self) -> u64 {
        self.first_live_msn
    }

    /// MSN of the segment being built, or of the next one to be built.
    pub fn open_msn(&self) -> u64 {
        self.open.as_ref().map_or(self.next_msn, |o| o.msn)
    }

    /// MSN of the newest complete segment.
    pub fn last_complete_msn(&self) -> Option<u64> {
        self.segments.back().map(|s| s.info.msn)
    }

    /// The newest part in the playlist (the position `LAST-MSN`/`LAST-PART` report).
    pub fn last_part(&self) -> Option<PartRef> {
        if let Some(open) = &self.open
            && let Some(p) = open.parts.last()
        {
            return Some(PartRef {
                msn: p.msn,
                index: p.index,
            });
        }
        self.segments.back().and_then(|s| {
            s.parts.last().map(|p| PartRef {
                msn: p.msn,
                index: p.index,
            })
        })
    }

    /// The part receiving samples now, which the preload hint names; `None` before the first
    /// keyframe and after the end.
    pub fn next_part(&self) -> Option<PartRef> {
        self.open.as_ref().map(|o| PartRef {
            msn: o.msn,
            index: o.parts.len() as u64,
        })
    }

    /// Complete segments currently listed in the live playlist, oldest first.
    pub fn live_segments(&self) -> impl Iterator<Item = &SegmentInfo> {
        self.live_records().map(|s| &s.info)
    }

    /// Peak and average payload bitrate (bits/s) over the live window, for `BANDWIDTH` and
    /// `AVERAGE-BANDWIDTH`; container overhead is not included.
    pub fn bitrates(&self) -> Option<(u64, u64)> {
        let ts = u128::from(self.cfg.timescale);
        let bps = |bytes: u64, ticks: u64| {
            u64::try_from(u128::from(bytes) * 8 * ts / u128::from(ticks.max(1))).unwrap_or(u64::MAX)
        };
        let (mut peak, mut bytes, mut ticks) = (0, 0, 0);
        for s in self.live_segments() {
            peak = peak.max(bps(s.bytes, s.duration));
            bytes += s.bytes;
            ticks += s.duration;
        }
        (ticks > 0).then(|| (peak, bps(bytes, ticks)))
    }

    pub(super) fn live_records(&self) -> impl Iterator<Item = &SegmentRecord> {
        self.segments
            .iter()
            .skip_while(|s| s.info.msn < self.first_live_msn)
    }

    /// A closed segment the timeline still knows (in the window, awaiting eviction or history).
    pub(super) fn record(&self, msn: u64) -> Option<&SegmentRecord> {
        let first = self.segments.front()?.info.msn;
        let offset = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(offset)
    }

    fn open_segment(&mut self, dts: u64, wallclock: SystemTime) {
        self.started = true;
        self.open = Some(OpenSegment {
            msn: self.next_msn,
            start_dts: dts,
            program_date_time: wallclock,
            parts: Vec::new(),
            part: OpenPart::starting_at(dts),
        });
        self.next_msn += 1;
    }

    fn close_part(&mut self, end_dts: u64, actions: &mut Vec<Action>) {
        let timescale = self.cfg.timescale;
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let part = std::mem::replace(&mut open.part, OpenPart::starting_at(end_dts));
        let info = PartInfo {
            msn: open.msn,
            index: open.parts.len() as u64,
            start_dts: part.start_dts,
            duration: end_dts - part.start_dts,
            independent: part.independent,
            samples: part.samples,
            bytes: part.bytes,
        };
        let part_target_ms = ticks_to_ceil_ms(info.duration, timescale);
        if part_target_ms > self.timing.part_target_ms {
            // PART-TARGET must cover every part, but clients may reject a playlist whose
            // PART-TARGET changes once they have seen it.
            if self.segments_closed > 0 {
                tracing::warn!(
                    from_ms = self.timing.part_target_ms,
                    to_ms = part_target_ms,
                    "LL-HLS part target grew after publication; players may stall"
                );
            }
            self.timing.part_target_ms = part_target_ms;
        }
        open.parts.push(info.clone());
        actions.push(Action::ClosePart(info));
    }

    fn close_segment(&mut self, end_dts: u64, actions: &mut Vec<Action>) {
        self.close_part(end_dts, actions);
        let Some(open) = self.open.take() else {
            return;
        };
        let info = SegmentInfo {
            msn: open.msn,
            start_dts: open.start_dts,
            duration: end_dts - open.start_dts,
            parts: open.parts.len() as u64,
            bytes: open.parts.iter().map(|p| p.bytes).sum(),
            program_date_time: open.program_date_time,
        };
        let target = info.duration.div_ceil(u64::from(self.cfg.timescale));
        if target > self.timing.target_duration_secs {
            // EXT-X-TARGETDURATION MUST NOT change (§6.2.1); growing it is the lesser evil
            // than listing a segment longer than the target.
            if self.segments_closed > 0 {
                tracing::warn!(
                    from_secs = self.timing.target_duration_secs,
                    to_secs = target,
                    "LL-HLS target duration grew after publication; raise min_target_duration_secs"
                );
            }
            self.timing.target_duration_secs = target;
        }
        self.segments_closed += 1;
        actions.push(Action::CloseSegment(info.clone()));
        self.segments.push_back(SegmentRecord {
            info,
            parts: open.parts,
        });
        self.slide_window(actions);
    }

    fn slide_window(&mut self, actions: &mut Vec<Action>) {
        // A live playlist must never get shorter than three target durations (§6.2.2).
        let min_ticks = 3 * self.timing.target_duration_secs * u64::from(self.cfg.timescale);
        let live: Vec<u64> = self.live_records().map(|s| s.info.duration).collect();
        let mut total: u64 = live.iter().sum();
        let mut dropped = 0;
        while live.len() - dropped > self.cfg.window_segments && total - live[dropped] >= min_ticks
        {
            total -= live[dropped];
            dropped += 1;
        }
        self.first_live_msn += dropped as u64;

        if self.cfg.keep_history {
            return;
        }
        let evict_before = self
            .first_live_msn
            .saturating_sub(self.cfg.eviction_delay_segments as u64);
        while self
            .segments
            .front()
            .is_some_and(|s| s.info.msn < evict_before)
        {
            let s = self.segments.pop_front().expect("front exists");
            actions.push(Action::Evict {
                msn: s.info.msn,
                parts: s.parts.len() as u64,
            });
        }
    }
}

fn duration_to_ticks(d: Duration, timescale: u32) -> u64 {
    let ticks = (d.as_nanos() * u128::from(timescale)).div_ceil(1_000_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn ticks_to_ceil_ms(ticks: u64, timescale: u32) -> u64 {
    let ms = (u128::from(ticks) * 1000).div_ceil(u128::from(timescale));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::test_support::{Feed, video_config};

    fn closed_parts(actions: &[Action]) -> Vec<&PartInfo> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ClosePart(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn playlist_timeline_30fps_parts_of_8_frames_and_1s_segments() {
        let mut feed = Feed::new(video_config());
        let actions = feed.frames(31);
        let parts = closed_parts(&actions);
        // Frame 8 is the first at or after 250 ms (8 × 33.3 ms = 266.7 ms).
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.msn, p.index, p.samples, p.duration, p.independent))
                .collect::<Vec<_>>(),
            vec![
                (0, 0, 8, 24_000, true),
                (0, 1, 8, 24_000, false),
                (0, 2, 8, 24_000, false),
                (0, 3, 6, 18_000, false),
            ]
        );
        let segments: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::CloseSegment(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].msn, 0);
        assert_eq!(segments[0].duration, 90_000);
        assert_eq!(segments[0].parts, 4);
        assert_eq!(segments[0].start_dts, 0);
        assert_eq!(segments[0].program_date_time, feed.wallclock(0));
        assert_eq!(segments[0].uri().to_string(), "seg0.m4s");
        // The part closes before the keyframe is placed, and the keyframe opens segment 1.
        assert!(matches!(actions[3], Action::ClosePart(ref p) if p.index == 3));
        assert!(matches!(actions[4], Action::CloseSegment(_)));
        assert_eq!(feed.last_placement, Some(PartRef { msn: 1, index: 0 }));
        assert_eq!(
            feed.timeline.timing(),
            PlaylistTiming {
                target_duration_secs: 1,
                part_target_ms: 267
            }
        );
    }

    #[test]
    fn playlist_timeline_independent_follows_keyframes_inside_segment() {
        let mut cfg = video_config();
        cfg.segment_target = Duration::from_secs(2);
        let mut feed = Feed::new(cfg);
        // Keyframes every second but segments of 2 s: the keyframe at frame 30 lands inside
        // part 3 (frames 24..32), which therefore contains an independent frame (§4.4.4.9).
        let actions = feed.frames(61);
        let parts = closed_parts(&actions);
        let independent: Vec<_> = parts
            .iter()
            .filter(|p| p.independent)
            .map(|p| (p.msn, p.index))
            .collect();
        assert_eq!(independent, vec![(0, 0), (0, 3)]);
        assert_eq!(feed.timeline.last_complete_msn(), Some(0));
    }

    #[test]
    fn playlist_timeline_drops_until_first_keyframe() {
        let mut timeline = RenditionTimeline::new(video_config()).unwrap();
        let t = SystemTime::UNIX_EPOCH;
        let delta = SampleInfo {
            dts: 0,
            keyframe: false,
            size: 10,
        };
        let pushed = timeline.push(delta, t).unwrap();
        assert_eq!(pushed.placement, None);
        assert!(!timeline.is_started());
        let key = SampleInfo {
            dts: 3000,
            keyframe: true,
            size: 10,
        };
        let pushed = timeline.push(key, t).unwrap();
        assert_eq!(pushed.placement, Some(PartRef { msn: 0, index: 0 }));
        assert!(timeline.is_started());
        assert_eq!(timeline.next_part(), Some(PartRef { msn: 0, index: 0 }));
    }

    #[test]
    fn playlist_timeline_rejects_backwards_dts_and_push_after_end() {
        let mut feed = Feed::new(video_config());
        feed.frames(5);
        let t = SystemTime::UNIX_EPOCH;
        let back = SampleInfo {
            dts: 3000,
            keyframe: false,
            size: 1,
        };
        assert_eq!(
            feed.timeline.push(back, t),
            Err(TimelineError::NonMonotonicDts {
                dts: 3000,
                last: 12_000
            })
        );
        feed.timeline.finish(None);
        let next = SampleInfo {
            dts: 15_000,
            keyframe: true,
            size: 1,
        };
        assert_eq!(feed.timeline.push(next, t), Err(TimelineError::Ended));
    }

    #[test]
    fn playlist_timeline_window_slides_and_evicts() {
        let mut feed = Feed::new(video_config());
        let actions = feed.frames(12 * 30 + 1);
        // 12 complete segments, window of 7: MSN 5..=11 listed.
        assert_eq!(feed.timeline.last_complete_msn(), Some(11));
        assert_eq!(feed.timeline.media_sequence(), 5);
        assert_eq!(
            feed.timeline
                .live_segments()
                .map(|s| s.msn)
                .collect::<Vec<_>>(),
            (5..=11).collect::<Vec<_>>()
        );
        // Eviction lags the window by 3 segments: 0 and 1 are gone, 2..=4 still downloadable.
        let evicted: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Evict { msn, parts } => Some((*msn, *parts)),
                _ => None,
            })
            .collect();
        assert_eq!(evicted, vec![(0, 4), (1, 4)]);
        assert_eq!(feed.timeline.open_msn(), 12);
    }

    #[test]
    fn playlist_timeline_window_never_shorter_than_three_target_durations() {
        let mut cfg = video_config();
        cfg.window_segments = 1;
        let mut feed = Feed::new(cfg);
        feed.frames(10 * 30 + 1);
        // One segment would be 1 s < 3 × 1 s, so three stay listed.
        assert_eq!(feed.timeline.live_segments().count(), 3);
        assert_eq!(feed.timeline.media_sequence(), 7);
    }

    #[test]
    fn playlist_timeline_target_duration_never_decreases() {
        let mut feed = Feed::new(video_config());
        // A 2.5 s GOP first, then 1 s GOPs.
        feed.keyframe_every = 75;
        feed.frames(76);
        assert_eq!(feed.timeline.timing().target_duration_secs, 3);
        feed.keyframe_every = 30;
        feed.align_keyframes_from_now();
        feed.frames(30 * 10 + 1);
        assert!(feed.timeline.live_segments().all(|s| s.duration == 90_000));
        assert_eq!(feed.timeline.timing().target_duration_secs, 3);
    }

    #[test]
    fn playlist_timeline_min_target_duration_is_a_floor() {
        let mut cfg = video_config();
        cfg.min_target_duration_secs = 4;
        let feed = Feed::new(cfg);
        assert_eq!(feed.timeline.timing().target_duration_secs, 4);
    }

    #[test]
    fn playlist_timeline_finish_closes_open_part_and_segment() {
        let mut feed = Feed::new(video_config());
        feed.frames(40);
        let actions = feed.timeline.finish(Some(40 * 3000));
        assert_eq!(actions.len(), 2);
        assert!(matches!(
            &actions[0],
            Action::ClosePart(p) if p.msn == 1 && p.index == 1 && p.samples == 2 && p.duration == 6000
        ));
        assert!(matches!(
            &actions[1],
            Action::CloseSegment(s) if s.msn == 1 && s.duration == 30_000 && s.parts == 2
        ));
        assert!(feed.timeline.is_ended());
        assert_eq!(feed.timeline.next_part(), None);
        assert!(feed.timeline.finish(None).is_empty());
    }

    #[test]
    fn playlist_timeline_finish_without_end_uses_last_frame_duration() {
        let mut feed = Feed::new(video_config());
        feed.frames(3);
        let actions = feed.timeline.finish(None);
        assert!(matches!(&actions[1], Action::CloseSegment(s) if s.duration == 9000));
    }

    #[test]
    fn playlist_timeline_last_part_and_bitrates() {
        let mut feed = Feed::new(video_config());
        feed.frames(30 + 9);
        // Segment 1 has closed part 0 (frames 30..38); frame 38 sits in part 1.
        assert_eq!(
            feed.timeline.last_part(),
            Some(PartRef { msn: 1, index: 0 })
        );
        assert_eq!(
            feed.timeline.next_part(),
            Some(PartRef { msn: 1, index: 1 })
        );
        // 30 frames of 1000 bytes in 1 s.
        assert_eq!(feed.timeline.bitrates(), Some((240_000, 240_000)));
    }

    #[test]
    fn playlist_timeline_audio_parts_all_independent() {
        let mut cfg = TimelineConfig::new(48_000);
        cfg.part_target = Duration::from_millis(200);
        let mut timeline = RenditionTimeline::new(cfg).unwrap();
        let mut actions = Vec::new();
        // 20 ms Opus frames, every one a sync sample.
        for i in 0..51u64 {
            let s = SampleInfo {
                dts: i * 960,
                keyframe: true,
                size: 100,
            };
            actions.extend(timeline.push(s, SystemTime::UNIX_EPOCH).unwrap().actions);
        }
        let parts = closed_parts(&actions);
        assert_eq!(parts.len(), 5);
        assert!(parts.iter().all(|p| p.independent && p.samples == 10));
        assert_eq!(timeline.last_complete_msn(), Some(0));
        assert_eq!(timeline.timing().part_target_ms, 200);
    }

    #[test]
    fn playlist_timeline_rejects_bad_config() {
        let mut cfg = video_config();
        cfg.timescale = 0;
        assert!(RenditionTimeline::new(cfg).is_err());
        let mut cfg = video_config();
        cfg.segment_target = Duration::from_millis(100);
        assert!(RenditionTimeline::new(cfg).is_err());
        let mut cfg = video_config();
        cfg.window_segments = 0;
        assert!(RenditionTimeline::new(cfg).is_err());
    }
}
