//! The async worker: runs the function's queued calls (`rfa.async.<name>`) through the same
//! router as sync calls and posts the results to their callback URLs.
//!
//! All replicas of a function share one durable pull consumer (`fn-<name>`), so a call runs
//! once per delivery. A call is acknowledged only after its callback was delivered or the call
//! was dead-lettered; a worker killed mid-call leaves it to be redelivered.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Message};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use rfa_io::ProblemResponse;
use rfa_wire::async_call::AsyncCall;
use rfa_wire::{Problem, headers, streams, subjects};
use tower::ServiceExt;
use tracing::{Instrument, Span, debug, error, info, warn};

use crate::callback::{CallbackError, Callbacks, callback_headers};
use crate::config::Config;
use crate::consume::{Consume, Process, Settle, dead_letter};
use crate::metrics::{CallbackFailure, DeadLetter, Metrics};

/// A call delivered this many times without being finished (its worker died each time) is
/// given up and dead-lettered.
const MAX_DELIVERIES: i64 = 5;
/// Wait before a call is offered again when it could not be finished cleanly.
const NAK_DELAY: Duration = Duration::from_secs(5);

/// Runs one function's async calls.
pub(crate) struct Worker {
    function: String,
    router: Router,
    metrics: Metrics,
    callbacks: Callbacks,
    max_inflight: usize,
    ack_wait: Duration,
}

impl Worker {
    pub(crate) fn new(function: String, router: Router, metrics: Metrics, config: &Config) -> Self {
        Worker {
            function,
            router,
            metrics,
            callbacks: Callbacks::new(config),
            max_inflight: config.max_inflight.max(1),
            ack_wait: config.ack_wait,
        }
    }

    pub(crate) fn function(&self) -> &str {
        &self.function
    }

    /// How the shared consumer is set up and consumed.
    pub(crate) fn spec(&self) -> Consume {
        Consume::shared(
            format!("async calls of {}", self.function),
            streams::async_calls,
            rfa_wire::subjects::async_consumer(&self.function),
            format!("async calls of function {}", self.function),
            subjects::async_call(&self.function),
            self.max_inflight,
            self.ack_wait,
        )
    }

    /// Runs the call, delivers its callback, and says how to settle the message.
    async fn run_call(&self, js: &jetstream::Context, message: &Message) -> Settle {
        let _inflight = self.metrics.async_inflight();
        let call = decode_call(message);
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        if delivered > MAX_DELIVERIES {
            let reason = format!("delivered {delivered} times without finishing");
            error!(function = %self.function, call_id = %call.call_id, "{reason}; giving it up");
            return self
                .give_up(js, message, &reason, DeadLetter::MaxDeliveries)
                .await;
        }

        let started = Instant::now();
        let (status, response_headers, body) = self.invoke(&call, message.payload.clone()).await;
        let duration = started.elapsed();
        crate::trace::record_status(&Span::current(), status.as_u16());
        self.metrics.observe_async_call(status.as_u16(), duration);
        info!(
            function = %self.function,
            call_id = %call.call_id,
            method = %call.method,
            path = %call.path,
            status = status.as_u16(),
            duration_seconds = duration.as_secs_f64(),
            callback = call.callback_url.is_some(),
            "async call finished"
        );

        let Some(url) = call.callback_url.as_deref() else {
            return Settle::Ack;
        };
        let mut headers = callback_headers(
            &response_headers,
            &call.call_id,
            &self.function,
            status,
            duration,
        );
        let span = crate::trace::callback(url);
        rfa_telemetry::propagate::to_http(
            &rfa_telemetry::OpenTelemetrySpanExt::context(&span),
            &mut headers,
        );
        let delivered = self
            .callbacks
            .deliver(url, &headers, body)
            .instrument(span.clone())
            .await;
        if let Ok(delivered) = &delivered {
            crate::trace::record_status(&span, delivered.status.as_u16());
            span.record("rfaas.callback.attempts", delivered.attempts);
        } else {
            span.record("otel.status_code", "error");
        }
        match delivered {
            Ok(delivered) => {
                self.metrics.callback_attempts(delivered.attempts);
                if delivered.status.is_client_error() {
                    self.metrics.callback_failed(CallbackFailure::Refused);
                    warn!(function = %self.function, call_id = %call.call_id, url, status = delivered.status.as_u16(),
                        "the callback receiver refused the result; not retried");
                } else {
                    debug!(function = %self.function, call_id = %call.call_id, url, status = delivered.status.as_u16(),
                        attempts = delivered.attempts, "callback delivered");
                }
                Settle::Ack
            }
            Err(e) => {
                let (attempts, failure) = match &e {
                    CallbackError::GaveUp { attempts, .. } => {
                        (*attempts, CallbackFailure::RetriesExhausted)
                    }
                    _ => (0, CallbackFailure::InvalidUrl),
                };
                self.metrics.callback_attempts(attempts);
                self.metrics.callback_failed(failure);
                error!(function = %self.function, call_id = %call.call_id, url, error = %e, "callback given up");
                self.give_up(
                    js,
                    message,
                    &format!("callback to {url} failed: {e}"),
                    DeadLetter::CallbackFailed,
                )
                .await
            }
        }
    }

