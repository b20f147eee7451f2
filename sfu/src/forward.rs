//! Per-viewer forwarding decisions: which published packets a viewer gets and how they are
//! renumbered. Sans-IO; the shard applies the decisions to the viewer's `Rtc`.

use std::time::{Duration, Instant};

use crate::PeerId;
use crate::av1_dd::DdMunger;
use crate::munger::{InPacket, Munger, OutPacket};
use crate::payload::VideoCodec;
use crate::selector::LayerSelector;
use crate::track::{SourcePacket, VideoTrack};
use crate::vp8::{Vp8Fields, Vp8Munger, Vp8Rewrite};

fn in_packet(p: &SourcePacket) -> InPacket {
    InPacket {
        seq: p.seq,
        ts: p.ts,
        at: p.received,
        sr: p.sr,
    }
}

/// What to do with one published packet for one viewer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Write it with these numbers, or drop it.
    pub out: Option<OutPacket>,
    /// A layer whose keyframe this viewer now waits for (ask the publisher).
    pub want_keyframe: Option<usize>,
    /// A switch (or the first picture) happened after waiting this long for a keyframe.
    pub switched_after: Option<Duration>,
    /// VP8 descriptor fields to rewrite in the forwarded packet.
    pub vp8: Option<Vp8Rewrite>,
    /// AV1 dependency-descriptor frame number for the forwarded packet.
    pub av1_frame: Option<u16>,
}

/// Layer choice, keyframe gating and renumbering of one viewer's video.
#[derive(Debug)]
pub struct VideoForwarder {
    munger: Munger,
    selector: LayerSelector,
    publisher: Option<PeerId>,
    current: Option<usize>,
    target: Option<usize>,
    pinned: Option<usize>,
    wait_since: Option<Instant>,
    estimate: u64,
    vp8: Vp8Munger,
    dd: DdMunger,
    /// The current source started without a dependency descriptor: its first one rebases.
    dd_rebase: bool,
}

impl VideoForwarder {
    /// A forwarder whose first packet will carry sequence number `first_seq`.
    pub fn new(clock_rate: u32, first_seq: u16, initial_estimate: u64) -> Self {
        Self {
            munger: Munger::new(clock_rate, first_seq),
            selector: LayerSelector::new(),
            publisher: None,
            current: None,
            target: None,
            pinned: None,
            wait_since: None,
            estimate: initial_estimate,
            vp8: Vp8Munger::default(),
            dd: DdMunger::default(),
            dd_rebase: true,
        }
    }

    /// The layer being forwarded now.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The layer the forwarder wants to forward.
    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// Records the viewer's latest bandwidth estimate (bit/s).
    pub fn set_estimate(&mut self, bps: u64) {
        self.estimate = bps;
    }

    /// Pins the viewer to a layer (manual selection) or releases it (`None`).
    pub fn pin(&mut self, layer: Option<usize>) {
        self.pinned = layer;
    }

    /// Re-evaluates the target layer; returns a layer whose keyframe is now needed.
    pub fn retarget(&mut self, now: Instant, track: &VideoTrack) -> Option<usize> {
        let layer = match self.pinned {
            Some(l) => Some(l),
            None if track.layers.len() == 1 => Some(0),
            None => {
                let order = track.quality_order();
                let rates = track.rates();
                let ordered: Vec<u64> = order.iter().map(|&i| rates[i]).collect();
                let rank = self.selector.update(now, self.estimate, &ordered);
                match rank {
                    Some(r) => Some(order[r]),
                    // Nothing measured yet (first packets): start on the lowest-rate layer seen,
                    // or the first one, and let the estimate move us.
                    None => self.target.or(Some(order.first().copied().unwrap_or(0))),
                }
            }
        };
        if layer == self.target {
            return None;
        }
        self.target = layer;
        if layer != self.current {
            self.wait_since.get_or_insert(now);
            layer
        } else {
            self.wait_since = None;
            None
        }
    }

    /// The layer still awaited after `patience`, to re-ask the publisher for a keyframe.
    pub fn overdue(&self, now: Instant, patience: Duration) -> Option<usize> {
        match self.wait_since {
            Some(t)
                if now.saturating_duration_since(t) >= patience && self.target != self.current =>
            {
                self.target
            }
            _ => None,
        }
    }

