//! Builds a function: a generated wrapper crate under `deployments/<instance>/<name>/` (the
//! analogue of ryo-faas's generated `exported.go`) whose `main` hands the user's function to
//! `function-base`, compiled by cargo in the workspace's shared target directory, so the second
//! and later functions reuse every compiled dependency.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use rfa_wire::route::FunctionKind;

use crate::deploy_file::Entry;
use crate::instance::{HostFiles, Instance};
use crate::shape::Target;

/// The package (and binary) name of a function's wrapper: unique per instance, so two instances
/// building the same function never write the same file.
fn wrapper_name(instance: &Instance, name: &str) -> String {
    format!("rfafn-{}-{}", instance.label(), name.replace('_', "-"))
}

/// `deployments/<instance>/<name>/`, created; an error unless it really lies under
/// `deployments/<instance>/` (a name with a `/` or `..`, or a symlink planted there, would
/// otherwise make the CLI write elsewhere).
fn wrapper_dir(deployments: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if !rfa_wire::names::is_valid_function_name(name) {
        bail!(
            "function name '{}' is not valid: {}",
            name.escape_debug(),
            rfa_wire::names::FUNCTION_NAME_RULE
        );
    }
    let dir = deployments.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let inside = match (deployments.canonicalize(), dir.canonicalize()) {
        (Ok(root), Ok(real)) => real.parent() == Some(root.as_path()),
        _ => false,
    };
    if !inside {
        bail!(
            "{} does not lie inside {} (is it a symlink?): remove it and deploy again",
            dir.display(),
            deployments.display()
        );
    }
    Ok(dir)
}

/// A TOML string holding `text`, quoted and escaped by the TOML writer.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Checks what the user's package gives the wrapper: a package name cargo accepts and a library
/// name that is a Rust identifier (both are written into generated files).
fn check_names(target: &Target) -> anyhow::Result<()> {
    let package_ok = !target.package.is_empty()
        && target
            .package
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let lib_ok = target
        .lib
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && target
            .lib
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !package_ok || !lib_ok {
        bail!(
            "package name '{}' / library name '{}' in the function's Cargo.toml are not valid: use \
             letters, digits, '-' and '_' (the library name: a Rust identifier)",
            target.package.escape_debug(),
            target.lib.escape_debug()
        );
    }
    Ok(())
}

/// Directories of a package that are never part of what a function is built from.
const SKIPPED_DIRS: [&str; 2] = ["target", ".git"];

