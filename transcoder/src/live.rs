//! The IO shell of the HLS fallback: for each channel that goes live, a task taps the SFU
//! in-process, depacketizes the best simulcast layer and the audio, and packages them into
//! LL-HLS renditions; HTTP handlers read the renditions and block on their changes.
//!
//! The transcoded ladder runs on a std thread per stream (never on the async workers: it is
//! CPU-bound), fed through a bounded queue. When the queue is full the task drops frames up to
//! the next keyframe, so a slow ladder loses whole GOPs instead of falling further behind.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use onair_sfu::munger::SrMapping;
use onair_sfu::payload::VideoCodec;
use onair_sfu::track::{Kind, SourcePacket};
use onair_sfu::{Sfu, SfuEvent};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::audio::{OpusToAac, OpusToAacConfig};
use crate::avsync::{AvSync, Placement};
use crate::config::{HlsConfig, LadderConfig};
use crate::depacketize::{
    Depacketizer, H264Depacketizer, OpusDepacketizer, Output, RtpIn, parse_h264_sps,
};
use crate::fmp4::{Codec, Track};
use crate::ladder::{H264Decoder, Ladder, RungCodec, RungFrame, SourceFrame, TIMESCALE};
use crate::metrics::HlsMetrics;
use crate::playlist::{
    AudioRendition, MultivariantPlaylist, PlaylistTiming, TimelineConfig, VideoVariant,
};
use crate::rendition::{LatencyGauges, Rendition, RenditionInfo};

/// Packets a stream's task may fall behind the SFU before it loses some.
const TAP_CAPACITY: usize = 8192;
/// Keyframe requests upstream, at most this often.
const KEYFRAME_EVERY: Duration = Duration::from_secs(1);
/// Source frames queued in front of the ladder thread (about two seconds at 30 fps).
const LADDER_QUEUE: usize = 60;
/// Part target of transcoded renditions.
const LADDER_PART: Duration = Duration::from_millis(250);
/// Source frames whose arrival times the ladder thread remembers (more than any encoder delay).
const TIMING_KEPT: usize = 32;

/// The HLS service of a node.
#[derive(Clone)]
pub struct Hls {
    inner: Arc<HlsInner>,
}

struct HlsInner {
    sfu: Sfu,
    config: HlsConfig,
    metrics: HlsMetrics,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

/// One stream of a channel: its renditions, live or ended.
pub struct Stream {
    /// Channel.
    pub channel: String,
    /// Directory of its files.
    pub dir: PathBuf,
    state: Mutex<StreamState>,
    ended: AtomicBool,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct StreamState {
    video: Option<Rendition>,
    /// Transcoded rungs by ladder index; `None` until a rung's first IDR.
    ladder: Vec<Option<Rendition>>,
    /// Opus as published.
    audio: Option<Rendition>,
    /// AAC-LC transcoded from the Opus (many TVs play nothing else).
    aac: Option<Rendition>,
}

impl Hls {
    /// HLS for the channels of `sfu`, files under `config.root`, metrics in `registry`.
    pub fn start(sfu: Sfu, config: HlsConfig, registry: &prometheus::Registry) -> Self {
        let hls = Hls {
            inner: Arc::new(HlsInner {
                sfu,
                config,
                metrics: HlsMetrics::new(registry),
                streams: Mutex::new(HashMap::new()),
            }),
        };
        hls.spawn_event_loop();
        hls
    }

    /// The current (live or last) stream of a channel on this node.
    pub fn stream(&self, channel: &str) -> Option<Arc<Stream>> {
        self.inner.streams.lock().get(channel).cloned()
    }

    /// Where a channel's recordings are kept.
    pub fn channel_dir(&self, channel: &str) -> PathBuf {
        self.inner.config.root.join(channel)
    }

    fn spawn_event_loop(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut events = self.inner.sfu.subscribe();
        tokio::spawn(async move {
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                if let SfuEvent::Live { channel } = e {
                    let hls = Hls { inner };
                    hls.begin(&channel);
                }
            }
        });
    }

