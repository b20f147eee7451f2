//! Opus → AAC-LC for the HLS fallback: many TVs play no Opus, so the WebRTC Opus track is
//! decoded (libopus) and re-encoded as 48 kHz stereo AAC-LC (Fraunhofer FDK AAC), sans-IO.
//!
//! [`OpusToAac`] takes Opus packets with their 48 kHz timestamps (the Opus depacketizer's RTP
//! timestamps extended to `u64`) and returns AAC access units of 1024 samples with decode
//! times in the same 48 kHz ticks; [`OpusToAac::track`] is the matching `Codec::Aac` track.
//!
//! # Timing
//! The decoded PCM is kept on one contiguous timeline: the sample at position `p` of the run is
//! the Opus output sample at time `origin + p`, where `origin` is the first packet's timestamp.
//! Holes are filled so every later packet lands exactly at its own timestamp:
//! - a gap up to [`OpusToAacConfig::max_concealment`] (default 100 ms) is concealed by libopus
//!   (PLC, and in-band FEC from the packet after the gap when the sender includes it);
//! - a longer gap up to [`OpusToAacConfig::max_fill`] (default 10 s) gets concealment faded out,
//!   then silence, and the decoder restarts clean;
//! - a jump beyond that (confirmed by a second packet, so one wild timestamp cannot derail the
//!   stream) ends the run: its last access units are flushed and a new run starts at the new
//!   timestamp, its first frame flagged [`AacFrame::discontinuity`];
//! - packets entirely before the timeline (late, duplicate, or after a jump backwards, since
//!   output time cannot go back) are dropped; partly overlapping ones are trimmed.
//!
//! FDK's encoder delay `D` ([`OpusToAac::encoder_delay`], 2048 for AAC-LC here) means the
//! decoded AAC stream lags its input by `D` samples, so access unit `j` of a run gets decode
//! time `origin − D + 1024·j`: a player that decodes from the first unit (no edit list, as in
//! LL-HLS) then presents every sample at the same time as the Opus rendition presents it, to
//! the sample. Priming units that would start before time 0 (or before the end of the previous
//! run) are not returned; give the first packet a timestamp ≥ `D` to keep them all.
//! `tests/aac_ffmpeg.rs` checks this with ffmpeg's decoder: the AAC tone starts on the very
//! sample the Opus decode starts it.

mod aac;
mod opus;

use bytes::Bytes;

use crate::depacketize::opus_packet_samples;
use crate::fmp4::{Codec, Sample, Track, aac_lc_config};
use aac::AacEncoder;
use opus::{OpusDecoder, PLC_STEP};

/// Sample rate of the Opus input timestamps and of the AAC output (Hz, = track timescale).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one AAC-LC access unit.
pub const FRAME_SAMPLES: u32 = 1024;
/// Output channel count: mono Opus is upmixed by the decoder.
pub const CHANNELS: usize = 2;

/// AAC bitrates accepted (bit/s, stereo): what FDK encodes AAC-LC stereo 48 kHz with, without
/// clamping, at a sensible quality.
pub const BITRATES: std::ops::RangeInclusive<u32> = 16_000..=320_000;

/// One frame of stereo silence.
static SILENCE: [i16; FRAME_SAMPLES as usize * CHANNELS] = [0; FRAME_SAMPLES as usize * CHANNELS];

/// Concealment fades out over this many samples (10 ms) before a stretch of silence.
const FADE_SAMPLES: usize = 480;

/// Settings of an [`OpusToAac`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusToAacConfig {
    /// AAC constant bitrate in bit/s (stereo total).
    pub bitrate: u32,
    /// Longest gap (48 kHz samples) filled with Opus packet-loss concealment alone.
    pub max_concealment: u32,
    /// Longest gap (48 kHz samples) filled at all; a longer jump starts a new run.
    pub max_fill: u32,
}

impl Default for OpusToAacConfig {
    /// 128 kbit/s, conceal up to 100 ms, fill up to 10 s.
    fn default() -> Self {
        Self {
            bitrate: 128_000,
            max_concealment: SAMPLE_RATE / 10,
            max_fill: 10 * SAMPLE_RATE,
        }
    }
}

