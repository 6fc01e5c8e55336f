//! Running functions: their containers, health, and the blue/green switch of a redeploy.
//!
//! A deployment starts its replicas beside the running ones under fresh network aliases
//! (`rfa-fn-<name>-<deployment>-<k>`), waits until every one answers `/healthz`, points the
//! gateway's route at them, and only then stops the old replicas (which drain their in-flight
//! requests) and renames the new ones to the contract's names. A build, image or health failure
//! removes the new containers and leaves the old version serving.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rfa_wire::route::{FunctionKind, FunctionRoute, RunSpec};
use rfa_wire::{FUNCTION_PORT, env};

use crate::deploy_file::Entry;
use crate::docker::{ContainerSpec, Engine};
use crate::gateway::Gateway;
use crate::images::{AppImage, BaseImage};
use crate::instance::{
    Instance, LABEL_BASE, LABEL_DEPLOYMENT, LABEL_FUNCTION, LABEL_KIND, LABEL_SPEC, LABEL_UPSTREAM,
    Role,
};
use crate::platform;
use crate::progress::Progress;

/// How long a new replica may take to answer `/healthz`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a function container needs from the running platform.
pub struct Platform {
    pub engine: Engine,
    pub instance: Instance,
    pub gateway: Gateway,
    /// Platform-provided environment: NATS and store URLs, OTLP endpoint.
    platform_env: Vec<String>,
    pub base: BaseImage,
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
        let proxy = engine.inspect(&instance.proxy()).await?;
        let config = proxy.and_then(|c| c.config);
        let proxy_env = config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        let base_label = config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(LABEL_BASE).cloned());
        let keep = [env::NATS_URL, env::STORE_URL, "OTEL_EXPORTER_OTLP_ENDPOINT"];
        let platform_env = proxy_env
            .into_iter()
            .filter(|kv| keep.iter().any(|k| kv.starts_with(&format!("{k}="))))
            .collect();
        Ok(Platform {
            gateway: Gateway::new(url, token, platform::instance_flag(instance))?,
            base: BaseImage::of_platform(base_label.as_deref())?,
            engine,
            instance: instance.clone(),
            platform_env,
        })
    }

    /// The function's replicas as the engine has them.
    pub async fn replicas(
        &self,
        name: &str,
    ) -> anyhow::Result<Vec<bollard::models::ContainerSummary>> {
        let mut filters = self.instance.filters(Some(Role::Function));
        if let Some(labels) = filters.get_mut("label") {
            labels.push(format!("{LABEL_FUNCTION}={name}"));
        }
        self.engine.list_containers(filters).await
    }

    /// All function containers of the instance.
    pub async fn all_replicas(&self) -> anyhow::Result<Vec<bollard::models::ContainerSummary>> {
        self.engine
            .list_containers(self.instance.filters(Some(Role::Function)))
            .await
    }
}

/// How a deploy of one function ended.
pub enum Outcome {
    Deployed,
    Unchanged,
}

fn label<'a>(c: &'a bollard::models::ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