    /// Starts packaging a channel that went live (a new publisher replaces the old stream).
    fn begin(&self, channel: &str) {
        let id = format!(
            "{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        let stream = Arc::new(Stream {
            channel: channel.to_string(),
            dir: self.inner.config.root.join(channel).join(id),
            state: Mutex::new(StreamState::default()),
            ended: AtomicBool::new(false),
            changed: watch::channel(0).0,
        });
        let previous = self
            .inner
            .streams
            .lock()
            .insert(channel.to_string(), stream.clone());
        if let Some(p) = previous {
            p.end();
        }
        let rx = self.inner.sfu.tap(channel, TAP_CAPACITY);
        let sfu = self.inner.sfu.clone();
        let ladder = self.inner.config.ladder.clone();
        let metrics = self.inner.metrics.clone();
        tokio::spawn(async move {
            Packager::new(stream, sfu, ladder, metrics).run(rx).await;
        });
    }
}

impl Stream {
    /// Runs `f` on the renditions (video first), with the ladder-wide timing.
    pub fn with<R>(&self, f: impl FnOnce(&[&Rendition], Option<PlaylistTiming>) -> R) -> R {
        let st = self.state.lock();
        let list = st.renditions();
        f(&list, ladder_timing(&list))
    }

    /// A receiver that changes whenever a part, segment or the end is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Whether the stream has ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Closes every rendition and writes the VOD playlists.
    fn end(&self) {
        let mut guard = self.state.lock();
        if self.ended() {
            return;
        }
        let now = SystemTime::now();
        for r in guard.renditions_mut().filter(|r| !r.retired) {
            r.finish(now);
        }
        let st = &*guard;
        let list = st.renditions();
        let timing = ladder_timing(&list);
        for r in &list {
            r.write_vod(timing);
        }
        if let Ok(text) = multivariant(&list).render("")
            && let Err(e) = std::fs::write(self.dir.join(crate::storage::MASTER), text)
        {
            tracing::warn!(error = %e, "cannot write the VOD multivariant playlist");
        }
        self.ended.store(true, Ordering::Release);
        drop(guard);
        self.notify();
    }
}

impl StreamState {
    /// The source, the rungs largest first, then audio (AAC, Opus).
    fn renditions(&self) -> Vec<&Rendition> {
        self.video
            .iter()
            .chain(self.ladder.iter().flatten())
            .chain(self.aac.iter())
            .chain(self.audio.iter())
            .collect()
    }

    /// The same renditions, to change.
    fn renditions_mut(&mut self) -> impl Iterator<Item = &mut Rendition> {
        self.video
            .iter_mut()
            .chain(self.ladder.iter_mut().flatten())
            .chain(self.aac.iter_mut())
            .chain(self.audio.iter_mut())
    }
}

impl Stream {
    /// Publishes encoded rung frames, creating each rung's rendition at its first IDR.
    /// `timing` holds the wall-clock and arrival times of recent source frames by decode time.
    fn publish_rungs(
        &self,
        ladder: &Ladder,
        frames: Vec<RungFrame>,
        job: &LadderJob,
        timing: &VecDeque<(u64, SystemTime, Instant)>,
        metrics: &HlsMetrics,
    ) {
        let mut st = self.state.lock();
        let specs = ladder.rungs();
        if st.ladder.len() < specs.len() {
            st.ladder.resize_with(specs.len(), || None);
        }
        for f in frames {
            let Some(spec) = specs.get(f.rung) else {
                continue;
            };
            let slot = &mut st.ladder[f.rung];
            if slot.is_none() {
                if !f.keyframe {
                    continue;
                }
                let codec = match spec.codec {
                    RungCodec::H264 => {
                        let (Some(sps), Some(pps)) = (f.picture.sps.clone(), f.picture.pps.clone())
                        else {
                            continue;
                        };
                        Codec::H264 {
                            sps,
                            pps,
                            width: u16::try_from(spec.width).unwrap_or(u16::MAX),
                            height: u16::try_from(spec.height).unwrap_or(u16::MAX),
                        }
                    }
                    RungCodec::Av1 => {
                        let Some((codec, _)) =
                            f.picture.sequence_header.as_deref().and_then(av1_codec)
                        else {
                            continue;
                        };
                        codec
                    }
                };
                let info = RenditionInfo {
                    name: spec.name.clone(),
                    // From the SPS / sequence header the encoder actually wrote.
                    codecs: codec.rfc6381(),
                    resolution: Some((spec.width, spec.height)),
                    channels: None,
                    frame_rate: Some(snap_frame_rate(ladder.fps())),
                };
                let track = Track {
                    id: 1,
                    timescale: 90_000,
                    codec,
                };
                let mut cfg = TimelineConfig::new(90_000);
                cfg.segment_target = ladder.segment();
                cfg.part_target = LADDER_PART.min(cfg.segment_target);
                match open_rendition(&self.dir, metrics, info, track, cfg) {
                    Some(r) => *slot = Some(r),
                    None => continue,
                }
            }
            if let Some(r) = slot.as_mut()
                && !r.retired
            {
                // The AV1 encoder hands pictures out a few frames late: time each one by its own
                // source frame.
                let (wallclock, arrived) = timing
                    .iter()
                    .find(|t| t.0 == f.dts)
                    .map_or((job.wallclock, job.arrived), |t| (t.1, t.2));
                r.push(
                    f.dts,
                    f.keyframe,
                    Bytes::from(f.picture.data),
                    wallclock,
                    arrived,
                );
            }
        }
        drop(st);
        self.notify();
    }

