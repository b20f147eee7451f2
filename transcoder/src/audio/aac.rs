//! FDK AAC-LC encoder that stamps each access unit with the input time of the PCM it carries.

use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::{AacFrame, AudioError, CHANNELS, FRAME_SAMPLES, SAMPLE_RATE, SILENCE};

/// Upper bound of one raw AAC-LC stereo access unit: 6144 bits per channel (14496-3 §4.5.3.2).
const MAX_AU_BYTES: usize = 2 * 6144 / 8;

/// One encoder run over a contiguous stretch of PCM whose first sample is at `origin`.
pub(super) struct AacEncoder {
    enc: Encoder,
    /// Samples the decoded AAC stream lags the encoder input by (fdk `nDelay`).
    delay: u32,
    /// AudioSpecificConfig reported by the encoder.
    config: Vec<u8>,
    origin: u64,
    /// Samples per channel fed since `origin`.
    fed: u64,
    /// Access units the encoder has produced so far (kept or not).
    produced: u64,
    /// Access units starting before this time are dropped: before 0, or overlapping the end of
    /// the previous run after a timeline reset.
    floor: u64,
    discontinuity: bool,
    /// Units from this index on are padding past the end of the input (set by `finish`).
    limit: u64,
    /// Flushed or failed: its frame count no longer maps to time.
    spent: bool,
    out: Vec<u8>,
}

impl AacEncoder {
    pub(super) fn new(bitrate: u32) -> Result<Self, AudioError> {
        if !super::BITRATES.contains(&bitrate) {
            return Err(AudioError::Bitrate(bitrate));
        }
        let enc = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate: SAMPLE_RATE,
            transport: Transport::Raw,
            channels: ChannelMode::Stereo,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| AudioError::Aac(e.to_string()))?;
        let info = enc.info().map_err(|e| AudioError::Aac(e.to_string()))?;
        if info.frameLength != FRAME_SAMPLES {
            return Err(AudioError::Aac(format!(
                "frame length {} instead of {FRAME_SAMPLES}",
                info.frameLength
            )));
        }
        let len = (info.confSize as usize).min(info.confBuf.len());
        let config = info.confBuf[..len].to_vec();
        Ok(Self {
            enc,
            delay: info.nDelay,
            config,
            origin: 0,
            fed: 0,
            produced: 0,
            floor: 0,
            discontinuity: false,
            limit: u64::MAX,
            spent: false,
            out: vec![0; (info.maxOutBufBytes as usize).max(MAX_AU_BYTES)],
        })
    }

    pub(super) fn delay(&self) -> u32 {
        self.delay
    }

    pub(super) fn config(&self) -> &[u8] {
        &self.config
    }

    pub(super) fn spent(&self) -> bool {
        self.spent
    }

    /// Starts the run: the next PCM fed is the sample at `origin`; no access unit starts before
    /// `floor`; the first one kept is flagged as a discontinuity if `discontinuity`.
    pub(super) fn start(&mut self, origin: u64, floor: u64, discontinuity: bool) {
        self.origin = origin;
        self.floor = floor;
        self.discontinuity = discontinuity;
    }

    /// Time of the next PCM sample to feed.
    pub(super) fn next(&self) -> u64 {
        self.origin.saturating_add(self.fed)
    }

    /// Encodes interleaved stereo PCM that continues the run.
    pub(super) fn push(&mut self, pcm: &[i16], out: &mut Vec<AacFrame>) -> Result<(), AudioError> {
        let mut rest = pcm;
        while !rest.is_empty() {
            let info = self.enc.encode(rest, &mut self.out).map_err(|e| {
                self.spent = true;
                AudioError::Aac(e.to_string())
            })?;
            let consumed = info.input_consumed.min(rest.len());
            rest = &rest[consumed..];
            self.fed += (consumed / CHANNELS) as u64;
            if info.output_size > 0 {
                self.emit(info.output_size, out);
            } else if consumed == 0 {
                self.spent = true;
                return Err(AudioError::Aac("encoder took no input".into()));
            }
        }
        Ok(())
    }

    /// Feeds silence until every access unit that carries input PCM is out. The encoder cannot
    /// be used after this.
    pub(super) fn finish(&mut self, out: &mut Vec<AacFrame>) -> Result<(), AudioError> {
        // Access unit `j` carries input samples [j·1024 − delay, (j+1)·1024 − delay).
        let needed = match self.fed {
            0 => 0,
            fed => (fed + u64::from(self.delay)).div_ceil(u64::from(FRAME_SAMPLES)),
        };
        self.limit = needed;
        self.spent = true;
        // One frame of zeros yields one unit once the lookahead is full; the bound only guards
        // against an encoder that stops producing.
        let mut budget = needed.saturating_sub(self.produced) + 4;
        while self.produced < needed && budget > 0 {
            budget -= 1;
            self.push(&SILENCE, out)?;
        }
        Ok(())
    }

    /// Decode time of access unit `index`, `None` if before time 0.
    fn dts(&self, index: u64) -> Option<u64> {
        self.origin
            .checked_add(index.checked_mul(u64::from(FRAME_SAMPLES))?)?
            .checked_sub(u64::from(self.delay))
    }

    fn emit(&mut self, len: usize, out: &mut Vec<AacFrame>) {
        let index = self.produced;
        self.produced += 1;
        match self.dts(index) {
            Some(dts) if dts >= self.floor && index < self.limit => {
                out.push(AacFrame {
                    dts,
                    data: Bytes::copy_from_slice(&self.out[..len.min(self.out.len())]),
                    discontinuity: std::mem::take(&mut self.discontinuity),
                });
            }
            // Priming before the start of the timeline (or the previous run's end), or padding.
            _ => {}
        }
    }
}
