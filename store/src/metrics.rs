//! Prometheus metrics of one store, served at `GET /metrics` in the text format. Every family
//! is prefixed `rfa_store_`. Each [`Metrics`] has its own registry, so several stores can run
//! in one process (tests do).
//!
//! The `table` label carries user-chosen table names, as the gateway's `function_name` carries
//! function names: only names that pass the table rule are used, so a client sending garbage
//! cannot grow the label set (such requests are counted by `rfa_store_requests_total` alone).

use axum::http::Method;
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
    /// `rfa_store_operations_total{table,operation,result}`: document operations.
    pub operations: IntCounterVec,
    /// `rfa_store_operation_duration_seconds{table,operation}`.
    pub operation_duration: HistogramVec,
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
        let operations = IntCounterVec::new(
            Opts::new(
                "rfa_store_operations_total",
                "Document operations by table, operation (create, get, list, put, patch, delete) \
                 and result (ok, not_found, precondition_failed, too_large, invalid, error)",
            ),
            &["table", "operation", "result"],
        )?;
        let operation_duration = HistogramVec::new(
            HistogramOpts::new(
                "rfa_store_operation_duration_seconds",
                "Seconds to answer a document operation, a write's flush included, by table \
                 and operation",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["table", "operation"],
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
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(operation_duration.clone()))?;
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
            operations,
            operation_duration,
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

    /// Counts one answered request if it was a document operation: `route` is the matched
    /// route, `table` its table name when that is valid.
    pub fn observe_operation(
        &self,
        route: &str,
        method: &Method,
        table: Option<&str>,
        code: u16,
        seconds: f64,
    ) {
        let (Some(operation), Some(table)) = (operation(route, method), table) else {
            return;
        };
        self.operations
            .with_label_values(&[table, operation, result(code)])
            .inc();
        self.operation_duration
            .with_label_values(&[table, operation])
            .observe(seconds);
    }

    /// Every family in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The document operation a request on `route` (the router's pattern) with `method` is.
fn operation(route: &str, method: &Method) -> Option<&'static str> {
    let m = method.as_str();
    match (route, m) {
        ("/tables/{table}/docs", "GET" | "HEAD") => Some("list"),
        ("/tables/{table}/docs", "POST") => Some("create"),
        ("/tables/{table}/docs/{id}", "GET" | "HEAD") => Some("get"),
        ("/tables/{table}/docs/{id}", "PUT") => Some("put"),
        ("/tables/{table}/docs/{id}", "PATCH") => Some("patch"),
        ("/tables/{table}/docs/{id}", "DELETE") => Some("delete"),
        _ => None,
    }
}

/// The `result` label of an answer's status code.
fn result(code: u16) -> &'static str {
    match code {
        200..=299 => "ok",
        404 => "not_found",
        412 => "precondition_failed",
        413 => "too_large",
        400..=499 => "invalid",
        500..=599 => "error",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_counted_by_table_operation_and_result() {
        let m = Metrics::new().unwrap();
        let docs = "/tables/{table}/docs";
        let doc = "/tables/{table}/docs/{id}";
        m.observe_operation(docs, &Method::POST, Some("orders"), 201, 0.002);
        m.observe_operation(doc, &Method::GET, Some("orders"), 404, 0.001);
        m.observe_operation(doc, &Method::PATCH, Some("orders"), 412, 0.001);
        // Not operations: an invalid table, the table list, a method the route refuses.
        m.observe_operation(docs, &Method::GET, None, 400, 0.001);
        m.observe_operation("/tables", &Method::GET, Some("orders"), 200, 0.001);
        m.observe_operation(doc, &Method::POST, Some("orders"), 405, 0.001);
        let text = m.render().unwrap();
        for line in [
            r#"rfa_store_operations_total{operation="create",result="ok",table="orders"} 1"#,
            r#"rfa_store_operations_total{operation="get",result="not_found",table="orders"} 1"#,
            r#"rfa_store_operations_total{operation="patch",result="precondition_failed",table="orders"} 1"#,
            r#"rfa_store_operation_duration_seconds_count{operation="create",table="orders"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("rfa_store_operations_total{"))
                .count(),
            3,
            "{text}"
        );
    }
}
