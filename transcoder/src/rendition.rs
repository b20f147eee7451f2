//! One rendition of a live stream: frames in, CMAF parts and segments out, in memory for the
//! live window and on disk for VOD. Sans-IO apart from the files it writes; time comes in as
//! an argument.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use prometheus::Gauge;

use crate::fmp4::{self, Sample, Track, TrackFragment};
use crate::playlist::{
    Action, MediaUri, RenditionTimeline, SampleInfo, TimelineConfig, TimelineError,
};

/// What a rendition is, for the multivariant playlist.
#[derive(Debug, Clone)]
pub struct RenditionInfo {
    /// Directory name and playlist URI prefix (`video`, `audio`).
    pub name: String,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Video size.
    pub resolution: Option<(u32, u32)>,
    /// Audio channels.
    pub channels: Option<u32>,
    /// Video frames per second (`FRAME-RATE`).
    pub frame_rate: Option<f64>,
}

/// Where a rendition reports how far its parts and segments trail the frames they hold.
#[derive(Clone)]
pub struct LatencyGauges {
    /// Seconds from the arrival of a part's first frame to the part's publication.
    pub part: Gauge,
    /// Seconds from the arrival of a segment's first frame to the segment's publication.
    pub segment: Gauge,
}

/// A rendition being packaged.
pub struct Rendition {
    /// Name, codec, size.
    pub info: RenditionInfo,
    /// Parts and segments.
    pub timeline: RenditionTimeline,
    track: Track,
    init: Bytes,
    dir: PathBuf,
    parts: HashMap<(u64, u64), Bytes>,
    segments: HashMap<u64, Bytes>,
    open_segment: Vec<u8>,
    pending: Vec<Sample>,
    pending_base: u64,
    held: Option<Held>,
    sequence: u32,
    /// Arrival of the first frame of the open part and of the open segment.
    part_arrival: Option<Instant>,
    segment_arrival: Option<Instant>,
    latency: Option<LatencyGauges>,
    /// Dropped from the ladder (shed or failed): finished, no longer offered to players.
    pub retired: bool,
}

/// The newest frame, packaged once the next one gives its duration.
struct Held {
    dts: u64,
    keyframe: bool,
    data: Bytes,
    arrived: Instant,
}

