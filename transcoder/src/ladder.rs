//! The transcoded H.264 ABR ladder of the HLS fallback (DESIGN §2): decode the source, scale it
//! to each rung, encode each rung with keyframes aligned across the ladder. An opt-in AV1 rung
//! (rav1e, [`LadderConfig::av1_height`]) rides the same machinery: same keyframes, same load
//! accounting, shed like any other rung.
//!
//! [`Ladder`] is a sans-IO state machine: frames with their decode times go in, encoded frames
//! per rung come out. The only clock it reads is the one it is given, to measure its own work;
//! from that it keeps a rolling real-time factor and sheds the most expensive rung when it
//! cannot keep up. The thread that feeds it, and the channel in front of that thread, live in
//! [`crate::live`].
//!
//! Adding a source codec: implement [`VideoDecoder`] in a file of its own (e.g.
//! `ladder/decode_av1.rs` with dav1d, `ladder/decode_vp8.rs` with libvpx) for the frames that
//! codec's depacketizer produces, convert its output to a [`Picture`] (I420, 8 bit), and pass a
//! boxed instance to [`Ladder::new`]. Nothing else in the ladder knows the source codec.

mod decode_av1;
mod decode_h264;
mod decode_vp8;
mod encode_av1;
mod encode_h264;
pub mod scale;
#[cfg(test)]
mod test_clip;

use std::time::{Duration, Instant};

pub use decode_av1::Av1Decoder;
pub use decode_h264::H264Decoder;
pub use decode_vp8::Vp8Decoder;
pub use encode_av1::{AV1_BITRATE_SHARE, Av1Encoder, Av1Frame};
pub use encode_h264::H264Encoder;
pub use scale::{Scaler, rung_size};

use crate::config::LadderConfig;

/// Media clock of video decode times (RTP video clock).
pub const TIMESCALE: u64 = 90_000;
/// The rolling window over which the real-time factor is judged.
pub const LOAD_WINDOW: Duration = Duration::from_secs(3);
/// Below this real-time factor over a window the ladder sheds a rung.
pub const SHED_BELOW: f64 = 1.0;
/// Decoded pictures that measure the source frame rate before the rungs start.
pub const PLAN_AFTER_PICTURES: u64 = 8;

/// An 8-bit I420 picture: planes Y, U, V with their strides; chroma is half size both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picture {
    /// Luma width in pixels (even).
    pub width: u32,
    /// Luma height in pixels (even).
    pub height: u32,
    /// Y, U and V samples.
    pub planes: [Vec<u8>; 3],
    /// Bytes from one row to the next, per plane.
    pub strides: [usize; 3],
}

impl Picture {
    /// Makes this a tightly packed `width` x `height` picture, reusing its buffers (the contents
    /// are unspecified afterwards).
    pub fn reset(&mut self, width: u32, height: u32) {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        self.width = width;
        self.height = height;
        self.strides = [w, cw, cw];
        self.planes[0].resize(w * h, 0);
        self.planes[1].resize(cw * ch, 0);
        self.planes[2].resize(cw * ch, 0);
    }

    /// Whether every plane holds as many rows of its stride as the size needs.
    pub fn is_consistent(&self) -> bool {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let fits = |p: usize, pw: usize, ph: usize| {
            let s = self.strides[p];
            s >= pw && (ph == 0 || self.planes[p].len() >= s * (ph - 1) + pw)
        };
        w > 0 && h > 0 && fits(0, w, h) && fits(1, cw, ch) && fits(2, cw, ch)
    }
}

/// One compressed source frame as its depacketizer delivers it.
#[derive(Debug, Clone, Copy)]
pub struct SourceFrame<'a> {
    /// Decode time in [`TIMESCALE`] ticks on the stream clock.
    pub dts: u64,
    /// Decoding can start here.
    pub keyframe: bool,
    /// Codec-specific bytes (H.264: AVCC access unit; AV1: temporal unit; VP8: frame).
    pub data: &'a [u8],
}

/// Why a frame could not be decoded; the ladder then waits for the next source keyframe.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame's bytes do not parse.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The decoder refused the frame.
    #[error("decoder error: {0}")]
    Codec(String),
}

