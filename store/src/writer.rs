//! The single writer: one thread applies every write, in batches.
//!
//! HTTP handlers send a [`Request`] and await its result. The thread takes the first waiting
//! request and every other one already queued behind it (up to [`MAX_BATCH`]) and commits them
//! all in one sled transaction ([`Db::write_batch`]), then answers each. While it does, new
//! requests queue up and form the next batch: under load, batches grow by themselves, with
//! no timer and no added latency when the store is idle. One transaction per batch instead of
//! one per write is what brings a small write's CPU cost down several times (see
//! `docs/BENCHMARKS.md`, issue #5).
//!
//! The answer means *committed*, not durable: the handler then waits for the group-commit
//! flusher ([`crate::flush`]), which runs beside this thread, so that the next batch is being
//! applied while the previous one is being flushed.

use std::sync::Mutex;
use std::thread::JoinHandle;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::db::{Committed, Db, DbError, IfMatch, Op, Write};

/// Most writes in one transaction. sled's readers wait while a transaction runs, so a batch
/// is kept to a few milliseconds of work.
pub const MAX_BATCH: usize = 64;
/// Requests that may wait for the writer; senders wait beyond that (back-pressure).
const QUEUE: usize = 4096;

/// What a write does, with its data.
#[derive(Debug)]
pub enum Change {
    /// POST: a new document with a fresh id.
    Create(Map<String, Value>),
    /// PUT: replace the data, creating the document if needed.
    Put(Map<String, Value>),
    /// PATCH: merge-patch the data of an existing document.
    Patch(Map<String, Value>),
    /// DELETE an existing document.
    Delete,
}

/// One write, owned, as it travels to the writer thread.
#[derive(Debug)]
pub struct Request {
    pub table: String,
    pub id: String,
    pub change: Change,
    pub if_match: Option<IfMatch>,
    pub now: String,
    pub traceparent: Option<String>,
}

impl Request {
    fn as_write(&self) -> Write<'_> {
        Write {
            table: &self.table,
            id: &self.id,
            op: match &self.change {
                Change::Create(data) => Op::Create(data),
                Change::Put(data) => Op::Put(data),
                Change::Patch(patch) => Op::Patch(patch),
                Change::Delete => Op::Delete,
            },
            if_match: self.if_match.as_ref(),
            now: &self.now,
            traceparent: self.traceparent.as_deref(),
        }
    }
}

type Reply = oneshot::Sender<Result<Committed, DbError>>;

enum Msg {
    Write(Request, Reply),
    Stop,
}

/// The handle of the writer thread.
#[derive(Debug)]
pub struct Writer {
    queue: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Write(r, _) => f.debug_tuple("Write").field(r).finish(),
            Msg::Stop => f.write_str("Stop"),
        }
    }
}

impl Writer {
    /// Starts the writer thread on its own handle of `db`.
    pub fn start(db: Db) -> std::io::Result<Writer> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("rfa-store-writer".into())
            .spawn(move || run(db, rx))?;
        Ok(Writer {
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Commits one write (not yet durable: see the module docs).
    pub async fn write(&self, request: Request) -> Result<Committed, DbError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Msg::Write(request, reply))
            .await
            .map_err(|_| DbError::ShuttingDown)?;
        answer.await.map_err(|_| DbError::ShuttingDown)?
    }

    /// Lets the thread finish what was sent before, then ends it and waits for it. Writes sent
    /// later fail with [`DbError::ShuttingDown`].
    pub async fn stop(&self) {
        let _ = self.queue.send(Msg::Stop).await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn run(db: Db, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<(Request, Reply)> = Vec::with_capacity(MAX_BATCH);
    let mut stop = false;
    while !stop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(request, reply) => batch.push((request, reply)),
                Msg::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let writes: Vec<Write<'_>> = batch.iter().map(|(r, _)| r.as_write()).collect();
        let results = match db.write_batch(&writes) {
            Ok(results) => results,
            Err(e) => {
                // The whole batch was rolled back. Try each write alone, so that each gets
                // its own answer (and one bad write cannot fail the others).
                tracing::warn!(error = %e, writes = writes.len(), "a write batch failed; retrying its writes one by one");
                writes.iter().map(|w| db.write_one(*w)).collect()
            }
        };
        drop(writes);
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let _ = reply.send(result);
        }
    }
    tracing::debug!("the writer thread stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_batched_and_each_answered() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let writer =
            std::sync::Arc::new(Writer::start(db.clone()).map_err(|e| DbError::Storage(e.into()))?);
        let mut tasks = Vec::new();
        for n in 0..500 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut data = Map::new();
                data.insert("n".into(), n.into());
                let change = if n % 50 == 49 {
                    // refused: no such document
                    Change::Delete
                } else {
                    Change::Create(data)
                };
                writer
                    .write(Request {
                        table: "t".into(),
                        id: crate::id::new_id(),
                        change,
                        if_match: None,
                        now: "now".into(),
                        traceparent: None,
                    })
                    .await
            }));
        }
        let mut seqs = BTreeSet::new();
        let mut refused = 0;
        for task in tasks {
            match task
                .await
                .map_err(|e| DbError::Storage(std::io::Error::other(e).into()))?
            {
                Ok(committed) => {
                    assert!(seqs.insert(committed.seq), "seq {} twice", committed.seq);
                    let stored = db.get("t", &committed.id)?;
                    assert_eq!(stored, Some(committed.envelope()?));
                }
                Err(DbError::NotFound) => refused += 1,
                Err(e) => return Err(e),
            }
        }
        assert_eq!(refused, 10);
        // seqs 1..=490, no gaps: refused writes took none
        assert_eq!(
            seqs.iter().copied().collect::<Vec<_>>(),
            (1..=490).collect::<Vec<_>>()
        );
        assert_eq!(db.tables()?[0].count, 490);
        writer.stop().await;
        let late = writer
            .write(Request {
                table: "t".into(),
                id: crate::id::new_id(),
                change: Change::Delete,
                if_match: None,
                now: "now".into(),
                traceparent: None,
            })
            .await;
        assert!(matches!(late, Err(DbError::ShuttingDown)), "{late:?}");
        Ok(())
    }
}
