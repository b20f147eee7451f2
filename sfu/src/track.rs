//! What a publisher offers to viewers: its tracks, and the packets that flow from them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use str0m::format::CodecSpec;
use str0m::media::Rid;

use crate::PeerId;
use crate::av1_dd::ReceivedDd;
use crate::munger::SrMapping;
use crate::payload::VideoCodec;

/// The media a live publisher sends, shared (read-only but for the rate meters) by every shard.
#[derive(Debug)]
pub struct TrackInfo {
    /// Channel the publisher is live on.
    pub channel: Arc<str>,
    /// The publisher's peer.
    pub publisher: PeerId,
    /// The shard that owns the publisher (where keyframe requests go).
    pub shard: usize,
    /// Negotiated video codec, if the publisher sends video.
    pub video: Option<VideoTrack>,
    /// Negotiated audio codec, if the publisher sends audio.
    pub audio: Option<CodecSpec>,
}

/// The publisher's video: one codec, one or more simulcast layers.
#[derive(Debug)]
pub struct VideoTrack {
    /// Codec as negotiated (viewers must negotiate the same).
    pub spec: CodecSpec,
    /// The codec family, for keyframe detection.
    pub codec: VideoCodec,
    /// Simulcast layers in offer order; a single `None` when not simulcast.
    pub layers: Vec<Option<Rid>>,
    /// Measured bitrate of each layer in bit/s, updated by the publisher's shard.
    pub rates: Vec<AtomicU64>,
}

impl VideoTrack {
    /// Current measured bitrates, in layer order.
    pub fn rates(&self) -> Vec<u64> {
        self.rates
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect()
    }

    /// Layer indices ordered from lowest to highest bitrate (inactive layers first).
    pub fn quality_order(&self) -> Vec<usize> {
        let rates = self.rates();
        let mut order: Vec<usize> = (0..rates.len()).collect();
        order.sort_by_key(|&i| rates[i]);
        order
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Audio track.
    Audio,
    /// Video track.
    Video,
}

/// One RTP packet from a publisher, handed to every shard that has viewers of its channel.
#[derive(Debug)]
pub struct SourcePacket {
    /// The publisher's tracks at the time of the packet.
    pub track: Arc<TrackInfo>,
    /// Audio or video.
    pub kind: Kind,
    /// Simulcast layer index into `VideoTrack::layers` (0 for audio).
    pub layer: usize,
    /// Extended sequence number on the source.
    pub seq: u64,
    /// RTP timestamp on the source.
    pub ts: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// Whether a decoder can start at this packet.
    pub keyframe_start: bool,
    /// Latest sender report of the source SSRC.
    pub sr: Option<SrMapping>,
    /// When the SFU received it.
    pub received: Instant,
    /// RTP payload, shared by all viewers without copying.
    pub payload: Arc<[u8]>,
    /// AV1 dependency descriptor, when the publisher sends one.
    pub dd: Option<ReceivedDd>,
}
