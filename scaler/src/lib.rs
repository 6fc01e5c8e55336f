//! The rfaas scaler (`rfa-scaler`).
//!
//! The only platform container that talks to the container engine, and the only one given its
//! socket. It decides and acts: it scales functions with load, pauses and stops idle ones, and
//! wakes them when the gateway holds a call for them. It acts only on containers carrying its
//! instance's labels (docs/RELIABILITY.md, "The scaler's trust boundary").
//!
//! - `POST /wake/<name>` (token): resume or start the function; answers once it is healthy.
//! - `POST /scale/<name>` (token, [`ScaleRequest`](rfa_wire::scale::ScaleRequest)): set replicas.
//! - `GET /healthz`, `GET /metrics`.
//!
//! Every [`TICK`] it reads the gateway's load and routes and applies [`policy::decide`] to each
//! function with a `scale` block (and wakes any paused function with async calls waiting).

pub mod act;
pub mod config;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod policy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use rfa_engine::FunctionEngine;
use tokio::net::TcpListener;

pub use config::Config;

use crate::act::Actor;
use crate::policy::{Decision, Memory};

/// How often the scaler looks at load.
pub const TICK: Duration = Duration::from_millis(500);

/// Builds the scaler's router.
pub fn router<E: FunctionEngine + 'static>(api: http::Api<E>) -> Router {
    let metrics = api.actor.metrics.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/wake/{name}", post(http::wake::<E>))
        .route("/scale/{name}", post(http::scale::<E>))
        .route("/logs/{name}", get(http::logs::<E>))
        .with_state(api)
}

/// Serves the scaler on `listener` and runs its loop until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let instance = rfa_engine::Instance::new(Some(config.instance.clone()))?;
    let docker = rfa_engine::Engine::connect().await?;
    let token = rfa_io::Token::new(&config.token, config.token_file.clone());
    let gateway = gateway::Gateway::new(config.gateway_url.clone(), token.clone())?;
    let swarm = config.swarm.then(|| docker.clone());
    let engine = rfa_engine::Bridge::new(docker, instance.clone(), rfa_engine::Reach::Alias)?;
    let mut actor = Actor::new(
        engine,
        gateway,
        metrics::Metrics::new()?,
        instance,
        config.platform_env.clone(),
    );
    if let Some(services) = swarm {
        actor = actor.on_swarm(services);
    }
    let actor = Arc::new(actor);
    token
        .reload_on_sighup()
        .context("cannot listen for SIGHUP")?;
    tracing::info!(
        addr = %listener.local_addr()?,
        instance = %config.instance,
        swarm = config.swarm,
        gateway = %config.gateway_url,
        "rfa-scaler listening"
    );
    let looping = tokio::spawn(watch(actor.clone()));
    let api = http::Api { actor, token };
    let served = axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await;
    looping.abort();
    served?;
    Ok(())
}

/// The loop: look at load every [`TICK`], act on what [`policy::decide`] says. An action runs
/// in its own task under the function's lock; a function busy with one is skipped this tick.
async fn watch<E: FunctionEngine + 'static>(actor: Arc<Actor<E>>) {
    let mut memory: HashMap<String, Memory> = HashMap::new();
    let mut complained = false;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (routes, loads) = match tokio::try_join!(actor.gateway.routes(), actor.gateway.load()) {
            Ok(both) => {
                if complained {
                    tracing::info!("the gateway answers again");
                    complained = false;
                }
                both
            }
            Err(e) => {
                if !complained {
                    tracing::warn!(error = %e, "cannot read load from the gateway; retrying");
                    complained = true;
                }
                continue;
            }
        };
        let loads: HashMap<String, rfa_wire::scale::FunctionLoad> =
            loads.into_iter().map(|l| (l.name.clone(), l)).collect();
        memory.retain(|name, _| routes.iter().any(|r| &r.name == name));
        let now = Instant::now();
        for route in routes {
            let load = loads.get(&route.name).cloned().unwrap_or_default();
            let cooldown = route
                .run
                .as_ref()
                .and_then(|r| r.scale)
                .map(|s| s.scale_in_delay())
                .unwrap_or_default();
            let state = memory.entry(route.name.clone()).or_default();
            let Some(decision) = policy::decide(&route, &load, state, now, cooldown) else {
                continue;
            };
            let Some(guard) = actor.try_lock(&route.name) else {
                continue;
            };
            let actor = actor.clone();
            let name = route.name.clone();
            tracing::info!(function = %name, decision = ?decision, demand = load.demand(), idle_ms = load.idle_ms, "deciding");
            tokio::spawn(async move {
                let result = match decision {
                    Decision::ScaleTo(n, reason) => {
                        actor.scale_to(guard, &name, n, reason).await.map(|_| ())
                    }
                    Decision::Pause => actor.pause(guard, &name).await,
                    Decision::Stop => actor.stop(guard, &name, policy::Reason::Idle).await,
                    Decision::Wake => {
                        drop(guard);
                        actor.wake(&name).await.map(|_| ())
                    }
                };
                if let Err(e) = result {
                    tracing::error!(function = %name, decision = ?decision, error = %e, "scaling action failed");
                }
            });
        }
    }
}