    /// Ends a rung the ladder no longer encodes and takes it off the multivariant playlist.
    fn retire_rung(&self, rung: usize) {
        let mut st = self.state.lock();
        if let Some(Some(r)) = st.ladder.get_mut(rung)
            && !r.retired
        {
            r.finish(SystemTime::now());
            r.retired = true;
        }
        drop(st);
        self.notify();
    }
}

/// FRAME-RATE as players expect it: common rates exactly, others to 3 decimals.
fn snap_frame_rate(fps: f64) -> f64 {
    const COMMON: [f64; 9] = [15.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0];
    COMMON
        .iter()
        .copied()
        .find(|c| (fps - c).abs() / c < 0.004)
        .unwrap_or((fps * 1000.0).round() / 1000.0)
}

/// A new rendition in `dir/<its name>`, reporting its latency under its name; `None` (and a
/// warning) when its timeline settings are refused.
fn open_rendition(
    dir: &Path,
    metrics: &HlsMetrics,
    info: RenditionInfo,
    track: Track,
    cfg: TimelineConfig,
) -> Option<Rendition> {
    let name = info.name.clone();
    match Rendition::new(info, track, cfg, dir.join(&name)) {
        Ok(mut r) => {
            r.set_latency_gauges(latency_gauges(metrics, &name));
            Some(r)
        }
        Err(e) => {
            tracing::warn!(rendition = %name, error = %e, "cannot start a rendition");
            None
        }
    }
}

fn latency_gauges(metrics: &HlsMetrics, rendition: &str) -> LatencyGauges {
    LatencyGauges {
        part: metrics.part_latency_seconds.with_label_values(&[rendition]),
        segment: metrics
            .segment_latency_seconds
            .with_label_values(&[rendition]),
    }
}

/// One target duration and part target for every rendition of a ladder (the spec wants the
/// same `EXT-X-SERVER-CONTROL` on all of them).
fn ladder_timing(list: &[&Rendition]) -> Option<PlaylistTiming> {
    list.iter()
        .map(|r| r.timeline.timing())
        .reduce(PlaylistTiming::max)
}

/// The multivariant playlist of renditions: one audio group per audio codec, and every video
/// rendition listed once per group, AAC first (players that take the first variant they can play
/// then pick AAC, which every TV decodes).
pub fn multivariant(list: &[&Rendition]) -> MultivariantPlaylist {
    let audio: Vec<AudioRendition> = list
        .iter()
        .filter(|r| r.info.channels.is_some())
        .map(|r| {
            let (peak, avg) = r.timeline.bitrates().unwrap_or((128_000, 128_000));
            AudioRendition {
                group_id: audio_group(&r.info.codecs).into(),
                name: r.info.name.clone(),
                language: None,
                channels: r.info.channels.unwrap_or(2),
                codecs: r.info.codecs.clone(),
                default: true,
                autoselect: true,
                peak_bandwidth: peak,
                average_bandwidth: Some(avg),
                uri: format!("{}/index.m3u8", r.info.name),
            }
        })
        .collect();
    let mut groups: Vec<Option<String>> = Vec::new();
    for a in &audio {
        if !groups.contains(&Some(a.group_id.clone())) {
            groups.push(Some(a.group_id.clone()));
        }
    }
    if groups.is_empty() {
        groups.push(None);
    }
    let mut variants = Vec::new();
    for group in &groups {
        for r in list
            .iter()
            .filter(|r| r.info.resolution.is_some() && !r.retired)
        {
            let (peak, avg) = r.timeline.bitrates().unwrap_or((1_000_000, 1_000_000));
            variants.push(VideoVariant {
                uri: format!("{}/index.m3u8", r.info.name),
                codecs: r.info.codecs.clone(),
                peak_bandwidth: peak,
                average_bandwidth: Some(avg),
                resolution: r.info.resolution,
                frame_rate: r.info.frame_rate,
                audio_group: group.clone(),
            });
        }
    }
    MultivariantPlaylist { audio, variants }
}

