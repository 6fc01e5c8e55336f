//! `proxyCli rollback <name>`: the version the last deploy replaced serves again, rolled out
//! like a redeploy (new replicas beside the old, health, the route switched, the old drained:
//! no call is dropped). What served until now becomes the previous version, so a second
//! rollback returns to it. Without a previous version, or with its image gone, nothing changes.

use anyhow::Context;

use crate::functions::{self, Platform};
use crate::instance::Instance;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function to roll back.
    pub name: String,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let p = Platform::connect(instance).await?;
    let route = p.gateway.get(&args.name).await?.with_context(|| {
        format!(
            "no function named {} is deployed: see `proxyCli details` for the deployed ones",
            args.name
        )
    })?;
    let progress = Progress::new();
    let now = functions::rollback(&p, &route, &progress).await;
    progress.done();
    let now = now?;
    println!(
        "{} {}/functions/{} rolled back to {} (deployed {}); `proxyCli rollback {}` goes forward again to {}",
        args.name, p.gateway.url, args.name, now.image, now.deployed_at, args.name, route.image
    );
    Ok(())
}
