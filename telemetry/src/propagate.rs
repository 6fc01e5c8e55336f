//! W3C trace context (`traceparent`, `tracestate`) in and out of HTTP and NATS headers, and as a
//! plain string for what is stored and published later (the store's outbox).
//!
//! Every function here is a no-op while tracing is off ([`crate::enabled`]): headers pass through
//! untouched, as any other header does.

use crate::enabled;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C header that carries the trace id and the parent span id.
pub const TRACEPARENT: &str = "traceparent";

struct HttpIn<'a>(&'a http::HeaderMap);
struct HttpOut<'a>(&'a mut http::HeaderMap);
struct NatsIn<'a>(&'a async_nats::HeaderMap);
struct NatsOut<'a>(&'a mut async_nats::HeaderMap);
struct One<'a>(&'a str);
struct Capture(Option<String>);

impl Extractor for HttpIn<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

impl Injector for HttpOut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

impl Extractor for NatsIn<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

impl Injector for NatsOut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for Capture {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// The context a request's headers carry (empty when none, or while tracing is off).
pub fn from_http(headers: &http::HeaderMap) -> Context {
    if !enabled() {
        return Context::new();
    }
    propagator().extract(&HttpIn(headers))
}

/// The context a NATS message's headers carry.
pub fn from_nats(headers: Option<&async_nats::HeaderMap>) -> Context {
    match headers {
        Some(headers) if enabled() => propagator().extract(&NatsIn(headers)),
        _ => Context::new(),
    }
}

/// The context a stored `traceparent` value names.
pub fn from_traceparent(traceparent: Option<&str>) -> Context {
    match traceparent {
        Some(value) if enabled() => propagator().extract(&One(value)),
        _ => Context::new(),
    }
}

/// Writes the span `cx` holds into outgoing HTTP headers, replacing any `traceparent` there.
///
/// `cx` is a [`crate::RequestSpan`]'s context, a `tracing` span's (`span.context()`), or
/// [`Context::current()`]: the current `tracing` span's or the request context the work runs under.
pub fn to_http(cx: &Context, headers: &mut http::HeaderMap) {
    if enabled() {
        propagator().inject_context(cx, &mut HttpOut(headers));
    }
}

/// Writes the span `cx` holds into outgoing NATS headers, replacing any `traceparent` there.
pub fn to_nats(cx: &Context, headers: &mut async_nats::HeaderMap) {
    if enabled() {
        propagator().inject_context(cx, &mut NatsOut(headers));
    }
}

/// The span `cx` holds as a `traceparent` value, to store with work that continues later.
pub fn traceparent(cx: &Context) -> Option<String> {
    if !enabled() {
        return None;
    }
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut capture = Capture(None);
    propagator().inject_context(cx, &mut capture);
    capture.0
}