/// A source decoder; one per stream, driven from the ladder's thread.
///
/// Implementations must not panic on any input: return [`DecodeError`] and the ladder drops
/// frames until the next keyframe and asks the publisher for one.
pub trait VideoDecoder: Send {
    /// Decodes one frame (in decode order) into `out`, reusing its buffers. `Ok(true)` when a
    /// picture was written, `Ok(false)` when the decoder needs more frames first.
    fn decode(&mut self, frame: &SourceFrame<'_>, out: &mut Picture) -> Result<bool, DecodeError>;
}

/// Target bitrate of a rung of `height` at `fps`: 720p 2.5 Mbit/s, 480p 1.2, 360p 0.7 at 30 fps,
/// scaled by pixel count between table rows and sub-linearly with the frame rate.
pub fn rung_bitrate(width: u32, height: u32, fps: f64) -> u32 {
    const TABLE: [(u32, u32, f64); 7] = [
        (1920, 1080, 4_500_000.0),
        (1280, 720, 2_500_000.0),
        (854, 480, 1_200_000.0),
        (640, 360, 700_000.0),
        (426, 240, 400_000.0),
        (320, 180, 250_000.0),
        (256, 144, 180_000.0),
    ];
    let pixels = f64::from(width) * f64::from(height);
    let (w, h, rate) = TABLE
        .iter()
        .copied()
        .find(|&(_, h, _)| h <= height)
        .unwrap_or(TABLE[TABLE.len() - 1]);
    let base = rate * (pixels / (f64::from(w) * f64::from(h))).powf(0.75);
    // Doubling the frame rate needs well under twice the bits (smaller deltas per frame).
    let fps_factor = (fps.clamp(5.0, 120.0) / 30.0).powf(0.6);
    (base * fps_factor).clamp(64_000.0, 20_000_000.0) as u32
}

/// The codec of a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RungCodec {
    /// openh264, the ladder proper.
    H264,
    /// rav1e, the opt-in AV1 rendition.
    Av1,
}

/// What one rung is.
#[derive(Debug, Clone, PartialEq)]
pub struct RungSpec {
    /// Rendition name, e.g. `480p` or `av1-360p`.
    pub name: String,
    /// Its codec.
    pub codec: RungCodec,
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Target bitrate.
    pub bitrate_bps: u32,
    /// Frame rate the encoder was set up for (the source's).
    pub fps: f64,
}

/// The rungs worth encoding for a `src_w` x `src_h` source: those strictly below the source
/// height, largest first, without duplicates.
pub fn plan_rungs(heights: &[u32], src_w: u32, src_h: u32, fps: f64) -> Vec<RungSpec> {
    let mut out: Vec<RungSpec> = Vec::new();
    let mut sorted: Vec<u32> = heights.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    for h in sorted {
        let (w, h) = rung_size(src_w, src_h, h);
        if h >= src_h || out.iter().any(|r| r.height == h) {
            continue;
        }
        out.push(RungSpec {
            name: format!("{h}p"),
            codec: RungCodec::H264,
            width: w,
            height: h,
            bitrate_bps: rung_bitrate(w, h, fps),
            fps,
        });
    }
    out
}

/// The AV1 rung for a `src_w` x `src_h` source: at `height`, or at the source height when that
/// is lower (an AV1 picture as large as the source still saves bits over it).
pub fn plan_av1_rung(height: u32, src_w: u32, src_h: u32, fps: f64) -> RungSpec {
    let (w, h) = rung_size(src_w, src_h, height.min(src_h));
    RungSpec {
        name: format!("av1-{h}p"),
        codec: RungCodec::Av1,
        width: w,
        height: h,
        bitrate_bps: (f64::from(rung_bitrate(w, h, fps)) * AV1_BITRATE_SHARE) as u32,
        fps,
    }
}

/// An encoder failure (the rung is dropped from the ladder).
#[derive(Debug, thiserror::Error)]
#[error("encoder: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// One encoded picture in its rendition's sample format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPicture {
    /// H.264: 4-byte length-prefixed NAL units, an IDR with its SPS and PPS in-band too. AV1: a
    /// temporal unit of OBUs with `obu_size`, no temporal delimiter.
    pub data: Vec<u8>,
    /// An IDR / AV1 key frame.
    pub idr: bool,
    /// H.264: the SPS NAL unit (header byte included) that came with an IDR.
    pub sps: Option<Vec<u8>>,
    /// H.264: the PPS NAL unit that came with an IDR.
    pub pps: Option<Vec<u8>>,
    /// AV1: the sequence header OBU (with `obu_size`) that came with a key frame.
    pub sequence_header: Option<Vec<u8>>,
}

