//! `deploy.json`: parsed strictly (unknown fields are errors), paths resolved against the
//! directory holding the file, every entry checked before anything is built.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rfa_wire::names::{FUNCTION_NAME_RULE, is_valid_function_name};
use rfa_wire::route::FunctionKind;
use serde::Deserialize;

use crate::limits;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    deploy: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEntry {
    name: String,
    package_dir: PathBuf,
    file_path: PathBuf,
    #[serde(rename = "async")]
    is_async: Option<bool>,
    main_process: Option<bool>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    replicas: Option<u32>,
    memory: Option<String>,
    cpus: Option<Cpus>,
    pids: Option<u32>,
    max_inflight: Option<u32>,
}

/// `"cpus": 0.5` or `"cpus": "0.5"` (as `docker run --cpus` takes it).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Cpus {
    Number(f64),
    Text(String),
}

/// One function to deploy, validated, with absolute paths.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub package_dir: PathBuf,
    pub file_path: PathBuf,
    pub kind: FunctionKind,
    pub env: BTreeMap<String, String>,
    pub replicas: u32,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: u32,
    pub max_inflight: u32,
}

pub const DEFAULT_MEMORY: &str = limits::FUNCTION_MEMORY;
pub const MAX_REPLICAS: u32 = 16;

/// Variables the platform sets in every function container; a deploy file may not override them.
const RESERVED_ENV: [&str; 6] = [
    rfa_wire::env::NATS_URL,
    rfa_wire::env::STORE_URL,
    rfa_wire::env::FUNCTION_NAME,
    rfa_wire::env::FUNCTION_KIND,
    rfa_wire::env::PORT,
    rfa_wire::env::MAX_INFLIGHT,
];

/// Flags from the command line that apply to every entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub is_async: bool,
    pub main: bool,
}

/// Reads and validates `path`.
pub fn load(path: &Path, overrides: Overrides) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read deploy file {}: check the path (see `proxyCli new` for an example)",
            path.display()
        )
    })?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse(&text, &path.display().to_string(), &base, overrides)
}

/// Parses deploy-file text; `origin` names it in errors, `base` resolves relative paths.
pub fn parse(
    text: &str,
    origin: &str,
    base: &Path,
    overrides: Overrides,
) -> anyhow::Result<Vec<Entry>> {
    let file: File = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{origin}:{}:{}: {e}. A deploy file is {{\"deploy\": [{{\"name\", \"packageDir\", \"filePath\", …}}]}}",
            e.line(),
            e.column()
        )
    })?;
    if file.deploy.is_empty() {
        bail!("{origin}: the \"deploy\" list is empty: add at least one function");
    }
    let host_cpus = limits::host_cpus();
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (i, raw) in file.deploy.into_iter().enumerate() {
        let at = format!("{origin}: deploy[{i}]");
        if !is_valid_function_name(&raw.name) {
            bail!(
                "{at}: name '{}' is not valid: {FUNCTION_NAME_RULE}",
                raw.name
            );
        }
        if !seen.insert(raw.name.clone()) {
            bail!(
                "{at}: name '{}' appears twice: each function needs its own name",
                raw.name
            );
        }
        let at = format!("{origin}: deploy[{i}] (function '{}')", raw.name);
        let kind = kind(&raw, overrides).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        let replicas = raw.replicas.unwrap_or(1);
        if replicas == 0 || replicas > MAX_REPLICAS {
            bail!("{at}: replicas must be 1 to {MAX_REPLICAS}, not {replicas}");
        }
        let memory = raw.memory.as_deref().unwrap_or(DEFAULT_MEMORY);
        let memory_bytes = parse_memory(memory).with_context(|| {
            format!("{at}: memory '{memory}' is not a size: write it like \"128m\" or \"1g\"")
        })?;
        if memory_bytes < 6 * 1024 * 1024 {
            bail!("{at}: memory '{memory}' is below Docker's minimum: give it at least \"6m\"");
        }
        let nano_cpus = match &raw.cpus {
            None => limits::default_nano_cpus(limits::FUNCTION_CPUS),
            Some(c) => {
                limits::nano_cpus(cpus(c, host_cpus).map_err(|e| anyhow::anyhow!("{at}: {e}"))?)
            }
        };
        let pids = raw.pids.unwrap_or(limits::FUNCTION_PIDS);
        if !(limits::MIN_PIDS..=limits::MAX_PIDS).contains(&pids) {
            bail!(
                "{at}: pids {pids} is out of range: give it {} to {} (the most processes and \
                 threads the function may run; default {})",
                limits::MIN_PIDS,
                limits::MAX_PIDS,
                limits::FUNCTION_PIDS
            );
        }
        let max_inflight = raw.max_inflight.unwrap_or(8);
        if max_inflight == 0 || max_inflight > 1024 {
            bail!("{at}: maxInflight must be 1 to 1024, not {max_inflight}");
        }
        for key in raw.env.keys() {
            let ok = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                bail!("{at}: env name '{key}' is not valid: use letters, digits and '_'");
            }
            if RESERVED_ENV.contains(&key.as_str()) {
                bail!("{at}: env name '{key}' is reserved: the platform sets it");
            }
        }
        entries.push(Entry {
            name: raw.name,
            package_dir: absolute(base, &raw.package_dir),
            file_path: absolute(base, &raw.file_path),
            kind,
            env: raw.env,
            replicas,
            memory_bytes,
            nano_cpus,
            pids,
            max_inflight,
        });
    }
    Ok(entries)
}

