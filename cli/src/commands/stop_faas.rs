//! `proxyCli stopFaas [--prune]`: removes exactly the objects labelled as this instance's.

use std::time::Duration;

use anyhow::Context;

use crate::instance::{HostFiles, Instance, LABEL_INSTANCE, LABEL_MANAGED, Role};
use rfa_engine::Engine;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove the instance's volumes (its data) and the rfaas images no platform uses.
    #[arg(long)]
    pub prune: bool,
}

/// On a swarm manager: removes the instance's services (functions first) and its token secrets;
/// their names. Nothing on an engine outside a swarm.
async fn remove_services(engine: &Engine, instance: &Instance) -> anyhow::Result<Vec<String>> {
    if !matches!(
        engine.swarm_role().await?,
        rfa_engine::SwarmRole::Manager { .. }
    ) {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for role in [Some(Role::Function), None] {
        for service in engine.list_services(instance.filters(role)).await? {
            let Some(name) = service.spec.and_then(|s| s.name) else {
                continue;
            };
            if !removed.contains(&name) && engine.remove_service(&name).await? {
                removed.push(name);
            }
        }
    }
    for (name, id) in engine.secrets(&instance.labels(Role::Proxy)).await? {
        if engine.remove_secret(&id).await? {
            removed.push(format!("{name} (secret)"));
        }
    }
    Ok(removed)
}

/// Removes the instance's overlay network once the tasks of its removed services have left it
/// (functions drain for up to their stop grace period).
async fn remove_overlay(engine: &Engine, instance: &Instance) -> anyhow::Result<Vec<String>> {
    let deadline = std::time::Instant::now() + rfa_engine::STOP_GRACE + Duration::from_secs(15);
    loop {
        match engine.remove_networks(instance.filters(None)).await {
            Ok(removed) => {
                // Gone from the list too, so a startFaas right after makes a new one.
                while engine.network_exists(&instance.network()).await?
                    && std::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                return Ok(removed);
            }
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!("network still in use: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let engine = Engine::connect().await?;
    let services = remove_services(&engine, instance).await?;
    // The scaler first, so it does not start or wake a function while the rest goes.
    let mut names = Vec::new();
    for role in [Some(Role::Scaler), None] {
        let containers = engine.list_containers(instance.filters(role)).await?;
        let batch: Vec<String> = containers
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !names.contains(n))
            .collect();
        // Then functions, the proxy, store and NATS together, each given time to finish its
        // work.
        let stops = batch
            .iter()
            .map(|n| engine.stop_and_remove(n, Duration::from_secs(10)));
        for result in futures_util::future::join_all(stops).await {
            result?;
        }
        names.extend(batch);
    }
    let networks = if services.is_empty() {
        engine.remove_networks(instance.filters(None)).await?
    } else {
        remove_overlay(&engine, instance).await?
    };
    let mut removed: Vec<String> = services.iter().map(|n| format!("service {n}")).collect();
    removed.extend(names.iter().map(|n| format!("container {n}")));
    removed.extend(networks.into_iter().map(|n| format!("network {n}")));

    if args.prune {
        let volumes = engine.remove_volumes(instance.filters(None)).await?;
        removed.extend(volumes.into_iter().map(|v| format!("volume {v}")));
        removed.extend(prune_images(&engine, instance).await?);
        let generated = instance.deployments_dir();
        if generated.is_dir() {
            std::fs::remove_dir_all(&generated)?;
            removed.push(format!("generated crates in {}", generated.display()));
        }
        // Its token and kept settings: a pruned instance starts over like a new one.
        for file in [instance.token_path()?, crate::settings::path(instance)?] {
            match std::fs::remove_file(&file) {
                Ok(()) => removed.push(format!("file {}", file.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(anyhow::anyhow!(e))
                        .with_context(|| format!("cannot remove {}", file.display()));
                }
            }
        }
    }
    if removed.is_empty() {
        println!(
            "nothing to remove: no rfaas object of instance '{}'",
            instance.label()
        );
    } else {
        for line in &removed {
            println!("removed {line}");
        }
    }
    Ok(())
}

/// Removes rfaas images no container uses: this instance's function images (its own tags), and
/// the shared platform images (base, proxy, store, NATS) only when no other instance still has
/// containers or volumes (a stopped instance restarts from them).
async fn prune_images(engine: &Engine, instance: &Instance) -> anyhow::Result<Vec<String>> {
    use std::collections::HashMap;
    let others = engine
        .list_containers(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_MANAGED}=true")],
        )]))
        .await?
        .into_iter()
        .any(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INSTANCE))
                .is_some_and(|i| i != instance.label())
        })
        || engine
            .list_volume_instances()
            .await?
            .iter()
            .any(|i| i != instance.label());
    let mut removed = Vec::new();
    let images = engine
        .list_images(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_MANAGED}=true")],
        )]))
        .await?;
    // Children before the base they are built on.
    let mut ordered: Vec<_> = images.into_iter().collect();
    ordered.sort_by_key(|i| {
        i.labels
            .get(crate::instance::LABEL_ROLE)
            .map(|r| r == Role::Base.as_str())
    });
    for image in ordered {
        let role = image
            .labels
            .get(crate::instance::LABEL_ROLE)
            .cloned()
            .unwrap_or_default();
        let tags: Vec<&String> = image
            .repo_tags
            .iter()
            .filter(|t| *t != "<none>:<none>")
            .collect();
        let tags: Vec<&String> = if role == Role::Function.as_str() {
            // Each instance tags its own function images (`Instance::function_image`): only
            // this instance's tags go; an image another instance tags stays (untagging ours
            // deletes nothing of it).
            let Some(function) = image.labels.get(crate::instance::LABEL_FUNCTION) else {
                continue;
            };
            let repo = format!("{}:", instance.function_image(function));
            let ours: Vec<&String> = tags
                .iter()
                .copied()
                .filter(|t| t.starts_with(&repo))
                .collect();
            if ours.is_empty() && !tags.is_empty() {
                continue;
            }
            ours
        } else if others {
            continue;
        } else {
            tags
        };
        if tags.is_empty() {
            // Left untagged by a rebuild: remove it by id.
            if engine.remove_image(&image.id).await? {
                removed.push(format!("image {}", image.id));
            }
        }
        for tag in tags {
            if engine.remove_image(tag).await? {
                removed.push(format!("image {tag}"));
            }
        }
    }
    Ok(removed)
}
