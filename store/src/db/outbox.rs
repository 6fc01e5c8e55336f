//! The outbox: each committed write's event, recorded in the write's transaction under its seq
//! (with the write's `traceparent` when it was traced), read back in seq order by the publisher
//! and removed once JetStream acknowledged it.

use rfa_wire::store::EventKind;
use serde::Deserialize;
use sled::IVec;

use super::{Db, DbError, read_u64};

/// A [`DocEvent`](rfa_wire::store::DocEvent)'s JSON around the envelope's JSON as stored: the
/// same bytes as serializing the `DocEvent`, without serializing the document a second time.
pub(super) fn event_payload(
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

pub(super) fn outbox_value(payload: &[u8], traceparent: Option<&str>) -> Vec<u8> {
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

pub(super) fn outbox_entry(seq: u64, value: IVec) -> OutboxEntry {
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

impl Db {
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
