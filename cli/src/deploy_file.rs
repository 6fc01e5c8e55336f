//! `deploy.json`: parsed strictly (unknown fields are errors), paths resolved against the
//! directory holding the file, every entry checked before anything is built.
//!
//! Over 600 lines with its tests (about half the file): every field's rule and the message of
//! each bad value are tested here, beside the parser, which the `deploy_file` fuzz target drives.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rfa_wire::names::{check_function_name, is_valid_function_name};
use rfa_wire::route::FunctionKind;
use rfa_wire::scale::{ScaleSpec, parse_duration_ms, show_ms};
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
    scale: Option<RawScale>,
}

/// An entry's `"scale"` block as written: every field optional (see [`scale`] for defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScale {
    min: Option<u32>,
    max: Option<u32>,
    target_inflight: Option<u32>,
    idle_pause: Option<String>,
    idle_stop: Option<String>,
    scale_in_delay: Option<String>,
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
    /// Autoscaling bounds and idle rules, checked (`None`: a fixed `replicas`).
    pub scale: Option<ScaleSpec>,
}

pub const DEFAULT_MEMORY: &str = limits::FUNCTION_MEMORY;
/// Most replicas an entry may ask for, as `replicas` or `scale.max` (one bound, the gateway's).
pub const MAX_REPLICAS: u32 = rfa_wire::scale::MAX_REPLICAS;
/// `scale.max` when the block leaves it out (raised to `min` and to `replicas` when they are more).
pub const DEFAULT_SCALE_MAX: u32 = 8;
/// `scale.targetInflight` when the block leaves it out.
pub const DEFAULT_TARGET_INFLIGHT: u32 = 4;
/// `scale.idlePause` when the block leaves it out and `min` is 0 (no later than `idleStop`).
pub const DEFAULT_IDLE_PAUSE_MS: u64 = 60_000;

/// Variables the platform sets in every function container; a deploy file may not override them.
const RESERVED_ENV: [&str; 7] = [
    rfa_wire::env::NATS_URL,
    rfa_wire::env::GATEWAY_URL,
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

/// One entry of a deploy file after its checks: the entry, or why it cannot be deployed. A
/// failed entry fails alone; the file's other entries are still checked (and deployed).
#[derive(Debug)]
pub struct Checked {
    /// Its index in the `"deploy"` list.
    pub index: usize,
    /// Its name, when that is a name a function can have (for the `name url status` line).
    pub name: Option<String>,
    pub entry: anyhow::Result<Entry>,
}

impl Checked {
    /// How the entry is named in the `name url status` lines: its name, or `deploy[i]` when
    /// it has none a function could have.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("deploy[{}]", self.index))
    }
}

/// Reads and validates `path`; the first failing entry fails it all (see [`load_each`]).
pub fn load(path: &Path, overrides: Overrides) -> anyhow::Result<Vec<Entry>> {
    all_or_first_error(load_each(path, overrides)?)
}

/// Reads `path` and checks each entry on its own. `Err` only for what spoils the whole file:
/// it cannot be read, is not a deploy file's JSON, or lists nothing.
pub fn load_each(path: &Path, overrides: Overrides) -> anyhow::Result<Vec<Checked>> {
    let shown = crate::normal::shown(path);
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read deploy file {}: check the path (see `proxyCli new` for an example)",
            shown.display()
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
    parse_each(&text, &shown.display().to_string(), &base, overrides)
}

/// Parses deploy-file text; `origin` names it in errors, `base` resolves relative paths. The
/// first failing entry fails it all (see [`parse_each`]).
pub fn parse(
    text: &str,
    origin: &str,
    base: &Path,
    overrides: Overrides,
) -> anyhow::Result<Vec<Entry>> {
    all_or_first_error(parse_each(text, origin, base, overrides)?)
}

fn all_or_first_error(checked: Vec<Checked>) -> anyhow::Result<Vec<Entry>> {
    checked.into_iter().map(|c| c.entry).collect()
}