/// Refuses a package holding a symlink that leads outside it: cargo would follow it and compile
/// (or `include_str!`) whatever it points at. Walks everything but `target/` and `.git/`,
/// without following symlinks.
pub fn check_package(package_dir: &Path) -> anyhow::Result<()> {
    let root = package_dir.canonicalize().with_context(|| {
        format!(
            "packageDir {} does not exist: point it at the crate holding the function",
            package_dir.display()
        )
    })?;
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            if kind.is_dir() {
                let skipped = entry.file_name() == ".git"
                    || (dir == root && SKIPPED_DIRS.iter().any(|d| entry.file_name() == *d));
                if !skipped {
                    pending.push(path);
                }
            } else if kind.is_symlink() {
                let link = std::fs::read_link(&path)
                    .with_context(|| format!("cannot read the symlink {}", path.display()))?;
                // Where it leads: resolved on disk, or (dangling) by its text alone.
                let resolved = path
                    .canonicalize()
                    .unwrap_or_else(|_| lexical(&dir.join(&link)));
                if !resolved.starts_with(&root) {
                    bail!(
                        "{} is a symlink to {}, outside the package {}: rfaas builds a function \
                         only from its own package. Replace the link with a copy of what it points \
                         at, or move that into the package",
                        path.display(),
                        link.display(),
                        root.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// `a/b/../c` -> `a/c`, without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A generated wrapper crate.
pub struct Wrapper {
    pub dir: PathBuf,
    /// What each checking line of its `main.rs` asks (see `handler_check`).
    questions: Vec<(usize, crate::handler_check::Question)>,
}

/// Writes the wrapper crate for `entry`.
pub fn generate(instance: &Instance, entry: &Entry, target: &Target) -> anyhow::Result<Wrapper> {
    let root = crate::paths::source_root();
    check_names(target)?;
    let dir = wrapper_dir(&instance.deployments_dir(), &entry.name)?;
    let package = wrapper_name(instance, &entry.name);
    let dep_key = format!("user-{}", target.lib.replace('_', "-"));
    let manifest = format!(
        r#"# Generated by `proxyCli deploy` for function '{name}'. Do not edit: it is rewritten on
# every deploy.
[package]
name = "{package}"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "{package}"
path = "main.rs"

[dependencies]
function-base = {{ path = {fb} }}
{dep_key} = {{ path = {pkg_dir}, package = {pkg} }}

# Its own workspace, with the rfaas workspace's release profile so dependencies are shared.
[workspace]

[profile.release]
debug = false
strip = true
"#,
        name = entry.name,
        fb = toml_string(&root.join("function-base").display().to_string()),
        pkg_dir = toml_string(&entry.package_dir.display().to_string()),
        pkg = toml_string(&target.package),
    );
    let run = match entry.kind {
        FunctionKind::Main => "run_main",
        _ => "run_http",
    };
    let call_path = target
        .call_path
        .replacen(&target.lib, &format!("user_{}", target.lib), 1);
    let main = crate::handler_check::main_source(target, run, &call_path);
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    write_if_changed(&dir.join("main.rs"), &main.text)?;
    // Start from the workspace's lock file so the function gets the exact versions the platform
    // was built and tested with (and cargo reuses their compiled artifacts).
    let lock = dir.join("Cargo.lock");
    if !lock.exists()
        && let Ok(text) = std::fs::read_to_string(root.join("Cargo.lock"))
    {
        std::fs::write(&lock, text)?;
    }
    Ok(Wrapper {
        dir,
        questions: main.questions,
    })
}

fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Compiles the wrapper in release mode. Cargo's progress goes straight to the terminal; its
/// diagnostics are read as JSON so that what the compiler says about the generated `main.rs` is
/// told at the user's own line (`handler_check`), and everything else as cargo rendered it.
/// Returns the binary.
pub fn build(
    instance: &Instance,
    entry: &Entry,
    target: &Target,
    wrapper: &Wrapper,
) -> anyhow::Result<PathBuf> {
    let dir = &wrapper.dir;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::source_root().join("target"));
    let binary = target_dir
        .join("release")
        .join(wrapper_name(instance, &entry.name));
    if up_to_date(&binary, dir, &entry.package_dir) {
        return Ok(binary);
    }
    // Colours as cargo would choose them: on a terminal only.
    let format = if std::io::stderr().is_terminal() {
        "--message-format=json-diagnostic-rendered-ansi"
    } else {
        "--message-format=json"
    };
    let mut child = Command::new("cargo")
        .args(["build", "--release", format, "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo: install Rust (https://rustup.rs) to build functions")?;
    let mut mapper = crate::handler_check::Mapper::new(
        dir,
        &wrapper.questions,
        target.handler.as_ref(),
        &entry.name,
    );
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo's output")?;
            if let Some(text) = mapper.line(&line) {
                eprintln!("{}", text.trim_end());
            }
        }
    }
    if let Some(text) = mapper.finish() {
        eprintln!("{}", text.trim_end());
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "function '{}' does not compile: the errors are above (fix them in {}); \
             nothing was changed on the platform",
            entry.name,
            entry.package_dir.display()
        );
    }
    if !binary.is_file() {
        bail!(
            "cargo built function '{}' but {} is missing",
            entry.name,
            binary.display()
        );
    }
    Ok(binary)
}

/// Environment variables that change what cargo builds; a change in any of them means cargo runs.
const BUILD_ENV: [&str; 4] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_PROFILE_RELEASE_OPT_LEVEL",
];

