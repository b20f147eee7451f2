//! Prometheus metrics of the API's HTTP surface.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Request count and latency per route template.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `onair_api_http_requests_total{method, route, status}`.
    pub requests: IntCounterVec,
    /// `onair_api_http_request_duration_seconds{method, route}`.
    pub latency: HistogramVec,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "onair_api_http_requests_total",
                "HTTP requests served by the platform API",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "onair_api_http_request_duration_seconds",
                "Latency of platform API HTTP requests",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self { requests, latency })
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}