    /// Dead-letters the message; if even that fails, offers the call again later.
    async fn give_up(
        &self,
        js: &jetstream::Context,
        message: &Message,
        reason: &str,
        why: DeadLetter,
    ) -> Settle {
        match dead_letter(
            js,
            &self.function,
            message.headers.as_ref(),
            message.payload.clone(),
            reason,
        )
        .await
        {
            Ok(()) => {
                self.metrics.dead_lettered(why);
                Settle::Ack
            }
            Err(e) => {
                error!(function = %self.function, error = %e, "cannot dead-letter the call; it will be offered again");
                Settle::Nak(NAK_DELAY)
            }
        }
    }

    /// Runs the call through the router: status, headers and the whole body.
    async fn invoke(&self, call: &AsyncCall, payload: Bytes) -> (StatusCode, HeaderMap, Bytes) {
        let request = call.request(Body::from(payload));
        let response = match request {
            Ok(mut request) => {
                // The function's own request span is a child of this call's span.
                rfa_telemetry::propagate::to_http(
                    &rfa_telemetry::Context::current(),
                    request.headers_mut(),
                );
                match self.router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            Err(e) => {
                warn!(function = %self.function, call_id = %call.call_id, error = %e, "malformed async call");
                ProblemResponse(Problem::bad_request(format!("malformed async call: {e}")))
                    .into_response()
            }
        };
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => (parts.status, parts.headers, bytes),
            Err(e) => {
                error!(function = %self.function, call_id = %call.call_id, error = %e, "cannot read the function's response body");
                let problem = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the function's response body failed",
                );
                let bytes = Bytes::from(serde_json::to_vec(&problem).unwrap_or_default());
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(rfa_wire::problem::CONTENT_TYPE),
                );
                (StatusCode::INTERNAL_SERVER_ERROR, headers, bytes)
            }
        }
    }
}

impl Process for Worker {
    fn process(
        &self,
        js: &jetstream::Context,
        message: &Message,
    ) -> impl Future<Output = Settle> + Send {
        let call_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::CALL_ID))
            .map(|v| v.as_str())
            .unwrap_or_default();
        let span = crate::trace::async_call(&self.function, call_id, message);
        self.run_call(js, message).instrument(span)
    }
}

/// The queued call read from `message`, named by its stream sequence when it carries no id.
fn decode_call(message: &Message) -> AsyncCall {
    let mut call = AsyncCall::decode(message.headers.as_ref());
    if call.call_id.is_empty() {
        call.call_id = match message.info() {
            Ok(info) => format!("seq-{}", info.stream_sequence),
            Err(_) => "unknown".to_string(),
        };
    }
    call
}
