//! `proxyCli deploy`'s deploy-file parser and validator (`cli/src/deploy_file.rs`).
//!
//! Input: the text of a deploy file. Checks: parsing never panics, with or without the
//! `--async`/`--main` flags; an accepted file only holds entries `proxyCli deploy` can act on
//! (every limit the validator promises holds); a rejected file gets an error naming the file.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rfa_wire::env;
use rfa_wire::names::is_valid_function_name;
use rfa_wire::route::FunctionKind;
use rfaas_cli::deploy_file::{MAX_REPLICAS, Overrides, parse, parse_memory};

/// What the platform sets in every function container.
const RESERVED: [&str; 6] = [
    env::NATS_URL,
    env::STORE_URL,
    env::FUNCTION_NAME,
    env::FUNCTION_KIND,
    env::PORT,
    env::MAX_INFLIGHT,
];

/// Relative paths resolve against this; it does not exist, so nothing real is touched.
const BASE: &str = "/nonexistent-rfaas-fuzz";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let flags = [
        Overrides::default(),
        Overrides {
            is_async: true,
            main: false,
        },
        Overrides {
            is_async: false,
            main: true,
        },
    ];
    for overrides in flags {
        match parse(text, "deploy.json", Path::new(BASE), overrides) {
            Err(e) => {
                let message = format!("{e:#}");
                assert!(
                    message.starts_with("deploy.json"),
                    "the error does not say which file: {message}"
                );
            }
            Ok(entries) => {
                assert!(!entries.is_empty(), "an empty deploy list was accepted");
                let mut names = HashSet::new();
                for e in &entries {
                    assert!(is_valid_function_name(&e.name), "name {:?}", e.name);
                    assert!(names.insert(e.name.clone()), "name {:?} twice", e.name);
                    assert!((1..=MAX_REPLICAS).contains(&e.replicas), "{e:?}");
                    if let Some(scale) = e.scale {
                        assert!(scale.check().is_ok(), "a scale block breaking its rules: {e:?}");
                        assert!(
                            scale.allows(e.replicas) && scale.max <= MAX_REPLICAS,
                            "replicas outside the scale bounds: {e:?}"
                        );
                    }
                    assert!(e.memory_bytes >= 6 << 20, "memory below Docker's 6m: {e:?}");
                    assert!((1..=1024).contains(&e.max_inflight), "{e:?}");
                    // Docker reads NanoCpus 0 as "no limit".
                    assert!(e.nano_cpus > 0, "the CPU limit is {} nano-CPUs: {e:?}", e.nano_cpus);
                    assert!((16..=32768).contains(&e.pids), "{e:?}");
                    assert!(e.package_dir.is_absolute() && e.file_path.is_absolute());
                    for key in e.env.keys() {
                        assert!(
                            !key.is_empty() && !RESERVED.contains(&key.as_str()),
                            "{key:?}"
                        );
                    }
                    if overrides.is_async {
                        assert_eq!(e.kind, FunctionKind::Async);
                    }
                    if overrides.main {
                        assert_eq!(e.kind, FunctionKind::Main);
                    }
                }
            }
        }
    }
    // The memory syntax on its own: a size is never negative.
    if let Some(n) = parse_memory(text) {
        assert!(n >= 0, "{text:?} parsed as {n} bytes");
    }
});
