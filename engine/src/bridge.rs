//! [`FunctionEngine`] on one Docker engine: each replica a container on the instance's bridge
//! network. Every operation on an existing replica inspects the container first, refuses it
//! unless [`check_ours`] passes, and then acts on the id it inspected (not the name, which
//! could meanwhile name another container).

use std::time::{Duration, Instant};

use rfa_wire::FUNCTION_PORT;

use crate::ContainerInspectResponse;
use crate::docker::{Engine, ip_of};
use crate::error::{EngineError, Result};
use crate::instance::{Instance, LABEL_FUNCTION, Role};
use crate::replica::{FunctionEngine, Replica, check_ours};
use crate::template::FunctionTemplate;

/// How the health check reaches a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// By its address on the bridge network: the CLI on the host.
    ContainerIp,
    /// By its network alias (`upstream`), through the network's DNS: a process inside the
    /// instance's network (the scaler).
    Alias,
}

/// Function replicas as containers on one engine's bridge network.
#[derive(Clone)]
pub struct Bridge {
    engine: Engine,
    instance: Instance,
    reach: Reach,
    client: reqwest::Client,
}

impl Bridge {
    pub fn new(engine: Engine, instance: Instance, reach: Reach) -> Result<Bridge> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| EngineError::Io {
                what: "cannot make an HTTP client for health checks".to_string(),
                source: std::io::Error::other(e),
            })?;
        Ok(Bridge {
            engine,
            instance,
            reach,
            client,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The replica's container, inspected, if it is this instance's replica of the function
    /// the caller says; `NotOurs` (nothing done) otherwise, `NotFound` when it is gone.
    async fn ours(&self, replica: &Replica) -> Result<ContainerInspectResponse> {
        let target = if replica.id.is_empty() {
            &replica.container
        } else {
            &replica.id
        };
        let info = self
            .engine
            .inspect(target)
            .await?
            .ok_or_else(|| EngineError::NotFound(replica.container.clone()))?;
        let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
        let refuse = |why: String| EngineError::NotOurs {
            container: replica.container.clone(),
            instance: self.instance.label().to_string(),
            why,
        };
        check_ours(labels, self.instance.label()).map_err(refuse)?;
        let function = labels
            .and_then(|l| l.get(LABEL_FUNCTION))
            .map(String::as_str)
            .unwrap_or_default();
        if function != replica.function {
            return Err(refuse(format!(
                "it is a replica of function '{function}', not of '{}'",
                replica.function
            )));
        }
        Ok(info)
    }

    fn id_of(info: &ContainerInspectResponse, replica: &Replica) -> String {
        info.id.clone().unwrap_or_else(|| replica.container.clone())
    }

    fn is_paused(info: &ContainerInspectResponse) -> bool {
        info.state.as_ref().and_then(|s| s.paused) == Some(true)
    }
}

impl FunctionEngine for Bridge {
    async fn list(&self, function: Option<&str>) -> Result<Vec<Replica>> {
        let mut filters = self.instance.filters(Some(Role::Function));
        if let (Some(f), Some(labels)) = (function, filters.get_mut("label")) {
            labels.push(format!("{LABEL_FUNCTION}={f}"));
        }
        let containers = self.engine.list_containers(filters).await?;
        Ok(containers
            .iter()
            .filter(|c| check_ours(c.labels.as_ref(), self.instance.label()).is_ok())
            .filter_map(Replica::from_summary)
            .collect())
    }

    async fn create(
        &self,
        template: &FunctionTemplate,
        deployment: &str,
        k: usize,
        container_name: &str,
    ) -> Result<Replica> {
        if template.instance.label() != self.instance.label() {
            return Err(EngineError::Invalid(format!(
                "a replica of instance '{}' cannot be created through the engine of instance '{}'",
                template.instance.label(),
                self.instance.label()
            )));
        }
        let spec = template.replica(deployment, k, container_name);
        self.engine.run(&spec).await?;
        let info = self
            .engine
            .inspect(container_name)
            .await?
            .ok_or_else(|| EngineError::NotFound(container_name.to_string()))?;
        Replica::from_inspect(&info).ok_or_else(|| {
            EngineError::Invalid(format!(
                "container {container_name} was created without a replica's labels"
            ))
        })
    }

    async fn remove(&self, replica: &Replica, grace: Duration) -> Result<()> {
        let info = match self.ours(replica).await {
            Err(EngineError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let id = Self::id_of(&info, replica);
        if Self::is_paused(&info) {
            // A frozen process cannot handle SIGTERM: thaw it so it drains.
            self.engine.unpause(&id).await?;
        }
        self.engine.stop_and_remove(&id, grace).await
    }

    async fn pause(&self, replica: &Replica) -> Result<()> {
        let info = self.ours(replica).await?;
        if Self::is_paused(&info) {
            return Ok(());
        }
        self.engine.pause(&Self::id_of(&info, replica)).await
    }

    async fn resume(&self, replica: &Replica) -> Result<()> {
        let info = self.ours(replica).await?;
        if !Self::is_paused(&info) {
            return Ok(());
        }
        self.engine.unpause(&Self::id_of(&info, replica)).await
    }

    async fn stop(&self, replica: &Replica, grace: Duration) -> Result<()> {
        let info = self.ours(replica).await?;
        let id = Self::id_of(&info, replica);
        if Self::is_paused(&info) {
            self.engine.unpause(&id).await?;
        }
        self.engine.stop(&id, grace).await.map(|_| ())
    }

    async fn start(&self, replica: &Replica) -> Result<()> {
        let info = self.ours(replica).await?;
        self.engine.start(&Self::id_of(&info, replica)).await
    }

    async fn rename(&self, replica: &Replica, to: &str) -> Result<Replica> {
        let info = self.ours(replica).await?;
        self.engine.rename(&Self::id_of(&info, replica), to).await?;
        Ok(Replica {
            container: to.to_string(),
            ..replica.clone()
        })
    }

    async fn recent_logs(
        &self,
        function: &str,
        tail: usize,
    ) -> Result<Vec<rfa_wire::dashboard::LogLine>> {
        use futures_util::StreamExt as _;
        let mut lines = Vec::new();
        for replica in self.list(Some(function)).await? {
            // By the id the listing read (as every other operation acts on), not a name that
            // could meanwhile name another container.
            let target = if replica.id.is_empty() {
                &replica.container
            } else {
                &replica.id
            };
            let mut stream = self.engine.log_stream(
                target,
                crate::LogRequest {
                    follow: false,
                    tail: Some(tail),
                    since: None,
                    timestamps: true,
                },
            );
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if chunk.stderr {
                    err.extend_from_slice(&chunk.bytes);
                } else {
                    out.extend_from_slice(&chunk.bytes);
                }
            }
            for (stderr, bytes) in [(false, out), (true, err)] {
                lines.extend(crate::replica::stamped_lines(
                    &replica.container,
                    stderr,
                    &String::from_utf8_lossy(&bytes),
                ));
            }
        }
        // Stable: lines of one replica with the same stamp keep their order.
        lines.sort_by_cached_key(|l| crate::docker::log_stamp_sort_key(&l.at));
        Ok(lines)
    }

    async fn wait_healthy(&self, replica: &Replica, timeout: Duration) -> Result<()> {
        let name = replica.container.as_str();
        let network = self.instance.network();
        let deadline = Instant::now() + timeout;
        let mut last = "no answer".to_string();
        let mut polls = 0u32;
        while Instant::now() < deadline {
            let info = self.ours(replica).await?;
            let state = info.state.clone().unwrap_or_default();
            let restarts = info.restart_count.unwrap_or(0);
            if state.running != Some(true) || restarts > 0 {
                return Err(EngineError::Exited {
                    name: name.to_string(),
                    code: state.exit_code.unwrap_or(-1),
                    logs: self.engine.tail_logs(name, 20).await,
                });
            }
            let url = match self.reach {
                Reach::ContainerIp => {
                    ip_of(info, &network).map(|ip| format!("http://{ip}:{FUNCTION_PORT}/healthz"))
                }
                Reach::Alias => Some(format!("http://{}/healthz", replica.upstream)),
            };
            if let Some(url) = url {
                match self.client.get(&url).send().await {
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
        Err(EngineError::Unhealthy {
            name: name.to_string(),
            seconds: timeout.as_secs(),
            last,
            logs: self.engine.tail_logs(name, 20).await,
        })
    }
}
