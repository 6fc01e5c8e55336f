//! The outbox publisher: moves committed events from the outbox to JetStream.
//!
//! One task per store. It connects to NATS (retrying with capped exponential backoff for as
//! long as NATS is down; writes keep succeeding and the outbox grows), makes sure the
//! `RFA_STORE` stream exists, then loops:
//!
//! 1. read up to [`MAX_IN_FLIGHT`] outbox entries, oldest first, whose seq is durable
//!    (see [`crate::flush`]);
//! 2. publish them all, in seq order, on one connection, to
//!    `rfa.store.<table>.<event>.<id>` with `Nats-Msg-Id: <store-instance-id>-<seq>`;
//! 3. await their PubAcks in order, then remove the acknowledged entries from the outbox (one
//!    sled batch);
//! 4. when the outbox holds nothing publishable, sleep until the flusher reports a new durable
//!    seq (a `watch` channel: no polling).
//!
//! Publishes leave in seq order on a single connection, so JetStream stores them in that order
//! and the per-document order is kept. An entry is removed only after its ack; after an error
//! the unacknowledged entries are sent again, and JetStream's duplicate window drops the ones
//! it had already stored (same `Nats-Msg-Id`). On start-up the whole backlog is published the
//! same way. Removals are not flushed: after a crash an entry may be sent again, and is
//! de-duplicated the same way.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishError};
use bytes::Bytes;
use rfa_io::Backoff;
use rfa_io::backoff::retry;
use rfa_io::nats::{Connect, ensure_stream};
use rfa_wire::streams::store_events;
use rfa_wire::{headers, subjects};
use tokio::sync::watch;

use crate::Shared;
use crate::db::{DbError, EventHead};
use crate::flush::Flushed;

/// Most publishes awaiting their PubAck at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// Why a round of publishing stopped.
#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error("publish failed: {0}")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the store is shutting down")]
    Closed,
}

/// Runs until the task is aborted or the store shuts down.
pub async fn run(shared: Arc<Shared>, url: String, backoff_max: Duration) {
    let connect = Connect {
        retry: Backoff::new(Duration::from_millis(100), backoff_max),
        ..Connect::new("rfa-store")
    };
    let mut backoff = connect.retry;
    let what = format!("connecting to NATS at {url} (events stay in the outbox meanwhile)");
    let connected = retry(&what, connect.retry, std::future::pending(), || async {
        let result = connect.once(&url).await;
        if result.is_err() {
            shared.metrics.publish_errors.inc();
        }
        result
    })
    .await;
    let Some(client) = connected else {
        return;
    };
    tracing::info!(url = %url, "connected to NATS");
    let js = jetstream::new(client);
    let mut flushed = shared.commit.subscribe();
    loop {
        if let Err(e) = ensure_stream(&js, store_events()).await {
            shared.metrics.publish_errors.inc();
            tracing::warn!(error = %e, "cannot set up the JetStream stream; retrying");
            backoff.wait().await;
            continue;
        }
        match pump(&js, &shared, &mut flushed, &mut backoff).await {
            Err(PumpError::Closed) => return,
            Err(e) => {
                shared.metrics.publish_errors.inc();
                tracing::warn!(error = %e, "publishing store events failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Publishes the outbox until an error; sleeps while there is nothing to publish.
async fn pump(
    js: &jetstream::Context,
    shared: &Shared,
    flushed: &mut watch::Receiver<Flushed>,
    backoff: &mut Backoff,
) -> Result<Infallible, PumpError> {
    let instance = shared.db.instance_id();
    loop {
        let durable = flushed.borrow_and_update().durable;
        let batch = shared.db.outbox_batch(durable, MAX_IN_FLIGHT)?;
        if batch.is_empty() {
            flushed.changed().await.map_err(|_| PumpError::Closed)?;
            continue;
        }
        let mut acks = Vec::with_capacity(batch.len());
        for entry in &batch {
            let head: EventHead = match serde_json::from_slice(&entry.payload) {
                Ok(head) => head,
                Err(e) => {
                    // Never written by this store: nothing can be published for it.
                    tracing::error!(seq = entry.seq, error = %e, "dropping an unreadable outbox entry");
                    acks.push(None);
                    continue;
                }
            };
            let subject = subjects::store_event(&head.table, head.event.as_str(), &head.id);
            let mut headers = HeaderMap::new();
            headers.insert(
                headers::NATS_MSG_ID,
                format!("{instance}-{}", entry.seq).as_str(),
            );
            let span = publish_span(&head, entry.traceparent.as_deref());
            rfa_telemetry::propagate::to_nats(
                &rfa_telemetry::OpenTelemetrySpanExt::context(&span),
                &mut headers,
            );
            let payload = Bytes::copy_from_slice(&entry.payload);
            acks.push(Some((
                js.publish_with_headers(subject, headers, payload).await?,
                span,
            )));
        }
        // Acknowledged entries are removed together, once per round; after an error, the ones
        // acknowledged before it are removed and the rest is sent again.
        let mut done = Vec::with_capacity(batch.len());
        let mut failed = None;
        for (entry, ack) in batch.iter().zip(acks) {
            if let Some((ack, _span)) = ack {
                if let Err(e) = ack.await {
                    failed = Some(e);
                    break;
                }
                shared.metrics.events_published.inc();
            }
            done.push(entry.seq);
        }
        shared.db.outbox_remove_all(&done)?;
        shared.metrics.outbox_pending.sub(done.len() as i64);
        if let Some(e) = failed {
            return Err(e.into());
        }
        backoff.reset();
    }
}

/// The producer span of one event's publication, continuing the trace of the write that made it
/// (its `traceparent` kept in the outbox). Disabled while tracing is off or the write was not
/// traced.
fn publish_span(head: &EventHead, traceparent: Option<&str>) -> tracing::Span {
    if traceparent.is_none() || !rfa_telemetry::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "publish event",
        otel.name = %format!("publish {} {}", head.event.as_str(), head.table),
        otel.kind = "producer",
        rfaas.table = %head.table,
        rfaas.event = head.event.as_str(),
        rfaas.doc_id = %head.id,
    );
    rfa_telemetry::continue_from(
        &span,
        rfa_telemetry::propagate::from_traceparent(traceparent),
    );
    span
}