/// The audio group of a codec string: `aac` for MPEG-4 audio, else the codec's name.
fn audio_group(codecs: &str) -> &str {
    if codecs.starts_with("mp4a") {
        "aac"
    } else {
        codecs.split('.').next().unwrap_or("audio")
    }
}

/// Extends 32-bit RTP timestamps to a monotonic 64-bit timeline starting at an offset.
struct Clock {
    last: Option<u32>,
    at: u64,
}

impl Clock {
    fn new() -> Self {
        Self { last: None, at: 0 }
    }

    /// Whether the first sample has been placed.
    fn started(&self) -> bool {
        self.last.is_some()
    }

    /// Decode time of RTP time `ts`; `offset` (ticks) places the first sample on the shared
    /// stream clock.
    fn dts(&mut self, ts: u32, offset: u64) -> u64 {
        match self.last {
            None => self.at = offset,
            Some(last) => {
                let step = ts.wrapping_sub(last) as i32;
                self.at = self.at.saturating_add_signed(i64::from(step));
            }
        }
        self.last = Some(ts);
        self.at
    }
}

/// The per-stream task.
struct Packager {
    stream: Arc<Stream>,
    sfu: Sfu,
    started: Instant,
    video: SourceVideo,
    audio: OpusDepacketizer,
    video_layer: Option<usize>,
    video_clock: Clock,
    audio_clock: Clock,
    last_keyframe_request: Option<Instant>,
    /// Source frame rate estimate: last decode time and smoothed frame interval (ticks).
    last_video_dts: Option<u64>,
    frame_ticks: Option<u64>,
    ladder_config: LadderConfig,
    ladder: Option<SyncSender<LadderJob>>,
    /// The ladder queue overflowed: skip frames until the next keyframe.
    ladder_dropping: bool,
    metrics: HlsMetrics,
    /// Opus→AAC transcoder; `None` when it could not be created (the Opus rendition stays).
    aac: Option<OpusToAac>,
    /// Places the first frame of each track from the sender reports.
    sync: Option<AvSync>,
    /// Latest sender reports of the audio and the packaged video layer.
    audio_sr: Option<SrMapping>,
    video_sr: Option<SrMapping>,
}

/// One source frame on its way to the ladder thread.
struct LadderJob {
    dts: u64,
    keyframe: bool,
    data: Bytes,
    wallclock: SystemTime,
    arrived: Instant,
}

impl Packager {
    fn new(
        stream: Arc<Stream>,
        sfu: Sfu,
        ladder_config: LadderConfig,
        metrics: HlsMetrics,
    ) -> Self {
        Self {
            stream,
            sfu,
            started: Instant::now(),
            video: SourceVideo::default(),
            audio: OpusDepacketizer::new(),
            video_layer: None,
            video_clock: Clock::new(),
            audio_clock: Clock::new(),
            last_keyframe_request: None,
            last_video_dts: None,
            frame_ticks: None,
            ladder_config,
            ladder: None,
            ladder_dropping: false,
            metrics,
            aac: OpusToAac::new(OpusToAacConfig::default())
                .inspect_err(|e| tracing::warn!(error = %e, "no AAC rendition"))
                .ok(),
            sync: None,
            audio_sr: None,
            video_sr: None,
        }
    }

