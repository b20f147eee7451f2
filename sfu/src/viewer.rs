//! A viewer's side of the router: apply forwarding decisions to the viewer's `Rtc`.

use std::time::Instant;

use rand::Rng;
use str0m::Rtc;
use str0m::bwe::Bitrate;
use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};

use crate::SfuError;
use crate::av1_dd::OutgoingDd;
use crate::forward::{AudioForwarder, Decision, VideoForwarder};
use crate::rtc::{INITIAL_VIEWER_ESTIMATE, MediaPlan, PayloadChoice};
use crate::track::{Kind, SourcePacket, TrackInfo};

struct Out<F> {
    mid: Mid,
    pt: Pt,
    ssrc: Option<Ssrc>,
    fwd: F,
}

impl<F> Out<F> {
    fn new(mid: Mid, pt: u8, fwd: F) -> Self {
        Self {
            mid,
            pt: Pt::from(pt),
            ssrc: None,
            fwd,
        }
    }

    /// str0m allocates the send stream during negotiation; look it up once.
    fn ssrc(&mut self, rtc: &mut Rtc) -> Option<Ssrc> {
        if self.ssrc.is_none() {
            self.ssrc = rtc
                .direct_api()
                .stream_tx_by_mid(self.mid, None)
                .map(|s| s.ssrc());
        }
        self.ssrc
    }
}

/// Per-viewer forwarding state, owned by the viewer's shard.
pub(crate) struct ViewerState {
    pending: Option<(SdpPendingOffer, MediaPlan)>,
    video: Option<Out<VideoForwarder>>,
    audio: Option<Out<AudioForwarder>>,
}

impl ViewerState {
    /// State for a negotiated viewer.
    pub fn new(rtc: &mut Rtc, plan: &MediaPlan, track: &TrackInfo) -> Result<Self, SfuError> {
        let _ = track;
        let mut s = Self {
            pending: None,
            video: None,
            audio: None,
        };
        s.init(rtc, plan);
        if s.video.is_none() && s.audio.is_none() {
            return Err(SfuError::NoCommonCodec(
                "the offer receives neither audio nor video".into(),
            ));
        }
        Ok(s)
    }

    /// State for a viewer waiting for its answer to our offer.
    pub fn pending(pending: (SdpPendingOffer, MediaPlan)) -> Self {
        Self {
            pending: Some(pending),
            video: None,
            audio: None,
        }
    }

    fn init(&mut self, _rtc: &mut Rtc, plan: &MediaPlan) {
        let mut rng = rand::rng();
        if let (Some(v), Some(mid)) = (&plan.video, &plan.video_mid) {
            let fwd = VideoForwarder::new(
                v.spec.clock_rate.get(),
                rng.random_range(0..30_000),
                INITIAL_VIEWER_ESTIMATE.as_u64(),
            );
            self.video = Some(Out::new(Mid::from(mid.as_str()), v.pt, fwd));
        }
        if let (Some(a), Some(mid)) = (&plan.audio, &plan.audio_mid) {
            let fwd = AudioForwarder::new(a.spec.clock_rate.get(), rng.random_range(0..30_000));
            self.audio = Some(Out::new(Mid::from(mid.as_str()), a.pt, fwd));
        }
    }

    /// Completes a server-offer session with the client's answer.
    pub fn accept_answer(
        &mut self,
        rtc: &mut Rtc,
        answer: str0m::change::SdpAnswer,
    ) -> Result<(), SfuError> {
        let (pending, plan) = self.pending.take().ok_or_else(|| {
            SfuError::Conflict("the session is not waiting for an SDP answer".into())
        })?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        self.init(rtc, &plan);
        Ok(())
    }

    /// Records a new bandwidth estimate.
    pub fn set_estimate(&mut self, bps: u64) {
        if let Some(v) = &mut self.video {
            v.fwd.set_estimate(bps);
        }
    }

    /// The video forwarder, for retargeting and layer pinning.
    pub fn video(&mut self) -> Option<&mut VideoForwarder> {
        self.video.as_mut().map(|v| &mut v.fwd)
    }

