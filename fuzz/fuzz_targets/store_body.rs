//! The store's request bodies: `POST`/`PUT` data through `parse_object` (what the handlers
//! call), then the write, the read and the event, on a real sled database.
//!
//! Checks: a rejected body is a 400 problem with a detail, never a panic; an accepted body is
//! stored, reads back unchanged (`GET`), and its event parses as a `DocEvent` carrying it.

#![no_main]

mod store_common;

use libfuzzer_sys::fuzz_target;
use rfa_store::db::Op;
use rfa_store::http::parse_object;

use store_common::{assert_reads_back, drain_outbox, write};

fuzz_target!(|data: &[u8]| {
    let body = match parse_object(data) {
        Ok(body) => body,
        Err(problem) => {
            assert_eq!(problem.status, 400, "{problem:?}");
            assert!(!problem.detail.is_empty());
            return;
        }
    };
    let Some(committed) = write("doc", Op::Put(&body)) else {
        return;
    };
    match committed.envelope() {
        Ok(envelope) => assert_eq!(envelope.data, body),
        Err(e) => panic!("the answer to a write does not parse: {e}"),
    }
    assert_reads_back("doc", &body);
    drain_outbox(Some(&body));
});