    /// Decides for one packet of the viewer's channel.
    pub fn on_packet(&mut self, now: Instant, p: &SourcePacket) -> Decision {
        let mut d = Decision::default();
        let Some(track) = p.track.video.as_ref() else {
            return d;
        };
        if self.publisher != Some(p.track.publisher) {
            // A new publisher (reconnect or replacement): start over on its layers, keeping our
            // outgoing numbering continuous.
            self.publisher = Some(p.track.publisher);
            self.current = None;
            self.target = None;
            self.pinned = None;
            self.wait_since = None;
            self.selector = LayerSelector::new();
        }
        if self.target.is_none() {
            d.want_keyframe = self.retarget(now, track);
        }
        let vp8 = (track.codec == VideoCodec::Vp8)
            .then(|| Vp8Fields::parse(&p.payload))
            .flatten();
        if Some(p.layer) == self.current {
            d.out = self.munger.rewrite(&in_packet(p));
        } else if Some(p.layer) == self.target && p.keyframe_start {
            let inp = in_packet(p);
            self.munger.switch_source(&inp);
            if let Some(f) = &vp8 {
                self.vp8.switch_source(f);
            }
            self.dd_rebase = true;
            self.current = self.target;
            d.switched_after = self
                .wait_since
                .take()
                .map(|t| now.saturating_duration_since(t));
            d.out = self.munger.rewrite(&inp);
        }
        if d.out.is_some() {
            d.vp8 = vp8.map(|f| self.vp8.rewrite(&f));
            d.av1_frame = p.dd.as_ref().map(|dd| {
                let n = dd.frame_number();
                if std::mem::take(&mut self.dd_rebase) {
                    self.dd.switch_source(n);
                }
                self.dd.rewrite(n)
            });
        }
        d
    }
}

/// Renumbering of one viewer's audio, continuous across publisher changes.
#[derive(Debug)]
pub struct AudioForwarder {
    munger: Munger,
    publisher: Option<PeerId>,
}

impl AudioForwarder {
    /// A forwarder whose first packet will carry sequence number `first_seq`.
    pub fn new(clock_rate: u32, first_seq: u16) -> Self {
        Self {
            munger: Munger::new(clock_rate, first_seq),
            publisher: None,
        }
    }