/// One AAC-LC access unit (1024 samples per channel, raw: no ADTS header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFrame {
    /// Decode (= presentation) time in 48 kHz ticks, on the input timestamps' clock.
    pub dts: u64,
    /// The raw access unit, as an fMP4 `Codec::Aac` sample.
    pub data: Bytes,
    /// First frame after a timeline reset: `dts` does not continue the previous frame.
    pub discontinuity: bool,
}

impl AacFrame {
    /// The frame as an fMP4 sample (every AAC frame is a sync sample).
    pub fn to_sample(&self) -> Sample {
        Sample {
            duration: FRAME_SAMPLES,
            is_sync: true,
            composition_offset: 0,
            data: self.data.clone(),
        }
    }
}

/// Counters of what an [`OpusToAac`] did with its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpusToAacStats {
    /// Packets pushed.
    pub packets: u64,
    /// AAC frames returned.
    pub frames: u64,
    /// Samples (per channel) filled by packet-loss concealment.
    pub concealed_samples: u64,
    /// Samples (per channel) filled with silence.
    pub silence_samples: u64,
    /// Packets libopus could not parse, or lone packets with a wild timestamp.
    pub dropped_invalid: u64,
    /// Packets entirely before the timeline (late or duplicate).
    pub dropped_late: u64,
    /// Runs ended by a timestamp jump or an encoder error.
    pub resets: u64,
    /// AAC encoder failures (each resets the run).
    pub encoder_errors: u64,
}

/// Why an [`OpusToAac`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// libopus failed.
    #[error("Opus decoder: {0}")]
    Opus(String),
    /// FDK AAC failed or rejected the settings.
    #[error("AAC encoder: {0}")]
    Aac(String),
    /// A bitrate outside [`BITRATES`], which FDK would silently clamp.
    #[error("AAC bitrate {0} bit/s is outside 16–320 kbit/s")]
    Bitrate(u32),
}

/// Opus packets in, AAC-LC access units out, on the same 48 kHz timeline (see the module docs).
/// One per audio stream; `Send`, so it can live in the stream's task.
pub struct OpusToAac {
    config: OpusToAacConfig,
    decoder: OpusDecoder,
    encoder: AacEncoder,
    /// Whether `encoder` has a run with an origin.
    running: bool,
    /// A packet far ahead of the timeline, waiting for the next one to confirm the jump.
    jump: Option<(u64, Vec<u8>)>,
    /// End time of the last frame returned: later runs start no earlier.
    end: Option<u64>,
    pcm: Vec<i16>,
    stats: OpusToAacStats,
}

impl OpusToAac {
    /// A transcoder; fails only if a codec library cannot start or rejects the bitrate.
    pub fn new(config: OpusToAacConfig) -> Result<Self, AudioError> {
        let config = OpusToAacConfig {
            max_fill: config.max_fill.max(config.max_concealment),
            ..config
        };
        Ok(Self {
            config,
            decoder: OpusDecoder::new()?,
            encoder: AacEncoder::new(config.bitrate)?,
            running: false,
            jump: None,
            end: None,
            pcm: Vec::with_capacity(opus::MAX_PACKET_SAMPLES * CHANNELS),
            stats: OpusToAacStats::default(),
        })
    }

    /// The AAC track for the fMP4 init segment: `Codec::Aac`, 48 kHz timescale.
    pub fn track(&self, id: u32) -> Track {
        Track {
            id,
            timescale: SAMPLE_RATE,
            codec: self.codec(),
        }
    }

    /// `Codec::Aac` with the encoder's AudioSpecificConfig (AAC-LC, 48 kHz, stereo).
    pub fn codec(&self) -> Codec {
        let config = match self.encoder.config() {
            [] => aac_lc_config(SAMPLE_RATE, CHANNELS as u8).unwrap_or_default(),
            asc => asc.to_vec(),
        };
        Codec::Aac {
            config,
            channels: CHANNELS as u8,
            sample_rate: SAMPLE_RATE,
        }
    }

    /// Samples the AAC output is shifted back by to cancel the encoder delay.
    pub fn encoder_delay(&self) -> u32 {
        self.encoder.delay()
    }

    /// What happened to the input so far.
    pub fn stats(&self) -> OpusToAacStats {
        self.stats
    }