    async fn run(mut self, mut rx: tokio::sync::mpsc::Receiver<Arc<SourcePacket>>) {
        let mut events = self.sfu.subscribe();
        self.request_keyframe();
        loop {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => self.on_packet(&p),
                    None => break,
                },
                e = events.recv() => match e {
                    Ok(SfuEvent::Offline { channel }) if *channel == *self.stream.channel => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    _ => {}
                },
            }
            // A newer publisher started a new stream and ended this one (an atomic load: this
            // runs per packet).
            if self.stream.ended() {
                return;
            }
        }
        self.stream.end();
    }

    fn request_keyframe(&mut self) {
        let now = Instant::now();
        if self
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_EVERY)
        {
            return;
        }
        self.last_keyframe_request = Some(now);
        self.sfu
            .request_keyframe(&self.stream.channel, self.video_layer.unwrap_or(0));
    }

    /// Where the first frame of a track goes on the stream clock (`None`: drop it and wait
    /// for the sender reports that place it).
    fn first_offset(&mut self, p: &SourcePacket, ts: u32, rate: u32) -> Option<u64> {
        let need_audio = p.track.audio.is_some();
        let started = self.started;
        let sync = self
            .sync
            .get_or_insert_with(|| AvSync::new(started, need_audio));
        let (own, other) = match p.kind {
            Kind::Audio => (self.audio_sr, self.video_sr),
            Kind::Video => (self.video_sr, self.audio_sr),
        };
        match sync.place(ts, rate, own, other, p.received) {
            Placement::At(offset) => Some(offset),
            Placement::Wait => None,
        }
    }

    fn on_packet(&mut self, p: &SourcePacket) {
        let rtp = RtpIn {
            seq: p.seq as u16,
            timestamp: p.ts,
            marker: p.marker,
            payload: &p.payload,
        };
        match p.kind {
            Kind::Audio => {
                if p.sr.is_some() {
                    self.audio_sr = p.sr;
                }
                let outs = self.audio.push(&rtp);
                for o in outs {
                    if let Output::Frame(f) = o {
                        let offset = if self.audio_clock.started() {
                            0
                        } else {
                            match self.first_offset(p, f.timestamp, 48_000) {
                                Some(o) => o,
                                None => continue,
                            }
                        };
                        let dts = self.audio_clock.dts(f.timestamp, offset);
                        self.on_audio(dts, f.data, p.received);
                    }
                }
            }
            Kind::Video => {
                // H.264, AV1 and VP8 sources are packaged; VP9 is not.
                let Some(codec) = p.track.video.as_ref().map(|v| v.codec) else {
                    return;
                };
                if !self.video.accepts(codec) {
                    return;
                }
                let best = p
                    .track
                    .video
                    .as_ref()
                    .and_then(|v| v.quality_order().last().copied())
                    .unwrap_or(0);
                let layer = *self.video_layer.get_or_insert(best);
                if p.layer != layer {
                    return;
                }
                if p.sr.is_some() {
                    self.video_sr = p.sr;
                }
                let outs = self.video.push(&rtp);
                for o in outs {
                    match o {
                        Output::Frame(f) => {
                            let offset = if self.video_clock.started() {
                                0
                            } else {
                                // The first packaged frame must be a keyframe anyway: wait for
                                // one that can be placed.
                                match self.first_offset(p, f.timestamp, 90_000) {
                                    Some(o) if f.keyframe => o,
                                    Some(_) => {
                                        self.request_keyframe();
                                        continue;
                                    }
                                    None => continue,
                                }
                            };
                            let dts = self.video_clock.dts(f.timestamp, offset);
                            self.on_video(dts, f.keyframe, f.data, p.received);
                        }
                        Output::NeedKeyframe => self.request_keyframe(),
                    }
                }
            }
        }
    }

    fn on_video(&mut self, dts: u64, keyframe: bool, data: Vec<u8>, arrived: Instant) {
        let now = SystemTime::now();
        if let Some(last) = self.last_video_dts
            && dts > last
            && dts - last <= TIMESCALE
        {
            let d = dts - last;
            self.frame_ticks = Some(self.frame_ticks.map_or(d, |f| (f * 7 + d).div_ceil(8)));
        }
        self.last_video_dts = Some(dts);
        let mut st = self.stream.state.lock();
        // VP8 has no HLS packaging: its stream only feeds the ladder.
        if st.video.is_none() && self.video.remuxed() {
            if !keyframe {
                drop(st);
                self.request_keyframe();
                return;
            }
            let Some((codec, (width, height))) = self.video.source_codec() else {
                return;
            };
            let rinfo = RenditionInfo {
                name: "source".into(),
                codecs: codec.rfc6381(),
                resolution: Some((width, height)),
                channels: None,
                frame_rate: None,
            };
            let track = Track {
                id: 1,
                timescale: 90_000,
                codec,
            };
            let cfg = TimelineConfig::new(90_000);
            match open_rendition(&self.stream.dir, &self.metrics, rinfo, track, cfg) {
                Some(r) => st.video = Some(r),
                None => return,
            }
        }
        let data = Bytes::from(data);
        if let Some(r) = st.video.as_mut() {
            if let Some(ticks) = self.frame_ticks {
                r.info.frame_rate = Some(snap_frame_rate(TIMESCALE as f64 / ticks as f64));
            }
            r.push(dts, keyframe, data.clone(), now, arrived);
        }
        drop(st);
        self.stream.notify();
        self.feed_ladder(LadderJob {
            dts,
            keyframe,
            data,
            wallclock: now,
            arrived,
        });
    }

    /// Queues a frame for the ladder thread (started with the first frame, a keyframe).
    fn feed_ladder(&mut self, job: LadderJob) {
        if !self.ladder_config.transcodes() {
            return;
        }
        if self.ladder.is_none() {
            self.ladder = self.spawn_ladder();
        }
        let Some(tx) = &self.ladder else {
            return;
        };
        let dropped = || self.metrics.dropped_frames.with_label_values(&["ladder"]);
        if self.ladder_dropping && !job.keyframe {
            dropped().inc();
            return;
        }
        match tx.try_send(job) {
            Ok(()) => self.ladder_dropping = false,
            Err(TrySendError::Full(_)) => {
                if !self.ladder_dropping {
                    tracing::warn!(channel = %self.stream.channel, "HLS ladder queue full; dropping frames up to the next keyframe");
                }
                self.ladder_dropping = true;
                dropped().inc();
                // The ladder resumes at a keyframe; ask for one rather than wait out the GOP.
                self.request_keyframe();
            }
            // The thread gave up (no rung to encode, or no decoder): stop feeding it.
            Err(TrySendError::Disconnected(_)) => {
                self.ladder_config.disable();
                self.ladder = None;
            }
        }
    }

    fn spawn_ladder(&mut self) -> Option<SyncSender<LadderJob>> {
        let (tx, rx) = sync_channel(LADDER_QUEUE);
        let stream = self.stream.clone();
        let sfu = self.sfu.clone();
        let layer = self.video_layer.unwrap_or(0);
        let cfg = self.ladder_config.clone();
        let metrics = self.metrics.clone();
        let codec = self.video.codec();
        let spawned = std::thread::Builder::new()
            .name(format!("hls-ladder-{}", self.stream.channel))
            .spawn(move || run_ladder(stream, sfu, layer, codec, cfg, metrics, rx));
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the HLS ladder thread");
                self.ladder_config.disable();
                None
            }
        }
    }

    fn on_audio(&mut self, dts: u64, data: Vec<u8>, arrived: Instant) {
        let now = SystemTime::now();
        let mut st = self.stream.state.lock();
        if st.audio.is_none() {
            let codec = Codec::Opus {
                channels: 2,
                pre_skip: 312,
                input_sample_rate: 48_000,
            };
            let rinfo = RenditionInfo {
                name: "audio".into(),
                codecs: codec.rfc6381(),
                resolution: None,
                channels: Some(2),
                frame_rate: None,
            };
            let track = Track {
                id: 1,
                timescale: 48_000,
                codec,
            };
            let cfg = TimelineConfig::new(48_000);
            match open_rendition(&self.stream.dir, &self.metrics, rinfo, track, cfg) {
                Some(r) => st.audio = Some(r),
                None => return,
            }
        }
        drop(st);
        // Encode outside the stream lock: playlist requests wait on it.
        let aac_frames = self
            .aac
            .as_mut()
            .map(|t| t.push(dts, &data))
            .unwrap_or_default();
        let mut st = self.stream.state.lock();
        if let Some(r) = st.audio.as_mut() {
            r.push(dts, true, Bytes::from(data), now, arrived);
        }
        if let (Some(t), false) = (&self.aac, aac_frames.is_empty()) {
            if st.aac.is_none() {
                let track = t.track(1);
                let rinfo = RenditionInfo {
                    name: "aac".into(),
                    codecs: track.codec.rfc6381(),
                    resolution: None,
                    channels: Some(2),
                    frame_rate: None,
                };
                let cfg = TimelineConfig::new(48_000);
                st.aac = open_rendition(&self.stream.dir, &self.metrics, rinfo, track, cfg);
            }
            if let Some(r) = st.aac.as_mut() {
                for f in aac_frames {
                    r.push(f.dts, true, f.data, now, arrived);
                }
            }
        }
        drop(st);
        self.stream.notify();
    }
}

