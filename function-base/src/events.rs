//! Store events: `svc.on_new_doc(table, handler)` and friends.
//!
//! Each (function, table, event) is a durable pull consumer `ev-<function>-<table>-<event>` on
//! the `RFA_STORE` stream, filtered to `rfa.store.<table>.<event>.*` and delivering everything
//! from the stream's start when first created, so events published while the function was
//! down (or before it was first deployed) reach it. The replicas of a function share it.
//!
//! A handler error (or panic) is retried with backoff (nak with a delay); after the last
//! attempt the event is logged, counted (`rfa_events_failed_total`), published to
//! `rfa.dead.<function>` and terminated.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Message};
use futures_util::FutureExt;
use rfa_wire::store::{DocEvent, EventKind};
use rfa_wire::streams;
use tracing::{Instrument, error, info, warn};

use rfa_io::Backoff;

use crate::config::Config;
use crate::consume::{Consume, Process, Settle, dead_letter};
use crate::metrics::Metrics;
use crate::panic::panic_message;

/// A user's event handler with its error type erased.
pub(crate) type BoxedHandler =
    Arc<dyn Fn(DocEvent) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Wraps a user's `async fn(DocEvent) -> Result<(), E>`.
pub(crate) fn boxed<F, Fut, E>(handler: F) -> BoxedHandler
where
    F: Fn(DocEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    Arc::new(move |event| {
        let future = handler(event);
        Box::pin(async move { future.await.map_err(|e| e.to_string()) })
    })
}

/// One `svc.on_*_doc(table, handler)` registration.
#[derive(Clone)]
pub(crate) struct Subscription {
    pub table: String,
    pub event: EventKind,
    pub handler: BoxedHandler,
}

/// Runs one subscription's handler over its consumer's events.
pub(crate) struct EventConsumer {
    function: String,
    subscription: Subscription,
    metrics: Metrics,
    attempts: u32,
    backoff: Backoff,
    backoff_max: Duration,
    max_inflight: usize,
    ack_wait: Duration,
}

impl EventConsumer {
    pub(crate) fn new(
        function: &str,
        subscription: Subscription,
        metrics: Metrics,
        config: &Config,
    ) -> Self {
        EventConsumer {
            function: function.to_string(),
            subscription,
            metrics,
            attempts: config.event_attempts.max(1),
            backoff: Backoff::new(config.event_backoff, config.event_backoff_max),
            backoff_max: config.event_backoff_max,
            max_inflight: config.max_inflight.max(1),
            ack_wait: config.ack_wait,
        }
    }

    /// `ev-<function>-<table>-<event>`.
    pub(crate) fn durable_name(function: &str, table: &str, event: EventKind) -> String {
        format!("ev-{function}-{table}-{}", event.as_str())
    }

    /// How the durable consumer is set up and consumed.
    pub(crate) fn spec(&self) -> Consume {
        let Subscription { table, event, .. } = &self.subscription;
        Consume::shared(
            format!(
                "{} events of table {table} for {}",
                event.as_str(),
                self.function
            ),
            streams::store_events,
            Self::durable_name(&self.function, table, *event),
            format!(
                "{} events of table {table} for function {}",
                event.as_str(),
                self.function
            ),
            rfa_wire::subjects::store_event(table, event.as_str(), "*"),
            self.max_inflight,
            self.ack_wait,
        )
    }

    /// Runs the handler on one event and says how to settle it.
    async fn handle(&self, js: &jetstream::Context, message: &Message) -> Settle {
        let table = self.subscription.table.as_str();
        let kind = self.subscription.event.as_str();
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let event: DocEvent = match serde_json::from_slice(&message.payload) {
            Ok(event) => event,
            Err(e) => {
                error!(function = %self.function, table, event = kind, subject = %message.subject,
                    error = %e, "the message is not a store event; giving it up");
                return self
                    .give_up(js, message, &format!("not a store event: {e}"))
                    .await;
            }
        };
        let id = event.id.clone();
        let seq = event.seq;
        tracing::Span::current().record("rfaas.doc_id", id.as_str());
        if delivered > i64::from(self.attempts) {
            error!(function = %self.function, table, event = kind, id, seq, delivered,
                "event delivered more times than allowed without finishing; giving it up");
            return self
                .give_up(
                    js,
                    message,
                    &format!("delivered {delivered} times without finishing"),
                )
                .await;
        }

        let outcome = AssertUnwindSafe((self.subscription.handler)(event))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(panic.as_ref()))));
        match outcome {
            Ok(()) => {
                self.metrics.event_handled(table, kind, true);
                info!(function = %self.function, table, event = kind, id, seq, "event handled");
                Settle::Ack
            }
            Err(reason) => {
                self.metrics.event_handled(table, kind, false);
                tracing::Span::current().record("otel.status_code", "error");
                if delivered >= i64::from(self.attempts) {
                    error!(function = %self.function, table, event = kind, id, seq, attempts = delivered,
                        error = %reason, "event handler failed for the last time; giving it up");
                    self.give_up(
                        js,
                        message,
                        &format!("handler failed {delivered} times, last: {reason}"),
                    )
                    .await
                } else {
                    let attempt = u32::try_from(delivered.max(1) - 1).unwrap_or(u32::MAX);
                    let wait = self.backoff.delay(attempt);
                    warn!(function = %self.function, table, event = kind, id, seq, attempt = delivered,
                        error = %reason, retry_in_ms = wait.as_millis() as u64, "event handler failed; will retry");
                    Settle::Nak(wait)
                }
            }
        }
    }

    /// Counts, dead-letters and terminates the event; if the dead letter cannot be published,
    /// offers the event again later.
    async fn give_up(&self, js: &jetstream::Context, message: &Message, reason: &str) -> Settle {
        let (table, kind) = (&self.subscription.table, self.subscription.event.as_str());
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
                self.metrics.event_failed(table, kind);
                Settle::Term
            }
            Err(e) => {
                error!(function = %self.function, table, event = kind, error = %e,
                    "cannot dead-letter the event; it will be offered again");
                Settle::Nak(self.backoff_max)
            }
        }
    }
}

impl Process for EventConsumer {
    fn process(
        &self,
        js: &jetstream::Context,
        message: &Message,
    ) -> impl Future<Output = Settle> + Send {
        let span = crate::trace::store_event(
            &self.function,
            &self.subscription.table,
            self.subscription.event.as_str(),
            message,
        );
        self.handle(js, message).instrument(span)
    }
}
