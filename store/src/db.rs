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

use std::path::Path;

use rfa_wire::store::{Envelope, EventKind, Page, TableInfo};
use serde::{Deserialize, Serialize};
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
    /// POST: a new document with a fresh id (see [`Write::id`]).
    Create(&'a Map<String, Value>),
    /// PUT: replace the data, creating the document if needed.
    Put(&'a Map<String, Value>),
    /// PATCH: merge-patch the data of an existing document.
    Patch(&'a Map<String, Value>),
    /// DELETE an existing document.
    Delete,
}

/// One write of a batch ([`Db::write_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub table: &'a str,
    /// The document; for [`Op::Create`], the id to try first (another fresh one is taken when
    /// it is already used).
    pub id: &'a str,
    pub op: Op<'a>,
    pub if_match: Option<&'a IfMatch>,
    /// The write's RFC 3339 time.
    pub now: &'a str,
    /// The W3C `traceparent` of the request, kept with the event.
    pub traceparent: Option<&'a str>,
}

/// How many ids a create tries before giving up with [`DbError::IdTaken`].
const CREATE_ATTEMPTS: usize = 3;

/// What a committed write did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The document's id (for a create, the one it got).
    pub id: String,
    /// The document's version after the write (for a delete, its last one).
    pub version: u64,
    /// The event recorded in the outbox.
    pub kind: EventKind,
    /// The event's store-wide sequence number.
    pub seq: u64,
    /// The envelope after the write as JSON, exactly as stored (for a delete, the last one): the
    /// body the store answers.
    pub doc: Vec<u8>,
}

impl Committed {
    /// The envelope, parsed.
    pub fn envelope(&self) -> Result<Envelope, DbError> {
        parse_envelope(&self.doc)
    }
}

/// An envelope to serialize, borrowing its parts: the same JSON as [`Envelope`]'s.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeRef<'a> {
    id: &'a str,
    table: &'a str,
    version: u64,
    created_at: &'a str,
    updated_at: &'a str,
    data: &'a Map<String, Value>,
}

/// The fields of a stored envelope that a write needs besides its data.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeHead {
    version: u64,
    created_at: String,
}

