//! Gateway metrics under the OpenFaaS gateway names, so existing dashboards work, plus the
//! `rfa_async_*` family.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use rfa_wire::route::FunctionRoute;

use crate::SharedState;

pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    seconds: HistogramVec,
    started: IntCounterVec,
    service_count: IntGaugeVec,
    async_accepted: IntCounterVec,
    async_rejected: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new(
                "gateway_function_invocation_total",
                "Function calls by status code",
            ),
            &["function_name", "code"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "gateway_functions_seconds",
                "Time until the function's response headers",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["function_name", "code"],
        )?;
        let started = IntCounterVec::new(
            Opts::new(
                "gateway_function_invocation_started",
                "Function calls started",
            ),
            &["function_name"],
        )?;
        let service_count = IntGaugeVec::new(
            Opts::new("gateway_service_count", "Replicas registered per function"),
            &["function_name"],
        )?;
        let async_accepted = IntCounterVec::new(
            Opts::new(
                "rfa_async_accepted_total",
                "Async calls stored on JetStream",
            ),
            &["function_name"],
        )?;
        let async_rejected = IntCounterVec::new(
            Opts::new(
                "rfa_async_rejected_total",
                "Async calls refused, by status code",
            ),
            &["function_name", "code"],
        )?;
        registry.register(Box::new(invocations.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(service_count.clone()))?;
        registry.register(Box::new(async_accepted.clone()))?;
        registry.register(Box::new(async_rejected.clone()))?;
        Ok(Metrics {
            registry,
            invocations,
            seconds,
            started,
            service_count,
            async_accepted,
            async_rejected,
        })
    }

    pub fn started(&self, function: &str) {
        self.started.with_label_values(&[function]).inc();
    }

    pub fn invocation(&self, function: &str, code: u16, elapsed: Option<Duration>) {
        let code = code.to_string();
        self.invocations
            .with_label_values(&[function, code.as_str()])
            .inc();
        if let Some(elapsed) = elapsed {
            self.seconds
                .with_label_values(&[function, code.as_str()])
                .observe(elapsed.as_secs_f64());
        }
    }

    pub fn async_accepted(&self, function: &str) {
        self.async_accepted.with_label_values(&[function]).inc();
    }

    pub fn async_rejected(&self, function: &str, code: u16) {
        self.async_rejected
            .with_label_values(&[function, code.to_string().as_str()])
            .inc();
    }

    pub fn set_service_counts(&self, routes: &[FunctionRoute]) {
        self.service_count.reset();
        for route in routes {
            self.service_count
                .with_label_values(&[route.name.as_str()])
                .set(route.upstreams.len() as i64);
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

pub async fn handler(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
