//! A publisher's side of the router: classify each incoming packet (kind, simulcast layer),
//! measure layer bitrates, and answer keyframe requests within the throttle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::{RtpPacket, Ssrc};

use crate::av1_dd::ReceivedDd;
use crate::keyframe::KeyframeThrottle;
use crate::munger::SrMapping;
use crate::payload::{KeyframeStarts, VideoCodec};
use crate::rtc::MediaPlan;
use crate::track::{Kind, SourcePacket, TrackInfo, VideoTrack};
use crate::{PeerId, SfuError};

/// Builds the track description of a publisher from its plan.
pub(crate) fn track_info(
    _rtc: &mut Rtc,
    channel: &str,
    peer: PeerId,
    plan: &MediaPlan,
    shard: usize,
) -> Result<Arc<TrackInfo>, SfuError> {
    let video = match &plan.video {
        None => None,
        Some(v) => {
            let codec = match v.spec.codec {
                Codec::H264 => VideoCodec::H264,
                Codec::Vp8 => VideoCodec::Vp8,
                Codec::Vp9 => VideoCodec::Vp9,
                Codec::Av1 => VideoCodec::Av1,
                other => {
                    return Err(SfuError::NoCommonCodec(format!(
                        "{other:?} is not forwarded"
                    )));
                }
            };
            let layers: Vec<Option<Rid>> = if plan.rids.is_empty() {
                vec![None]
            } else {
                plan.rids
                    .iter()
                    .map(|r| Some(Rid::from(r.as_str())))
                    .collect()
            };
            let rates = layers.iter().map(|_| AtomicU64::new(0)).collect();
            Some(VideoTrack {
                spec: v.spec,
                codec,
                layers,
                rates,
            })
        }
    };
    Ok(Arc::new(TrackInfo {
        channel: Arc::from(channel),
        publisher: peer,
        shard,
        video,
        audio: plan.audio.map(|a| a.spec),
    }))
}

/// Bitrate of one layer over a sliding one-second window.
#[derive(Debug, Default)]
struct RateMeter {
    bytes: u64,
    window_start: Option<Instant>,
    last_packet: Option<Instant>,
    rate: u64,
}

impl RateMeter {
    fn add(&mut self, now: Instant, bytes: usize) {
        self.bytes += bytes as u64;
        self.last_packet = Some(now);
        self.window_start.get_or_insert(now);
    }

    fn tick(&mut self, now: Instant) -> u64 {
        if self
            .last_packet
            .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(2))
        {
            self.rate = 0;
            self.bytes = 0;
            self.window_start = None;
            return 0;
        }
        if let Some(start) = self.window_start {
            let el = now.saturating_duration_since(start);
            if el >= Duration::from_millis(500) {
                let r = (self.bytes * 8) as f64 / el.as_secs_f64();
                // Smooth, but let the first measurement through.
                self.rate = if self.rate == 0 {
                    r as u64
                } else {
                    (0.5 * self.rate as f64 + 0.5 * r) as u64
                };
                self.bytes = 0;
                self.window_start = Some(now);
            }
        }
        self.rate
    }
}

/// Per-publisher router state, owned by the publisher's shard.
pub(crate) struct PublisherState {
    pub track: Arc<TrackInfo>,
    ssrcs: HashMap<Ssrc, (Kind, usize)>,
    meters: Vec<RateMeter>,
    throttle: KeyframeThrottle,
    keyframe_starts: KeyframeStarts,
    video_mid: Option<Mid>,
    keyframe_kind: KeyframeRequestKind,
}

impl PublisherState {
    pub fn new(track: Arc<TrackInfo>) -> Self {
        let layers = track.video.as_ref().map_or(0, |v| v.layers.len());
        Self {
            track,
            ssrcs: HashMap::new(),
            meters: (0..layers).map(|_| RateMeter::default()).collect(),
            throttle: KeyframeThrottle::default(),
            keyframe_starts: KeyframeStarts::default(),
            video_mid: None,
            keyframe_kind: KeyframeRequestKind::Pli,
        }
    }

