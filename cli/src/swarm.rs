//! An instance on Docker Swarm (`startFaas --swarm`; design and checked facts in
//! docs/SWARM.md): the platform's containers as one-replica services pinned to the platform node,
//! functions as `dnsrr` services that roll start-first and roll back on failed health checks,
//! the gateway finding their tasks by DNS (`tasks.<service>`), and images copied to each node's
//! engine. Everything here goes through `rfa_engine` (the one seam to Docker).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rfa_engine::{
    ContainerSpec, Engine, FunctionTemplate, NodeInfo, SecretFile, ServicePut, ServiceSettings,
    SwarmRole, TaskInfo, function_service, images_label, service_spec,
};
use rfa_wire::{PROXY_PORT, env};
use sha2::{Digest, Sha256};

use crate::instance::{Instance, LABEL_SPEC, Role};
use crate::platform::{self, PlatformImages, Settings};
use crate::progress::Progress;

/// The overlay network's MTU option: the interfaces get 50 bytes less (the VXLAN header), and
/// the packets on the wire fit a 1400-byte link (docs/SWARM.md).
pub const OVERLAY_MTU: u32 = 1350;
/// The admin token's file name in `/run/secrets/` of the gateway's task.
const TOKEN_SECRET_FILE: &str = "rfa-token";
/// How long the platform's services and a function's roll-out may take.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(90);

/// The node label that pins the instance's platform services (and their volumes) to the node
/// `startFaas` ran against.
pub fn platform_label(instance: &Instance) -> String {
    format!("io.rfaas.platform.{}", instance.label())
}

/// The engine the CLI talks to must be a swarm manager; its node id. Otherwise an error that
/// says what to do.
pub async fn manager_node(engine: &Engine) -> anyhow::Result<String> {
    let at = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the local socket".into());
    match engine.swarm_role().await? {
        SwarmRole::Manager { node_id } => Ok(node_id),
        SwarmRole::Worker { .. } => bail!(
            "the Docker engine at {at} is a swarm worker, and services can only be made through a \
             manager: point DOCKER_HOST at a manager (or run proxyCli on one) and run `proxyCli \
             startFaas --swarm` again"
        ),
        SwarmRole::Outside { state } => bail!(
            "--swarm needs the Docker engine at {at} to be a swarm manager, and its swarm state is \
             '{state}': run `docker swarm init` on it first (or `docker swarm join` it to a swarm \
             as a manager), or start without --swarm. Note: switching an engine into swarm mode \
             while a bridge-mode rfaas runs on it can break that platform's DNS; `proxyCli \
             startFaas` repairs it"
        ),
    }
}

/// Whether `instance` runs on Swarm on this engine: its gateway is a service here, not a
/// container.
pub async fn is_swarm(engine: &Engine, instance: &Instance) -> anyhow::Result<bool> {
    if engine.inspect(&instance.proxy()).await?.is_some() {
        return Ok(false);
    }
    if !matches!(engine.swarm_role().await?, SwarmRole::Manager { .. }) {
        return Ok(false);
    }
    Ok(engine.service(&instance.proxy()).await?.is_some())
}

