//! The NATS side of the runtime: connecting (with retries, in the background, while HTTP is
//! already served), making sure the streams exist, and starting the consumers.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream::Config as StreamConfig};
use bytes::Bytes;
use rfa_wire::{headers, streams};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::backoff::{backoff, sleep_or_stop};
use crate::worker::Worker;

/// First and longest wait between attempts to reach NATS.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Connects to `url`, retrying with backoff until it works or a stop comes (then `None`).
/// Once connected, the client reconnects by itself.
pub(crate) async fn connect(
    url: &str,
    function: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<async_nats::Client> {
    let mut attempt = 0;
    loop {
        let options = async_nats::ConnectOptions::new()
            .name(format!("rfa-fn-{function}"))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        match options.connect(url).await {
            Ok(client) => {
                info!(url, "connected to NATS");
                return Some(client);
            }
            Err(e) => warn!(url, error = %e, attempt, "cannot reach NATS yet; retrying"),
        }
        if sleep_or_stop(backoff(RETRY_FIRST, RETRY_MAX, attempt), stop).await {
            return None;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Gets (or creates) a stream, retrying until it works or a stop comes (then `None`).
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: impl Fn() -> StreamConfig,
    stop: &mut watch::Receiver<bool>,
) -> Option<jetstream::stream::Stream> {
    let mut attempt = 0;
    loop {
        let config = config();
        let name = config.name.clone();
        match streams::ensure(js, config).await {
            Ok(stream) => return Some(stream),
            Err(e) => warn!(stream = %name, error = %e, "cannot get the stream yet; retrying"),
        }
        if sleep_or_stop(backoff(RETRY_FIRST, RETRY_MAX, attempt), stop).await {
            return None;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Retries one step until it works or a stop comes.
pub(crate) async fn retry<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    stop: &mut watch::Receiver<bool>,
    mut step: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match step().await {
            Ok(value) => return Some(value),
            Err(e) => warn!(error = %e, attempt, "{what} failed; retrying"),
        }
        if sleep_or_stop(backoff(RETRY_FIRST, RETRY_MAX, attempt), stop).await {
            return None;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Connects, then runs the function's async worker until a stop, then waits for the work
/// in flight.
pub(crate) async fn run(url: String, worker: Arc<Worker>, mut stop: watch::Receiver<bool>) {
    let Some(client) = connect(&url, worker.function(), &mut stop).await else {
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
    tasks.spawn(worker.run(js.clone(), stop.clone()));
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            warn!(error = %e, "a NATS consumer task failed");
        }
    }
    if let Err(e) = client.flush().await {
        warn!(error = %e, "cannot flush the NATS connection");
    }
}

/// Publishes given-up work to `rfa.dead.<function>`: the original headers and payload, plus
/// `Rfa-Dead-Reason`, and waits for JetStream to store it.
pub(crate) async fn dead_letter(
    js: &jetstream::Context,
    function: &str,
    original: Option<&HeaderMap>,
    payload: Bytes,
    reason: &str,
) -> Result<(), String> {
    let mut out = HeaderMap::new();
    let mut msg_id = None;
    if let Some(original) = original {
        for (name, values) in original.iter() {
            let text = name.to_string();
            if text.eq_ignore_ascii_case(headers::NATS_MSG_ID) {
                msg_id = values.first().map(|v| v.as_str().to_string());
            }
            // Nats-* headers steer the publish (ids, expectations): not copied.
            if text.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("nats-")) {
                continue;
            }
            for value in values {
                out.append(name.clone(), value.clone());
            }
        }
    }
    out.insert(headers::DEAD_REASON, header_text(reason).as_str());
    if let Some(id) = msg_id {
        // One dead letter per (function, message), even if giving up is retried.
        out.insert(headers::NATS_MSG_ID, header_text(&format!("{function}:{id}")).as_str());
    }
    let subject = rfa_wire::subjects::dead_letter(function);
    let ack = js
        .publish_with_headers(subject, out, payload)
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())?;
    Ok(())
}

/// `text` as a valid NATS header value (no CR or LF).
pub(crate) fn header_text(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
