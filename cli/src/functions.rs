//! Running functions: their containers, health, and the blue/green switch of a redeploy.
//!
//! A deployment starts its replicas beside the running ones under fresh network aliases
//! (`rfa-fn-<name>-<deployment>-<k>`), waits until every one answers `/healthz`, points the
//! gateway's route at them, and only then stops the old replicas (which drain their in-flight
//! requests) and renames the new ones to the contract's names. A build, image or health failure
//! removes the new containers and leaves the old version serving.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use rfa_engine::{
    Bridge, ContainerSummary, Engine, FunctionEngine, FunctionTemplate, Reach, Replica,
};
use rfa_wire::env;
use rfa_wire::route::{FunctionKind, FunctionRoute, PreviousVersion, RunSpec};

use crate::deploy_file::Entry;
use crate::gateway::Gateway;
use crate::images::{AppImage, BaseImage};
use crate::instance::{Instance, LABEL_BASE, LABEL_FUNCTION, LABEL_KIND, LABEL_UPSTREAM, Role};
use crate::platform;
use crate::progress::Progress;

/// How long a new replica may take to answer `/healthz`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an old replica has to drain its calls before it is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// What a function container needs from the running platform.
pub struct Platform {
    pub engine: Engine,
    /// The function replicas, through the engine interface the scaler uses too.
    pub replicas: Bridge,
    pub instance: Instance,
    pub gateway: Gateway,
    /// Platform-provided environment: NATS and store URLs, OTLP endpoint.
    platform_env: Vec<String>,
    pub base: BaseImage,
    /// The instance runs on Swarm: functions are services (see `crate::swarm`).
    pub swarm: bool,
    /// On Swarm: the other nodes' engines that get function images.
    pub node_engines: Vec<String>,
}

impl Platform {
    /// Connects to the engine and the instance's running gateway.
    pub async fn connect(instance: &Instance) -> anyhow::Result<Platform> {
        Platform::on(Engine::connect().await?, instance).await
    }

    /// The instance's running gateway, through an engine already connected.
    pub async fn on(engine: Engine, instance: &Instance) -> anyhow::Result<Platform> {
        let url = platform::gateway_url(&engine, instance).await?;
        let token = platform::admin_token(instance)?;
        let swarm = crate::swarm::is_swarm(&engine, instance).await?;
        let (proxy_env, proxy_labels) = if swarm {
            crate::swarm::proxy_config(&engine, instance)
                .await?
                .unwrap_or_default()
        } else {
            let config = engine
                .inspect(&instance.proxy())
                .await?
                .and_then(|c| c.config)
                .unwrap_or_default();
            (
                config.env.unwrap_or_default(),
                config.labels.unwrap_or_default(),
            )
        };
        let base_label = proxy_labels.get(LABEL_BASE).cloned();
        let node_engines = if swarm {
            crate::settings::load(&crate::settings::path(instance)?)?
                .map(|k| k.node_engines)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let keep = [env::NATS_URL, env::STORE_URL, "OTEL_EXPORTER_OTLP_ENDPOINT"];
        let platform_env = proxy_env
            .into_iter()
            .filter(|kv| keep.iter().any(|k| kv.starts_with(&format!("{k}="))))
            .collect();
        Ok(Platform {
            gateway: Gateway::new(url, token, platform::instance_flag(instance))?,
            base: BaseImage::of_platform(base_label.as_deref())?,
            // The CLI runs on the host: it reaches a replica by its address on the bridge.
            replicas: Bridge::new(engine.clone(), instance.clone(), Reach::ContainerIp)?,
            engine,
            instance: instance.clone(),
            platform_env,
            swarm,
            node_engines,
        })
    }

    /// All function containers of the instance, as the engine lists them.
    pub async fn all_replicas(&self) -> anyhow::Result<Vec<ContainerSummary>> {
        Ok(self
            .engine
            .list_containers(self.instance.filters(Some(Role::Function)))
            .await?)
    }

    /// The template every replica of `d` is made from.
    fn template(&self, d: &Desired) -> FunctionTemplate {
        FunctionTemplate {
            instance: self.instance.clone(),
            name: d.name.clone(),
            kind: d.kind,
            image: d.image.clone(),
            run: d.run.clone(),
            platform_env: self.platform_env.clone(),
        }
    }
}

/// How a deploy of one function ended.
pub enum Outcome {
    Deployed,
    Unchanged,
}

fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

pub fn container_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

fn running(c: &ContainerSummary) -> bool {
    c.state.as_ref().map(|s| s.to_string()) == Some("running".to_string())
}

/// What one function's replicas should be: the route record's name, kind and image and how
/// they run. A deploy makes it from the deploy file; a platform restart from the kept route.
pub struct Desired {
    pub name: String,
    pub kind: FunctionKind,
    pub image: String,
    pub run: RunSpec,
    /// The deployment time the route keeps (a restart keeps the original one).
    pub deployed_at: String,
    /// The version this one replaced (kept for `rollback`).
    pub previous: Option<PreviousVersion>,
}

impl Desired {
    /// What a kept route record says the function's replicas are (its deployment time kept).
    fn of_route(route: &FunctionRoute) -> Result<Desired, RestoreError> {
        Ok(Desired {
            name: route.name.clone(),
            kind: route.kind,
            image: route.image.clone(),
            run: route.run.clone().ok_or(RestoreError::NoRunSpec)?,
            deployed_at: route.deployed_at.clone(),
            previous: route.previous.clone(),
        })
    }

