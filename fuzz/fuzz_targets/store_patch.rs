//! The store's `PATCH`: JSON Merge Patch (RFC 7386) of a document's data.
//!
//! Input: a document body and a patch body, separated by the first NUL byte (a byte no JSON
//! text holds). Both go through `parse_object` as the handlers do. Checks: `merge_objects`
//! agrees with an independent transcription of RFC 7386's pseudo-code; a patch applied twice
//! changes nothing more (merge patches are idempotent); `merge_patch` of an object patch onto any
//! value gives an object; and on a real database, PUT then PATCH stores exactly that result,
//! which reads back and is the data of the update's event.

#![no_main]

mod store_common;

use libfuzzer_sys::fuzz_target;
use rfa_store::db::Op;
use rfa_store::http::parse_object;
use rfa_store::merge::{merge_objects, merge_patch};
use serde_json::{Map, Value};

use store_common::{assert_reads_back, drain_outbox, write};

/// RFC 7386 section 2, word for word.
fn rfc7386(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            let current = target.get(name).cloned().unwrap_or(Value::Null);
            target.insert(name.clone(), rfc7386(&current, value));
        }
    }
    Value::Object(target)
}

fuzz_target!(|data: &[u8]| {
    let (doc, patch) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => return,
    };
    let (Ok(doc), Ok(patch)) = (parse_object(doc), parse_object(patch)) else {
        return;
    };

    let merged = merge_objects(doc.clone(), &patch);
    let expected = rfc7386(&Value::Object(doc.clone()), &Value::Object(patch.clone()));
    assert_eq!(
        Value::Object(merged.clone()),
        expected,
        "differs from RFC 7386"
    );
    assert_eq!(
        merge_objects(merged.clone(), &patch),
        merged,
        "applying the patch twice changed more"
    );
    for mut target in [Value::Null, Value::Array(vec![]), Value::from("x")] {
        merge_patch(&mut target, &Value::Object(patch.clone()));
        assert!(target.is_object(), "an object patch gave {target}");
    }

    let Some(put) = write("doc", Op::Put(&doc)) else {
        return;
    };
    let Some(patched) = write("doc", Op::Patch(&patch)) else {
        drain_outbox(None);
        return;
    };
    assert_eq!(patched.version, put.version + 1);
    match patched.envelope() {
        Ok(envelope) => assert_eq!(envelope.data, merged, "the stored patch differs"),
        Err(e) => panic!("the answer to a patch does not parse: {e}"),
    }
    assert_reads_back("doc", &merged);
    drain_outbox(Some(&merged));
});
