//! Prometheus metrics of the media plane.
//!
//! Shards count into plain local integers on the hot path and flush them here about once a
//! second, so forwarding a packet never touches a shared atomic.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// The media plane's metrics, registered into the server's registry.
#[derive(Clone)]
pub struct Metrics {
    /// Live peers of every kind.
    pub peers: IntGauge,
    /// Live publishers.
    pub publishers: IntGauge,
    /// Viewers per channel.
    pub viewers: IntGaugeVec,
    /// RTP packets received from publishers.
    pub packets_in: IntCounter,
    /// RTP payload bytes received from publishers.
    pub bytes_in: IntCounter,
    /// RTP packets written to viewers.
    pub packets_out: IntCounter,
    /// RTP payload bytes written to viewers.
    pub bytes_out: IntCounter,
    /// Datagrams sent on the media sockets.
    pub datagrams_out: IntCounter,
    /// NACKs received from viewers (served from our own history).
    pub nacks_received: IntCounter,
    /// Keyframe requests (PLI/FIR) sent to publishers.
    pub keyframe_requests_sent: IntCounter,
    /// Keyframe requests viewers sent to us.
    pub keyframe_requests_received: IntCounter,
    /// Simulcast layer switches completed.
    pub layer_switches: IntCounter,
    /// Time a viewer waited for a keyframe (join or switch) before video flowed on the new layer.
    pub keyframe_wait: Histogram,
    /// Open data channels.
    pub data_channels: IntGauge,
    /// Peers whose `Rtc` panicked and was dropped.
    pub peer_panics: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            peers: IntGauge::new("onair_sfu_peers", "Live WebRTC peers")?,
            publishers: IntGauge::new("onair_sfu_publishers", "Live WHIP publishers")?,
            viewers: IntGaugeVec::new(
                Opts::new("onair_sfu_viewers", "Live WHEP viewers per channel"),
                &["channel"],
            )?,
            packets_in: IntCounter::new(
                "onair_sfu_packets_in_total",
                "RTP packets from publishers",
            )?,
            bytes_in: IntCounter::new(
                "onair_sfu_bytes_in_total",
                "RTP payload bytes from publishers",
            )?,
            packets_out: IntCounter::new("onair_sfu_packets_out_total", "RTP packets to viewers")?,
            bytes_out: IntCounter::new(
                "onair_sfu_bytes_out_total",
                "RTP payload bytes to viewers",
            )?,
            datagrams_out: IntCounter::new("onair_sfu_datagrams_out_total", "Datagrams sent")?,
            nacks_received: IntCounter::new(
                "onair_sfu_nacks_received_total",
                "NACKs from viewers",
            )?,
            keyframe_requests_sent: IntCounter::new(
                "onair_sfu_keyframe_requests_sent_total",
                "PLI/FIR sent to publishers",
            )?,
            keyframe_requests_received: IntCounter::new(
                "onair_sfu_keyframe_requests_received_total",
                "PLI/FIR received from viewers",
            )?,
            layer_switches: IntCounter::new(
                "onair_sfu_layer_switches_total",
                "Simulcast layer switches",
            )?,
            keyframe_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "onair_sfu_keyframe_wait_seconds",
                    "Wait for a keyframe on viewer join or layer switch",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]),
            )?,
            data_channels: IntGauge::new("onair_sfu_data_channels", "Open data channels")?,
            peer_panics: IntCounter::new(
                "onair_sfu_peer_panics_total",
                "Peers dropped after a panic",
            )?,
        };
        registry.register(Box::new(m.peers.clone()))?;
        registry.register(Box::new(m.publishers.clone()))?;
        registry.register(Box::new(m.viewers.clone()))?;
        registry.register(Box::new(m.packets_in.clone()))?;
        registry.register(Box::new(m.bytes_in.clone()))?;
        registry.register(Box::new(m.packets_out.clone()))?;
        registry.register(Box::new(m.bytes_out.clone()))?;
        registry.register(Box::new(m.datagrams_out.clone()))?;
        registry.register(Box::new(m.nacks_received.clone()))?;
        registry.register(Box::new(m.keyframe_requests_sent.clone()))?;
        registry.register(Box::new(m.keyframe_requests_received.clone()))?;
        registry.register(Box::new(m.layer_switches.clone()))?;
        registry.register(Box::new(m.keyframe_wait.clone()))?;
        registry.register(Box::new(m.data_channels.clone()))?;
        registry.register(Box::new(m.peer_panics.clone()))?;
        Ok(m)
    }
}

/// Per-shard counters, flushed into [`Metrics`] periodically.
#[derive(Debug, Default)]
pub struct LocalCounters {
    /// See [`Metrics::packets_in`].
    pub packets_in: u64,
    /// See [`Metrics::bytes_in`].
    pub bytes_in: u64,
    /// See [`Metrics::packets_out`].
    pub packets_out: u64,
    /// See [`Metrics::bytes_out`].
    pub bytes_out: u64,
    /// See [`Metrics::datagrams_out`].
    pub datagrams_out: u64,
}

impl LocalCounters {
    /// Adds the counts to the shared metrics and zeroes them.
    pub fn flush(&mut self, m: &Metrics) {
        m.packets_in.inc_by(self.packets_in);
        m.bytes_in.inc_by(self.bytes_in);
        m.packets_out.inc_by(self.packets_out);
        m.bytes_out.inc_by(self.bytes_out);
        m.datagrams_out.inc_by(self.datagrams_out);
        *self = Self::default();
    }
}