    /// What `route` runs now, as a version to go back to (`None` for a record without its
    /// run spec).
    fn current_of(route: &FunctionRoute) -> Option<PreviousVersion> {
        route.run.clone().map(|run| PreviousVersion {
            image: route.image.clone(),
            deployed_at: route.deployed_at.clone(),
            run,
        })
    }
}

/// The version a deploy of `image` with `run` keeps for rollback: what runs now if the deploy
/// changes it, else the one kept already (redeploying the same thing loses nothing).
fn previous_for(
    current: Option<&FunctionRoute>,
    image: &str,
    run: &RunSpec,
) -> Option<PreviousVersion> {
    let current = current?;
    let same = current.image == image && current.run.as_ref() == Some(run);
    if same {
        current.previous.clone()
    } else {
        Desired::current_of(current).or_else(|| current.previous.clone())
    }
}

/// Builds the image for `binary` and rolls the function over to it.
pub async fn deploy(
    p: &Platform,
    entry: &Entry,
    binary: &std::path::Path,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    let image = AppImage::assemble(
        &p.base,
        &p.instance.function_image(&entry.name),
        binary,
        Role::Function,
        Some(&entry.name),
    )?;
    image.ensure(&p.engine, &p.base, progress).await?;
    progress.done();
    let run = RunSpec {
        replicas: entry.replicas,
        env: entry.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        memory_bytes: entry.memory_bytes,
        nano_cpus: entry.nano_cpus,
        pids: i64::from(entry.pids),
        max_inflight: entry.max_inflight,
        scale: entry.scale,
    };
    let current = p.gateway.get(&entry.name).await?;
    let desired = Desired {
        name: entry.name.clone(),
        kind: entry.kind,
        previous: previous_for(current.as_ref(), &image.tag, &run),
        image: image.tag.clone(),
        run,
        deployed_at: rfa_wire::time::now(),
    };
    if p.swarm {
        return roll_out_swarm(p, &desired, progress).await;
    }
    roll_out(p, &desired, progress).await
}

/// On Swarm: sets function `route`'s task count to `replicas`, with the service spec made from
/// its route record again (a changed count alone replaces no task), and keeps the count in the
/// route. `false` when it has no service.
pub async fn scale_swarm(
    p: &Platform,
    route: &FunctionRoute,
    replicas: u32,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let service = rfa_engine::function_service(&p.instance, &route.name);
    if p.engine.service(&service).await?.is_none() {
        return Ok(false);
    }
    let mut desired = Desired::of_route(route)?;
    desired.run.replicas = replicas;
    roll_out_swarm(p, &desired, progress).await?;
    Ok(true)
}

/// On Swarm: the image onto every node that runs functions, the function's service created or
/// rolled start-first, then its route (found by DNS, `tasks.<service>`).
async fn roll_out_swarm(p: &Platform, d: &Desired, progress: &Progress) -> anyhow::Result<Outcome> {
    for (node, took) in
        crate::swarm::deliver(&p.engine, &d.image, &p.node_engines, progress).await?
    {
        progress.step(&format!(
            "copied {} to {node} in {:.1} s",
            d.image,
            took.as_secs_f64()
        ));
    }
    let template = p.template(d);
    let changed =
        crate::swarm::roll_out(&p.engine, &template, u64::from(d.run.replicas), progress).await?;
    let discover = rfa_engine::discover_name(&p.instance, &d.name);
    register(p, d, Vec::new(), Some(discover)).await?;
    Ok(if changed {
        Outcome::Deployed
    } else {
        Outcome::Unchanged
    })
}

/// Runs the version `route` keeps as previous again, rolled out like a deploy (new replicas
/// beside the old, health, the route switched, the old drained; on Swarm a start-first
/// update); what ran until now becomes the previous version, so a second rollback goes forward
/// again. Returns the version now serving.
pub async fn rollback(
    p: &Platform,
    route: &FunctionRoute,
    progress: &Progress,
) -> anyhow::Result<PreviousVersion> {
    let Some(previous) = route.previous.clone() else {
        bail!(
            "function '{}' has no previous version to roll back to: a version is kept when a \
             deploy replaces it (its image or settings changed), and '{}' has had no such deploy",
            route.name,
            route.name
        );
    };
    if !p.engine.image_exists(&previous.image).await? {
        bail!(
            "the previous image of '{}', {}, is no longer on this machine (removed or pruned): \
             deploy the version you want instead; the current version keeps serving",
            route.name,
            previous.image
        );
    }
    let desired = Desired {
        name: route.name.clone(),
        kind: route.kind,
        image: previous.image.clone(),
        run: previous.run.clone(),
        deployed_at: rfa_wire::time::now(),
        previous: Desired::current_of(route),
    };
    if p.swarm {
        roll_out_swarm(p, &desired, progress).await?;
    } else {
        roll_out(p, &desired, progress).await?;
    }
    Ok(previous)
}

/// Why a kept function could not be run again after a platform restart.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("it was deployed by an older rfaas that did not record how to run it: deploy it again")]
    NoRunSpec,
    #[error("its image {0} is no longer on this machine (removed or pruned): deploy it again")]
    ImageGone(String),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Whether every upstream of `route` is served by a running replica of this instance.
pub fn route_served(route: &FunctionRoute, replicas: &[ContainerSummary]) -> bool {
    !route.upstreams.is_empty()
        && route.upstreams.iter().all(|u| {
            replicas
                .iter()
                .any(|c| running(c) && label(c, LABEL_UPSTREAM) == Some(u.as_str()))
        })
}

/// Runs a kept function again from its route record (image and [`RunSpec`]): new replicas,
/// health, the route pointed at them. Used by `startFaas` after a platform restart.
pub async fn restore(
    p: &Platform,
    route: &FunctionRoute,
    progress: &Progress,
) -> Result<Outcome, RestoreError> {
    let desired = Desired::of_route(route)?;
    match p.engine.image_exists(&route.image).await {
        Ok(true) => {}
        Ok(false) => return Err(RestoreError::ImageGone(route.image.clone())),
        Err(e) => return Err(RestoreError::Failed(e.into())),
    }
    roll_out(p, &desired, progress)
        .await
        .map_err(RestoreError::Failed)
}

/// Makes the function's replicas match `d`: leaves them if they already do, else starts new
/// ones beside the old, waits for their health, switches the route, then drains the old.
async fn roll_out(p: &Platform, d: &Desired, progress: &Progress) -> anyhow::Result<Outcome> {
    let template = p.template(d);
    let spec_hash = template.spec_hash();
    let old = p.replicas.list(Some(&d.name)).await?;
    let unchanged = old.len() == d.run.replicas as usize
        && old.iter().all(|r| r.is_running() && r.spec == spec_hash);
    if unchanged {
        let upstreams = old.iter().map(|r| r.upstream.clone()).collect();
        register(p, d, upstreams, None).await?;
        return Ok(Outcome::Unchanged);
    }

    let bits: u32 = rand::random();
    let deployment = format!("{bits:08x}");
    let mut new = Vec::new();
    for k in 0..d.run.replicas as usize {
        let name = format!("{}-{deployment}", p.instance.function_container(&d.name, k));
        progress.step(&format!("starting {name}"));
        match p.replicas.create(&template, &deployment, k, &name).await {
            Ok(replica) => new.push(replica),
            Err(e) => {
                discard(p, &new).await;
                return Err(e.into());
            }
        }
    }
    let waits = new
        .iter()
        .map(|r| p.replicas.wait_healthy(r, HEALTH_TIMEOUT));
    let results = futures_util::future::join_all(waits).await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        discard(p, &new).await;
        let previous = if old.is_empty() {
            "nothing was deployed".to_string()
        } else {
            "the previous version keeps serving".to_string()
        };
        bail!("{e}\n{previous}");
    }