impl Rendition {
    /// A rendition of `track` whose files go to `dir` (created).
    pub fn new(
        info: RenditionInfo,
        track: Track,
        mut cfg: TimelineConfig,
        dir: PathBuf,
    ) -> Result<Self, TimelineError> {
        // VOD needs every segment of the recording in the final playlist.
        cfg.keep_history = true;
        let init = Bytes::from(fmp4::init_segment(std::slice::from_ref(&track)));
        if let Err(e) = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(MediaUri::Init.to_string()), &init))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write HLS files");
        }
        Ok(Self {
            info,
            timeline: RenditionTimeline::new(cfg)?,
            track,
            init,
            dir,
            parts: HashMap::new(),
            segments: HashMap::new(),
            open_segment: Vec::new(),
            pending: Vec::new(),
            pending_base: 0,
            held: None,
            sequence: 1,
            part_arrival: None,
            segment_arrival: None,
            latency: None,
            retired: false,
        })
    }

    /// Reports part and segment latency to `gauges` from now on.
    pub fn set_latency_gauges(&mut self, gauges: LatencyGauges) {
        self.latency = Some(gauges);
    }

    /// The init segment.
    pub fn init(&self) -> Bytes {
        self.init.clone()
    }

    /// A part or segment still in memory.
    pub fn media(&self, uri: MediaUri) -> Option<Bytes> {
        match uri {
            MediaUri::Init => Some(self.init.clone()),
            MediaUri::Segment { msn } => self.segments.get(&msn).cloned(),
            MediaUri::Part { msn, index } => self.parts.get(&(msn, index)).cloned(),
        }
    }

    /// Takes a frame with its decode time (in the track timescale), its wall-clock time and
    /// when it arrived at the server. A frame's duration is known when the next one arrives, so
    /// each frame is packaged one frame late.
    pub fn push(
        &mut self,
        dts: u64,
        keyframe: bool,
        data: Bytes,
        now: SystemTime,
        arrived: Instant,
    ) {
        if let Some(prev) = self.held.take() {
            if dts <= prev.dts {
                // Out of order or repeated timestamp: keep the earlier frame, drop this one.
                self.held = Some(prev);
                return;
            }
            let duration = u32::try_from(dts - prev.dts).unwrap_or(u32::MAX);
            self.package(prev, duration, now);
        }
        self.held = Some(Held {
            dts,
            keyframe,
            data,
            arrived,
        });
    }

    fn package(&mut self, held: Held, duration: u32, now: SystemTime) {
        let Held {
            dts,
            keyframe,
            data,
            arrived,
        } = held;
        let info = SampleInfo {
            dts,
            keyframe,
            size: u32::try_from(data.len()).unwrap_or(u32::MAX),
        };
        let pushed = match self.timeline.push(info, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(rendition = %self.info.name, error = %e, "sample refused");
                return;
            }
        };
        self.apply(pushed.actions);
        if pushed.placement.is_some() {
            if self.pending.is_empty() {
                self.pending_base = dts;
                self.part_arrival = Some(arrived);
            }
            self.segment_arrival.get_or_insert(arrived);
            self.pending.push(Sample {
                duration,
                is_sync: keyframe,
                composition_offset: 0,
                data,
            });
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::ClosePart(p) => {
                    let mut frag = Vec::new();
                    fmp4::write_fragment(
                        &mut frag,
                        self.sequence,
                        &[TrackFragment {
                            track_id: self.track.id,
                            base_decode_time: self.pending_base,
                            samples: &self.pending,
                        }],
                    );
                    self.sequence = self.sequence.wrapping_add(1);
                    self.pending.clear();
                    self.open_segment.extend_from_slice(&frag);
                    self.parts.insert((p.msn, p.index), Bytes::from(frag));
                    if let (Some(g), Some(at)) = (&self.latency, self.part_arrival.take()) {
                        g.part.set(at.elapsed().as_secs_f64());
                    }
                }
                Action::CloseSegment(s) => {
                    let seg = Bytes::from(std::mem::take(&mut self.open_segment));
                    let path = self.dir.join(s.uri().to_string());
                    if let Err(e) = std::fs::write(&path, &seg) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write a segment");
                    }
                    self.segments.insert(s.msn, seg);
                    if let (Some(g), Some(at)) = (&self.latency, self.segment_arrival.take()) {
                        g.segment.set(at.elapsed().as_secs_f64());
                    }
                }
                Action::Evict { msn, parts } => {
                    self.segments.remove(&msn);
                    for i in 0..parts {
                        self.parts.remove(&(msn, i));
                    }
                }
            }
        }
    }

    /// Ends the rendition: packages the held frame (with the previous duration) and closes the
    /// last part and segment, then writes the VOD playlist.
    pub fn finish(&mut self, now: SystemTime) {
        if let Some(held) = self.held.take() {
            // The last frame lasts as long as the one before it (a 30 fps frame if it is alone).
            let fallback = self.track.timescale / 30;
            let duration = self.pending.last().map_or(fallback, |s| s.duration);
            let end = held.dts + u64::from(duration);
            self.package(held, duration, now);
            let actions = self.timeline.finish(Some(end));
            self.apply(actions);
        } else {
            let actions = self.timeline.finish(None);
            self.apply(actions);
        }
    }

    /// Writes `index.m3u8` (VOD) next to the segments.
    pub fn write_vod(&self, timing: Option<crate::playlist::PlaylistTiming>) {
        if let Some(text) = self.timeline.render_vod_playlist("", timing) {
            let path = self.dir.join("index.m3u8");
            if let Err(e) = std::fs::write(&path, text) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write a VOD playlist");
            }
        }
    }
}