/// The ladder thread of one stream: decode, scale, encode, publish, until the stream ends or
/// the packager drops its end of the queue.
fn run_ladder(
    stream: Arc<Stream>,
    sfu: Sfu,
    layer: usize,
    codec: Option<VideoCodec>,
    cfg: LadderConfig,
    metrics: HlsMetrics,
    rx: Receiver<LadderJob>,
) {
    let decoder = match source_decoder(codec) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the HLS ladder decoder");
            return;
        }
    };
    let mut ladder = Ladder::new(cfg, decoder);
    let mut last_request: Option<Instant> = None;
    let mut timing = VecDeque::with_capacity(TIMING_KEPT);
    let dropped = metrics.dropped_frames.with_label_values(&["ladder"]);
    let decode_seconds = metrics.encode_seconds.with_label_values(&["source"]);
    // Rungs are planned once (shedding only deactivates them): their names are read then.
    let mut names: Vec<String> = Vec::new();
    while let Ok(job) = rx.recv() {
        if stream.ended() {
            return;
        }
        if timing.len() == TIMING_KEPT {
            timing.pop_front();
        }
        timing.push_back((job.dts, job.wallclock, job.arrived));
        let out = ladder.push(&SourceFrame {
            dts: job.dts,
            keyframe: job.keyframe,
            data: &job.data,
        });
        if names.is_empty() {
            names = ladder.rungs().iter().map(|r| r.name.clone()).collect();
        }
        let name = |i: usize| names.get(i).map_or("?", String::as_str);
        if let Some(d) = out.decode_time {
            decode_seconds.observe(d.as_secs_f64());
        }
        for &(i, d) in &out.encode_times {
            metrics
                .encode_seconds
                .with_label_values(&[name(i)])
                .observe(d.as_secs_f64());
        }
        if out.dropped {
            dropped.inc();
        }
        if out.need_keyframe && last_request.is_none_or(|t| t.elapsed() >= KEYFRAME_EVERY) {
            last_request = Some(Instant::now());
            sfu.request_keyframe(&stream.channel, layer);
        }
        if let Some(report) = &out.report {
            metrics
                .realtime_factor
                .with_label_values(&["ladder"])
                .set(report.realtime_factor);
            for &(i, f) in &report.rungs {
                metrics.realtime_factor.with_label_values(&[name(i)]).set(f);
            }
        }
        if let Some(i) = out.shed {
            let factor = out.report.as_ref().map_or(0.0, |r| r.realtime_factor);
            tracing::warn!(
                channel = %stream.channel,
                rendition = name(i),
                realtime_factor = factor,
                "HLS ladder behind real time; shedding its most expensive rendition"
            );
            metrics.shed_renditions.with_label_values(&[name(i)]).inc();
            stream.retire_rung(i);
        }
        for &i in &out.failed {
            stream.retire_rung(i);
        }
        if !out.frames.is_empty() {
            stream.publish_rungs(&ladder, out.frames, &job, &timing, &metrics);
        }
        if ladder.is_idle() {
            // Nothing below the source size, or everything shed: the source rendition is all.
            return;
        }
    }
}