/// Parses deploy-file text and checks each entry on its own: a bad entry is an `Err` in its
/// [`Checked`], and the others are still checked. `Err` for the whole file when it is not
/// valid JSON of a deploy file's shape, or its list is empty.
pub fn parse_each(
    text: &str,
    origin: &str,
    base: &Path,
    overrides: Overrides,
) -> anyhow::Result<Vec<Checked>> {
    let file: File = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{origin}:{}:{}: {}. A deploy file is {{\"deploy\": [{{\"name\", \"packageDir\", \"filePath\", …}}]}}",
            e.line(),
            e.column(),
            without_position(&e)
        )
    })?;
    if file.deploy.is_empty() {
        bail!("{origin}: the \"deploy\" list is empty: add at least one function");
    }
    let host_cpus = limits::host_cpus();
    let mut count: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, raw) in file.deploy.iter().enumerate() {
        count.entry(raw.name.clone()).or_default().push(i);
    }
    let checked = file
        .deploy
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let name = is_valid_function_name(&raw.name).then(|| raw.name.clone());
            let twice = count.get(&raw.name).filter(|at| at.len() > 1).map(|at| {
                at.iter()
                    .map(|i| format!("deploy[{i}]"))
                    .collect::<Vec<_>>()
            });
            let entry = match twice {
                Some(at) => Err(anyhow::anyhow!(
                    "{origin}: deploy[{index}]: name '{}' appears in {}: each function needs its \
                     own name, so none of them is deployed",
                    raw.name.escape_debug(),
                    at.join(", ")
                )),
                None => check_entry(raw, index, origin, base, overrides, host_cpus),
            };
            Checked { index, name, entry }
        })
        .collect();
    Ok(checked)
}

/// serde_json's message without its ` at line L column C`: the caller prints `file:L:C:` once.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&position).unwrap_or(&text).to_string()
}

