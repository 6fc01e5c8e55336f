//! The function's spans: one per HTTP request, per async call, per callback and per store event,
//! each continuing the trace its caller sent (`traceparent` in HTTP or NATS headers). While
//! tracing is off ([`rfa_telemetry::enabled`]) every helper hands out a disabled span.

use std::sync::Arc;

use async_nats::jetstream::Message;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rfa_telemetry::{FutureExt as _, KeyValue, RequestSpan, continue_from, enabled, propagate};
use tracing::Span;
use tracing::field::Empty;

/// Middleware: the server span of one HTTP request (sync calls, and async calls as the worker
/// replays them through the router).
///
/// The span is made with the OpenTelemetry API ([`RequestSpan`], cheaper on this per-call path);
/// the handler runs under its context, so its log lines carry the trace id and its store calls and
/// `tracing` spans are children of it.
///
/// The state is the function's name (empty when it has none).
pub(crate) async fn http(State(function): State<Arc<str>>, req: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let span = RequestSpan::server(
        format!("{} {path}", req.method()),
        &propagate::from_http(req.headers()),
        vec![
            KeyValue::new("rfaas.function", function.to_string()),
            KeyValue::new("url.path", path.to_string()),
        ],
    );
    let response = next.run(req).with_context(span.context().clone()).await;
    span.record_status(response.status().as_u16());
    response
}

/// The consumer span of one queued async call.
pub(crate) fn async_call(function: &str, call_id: &str, message: &Message) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "async call",
        otel.name = %format!("async {function}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        rfaas.function = %function,
        rfaas.call_id = %call_id,
        messaging.destination.name = %message.subject,
        http.response.status_code = Empty,
    );
    continue_from(&span, propagate::from_nats(message.headers.as_ref()));
    span
}

/// The client span of a callback delivery, a child of the current (async call) span.
pub(crate) fn callback(url: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "callback",
        otel.name = "POST callback",
        otel.kind = "client",
        otel.status_code = Empty,
        url.full = %url,
        http.response.status_code = Empty,
        rfaas.callback.attempts = Empty,
    )
}

/// The consumer span of one store event delivered to a handler.
pub(crate) fn store_event(function: &str, table: &str, event: &str, message: &Message) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "store event",
        otel.name = %format!("{event} {table}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        rfaas.function = %function,
        rfaas.table = %table,
        rfaas.event = %event,
        rfaas.doc_id = Empty,
        messaging.destination.name = %message.subject,
    );
    continue_from(&span, propagate::from_nats(message.headers.as_ref()));
    span
}

/// Records an HTTP status on `span`, marking 5xx as an error.
pub(crate) fn record_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}
