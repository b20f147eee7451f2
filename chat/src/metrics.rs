//! Chat metrics (Prometheus, registered in the server's registry).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Counters and gauges of the chat service; cheap to clone.
#[derive(Clone)]
pub struct ChatMetrics {
    /// Messages stored and posted.
    pub accepted: IntCounter,
    /// Sends refused, by notice code.
    pub rejected: IntCounterVec,
    /// Frames queued to connections (messages, acks, notices, events).
    pub deliveries: IntCounter,
    /// Open connections by transport (`websocket`, `datachannel`).
    pub connections: IntGaugeVec,
    /// Connections closed by the server, by reason.
    pub kicked: IntCounterVec,
    /// Rooms open on this node.
    pub rooms: IntGauge,
    /// Time from publish on one node to receipt on another.
    pub bus_lag: Histogram,
    /// Failed bus publishes (Redis away).
    pub bus_errors: IntCounter,
    /// 1 while the Redis subscriber is connected.
    pub bus_connected: IntGauge,
    /// Holes read from history, by where they were found (`ring`, `cache`, `db`).
    pub history_reads: IntCounterVec,
}

impl ChatMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            accepted: IntCounter::new(
                "onair_chat_messages_accepted_total",
                "Chat messages stored and posted",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "onair_chat_messages_rejected_total",
                    "Chat sends refused, by reason",
                ),
                &["reason"],
            )?,
            deliveries: IntCounter::new(
                "onair_chat_deliveries_total",
                "Frames queued to chat connections",
            )?,
            connections: IntGaugeVec::new(
                Opts::new(
                    "onair_chat_connections",
                    "Open chat connections by transport",
                ),
                &["transport"],
            )?,
            kicked: IntCounterVec::new(
                Opts::new(
                    "onair_chat_disconnects_total",
                    "Chat connections closed by the server, by reason",
                ),
                &["reason"],
            )?,
            rooms: IntGauge::new("onair_chat_rooms", "Chat rooms open on this node")?,
            bus_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "onair_chat_bus_lag_seconds",
                    "Chat bus delay from publishing node to this node",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            bus_errors: IntCounter::new(
                "onair_chat_bus_publish_errors_total",
                "Chat bus publishes that failed (Redis unreachable)",
            )?,
            bus_connected: IntGauge::new(
                "onair_chat_bus_connected",
                "1 while the Redis chat subscriber is connected",
            )?,
            history_reads: IntCounterVec::new(
                Opts::new(
                    "onair_chat_history_reads_total",
                    "Chat history reads, by source",
                ),
                &["source"],
            )?,
        };
        registry.register(Box::new(m.accepted.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.kicked.clone()))?;
        registry.register(Box::new(m.rooms.clone()))?;
        registry.register(Box::new(m.bus_lag.clone()))?;
        registry.register(Box::new(m.bus_errors.clone()))?;
        registry.register(Box::new(m.bus_connected.clone()))?;
        registry.register(Box::new(m.history_reads.clone()))?;
        Ok(m)
    }
}