    /// Takes one Opus packet starting at `timestamp` (48 kHz ticks) and returns the AAC frames
    /// completed by it, in decode order. Never fails: bad input is counted and dropped.
    pub fn push(&mut self, timestamp: u64, packet: &[u8]) -> Vec<AacFrame> {
        let mut out = Vec::new();
        self.stats.packets += 1;
        // Checks the TOC before a packet may move the timeline; libopus checks the rest.
        if opus_packet_samples(packet).is_none() {
            self.stats.dropped_invalid += 1;
            return out;
        }
        if !self.running && !self.start(timestamp) {
            return out;
        }
        let next = self.encoder.next();
        if timestamp > next && timestamp - next > u64::from(self.config.max_fill) {
            match self.jump.take() {
                Some((at, first)) if self.continues(at, timestamp) => {
                    self.stats.resets += 1;
                    self.end_run(&mut out);
                    if self.start(at) {
                        self.packet(at, &first, &mut out);
                    }
                }
                held => {
                    // Either the first sign of a jump, or a new one replacing an unconfirmed one.
                    if held.is_some() {
                        self.stats.dropped_invalid += 1;
                    }
                    self.jump = Some((timestamp, packet.to_vec()));
                    return self.returned(out);
                }
            }
        } else if self.jump.take().is_some() {
            // The old timeline goes on: the held packet's timestamp was an outlier.
            self.stats.dropped_invalid += 1;
        }
        if self.running || self.start(timestamp) {
            self.packet(timestamp, packet, &mut out);
        }
        self.returned(out)
    }

    /// Advances the timeline to `timestamp` with concealment and silence when no packet came
    /// (muted or stalled sender), so the AAC rendition keeps pace with video. Packets that
    /// arrive later for the filled time are dropped as late. No-op before the first packet or
    /// for a jump beyond `max_fill`.
    pub fn fill_to(&mut self, timestamp: u64) -> Vec<AacFrame> {
        let mut out = Vec::new();
        let next = self.encoder.next();
        if self.running && timestamp > next && timestamp - next <= u64::from(self.config.max_fill) {
            self.fill(timestamp - next, None, &mut out);
        }
        self.returned(out)
    }

    /// Ends the run: returns the frames still inside the encoder (its delay's worth). A later
    /// push starts a new run, flagged as a discontinuity.
    pub fn flush(&mut self) -> Vec<AacFrame> {
        let mut out = Vec::new();
        if self.jump.take().is_some() {
            self.stats.dropped_invalid += 1;
        }
        if self.running {
            self.end_run(&mut out);
        }
        self.returned(out)
    }

    /// Whether a packet at `timestamp` plausibly continues one held at `at`.
    fn continues(&self, at: u64, timestamp: u64) -> bool {
        timestamp >= at
            && timestamp - at
                <= u64::from(self.config.max_concealment) + opus::MAX_PACKET_SAMPLES as u64
    }

    /// Starts a run whose first sample is at `origin`; `false` if no encoder can be had.
    fn start(&mut self, origin: u64) -> bool {
        // A spent encoder's buffered state would offset the new run's frame count.
        if self.encoder.spent() {
            match AacEncoder::new(self.config.bitrate) {
                Ok(encoder) => self.encoder = encoder,
                Err(e) => {
                    self.stats.encoder_errors += 1;
                    tracing::warn!(error = %e, "cannot restart the AAC encoder");
                    return false;
                }
            }
        }
        let floor = self.end.unwrap_or(0);
        self.encoder.start(origin, floor, self.end.is_some());
        self.running = true;
        true
    }

    /// Ends the run: flushes the encoder, which is replaced at the next start.
    fn end_run(&mut self, out: &mut Vec<AacFrame>) {
        if let Err(e) = self.encoder.finish(out) {
            self.stats.encoder_errors += 1;
            tracing::warn!(error = %e, "AAC encoder failed while flushing");
        }
        self.account(out);
        self.running = false;
        self.decoder.reset();
    }

