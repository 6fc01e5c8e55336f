//! Where rfaas keeps things on the host: its source tree, its binaries, its config and tokens.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The rfaas checkout: `RFAAS_HOME`, or the tree this binary was built from.
pub fn source_root() -> PathBuf {
    if let Ok(home) = std::env::var("RFAAS_HOME") {
        return PathBuf::from(home);
    }
    let built_in = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    built_in.canonicalize().unwrap_or(built_in)
}

/// `${XDG_CONFIG_HOME:-$HOME/.config}/rfaas`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("rfaas"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_CONFIG_HOME nor HOME is set: set one so rfaas can keep its token")?;
    Ok(PathBuf::from(home).join(".config").join("rfaas"))
}

/// The directory holding this `proxyCli` binary (and, beside it, `rfa-proxy` and `rfa-store`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where proxyCli is installed")?;
    Ok(exe
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// A platform binary (`rfa-proxy`, `rfa-store`) built alongside this CLI. If it is missing and
/// the source tree is here, it is built with cargo first.
pub fn platform_binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = bin_dir()?;
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let root = source_root();
    if !root.join("Cargo.toml").is_file() {
        bail!(
            "{name} is not beside proxyCli in {} and the rfaas source tree is not at {}: \
             build rfaas with `cargo build --release` in its checkout, or set RFAAS_HOME to it",
            dir.display(),
            root.display()
        );
    }
    eprintln!("building {name} (cargo build --release -p {name})…");
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "-p", name])
        .current_dir(&root)
        .status()
        .context("cannot run cargo: install Rust (https://rustup.rs) to build rfaas")?;
    if !status.success() {
        bail!("cargo could not build {name}: see its errors above");
    }
    let built = root.join("target").join("release").join(name);
    if built.is_file() {
        Ok(built)
    } else {
        bail!("cargo built {name} but it is not at {}", built.display())
    }
}

/// Finds `nats-server` on the host: `RFAAS_NATS_SERVER` if set (and nothing else then), else
/// `PATH`, then the usual Debian locations.
pub fn find_nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RFAAS_NATS_SERVER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    })
}

/// Writes `contents` to `path` atomically, readable by this user only (0600; the directory
/// 0700 when it is made).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
