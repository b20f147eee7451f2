//! The IO shell of the HLS fallback: for each channel that goes live, a task taps the SFU
//! in-process, depacketizes the best simulcast layer and the audio, and packages them into
//! LL-HLS renditions; HTTP handlers read the renditions and block on their changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use onair_sfu::payload::VideoCodec;
use onair_sfu::track::{Kind, SourcePacket};
use onair_sfu::{Sfu, SfuEvent};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::depacketize::{
    Depacketizer, H264Depacketizer, OpusDepacketizer, Output, RtpIn, parse_h264_sps,
};
use crate::fmp4::{Codec, Track};
use crate::playlist::{
    AudioRendition, MultivariantPlaylist, PlaylistTiming, TimelineConfig, VideoVariant,
};
use crate::rendition::{Rendition, RenditionInfo};

/// Packets a stream's task may fall behind the SFU before it loses some.
const TAP_CAPACITY: usize = 8192;
/// Keyframe requests upstream, at most this often.
const KEYFRAME_EVERY: Duration = Duration::from_secs(1);

/// The HLS service of a node.
#[derive(Clone)]
pub struct Hls {
    inner: Arc<HlsInner>,
}

struct HlsInner {
    sfu: Sfu,
    root: PathBuf,
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
    audio: Option<Rendition>,
}