/// The host that reaches a port published by the engine the CLI talks to: `DOCKER_HOST`'s host
/// when it is `tcp://`, else this machine's loopback (a host-mode port binds every address of
/// its node).
pub fn engine_host() -> String {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    host.strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .and_then(|rest| rest.rsplit_once(':').map(|(h, _)| h.to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// The gateway's URL: the platform node's address and the port the gateway's service publishes.
pub async fn gateway_url(engine: &Engine, instance: &Instance) -> anyhow::Result<Option<String>> {
    let Some(service) = engine.service(&instance.proxy()).await? else {
        return Ok(None);
    };
    let port = service
        .spec
        .and_then(|s| s.endpoint_spec)
        .and_then(|e| e.ports)
        .and_then(|p| {
            p.into_iter()
                .find(|p| p.target_port == Some(PROXY_PORT.into()))
        })
        .and_then(|p| p.published_port)
        .with_context(|| {
            format!(
                "service {} publishes no port: run `proxyCli startFaas{}` to repair it",
                instance.proxy(),
                platform::instance_flag(instance)
            )
        })?;
    Ok(Some(format!(
        "http://{}:{port}",
        platform::url_host(&engine_host())
    )))
}

/// The gateway service's environment and container labels (what functions get from the
/// platform, and the base image it was started on).
pub async fn proxy_config(
    engine: &Engine,
    instance: &Instance,
) -> anyhow::Result<Option<(Vec<String>, HashMap<String, String>)>> {
    let Some(service) = engine.service(&instance.proxy()).await? else {
        return Ok(None);
    };
    let c = service
        .spec
        .and_then(|s| s.task_template)
        .and_then(|t| t.container_spec)
        .unwrap_or_default();
    Ok(Some((
        c.env.unwrap_or_default(),
        c.labels.unwrap_or_default(),
    )))
}

fn short_hash(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Brings the instance's platform up as services on the swarm the engine manages: the overlay,
/// the volumes and the token secret, then NATS, the store and the gateway, each running before
/// the next. Returns what it changed.
pub async fn start_platform(
    engine: &Engine,
    instance: &Instance,
    settings: &Settings,
    images: &PlatformImages,
    token: &str,
    scaler_socket: Option<&rfa_engine::EngineSocket>,
    progress: &Progress,
) -> anyhow::Result<Vec<String>> {
    let node = manager_node(engine).await?;
    if settings.kept.port == 0 {
        bail!(
            "--port 0 cannot be used with --swarm: a service's host-mode port must be fixed. Give \
             the gateway a port with --port <n>"
        );
    }
    let mut changed = Vec::new();
    engine
        .label_node(&node, &platform_label(instance), "true")
        .await?;
    engine
        .label_node(&node, &images_label(instance), "true")
        .await?;
    let members = engine.nodes().await?;
    for url in &settings.kept.node_engines {
        let other = Engine::connect_to(url)
            .await
            .with_context(|| format!("--node-engine {url}"))?;
        let id = match other.swarm_role().await? {
            SwarmRole::Worker { node_id } | SwarmRole::Manager { node_id } => node_id,
            SwarmRole::Outside { state } => bail!(
                "--node-engine {url}: that engine is not in a swarm (state '{state}'): join it to \
                 this one first (`docker swarm join-token worker` on the manager says how)"
            ),
        };
        let Some(member) = members.iter().find(|n| n.id == id) else {
            bail!(
                "--node-engine {url}: that engine is in another swarm than the manager's (node \
                 {id} is not among its nodes)"
            );
        };
        engine
            .label_node(&id, &images_label(instance), "true")
            .await?;
        tracing::debug!(node = member.hostname, "gets function images");
    }
    if engine
        .ensure_overlay(
            &instance.network(),
            instance.labels(Role::Proxy),
            OVERLAY_MTU,
        )
        .await?
    {
        changed.push(format!("created overlay network {}", instance.network()));
    }
    for (volume, role) in [
        (instance.store_volume(), Role::Store),
        (instance.nats_volume(), Role::Nats),
        (instance.proxy_volume(), Role::Proxy),
    ] {
        if engine.ensure_volume(&volume, instance.labels(role)).await? {
            changed.push(format!("created volume {volume}"));
        }
    }
    let secret_labels = instance.labels(Role::Proxy);
    let secret_name = format!(
        "{}-{}",
        instance.object("rfa-token"),
        short_hash(token.as_bytes())
    );
    let secret = SecretFile {
        id: engine
            .ensure_secret(&secret_name, token.as_bytes(), secret_labels.clone())
            .await?,
        name: secret_name.clone(),
        file: TOKEN_SECRET_FILE.to_string(),
    };

    // The scaler gets the manager's engine socket (pinned there: the platform node is the
    // manager startFaas ran against); without one the platform runs without it and `scale`
    // sets replica counts from the CLI.
    let specs = platform::specs(instance, settings, images, token, scaler_socket);
    if scaler_socket.is_none() {
        engine.remove_service(&instance.scaler()).await?;
    }
    let pinned = vec![format!("node.labels.{}==true", platform_label(instance))];
    let mut services = Vec::new();
    for (role, spec) in specs {
        let mut spec: ContainerSpec = spec;
        let mut s = ServiceSettings {
            replicas: 1,
            constraints: pinned.clone(),
            labels: spec.labels.clone(),
            ..Default::default()
        };
        if role == Role::Scaler {
            spec.env.push(format!("{}=swarm", env::ENGINE_MODE));
            s.constraints.push("node.role==manager".to_string());
        }
        if role == Role::Proxy || role == Role::Scaler {
            let file_env = format!("{}=", env::TOKEN_FILE);
            spec.env.retain(|kv| !kv.starts_with(&file_env));
            spec.env.push(format!(
                "{}=/run/secrets/{TOKEN_SECRET_FILE}",
                env::TOKEN_FILE
            ));
            spec.files.clear();
            s.secrets = vec![secret.clone()];
            if role == Role::Proxy {
                s.publish = Some((settings.kept.port, PROXY_PORT));
            }
            // A new token is a new secret: the gateway's task is replaced to read it.
            let with_token = format!(
                "{}-{}",
                s.labels.get(LABEL_SPEC).cloned().unwrap_or_default(),
                short_hash(secret_name.as_bytes())
            );
            s.labels.insert(LABEL_SPEC.to_string(), with_token);
        }
        let name = spec.name.clone();
        let service = service_spec(&spec, &s);
        let put = engine.put_service(service.clone()).await?;
        services.push((role, service));
        match put {
            ServicePut::Created => changed.push(format!("created service {name}")),
            ServicePut::Updated { .. } | ServicePut::Scaled => {
                changed.push(format!("updated service {name}"))
            }
            ServicePut::Unchanged => {}
        }
        if put != ServicePut::Unchanged {
            progress.step(&format!("waiting for {name} to run"));
        }
        engine
            .wait_service(&name, 1, &put, SERVICE_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "rfaas is only partly up on the swarm. Fix the cause and run `proxyCli \
                     startFaas{}` again, or remove it with `proxyCli stopFaas{}`",
                    platform::instance_flag(instance),
                    platform::instance_flag(instance)
                )
            })?;
    }
    let url = gateway_url(engine, instance)
        .await?
        .context("the gateway's service is gone")?;
    wait_gateway(&url, token).await?;
    if let Some(repair) = crate::dns::check_and_repair(
        engine,
        instance,
        &url,
        token,
        crate::dns::Mode::Swarm {
            services: &services,
        },
        progress,
    )
    .await?
    {
        changed.push(repair);
    }
    // Secrets of earlier tokens: the engine refuses to remove one still in use.
    for (name, id) in engine.secrets(&secret_labels).await? {
        if name != secret_name && name.starts_with(&instance.object("rfa-token")) {
            engine.remove_secret(&id).await.ok();
        }
    }
    Ok(changed)
}

/// Waits until the gateway answers `/healthz` and its admin API takes `token`.
async fn wait_gateway(url: &str, token: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    let mut last = "no answer yet".to_string();
    while Instant::now() < deadline {
        match client
            .get(format!("{url}/system/functions"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("/system/functions answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "the gateway at {url} did not answer within {} s ({last})",
        SERVICE_TIMEOUT.as_secs()
    )
}

/// Makes function `t`'s service run its image with `replicas` tasks: created, or updated start-
/// first (each new task healthy before an old one goes; a version that never gets healthy is
/// rolled back and the old one keeps serving). Returns whether anything changed.
pub async fn roll_out(
    engine: &Engine,
    t: &FunctionTemplate,
    replicas: u64,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let name = function_service(&t.instance, &t.name);
    let put = engine.put_service(t.service(replicas)).await?;
    match put {
        ServicePut::Unchanged => {}
        ServicePut::Created => progress.step(&format!("starting service {name}")),
        ServicePut::Updated { .. } => progress.step(&format!("rolling service {name} start-first")),
        ServicePut::Scaled => progress.step(&format!("scaling service {name} to {replicas}")),
    }
    match engine
        .wait_service(&name, replicas, &put, SERVICE_TIMEOUT)
        .await
    {
        Ok(()) => Ok(put != ServicePut::Unchanged),
        Err(e) if put == ServicePut::Created => {
            // Nothing served before: leave nothing half-made behind.
            engine.remove_service(&name).await.ok();
            bail!("{e}\nnothing was deployed")
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes function `name`'s service; whether there was one.
pub async fn remove(engine: &Engine, instance: &Instance, name: &str) -> anyhow::Result<bool> {
    Ok(engine
        .remove_service(&function_service(instance, name))
        .await?)
}

/// The running tasks of function `name`, with the hostname of the node each runs on.
pub async fn tasks(
    engine: &Engine,
    instance: &Instance,
    name: &str,
    nodes: &[NodeInfo],
) -> anyhow::Result<Vec<(TaskInfo, String)>> {
    let tasks = engine
        .service_tasks(&function_service(instance, name))
        .await?;
    Ok(tasks
        .into_iter()
        .filter(|t| t.desired == "running")
        .map(|t| {
            let node = nodes
                .iter()
                .find(|n| n.id == t.node_id)
                .map(|n| n.hostname.clone())
                .unwrap_or_else(|| t.node_id.clone());
            (t, node)
        })
        .collect())
}

/// Copies `image` to every node engine in `urls` that lacks it; the time it took per node.
pub async fn deliver(
    engine: &Engine,
    image: &str,
    urls: &[String],
    progress: &Progress,
) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut out = Vec::new();
    for url in urls {
        let node = Engine::connect_to(url)
            .await
            .with_context(|| format!("cannot deliver image {image} to the node at {url}"))?;
        if node.image_exists(image).await? {
            continue;
        }
        progress.step(&format!("copying {image} to {url}"));
        let t = Instant::now();
        engine
            .copy_image(image, &node)
            .await
            .with_context(|| format!("cannot deliver image {image} to the node at {url}"))?;
        out.push((url.clone(), t.elapsed()));
    }
    Ok(out)
}
