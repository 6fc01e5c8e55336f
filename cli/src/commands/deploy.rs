//! `proxyCli deploy <deploy.json> [--async] [--main]`: validates the whole file (parsing and
//! the shape of every function) before building anything, then builds, packs and rolls out each
//! function in turn. Prints `name url status` per entry; exits non-zero if any entry failed, and
//! a failed entry leaves its previous version serving.

use std::path::PathBuf;

use anyhow::bail;

use crate::deploy_file::{self, Overrides};
use crate::functions::{self, Outcome, Platform};
use crate::instance::Instance;
use crate::progress::Progress;
use crate::{builder, shape};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deploy file.
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
    let entries = deploy_file::load(&args.file, overrides)?;
    let mut targets = Vec::new();
    for entry in &entries {
        let target = shape::check(
            &entry.name,
            entry.kind,
            &entry.package_dir,
            &entry.file_path,
        )
        .map_err(|e| anyhow::anyhow!("function '{}': {e:#}", entry.name))?;
        builder::check_package(&entry.package_dir)
            .map_err(|e| anyhow::anyhow!("function '{}': {e:#}", entry.name))?;
        targets.push(target);
    }
    let platform = Platform::connect(instance).await?;
    let progress = Progress::new();
    let mut lines = Vec::new();
    let mut failed = 0;
    for (entry, target) in entries.iter().zip(&targets) {
        let url = format!("{}/functions/{}", platform.gateway.url, entry.name);
        let result = async {
            progress.step(&format!("building function '{}'", entry.name));
            let dir = builder::generate(instance, entry, target)?;
            let binary = builder::build(instance, entry, &dir)?;
            functions::deploy(&platform, entry, &binary, &progress).await
        }
        .await;
        match result {
            Ok(Outcome::Deployed) => lines.push(format!("{} {url} deployed", entry.name)),
            Ok(Outcome::Unchanged) => lines.push(format!("{} {url} unchanged", entry.name)),
            Err(e) => {
                failed += 1;
                eprintln!("error: function '{}': {e:#}", entry.name);
                lines.push(format!("{} {url} failed", entry.name));
            }
        }
    }
    progress.done();
    for line in &lines {
        println!("{line}");
    }
    if failed > 0 {
        bail!(
            "{failed} of {} functions failed to deploy (see above)",
            entries.len()
        );
    }
    Ok(())
}
