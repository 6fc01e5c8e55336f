//! Prometheus metrics of one runtime: the OpenFaaS watchdog's HTTP families, plus the
//! `rfa_async_*` and `rfa_events_*` families of the background workers. No family carries the
//! function's name: Prometheus adds it as a target label (see `docker/prometheus.yml`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The metric families of one runtime, in a registry of their own (so two runtimes in one
/// test process do not share counts). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http_requests_total: IntCounterVec,
    http_request_duration_seconds: HistogramVec,
    http_requests_in_flight: IntGauge,
    async_calls_completed_total: IntCounterVec,
    async_call_duration_seconds: Histogram,
    async_calls_in_flight: IntGauge,
    async_callback_attempts_total: IntCounter,
    async_callback_failures_total: IntCounterVec,
    async_dead_lettered_total: IntCounterVec,
    events_total: IntCounterVec,
    events_failed_total: IntCounterVec,
}

/// Why an async call's callback ended without the receiver taking the result
/// (`rfa_async_callback_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallbackFailure {
    /// Every attempt met a connection error, a timeout, a 5xx or a 429.
    RetriesExhausted,
    /// The receiver answered a 4xx other than 429: not retried.
    Refused,
    /// The URL cannot be called (not absolute, not http, or no request could be built).
    InvalidUrl,
}

impl CallbackFailure {
    fn as_str(self) -> &'static str {
        match self {
            CallbackFailure::RetriesExhausted => "retries_exhausted",
            CallbackFailure::Refused => "refused",
            CallbackFailure::InvalidUrl => "invalid_url",
        }
    }
}

/// Why an async call was dead-lettered (`rfa_async_dead_lettered_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLetter {
    /// Its callback could not be delivered.
    CallbackFailed,
    /// It was delivered too often without finishing (its workers died).
    MaxDeliveries,
}

impl DeadLetter {
    fn as_str(self) -> &'static str {
        match self {
            DeadLetter::CallbackFailed => "callback_failed",
            DeadLetter::MaxDeliveries => "max_deliveries",
        }
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests served by the function (sync and async calls), by HTTP status code and method",
            ),
            &["code", "method"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Seconds the function took to answer a request, by HTTP status code and method",
            ),
            &["code", "method"],
        )?;
        let http_requests_in_flight = IntGauge::new(
            "http_requests_in_flight",
            "Requests the function is answering now",
        )?;
        let async_calls_completed_total = IntCounterVec::new(
            Opts::new(
                "rfa_async_calls_completed_total",
                "Async calls run to the end by this replica, by the handler's HTTP status code",
            ),
            &["code"],
        )?;
        let async_call_duration_seconds = Histogram::with_opts(HistogramOpts::new(
            "rfa_async_call_duration_seconds",
            "Seconds the handler took to run an async call",
        ))?;
        let async_calls_in_flight = IntGauge::new(
            "rfa_async_calls_in_flight",
            "Async calls this replica is running now, callbacks included",
        )?;
        let async_callback_attempts_total = IntCounter::new(
            "rfa_async_callback_attempts_total",
            "HTTP requests made to deliver async results to their X-Callback-Url, retries included",
        )?;
        let async_callback_failures_total = IntCounterVec::new(
            Opts::new(
                "rfa_async_callback_failures_total",
                "Async results the callback receiver did not take, by reason (retries_exhausted, refused, invalid_url)",
            ),
            &["reason"],
        )?;
        let async_dead_lettered_total = IntCounterVec::new(
            Opts::new(
                "rfa_async_dead_lettered_total",
                "Async calls given up and published to rfa.dead.<function>, by reason (callback_failed, max_deliveries)",
            ),
            &["reason"],
        )?;
        let events_total = IntCounterVec::new(
            Opts::new(
                "rfa_events_total",
                "Store events handled, by outcome (ok or error)",
            ),
            &["table", "event", "outcome"],
        )?;
        let events_failed_total = IntCounterVec::new(
            Opts::new(
                "rfa_events_failed_total",
                "Store events given up after the last attempt and dead-lettered",
            ),
            &["table", "event"],
        )?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(http_requests_in_flight.clone()))?;
        registry.register(Box::new(async_calls_completed_total.clone()))?;
        registry.register(Box::new(async_call_duration_seconds.clone()))?;
        registry.register(Box::new(async_calls_in_flight.clone()))?;
        registry.register(Box::new(async_callback_attempts_total.clone()))?;
        registry.register(Box::new(async_callback_failures_total.clone()))?;
        registry.register(Box::new(async_dead_lettered_total.clone()))?;
        registry.register(Box::new(events_total.clone()))?;
        registry.register(Box::new(events_failed_total.clone()))?;
        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                http_requests_total,
                http_request_duration_seconds,
                http_requests_in_flight,
                async_calls_completed_total,
                async_call_duration_seconds,
                async_calls_in_flight,
                async_callback_attempts_total,
                async_callback_failures_total,
                async_dead_lettered_total,
                events_total,
                events_failed_total,
            }),
        })
    }

    /// The registry in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Counts one answered HTTP request.
    fn observe_http(&self, method: &str, code: &str, elapsed: Duration) {
        let labels = [code, method];
        self.inner
            .http_requests_total
            .with_label_values(&labels)
            .inc();
        self.inner
            .http_request_duration_seconds
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one finished async call.
    pub(crate) fn observe_async_call(&self, status: u16, elapsed: Duration) {
        self.inner
            .async_calls_completed_total
            .with_label_values(&[status.to_string().as_str()])
            .inc();
        self.inner
            .async_call_duration_seconds
            .observe(elapsed.as_secs_f64());
    }

    /// Marks one async call running until the guard is dropped.
    pub(crate) fn async_inflight(&self) -> GaugeGuard {
        GaugeGuard::new(self.inner.async_calls_in_flight.clone())
    }

    /// Counts the requests made for one callback.
    pub(crate) fn callback_attempts(&self, attempts: u32) {
        self.inner
            .async_callback_attempts_total
            .inc_by(u64::from(attempts));
    }

    /// Counts one callback whose result the receiver did not take.
    pub(crate) fn callback_failed(&self, reason: CallbackFailure) {
        self.inner
            .async_callback_failures_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts one async call published to the dead-letter subject.
    pub(crate) fn dead_lettered(&self, reason: DeadLetter) {
        self.inner
            .async_dead_lettered_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts one handled store event.
    pub(crate) fn event_handled(&self, table: &str, event: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.inner
            .events_total
            .with_label_values(&[table, event, outcome])
            .inc();
    }

    /// Counts one store event given up.
    pub(crate) fn event_failed(&self, table: &str, event: &str) {
        self.inner
            .events_failed_total
            .with_label_values(&[table, event])
            .inc();
    }
}

/// Increments a gauge now and decrements it when dropped (also when a request's future is
/// dropped because its client went away).
pub(crate) struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The `method` label: the standard methods as they are, anything else as `OTHER`, so a
/// client cannot grow the label set without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware counting the user's requests with the watchdog's families.
pub(crate) async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let _in_flight = GaugeGuard::new(metrics.inner.http_requests_in_flight.clone());
    let start = Instant::now();
    let response = next.run(req).await;
    metrics.observe_http(method, response.status().as_str(), start.elapsed());
    response
}

/// `GET /metrics`.
pub(crate) async fn handler(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
