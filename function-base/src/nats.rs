//! The NATS side of the runtime: connects (with retries, in the background, while HTTP is
//! already served), makes sure the dead-letter stream exists, and runs the async worker and the
//! store-event consumers until a stop.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use rfa_io::nats::Connect;
use rfa_wire::streams;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::consume::{RETRY, consume, ensure_stream};
use crate::events::EventConsumer;
use crate::stop::stopped;
use crate::worker::Worker;

/// Connects, then runs the function's async worker and store-event consumers until a stop,
/// then waits for the work in flight.
pub(crate) async fn run(
    url: String,
    worker: Arc<Worker>,
    events: Vec<Arc<EventConsumer>>,
    mut stop: watch::Receiver<bool>,
) {
    let connect = Connect {
        retry: RETRY,
        ..Connect::new(format!("rfa-fn-{}", worker.function()))
    };
    let Some(client) = connect.with_retry(&url, stopped(&mut stop)).await else {
        return;
    };
    let js = jetstream::new(client.clone());
    if ensure_stream(&js, streams::dead_letters, &mut stop)
        .await
        .is_none()
    {
        return;
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(consume(worker.spec(), worker, js.clone(), stop.clone()));
    for consumer in events {
        tasks.spawn(consume(consumer.spec(), consumer, js.clone(), stop.clone()));
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            warn!(error = %e, "a NATS consumer task failed");
        }
    }
    // Unsubscribe and close now, so the server stops offering messages to this worker's
    // pull requests at once (instead of when their ack_wait runs out).
    match tokio::time::timeout(Duration::from_secs(5), client.drain()).await {
        Ok(Ok(())) => debug!("NATS connection drained"),
        Ok(Err(e)) => warn!(error = %e, "cannot drain the NATS connection"),
        Err(_) => warn!("draining the NATS connection timed out"),
    }
}
