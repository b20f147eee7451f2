//! One rendition of a live stream: frames in, CMAF parts and segments out, in memory for the
//! live window and on disk for VOD. Sans-IO apart from the files it writes; time comes in as
//! an argument.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;

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
    held: Option<(u64, bool, Bytes)>,
    sequence: u32,
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
        })
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

    /// Takes a frame with its decode time (in the track timescale). A frame's duration is known
    /// when the next one arrives, so each frame is packaged one frame late.
    pub fn push(&mut self, dts: u64, keyframe: bool, data: Bytes, now: SystemTime) {
        if let Some((prev_dts, prev_key, prev)) = self.held.take() {
            if dts <= prev_dts {
                // Out of order or repeated timestamp: keep the earlier frame, drop this one.
                self.held = Some((prev_dts, prev_key, prev));
                return;
            }
            let duration = u32::try_from(dts - prev_dts).unwrap_or(u32::MAX);
            self.package(prev_dts, prev_key, prev, duration, now);
        }
        self.held = Some((dts, keyframe, data));
    }

    fn package(&mut self, dts: u64, keyframe: bool, data: Bytes, duration: u32, now: SystemTime) {
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
            }
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
                }
                Action::CloseSegment(s) => {
                    let seg = Bytes::from(std::mem::take(&mut self.open_segment));
                    let path = self.dir.join(s.uri().to_string());
                    if let Err(e) = std::fs::write(&path, &seg) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write a segment");
                    }
                    self.segments.insert(s.msn, seg);
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
        if let Some((dts, key, data)) = self.held.take() {
            // The last frame lasts as long as the one before it (a 30 fps frame if it is alone).
            let fallback = self.track.timescale / 30;
            let duration = self.pending.last().map_or(fallback, |s| s.duration);
            self.package(dts, key, data, duration, now);
            let end = dts + u64::from(duration);
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