    let upstreams = new.iter().map(|r| r.upstream.clone()).collect();
    if let Err(e) = register(p, d, upstreams, None).await {
        discard(p, &new).await;
        return Err(e);
    }

    // The gateway sends nothing to the old replicas any more: let them drain and go.
    let stops = old.iter().map(|r| p.replicas.remove(r, DRAIN_GRACE));
    for r in futures_util::future::join_all(stops).await {
        r?;
    }
    for (k, replica) in new.iter().enumerate() {
        p.replicas
            .rename(replica, &p.instance.function_container(&d.name, k))
            .await?;
    }
    Ok(Outcome::Deployed)
}

/// Puts the function's route: its replicas by `upstreams` (bridge) or by the DNS name
/// `discover` (Swarm).
async fn register(
    p: &Platform,
    d: &Desired,
    upstreams: Vec<String>,
    discover: Option<String>,
) -> anyhow::Result<()> {
    p.gateway
        .put(&FunctionRoute {
            name: d.name.clone(),
            kind: d.kind,
            upstreams,
            image: d.image.clone(),
            deployed_at: d.deployed_at.clone(),
            queue: None,
            run: Some(d.run.clone()),
            power: Default::default(),
            discover,
            previous: d.previous.clone(),
        })
        .await
}

/// Removes new replicas that will not serve (at once: they have no calls yet).
async fn discard(p: &Platform, replicas: &[Replica]) {
    for r in replicas {
        if let Err(e) = p.replicas.remove(r, Duration::ZERO).await {
            eprintln!("warning: could not remove {}: {e}", r.container);
        }
    }
}

