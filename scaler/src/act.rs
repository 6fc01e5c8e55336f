//! The scaler's actions on one function: wake, pause, stop, scale to a count. Each runs under
//! the function's own lock (one action at a time per function; the loop skips a busy one) and
//! keeps the order that cuts no call and sends none into a frozen container:
//!
//! - pause / stop: the route says `paused` / `stopped` first (the gateway starts holding calls),
//!   then the replicas are paused / stopped; a call that slipped in between wakes it again.
//! - wake: resume (paused) or start (stopped) every replica, wait for `/healthz`, then the route
//!   says `running` (the gateway forwards the calls it held).
//! - scale out: new replicas, healthy, then the route names them.
//! - scale in: the route drops them first, then they drain (SIGTERM) and go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rfa_engine::{FunctionEngine, FunctionTemplate, Instance, Replica, ReplicaState};
use rfa_wire::route::FunctionRoute;
use rfa_wire::scale::{MAX_REPLICAS, Power, WakeReport};

use crate::gateway::{Gateway, GatewayError};
use crate::metrics::{Direction, Metrics};
use crate::policy::Reason;

/// How long a new, resumed or started replica may take to answer `/healthz`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica leaving gets to finish its calls (SIGTERM, then SIGKILL).
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How long after a route stops naming a replica before it is told to drain: calls the gateway
/// picked it for just before have connected by then.
const ROUTE_SETTLE: Duration = Duration::from_millis(500);

/// Why an action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("no function named '{0}' is deployed")]
    NotDeployed(String),
    #[error("{0}")]
    Gateway(#[from] GatewayError),
    #[error("the scaler cannot {0} on Docker Swarm yet")]
    NotOnSwarm(&'static str),
    #[error("the engine: {0}")]
    Engine(#[from] rfa_engine::EngineError),
    #[error(
        "function '{function}' has no replicas to {what}, and no record of how to run them (deployed by an older rfaas): deploy it again"
    )]
    NoRunSpec {
        function: String,
        what: &'static str,
    },
    #[error("{0} replicas is more than the {MAX_REPLICAS} a function may have")]
    TooMany(u32),
    #[error(
        "function '{function}' was redeployed while the scaler acted on it; nothing was changed"
    )]
    Redeployed { function: String },
}

