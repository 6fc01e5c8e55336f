//! `proxyCli deploy <deploy.json> [--async] [--main]`: checks every entry (its fields, the shape
//! of its function, its package's symlinks) before building anything, then builds, packs and
//! rolls out each entry that passed, in turn. An entry that fails a check fails alone, like one
//! that does not compile: its error is printed, the entries that passed are still deployed, and
//! the run ends with its `name url failed` line and the "N of M failed" summary. Only a file that
//! cannot be read or parsed as a whole (bad JSON, unknown fields, an empty list) stops before
//! any entry. Prints `name url status` per entry; exits non-zero if any entry failed, and a
//! failed entry leaves its previous version serving.

use std::path::PathBuf;

use anyhow::bail;

use crate::deploy_file::{self, Overrides};
use crate::functions::{self, Outcome, Platform};
use crate::instance::Instance;
use crate::progress::Progress;
use crate::{builder, shape};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deploy file (JSON: {"deploy": [{"name", "packageDir", "filePath", …}]}); relative
    /// paths in it are resolved against its directory.
    pub file: PathBuf,
    /// Deploy every entry as an async function.
    #[arg(long = "async")]
    pub is_async: bool,
    /// Deploy every entry as a mainProcess service.
    #[arg(long)]
    pub main: bool,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let overrides = Overrides {
        is_async: args.is_async,
        main: args.main,
    };
    // Every check first, entry by entry: a failing entry is reported now and counted as failed
    // in the summary; the others go on to be built and deployed.
    let checked = deploy_file::load_each(&args.file, overrides)?;
    let mut plan = Vec::new();
    for c in checked {
        let label = c.label();
        let ready = c.entry.and_then(|entry| {
            let target = shape::check(
                &entry.name,
                entry.kind,
                &entry.package_dir,
                &entry.file_path,
            )
            .map_err(|e| anyhow::anyhow!("function '{}': {e:#}", entry.name))?;
            builder::check_package(&entry.package_dir)
                .map_err(|e| anyhow::anyhow!("function '{}': {e:#}", entry.name))?;
            Ok((entry, target))
        });
        if let Err(e) = &ready {
            eprintln!("error: {e:#}");
        }
        plan.push((label, c.name, ready));
    }
    let platform = Platform::connect(instance).await?;
    let progress = Progress::new();
    let mut lines = Vec::new();
    let mut failed = 0;
    for (label, name, ready) in &plan {
        let url = match name {
            Some(name) => format!("{}/functions/{name}", platform.gateway.url),
            None => "-".to_string(),
        };
        let Ok((entry, target)) = ready else {
            failed += 1;
            lines.push(format!("{label} {url} failed"));
            continue;
        };
        let result = async {
            progress.step(&format!("building function '{}'", entry.name));
            let wrapper = builder::generate(instance, entry, target)?;
            let binary = builder::build(instance, entry, target, &wrapper)?;
            functions::deploy(&platform, entry, &binary, &progress).await
        }
        .await;
        match result {
            Ok(Outcome::Deployed) => lines.push(format!("{label} {url} deployed")),
            Ok(Outcome::Unchanged) => lines.push(format!("{label} {url} unchanged")),
            Err(e) => {
                failed += 1;
                eprintln!("error: function '{}': {e:#}", entry.name);
                lines.push(format!("{label} {url} failed"));
            }
        }
    }
    progress.done();
    for line in &lines {
        println!("{line}");
    }
    if failed > 0 {
        bail!("{}", summary(failed, plan.len()));
    }
    Ok(())
}

/// The last line of a deploy with failures.
fn summary(failed: usize, total: usize) -> String {
    let noun = if total == 1 { "function" } else { "functions" };
    format!("{failed} of {total} {noun} failed to deploy (see above)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_every_failure() {
        assert_eq!(
            summary(1, 1),
            "1 of 1 function failed to deploy (see above)"
        );
        assert_eq!(
            summary(2, 3),
            "2 of 3 functions failed to deploy (see above)"
        );
    }
}