/// The newest recorded stream directory of a channel that has a VOD multivariant playlist.
pub fn latest_recording(channel_dir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<(u128, PathBuf)> = std::fs::read_dir(channel_dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let id: u128 = e.file_name().to_str()?.parse().ok()?;
            e.path()
                .join(crate::storage::MASTER)
                .is_file()
                .then(|| (id, e.path()))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// The source video's depacketizer, chosen by the track's codec at its first packet.
#[derive(Default)]
enum SourceVideo {
    #[default]
    Unknown,
    H264(H264Depacketizer),
    Av1(crate::depacketize::Av1Depacketizer),
    Vp8(crate::depacketize::Vp8Depacketizer),
}

impl SourceVideo {
    /// Whether packets of `codec` can be packaged (creating the depacketizer on the first).
    fn accepts(&mut self, codec: VideoCodec) -> bool {
        if matches!(self, SourceVideo::Unknown) {
            *self = match codec {
                VideoCodec::H264 => SourceVideo::H264(H264Depacketizer::new()),
                VideoCodec::Av1 => SourceVideo::Av1(crate::depacketize::Av1Depacketizer::new()),
                VideoCodec::Vp8 => SourceVideo::Vp8(crate::depacketize::Vp8Depacketizer::new()),
                VideoCodec::Vp9 => return false,
            };
        }
        self.codec() == Some(codec)
    }

    fn codec(&self) -> Option<VideoCodec> {
        match self {
            SourceVideo::Unknown => None,
            SourceVideo::H264(_) => Some(VideoCodec::H264),
            SourceVideo::Av1(_) => Some(VideoCodec::Av1),
            SourceVideo::Vp8(_) => Some(VideoCodec::Vp8),
        }
    }

    fn push(&mut self, rtp: &RtpIn<'_>) -> Vec<Output> {
        match self {
            SourceVideo::Unknown => Vec::new(),
            SourceVideo::H264(d) => d.push(rtp),
            SourceVideo::Av1(d) => d.push(rtp),
            SourceVideo::Vp8(d) => d.push(rtp),
        }
    }

    /// Whether the source is also served as it is (a `source` rendition).
    fn remuxed(&self) -> bool {
        matches!(self, SourceVideo::H264(_) | SourceVideo::Av1(_))
    }

    /// The `source` rendition's sample entry and size, from the parameter sets seen so far.
    fn source_codec(&self) -> Option<(Codec, (u32, u32))> {
        match self {
            SourceVideo::H264(d) => {
                let (sps, pps) = (d.sps()?, d.pps()?);
                let info = parse_h264_sps(sps)?;
                let codec = Codec::H264 {
                    sps: sps.to_vec(),
                    pps: pps.to_vec(),
                    width: u16::try_from(info.width).unwrap_or(u16::MAX),
                    height: u16::try_from(info.height).unwrap_or(u16::MAX),
                };
                Some((codec, (info.width, info.height)))
            }
            SourceVideo::Av1(d) => av1_codec(d.sequence_header()?),
            SourceVideo::Unknown | SourceVideo::Vp8(_) => None,
        }
    }
}

/// The `av01` sample entry and picture size of an AV1 sequence header OBU: the source remux's
/// and the AV1 rung's.
fn av1_codec(obu: &[u8]) -> Option<(Codec, (u32, u32))> {
    let seq = crate::depacketize::parse_av1_sequence_header(obu)?;
    let (w, h) = (seq.max_frame_width, seq.max_frame_height);
    let codec = Codec::Av1 {
        sequence_header: obu.to_vec(),
        width: u16::try_from(w).unwrap_or(u16::MAX),
        height: u16::try_from(h).unwrap_or(u16::MAX),
        config: crate::fmp4::Av1Config::from(&seq),
    };
    Some((codec, (w, h)))
}

/// The ladder's decoder for a source codec: openh264, dav1d or libvpx.
fn source_decoder(
    codec: Option<VideoCodec>,
) -> Result<Box<dyn crate::ladder::VideoDecoder>, crate::ladder::DecodeError> {
    Ok(match codec {
        Some(VideoCodec::H264) => Box::new(H264Decoder::new()?),
        Some(VideoCodec::Av1) => Box::new(crate::ladder::Av1Decoder::new()?),
        Some(VideoCodec::Vp8) => Box::new(crate::ladder::Vp8Decoder::new()?),
        Some(VideoCodec::Vp9) | None => {
            return Err(crate::ladder::DecodeError::Codec(format!(
                "no ladder decoder for {codec:?}"
            )));
        }
    })
}