/// Everything an action needs.
pub struct Actor<E> {
    pub engine: E,
    pub gateway: Gateway,
    pub metrics: Metrics,
    pub instance: Instance,
    /// What every function container gets from the platform (NATS, store, OTLP).
    pub platform_env: Vec<String>,
    /// On Swarm: the engine (a manager) whose services run the functions; `engine` is then
    /// not used. See [`Actor::on_swarm`].
    swarm: Option<rfa_engine::Engine>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

type Guard = tokio::sync::OwnedMutexGuard<()>;

impl<E: FunctionEngine> Actor<E> {
    pub fn new(
        engine: E,
        gateway: Gateway,
        metrics: Metrics,
        instance: Instance,
        platform_env: Vec<String>,
    ) -> Actor<E> {
        Actor {
            engine,
            gateway,
            metrics,
            instance,
            platform_env,
            swarm: None,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Acts on Swarm services instead of containers: a function's replicas are its service's
    /// tasks, `scale_to` sets the service's replica count (the service spec made again from the
    /// route, so no task is replaced), and an idle pause stops it (replicas 0: Swarm cannot
    /// pause a task). The gateway finds the tasks by DNS.
    pub fn on_swarm(mut self, engine: rfa_engine::Engine) -> Actor<E> {
        self.swarm = Some(engine);
        self
    }

    /// The last `tail` log lines of each replica of `name`, oldest first. Not on Swarm, where
    /// the tasks run on other nodes' engines ([`ActError::NotOnSwarm`]).
    pub async fn recent_logs(
        &self,
        name: &str,
        tail: usize,
    ) -> Result<Vec<rfa_wire::dashboard::LogLine>, ActError> {
        if self.swarm.is_some() {
            return Err(ActError::NotOnSwarm(
                "read a function's logs (use `docker service logs` on a manager)",
            ));
        }
        Ok(self.engine.recent_logs(name, tail).await?)
    }

    /// On Swarm: runs `replicas` tasks of the route's function and waits until they run. A
    /// service whose spec is no longer the route's (a deploy is rolling it) is left alone.
    async fn run_service(
        &self,
        services: &rfa_engine::Engine,
        route: &FunctionRoute,
        replicas: u32,
        what: &'static str,
    ) -> Result<(), ActError> {
        let template = self.template(route, what)?;
        let name = rfa_engine::function_service(&self.instance, &route.name);
        let labels = services
            .service(&name)
            .await?
            .and_then(|s| s.spec)
            .and_then(|s| s.labels);
        // The trust boundary holds on Swarm too: a service of that name that is not this
        // instance's function (labels) is refused, nothing done.
        if let Some(labels) = &labels
            && let Err(why) = rfa_engine::check_ours(Some(labels), self.instance.label())
        {
            return Err(ActError::Engine(rfa_engine::EngineError::NotOurs {
                container: name,
                instance: self.instance.label().to_string(),
                why,
            }));
        }
        let current = labels.and_then(|l| l.get(rfa_engine::instance::LABEL_SPEC).cloned());
        if current.is_some_and(|h| h != template.spec_hash()) {
            return Err(ActError::Redeployed {
                function: route.name.clone(),
            });
        }
        let put = services
            .put_service(template.service(u64::from(replicas)))
            .await?;
        if let Err(e) = services
            .wait_service(&name, u64::from(replicas), &put, HEALTH_TIMEOUT)
            .await
        {
            self.metrics.failure(&route.name, what);
            return Err(e.into());
        }
        if replicas > 0 {
            // A task is in DNS ~50 ms after it is healthy: the gateway finds it by that name,
            // so the route may say "running" only once the name answers.
            let discover = rfa_engine::discover_name(&self.instance, &route.name);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if tokio::net::lookup_host(discover.as_str())
                    .await
                    .is_ok_and(|mut a| a.next().is_some())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Ok(())
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Waits for the function's lock.
    pub async fn lock(&self, name: &str) -> Guard {
        self.lock_of(name).lock_owned().await
    }

    /// The function's lock if no action holds it now.
    pub fn try_lock(&self, name: &str) -> Option<Guard> {
        self.lock_of(name).try_lock_owned().ok()
    }

    async fn route(&self, name: &str) -> Result<FunctionRoute, ActError> {
        self.gateway
            .route(name)
            .await?
            .ok_or_else(|| ActError::NotDeployed(name.to_string()))
    }

    /// The function's replicas the route names, as the engine has them.
    async fn routed(&self, route: &FunctionRoute) -> Result<Vec<Replica>, ActError> {
        let all = self.engine.list(Some(&route.name)).await?;
        Ok(all
            .into_iter()
            .filter(|r| route.upstreams.contains(&r.upstream))
            .collect())
    }

    fn template(
        &self,
        route: &FunctionRoute,
        what: &'static str,
    ) -> Result<FunctionTemplate, ActError> {
        let run = route.run.clone().ok_or_else(|| ActError::NoRunSpec {
            function: route.name.clone(),
            what,
        })?;
        Ok(FunctionTemplate {
            instance: self.instance.clone(),
            name: route.name.clone(),
            kind: route.kind,
            image: route.image.clone(),
            run,
            platform_env: self.platform_env.clone(),
        })
    }

    /// Resumes or starts a paused or stopped function; returns once its replicas answer
    /// `/healthz` and the gateway knows.
    pub async fn wake(&self, name: &str) -> Result<WakeReport, ActError> {
        let _guard = self.lock(name).await;
        let route = self.route(name).await?;
        self.wake_locked(route).await
    }

    async fn wake_locked(&self, mut route: FunctionRoute) -> Result<WakeReport, ActError> {
        let was = route.power;
        if was == Power::Running {
            return Ok(WakeReport { was, millis: 0 });
        }
        let started = Instant::now();
        if let Some(services) = &self.swarm {
            let n = route.run.as_ref().map_or(1, |r| r.replicas.max(1));
            self.run_service(services, &route, n, "wake").await?;
            route.power = Power::Running;
            // Found again by DNS: the gateway looks the name up when the route is put.
            route.upstreams.clear();
            self.gateway.put(&route).await?;
            let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.metrics
                .event(&route.name, Direction::Wake, Reason::Demand);
            tracing::info!(function = %route.name, was = %was, millis, "woke (service)");
            return Ok(WakeReport { was, millis });
        }
        let mut replicas = self.routed(&route).await?;
        if replicas.is_empty() {
            // Removed behind rfaas's back (or never kept): run them anew from the record.
            let template = self.template(&route, "wake")?;
            let n = route.run.as_ref().map_or(1, |r| r.replicas.max(1));
            replicas = self.create(&template, &route, n as usize).await?;
            route.upstreams = replicas.iter().map(|r| r.upstream.clone()).collect();
        } else {
            let wakes = replicas.iter().map(|r| async move {
                match r.state {
                    ReplicaState::Paused => self.engine.resume(r).await,
                    ReplicaState::Running => Ok(()),
                    _ => self.engine.start(r).await,
                }
            });
            for result in futures_util::future::join_all(wakes).await {
                if let Err(e) = result {
                    self.metrics.failure(&route.name, "wake");
                    return Err(e.into());
                }
            }
            let healthy = replicas
                .iter()
                .map(|r| self.engine.wait_healthy(r, HEALTH_TIMEOUT));
            for result in futures_util::future::join_all(healthy).await {
                if let Err(e) = result {
                    self.metrics.failure(&route.name, "wake");
                    return Err(e.into());
                }
            }
        }
        route.power = Power::Running;
        self.gateway.put(&route).await?;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.metrics
            .event(&route.name, Direction::Wake, Reason::Demand);
        tracing::info!(function = %route.name, was = %was, millis, "woke");
        Ok(WakeReport { was, millis })
    }

    /// Pauses an idle function (the caller decided it is idle; a call arriving meanwhile is
    /// held by the gateway and wakes it).
    pub async fn pause(&self, guard: Guard, name: &str) -> Result<(), ActError> {
        if self.swarm.is_some() {
            return self.stop(guard, name, Reason::Idle).await;
        }
        let mut route = self.route(name).await?;
        if route.power != Power::Running {
            return Ok(());
        }
        let replicas = self.routed(&route).await?;
        route.power = Power::Paused;
        self.gateway.put(&route).await?;
        let pauses = replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .map(|r| self.engine.pause(r));
        let results = futures_util::future::join_all(pauses).await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            // Leave nothing half paused: run it all again.
            self.metrics.failure(name, "pause");
            tracing::error!(function = %name, error = %e, "cannot pause; resuming");
            self.wake_locked(route).await?;
            return Err(e.into());
        }
        self.metrics.event(name, Direction::Pause, Reason::Idle);
        tracing::info!(function = %name, replicas = replicas.len(), "paused (idle)");
        Ok(())
    }

    /// Stops a function's replicas (idle past `idleStop`, or `scale <name> 0`); the next call
    /// starts them again.
    pub async fn stop(&self, _guard: Guard, name: &str, reason: Reason) -> Result<(), ActError> {
        let mut route = self.route(name).await?;
        if route.power == Power::Stopped {
            return Ok(());
        }
        if let Some(services) = &self.swarm {
            route.power = Power::Stopped;
            route.upstreams.clear();
            self.gateway.put(&route).await?;
            // Swarm takes each task out of DNS 2 s before its SIGTERM; it drains in its grace.
            self.run_service(services, &route, 0, "stop").await?;
            self.metrics.event(name, Direction::Stop, reason);
            tracing::info!(function = %name, reason = reason.as_str(), "stopped (service)");
            return Ok(());
        }
        let replicas = self.routed(&route).await?;
        route.power = Power::Stopped;
        self.gateway.put(&route).await?;
        let stops = replicas.iter().map(|r| self.engine.stop(r, DRAIN_GRACE));
        for result in futures_util::future::join_all(stops).await {
            if let Err(e) = result {
                self.metrics.failure(name, "stop");
                return Err(e.into());
            }
        }
        self.metrics.event(name, Direction::Stop, reason);
        tracing::info!(function = %name, replicas = replicas.len(), reason = reason.as_str(), "stopped");
        Ok(())
    }

    /// Runs `n` replicas of the function (0: stops it). Returns the route as the gateway now has
    /// it.
    pub async fn scale_to(
        &self,
        guard: Guard,
        name: &str,
        n: u32,
        reason: Reason,
    ) -> Result<FunctionRoute, ActError> {
        if n > MAX_REPLICAS {
            return Err(ActError::TooMany(n));
        }
        if n == 0 {
            self.stop(guard, name, reason).await?;
            return self.route(name).await;
        }
        let mut route = self.route(name).await?;
        if route.power != Power::Running {
            route = {
                self.wake_locked(route).await?;
                self.route(name).await?
            };
        }
        if let Some(services) = &self.swarm {
            let current = route.run.as_ref().map_or(0, |r| r.replicas);
            if current != n {
                self.run_service(services, &route, n, "scale").await?;
                let now = self.route(name).await?;
                if now.image != route.image || now.deployed_at != route.deployed_at {
                    return Err(ActError::Redeployed {
                        function: name.to_string(),
                    });
                }
                route = now;
                if let Some(run) = route.run.as_mut() {
                    run.replicas = n;
                }
                route.upstreams.clear();
                self.gateway.put(&route).await?;
                let direction = if n > current {
                    Direction::Up
                } else {
                    Direction::Down
                };
                self.metrics.event(name, direction, reason);
                tracing::info!(function = %name, from = current, to = n, reason = reason.as_str(), "scaled (service)");
            }
            return Ok(route);
        }
        let replicas = self.routed(&route).await?;
        let current = replicas.len();
        let n = n as usize;
        if n > current {
            let template = self.template(&route, "scale")?;
            let added = self.create(&template, &route, n - current).await?;
            // Redeployed meanwhile (another image or time): the new replicas are not its.
            let now = self.route(name).await?;
            if now.image != route.image || now.deployed_at != route.deployed_at {
                for r in &added {
                    self.engine.remove(r, Duration::from_secs(1)).await.ok();
                }
                return Err(ActError::Redeployed {
                    function: name.to_string(),
                });
            }
            route = now;
            route
                .upstreams
                .extend(added.iter().map(|r| r.upstream.clone()));
            if let Some(run) = route.run.as_mut() {
                run.replicas = n as u32;
            }
            self.gateway.put(&route).await?;
            self.metrics.event(name, Direction::Up, reason);
            tracing::info!(function = %name, from = current, to = n, reason = reason.as_str(), "scaled out");
        } else if n < current {
            let mut by_index = replicas;
            by_index.sort_by_key(|r| r.index);
            let leaving = by_index.split_off(n);
            route
                .upstreams
                .retain(|u| !leaving.iter().any(|r| &r.upstream == u));
            if let Some(run) = route.run.as_mut() {
                run.replicas = n as u32;
            }
            self.gateway.put(&route).await?;
            self.metrics.event(name, Direction::Down, reason);
            tracing::info!(function = %name, from = current, to = n, reason = reason.as_str(), "scaling in: draining");
            tokio::time::sleep(ROUTE_SETTLE).await;
            let removals = leaving.iter().map(|r| self.engine.remove(r, DRAIN_GRACE));
            for result in futures_util::future::join_all(removals).await {
                if let Err(e) = result {
                    self.metrics.failure(name, "remove");
                    tracing::warn!(function = %name, error = %e, "a leaving replica could not be removed");
                }
            }
        } else if route.run.as_ref().is_some_and(|r| r.replicas as usize != n) {
            if let Some(run) = route.run.as_mut() {
                run.replicas = n as u32;
            }
            self.gateway.put(&route).await?;
        }
        Ok(route)
    }

    /// Creates `count` replicas of the route's current deployment at the lowest free indexes,
    /// and waits for their health; on any failure removes them all.
    async fn create(
        &self,
        template: &FunctionTemplate,
        route: &FunctionRoute,
        count: usize,
    ) -> Result<Vec<Replica>, ActError> {
        let existing = self.engine.list(Some(&route.name)).await?;
        let deployment = existing
            .iter()
            .find(|r| route.upstreams.contains(&r.upstream))
            .map(|r| r.deployment.clone())
            .unwrap_or_else(|| format!("{:08x}", rand_bits()));
        let taken: Vec<String> = existing.iter().map(|r| r.container.clone()).collect();
        let used: Vec<usize> = existing
            .iter()
            .filter(|r| r.deployment == deployment)
            .map(|r| r.index)
            .collect();
        let mut created = Vec::new();
        let mut k = 0usize;
        while created.len() < count {
            let container = self.instance.function_container(&route.name, k);
            if used.contains(&k) || taken.contains(&container) {
                k += 1;
                continue;
            }
            match self
                .engine
                .create(template, &deployment, k, &container)
                .await
            {
                Ok(r) => created.push(r),
                Err(e) => {
                    self.discard(&created).await;
                    self.metrics.failure(&route.name, "create");
                    return Err(e.into());
                }
            }
            k += 1;
        }
        let healthy = created
            .iter()
            .map(|r| self.engine.wait_healthy(r, HEALTH_TIMEOUT));
        for result in futures_util::future::join_all(healthy).await {
            if let Err(e) = result {
                self.discard(&created).await;
                self.metrics.failure(&route.name, "create");
                return Err(e.into());
            }
        }
        Ok(created)
    }

    async fn discard(&self, replicas: &[Replica]) {
        for r in replicas {
            if let Err(e) = self.engine.remove(r, Duration::from_secs(1)).await {
                tracing::warn!(container = %r.container, error = %e, "cannot remove a failed replica");
            }
        }
    }
}

fn rand_bits() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}
