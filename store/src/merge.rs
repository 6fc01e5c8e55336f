//! JSON Merge Patch (RFC 7386), the semantics of `PATCH /tables/<t>/docs/<id>`.

use serde_json::{Map, Value};

/// Applies `patch` to `target` in place: object members of the patch are merged recursively,
/// `null` members remove the key, and anything that is not an object replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if let Value::Object(map) = target {
        merge_members(map, patch);
    } else {
        let mut map = Map::new();
        merge_members(&mut map, patch);
        *target = Value::Object(map);
    }
}

/// Merges an object patch into an object document (a document's `data`).
pub fn merge_objects(
    mut doc: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Map<String, Value> {
    merge_members(&mut doc, patch);
    doc
}

fn merge_members(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(target: Value, patch: Value) -> Value {
        let mut t = target;
        merge_patch(&mut t, &patch);
        t
    }

    /// The test cases of RFC 7386, appendix A.
    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                patched(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn merges_objects() {
        let doc = json!({"name":"a","tags":{"x":1,"y":2},"gone":true});
        let patch = json!({"tags":{"y":null,"z":3},"gone":null,"new":[1]});
        let (Value::Object(doc), Value::Object(patch)) = (doc, patch) else {
            panic!("objects expected");
        };
        let merged = merge_objects(doc, &patch);
        assert_eq!(
            Value::Object(merged),
            json!({"name":"a","tags":{"x":1,"z":3},"new":[1]})
        );
    }

    #[test]
    fn empty_patch_changes_nothing() {
        let doc = json!({"a":{"b":1}});
        assert_eq!(patched(doc.clone(), json!({})), doc);
    }
}