impl Hls {
    /// HLS for the channels of `sfu`, files under `root` (`<root>/<channel>/<stream>/...`).
    pub fn start(sfu: Sfu, root: PathBuf) -> Self {
        let hls = Hls {
            inner: Arc::new(HlsInner {
                sfu,
                root,
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
        self.inner.root.join(channel)
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
            dir: self.inner.root.join(channel).join(id),
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
        tokio::spawn(async move {
            Packager::new(stream, sfu).run(rx).await;
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
        let st = &mut *guard;
        for r in st.video.iter_mut().chain(st.audio.iter_mut()) {
            r.finish(now);
        }
        let list = st.renditions();
        let timing = ladder_timing(&list);
        for r in &list {
            r.write_vod(timing);
        }
        if let Ok(text) = multivariant(&list).render("")
            && let Err(e) = std::fs::write(self.dir.join("master.m3u8"), text)
        {
            tracing::warn!(error = %e, "cannot write the VOD multivariant playlist");
        }
        self.ended.store(true, Ordering::Release);
        drop(guard);
        self.notify();
    }
}

impl StreamState {
    /// Video first, then audio.
    fn renditions(&self) -> Vec<&Rendition> {
        self.video.iter().chain(self.audio.iter()).collect()
    }
}

/// One target duration and part target for every rendition of a ladder (the spec wants the
/// same `EXT-X-SERVER-CONTROL` on all of them).
fn ladder_timing(list: &[&Rendition]) -> Option<PlaylistTiming> {
    list.iter()
        .map(|r| r.timeline.timing())
        .reduce(PlaylistTiming::max)
}

/// The multivariant playlist of renditions (video variants with the audio group).
pub fn multivariant(list: &[&Rendition]) -> MultivariantPlaylist {
    let audio: Vec<AudioRendition> = list
        .iter()
        .filter(|r| r.info.channels.is_some())
        .map(|r| {
            let (peak, avg) = r.timeline.bitrates().unwrap_or((128_000, 128_000));
            AudioRendition {
                group_id: "audio".into(),
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
    let group = (!audio.is_empty()).then(|| "audio".to_string());
    let variants = list
        .iter()
        .filter(|r| r.info.resolution.is_some())
        .map(|r| {
            let (peak, avg) = r.timeline.bitrates().unwrap_or((1_000_000, 1_000_000));
            VideoVariant {
                uri: format!("{}/index.m3u8", r.info.name),
                codecs: r.info.codecs.clone(),
                peak_bandwidth: peak,
                average_bandwidth: Some(avg),
                resolution: r.info.resolution,
                frame_rate: None,
                audio_group: group.clone(),
            }
        })
        .collect();
    MultivariantPlaylist { audio, variants }
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
    video: H264Depacketizer,
    audio: OpusDepacketizer,
    video_layer: Option<usize>,
    video_clock: Clock,
    audio_clock: Clock,
    last_keyframe_request: Option<Instant>,
}

impl Packager {
    fn new(stream: Arc<Stream>, sfu: Sfu) -> Self {
        Self {
            stream,
            sfu,
            started: Instant::now(),
            video: H264Depacketizer::new(),
            audio: OpusDepacketizer::new(),
            video_layer: None,
            video_clock: Clock::new(),
            audio_clock: Clock::new(),
            last_keyframe_request: None,
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

    /// Ticks since the stream started, on a clock of `rate` Hz (aligns audio and video by
    /// arrival time until sender reports take over).
    fn offset(&self, at: Instant, rate: u64) -> u64 {
        let d = at.saturating_duration_since(self.started);
        (d.as_micros() as u64).saturating_mul(rate) / 1_000_000
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
                let outs = self.audio.push(&rtp);
                for o in outs {
                    if let Output::Frame(f) = o {
                        let offset = self.offset(p.received, 48_000);
                        let dts = self.audio_clock.dts(f.timestamp, offset);
                        self.on_audio(dts, f.data);
                    }
                }
            }
            Kind::Video => {
                // Only H.264 sources are packaged so far (AV1/VP8 need the transcoded ladder).
                if p.track.video.as_ref().map(|v| v.codec) != Some(VideoCodec::H264) {
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
                let outs = self.video.push(&rtp);
                for o in outs {
                    match o {
                        Output::Frame(f) => {
                            let offset = self.offset(p.received, 90_000);
                            let dts = self.video_clock.dts(f.timestamp, offset);
                            self.on_video(dts, f.keyframe, f.data);
                        }
                        Output::NeedKeyframe => self.request_keyframe(),
                    }
                }
            }
        }
    }

    fn on_video(&mut self, dts: u64, keyframe: bool, data: Vec<u8>) {
        let now = SystemTime::now();
        let mut st = self.stream.state.lock();
        if st.video.is_none() {
            if !keyframe {
                drop(st);
                self.request_keyframe();
                return;
            }
            let (Some(sps), Some(pps)) = (self.video.sps(), self.video.pps()) else {
                return;
            };
            let Some(info) = parse_h264_sps(sps) else {
                return;
            };
            let codec = Codec::H264 {
                sps: sps.to_vec(),
                pps: pps.to_vec(),
                width: u16::try_from(info.width).unwrap_or(u16::MAX),
                height: u16::try_from(info.height).unwrap_or(u16::MAX),
            };
            let rinfo = RenditionInfo {
                name: "source".into(),
                codecs: codec.rfc6381(),
                resolution: Some((info.width, info.height)),
                channels: None,
            };
            let track = Track {
                id: 1,
                timescale: 90_000,
                codec,
            };
            match Rendition::new(
                rinfo,
                track,
                TimelineConfig::new(90_000),
                self.stream.dir.join("source"),
            ) {
                Ok(r) => st.video = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the source rendition");
                    return;
                }
            }
        }
        if let Some(r) = st.video.as_mut() {
            r.push(dts, keyframe, Bytes::from(data), now);
        }
        drop(st);
        self.stream.notify();
    }

    fn on_audio(&mut self, dts: u64, data: Vec<u8>) {
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
            };
            let track = Track {
                id: 1,
                timescale: 48_000,
                codec,
            };
            match Rendition::new(
                rinfo,
                track,
                TimelineConfig::new(48_000),
                self.stream.dir.join("audio"),
            ) {
                Ok(r) => st.audio = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the audio rendition");
                    return;
                }
            }
        }
        if let Some(r) = st.audio.as_mut() {
            r.push(dts, true, Bytes::from(data), now);
        }
        drop(st);
        self.stream.notify();
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
                .join("master.m3u8")
                .is_file()
                .then(|| (id, e.path()))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}
