//! Prometheus metrics of one store, served at `GET /metrics` in the text format. Every family
//! is prefixed `rfa_store_`. Each [`Metrics`] has its own registry, so several stores can run
//! in one process (tests do).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The store's metric families.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `rfa_store_requests_total{method,code}`.
    pub requests: IntCounterVec,
    /// `rfa_store_request_duration_seconds{method}`.
    pub request_duration: HistogramVec,
    /// `rfa_store_writes_total{event}`: committed writes by event kind.
    pub writes: IntCounterVec,
    /// `rfa_store_outbox_pending`: events committed but not yet acknowledged by JetStream.
    pub outbox_pending: IntGauge,
    /// `rfa_store_events_published_total`: events acknowledged by JetStream.
    pub events_published: IntCounter,
    /// `rfa_store_publish_errors_total`: failed connects, stream set-ups and publishes.
    pub publish_errors: IntCounter,
    /// `rfa_store_flushes_total`: group-commit flushes.
    pub flushes: IntCounter,
    /// `rfa_store_flush_errors_total`.
    pub flush_errors: IntCounter,
    /// `rfa_store_flush_duration_seconds`.
    pub flush_duration: Histogram,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "rfa_store_requests_total",
                "HTTP requests by method and status code",
            ),
            &["method", "code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "rfa_store_request_duration_seconds",
                "HTTP request duration in seconds",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method"],
        )?;
        let writes = IntCounterVec::new(
            Opts::new("rfa_store_writes_total", "Committed writes by event kind"),
            &["event"],
        )?;
        let outbox_pending = IntGauge::new(
            "rfa_store_outbox_pending",
            "Events committed but not yet acknowledged by JetStream",
        )?;
        let events_published = IntCounter::new(
            "rfa_store_events_published_total",
            "Events acknowledged by JetStream and removed from the outbox",
        )?;
        let publish_errors = IntCounter::new(
            "rfa_store_publish_errors_total",
            "Failed NATS connects, stream set-ups and publishes",
        )?;
        let flushes = IntCounter::new(
            "rfa_store_flushes_total",
            "Group-commit flushes of the database",
        )?;
        let flush_errors =
            IntCounter::new("rfa_store_flush_errors_total", "Failed database flushes")?;
        let flush_duration = Histogram::with_opts(
            HistogramOpts::new(
                "rfa_store_flush_duration_seconds",
                "Duration of one database flush in seconds",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(events_published.clone()))?;
        registry.register(Box::new(publish_errors.clone()))?;
        registry.register(Box::new(flushes.clone()))?;
        registry.register(Box::new(flush_errors.clone()))?;
        registry.register(Box::new(flush_duration.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            writes,
            outbox_pending,
            events_published,
            publish_errors,
            flushes,
            flush_errors,
            flush_duration,
        })
    }

    /// Counts one HTTP request.
    pub fn observe_request(&self, method: &str, code: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, code.to_string().as_str()])
            .inc();
        self.request_duration
            .with_label_values(&[method])
            .observe(seconds);
    }

    /// Every family in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