/// One encoded frame of one rung.
#[derive(Debug, Clone)]
pub struct RungFrame {
    /// Index of the rung in [`Ladder::rungs`].
    pub rung: usize,
    /// The source frame's decode time, so every rung and the audio share one timeline.
    pub dts: u64,
    /// An IDR placed by the ladder at a segment boundary (the same frame in every rung).
    pub keyframe: bool,
    /// The encoded picture, with its parameter sets when it is an IDR / key frame.
    pub picture: EncodedPicture,
}

/// The real-time factors of one closed load window.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Media time of the window over the ladder's whole work time (decode, scale, encode).
    pub realtime_factor: f64,
    /// Per active rung: media time over that rung's scale+encode time.
    pub rungs: Vec<(usize, f64)>,
}

/// What one [`Ladder::push`] produced.
#[derive(Debug, Default)]
pub struct LadderOutput {
    /// Encoded frames, in rung order.
    pub frames: Vec<RungFrame>,
    /// The source frame was undecodable (or followed one that was): ask upstream for a keyframe.
    pub need_keyframe: bool,
    /// The frame was dropped without output (undecodable, or waiting for a keyframe).
    pub dropped: bool,
    /// Time spent decoding this frame.
    pub decode_time: Option<Duration>,
    /// Time spent scaling and encoding, per rung.
    pub encode_times: Vec<(usize, Duration)>,
    /// Set when a load window closed with this frame.
    pub report: Option<LoadReport>,
    /// A rung shed with this frame (the ladder fell behind real time).
    pub shed: Option<usize>,
    /// Rungs whose encoder failed and were removed.
    pub failed: Vec<usize>,
}

/// Decides which source frames become IDRs in every rung: the first one, then the first frame
/// at least one segment after the previous IDR, so each segment holds exactly one.
#[derive(Debug, Clone)]
pub struct KeyframeAligner {
    segment_ticks: u64,
    last: Option<u64>,
}

impl KeyframeAligner {
    /// IDRs every `segment` of media time.
    pub fn new(segment: Duration) -> Self {
        let ticks = u64::try_from(segment.as_micros() * u128::from(TIMESCALE) / 1_000_000)
            .unwrap_or(u64::MAX);
        Self {
            segment_ticks: ticks.max(1),
            last: None,
        }
    }

    /// Whether the frame at `dts` must be an IDR in every rung.
    pub fn is_boundary(&mut self, dts: u64) -> bool {
        let due = match self.last {
            None => true,
            // A timestamp going backwards (a new clock origin) restarts the cadence.
            Some(last) => dts < last || dts - last >= self.segment_ticks,
        };
        if due {
            self.last = Some(dts);
        }
        due
    }
}

/// Rolling load accounting: media time against work time over [`LOAD_WINDOW`].
#[derive(Debug, Clone, Default)]
struct LoadWindow {
    media: Duration,
    work: Duration,
    rung_work: Vec<(usize, Duration)>,
}

impl LoadWindow {
    fn add(&mut self, media: Duration, decode: Duration, rungs: &[(usize, Duration)]) {
        self.media += media;
        self.work += decode;
        for &(i, d) in rungs {
            self.work += d;
            match self.rung_work.iter_mut().find(|(j, _)| *j == i) {
                Some((_, w)) => *w += d,
                None => self.rung_work.push((i, d)),
            }
        }
    }

    /// Closes the window once it spans [`LOAD_WINDOW`] of media.
    fn close(&mut self) -> Option<(LoadReport, Option<usize>)> {
        if self.media < LOAD_WINDOW {
            return None;
        }
        let factor = |work: Duration| self.media.as_secs_f64() / work.as_secs_f64().max(1e-9);
        let report = LoadReport {
            realtime_factor: factor(self.work),
            rungs: self
                .rung_work
                .iter()
                .map(|&(i, w)| (i, factor(w)))
                .collect(),
        };
        // The most expensive rung is the one with the most work in the window.
        let heaviest = self
            .rung_work
            .iter()
            // Ties go to the larger rung (the lower index).
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|&(i, _)| i);
        *self = LoadWindow::default();
        Some((report, heaviest))
    }
}

/// A rung's encoder. Both take every picture the ladder scales and return what came out, with
/// the decode time and keyframe decision of the source frame each came from. Boxed: openh264's
/// state alone is 7 KB, moved around as the ladder plans its rungs.
enum RungEncoder {
    H264(Box<H264Encoder>),
    Av1(Box<Av1Encoder>),
}

