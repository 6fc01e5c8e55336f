//! The sled database: documents, per-table counts and the outbox, changed together in one
//! transaction per write.
//!
//! # Layout
//!
//! Three trees, so that every write is one fixed multi-tree transaction
//! (`(&docs, &outbox, &meta).transaction(..)`) whatever the table:
//!
//! | tree | key | value |
//! |---|---|---|
//! | `docs` | `<table> 0x00 <id>` | the [`Envelope`] as JSON |
//! | `outbox` | seq as big-endian `u64` | the [`DocEvent`](rfa_wire::store::DocEvent) as JSON, exactly the bytes published |
//! | `meta` | `next-seq` | the next seq to hand out, big-endian `u64` |
//! | | `instance-id` | this volume's random store-instance id (UTF-8) |
//! | | `count 0x00 <table>` | number of documents in the table, big-endian `u64` |
//!
//! One `docs` tree with a `<table>\0` prefix rather than a tree per table: table names cannot
//! contain `0x00`, so the prefix is unambiguous and `<table>\0` .. `<table>\x01` is exactly one
//! table's range, in id order (ids sort by creation time). Reading an unknown table creates
//! nothing, and there is no set of open trees to manage. `GET /tables` reads the `count` keys
//! only: O(tables), not O(documents). A table whose last document is deleted disappears from
//! that list (tables exist implicitly, by having documents).
//!
//! Seqs come from `meta/next-seq` inside the transaction, and sled runs transactions one at a
//! time (a global lock), so seq order is commit order: once seq `n` is on disk, so is every
//! seq below `n`. The group-commit flusher and the publisher rely on that.
//!
//! A transaction may hold many writes ([`Db::write_batch`]): the store's single writer
//! ([`crate::writer`]) commits every write that is waiting in one, which is what makes a write
//! cheap (sled's fixed cost per transaction is several times that of the inserts in it). The
//! writes of a batch are applied in order and each one sees the ones before it.

//!
//! # Files
//!
//! - `mod.rs`: the [`Db`] handle, opening, errors, keys and the byte helpers the others share.
//! - `read.rs`: reads of one document, a page of a table, the table list.
//! - `write.rs`: writes ([`Op`], [`Write`], [`IfMatch`]) applied in batches, one transaction each.
//! - `outbox.rs`: the events a write records and the publisher reads back and removes.

mod outbox;
mod read;
mod write;

use std::path::Path;

use sled::IVec;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use rfa_wire::store::Envelope;

pub use outbox::{EventHead, OutboxEntry};
pub use write::{Committed, IfMatch, Op, Write};

const NEXT_SEQ: &[u8] = b"next-seq";
const INSTANCE_ID: &[u8] = b"instance-id";
const COUNT_PREFIX: &[u8] = b"count\0";

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The document does not exist (PATCH, DELETE).
    #[error("document not found")]
    NotFound,
    /// `If-Match` does not match the document's current version.
    #[error("If-Match does not match the current version")]
    PreconditionFailed,
    /// Every generated id tried was already taken (a client PUT ids from the future).
    #[error("id already exists")]
    IdTaken,
    /// The document's event would be larger than the configured limit.
    #[error("the document is too large: its event would be {size} bytes, the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    /// sled failed.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record does not parse.
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    /// A record could not be serialized.
    #[error("cannot serialize a record: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The store is shutting down and takes no more writes; nothing was written.
    #[error("the store is shutting down")]
    ShuttingDown,
}

impl From<TransactionError<DbError>> for DbError {
    fn from(e: TransactionError<DbError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => DbError::Storage(e),
        }
    }
}

/// The store's sled database. A clone is another handle to the same database.
#[derive(Debug, Clone)]
pub struct Db {
    db: sled::Db,
    docs: sled::Tree,
    outbox: sled::Tree,
    meta: sled::Tree,
    instance_id: String,
    max_event_bytes: usize,
}

impl Db {
    /// Opens (or creates) the database in `dir`. Blocking: sled recovers its log here.
    pub fn open(dir: &Path, cache_capacity: u64, max_event_bytes: usize) -> Result<Db, DbError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .open()?;
        let docs = db.open_tree("docs")?;
        let outbox = db.open_tree("outbox")?;
        let meta = db.open_tree("meta")?;
        let instance_id = match meta.get(INSTANCE_ID)? {
            Some(v) => String::from_utf8(v.to_vec()).map_err(|e| DbError::Corrupt {
                tree: "meta",
                detail: e.to_string(),
            })?,
            None => {
                let id = crate::id::new_id();
                meta.insert(INSTANCE_ID, id.as_bytes())?;
                id
            }
        };
        // Whatever recovery found is now on disk, so the whole outbox may be published.
        db.flush()?;
        Ok(Db {
            db,
            docs,
            outbox,
            meta,
            instance_id,
            max_event_bytes,
        })
    }

    /// The random id of this store's volume, the prefix of every `Nats-Msg-Id`.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The highest seq handed out so far (0 before the first write).
    pub fn last_seq(&self) -> Result<u64, DbError> {
        Ok(read_u64(self.meta.get(NEXT_SEQ)?.as_ref(), "meta")?.map_or(0, |n| n - 1))
    }

    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<usize, DbError> {
        Ok(self.db.flush_async().await?)
    }

    /// A handle to the sled database, for the flusher.
    pub fn sled(&self) -> &sled::Db {
        &self.db
    }
}

/// `<table>\0<id>`.
fn doc_key(table: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(table.len() + 1 + id.len());
    key.extend_from_slice(table.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `<table><byte>`: with 0, the start of the table's keys; with 1, just past their end.
fn table_prefix(table: &str, byte: u8) -> Vec<u8> {
    let mut key = table.as_bytes().to_vec();
    key.push(byte);
    key
}

fn parse_envelope(bytes: &[u8]) -> Result<Envelope, DbError> {
    parse_doc(bytes)
}

/// A stored document (or the fields of it that `T` names); a record that does not parse is
/// corrupt.
fn parse_doc<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DbError> {
    serde_json::from_slice(bytes).map_err(|e| DbError::Corrupt {
        tree: "docs",
        detail: e.to_string(),
    })
}

fn read_u64(value: Option<&IVec>, tree: &'static str) -> Result<Option<u64>, DbError> {
    value
        .map(|v| {
            <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| DbError::Corrupt {
                    tree,
                    detail: format!("expected 8 bytes, found {}", v.len()),
                })
        })
        .transpose()
}

/// Reads a big-endian `u64` inside a transaction.
fn tx_u64(
    tree: &TransactionalTree,
    key: &[u8],
) -> Result<Option<u64>, ConflictableTransactionError<DbError>> {
    let value = tree
        .get(key)
        .map_err(|e: UnabortableTransactionError| ConflictableTransactionError::from(e))?;
    read_u64(value.as_ref(), "meta").map_err(ConflictableTransactionError::Abort)
}

#[cfg(test)]
mod tests;