/// Whether `binary` is newer than everything it was built from, so running cargo would only
/// confirm it (cargo's no-op check costs 150-250 ms, a third of a cold deploy).
///
/// The same rule cargo applies to local packages: every source file in the binary's dep-info
/// (`<binary>.d`, written by cargo: the wrapper, the user's crate, function-base and every path
/// dependency) must be older than the binary. On top of that every `Cargo.toml`, `Cargo.lock` and
/// `.cargo/config*` in the directories of those files and above them, and the build-affecting
/// environment (recorded in a stamp beside the wrapper), must be unchanged. Any doubt (a missing
/// or unreadable file, a path that is not absolute) means cargo runs.
fn up_to_date(binary: &Path, wrapper_dir: &Path, package_dir: &Path) -> bool {
    let stamp_path = wrapper_dir.join(".build-env");
    let stamp: String = BUILD_ENV
        .iter()
        .map(|k| format!("{k}={}\n", std::env::var(k).unwrap_or_default()))
        .collect();
    let fresh = (|| -> Option<bool> {
        let built = std::fs::metadata(binary).ok()?.modified().ok()?;
        if std::fs::read_to_string(&stamp_path).ok()? != stamp {
            return Some(false);
        }
        let depinfo = std::fs::read_to_string(binary.with_extension("d")).ok()?;
        let sources = depinfo_paths(&depinfo)?;
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        let mut dirs = std::collections::BTreeSet::new();
        let mut files = sources.clone();
        for source in &sources {
            if !source.is_absolute() {
                return None;
            }
            // Registry sources never change under a version; their manifests are the lock's.
            if cargo_home.as_ref().is_some_and(|h| source.starts_with(h)) {
                continue;
            }
            dirs.extend(source.ancestors().skip(1).map(Path::to_path_buf));
        }
        dirs.extend(wrapper_dir.ancestors().map(Path::to_path_buf));
        dirs.extend(package_dir.ancestors().map(Path::to_path_buf));
        for dir in &dirs {
            for name in [
                "Cargo.toml",
                "Cargo.lock",
                ".cargo/config.toml",
                ".cargo/config",
            ] {
                let f = dir.join(name);
                if f.exists() {
                    files.push(f);
                }
            }
        }
        for f in files {
            if std::fs::metadata(&f).ok()?.modified().ok()? > built {
                return Some(false);
            }
        }
        Some(true)
    })()
    .unwrap_or(false);
    if !fresh {
        // Recorded now; cargo is about to build with this environment.
        let _ = std::fs::write(&stamp_path, stamp);
    }
    fresh
}

