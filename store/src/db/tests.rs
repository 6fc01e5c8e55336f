//! Unit tests of the database: writes, counts, the outbox, batches, raw reads.

use rfa_wire::store::{DocEvent, EventKind, TableInfo};
use serde_json::{Map, Value};

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