impl RungEncoder {
    fn new(spec: &RungSpec, speed: crate::config::EncoderSpeed) -> Result<Self, EncodeError> {
        Ok(match spec.codec {
            RungCodec::H264 => RungEncoder::H264(Box::new(H264Encoder::new(
                spec.bitrate_bps,
                spec.fps as f32,
                speed,
            )?)),
            RungCodec::Av1 => RungEncoder::Av1(Box::new(Av1Encoder::new(
                spec.width,
                spec.height,
                spec.bitrate_bps,
                spec.fps,
                speed,
            )?)),
        })
    }

    /// Encodes the picture of the source frame at `dts`; `keyframe` asks for an aligned
    /// keyframe. Appends `(dts, aligned keyframe, picture)` for each picture that came out.
    fn encode(
        &mut self,
        picture: &Picture,
        dts: u64,
        keyframe: bool,
        out: &mut Vec<(u64, bool, EncodedPicture)>,
    ) -> Result<(), EncodeError> {
        match self {
            RungEncoder::H264(enc) => {
                // openh264's rate control runs on a millisecond clock.
                if let Some(p) = enc.encode(picture, dts * 1000 / TIMESCALE, keyframe)? {
                    out.push((dts, keyframe && p.idr, p));
                }
            }
            RungEncoder::Av1(enc) => {
                for f in enc.encode(picture, dts, keyframe)? {
                    out.push((f.dts, f.forced_key, f.picture));
                }
            }
        }
        Ok(())
    }
}

struct Rung {
    spec: RungSpec,
    scaler: Option<Scaler>,
    scaled: Picture,
    encoder: Option<RungEncoder>,
    active: bool,
}

/// The decode → scale → encode state machine of one stream; see the [module docs](self).
pub struct Ladder {
    cfg: LadderConfig,
    decoder: Box<dyn VideoDecoder>,
    clock: Box<dyn FnMut() -> Duration + Send>,
    picture: Picture,
    rungs: Vec<Rung>,
    /// Decode time of the first picture and pictures seen, until the frame rate is measured.
    first: Option<(u64, u64)>,
    planned: bool,
    waiting_keyframe: bool,
    last_dts: Option<u64>,
    frame_ticks: u64,
    aligner: KeyframeAligner,
    load: LoadWindow,
}

impl Ladder {
    /// A ladder over `decoder`'s pictures, timed by the monotonic clock.
    pub fn new(cfg: LadderConfig, decoder: Box<dyn VideoDecoder>) -> Self {
        let origin = Instant::now();
        Self::with_clock(cfg, decoder, Box::new(move || origin.elapsed()))
    }

    /// A ladder that measures its work with `clock` (time since any fixed origin); tests pass
    /// a synthetic one.
    pub fn with_clock(
        cfg: LadderConfig,
        decoder: Box<dyn VideoDecoder>,
        clock: Box<dyn FnMut() -> Duration + Send>,
    ) -> Self {
        let aligner = KeyframeAligner::new(cfg.segment);
        Self {
            cfg,
            decoder,
            clock,
            picture: Picture::default(),
            rungs: Vec::new(),
            first: None,
            planned: false,
            waiting_keyframe: false,
            last_dts: None,
            frame_ticks: TIMESCALE / 30,
            aligner,
            load: LoadWindow::default(),
        }
    }

    /// The rungs (planned once the source size and frame rate are known), shed ones included.
    pub fn rungs(&self) -> Vec<&RungSpec> {
        self.rungs.iter().map(|r| &r.spec).collect()
    }

    /// Whether rung `i` is still being encoded.
    pub fn is_active(&self, i: usize) -> bool {
        self.rungs.get(i).is_some_and(|r| r.active)
    }

    /// Whether there is nothing left to encode (no rung below the source, or all shed).
    pub fn is_idle(&self) -> bool {
        (self.planned && !self.rungs.iter().any(|r| r.active)) || !self.cfg.transcodes()
    }

    /// Keyframe interval and segment duration of the rungs.
    pub fn segment(&self) -> Duration {
        self.cfg.segment
    }

    /// Measured source frame rate.
    pub fn fps(&self) -> f64 {
        TIMESCALE as f64 / self.frame_ticks.max(1) as f64
    }