pub fn container_name(c: &bollard::models::ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

fn running(c: &bollard::models::ContainerSummary) -> bool {
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
    let desired = Desired {
        name: entry.name.clone(),
        kind: entry.kind,
        image: image.tag.clone(),
        run: RunSpec {
            replicas: entry.replicas,
            env: entry.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            memory_bytes: entry.memory_bytes,
            nano_cpus: entry.nano_cpus,
            pids: i64::from(entry.pids),
            max_inflight: entry.max_inflight,
            scale: entry.scale,
        },
        deployed_at: rfa_wire::time::now(),
    };
    roll_out(p, &desired, progress).await
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
pub fn route_served(route: &FunctionRoute, replicas: &[bollard::models::ContainerSummary]) -> bool {
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
    let run = route.run.clone().ok_or(RestoreError::NoRunSpec)?;
    match p.engine.image_exists(&route.image).await {
        Ok(true) => {}
        Ok(false) => return Err(RestoreError::ImageGone(route.image.clone())),
        Err(e) => return Err(RestoreError::Failed(e)),
    }
    let desired = Desired {
        name: route.name.clone(),
        kind: route.kind,
        image: route.image.clone(),
        run,
        deployed_at: route.deployed_at.clone(),
    };
    roll_out(p, &desired, progress)
        .await
        .map_err(RestoreError::Failed)
}

/// Makes the function's replicas match `d`: leaves them if they already do, else starts new
/// ones beside the old, waits for their health, switches the route, then drains the old.
async fn roll_out(p: &Platform, d: &Desired, progress: &Progress) -> anyhow::Result<Outcome> {
    let mut env_vars = vec![
        format!("{}={}", env::FUNCTION_NAME, d.name),
        format!("{}={}", env::FUNCTION_KIND, d.kind),
        format!("{}={FUNCTION_PORT}", env::PORT),
        format!("{}={}", env::MAX_INFLIGHT, d.run.max_inflight),
    ];
    env_vars.extend(p.platform_env.iter().cloned());
    env_vars.extend(d.run.env.iter().cloned());

    let template = ContainerSpec {
        image: d.image.clone(),
        env: env_vars,
        network: p.instance.network(),
        memory_bytes: Some(d.run.memory_bytes),
        nano_cpus: Some(d.run.nano_cpus),
        pids_limit: Some(d.run.pids),
        host_gateway: true,
        hardened: true,
        ..Default::default()
    };
    let spec_hash = format!(
        "{}-{}-{}",
        platform::spec_hash(&template),
        d.run.replicas,
        d.kind
    );

    let old = p.replicas(&d.name).await?;
    let unchanged = old.len() == d.run.replicas as usize
        && old
            .iter()
            .all(|c| running(c) && label(c, LABEL_SPEC) == Some(spec_hash.as_str()));
    if unchanged {
        let upstreams: Vec<String> = old
            .iter()
            .filter_map(|c| label(c, LABEL_UPSTREAM).map(String::from))
            .collect();
        if upstreams.len() == old.len() {
            register(p, d, upstreams).await?;
            return Ok(Outcome::Unchanged);
        }
    }

    let bits: u32 = rand::random();
    let deployment = format!("{bits:08x}");
    let mut new_names = Vec::new();
    let mut upstreams = Vec::new();
    for k in 0..d.run.replicas as usize {
        let alias = format!("rfa-fn-{}-{deployment}-{k}", d.name);
        let upstream = format!("{alias}:{FUNCTION_PORT}");
        let mut labels = p.instance.labels(Role::Function);
        labels.insert(LABEL_FUNCTION.into(), d.name.clone());
        labels.insert(LABEL_KIND.into(), d.kind.to_string());
        labels.insert(LABEL_SPEC.into(), spec_hash.clone());
        labels.insert(LABEL_DEPLOYMENT.into(), deployment.clone());
        labels.insert(LABEL_UPSTREAM.into(), upstream.clone());
        let spec = ContainerSpec {
            name: format!("{}-{deployment}", p.instance.function_container(&d.name, k)),
            aliases: vec![alias],
            labels,
            ..template.clone()
        };
        progress.step(&format!("starting {}", spec.name));
        let started = p.engine.run(&spec).await;
        new_names.push(spec.name.clone());
        if let Err(e) = started {
            discard(p, &new_names).await;
            return Err(e);
        }
        upstreams.push(upstream);
    }
    let waits = new_names.iter().map(|n| wait_healthy(p, n));
    let results = futures_util::future::join_all(waits).await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        discard(p, &new_names).await;
        let previous = if old.is_empty() {
            "nothing was deployed".to_string()
        } else {
            "the previous version keeps serving".to_string()
        };
        bail!("{e}\n{previous}");
    }

    if let Err(e) = register(p, d, upstreams).await {
        discard(p, &new_names).await;
        return Err(e);
    }

    // The gateway sends nothing to the old replicas any more: let them drain and go.
    let old_names: Vec<String> = old.iter().map(container_name).collect();
    let stops = old_names
        .iter()
        .map(|n| p.engine.stop_and_remove(n, Duration::from_secs(30)));
    for r in futures_util::future::join_all(stops).await {
        r?;
    }
    for (k, name) in new_names.iter().enumerate() {
        p.engine
            .rename(name, &p.instance.function_container(&d.name, k))
            .await?;
    }
    Ok(Outcome::Deployed)
}

async fn register(p: &Platform, d: &Desired, upstreams: Vec<String>) -> anyhow::Result<()> {
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
        })
        .await
}

async fn discard(p: &Platform, names: &[String]) {
    for n in names {
        if let Err(e) = p.engine.remove_container(n).await {
            eprintln!("warning: could not remove {n}: {e:#}");
        }
    }
}

/// Waits for a new replica's `/healthz`, failing fast (with its logs) if it exits.
async fn wait_healthy(p: &Platform, name: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    let mut last = "no answer".to_string();
    let mut polls = 0u32;
    while Instant::now() < deadline {
        let info = p
            .engine
            .inspect(name)
            .await?
            .context("the new container vanished")?;
        let state = info.state.clone().unwrap_or_default();
        let restarts = info.restart_count.unwrap_or(0);
        if state.running != Some(true) || restarts > 0 {
            let logs = p.engine.tail_logs(name, 20).await;
            bail!(
                "the new container {name} exited (code {}) before becoming healthy; its last log lines:\n{logs}",
                state.exit_code.unwrap_or(-1)
            );
        }
        if let Some(ip) = crate::docker::ip_of(info, &p.instance.network()) {
            let url = format!("http://{ip}:{FUNCTION_PORT}/healthz");
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("/healthz answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        // A function binary starts in milliseconds: poll often at first, then back off.
        polls += 1;
        let pause = if polls < 100 { 5 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let logs = p.engine.tail_logs(name, 20).await;
    bail!(
        "the new container {name} did not become healthy within {} s ({last}); its last log lines:\n{logs}",
        HEALTH_TIMEOUT.as_secs()
    )
}

/// Stops a function: its route first (no new calls), then its containers.
pub async fn remove(p: &Platform, name: &str) -> anyhow::Result<bool> {
    let had_route = p.gateway.delete(name).await?;
    let replicas = p.replicas(name).await?;
    let names: Vec<String> = replicas.iter().map(container_name).collect();
    let stops = names
        .iter()
        .map(|n| p.engine.stop_and_remove(n, Duration::from_secs(30)));
    for r in futures_util::future::join_all(stops).await {
        r?;
    }
    Ok(had_route || !replicas.is_empty())
}

/// The kind recorded on a function's containers.
pub fn kind_of(c: &bollard::models::ContainerSummary) -> FunctionKind {
    match label(c, LABEL_KIND) {
        Some("async") => FunctionKind::Async,
        Some("main") => FunctionKind::Main,
        _ => FunctionKind::Http,
    }
}

/// Groups containers by function name.
pub fn by_function(
    containers: Vec<bollard::models::ContainerSummary>,
) -> HashMap<String, Vec<bollard::models::ContainerSummary>> {
    let mut map: HashMap<String, Vec<_>> = HashMap::new();
    for c in containers {
        if let Some(f) = label(&c, LABEL_FUNCTION) {
            map.entry(f.to_string()).or_default().push(c);
        }
    }
    map
}