/// A deploy entry's `cpus`, checked against what Docker accepts on this machine.
fn cpus(value: &Cpus, host_cpus: f64) -> Result<f64, String> {
    let c = match value {
        Cpus::Number(n) => *n,
        Cpus::Text(t) => t.trim().parse::<f64>().map_err(|_| {
            format!(
                "cpus '{t}' is not a number: write it like 0.5 or \"1.5\" (CPUs, fractions allowed)"
            )
        })?,
    };
    if !c.is_finite() || c < limits::MIN_CPUS || c > host_cpus {
        return Err(format!(
            "cpus {c} is out of range: give it {} to {host_cpus} (this machine's CPUs)",
            limits::MIN_CPUS
        ));
    }
    Ok(c)
}

fn kind(raw: &RawEntry, overrides: Overrides) -> Result<FunctionKind, String> {
    if overrides.is_async && raw.is_async == Some(false) {
        return Err("--async conflicts with \"async\": false: remove one".into());
    }
    if overrides.main && raw.main_process == Some(false) {
        return Err("--main conflicts with \"mainProcess\": false: remove one".into());
    }
    let is_async = overrides.is_async || raw.is_async == Some(true);
    let main = overrides.main || raw.main_process == Some(true);
    match (is_async, main) {
        (true, true) => Err(
            "\"async\" and \"mainProcess\" cannot both be set: a mainProcess service takes async \
             calls at /async-functions/<name>/… already"
                .into(),
        ),
        (true, false) => Ok(FunctionKind::Async),
        (false, true) => Ok(FunctionKind::Main),
        (false, false) => Ok(FunctionKind::Http),
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    joined.canonicalize().unwrap_or(joined)
}

/// `128m`, `1g`, `512k`, `1048576` (bytes).
pub fn parse_memory(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let n: i64 = digits.parse().ok()?;
    let mult = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> anyhow::Result<Vec<Entry>> {
        parse(
            text,
            "deploy.json",
            Path::new("/base"),
            Overrides::default(),
        )
    }

    fn err(text: &str) -> String {
        format!("{:#}", p(text).unwrap_err())
    }

    const ONE: &str =
        r#"{"deploy":[{"name":"m2","packageDir":"./m","filePath":"./m/src/lib.rs"}]}"#;

    #[test]
    fn parses_and_resolves_paths() {
        let e = &p(ONE).unwrap()[0];
        assert_eq!(e.package_dir, PathBuf::from("/base/./m"));
        assert_eq!(e.kind, FunctionKind::Http);
        assert_eq!(e.replicas, 1);
        assert_eq!(e.memory_bytes, 128 << 20);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(err("{").contains("deploy.json:1:"));
        assert!(err(r#"{"deploy":[]}"#).contains("empty"));
        assert!(
            err(r#"{"deploy":[{"name":"m2","packageDir":"m","filePath":"m/x.rs","asynk":true}]}"#)
                .contains("unknown field `asynk`")
        );
        assert!(
            err(r#"{"deploy":[{"name":"M2","packageDir":"m","filePath":"m/x.rs"}]}"#)
                .contains("not valid")
        );
        let dup = r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs"},{"name":"a","packageDir":"m","filePath":"m/x.rs"}]}"#;
        assert!(err(dup).contains("appears twice"));
        assert!(err(r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs","async":true,"mainProcess":true}]}"#)
            .contains("cannot both"));
        assert!(
            err(r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs","replicas":0}]}"#)
                .contains("replicas")
        );
        assert!(
            err(
                r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs","memory":"lots"}]}"#
            )
            .contains("memory")
        );
        assert!(err(r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs","env":{"RFAAS_NATS_URL":"x"}}]}"#).contains("reserved"));
    }

    fn entry(extra: &str) -> String {
        format!(
            r#"{{"deploy":[{{"name":"ok","packageDir":"m","filePath":"m/x.rs"}},{{"name":"a","packageDir":"m","filePath":"m/x.rs"{extra}}}]}}"#
        )
    }

    #[test]
    fn limits_have_defaults_and_can_be_set_per_function() {
        let e = &p(ONE).unwrap()[0];
        assert_eq!(e.pids, limits::FUNCTION_PIDS);
        assert_eq!(
            e.nano_cpus,
            limits::default_nano_cpus(limits::FUNCTION_CPUS)
        );
        let e = &p(&entry(r#","cpus":0.5,"pids":64,"memory":"64m""#)).unwrap()[1];
        assert_eq!(
            (e.nano_cpus, e.pids, e.memory_bytes),
            (500_000_000, 64, 64 << 20)
        );
        let e = &p(&entry(r#","cpus":"0.25""#)).unwrap()[1];
        assert_eq!(e.nano_cpus, 250_000_000);
    }

    #[test]
    fn bad_limits_say_where_and_what_to_do() {
        for (extra, says) in [
            (r#","cpus":0"#, "cpus 0 is out of range: give it 0.01 to"),
            (r#","cpus":-1"#, "out of range"),
            (r#","cpus":100000"#, "this machine's CPUs"),
            (
                r#","cpus":"half""#,
                "cpus 'half' is not a number: write it like 0.5",
            ),
            (
                r#","pids":0"#,
                "pids 0 is out of range: give it 16 to 32768",
            ),
            (r#","pids":1000000"#, "out of range"),
            (r#","memory":"1k""#, "give it at least"),
        ] {
            let e = err(&entry(extra));
            assert!(e.contains("deploy.json: deploy[1] (function 'a')"), "{e}");
            assert!(e.contains(says), "{extra}: {e}");
        }
        assert!(err(&entry(r#","cpus":true"#)).contains("deploy.json:1:"));
    }

    #[test]
    fn names_cannot_leave_the_deployments_directory() {
        for name in ["../x", "..", "a/b", "/etc", "."] {
            let text = format!(
                r#"{{"deploy":[{{"name":"{name}","packageDir":"m","filePath":"m/x.rs"}}]}}"#
            );
            let e = err(&text);
            assert!(
                e.contains("deploy[0]") && e.contains("is not valid"),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn flags_apply_and_conflicts_are_errors() {
        let all_async = Overrides {
            is_async: true,
            main: false,
        };
        let e = parse(ONE, "d", Path::new("/"), all_async).unwrap();
        assert_eq!(e[0].kind, FunctionKind::Async);
        let text =
            r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs","async":false}]}"#;
        let e = parse(text, "d", Path::new("/"), all_async).unwrap_err();
        assert!(format!("{e:#}").contains("conflicts"));
    }

    /// Found while writing the `deploy_file` fuzz target's invariants: `"cpus": 1e-10` was
    /// accepted and became a limit of 0 nano-CPUs, which Docker reads as no limit at all.
    #[test]
    fn cpus_limits_are_real_limits() {
        let with = |cpus: &str| {
            p(&format!(
                r#"{{"deploy":[{{"name":"a","packageDir":"m","filePath":"m/x.rs","cpus":{cpus}}}]}}"#
            ))
        };
        // 1e-10 would round to 0 nano-CPUs, which Docker reads as "no limit".
        for bad in ["1e-10", "0.001", "0", "-1", "100000"] {
            let e = format!("{:#}", with(bad).unwrap_err());
            assert!(e.contains("is out of range"), "{bad}: {e}");
        }
        assert_eq!(with("0.01").unwrap()[0].nano_cpus, 10_000_000);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("128m"), Some(128 << 20));
        assert_eq!(parse_memory("1G"), Some(1 << 30));
        assert_eq!(parse_memory("512kb"), Some(512 << 10));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("m"), None);
        assert_eq!(parse_memory("12x"), None);
    }
}