    /// Uses FIR for keyframe requests when the publisher's offer takes FIR but not PLI.
    pub fn with_fir(mut self, fir_only: bool) -> Self {
        if fir_only {
            self.keyframe_kind = KeyframeRequestKind::Fir;
        }
        self
    }

    /// Learns which track and layer an SSRC carries. OBS sends no `a=ssrc` with simulcast, and
    /// browsers stop sending the RID extension once they get receiver reports, so the mapping is
    /// latched from str0m's stream (which saw the first packets' MID/RID) and kept.
    fn classify(&mut self, rtc: &mut Rtc, ssrc: Ssrc) -> Option<(Kind, usize)> {
        if let Some(c) = self.ssrcs.get(&ssrc) {
            return Some(*c);
        }
        let (mid, rid) = rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()))?;
        let kind = match rtc.media(mid)?.kind() {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        };
        let layer = match kind {
            Kind::Audio => 0,
            Kind::Video => {
                self.video_mid = Some(mid);
                let layers = &self.track.video.as_ref()?.layers;
                match rid {
                    None => 0,
                    Some(r) => layers.iter().position(|l| *l == Some(r))?,
                }
            }
        };
        self.ssrcs.insert(ssrc, (kind, layer));
        Some((kind, layer))
    }

    /// Turns a received packet into the shared form viewers consume.
    pub fn on_rtp(&mut self, rtc: &mut Rtc, pkt: RtpPacket) -> Option<SourcePacket> {
        let (kind, layer) = self.classify(rtc, pkt.header.ssrc)?;
        let keyframe_start = match (kind, &self.track.video) {
            (Kind::Video, Some(v)) => {
                if let Some(m) = self.meters.get_mut(layer) {
                    m.add(pkt.timestamp, pkt.payload.len());
                }
                v.codec.is_keyframe_start(&pkt.payload)
                    && self
                        .keyframe_starts
                        .first_of_picture(layer, pkt.header.timestamp)
            }
            _ => false,
        };
        Some(SourcePacket {
            track: self.track.clone(),
            kind,
            layer,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            keyframe_start,
            sr: pkt.last_sender_info.map(|s| SrMapping {
                ntp: s.ntp_time,
                rtp: s.rtp_time.numer() as u32,
            }),
            received: pkt.timestamp,
            dd: match kind {
                Kind::Video => pkt.header.ext_vals.user_values.get::<ReceivedDd>().cloned(),
                Kind::Audio => None,
            },
            payload: pkt.payload,
        })
    }

    /// Asks the publisher for a keyframe on `layer` unless one was asked for too recently (then
    /// the request is deferred to [`PublisherState::deferred_keyframes`]).
    pub fn request_keyframe(&mut self, rtc: &mut Rtc, now: Instant, layer: usize) -> bool {
        if !self.throttle.allow(now, layer) {
            return false;
        }
        self.send_keyframe_request(rtc, layer)
    }

    /// Sends the keyframe requests the throttle held back and now allows; returns how many.
    pub fn deferred_keyframes(&mut self, rtc: &mut Rtc, now: Instant) -> usize {
        let due = self.throttle.due(now);
        due.into_iter()
            .filter(|&l| self.send_keyframe_request(rtc, l))
            .count()
    }

    fn send_keyframe_request(&mut self, rtc: &mut Rtc, layer: usize) -> bool {
        let Some(mid) = self.video_mid else {
            return false;
        };
        let Some(rid) = self
            .track
            .video
            .as_ref()
            .and_then(|v| v.layers.get(layer).copied())
        else {
            return false;
        };
        let mut api = rtc.direct_api();
        match api.stream_rx_by_mid(mid, rid) {
            Some(s) => {
                s.request_keyframe(self.keyframe_kind);
                true
            }
            None => false,
        }
    }

    /// Updates the measured layer bitrates that viewers' selectors read.
    pub fn tick(&mut self, now: Instant) {
        let Some(v) = &self.track.video else { return };
        for (m, r) in self.meters.iter_mut().zip(&v.rates) {
            r.store(m.tick(now), Ordering::Relaxed);
        }
    }
}
