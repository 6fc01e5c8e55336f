//! Group commit: writers that committed close together share one `flush_async`.
//!
//! A writer whose transaction committed seq `n` calls [`GroupCommit::wait_durable`]`(n)`: it
//! records `n` as committed, wakes the flusher and waits until the durable seq reaches `n`. The
//! flusher task ([`GroupCommit::run`]) loops: wait to be woken, read the highest committed seq,
//! flush once, then publish that seq as durable. Every writer that committed before the flush
//! started is released by it; writers that commit during the flush leave a wake-up behind and
//! are covered by the next one. Because seq order is commit order (see [`crate::db`]), "seq `n`
//! is durable" also means every lower seq is, which is what the publisher relies on: it only
//! publishes outbox entries at or below the durable seq, so no event goes out for a write that
//! a crash could still undo.
//!
//! sled's flush writes its log with `sync_file_range`/`fsync` of its own choosing: it survives
//! a killed process (`kill -9`); whether it survives a power cut depends on the file system.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use crate::db::Db;
use crate::metrics::Metrics;

/// Durability progress, as seen by writers and the publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Every seq up to this one is on disk.
    pub durable: u64,
    /// A flush covering seqs up to this one failed.
    pub failed: u64,
}

/// Why a writer's flush did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("flushing the database to disk failed")]
    Failed,
    #[error("the store is shutting down")]
    Closed,
}

/// Shared state between writers and the flusher task.
#[derive(Debug)]
pub struct GroupCommit {
    committed: AtomicU64,
    wake: Notify,
    state: watch::Sender<Flushed>,
}

impl GroupCommit {
    /// Starts with every seq up to `durable` already on disk.
    pub fn new(durable: u64) -> Self {
        GroupCommit {
            committed: AtomicU64::new(durable),
            wake: Notify::new(),
            state: watch::Sender::new(Flushed { durable, failed: 0 }),
        }
    }

    /// Progress updates: the publisher waits on these.
    pub fn subscribe(&self) -> watch::Receiver<Flushed> {
        self.state.subscribe()
    }

    /// Waits until the write that committed `seq` is on disk.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), FlushError> {
        let mut rx = self.state.subscribe();
        self.committed.fetch_max(seq, Ordering::SeqCst);
        self.wake.notify_one();
        loop {
            {
                let state = rx.borrow_and_update();
                if state.durable >= seq {
                    return Ok(());
                }
                if state.failed >= seq {
                    return Err(FlushError::Failed);
                }
            }
            rx.changed().await.map_err(|_| FlushError::Closed)?;
        }
    }

    /// The flusher task: one `flush_async` per wake-up, covering every commit before it.
    pub async fn run(&self, db: &Db, metrics: &Metrics) {
        loop {
            self.wake.notified().await;
            let target = self.committed.load(Ordering::SeqCst);
            if target <= self.state.borrow().durable {
                continue;
            }
            let started = std::time::Instant::now();
            let result = db.flush().await;
            metrics.flushes.inc();
            metrics
                .flush_duration
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(_) => self
                    .state
                    .send_modify(|s| s.durable = s.durable.max(target)),
                Err(e) => {
                    tracing::error!(error = %e, seq = target, "flushing the database failed");
                    metrics.flush_errors.inc();
                    self.state.send_modify(|s| s.failed = s.failed.max(target));
                }
            }
        }
    }
}
