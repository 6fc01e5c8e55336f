//! Writes: what a write asks ([`Op`], [`Write`], [`IfMatch`]) and what it did ([`Committed`]),
//! applied in order in one transaction per batch ([`Db::write_batch`]).

use rfa_wire::store::{Envelope, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::outbox::{event_payload, outbox_value};
use super::{COUNT_PREFIX, Db, DbError, NEXT_SEQ, doc_key, parse_doc, parse_envelope, tx_u64};
use crate::merge::merge_objects;

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

    pub(super) fn matches(&self, version: u64) -> bool {
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

impl Db {
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
}
