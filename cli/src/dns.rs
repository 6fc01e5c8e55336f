//! DNS repair (`startFaas`, both modes; docs/RELIABILITY.md, "DNS repair"). Switching the
//! engine into or out of swarm mode while a bridge-mode platform runs leaves Docker's embedded
//! DNS answering "no such name" for every container of the platform's network, until the
//! network is made again: the gateway then cannot reach the store, NATS or any function. So
//! `startFaas` asks the gateway whether the platform's names resolve where it runs
//! (`GET /system/health`) and, when one does not, makes the network again with the same
//! containers (bridge) or replaces the tasks of the services whose names are lost (Swarm), then
//! asks again.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rfa_engine::{Engine, ServiceSpec};
use rfa_wire::health::{DnsState, NameRole, PlatformHealth};

use crate::instance::{Instance, Role};
use crate::platform;
use crate::progress::Progress;

/// How long the gateway may take to answer at all (it was just checked healthy).
const ASK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the names may take to resolve after a repair.
const REPAIRED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a Swarm service's new task may take.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(90);

/// What can be done about lost names.
pub enum Mode<'a> {
    /// Make the instance's bridge network again.
    Bridge,
    /// Replace the tasks of the platform's services, each sent whole as made now.
    Swarm { services: &'a [(Role, ServiceSpec)] },
}

/// Checks that the platform's names resolve on its network and repairs it when they do not.
/// Returns what it did, for startFaas's list of changes; `None` when nothing was needed (or
/// the gateway is too old to say).
pub async fn check_and_repair(
    engine: &Engine,
    instance: &Instance,
    url: &str,
    token: &str,
    mode: Mode<'_>,
    progress: &Progress,
) -> anyhow::Result<Option<String>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let ask = |timeout| ask(&client, url, token, timeout);
    let Some(mut health) = ask(ASK_TIMEOUT).await? else {
        return Ok(None);
    };
    if health.dns == DnsState::Broken {
        // A name can be missing for a moment while a service's task starts: ask once more.
        tokio::time::sleep(Duration::from_secs(1)).await;
        health = ask(ASK_TIMEOUT).await?.unwrap_or(health);
    }
    if health.dns == DnsState::Ok {
        return Ok(None);
    }
    let lost = lost_names(&health);
    let network = instance.network();
    let what = match mode {
        Mode::Bridge => {
            progress.step(&format!(
                "the platform's names do not resolve on network {network} ({lost}): making the \
                 network again"
            ));
            let moved = engine
                .recreate_network(&network, instance.filters(None))
                .await
                .with_context(|| {
                    format!(
                        "repairing network {network} failed part way; run `proxyCli startFaas{}` \
                         again to finish it",
                        platform::instance_flag(instance)
                    )
                })?;
            // Everything that ran was restarted: healthy again before anything goes on.
            for (role, name) in instance.platform_containers() {
                if moved.contains(&name) {
                    platform::wait_healthy(engine, instance, role, &name, SERVICE_TIMEOUT).await?;
                }
            }
            format!(
                "made network {network} again ({} containers moved and restarted): its DNS did \
                 not resolve {lost}",
                moved.len()
            )
        }
        Mode::Swarm { services } => {
            let mut replaced = Vec::new();
            for name in health.unresolved_platform_names() {
                let role = match name.role {
                    NameRole::Store => Role::Store,
                    NameRole::Nats => Role::Nats,
                    NameRole::Scaler | NameRole::Function => continue,
                };
                let Some((_, spec)) = services.iter().find(|(r, _)| *r == role) else {
                    continue;
                };
                let service = spec.name.clone().unwrap_or_default();
                if replaced.contains(&service) {
                    continue;
                }
                progress.step(&format!(
                    "{} does not resolve on network {network}: replacing the task of {service}",
                    name.name
                ));
                let put = engine.force_update_service(spec.clone()).await?;
                engine
                    .wait_service(&service, 1, &put, SERVICE_TIMEOUT)
                    .await?;
                replaced.push(service);
            }
            format!(
                "replaced the tasks of {}: their names did not resolve on network {network}",
                replaced.join(", ")
            )
        }
    };
    let deadline = Instant::now() + REPAIRED_TIMEOUT;
    loop {
        let health = ask(ASK_TIMEOUT)
            .await?
            .context("the gateway stopped answering /system/health")?;
        if health.dns == DnsState::Ok {
            return Ok(Some(what));
        }
        if Instant::now() > deadline {
            bail!(
                "the platform's names still do not resolve on network {network} after it was \
                 repaired ({}). Restart the Docker engine (e.g. `sudo systemctl restart docker`) \
                 and run `proxyCli startFaas{}` again; stored data is kept in the volumes",
                lost_names(&health),
                platform::instance_flag(instance)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `name (error), …` of the platform names that do not resolve.
fn lost_names(health: &PlatformHealth) -> String {
    health
        .unresolved_platform_names()
        .map(|n| match &n.error {
            Some(e) => format!("{}: {e}", n.name),
            None => n.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The gateway's `GET /system/health`, retried until `timeout` while it cannot be reached;
/// `None` when the gateway does not know the route (one older than DNS repair).
async fn ask(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<Option<PlatformHealth>> {
    let deadline = Instant::now() + timeout;
    let target = format!("{url}{}", rfa_wire::health::PATH);
    loop {
        let last = match client.get(&target).bearer_auth(token).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                tracing::debug!("the gateway has no {}", rfa_wire::health::PATH);
                return Ok(None);
            }
            Ok(r) if r.status().is_success() => {
                return r
                    .json()
                    .await
                    .map(Some)
                    .with_context(|| format!("the gateway's answer to {target}"));
            }
            Ok(r) => format!("{target} answered {}", r.status()),
            Err(e) => format!("{target}: {e}"),
        };
        if Instant::now() > deadline {
            bail!("cannot ask the gateway whether the platform's names resolve ({last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
