//! `proxyCli dev <deploy.json> [--async] [--main]`: deploys, then watches every function's crate
//! (and the deploy file) and deploys again when a source, manifest or the deploy file is saved.
//!
//! Each round is a whole `deploy` of the file: what did not change is not rebuilt (the
//! wrapper's binary is up to date, its image exists, its replicas match: "unchanged"), so only
//! the function whose crate changed rolls over, with zero downtime as always. A round that fails
//! (the crate does not compile, the deploy file is not valid) prints why and leaves the previous
//! version serving; the next save tries again. Saves that come while a round runs start one more
//! round after it. Ctrl-C stops watching; the functions keep running.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use crate::commands::deploy::{self, Args};
use crate::deploy_file::{self, Overrides};
use crate::instance::Instance;

/// How long the watcher waits for more saves after one (editors write a file in several steps).
const SETTLE: Duration = Duration::from_millis(150);

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let file = args.file.canonicalize().with_context(|| {
        format!(
            "cannot read deploy file {}: check the path",
            args.file.display()
        )
    })?;
    let overrides = Overrides {
        is_async: args.is_async,
        main: args.main,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("cannot watch files (inotify)")?;
    watcher
        .watch(&file, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", file.display()))?;
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let mut reason = "start".to_string();
    loop {
        rewatch(&mut watcher, &mut watched, &file, overrides);
        let started = Instant::now();
        eprintln!("dev: deploying {} ({reason})", file.display());
        match deploy::run(
            instance,
            Args {
                file: file.clone(),
                is_async: args.is_async,
                main: args.main,
            },
        )
        .await
        {
            Ok(()) => eprintln!(
                "dev: done in {:.1} s; watching {} for changes (Ctrl-C stops)",
                started.elapsed().as_secs_f64(),
                shown(&watched)
            ),
            Err(e) => eprintln!(
                "error: {e:#}\ndev: what was deployed before keeps serving; watching for the next \
                 change (Ctrl-C stops)"
            ),
        }
        // The next relevant change, then whatever else is saved right after it.
        let changed = tokio::select! {
            changed = next_change(&mut rx, &file) => changed,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("dev: stopped watching; the functions keep running");
                return Ok(());
            }
        };
        let Some(changed) = changed else {
            anyhow::bail!("the file watcher stopped");
        };
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        reason = format!("{} changed", changed.display());
    }
}

/// Watches the package directory of every entry the file names now (and stops watching those
/// it no longer names). An entry that does not load is skipped: its deploy will say why.
fn rewatch(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    file: &Path,
    overrides: Overrides,
) {
    let wanted: BTreeSet<PathBuf> = deploy_file::load_each(file, overrides)
        .map(|entries| {
            entries
                .into_iter()
                .filter_map(|c| c.entry.ok())
                .filter_map(|e| e.package_dir.canonicalize().ok())
                .collect()
        })
        .unwrap_or_else(|_| watched.clone());
    for gone in watched.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    for dir in wanted.difference(watched) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
            eprintln!("warning: cannot watch {}: {e}", dir.display());
        }
    }
    *watched = wanted;
}

/// The first path of a relevant change: a source, manifest or lock file, or the deploy file;
/// never anything under `target/` or `.git/` (the build itself writes there).
async fn next_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    file: &Path,
) -> Option<PathBuf> {
    while let Some(event) = rx.recv().await {
        let Ok(event) = event else { continue };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            continue;
        }
        if let Some(path) = event.paths.into_iter().find(|p| relevant(p, file)) {
            return Some(path);
        }
    }
    None
}

fn relevant(path: &Path, file: &Path) -> bool {
    if path == file {
        return true;
    }
    let ignored = path
        .components()
        .any(|c| c.as_os_str() == "target" || c.as_os_str() == ".git");
    let kind = path.extension().is_some_and(|e| e == "rs" || e == "toml")
        || path.file_name().is_some_and(|n| n == "Cargo.lock");
    !ignored && kind
}

fn shown(dirs: &BTreeSet<PathBuf>) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_manifests_and_the_deploy_file_count() {
        let file = Path::new("/p/deploy.json");
        assert!(relevant(file, file));
        assert!(relevant(Path::new("/p/fn/src/lib.rs"), file));
        assert!(relevant(Path::new("/p/fn/Cargo.toml"), file));
        assert!(relevant(Path::new("/p/fn/Cargo.lock"), file));
        assert!(!relevant(Path::new("/p/fn/target/release/x.rs"), file));
        assert!(!relevant(Path::new("/p/fn/.git/index"), file));
        assert!(!relevant(Path::new("/p/fn/src/.lib.rs.swp"), file));
        assert!(!relevant(Path::new("/p/other.json"), file));
    }
}
