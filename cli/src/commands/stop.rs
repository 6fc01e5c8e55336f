//! `proxyCli stop <name>...`: removes functions (their route, then their containers).

use anyhow::bail;

use crate::functions::{self, Platform};
use crate::instance::Instance;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Functions to remove.
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let p = Platform::connect(instance).await?;
    let mut unknown = Vec::new();
    for name in &args.names {
        if functions::remove(&p, name).await? {
            println!("stopped {name}");
        } else {
            unknown.push(name.clone());
        }
    }
    if !unknown.is_empty() {
        bail!(
            "no function named {} is deployed: see `proxyCli details` for the deployed ones",
            unknown.join(", ")
        );
    }
    Ok(())
}