/// A [`DocEvent`](rfa_wire::store::DocEvent)'s JSON around the envelope's JSON as stored: the
/// same bytes as serializing the `DocEvent`, without serializing the document a second time.
fn event_payload(
    kind: EventKind,
    table: &str,
    id: &str,
    seq: u64,
    at: &str,
    doc: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(doc.len() + table.len() + id.len() + at.len() + 64);
    out.extend_from_slice(br#"{"event":"#);
    serde_json::to_writer(&mut out, &kind)?;
    out.extend_from_slice(br#","table":"#);
    serde_json::to_writer(&mut out, table)?;
    out.extend_from_slice(br#","id":"#);
    serde_json::to_writer(&mut out, id)?;
    out.extend_from_slice(br#","seq":"#);
    serde_json::to_writer(&mut out, &seq)?;
    out.extend_from_slice(br#","at":"#);
    serde_json::to_writer(&mut out, at)?;
    out.extend_from_slice(br#","doc":"#);
    out.extend_from_slice(doc);
    out.push(b'}');
    Ok(out)
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

    /// One document, or `None`.
    pub fn get(&self, table: &str, id: &str) -> Result<Option<Envelope>, DbError> {
        self.docs
            .get(doc_key(table, id))?
            .map(|v| parse_envelope(&v))
            .transpose()
    }

    /// One document as stored: its envelope's JSON, exactly what `GET` answers, and its
    /// version. The data is not parsed (a read costs a lookup and a scan of the bytes).
    pub fn get_raw(&self, table: &str, id: &str) -> Result<Option<(IVec, u64)>, DbError> {
        /// The one field a read needs, for its `ETag`; serde skips the rest unparsed.
        #[derive(Deserialize)]
        struct Version {
            version: u64,
        }
        let Some(bytes) = self.docs.get(doc_key(table, id))? else {
            return Ok(None);
        };
        let version = parse_doc::<Version>(&bytes)?.version;
        Ok(Some((bytes, version)))
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
    /// on error. A batch of one: see [`Db::write_batch`].
    pub fn write(
        &self,
        table: &str,
        id: &str,
        op: Op<'_>,
        if_match: Option<&IfMatch>,
        now: &str,
        traceparent: Option<&str>,
    ) -> Result<Committed, DbError> {
        self.write_one(Write {
            table,
            id,
            op,
            if_match,
            now,
            traceparent,
        })
    }

    /// One write in a transaction of its own.
    pub fn write_one(&self, write: Write<'_>) -> Result<Committed, DbError> {
        let mut results = self.write_batch(&[write])?;
        results.pop().unwrap_or(Err(DbError::Corrupt {
            tree: "docs",
            detail: "a batch of one write gave no result".into(),
        }))
    }

    /// Applies `writes` in order, in one transaction: each sees the ones before it, each gets
    /// its own result, and a write that is refused (404, 412, too large, …) writes nothing and
    /// does not affect the others. The outer error means that the whole batch was rolled back
    /// (sled failed, or the seq counter is corrupt): nothing of it was written.
    ///
    /// One transaction for many writes is what makes writes cheap: sled's per-transaction work
    /// (its global write lock, the overlay, the commit) dominates a small write, so the single
    /// writer ([`crate::writer`]) hands it every write that is waiting.
    pub fn write_batch(
        &self,
        writes: &[Write<'_>],
    ) -> Result<Vec<Result<Committed, DbError>>, DbError> {
        let result = (&self.docs, &self.outbox, &self.meta).transaction(|(docs, outbox, meta)| {
            let first = tx_u64(meta, NEXT_SEQ)?.unwrap_or(1);
            let mut next = first;
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                let result = self.apply(docs, outbox, meta, write, next)?;
                if let Ok(committed) = &result {
                    next = committed.seq + 1;
                }
                results.push(result);
            }
            if next != first {
                meta.insert(NEXT_SEQ, &next.to_be_bytes())?;
            }
            Ok(results)
        });
        Ok(result?)
    }

    /// One write of a batch, inside its transaction, as seq `seq`. The inner error refuses this
    /// write alone: every check comes before the first insert, so a refused write leaves
    /// nothing behind. The outer error aborts the whole transaction.
    fn apply(
        &self,
        docs: &TransactionalTree,
        outbox: &TransactionalTree,
        meta: &TransactionalTree,
        write: &Write<'_>,
        seq: u64,
    ) -> Result<Result<Committed, DbError>, ConflictableTransactionError<DbError>> {
        let Write {
            table,
            op,
            if_match,
            now,
            traceparent,
            ..
        } = *write;
        let mut id = write.id.to_string();
        let mut key = doc_key(table, &id);
        let mut current = docs.get(&key)?;
        // A generated id is taken only if a client PUT that very id: take another one.
        if let Op::Create(_) = op {
            for _ in 0..CREATE_ATTEMPTS {
                if current.is_none() {
                    break;
                }
                id = crate::id::new_id();
                key = doc_key(table, &id);
                current = docs.get(&key)?;
            }
        }
        let doc_json = |version: u64, created_at: &str, data: &Map<String, Value>| {
            serde_json::to_vec(&EnvelopeRef {
                id: &id,
                table,
                version,
                created_at,
                updated_at: now,
                data,
            })
        };
        // The document after the write as JSON, and its version.
        let written = match (op, current) {
            (Op::Create(_), Some(_)) => return Ok(Err(DbError::IdTaken)),
            (Op::Patch(_) | Op::Delete, None) => return Ok(Err(DbError::NotFound)),
            (Op::Put(_), None) if if_match.is_some() => {
                return Ok(Err(DbError::PreconditionFailed));
            }
            (Op::Create(data) | Op::Put(data), None) => {
                doc_json(1, now, data).map(|doc| (EventKind::NewDoc, 1, doc))
            }
            (op, Some(stored)) => {
                // A patch needs the data; the other writes only the version and creation time.
                let (current, created_at, data) = match op {
                    Op::Patch(_) => match parse_envelope(&stored) {
                        Ok(e) => (e.version, e.created_at, Some(e.data)),
                        Err(e) => return Ok(Err(e)),
                    },
                    _ => match parse_doc::<EnvelopeHead>(&stored) {
                        Ok(h) => (h.version, h.created_at, None),
                        Err(e) => return Ok(Err(e)),
                    },
                };
                if if_match.is_some_and(|m| !m.matches(current)) {
                    return Ok(Err(DbError::PreconditionFailed));
                }
                let version = current + 1;
                match op {
                    Op::Put(data) => doc_json(version, &created_at, data)
                        .map(|doc| (EventKind::UpdatedDoc, version, doc)),
                    Op::Patch(patch) => {
                        let data = merge_objects(data.unwrap_or_default(), patch);
                        doc_json(version, &created_at, &data)
                            .map(|doc| (EventKind::UpdatedDoc, version, doc))
                    }
                    // The event carries the last envelope, as stored.
                    Op::Delete => Ok((EventKind::DeletedDoc, current, stored.to_vec())),
                    Op::Create(_) => return Ok(Err(DbError::IdTaken)),
                }
            }
        };
        let (kind, version, doc) = match written {
            Ok(written) => written,
            Err(e) => return Ok(Err(e.into())),
        };
        let payload = match event_payload(kind, table, &id, seq, now, &doc) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        if payload.len() > self.max_event_bytes {
            return Ok(Err(DbError::TooLarge {
                size: payload.len(),
                limit: self.max_event_bytes,
            }));
        }
        let count_key = [COUNT_PREFIX, table.as_bytes()].concat();
        let count = match tx_u64(meta, &count_key) {
            Ok(count) => count.unwrap_or(0),
            Err(ConflictableTransactionError::Abort(e)) => return Ok(Err(e)),
            Err(e) => return Err(e),
        };

        // Every check passed: from here on, the write happens.
        outbox.insert(&seq.to_be_bytes(), outbox_value(&payload, traceparent))?;
        match kind {
            EventKind::NewDoc => {
                docs.insert(key.as_slice(), doc.as_slice())?;
                meta.insert(count_key.as_slice(), &(count + 1).to_be_bytes())?;
            }
            EventKind::UpdatedDoc => {
                docs.insert(key.as_slice(), doc.as_slice())?;
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
        Ok(Ok(Committed {
            id,
            version,
            kind,
            seq,
            doc,
        }))
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

    /// Removes published outbox entries, all in one sled batch (one operation, not one each).
    pub fn outbox_remove_all(&self, seqs: &[u64]) -> Result<(), DbError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(&seq.to_be_bytes());
        }
        self.outbox.apply_batch(batch)?;
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
mod tests {
    use super::*;
    use rfa_wire::store::DocEvent;

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
        assert_eq!((c.kind, c.seq, c.version), (EventKind::NewDoc, 1, 1));
        let c = db.write(
            t,
            "a",
            Op::Patch(&data(serde_json::json!({"y":2}))),
            None,
            "later",
            Some(TP),
        )?;
        assert_eq!((c.kind, c.seq, c.version), (EventKind::UpdatedDoc, 2, 2));
        let envelope = c.envelope()?;
        assert_eq!((envelope.id.as_str(), envelope.version), ("a", 2));
        assert_eq!(envelope.created_at, "now");
        assert_eq!(envelope.updated_at, "later");
        assert_eq!(Some(envelope), db.get(t, "a")?);
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

    #[test]
    fn a_batch_applies_in_order_and_refuses_writes_one_by_one() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let doc = data(serde_json::json!({"x": 1}));
        let patch = data(serde_json::json!({"y": 2}));
        let stale = IfMatch::parse("\"7\"");
        let w = |id, op, if_match| Write {
            table: "t",
            id,
            op,
            if_match,
            now: "now",
            traceparent: None,
        };
        let results = db.write_batch(&[
            w("a", Op::Create(&doc), None),
            // sees the create before it
            w("a", Op::Patch(&patch), None),
            // refused: wrong version, and no such document
            w("a", Op::Patch(&patch), Some(&stale)),
            w("missing", Op::Delete, None),
            w("b", Op::Put(&doc), None),
        ])?;
        let seqs: Vec<Option<u64>> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|c| c.seq))
            .collect();
        assert_eq!(seqs, [Some(1), Some(2), None, None, Some(3)]);
        assert!(matches!(results[2], Err(DbError::PreconditionFailed)));
        assert!(matches!(results[3], Err(DbError::NotFound)));
        let a = db.get("t", "a")?.map(|e| (e.version, e.data));
        let mut both = doc.clone();
        both.extend(patch.clone());
        assert_eq!(a, Some((2, both)));
        // one outbox entry per write that happened, and the seq counter went on from there
        assert_eq!(db.outbox_batch(u64::MAX, 10)?.len(), 3);
        assert_eq!(db.last_seq()?, 3);
        assert_eq!(db.tables()?[0].count, 2);
        Ok(())
    }

    #[test]
    fn a_create_whose_id_is_taken_gets_another() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let doc = data(serde_json::json!({"x": 1}));
        let taken = crate::id::new_id();
        db.write("t", &taken, Op::Put(&doc), None, "now", None)?;
        let created = db.write("t", &taken, Op::Create(&doc), None, "now", None)?;
        assert_ne!(created.id, taken);
        assert_eq!(created.kind, EventKind::NewDoc);
        assert!(db.get("t", &created.id)?.is_some());
        assert_eq!(db.get("t", &taken)?.map(|e| e.version), Some(1));
        Ok(())
    }

    #[test]
    fn a_raw_read_is_the_envelope_as_json() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let doc = data(serde_json::json!({"x": 1, "nested": {"version": 99}}));
        db.write("t", "a", Op::Put(&doc), None, "now", None)?;
        db.write("t", "a", Op::Put(&doc), None, "later", None)?;
        let (bytes, version) = db.get_raw("t", "a")?.ok_or(DbError::NotFound)?;
        assert_eq!(version, 2);
        let parsed: Envelope = serde_json::from_slice(&bytes)?;
        assert_eq!(Some(&parsed), db.get("t", "a")?.as_ref());
        assert_eq!(bytes.as_ref(), serde_json::to_vec(&parsed)?.as_slice());
        assert!(db.get_raw("t", "b")?.is_none());
        Ok(())
    }

    #[test]
    fn events_are_the_doc_event_serialized_and_carry_the_stored_envelope() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let doc = data(serde_json::json!({"s": "quote \" and \u{e9}", "n": [1, 2.5, null]}));
        let patch = data(serde_json::json!({"n": null, "m": {"k": true}}));
        let t = "t-\"odd";
        db.write(t, "a", Op::Put(&doc), None, "t1", None)?;
        db.write(t, "a", Op::Patch(&patch), None, "t2", None)?;
        db.write(t, "a", Op::Delete, None, "t3", None)?;
        let batch = db.outbox_batch(u64::MAX, 10)?;
        let kinds = [
            EventKind::NewDoc,
            EventKind::UpdatedDoc,
            EventKind::DeletedDoc,
        ];
        for (entry, kind) in batch.iter().zip(kinds) {
            let event: DocEvent = serde_json::from_slice(&entry.payload)?;
            assert_eq!(event.event, kind);
            // byte for byte what serde makes of the same event
            assert_eq!(
                entry.payload.as_ref(),
                serde_json::to_vec(&event)?.as_slice()
            );
        }
        let last: DocEvent = serde_json::from_slice(&batch[2].payload)?;
        let updated: DocEvent = serde_json::from_slice(&batch[1].payload)?;
        // a delete's event carries the last envelope, unchanged
        assert_eq!(last.doc, updated.doc);
        assert_eq!((last.doc.version, last.doc.updated_at.as_str()), (2, "t2"));
        let mut merged = doc.clone();
        merged.remove("n");
        merged.insert("m".into(), serde_json::json!({"k": true}));
        assert_eq!(updated.doc.data, merged);
        assert_eq!(updated.doc.created_at, "t1");
        Ok(())
    }

    #[test]
    fn a_too_large_write_in_a_batch_writes_nothing_and_the_others_commit() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 400)?;
        let small = data(serde_json::json!({"x": 1}));
        let big = data(serde_json::json!({"x": "y".repeat(500)}));
        let w = |id, op| Write {
            table: "t",
            id,
            op,
            if_match: None,
            now: "now",
            traceparent: None,
        };
        let results = db.write_batch(&[
            w("a", Op::Put(&small)),
            w("b", Op::Put(&big)),
            w("a", Op::Put(&big)),
            w("c", Op::Put(&small)),
        ])?;
        assert!(matches!(results[1], Err(DbError::TooLarge { .. })));
        assert!(matches!(results[2], Err(DbError::TooLarge { .. })));
        let seqs: Vec<u64> = results.iter().flatten().map(|c| c.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(db.get("t", "b")?.is_none());
        assert_eq!(
            db.get("t", "a")?.map(|e| (e.version, e.data)),
            Some((1, small))
        );
        assert_eq!(db.outbox_batch(u64::MAX, 10)?.len(), 2);
        assert_eq!(db.tables()?[0].count, 2);
        Ok(())
    }
}