/// Every check of one entry.
fn check_entry(
    raw: RawEntry,
    i: usize,
    origin: &str,
    base: &Path,
    overrides: Overrides,
    host_cpus: f64,
) -> anyhow::Result<Entry> {
    check_function_name(&raw.name).map_err(|e| anyhow::anyhow!("{origin}: deploy[{i}]: {e}"))?;
    let at = format!("{origin}: deploy[{i}] (function '{}')", raw.name);
    let kind = kind(&raw, overrides).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    if let Some(r) = raw.replicas
        && (r == 0 || r > MAX_REPLICAS)
    {
        bail!(
            "{at}: replicas must be 1 to {MAX_REPLICAS}, not {r} (to let an idle function stop, \
             give it a \"scale\" block with \"min\": 0)"
        );
    }
    let (replicas, scale) = match &raw.scale {
        None => (raw.replicas.unwrap_or(1), None),
        Some(block) => {
            let (replicas, spec) =
                scale(block, raw.replicas).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            (replicas, Some(spec))
        }
    };
    let memory = raw.memory.as_deref().unwrap_or(DEFAULT_MEMORY);
    let memory_bytes = parse_memory(memory).with_context(|| {
        format!(
            "{at}: memory '{memory}' is not a size: write it as `docker run --memory` takes it, \
             like \"128m\", \"1.5g\", \"512MB\" or a number of bytes"
        )
    })?;
    if memory_bytes < 6 * 1024 * 1024 {
        bail!("{at}: memory '{memory}' is below Docker's minimum: give it at least \"6m\"");
    }
    let nano_cpus = match &raw.cpus {
        None => limits::default_nano_cpus(limits::FUNCTION_CPUS),
        Some(c) => limits::nano_cpus(cpus(c, host_cpus).map_err(|e| anyhow::anyhow!("{at}: {e}"))?),
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
    Ok(Entry {
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
        scale,
    })
}

/// An entry's `scale` block with its defaults filled in and its rules checked, and the number
/// of replicas the function starts with. Defaults: `min` 1; `max` 8, raised to `min` and to
/// `replicas` when they are more; `targetInflight` 4; `idlePause` 60s (or `idleStop` when that is
/// shorter) when `min` is 0, none otherwise; `idleStop` none. `replicas`, when given, must lie
/// within `max(min, 1)..=max`; without it the function starts with `max(min, 1)`.
fn scale(block: &RawScale, replicas: Option<u32>) -> Result<(u32, ScaleSpec), String> {
    let min = block.min.unwrap_or(1);
    if min > MAX_REPLICAS {
        return Err(format!(
            "scale.min {min} is above {MAX_REPLICAS}, the most replicas a function may have: \
             give it 0 to {MAX_REPLICAS}"
        ));
    }
    let duration = |field: &str, text: &Option<String>| -> Result<Option<u64>, String> {
        text.as_deref()
            .map(|t| parse_duration_ms(t).map_err(|e| format!("scale.{field}: {e}")))
            .transpose()
    };
    let idle_stop_ms = duration("idleStop", &block.idle_stop)?;
    let scale_in_delay_ms = duration("scaleInDelay", &block.scale_in_delay)?;
    let idle_pause_ms = match duration("idlePause", &block.idle_pause)? {
        Some(ms) => Some(ms),
        None if min == 0 => Some(idle_stop_ms.map_or(DEFAULT_IDLE_PAUSE_MS, |stop| {
            stop.min(DEFAULT_IDLE_PAUSE_MS)
        })),
        None => None,
    };
    let spec = ScaleSpec {
        min,
        max: block
            .max
            .unwrap_or(DEFAULT_SCALE_MAX.max(min).max(replicas.unwrap_or(0))),
        target_inflight: block.target_inflight.unwrap_or(DEFAULT_TARGET_INFLIGHT),
        idle_pause_ms,
        idle_stop_ms,
        scale_in_delay_ms,
    };
    spec.check()
        .map_err(|e| format!("{e}: {}", what_to_do(&spec)))?;
    let low = spec.min.max(1);
    match replicas {
        None => Ok((low, spec)),
        Some(r) if (low..=spec.max).contains(&r) => Ok((r, spec)),
        Some(r) => Err(format!(
            "replicas {r} is outside the scale block's bounds: give replicas {low} to {} (the \
             replicas the function starts with), or leave it out to start with {low}",
            spec.max
        )),
    }
}

/// How to mend a scale block [`ScaleSpec::check`] refused, rule for rule in its order.
fn what_to_do(spec: &ScaleSpec) -> String {
    if spec.max == 0 || spec.max > MAX_REPLICAS {
        format!("give scale.max 1 to {MAX_REPLICAS}")
    } else if spec.min > spec.max {
        "raise scale.max or lower scale.min".into()
    } else if spec.target_inflight == 0 {
        "give scale.targetInflight 1 or more (the concurrent calls per replica to aim at)".into()
    } else if spec.min > 0 {
        "set scale.min to 0 to let an idle function pause and stop, or remove \
         scale.idlePause and scale.idleStop"
            .into()
    } else {
        format!(
            "make scale.idlePause no longer than scale.idleStop (e.g. \"idlePause\": \"{}\")",
            show_ms(spec.idle_stop_ms.unwrap_or(DEFAULT_IDLE_PAUSE_MS))
        )
    }
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
    joined
        .canonicalize()
        .unwrap_or_else(|_| crate::normal::tidy(&joined))
}

/// A memory size as `docker run --memory` takes it: a number of bytes (`1048576`), or a number
/// (fractions allowed: `1.5g`) with a unit `b`, `k`, `m`, `g`, `t` or `p` (powers of 1024,
/// upper or lower case), optionally followed by `b`, `i` or `ib` (`512MB`, `1GiB`), with an
/// optional space before the unit. Fractions of a byte are dropped, as Docker does. `None` for
/// anything else, and for sizes beyond `i64`.
pub fn parse_memory(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    let number_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let shift = match unit {
        "" | "b" => 0,
        _ => {
            let mut chars = unit.chars();
            let shift = match chars.next() {
                Some('k') => 10,
                Some('m') => 20,
                Some('g') => 30,
                Some('t') => 40,
                Some('p') => 50,
                _ => return None,
            };
            match chars.as_str() {
                "" | "b" | "i" | "ib" => shift,
                _ => return None,
            }
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return None;
    }
    let mult: i128 = 1 << shift;
    let mut bytes = whole.parse::<i128>().ok()?.checked_mul(mult)?;
    // The fraction exactly, in integers: 0.d1d2… × mult, truncated (18 digits are plenty).
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let scale = 10i128.pow(fraction.len() as u32);
        bytes = bytes.checked_add(fraction.parse::<i128>().ok()? * mult / scale)?;
    }
    i64::try_from(bytes).ok()
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
        assert_eq!(e.package_dir, PathBuf::from("/base/m"));
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
                .contains("is not a valid function name")
        );
        let dup = r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs"},{"name":"a","packageDir":"m","filePath":"m/x.rs"}]}"#;
        assert!(err(dup).contains("appears in deploy[0], deploy[1]"));
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
                e.contains("deploy[0]") && e.contains("is not a valid function name"),
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
    fn each_entry_is_checked_on_its_own() {
        let text = r#"{"deploy":[
            {"name":"ok","packageDir":"m","filePath":"m/x.rs"},
            {"name":"fn","packageDir":"m","filePath":"m/x.rs"},
            {"name":"Bad","packageDir":"m","filePath":"m/x.rs"},
            {"name":"big","packageDir":"m","filePath":"m/x.rs","memory":"lots"},
            {"name":"twin","packageDir":"m","filePath":"m/x.rs"},
            {"name":"twin","packageDir":"m","filePath":"m/x.rs"},
            {"name":"last","packageDir":"m","filePath":"m/x.rs"}
        ]}"#;
        let checked = parse_each(text, "d.json", Path::new("/b"), Overrides::default()).unwrap();
        let summary: Vec<(String, bool)> = checked
            .iter()
            .map(|c| (c.label(), c.entry.is_ok()))
            .collect();
        let expected = [
            ("ok", true),
            ("fn", false),
            ("deploy[2]", false),
            ("big", false),
            ("twin", false),
            ("twin", false),
            ("last", true),
        ];
        let expected: Vec<(String, bool)> = expected
            .iter()
            .map(|(n, ok)| (n.to_string(), *ok))
            .collect();
        assert_eq!(summary, expected);
        let why = |i: usize| format!("{:#}", checked[i].entry.as_ref().unwrap_err());
        assert!(
            why(1).starts_with(
                "d.json: deploy[1]: 'fn' cannot be a function name: it is a Rust keyword"
            ),
            "{}",
            why(1)
        );
        assert!(why(1).contains("'fn_x'"), "{}", why(1));
        assert!(
            why(3).contains("deploy[3] (function 'big'): memory 'lots'"),
            "{}",
            why(3)
        );
        assert!(
            why(5).contains("appears in deploy[4], deploy[5]"),
            "{}",
            why(5)
        );
        // `parse` keeps failing on the first bad entry.
        assert!(format!("{:#}", p(text).unwrap_err()).contains("deploy[1]"));
    }

    #[test]
    fn a_syntax_error_gives_its_position_once() {
        let e = err("{\n  \"deploy\": [\n    {\"name\": \"a\",}\n  ]\n}");
        assert!(e.starts_with("deploy.json:3:"), "{e}");
        assert!(!e.contains(" at line "), "position twice: {e}");
        assert_eq!(e.matches(":3:").count(), 1, "{e}");
        let e =
            err(r#"{"deploy":[{"name":"a","packageDir":"m","filePath":"m/x.rs","asynk":true}]}"#);
        assert!(
            e.contains("unknown field `asynk`") && !e.contains(" at line "),
            "{e}"
        );
    }

    #[test]
    fn paths_are_normalized() {
        // Missing paths are tidied (`.` and `//` go) but keep `..`: `m/..` is not `.` when `m`
        // is missing, and that may be why the path is.
        let text = r#"{"deploy":[{"name":"a","packageDir":"./m/../n//p/","filePath":"./n/p/./src/lib.rs"}]}"#;
        let e = &parse(
            text,
            "d",
            Path::new("/nonexistent/./x"),
            Overrides::default(),
        )
        .unwrap()[0];
        assert_eq!(e.package_dir, PathBuf::from("/nonexistent/x/m/../n/p"));
        assert_eq!(e.file_path, PathBuf::from("/nonexistent/x/n/p/src/lib.rs"));
        // Existing ones are resolved.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(real.join("n/src")).unwrap();
        std::fs::create_dir_all(real.join("m")).unwrap();
        let e = &parse(
            text.replace("/p", "").as_str(),
            "d",
            &real.join("."),
            Overrides::default(),
        )
        .unwrap()[0];
        assert_eq!(e.package_dir, real.join("n"));
    }

    #[test]
    fn memory_sizes_as_docker_takes_them() {
        for (text, bytes) in [
            ("128m", 128 << 20),
            ("1G", 1 << 30),
            ("512kb", 512 << 10),
            ("512M", 512 << 20),
            ("512MB", 512 << 20),
            ("1GiB", 1 << 30),
            ("1gi", 1 << 30),
            ("100", 100),
            ("100b", 100),
            ("100B", 100),
            ("1.5g", 3 << 29),
            ("1.5 g", 3 << 29),
            ("0.5m", 512 << 10),
            ("2.25k", 2304),
            ("1.0000001k", 1024),
            ("1t", 1 << 40),
            (" 64m ", 64 << 20),
        ] {
            assert_eq!(parse_memory(text), Some(bytes), "{text}");
        }
        for bad in [
            "",
            "m",
            "12x",
            "1.5.2g",
            ".5g",
            "1.g",
            "-1m",
            "1e3",
            "g1",
            "1mm",
            "1  m",
            "1ix",
            "1bb",
            "9999999999p",
        ] {
            assert_eq!(parse_memory(bad), None, "{bad:?}");
        }
    }

    fn scale_of(block: &str) -> (u32, Option<ScaleSpec>) {
        let e = &p(&entry(&format!(r#","scale":{block}"#))).unwrap()[1];
        (e.replicas, e.scale)
    }

    fn spec(min: u32, max: u32, pause: Option<u64>, stop: Option<u64>) -> ScaleSpec {
        ScaleSpec {
            min,
            max,
            target_inflight: DEFAULT_TARGET_INFLIGHT,
            idle_pause_ms: pause,
            idle_stop_ms: stop,
            scale_in_delay_ms: None,
        }
    }

    #[test]
    fn scale_blocks_have_defaults() {
        // No block: a fixed count, as before.
        let e = &p(ONE).unwrap()[0];
        assert_eq!((e.replicas, e.scale), (1, None));
        // An empty block: min 1, max 8, targetInflight 4, no idle rules; starts with 1.
        assert_eq!(scale_of("{}"), (1, Some(spec(1, 8, None, None))));
        // min 0: paused after 60s idle by default, never stopped; starts with one replica.
        assert_eq!(
            scale_of(r#"{"min":0}"#),
            (1, Some(spec(0, 8, Some(60_000), None)))
        );
        // A short idleStop pulls the default idlePause down to it.
        assert_eq!(
            scale_of(r#"{"min":0,"idleStop":"30s"}"#),
            (1, Some(spec(0, 8, Some(30_000), Some(30_000))))
        );
        assert_eq!(
            scale_of(r#"{"min":0,"idleStop":"30m"}"#),
            (1, Some(spec(0, 8, Some(60_000), Some(1_800_000))))
        );
        // max is never below min or replicas.
        assert_eq!(
            scale_of(r#"{"min":12}"#),
            (12, Some(spec(12, 12, None, None)))
        );
        let e = &p(&entry(r#","replicas":10,"scale":{"min":2}"#)).unwrap()[1];
        assert_eq!((e.replicas, e.scale), (10, Some(spec(2, 10, None, None))));
        // The example of the contract, every field given.
        let (replicas, s) =
            scale_of(r#"{"min":0,"max":8,"targetInflight":2,"idlePause":"90s","idleStop":"30m"}"#);
        let mut want = spec(0, 8, Some(90_000), Some(1_800_000));
        want.target_inflight = 2;
        assert_eq!((replicas, s), (1, Some(want)));
        // scaleInDelay, when given (else the scaler's default cool-down).
        let (replicas, s) = scale_of(r#"{"max":4,"scaleInDelay":"2m"}"#);
        let mut want = spec(1, 4, None, None);
        want.scale_in_delay_ms = Some(120_000);
        assert_eq!((replicas, s), (1, Some(want)));
        // replicas within min..=max is kept; without it the function starts with max(min, 1).
        let e = &p(&entry(r#","replicas":3,"scale":{"min":0,"max":4}"#)).unwrap()[1];
        assert_eq!(e.replicas, 3);
        assert_eq!(scale_of(r#"{"min":3,"max":5}"#).0, 3);
        // Up to the gateway's bound, which fixed replicas share.
        assert_eq!(
            scale_of(r#"{"max":64}"#).1.map(|s| s.max),
            Some(MAX_REPLICAS)
        );
        assert_eq!(p(&entry(r#","replicas":64"#)).unwrap()[1].replicas, 64);
    }

    #[test]
    fn bad_scale_blocks_say_where_what_and_what_to_do() {
        for (extra, says) in [
            (
                r#","scale":{"min":3,"max":2}"#,
                "scale.min 3 is above scale.max 2: raise scale.max or lower scale.min",
            ),
            (
                r#","scale":{"min":0,"idlePause":"90s","idleStop":"30s"}"#,
                "scale.idlePause (90s) is longer than scale.idleStop (30s)",
            ),
            (
                r#","scale":{"min":0,"idlePause":"90s","idleStop":"30s"}"#,
                "make scale.idlePause no longer than scale.idleStop",
            ),
            (
                r#","scale":{"min":1,"idlePause":"60s"}"#,
                "need scale.min 0",
            ),
            (r#","scale":{"idleStop":"30m"}"#, "set scale.min to 0"),
            (
                r#","scale":{"min":0,"idlePause":"1.5s"}"#,
                "scale.idlePause: '1.5s' is not a duration: write a whole number with a unit",
            ),
            (
                r#","scale":{"min":0,"idleStop":"soon"}"#,
                "scale.idleStop: 'soon' is not a duration",
            ),
            (r#","scale":{"min":0,"idlePause":"0s"}"#, "is zero"),
            (
                r#","scale":{"scaleInDelay":"30"}"#,
                "scale.scaleInDelay: '30' is not a duration",
            ),
            (
                r#","scale":{"targetInflight":0}"#,
                "scale.targetInflight must be at least 1: give scale.targetInflight 1 or more",
            ),
            (
                r#","scale":{"max":65}"#,
                "scale.max 65 is above 64: give scale.max 1 to 64",
            ),
            (r#","scale":{"max":0}"#, "scale.max must be at least 1"),
            (
                r#","scale":{"min":65}"#,
                "scale.min 65 is above 64, the most replicas a function may have",
            ),
            (
                r#","replicas":5,"scale":{"min":0,"max":4}"#,
                "replicas 5 is outside the scale block's bounds: give replicas 1 to 4",
            ),
            (
                r#","replicas":1,"scale":{"min":2,"max":4}"#,
                "give replicas 2 to 4",
            ),
            (
                r#","replicas":0,"scale":{"min":0}"#,
                "replicas must be 1 to 64, not 0 (to let an idle function stop, give it a \"scale\" block with \"min\": 0)",
            ),
            (r#","replicas":65"#, "replicas must be 1 to 64, not 65"),
        ] {
            let e = err(&entry(extra));
            assert!(
                e.starts_with("deploy.json: deploy[1] (function 'a'): "),
                "{extra}: {e}"
            );
            assert!(e.contains(says), "{extra}: {e}");
        }
        // Unknown fields and wrong types spoil the file, as everywhere in it.
        for (extra, says) in [
            (r#","scale":{"minimum":0}"#, "unknown field `minimum`"),
            (r#","scale":{"min":-1}"#, "invalid value: integer `-1`"),
            (
                r#","scale":{"max":1.5}"#,
                "invalid type: floating point `1.5`",
            ),
            (r#","scale":{"idlePause":60}"#, "invalid type: integer `60`"),
            (r#","scale":4"#, "invalid type: integer `4`"),
        ] {
            let e = err(&entry(extra));
            assert!(e.starts_with("deploy.json:1:"), "{extra}: {e}");
            assert!(e.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn fractional_memory_in_a_deploy_file() {
        let e = &p(&entry(r#","memory":"1.5g""#)).unwrap()[1];
        assert_eq!(e.memory_bytes, 1_610_612_736);
        let e = &p(&entry(r#","memory":"6291456""#)).unwrap()[1];
        assert_eq!(e.memory_bytes, 6 << 20);
    }
}