/// Stops a function: its route first (no new calls), then its containers (resumed first if
/// paused, so that they drain).
pub async fn remove(p: &Platform, name: &str) -> anyhow::Result<bool> {
    let had_route = p.gateway.delete(name).await?;
    if p.swarm {
        // Swarm takes each task out of DNS 2 s before its SIGTERM; it drains in its grace.
        return Ok(crate::swarm::remove(&p.engine, &p.instance, name).await? || had_route);
    }
    let replicas = p.replicas.list(Some(name)).await?;
    let stops = replicas.iter().map(|r| p.replicas.remove(r, DRAIN_GRACE));
    for r in futures_util::future::join_all(stops).await {
        r?;
    }
    Ok(had_route || !replicas.is_empty())
}

/// The kind recorded on a function's containers.
pub fn kind_of(c: &ContainerSummary) -> FunctionKind {
    match label(c, LABEL_KIND) {
        Some("async") => FunctionKind::Async,
        Some("main") => FunctionKind::Main,
        _ => FunctionKind::Http,
    }
}

/// Whether `c` is one of the replicas `route` sends calls to (by its upstream label): a container
/// left from another deployment (a roll-out not finished, a replica draining) is not.
pub fn is_routed(route: &FunctionRoute, c: &ContainerSummary) -> bool {
    label(c, LABEL_UPSTREAM).is_some_and(|u| route.upstreams.iter().any(|r| r == u))
}

/// Groups containers by function name.
pub fn by_function(containers: Vec<ContainerSummary>) -> HashMap<String, Vec<ContainerSummary>> {
    let mut map: HashMap<String, Vec<_>> = HashMap::new();
    for c in containers {
        if let Some(f) = label(&c, LABEL_FUNCTION) {
            map.entry(f.to_string()).or_default().push(c);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(replicas: u32) -> RunSpec {
        RunSpec {
            replicas,
            env: vec!["V=1".into()],
            memory_bytes: 128 << 20,
            nano_cpus: 1_000_000_000,
            pids: 256,
            max_inflight: 8,
            scale: None,
        }
    }

    fn route(image: &str, previous: Option<PreviousVersion>) -> FunctionRoute {
        FunctionRoute {
            name: "echo".into(),
            kind: FunctionKind::Http,
            upstreams: vec![],
            image: image.into(),
            deployed_at: "2026-01-01T00:00:00.000Z".into(),
            queue: None,
            run: Some(run(1)),
            power: Default::default(),
            discover: None,
            previous,
        }
    }

    #[test]
    fn a_deploy_keeps_what_it_replaces_and_a_redeploy_of_the_same_keeps_the_older() {
        assert_eq!(previous_for(None, "img:a", &run(1)), None);
        let current = route("img:a", None);
        let kept = previous_for(Some(&current), "img:b", &run(1)).unwrap();
        assert_eq!((kept.image.as_str(), kept.run.replicas), ("img:a", 1));
        // Settings alone changing is a new version too.
        let kept = previous_for(Some(&current), "img:a", &run(3)).unwrap();
        assert_eq!(kept.image, "img:a");
        // The same image and settings again: the version kept before stays.
        let older = PreviousVersion {
            image: "img:0".into(),
            deployed_at: "2025-12-31T00:00:00.000Z".into(),
            run: run(2),
        };
        let current = route("img:a", Some(older.clone()));
        assert_eq!(previous_for(Some(&current), "img:a", &run(1)), Some(older));
    }
}
