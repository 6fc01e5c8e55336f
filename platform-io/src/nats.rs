//! NATS: connecting with retries, and getting or creating a JetStream stream (the streams
//! themselves are defined in `rfa_wire::streams`).

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    context::CreateStreamError,
    stream::{Config, Stream},
};
use tracing::info;

use crate::backoff::{Backoff, retry};

/// How a process connects to NATS.
#[derive(Debug, Clone)]
pub struct Connect {
    /// The client name the server shows (`rfa-proxy`, `rfa-store`, `rfa-fn-<name>`).
    pub name: String,
    /// How long one attempt may take.
    pub connection_timeout: Duration,
    /// Waits between attempts.
    pub retry: Backoff,
}

impl Connect {
    /// Connects as `name`: 5 s per attempt, retried from 100 ms to 5 s apart.
    pub fn new(name: impl Into<String>) -> Self {
        Connect {
            name: name.into(),
            connection_timeout: Duration::from_secs(5),
            retry: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// One attempt. Once connected, the client reconnects by itself, for ever.
    pub async fn once(&self, url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(self.connection_timeout)
            .max_reconnects(None)
            .connect(url)
            .await
    }

    /// Connects to `url`, retrying until it works, or until `stop` completes (then `None`).
    pub async fn with_retry(
        &self,
        url: &str,
        stop: impl Future<Output = ()>,
    ) -> Option<async_nats::Client> {
        let what = format!("connecting to NATS at {url}");
        let client = retry(&what, self.retry, stop, || self.once(url)).await?;
        info!(url, name = %self.name, "connected to NATS");
        Some(client)
    }
}

/// Gets the stream, creating it with `config` when it does not exist yet (an existing stream is
/// left as it is).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: Config,
) -> Result<Stream, CreateStreamError> {
    js.get_or_create_stream(config).await
}
