//! The one span every proxied request gets (the gateway's and the function's server spans), made
//! with the OpenTelemetry API directly instead of through a `tracing` span.
//!
//! These spans are made on every call, so they are on the hot path: a `tracing` span bridged by
//! `tracing-opentelemetry` costs about twice the CPU of an SDK span (it keeps its own span data,
//! visits each field twice and activates the context on every poll). Everything a `tracing` span
//! gave these spans is kept: run the request's future under [`RequestSpan::context`] (with
//! [`opentelemetry::context::FutureExt::with_context`]) and log lines carry its trace id, `tracing`
//! spans opened inside it become its children, and [`crate::propagate`] injects it.

use std::borrow::Cow;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Makes `tracer` the one [`RequestSpan`]s are started with (done once, by [`crate::init`]).
pub(crate) fn install(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

/// A server span that ends when dropped. Disabled (no cost, an empty context) while tracing is off.
pub struct RequestSpan {
    cx: Context,
    recording: bool,
}

impl RequestSpan {
    /// Starts a server span named `name` as a child of `parent` (a root span when `parent` holds
    /// no span), or a disabled one while tracing is off.
    pub fn server(
        name: impl Into<Cow<'static, str>>,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> RequestSpan {
        match TRACER.get() {
            Some(tracer) if crate::enabled() => {
                let span = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Server)
                    .with_attributes(attributes)
                    .start_with_context(tracer, parent);
                RequestSpan {
                    cx: parent.with_span(span),
                    recording: true,
                }
            }
            _ => RequestSpan::disabled(),
        }
    }

    /// A span that records nothing.
    pub fn disabled() -> RequestSpan {
        RequestSpan {
            cx: Context::new(),
            recording: false,
        }
    }

    /// The context holding this span: run the request's work under it, inject it downstream.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Adds an attribute (nothing while disabled).
    pub fn set_attribute(&self, attribute: KeyValue) {
        if self.recording {
            self.cx.span().set_attribute(attribute);
        }
    }

    /// Records the HTTP status of the answer; a 5xx marks the span as an error.
    pub fn record_status(&self, status: u16) {
        if !self.recording {
            return;
        }
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(""));
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if self.recording {
            self.cx.span().end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_span_has_an_empty_context_and_ignores_everything() {
        let span = RequestSpan::server("GET /functions/f", &Context::new(), vec![]);
        // No tracer is installed in this test binary: tracing is off.
        assert!(!span.context().has_active_span());
        span.set_attribute(KeyValue::new("rfaas.call_id", "x"));
        span.record_status(500);
    }
}
