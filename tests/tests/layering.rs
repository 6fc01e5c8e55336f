//! The layering check CI runs (`scripts/check-layering.py`): it passes on the workspace as it is,
//! and fails, naming the rule, on deliberate violations made in a copy of `cargo metadata`.

use std::process::Command;

use rfaas_tests::{root, serde_json};

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata JSON")
}

/// Runs the check on `meta` (or on the workspace when `None`): (exit code, stdout + stderr).
fn check(meta: Option<&serde_json::Value>) -> (i32, String) {
    let script = root().join("scripts").join("check-layering.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    let dir = tempfile::tempdir().expect("a temp dir");
    if let Some(meta) = meta {
        let file = dir.path().join("metadata.json");
        std::fs::write(&file, meta.to_string()).expect("write metadata");
        cmd.arg("--metadata").arg(file);
    }
    let out = cmd.output().expect("python3 runs the check");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn id_of(meta: &serde_json::Value, name: &str) -> String {
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("package {name} in the metadata"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Adds a normal dependency `from -> to` to the resolved graph.
fn add_dep(meta: &mut serde_json::Value, from: &str, to: &str) {
    let (from, to) = (id_of(meta, from), id_of(meta, to));
    let node = meta["resolve"]["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["id"] == from.as_str())
        .unwrap();
    node["deps"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "injected",
            "pkg": to,
            "dep_kinds": [{ "kind": null, "target": null }],
        }));
}

#[test]
fn the_workspace_keeps_its_layering_rules() {
    let (code, out) = check(None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("keep their rules"), "{out}");
}

#[test]
fn deliberate_violations_fail_the_check_and_name_the_rule() {
    let clean = metadata();
    let cases = [
        (
            "rfa-proxy",
            "rfaas-cli",
            "rfa-proxy must not depend on rfaas-cli",
        ),
        (
            "rfa-store",
            "bollard",
            "rfa-store must never depend on bollard",
        ),
        ("method2", "serde", "method2 (a function) depends on serde"),
        ("rfa-wire", "axum", "rfa-wire must never depend on axum"),
        // Only rfa-engine talks to Docker; the servers never reach it.
        (
            "rfaas-cli",
            "bollard",
            "rfaas-cli depends on bollard directly: only rfa-engine talks to Docker",
        ),
        (
            "rfa-scaler",
            "bollard",
            "rfa-scaler depends on bollard directly: only rfa-engine talks to Docker",
        ),
        (
            "rfa-proxy",
            "rfa-engine",
            "rfa-proxy must not depend on rfa-engine",
        ),
        (
            "function-base",
            "rfa-engine",
            "function-base must never depend on rfa-engine",
        ),
        (
            "rfa-engine",
            "rfaas-cli",
            "rfa-engine must not depend on rfaas-cli",
        ),
        // Indirect: function-base through the store.
        (
            "function-base",
            "rfa-store",
            "function-base must never depend on rfa-store",
        ),
    ];
    for (from, to, says) in cases {
        let mut meta = clean.clone();
        add_dep(&mut meta, from, to);
        let (code, out) = check(Some(&meta));
        assert_eq!(code, 1, "{from} -> {to} must fail the check:\n{out}");
        assert!(
            out.contains(says),
            "{from} -> {to}: expected '{says}' in:\n{out}"
        );
    }
}
