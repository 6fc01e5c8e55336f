//! `proxyCli logs <name> [-f] [--tail N]`: the function's container logs.

use anyhow::bail;

use crate::docker::Engine;
use crate::functions::container_name;
use crate::instance::{Instance, LABEL_FUNCTION, Role};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function.
    pub name: String,
    /// Keep streaming new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let engine = Engine::connect().await?;
    let mut filters = instance.filters(Some(Role::Function));
    if let Some(labels) = filters.get_mut("label") {
        labels.push(format!("{LABEL_FUNCTION}={}", args.name));
    }
    let mut replicas: Vec<String> = engine
        .list_containers(filters)
        .await?
        .iter()
        .map(container_name)
        .collect();
    replicas.sort();
    let Some(first) = replicas.first() else {
        bail!(
            "no function named '{}' is deployed: see `proxyCli details` for the deployed ones",
            args.name
        );
    };
    engine.logs(first, args.follow, args.tail).await
}