/// The dependencies listed in a make-style dep-info file (`target: dep dep …`, spaces in paths
/// escaped as `\ `). `None` if it does not look like one.
fn depinfo_paths(text: &str) -> Option<Vec<PathBuf>> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    // The target is the binary's path; the first unescaped ": " ends it.
    let mut split = None;
    let bytes = line.as_bytes();
    for i in 0..bytes.len().saturating_sub(1) {
        if bytes[i] == b':' && bytes[i + 1] == b' ' && (i == 0 || bytes[i - 1] != b'\\') {
            split = Some(i);
            break;
        }
    }
    let deps = &line[split? + 2..];
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    paths.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(PathBuf::from(current));
    }
    (!paths.is_empty()).then_some(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_stay_under_deployments() {
        let tmp = tempfile::tempdir().unwrap();
        let deployments = tmp.path().join("deployments").join("t1");
        std::fs::create_dir_all(&deployments).unwrap();
        let dir = wrapper_dir(&deployments, "method2").unwrap();
        assert_eq!(dir, deployments.join("method2"));
        for bad in ["../x", "..", "a/../../b", "/etc", ""] {
            let e = wrapper_dir(&deployments, bad).unwrap_err().to_string();
            assert!(e.contains("is not valid"), "{bad}: {e}");
        }
        assert!(!tmp.path().join("deployments").join("x").exists());
        // A symlink planted where the wrapper goes is not written through.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, deployments.join("planted")).unwrap();
        let e = wrapper_dir(&deployments, "planted")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not lie inside") && e.contains("symlink"),
            "{e}"
        );
    }

    #[test]
    fn manifest_strings_are_toml_quoted() {
        assert_eq!(toml_string("/a b/c"), r#""/a b/c""#);
        let tricky = "/x\"\n[patch]\ny = \"";
        let parsed: toml::Value = format!("p = {}", toml_string(tricky)).parse().unwrap();
        assert_eq!(parsed["p"].as_str(), Some(tricky));
    }

    #[test]
    fn package_and_library_names_are_checked() {
        let t = |package: &str, lib: &str| Target {
            package: package.into(),
            lib: lib.into(),
            call_path: format!("{lib}::f"),
            handler: None,
        };
        assert!(check_names(&t("my-fn", "my_fn")).is_ok());
        assert!(check_names(&t("a\"b", "a_b")).is_err());
        assert!(check_names(&t("ab", "x(); evil")).is_err());
        assert!(check_names(&t("ab", "1ab")).is_err());
    }

    #[test]
    fn symlinks_leading_out_of_the_package_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp.path().join("pkg");
        std::fs::create_dir_all(pkg.join("src/inner")).unwrap();
        std::fs::write(pkg.join("src/lib.rs"), "").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        // Inside links are fine, and so is anything under target/ and .git/.
        std::os::unix::fs::symlink("../lib.rs", pkg.join("src/inner/again.rs")).unwrap();
        std::fs::create_dir_all(pkg.join("target/release")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", pkg.join("target/release/x")).unwrap();
        std::fs::create_dir_all(pkg.join(".git")).unwrap();
        std::os::unix::fs::symlink("/etc", pkg.join(".git/y")).unwrap();
        check_package(&pkg).unwrap();
        // A link out, existing or dangling, relative or absolute.
        for (name, target) in [
            ("src/out.rs", "../../secret"),
            ("src/inner/abs", "/etc/passwd"),
            ("dangling", "../nowhere/x"),
            ("srcdir", ".."),
        ] {
            let link = pkg.join(name);
            std::os::unix::fs::symlink(target, &link).unwrap();
            let e = format!("{:#}", check_package(&pkg).unwrap_err());
            assert!(
                e.contains(
                    &link
                        .canonicalize()
                        .unwrap_or(link.clone())
                        .display()
                        .to_string()
                ) || e.contains(name),
                "{e}"
            );
            assert!(
                e.contains("outside the package") && e.contains("Replace the link"),
                "{e}"
            );
            std::fs::remove_file(&link).unwrap();
        }
        check_package(&pkg).unwrap();
        let e = format!(
            "{:#}",
            check_package(&tmp.path().join("missing")).unwrap_err()
        );
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn reads_dep_info() {
        let text = "/t/release/fn-a: /src/a\\ b/lib.rs /src/main.rs /reg/x.rs\n\n/src/main.rs:\n";
        assert_eq!(
            depinfo_paths(text).unwrap(),
            vec![
                PathBuf::from("/src/a b/lib.rs"),
                PathBuf::from("/src/main.rs"),
                PathBuf::from("/reg/x.rs")
            ]
        );
        assert!(depinfo_paths("").is_none());
        assert!(depinfo_paths("no colon here").is_none());
    }

    #[test]
    fn a_source_newer_than_the_binary_means_cargo_runs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("lib.rs");
        let wrapper = dir.path().join("wrapper");
        std::fs::create_dir_all(&wrapper).unwrap();
        std::fs::write(&src, "fn a() {}").unwrap();
        let bin = dir.path().join("bin");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&bin, "binary").unwrap();
        std::fs::write(
            dir.path().join("bin.d"),
            format!("{}: {}\n", bin.display(), src.display()),
        )
        .unwrap();
        // First look: no stamp yet, so cargo runs (and the stamp is written).
        assert!(!up_to_date(&bin, &wrapper, dir.path()));
        assert!(up_to_date(&bin, &wrapper, dir.path()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&src, "fn a() { changed }").unwrap();
        assert!(!up_to_date(&bin, &wrapper, dir.path()), "a changed source");
        std::fs::write(&bin, "rebuilt").unwrap();
        assert!(up_to_date(&bin, &wrapper, dir.path()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("Cargo.toml"), "[package]").unwrap();
        assert!(
            !up_to_date(&bin, &wrapper, dir.path()),
            "a changed manifest"
        );
        std::fs::remove_file(dir.path().join("bin.d")).unwrap();
        std::fs::write(&bin, "rebuilt").unwrap();
        assert!(!up_to_date(&bin, &wrapper, dir.path()), "no dep-info");
    }
}