    /// Decodes one source frame and encodes it into every active rung.
    pub fn push(&mut self, frame: &SourceFrame<'_>) -> LadderOutput {
        let mut out = LadderOutput::default();
        if self.is_idle() {
            return out;
        }
        if self.waiting_keyframe && !frame.keyframe {
            out.dropped = true;
            return out;
        }
        let t0 = (self.clock)();
        match self.decoder.decode(frame, &mut self.picture) {
            Ok(true) => self.waiting_keyframe = false,
            Ok(false) => return out,
            Err(e) => {
                tracing::debug!(error = %e, "ladder: undecodable source frame");
                self.waiting_keyframe = true;
                out.need_keyframe = true;
                out.dropped = true;
                return out;
            }
        }
        let t1 = (self.clock)();
        out.decode_time = Some(t1.saturating_sub(t0));

        // Media time this frame stands for; a gap (dropped frames) counts as one frame.
        let media_ticks = match self.last_dts {
            Some(last) if frame.dts > last => {
                let d = frame.dts - last;
                if d <= TIMESCALE {
                    if self.planned {
                        self.frame_ticks = (self.frame_ticks * 15 + d).div_ceil(16);
                    }
                    d
                } else {
                    self.frame_ticks
                }
            }
            _ => self.frame_ticks,
        };
        self.last_dts = Some(frame.dts);

        if !self.planned {
            // The rung encoders need the frame rate; single frame intervals jitter with the
            // publisher's capture clock, so it is averaged over the first pictures.
            let (first_dts, seen) = self.first.get_or_insert((frame.dts, 0));
            *seen += 1;
            if *seen < PLAN_AFTER_PICTURES {
                return out;
            }
            if frame.dts > *first_dts {
                self.frame_ticks = ((frame.dts - *first_dts) / (*seen - 1)).clamp(1, TIMESCALE);
            }
            self.plan();
            if self.is_idle() {
                return out;
            }
        }

        let idr = self.aligner.is_boundary(frame.dts);
        let mut t = t1;
        let mut encoded = Vec::new();
        for (i, rung) in self.rungs.iter_mut().enumerate() {
            if !rung.active {
                continue;
            }
            let scaler = rung.scaler.get_or_insert_with(|| {
                Scaler::new(
                    (self.picture.width, self.picture.height),
                    (rung.spec.width, rung.spec.height),
                )
            });
            scaler.scale(&self.picture, &mut rung.scaled);
            encoded.clear();
            let result = match rung.encoder.as_mut() {
                Some(enc) => enc.encode(&rung.scaled, frame.dts, idr, &mut encoded),
                None => Err(EncodeError::new("no encoder")),
            };
            let now = (self.clock)();
            out.encode_times.push((i, now.saturating_sub(t)));
            t = now;
            match result {
                Ok(()) => out
                    .frames
                    .extend(encoded.drain(..).map(|(dts, keyframe, picture)| RungFrame {
                        rung: i,
                        dts,
                        keyframe,
                        picture,
                    })),
                Err(e) => {
                    tracing::warn!(rendition = %rung.spec.name, error = %e, "ladder: rung encoder failed; dropping the rung");
                    rung.active = false;
                    rung.encoder = None;
                    out.failed.push(i);
                }
            }
        }

        let media = Duration::from_micros(media_ticks * 1_000_000 / TIMESCALE);
        self.load.add(
            media,
            out.decode_time.unwrap_or_default(),
            &out.encode_times,
        );
        if let Some((report, heaviest)) = self.load.close() {
            if report.realtime_factor < SHED_BELOW
                && let Some(i) = heaviest
                && let Some(rung) = self.rungs.get_mut(i)
            {
                rung.active = false;
                rung.encoder = None;
                out.shed = Some(i);
            }
            out.report = Some(report);
        }
        out
    }

    fn plan(&mut self) {
        self.planned = true;
        let fps = self.fps();
        let (w, h) = (self.picture.width, self.picture.height);
        let mut specs = plan_rungs(&self.cfg.heights, w, h, fps);
        // After the H.264 rungs, so the multivariant playlist lists it last: players that take
        // the first variant they can play start on H.264.
        specs.extend(self.cfg.av1_height.map(|av1| plan_av1_rung(av1, w, h, fps)));
        for spec in specs {
            let encoder = match RungEncoder::new(&spec, self.cfg.speed) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(rendition = %spec.name, error = %e, "ladder: cannot create an encoder");
                    None
                }
            };
            self.rungs.push(Rung {
                active: encoder.is_some(),
                spec,
                scaler: None,
                scaled: Picture::default(),
                encoder,
            });
        }
    }
}

#[cfg(test)]
mod tests;
