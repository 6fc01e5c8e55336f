//! `rfa-store`: the rfaas JSON document store, on sled, with an outbox of NATS events.
//!
//! # Design
//!
//! A request flows through four parts, each in its own module:
//!
//! ```text
//!  HTTP ──▶ http (axum routes, validation, problem+json)
//!             │ a write request (owned) over a channel
//!             ▼
//!           writer (one thread: every waiting write in one sled transaction)
//!             │ per write: document + count + outbox entry + seq
//!             ▼
//!           db (sled trees: docs, outbox, meta)
//!             │ wait until the commit is on disk (shared flush)
//!             ▼
//!           flush (group commit: one flush_async for every writer waiting)
//!             │ "seq n is durable"  (watch channel)
//!             ▼
//!           publisher (outbox ──▶ JetStream, PubAck, then remove the entry)
//! ```
//!
//! * [`http`]: the routes of the contract. Every error is an RFC 9457 problem; nothing is
//!   written on any error.
//! * [`db`]: each create/update/delete changes the document, its table's count, the store-wide
//!   seq and an outbox entry (the [`DocEvent`](rfa_wire::store::DocEvent)) in one multi-tree
//!   transaction, so a write and its event exist together or not at all.
//! * [`writer`]: the one thread that applies writes, as many as are waiting per transaction
//!   (group commit at the transaction level; sled's cost is per transaction).
//! * [`flush`]: a `2xx` is sent only once the write is on disk. Concurrent writers share
//!   flushes (group commit).
//! * [`publisher`]: publishes durable outbox entries in seq order to
//!   `rfa.store.<table>.<event>.<id>` with `Nats-Msg-Id: <store-instance-id>-<seq>`, removes
//!   each after its PubAck, retries NATS forever, and publishes any backlog after a restart.
//! * [`id`], [`merge`]: document ids (ULID-like) and JSON Merge Patch (RFC 3339 timestamps
//!   come from `rfa_wire::time`).
//! * [`metrics`]: the `rfa_store_*` Prometheus families.
//!
//! [`run`] wires them together, in the style of mini-redis' `server::run`.

pub mod db;
pub mod flush;
pub mod http;
pub mod id;
pub mod merge;
pub mod metrics;
pub mod publisher;
pub mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::db::{Committed, Db, DbError, IfMatch};
use crate::flush::{FlushError, GroupCommit};
use crate::metrics::Metrics;
use crate::writer::{Change, Request, Writer};

/// How a store runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where sled keeps its files (`<data_dir>/sled`). Nothing is written elsewhere.
    pub data_dir: PathBuf,
    /// NATS to publish events to; `None` keeps them in the outbox.
    pub nats_url: Option<String>,
    /// Largest request body, in bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// Largest event (the envelope inside its [`DocEvent`](rfa_wire::store::DocEvent)), in
    /// bytes: NATS refuses messages over its `max_payload` (1 MiB by default), so a write whose
    /// event would not fit is refused with 413 rather than stuck in the outbox.
    pub max_event_bytes: usize,
    /// sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// Longest wait between two attempts to reach NATS.
    pub nats_backoff_max: Duration,
}

impl Config {
    /// Defaults around `data_dir`: 1 MiB bodies, 32 MiB cache, no NATS.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            nats_url: None,
            max_body_bytes: rfa_wire::store::MAX_BODY_BYTES,
            max_event_bytes: 1024 * 1024 - 4096,
            cache_capacity: 32 * 1024 * 1024,
            nats_backoff_max: Duration::from_secs(2),
        }
    }
}

impl Default for Config {
    /// The container's layout: data in `/data`.
    fn default() -> Self {
        Config::new("/data")
    }
}

/// Why the store could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database in {path}: {source}")]
    Open { path: PathBuf, source: DbError },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the writer thread: {0}")]
    Writer(std::io::Error),
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("the final flush failed: {0}")]
    Flush(DbError),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the routes, the flusher and the publisher share.
#[derive(Debug)]
pub struct Shared {
    pub(crate) db: Db,
    pub(crate) writer: Writer,
    pub(crate) commit: GroupCommit,
    pub(crate) metrics: Metrics,
}

/// Why a write got no `2xx`: the database refused it (nothing was written), or it committed
/// and could not be made durable (its outcome is unknown).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] DbError),
    #[error("the write is not known to be on disk: {0}")]
    NotDurable(#[from] FlushError),
}

impl Shared {
    /// One write, answered once it is on disk. For a [`Change::Create`], `id` is the id to try
    /// first: the committed envelope has the one it got.
    pub(crate) async fn write(
        &self,
        table: &str,
        id: &str,
        change: Change,
        if_match: Option<IfMatch>,
    ) -> Result<Committed, WriteError> {
        let request = Request {
            table: table.to_string(),
            id: id.to_string(),
            change,
            if_match,
            now: rfa_wire::time::now(),
            traceparent: rfa_telemetry::propagate::traceparent(&rfa_telemetry::Context::current()),
        };
        let committed = self.writer.write(request).await?;
        self.metrics.outbox_pending.inc();
        self.metrics
            .writes
            .with_label_values(&[committed.kind.as_str()])
            .inc();
        self.commit.wait_durable(committed.seq).await?;
        Ok(committed)
    }
}

/// Serves the store on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish, stops the publisher, flushes and closes the database. When this
/// returns, the database is closed and may be opened again.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let path = config.data_dir.join("sled");
    let (cache, max_event) = (config.cache_capacity, config.max_event_bytes);
    let open_path = path.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&open_path, cache, max_event))
        .await?
        .map_err(|source| Error::Open { path, source })?;
    let metrics = Metrics::new()?;
    let last_seq = db.last_seq().map_err(|source| Error::Open {
        path: config.data_dir.clone(),
        source,
    })?;
    let pending = db.outbox_len();
    metrics.outbox_pending.set(pending as i64);
    tracing::info!(
        data_dir = %config.data_dir.display(),
        instance = db.instance_id(),
        seq = last_seq,
        outbox = pending,
        "database open"
    );
    let writer = Writer::start(db.clone()).map_err(Error::Writer)?;
    let shared = Arc::new(Shared {
        db,
        writer,
        commit: GroupCommit::new(last_seq),
        metrics,
    });

    let flusher = {
        let shared = shared.clone();
        tokio::spawn(async move { shared.commit.run(&shared.db, &shared.metrics).await })
    };
    let publisher = match config.nats_url.clone() {
        Some(url) => Some(tokio::spawn(publisher::run(
            shared.clone(),
            url,
            config.nats_backoff_max,
        ))),
        None => {
            tracing::warn!("no NATS URL: events stay in the outbox");
            None
        }
    };

    let app = http::router(shared.clone(), config.max_body_bytes);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "rfa-store listening");
    }
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("shutting down");

    // Every request has finished: stop the writer and the background tasks, which hold
    // database handles.
    shared.writer.stop().await;
    if let Some(publisher) = publisher {
        publisher.abort();
        let _ = publisher.await;
    }
    flusher.abort();
    let _ = flusher.await;
    let flushed = shared.db.flush().await;
    drop(shared);
    served?;
    flushed.map_err(Error::Flush)?;
    tracing::info!("database flushed and closed");
    Ok(())
}
