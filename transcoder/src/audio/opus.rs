//! libopus decoder at 48 kHz stereo with loss concealment.

use audiopus::coder::{Decoder, GenericCtl};
use audiopus::{Channels, SampleRate};

use super::{AudioError, CHANNELS};

/// The longest Opus packet: 120 ms at 48 kHz (RFC 6716 §3.2.5).
pub(super) const MAX_PACKET_SAMPLES: usize = 5760;

/// libopus conceals in multiples of 2.5 ms.
pub(super) const PLC_STEP: u64 = 120;

pub(super) struct OpusDecoder {
    dec: Decoder,
    buf: Vec<i16>,
}

impl OpusDecoder {
    pub(super) fn new() -> Result<Self, AudioError> {
        // A stereo decoder also takes mono packets and duplicates them to both channels.
        let dec = Decoder::new(SampleRate::Hz48000, Channels::Stereo)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        Ok(Self {
            dec,
            buf: vec![0; MAX_PACKET_SAMPLES * CHANNELS],
        })
    }

    /// Decodes one packet to interleaved stereo; `None` if libopus rejects it.
    pub(super) fn decode(&mut self, packet: &[u8]) -> Option<&[i16]> {
        let n = self
            .dec
            .decode(Some(packet), &mut self.buf[..], false)
            .ok()?;
        self.buf.get(..n * CHANNELS)
    }

    /// Appends `samples` (a multiple of [`PLC_STEP`]) of concealment to `out`. With the packet
    /// that follows the gap, its in-band FEC (SILK LBRR) rebuilds the end of the gap when present.
    pub(super) fn conceal(&mut self, samples: u64, next: Option<&[u8]>, out: &mut Vec<i16>) {
        let mut left = samples - samples % PLC_STEP;
        while left > 0 {
            // FEC rebuilds the frame just before `next`, so only the last chunk asks for it.
            let n = left.min(MAX_PACKET_SAMPLES as u64);
            left -= n;
            let buf = &mut self.buf[..n as usize * CHANNELS];
            let fec = match next {
                Some(packet) if left == 0 => self.dec.decode(Some(packet), &mut *buf, true).ok(),
                _ => None,
            };
            let result = match fec {
                Some(got) => Ok(got),
                None => self.dec.decode(None::<&[u8]>, &mut *buf, false),
            };
            // Keep the timeline whole even if libopus conceals less than asked (it should not).
            let got = result.map_or(0, |got| (got as u64).min(n));
            out.extend_from_slice(&buf[..got as usize * CHANNELS]);
            silence(out, n - got);
        }
    }

    /// Forgets the signal history, for a fresh start after silence or a timeline reset.
    pub(super) fn reset(&mut self) {
        // Resetting a valid decoder cannot fail; if it did, the old state only costs a glitch.
        let _ = self.dec.reset_state();
    }
}

/// Appends `samples` of stereo silence.
pub(super) fn silence(out: &mut Vec<i16>, samples: u64) {
    out.resize(out.len() + samples as usize * CHANNELS, 0);
}
