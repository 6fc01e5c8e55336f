//! Durable pull consumers, the machinery the async worker and the store-event handlers share:
//! set a consumer up, pull its messages (at most `max_inflight` at once), keep long work alive
//! with progress acks, settle each message, and dead-letter given-up work.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind, Message,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::Config as StreamConfig,
};
use bytes::Bytes;
use futures_util::StreamExt;
use rfa_io::backoff::{Backoff, retry};
use rfa_wire::headers;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::stop::{sleep_or_stop, stopped};

/// Waits between attempts to reach NATS, set a stream or a consumer up.
pub(crate) const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Gets (or creates) a stream, retrying until it works or a stop comes (then `None`).
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: impl Fn() -> StreamConfig,
    stop: &mut watch::Receiver<bool>,
) -> Option<jetstream::stream::Stream> {
    let what = format!("getting the stream {}", config().name);
    retry(&what, RETRY, stopped(stop), || {
        rfa_io::nats::ensure_stream(js, config())
    })
    .await
}

/// What to tell JetStream when a message is done with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Finished: remove it.
    Ack,
    /// Offer it again after this long.
    Nak(Duration),
    /// Given up (and dead-lettered): never offer it again.
    Term,
}

/// Something that works through the messages of one consumer.
pub(crate) trait Process: Send + Sync + 'static {
    /// Handles one message and says how to settle it. Progress acks are sent meanwhile.
    fn process(
        &self,
        js: &jetstream::Context,
        message: &Message,
    ) -> impl Future<Output = Settle> + Send;
}

/// How one durable pull consumer is set up and consumed.
pub(crate) struct Consume {
    /// For logs: whose messages these are.
    pub what: String,
    /// The stream the consumer reads.
    pub stream: fn() -> StreamConfig,
    pub consumer: pull::Config,
    /// Messages handled at once.
    pub max_inflight: usize,
    pub ack_wait: Duration,
}

impl Consume {
    /// A durable consumer shared by a function's replicas: every message of `filter_subject`
    /// from the start, each acked explicitly, at most `max_inflight` unacked and `ack_wait`
    /// before a silent message is redelivered.
    pub fn shared(
        what: String,
        stream: fn() -> StreamConfig,
        durable_name: String,
        description: String,
        filter_subject: String,
        max_inflight: usize,
        ack_wait: Duration,
    ) -> Consume {
        Consume {
            consumer: pull::Config {
                durable_name: Some(durable_name),
                description: Some(description),
                filter_subject,
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: i64::try_from(max_inflight).unwrap_or(i64::MAX),
                ..Default::default()
            },
            what,
            stream,
            max_inflight,
            ack_wait,
        }
    }
}

/// Lifetime of one pull request. nats-server 2.9 keeps offering messages to a pull request
/// whose worker has gone until the request expires (the message then waits for its
/// `ack_wait` before redelivery), so keep it short.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// Wait before the message stream is opened again after it ended.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// Creates (or updates) the durable consumer; if the server refuses to update an existing
/// one, uses it as it is.
async fn durable_consumer(
    stream: &jetstream::stream::Stream,
    config: &pull::Config,
) -> Result<PullConsumer, String> {
    match stream.create_consumer(config.clone()).await {
        Ok(consumer) => Ok(consumer),
        Err(create) => {
            let name = config.durable_name.clone().unwrap_or_default();
            match stream.get_consumer::<pull::Config>(&name).await {
                Ok(consumer) => {
                    warn!(consumer = %name, error = %create, "cannot update the consumer; using it as it is");
                    Ok(consumer)
                }
                Err(get) => Err(format!("create: {create}; get: {get}")),
            }
        }
    }
}

/// Pulls messages and hands each to `processor` (at most `max_inflight` at once) until a
/// stop; then waits for the messages in flight. Reopens the consumer when it goes away.
pub(crate) async fn consume<P: Process>(
    spec: Consume,
    processor: Arc<P>,
    js: jetstream::Context,
    mut stop: watch::Receiver<bool>,
) {
    let max_inflight = spec.max_inflight.max(1);
    let permits = Arc::new(Semaphore::new(max_inflight));
    let mut tasks = JoinSet::new();
    'open: loop {
        let Some(stream) = ensure_stream(&js, spec.stream, &mut stop).await else {
            break;
        };
        let what = format!("creating the consumer for {}", spec.what);
        let Some(consumer) = retry(&what, RETRY, stopped(&mut stop), || {
            durable_consumer(&stream, &spec.consumer)
        })
        .await
        else {
            break;
        };
        let what = format!("opening the message stream for {}", spec.what);
        let Some(mut messages) = retry(&what, RETRY, stopped(&mut stop), || {
            consumer
                .stream()
                .max_messages_per_batch(max_inflight)
                .expires(PULL_EXPIRES)
                .messages()
        })
        .await
        else {
            break;
        };
        info!(what = %spec.what, max_inflight, "consuming");
        loop {
            while tasks.try_join_next().is_some() {}
            // A permit first: messages are only pulled when one can run at once, so none
            // waits for its turn while its ack_wait runs out.
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break 'open,
                },
                () = stopped(&mut stop) => break 'open,
            };
            let next = tokio::select! {
                next = messages.next() => next,
                () = stopped(&mut stop) => break 'open,
            };
            match next {
                Some(Ok(message)) => {
                    let (processor, js) = (processor.clone(), js.clone());
                    let ack_wait = spec.ack_wait;
                    tasks.spawn(async move {
                        let settle =
                            keep_alive(&message, ack_wait, processor.process(&js, &message)).await;
                        settle_message(&message, settle).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    use jetstream::consumer::pull::MessagesErrorKind as Kind;
                    warn!(what = %spec.what, error = %e, "message stream error");
                    if matches!(
                        e.kind(),
                        Kind::ConsumerDeleted
                            | Kind::PushBasedConsumer
                            | Kind::RequestLimitExceeded
                    ) {
                        break;
                    }
                }
                None => break,
            }
        }
        if sleep_or_stop(REOPEN_DELAY, &mut stop).await {
            break;
        }
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            warn!(what = %spec.what, error = %e, "a message task failed");
        }
    }
    debug!(what = %spec.what, "stopped consuming");
}

/// Acks, naks or terminates a message, logging a failure (the message is then redelivered).
async fn settle_message(message: &Message, settle: Settle) {
    let result = match settle {
        Settle::Ack => message.double_ack().await,
        Settle::Nak(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
        Settle::Term => message.double_ack_with(AckKind::Term).await,
    };
    if let Err(e) = result {
        warn!(subject = %message.subject, error = %e, ?settle, "cannot settle the message; it will be redelivered");
    }
}

/// Runs `work`, telling JetStream every third of `ack_wait` that the message is still being
/// worked on, so that a long handler is not redelivered to another worker.
async fn keep_alive<F: Future>(message: &Message, ack_wait: Duration, work: F) -> F::Output {
    let period = (ack_wait / 3).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = tick.tick() => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    debug!(subject = %message.subject, error = %e, "cannot send a progress ack");
                }
            }
        }
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
            if text
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
            {
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
        out.insert(
            headers::NATS_MSG_ID,
            header_text(&format!("{function}:{id}")).as_str(),
        );
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
