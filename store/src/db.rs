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
//! | `outbox` | seq as big-endian `u64` | the [`DocEvent`] as JSON, exactly the bytes published |
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

use std::path::Path;

use rfa_wire::store::{DocEvent, Envelope, EventKind, Page, TableInfo};
use serde::Deserialize;
use serde_json::{Map, Value};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::{IVec, Transactional};

use crate::merge::merge_objects;

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
    /// A generated id is already taken (a client PUT an id from the future); try another.
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
    /// The write committed but could not be made durable: its outcome is unknown.
    #[error("the write is not known to be on disk: {0}")]
    NotDurable(#[from] crate::flush::FlushError),
}

impl From<TransactionError<DbError>> for DbError {
    fn from(e: TransactionError<DbError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => DbError::Storage(e),
        }
    }
}

/// Turns a domain error into a transaction abort.
fn abort<T>(e: DbError) -> Result<T, ConflictableTransactionError<DbError>> {
    Err(ConflictableTransactionError::Abort(e))
}

/// The `If-Match` condition of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the document must exist.
    Any,
    /// A list of entity tags (the inner text of strong tags): one must equal the version.
    Tags(Vec<String>),
}

impl IfMatch {
    /// Parses an `If-Match` header value. Weak tags (`W/"3"`) never match (RFC 9110 §13.1.1
    /// uses strong comparison); an unquoted tag is accepted as if quoted.
    pub fn parse(header: &str) -> Self {
        if header.trim() == "*" {
            return IfMatch::Any;
        }
        let tags = header
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.starts_with("W/"))
            .map(|t| t.trim_matches('"').to_string())
            .collect();
        IfMatch::Tags(tags)
    }

    fn matches(&self, version: u64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => {
                let version = version.to_string();
                tags.contains(&version)
            }
        }
    }
}

/// One write.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// POST: a new document with a fresh id.
    Create(&'a Map<String, Value>),
    /// PUT: replace the data, creating the document if needed.
    Put(&'a Map<String, Value>),
    /// PATCH: merge-patch the data of an existing document.
    Patch(&'a Map<String, Value>),
    /// DELETE an existing document.
    Delete,
}

/// What a committed write did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The document after the write (for a delete, the last envelope).
    pub envelope: Envelope,
    /// The event recorded in the outbox.
    pub kind: EventKind,
    /// The event's store-wide sequence number.
    pub seq: u64,
}

/// The first fields of an outbox entry: enough to name its subject.
#[derive(Debug, Deserialize)]
pub struct EventHead {
    pub event: EventKind,
    pub table: String,
    pub id: String,
}

/// One outbox entry, ready to publish.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub seq: u64,
    /// The event as published.
    pub payload: IVec,
    /// The W3C `traceparent` of the write that made the event, when it was traced.
    pub traceparent: Option<String>,
}

/// Marks an outbox value that starts with a `traceparent`: `0x00`, its length as one byte, the
/// `traceparent`, then the event. An event alone starts with `{`, so both forms read back.
const TRACED: u8 = 0;

fn outbox_value(payload: &[u8], traceparent: Option<&str>) -> Vec<u8> {
    match traceparent.filter(|t| !t.is_empty() && t.len() <= usize::from(u8::MAX)) {
        Some(t) => {
            let mut value = Vec::with_capacity(2 + t.len() + payload.len());
            value.push(TRACED);
            value.push(t.len() as u8);
            value.extend_from_slice(t.as_bytes());
            value.extend_from_slice(payload);
            value
        }
        None => payload.to_vec(),
    }
}

fn outbox_entry(seq: u64, value: IVec) -> OutboxEntry {
    if value.first() == Some(&TRACED) && value.len() >= 2 {
        let end = 2 + usize::from(value[1]);
        if let Some(t) = value.get(2..end) {
            return OutboxEntry {
                seq,
                payload: IVec::from(&value[end..]),
                traceparent: std::str::from_utf8(t).ok().map(str::to_string),
            };
        }
    }
    OutboxEntry {
        seq,
        payload: value,
        traceparent: None,
    }
}