    /// Rewrites one audio packet (any packet can start an audio stream).
    pub fn on_packet(&mut self, p: &SourcePacket) -> Option<OutPacket> {
        let inp = in_packet(p);
        if self.publisher != Some(p.track.publisher) {
            self.publisher = Some(p.track.publisher);
            self.munger.switch_source(&inp);
        }
        self.munger.rewrite(&inp)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::payload::VideoCodec;
    use crate::track::{Kind, TrackInfo};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use str0m::format::{Codec, CodecSpec, FormatParams};
    use str0m::media::{Frequency, Rid};

    /// An H.264 track of `publisher` with one layer per rate.
    pub(crate) fn track(publisher: PeerId, rates: &[u64]) -> Arc<TrackInfo> {
        Arc::new(TrackInfo {
            channel: Arc::from("c"),
            publisher,
            shard: 0,
            video: Some(VideoTrack {
                spec: CodecSpec {
                    codec: Codec::H264,
                    clock_rate: Frequency::NINETY_KHZ,
                    channels: None,
                    format: FormatParams::default(),
                },
                codec: VideoCodec::H264,
                layers: ["l", "m", "h"][..rates.len()]
                    .iter()
                    .map(|r| Some(Rid::from(*r)))
                    .collect(),
                rates: rates.iter().map(|r| AtomicU64::new(*r)).collect(),
            }),
            audio: None,
        })
    }

    fn pkt(t: &Arc<TrackInfo>, layer: usize, seq: u64, key: bool, at: Instant) -> SourcePacket {
        SourcePacket {
            track: t.clone(),
            kind: Kind::Video,
            layer,
            seq,
            ts: (seq as u32) * 3000,
            marker: true,
            keyframe_start: key,
            sr: None,
            received: at,
            payload: Arc::from(vec![0u8; 10]),
            dd: None,
        }
    }

    #[test]
    fn joins_on_keyframe_and_switches_down_make_before_break() {
        let t0 = Instant::now();
        let t = track(1, &[100_000, 400_000, 1_200_000]);
        let mut f = VideoForwarder::new(90_000, 100, 2_000_000);
        // First packet: target chosen (top layer fits 2 Mbit/s), keyframe wanted, nothing sent.
        let d = f.on_packet(t0, &pkt(&t, 2, 10, false, t0));
        assert_eq!(d.want_keyframe, Some(2));
        assert_eq!(d.out, None);
        // Other layers are dropped.
        assert_eq!(f.on_packet(t0, &pkt(&t, 0, 500, true, t0)).out, None);
        // The top layer's keyframe starts the picture.
        let at = t0 + Duration::from_millis(300);
        let d = f.on_packet(at, &pkt(&t, 2, 11, true, at));
        assert_eq!(d.out.map(|o| o.seq), Some(100));
        assert_eq!(d.switched_after, Some(Duration::from_millis(300)));
        assert_eq!(
            f.on_packet(at, &pkt(&t, 2, 12, false, at))
                .out
                .map(|o| o.seq),
            Some(101)
        );

        // Congestion: target drops to the low layer; the top keeps flowing until its keyframe.
        f.set_estimate(150_000);
        let tv = t.video.as_ref().expect("video");
        assert_eq!(f.retarget(at, tv), Some(0));
        assert_eq!(
            f.on_packet(at, &pkt(&t, 2, 13, false, at))
                .out
                .map(|o| o.seq),
            Some(102)
        );
        assert_eq!(f.on_packet(at, &pkt(&t, 0, 600, false, at)).out, None);
        let d = f.on_packet(at, &pkt(&t, 0, 601, true, at));
        assert_eq!(d.out.map(|o| o.seq), Some(103));
        assert_eq!(f.current(), Some(0));
        // The old layer is dropped from now on; numbering stays gapless.
        assert_eq!(f.on_packet(at, &pkt(&t, 2, 14, false, at)).out, None);
        assert_eq!(
            f.on_packet(at, &pkt(&t, 0, 602, false, at))
                .out
                .map(|o| o.seq),
            Some(104)
        );
    }

    #[test]
    fn pinning_and_overdue_keyframes() {
        let t0 = Instant::now();
        let t = track(1, &[100_000, 400_000, 1_200_000]);
        let tv = t.video.as_ref().expect("video");
        let mut f = VideoForwarder::new(90_000, 0, 10_000_000);
        f.on_packet(t0, &pkt(&t, 2, 1, true, t0));
        assert_eq!(f.current(), Some(2));
        f.pin(Some(0));
        assert_eq!(f.retarget(t0, tv), Some(0));
        assert_eq!(
            f.overdue(t0 + Duration::from_millis(500), Duration::from_secs(1)),
            None
        );
        assert_eq!(
            f.overdue(t0 + Duration::from_secs(1), Duration::from_secs(1)),
            Some(0)
        );
        f.on_packet(t0, &pkt(&t, 0, 50, true, t0));
        assert_eq!(f.current(), Some(0));
        // Released: the estimate takes over again; 10 Mbit/s fits the top layer.
        f.pin(None);
        assert_eq!(f.retarget(t0, tv), Some(2));
        // A layer that stops sending is left at once.
        t.video.as_ref().expect("video").rates[2].store(0, Ordering::Relaxed);
        assert_eq!(f.retarget(t0, tv), Some(1));
    }

    #[test]
    fn vp8_picture_ids_continue_across_a_switch() {
        let t0 = Instant::now();
        let t = track(1, &[100_000, 400_000]);
        // Same track, but VP8.
        let mut info = TrackInfo {
            channel: t.channel.clone(),
            publisher: 1,
            shard: 0,
            video: None,
            audio: None,
        };
        let mut v = VideoTrack {
            spec: t.video.as_ref().expect("video").spec,
            codec: VideoCodec::Vp8,
            layers: vec![Some(Rid::from("l")), Some(Rid::from("h"))],
            rates: vec![AtomicU64::new(100_000), AtomicU64::new(400_000)],
        };
        v.spec.codec = Codec::Vp8;
        info.video = Some(v);
        let t = Arc::new(info);
        let vp8 = |layer: usize, seq: u64, pid: u16, key: bool| {
            let mut p = pkt(&t, layer, seq, key, t0);
            p.payload = Arc::from(vec![
                0x90,
                0x80,
                0x80 | (pid >> 8) as u8,
                pid as u8,
                if key { 0x00 } else { 0x01 },
            ]);
            p
        };
        let mut f = VideoForwarder::new(90_000, 0, 1_000_000);
        let d = f.on_packet(t0, &vp8(1, 1, 500, true));
        assert_eq!(d.vp8.and_then(|r| r.picture_id), Some(500));
        assert_eq!(
            f.on_packet(t0, &vp8(1, 2, 501, false))
                .vp8
                .and_then(|r| r.picture_id),
            Some(501)
        );
        f.pin(Some(0));
        f.retarget(t0, t.video.as_ref().expect("video"));
        let d = f.on_packet(t0, &vp8(0, 90, 7, true));
        assert_eq!(d.vp8.and_then(|r| r.picture_id), Some(502));
        assert_eq!(
            f.on_packet(t0, &vp8(0, 91, 8, false))
                .vp8
                .and_then(|r| r.picture_id),
            Some(503)
        );
    }

    #[test]
    fn new_publisher_restarts_on_keyframe_with_continuous_numbers() {
        let t0 = Instant::now();
        let a = track(1, &[500_000]);
        let b = track(2, &[500_000]);
        let mut f = VideoForwarder::new(90_000, 7, 1_000_000);
        f.on_packet(t0, &pkt(&a, 0, 1000, true, t0));
        f.on_packet(t0, &pkt(&a, 0, 1001, false, t0));
        let d = f.on_packet(t0, &pkt(&b, 0, 5, false, t0));
        assert_eq!(d.out, None);
        assert_eq!(d.want_keyframe, Some(0));
        let d = f.on_packet(t0, &pkt(&b, 0, 6, true, t0));
        assert_eq!(d.out.map(|o| o.seq), Some(9));

        let mut af = AudioForwarder::new(48_000, 0);
        assert_eq!(
            af.on_packet(&pkt(&a, 0, 70, false, t0)).map(|o| o.seq),
            Some(0)
        );
        assert_eq!(
            af.on_packet(&pkt(&b, 0, 3, false, t0)).map(|o| o.seq),
            Some(1)
        );
    }
}
