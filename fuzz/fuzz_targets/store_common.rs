//! What the store targets share: one sled database per fuzzing process, in `$TMPDIR`
//! (`fuzz/run.sh` points that at a directory it removes afterwards), written to the way the
//! HTTP handlers write to it.

use std::sync::LazyLock;

use rfa_store::db::{Committed, Db, DbError, Op};
use rfa_wire::store::DocEvent;
use serde_json::{Map, Value};

/// The store's default event limit (`rfa_store::Config::new`).
const MAX_EVENT_BYTES: usize = 1024 * 1024 - 4096;

pub static DB: LazyLock<Db> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("rfaas-fuzz-{}", std::process::id()));
    Db::open(&dir, 8 << 20, MAX_EVENT_BYTES).expect("open the fuzzing database")
});

pub const TABLE: &str = "fuzz";
pub const NOW: &str = "2026-01-01T00:00:00.000Z";

/// One write, as the handler makes it; `None` when the store refuses it as too large (413).
/// Any other error on a valid body is a bug (the handler would answer 500).
pub fn write(id: &str, op: Op<'_>) -> Option<Committed> {
    match DB.write(TABLE, id, op, None, NOW, None) {
        Ok(c) => Some(c),
        Err(DbError::TooLarge { .. }) => None,
        Err(e) => panic!("a valid write failed: {e}"),
    }
}

/// The stored document `id` must read back with exactly `data` (what `GET` answers).
pub fn assert_reads_back(id: &str, data: &Map<String, Value>) {
    match DB.get(TABLE, id) {
        Ok(Some(envelope)) => assert_eq!(&envelope.data, data, "GET differs from the write"),
        Ok(None) => panic!("document {id} vanished"),
        Err(e) => panic!("the stored document {id} does not read back: {e}"),
    }
}

/// Every event the writes queued must parse as a [`DocEvent`] (what functions receive), with
/// the data it was written with; then the outbox is emptied.
pub fn drain_outbox(last: Option<&Map<String, Value>>) {
    let batch = DB.outbox_batch(u64::MAX, 64).expect("read the outbox");
    for (i, entry) in batch.iter().enumerate() {
        let event: DocEvent = match serde_json::from_slice(&entry.payload) {
            Ok(e) => e,
            Err(e) => panic!("the event of a committed write does not parse: {e}"),
        };
        assert_eq!(event.seq, entry.seq);
        if i + 1 == batch.len()
            && let Some(data) = last
        {
            assert_eq!(&event.doc.data, data, "the event's document differs");
        }
        DB.outbox_remove(entry.seq).expect("remove an outbox entry");
    }
}