/// The store's sled database.
#[derive(Debug)]
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

    /// One document, or `None`.
    pub fn get(&self, table: &str, id: &str) -> Result<Option<Envelope>, DbError> {
        self.docs
            .get(doc_key(table, id))?
            .map(|v| parse_envelope(&v))
            .transpose()
    }

    /// Up to `limit` documents of `table` with ids greater than `after`, in id order.
    pub fn list(&self, table: &str, after: Option<&str>, limit: usize) -> Result<Page, DbError> {
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(doc_key(table, after)),
            None => std::ops::Bound::Included(table_prefix(table, 0)),
        };
        let end = std::ops::Bound::Excluded(table_prefix(table, 1));
        let mut docs = Vec::with_capacity(limit.min(1000));
        let mut more = false;
        for item in self.docs.range::<Vec<u8>, _>((start, end)) {
            let (_, value) = item?;
            if docs.len() == limit {
                more = true;
                break;
            }
            docs.push(parse_envelope(&value)?);
        }
        let next = if more {
            docs.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    /// Every table that has documents, with its count, by name.
    pub fn tables(&self) -> Result<Vec<TableInfo>, DbError> {
        let mut tables = Vec::new();
        for item in self.meta.scan_prefix(COUNT_PREFIX) {
            let (key, value) = item?;
            let name = String::from_utf8_lossy(&key[COUNT_PREFIX.len()..]).into_owned();
            let count = read_u64(Some(&value), "meta")?.unwrap_or(0);
            tables.push(TableInfo { name, count });
        }
        Ok(tables)
    }

    /// Applies one write to document `table`/`id`, recording its event in the outbox, all in
    /// one transaction. `now` is the write's RFC 3339 time; `traceparent`, when given, is kept
    /// with the event so that its publication continues the write's trace. Nothing is written
    /// on error.
    pub fn write(
        &self,
        table: &str,
        id: &str,
        op: Op<'_>,
        if_match: Option<&IfMatch>,
        now: &str,
        traceparent: Option<&str>,
    ) -> Result<Committed, DbError> {
        let key = doc_key(table, id);
        let count_key = [COUNT_PREFIX, table.as_bytes()].concat();
        let result = (&self.docs, &self.outbox, &self.meta).transaction(|(docs, outbox, meta)| {
            let current = match docs.get(&key)? {
                Some(v) => match parse_envelope(&v) {
                    Ok(env) => Some(env),
                    Err(e) => return abort(e),
                },
                None => None,
            };

            let (kind, envelope) = match (op, current) {
                (Op::Create(_), Some(_)) => return abort(DbError::IdTaken),
                (Op::Patch(_) | Op::Delete, None) => return abort(DbError::NotFound),
                (Op::Put(_), None) if if_match.is_some() => {
                    return abort(DbError::PreconditionFailed);
                }
                (_, Some(cur)) if if_match.is_some_and(|m| !m.matches(cur.version)) => {
                    return abort(DbError::PreconditionFailed);
                }
                (Op::Create(data) | Op::Put(data), None) => (
                    EventKind::NewDoc,
                    Envelope {
                        id: id.to_string(),
                        table: table.to_string(),
                        version: 1,
                        created_at: now.to_string(),
                        updated_at: now.to_string(),
                        data: data.clone(),
                    },
                ),
                (Op::Put(data), Some(cur)) => (
                    EventKind::UpdatedDoc,
                    Envelope {
                        version: cur.version + 1,
                        updated_at: now.to_string(),
                        data: data.clone(),
                        ..cur
                    },
                ),
                (Op::Patch(patch), Some(cur)) => {
                    let data = merge_objects(cur.data, patch);
                    (
                        EventKind::UpdatedDoc,
                        Envelope {
                            version: cur.version + 1,
                            updated_at: now.to_string(),
                            data,
                            id: cur.id,
                            table: cur.table,
                            created_at: cur.created_at,
                        },
                    )
                }
                (Op::Delete, Some(cur)) => (EventKind::DeletedDoc, cur),
            };

            let seq = tx_u64(meta, NEXT_SEQ)?.unwrap_or(1);
            meta.insert(NEXT_SEQ, &(seq + 1).to_be_bytes())?;

            let event = DocEvent {
                event: kind,
                table: table.to_string(),
                id: id.to_string(),
                seq,
                at: now.to_string(),
                doc: envelope,
            };
            let payload = match serde_json::to_vec(&event) {
                Ok(p) => p,
                Err(e) => return abort(e.into()),
            };
            if payload.len() > self.max_event_bytes {
                return abort(DbError::TooLarge {
                    size: payload.len(),
                    limit: self.max_event_bytes,
                });
            }
            outbox.insert(&seq.to_be_bytes(), outbox_value(&payload, traceparent))?;

            let count = tx_u64(meta, &count_key)?.unwrap_or(0);
            match kind {
                EventKind::NewDoc => {
                    let doc = match serde_json::to_vec(&event.doc) {
                        Ok(d) => d,
                        Err(e) => return abort(e.into()),
                    };
                    docs.insert(key.as_slice(), doc)?;
                    meta.insert(count_key.as_slice(), &(count + 1).to_be_bytes())?;
                }
                EventKind::UpdatedDoc => {
                    let doc = match serde_json::to_vec(&event.doc) {
                        Ok(d) => d,
                        Err(e) => return abort(e.into()),
                    };
                    docs.insert(key.as_slice(), doc)?;
                }
                EventKind::DeletedDoc => {
                    docs.remove(key.as_slice())?;
                    if count <= 1 {
                        meta.remove(count_key.as_slice())?;
                    } else {
                        meta.insert(count_key.as_slice(), &(count - 1).to_be_bytes())?;
                    }
                }
            }
            Ok(Committed {
                envelope: event.doc,
                kind,
                seq,
            })
        });
        Ok(result?)
    }

    /// Up to `max` outbox entries with seq at most `upto`, oldest first.
    pub fn outbox_batch(&self, upto: u64, max: usize) -> Result<Vec<OutboxEntry>, DbError> {
        let mut batch = Vec::new();
        for item in self.outbox.range(..=upto.to_be_bytes()).take(max) {
            let (key, value) = item?;
            let seq = read_u64(Some(&key), "outbox")?.unwrap_or(0);
            batch.push(outbox_entry(seq, value));
        }
        Ok(batch)
    }

    /// Removes a published outbox entry.
    pub fn outbox_remove(&self, seq: u64) -> Result<(), DbError> {
        self.outbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    /// Number of outbox entries (walks the outbox: call at start-up only).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
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
mod tests {
    use super::*;

    fn data(v: serde_json::Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn if_match_parsing() {
        assert_eq!(IfMatch::parse("*"), IfMatch::Any);
        assert!(IfMatch::parse("\"3\"").matches(3));
        assert!(IfMatch::parse("\"1\", \"3\"").matches(3));
        assert!(IfMatch::parse("3").matches(3));
        assert!(!IfMatch::parse("W/\"3\"").matches(3));
        assert!(!IfMatch::parse("\"4\"").matches(3));
        assert!(!IfMatch::parse("").matches(3));
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn outbox_entries_keep_the_writes_traceparent() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let doc = data(serde_json::json!({"x": 1}));
        db.write("t", "a", Op::Create(&doc), None, "now", None)?;
        db.write("t", "b", Op::Create(&doc), None, "now", Some(TP))?;
        let batch = db.outbox_batch(u64::MAX, 10)?;
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].traceparent, None);
        assert_eq!(batch[1].traceparent.as_deref(), Some(TP));
        for entry in &batch {
            let event: DocEvent = serde_json::from_slice(&entry.payload)?;
            assert_eq!(event.seq, entry.seq);
        }
        Ok(())
    }

    #[test]
    fn writes_counts_and_outbox() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let t = "t";
        let c = db.write(
            t,
            "a",
            Op::Create(&data(serde_json::json!({"x":1}))),
            None,
            "now",
            None,
        )?;
        assert_eq!(
            (c.kind, c.seq, c.envelope.version),
            (EventKind::NewDoc, 1, 1)
        );
        let c = db.write(
            t,
            "a",
            Op::Patch(&data(serde_json::json!({"y":2}))),
            None,
            "later",
            Some(TP),
        )?;
        assert_eq!(
            (c.kind, c.seq, c.envelope.version),
            (EventKind::UpdatedDoc, 2, 2)
        );
        assert_eq!(c.envelope.created_at, "now");
        assert_eq!(c.envelope.updated_at, "later");
        assert!(matches!(
            db.write(
                t,
                "a",
                Op::Delete,
                Some(&IfMatch::parse("\"1\"")),
                "x",
                None
            ),
            Err(DbError::PreconditionFailed)
        ));
        assert!(matches!(
            db.write(t, "b", Op::Patch(&Map::new()), None, "x", None),
            Err(DbError::NotFound)
        ));
        assert_eq!(db.last_seq()?, 2);
        assert_eq!(
            db.tables()?,
            vec![TableInfo {
                name: "t".into(),
                count: 1
            }]
        );
        db.write(t, "a", Op::Delete, Some(&IfMatch::Any), "x", None)?;
        assert!(db.tables()?.is_empty());
        assert_eq!(db.outbox_batch(u64::MAX, 10)?.len(), 3);
        assert_eq!(db.outbox_batch(2, 10)?.len(), 2);
        Ok(())
    }
}
