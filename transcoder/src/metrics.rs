//! Prometheus metrics of the HLS fallback, labelled by rendition (`source`, `720p`, `audio`...):
//! how long the ladder takes per frame, whether it keeps up, what it drops or sheds, and how far
//! the published parts and segments trail the frames they hold.

use prometheus::{
    CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, exponential_buckets,
};

/// The HLS metric families; clones share the same series.
#[derive(Clone)]
pub struct HlsMetrics {
    /// Seconds to scale and encode one frame of a rung (`source`: decoding the source frame).
    pub encode_seconds: HistogramVec,
    /// Media time over work time in the last load window (`ladder`: the whole ladder).
    pub realtime_factor: GaugeVec,
    /// Source frames the ladder dropped (queue full, undecodable).
    pub dropped_frames: CounterVec,
    /// Rungs shed because the ladder fell behind real time.
    pub shed_renditions: CounterVec,
    /// Wall time from the arrival of a part's first frame to the part's publication.
    pub part_latency_seconds: GaugeVec,
    /// Wall time from the arrival of a segment's first frame to the segment's publication.
    pub segment_latency_seconds: GaugeVec,
}

impl HlsMetrics {
    /// New metric families, registered in `registry` (registration failures are logged, and
    /// the metrics still work unexported).
    pub fn new(registry: &Registry) -> Self {
        let m = Self::unregistered();
        let collectors: [Box<dyn prometheus::core::Collector>; 6] = [
            Box::new(m.encode_seconds.clone()),
            Box::new(m.realtime_factor.clone()),
            Box::new(m.dropped_frames.clone()),
            Box::new(m.shed_renditions.clone()),
            Box::new(m.part_latency_seconds.clone()),
            Box::new(m.segment_latency_seconds.clone()),
        ];
        for c in collectors {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "cannot register an HLS metric");
            }
        }
        m
    }

    /// Metric families that no registry exports (tests, benchmarks).
    pub fn unregistered() -> Self {
        let label = &["rendition"];
        let histogram = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help)
                .buckets(exponential_buckets(0.0005, 2.0, 12).unwrap_or_default());
            HistogramVec::new(opts, label).unwrap_or_else(|_| unreachable_metric())
        };
        let gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), label).unwrap_or_else(|_| unreachable_metric())
        };
        let counter = |name: &str, help: &str| {
            CounterVec::new(Opts::new(name, help), label).unwrap_or_else(|_| unreachable_metric())
        };
        Self {
            encode_seconds: histogram(
                "onair_hls_encode_seconds",
                "Time to scale and encode one frame of a rendition (source: decode time)",
            ),
            realtime_factor: gauge(
                "onair_hls_realtime_factor",
                "Media time over work time of the last load window (ladder: all rungs and decode)",
            ),
            dropped_frames: counter(
                "onair_hls_dropped_frames_total",
                "Source frames the transcoder dropped (queue full up to the next keyframe, undecodable)",
            ),
            shed_renditions: counter(
                "onair_hls_shed_renditions_total",
                "Renditions shed because the ladder fell behind real time",
            ),
            part_latency_seconds: gauge(
                "onair_hls_part_latency_seconds",
                "Wall time from the arrival of a part's first frame to the part's publication",
            ),
            segment_latency_seconds: gauge(
                "onair_hls_segment_latency_seconds",
                "Wall time from the arrival of a segment's first frame to the segment's publication",
            ),
        }
    }
}

/// The metric definitions above are constants that prometheus accepts; this is never reached.
fn unreachable_metric<T>() -> T {
    panic!("invalid HLS metric definition")
}