    /// Forwards one published packet; returns the forwarding decision for bookkeeping.
    pub fn forward(&mut self, rtc: &mut Rtc, now: Instant, p: &SourcePacket) -> Decision {
        let (decision, out) = match p.kind {
            Kind::Video => {
                let Some(v) = &mut self.video else {
                    return Decision::default();
                };
                let d = v.fwd.on_packet(now, p);
                let out = d.out.and_then(|o| Some((v.ssrc(rtc)?, v.pt, o, true)));
                (d, out)
            }
            Kind::Audio => {
                let Some(a) = &mut self.audio else {
                    return Decision::default();
                };
                let o = a.fwd.on_packet(p);
                let out = o.and_then(|o| Some((a.ssrc(rtc)?, a.pt, o, false)));
                (
                    Decision {
                        out: o,
                        ..Decision::default()
                    },
                    out,
                )
            }
        };
        if let Some((ssrc, pt, o, nackable)) = out
            && let Some(tx) = rtc.direct_api().stream_tx(&ssrc)
        {
            let mut w = RtpWrite::new(pt, o.seq.into(), o.ts, p.received, p.payload.clone())
                .marker(p.marker)
                .nackable(nackable);
            if let Some(patch) = decision.vp8.and_then(|rw| vp8_patch(&p.payload, rw)) {
                w = w.vp8_patch(patch);
            }
            if let (Some(frame_number), Some(dd)) = (decision.av1_frame, &p.dd) {
                let mut ev = ExtensionValues::default();
                ev.user_values.set(OutgoingDd {
                    raw: dd.0.clone(),
                    frame_number,
                });
                w = w.ext_vals(ev);
            }
            tx.write_rtp(w);
        }
        decision
    }
}

/// The bandwidth estimate a new viewer of `track` starts from. With one video layer there is
/// nothing to choose between, and the estimate only paces what must be sent anyway: starting it
/// below the layer's rate would hold the first keyframe (and every frame after it) in the
/// pacer until the estimate had grown, a second or more of time to first frame for a 6 Mbit/s
/// OBS stream. With simulcast, the default start picks a moderate layer.
pub fn initial_estimate(track: &TrackInfo) -> Bitrate {
    let single = track
        .video
        .as_ref()
        .filter(|v| v.layers.len() == 1)
        .map(|v| v.rates().first().copied().unwrap_or(0));
    match single {
        Some(rate) => with_headroom(rate).max(INITIAL_VIEWER_ESTIMATE),
        None => INITIAL_VIEWER_ESTIMATE,
    }
}

/// A layer's measured rate plus room for keyframes and audio: the rate a viewer's estimator
/// is asked to reach for that layer.
pub(crate) fn with_headroom(rate: u64) -> Bitrate {
    Bitrate::bps(rate + rate / 4 + 64_000)
}

/// str0m's validated in-place rewrite of a VP8 descriptor.
fn vp8_patch(payload: &[u8], rw: crate::vp8::Vp8Rewrite) -> Option<str0m::rtp::Vp8Patch> {
    let mut b = str0m::rtp::Vp8Descriptor::parse(payload).ok()?.patch();
    if let Some(pid) = rw.picture_id {
        b = b.picture_id(pid);
    }
    if let Some(t) = rw.tl0 {
        b = b.tl0_pic_idx(t);
    }
    b.build().ok()
}

/// The codecs a server offer proposes: exactly the live stream's, with our payload numbers.
pub(crate) fn server_offer_plan(track: &TrackInfo) -> MediaPlan {
    MediaPlan {
        audio: track.audio.map(|spec| PayloadChoice {
            pt: 111,
            rtx: None,
            spec,
        }),
        video: track.video.as_ref().map(|v| PayloadChoice {
            pt: 96,
            rtx: Some(97),
            spec: v.spec,
        }),
        ..MediaPlan::default()
    }
}

/// Creates the server's offer for a legacy WHEP client (sendonly audio and video).
pub(crate) fn create_server_offer(
    rtc: &mut Rtc,
    plan: &MediaPlan,
) -> Result<(String, (SdpPendingOffer, MediaPlan)), SfuError> {
    let mut plan = plan.clone();
    let mut api = rtc.sdp_api();
    let stream = "onair".to_string();
    if plan.audio.is_some() {
        let mid = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream.clone()),
            Some("audio".into()),
            None,
        );
        plan.audio_mid = Some(mid.to_string());
    }
    if plan.video.is_some() {
        let mid = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream),
            Some("video".into()),
            None,
        );
        plan.video_mid = Some(mid.to_string());
    }
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| SfuError::Sdp("nothing to offer".into()))?;
    Ok((offer.to_sdp_string(), (pending, plan)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::tests::track;

    #[test]
    fn a_single_layer_viewer_starts_its_estimate_at_the_layer_rate() {
        // 6 Mbit/s plus a quarter and 64 kbit/s: the first keyframe is not paced at 1 Mbit/s.
        assert_eq!(
            initial_estimate(&track(1, &[6_000_000])).as_u64(),
            7_564_000
        );
        // A slow single layer (or one not measured yet) keeps the default start.
        assert_eq!(
            initial_estimate(&track(1, &[300_000])),
            INITIAL_VIEWER_ESTIMATE
        );
        assert_eq!(initial_estimate(&track(1, &[0])), INITIAL_VIEWER_ESTIMATE);
        // Simulcast: the start estimate picks the layer, so it stays moderate.
        assert_eq!(
            initial_estimate(&track(1, &[300_000, 1_200_000, 6_000_000])),
            INITIAL_VIEWER_ESTIMATE
        );
    }
}