    /// Places one packet on the running timeline: fills the gap before it, trims what overlaps.
    fn packet(&mut self, timestamp: u64, packet: &[u8], out: &mut Vec<AacFrame>) {
        let next = self.encoder.next();
        let duration = opus_packet_samples(packet).map_or(0, u64::from);
        if timestamp.saturating_add(duration) <= next {
            // Decoding it would also disturb the decoder's state for the packets in order.
            self.stats.dropped_late += 1;
            return;
        }
        if timestamp > next {
            self.fill(timestamp - next, Some(packet), out);
            if !self.running {
                return;
            }
        }
        let skip = self.encoder.next().saturating_sub(timestamp);
        let Some(pcm) = self.decoder.decode(packet) else {
            // Its time becomes part of the gap before the next packet.
            self.stats.dropped_invalid += 1;
            return;
        };
        let samples = (pcm.len() / CHANNELS) as u64;
        if skip >= samples {
            self.stats.dropped_late += 1;
            return;
        }
        self.pcm.clear();
        self.pcm.extend_from_slice(&pcm[skip as usize * CHANNELS..]);
        self.encode_pcm(out);
    }

    /// Fills `gap` samples before the packet `next` (if any) with concealment, then silence.
    fn fill(&mut self, gap: u64, next: Option<&[u8]>, out: &mut Vec<AacFrame>) {
        let max_concealment = u64::from(self.config.max_concealment);
        self.pcm.clear();
        if gap <= max_concealment {
            // libopus conceals whole 2.5 ms steps; the excess at the front is cut off.
            let rounded = gap.next_multiple_of(PLC_STEP);
            self.decoder.conceal(rounded, next, &mut self.pcm);
            self.pcm
                .drain(..((rounded - gap) as usize * CHANNELS).min(self.pcm.len()));
            self.stats.concealed_samples += gap;
            self.encode_pcm(out);
            return;
        }
        // Concealment of a long loss drifts into noise; fade it out and go silent instead.
        let concealed = max_concealment - max_concealment % PLC_STEP;
        self.decoder.conceal(concealed, None, &mut self.pcm);
        fade_out(&mut self.pcm);
        self.stats.concealed_samples += concealed;
        self.encode_pcm(out);
        let mut silence = gap - concealed;
        self.stats.silence_samples += silence;
        while silence > 0 && self.running {
            let n = silence.min(u64::from(FRAME_SAMPLES));
            silence -= n;
            self.pcm.clear();
            self.pcm
                .extend_from_slice(&SILENCE[..n as usize * CHANNELS]);
            self.encode_pcm(out);
        }
        // The packet after the silence starts afresh rather than from the concealment's state.
        self.decoder.reset();
    }

    /// Encodes `self.pcm`, which continues the run.
    fn encode_pcm(&mut self, out: &mut Vec<AacFrame>) {
        if !self.running || self.pcm.is_empty() {
            return;
        }
        if let Err(e) = self.encoder.push(&self.pcm, out) {
            // Its frame count no longer maps to time: start a new run at the next packet.
            self.stats.encoder_errors += 1;
            self.stats.resets += 1;
            tracing::warn!(error = %e, "AAC encoder failed; restarting");
            self.account(out);
            self.running = false;
            self.decoder.reset();
        }
    }

    /// Notes the end of the frames in `out` (idempotent: called whenever a run may end).
    fn account(&mut self, out: &[AacFrame]) {
        if let Some(last) = out.last() {
            self.end = Some(last.dts.saturating_add(u64::from(FRAME_SAMPLES)));
        }
    }

    /// Bookkeeping for the frames a public call returns.
    fn returned(&mut self, out: Vec<AacFrame>) -> Vec<AacFrame> {
        self.account(&out);
        self.stats.frames += out.len() as u64;
        out
    }
}

/// Fades the tail of interleaved stereo PCM linearly to zero.
fn fade_out(pcm: &mut [i16]) {
    let frames = pcm.len() / CHANNELS;
    let n = frames.min(FADE_SAMPLES);
    for (i, frame) in pcm[(frames - n) * CHANNELS..]
        .chunks_exact_mut(CHANNELS)
        .enumerate()
    {
        let gain = (n - i) as f32 / n as f32;
        for s in frame {
            *s = (f32::from(*s) * gain) as i16;
        }
    }
}

#[cfg(test)]
mod tests;
