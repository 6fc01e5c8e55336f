//! Docker Swarm through the same engine client: the swarm's state and nodes, the instance's
//! attachable overlay network, secrets, services made from the same [`ContainerSpec`] a bridge
//! container is made from, their tasks, and images copied from one node's engine to another's
//! (rfaas never pulls or pushes: see docs/SWARM.md).
//!
//! Facts these calls rely on (checked on engine 20.10, docs/SWARM.md): every service uses
//! `dnsrr` endpoints (no IPVS here), a published port uses host mode, a task with a health check
//! is `starting` until it is healthy and only then `running`, and a rollback restores the whole
//! previous spec, so every update carries the update and rollback settings again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    HealthConfig, Limit, LocalNodeState, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, NetworkCreateRequest, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    ListNodesOptionsBuilder, ListSecretsOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, LogsOptionsBuilder, UpdateServiceOptionsBuilder,
};
use futures_util::StreamExt;

use crate::docker::{ContainerSpec, ENGINE_SOCKET, Engine, TMPFS_OPTIONS};
use crate::error::{EngineError, Result, is_not_found};
use crate::instance::{Instance, LABEL_SPEC, LABEL_UPSTREAM};
use crate::template::FunctionTemplate;

/// What a function task runs as its health check: the function binary asks its own `/healthz`.
const FUNCTION_HEALTH: [&str; 2] = ["/app/main", "healthcheck"];

/// The service that runs function `name` of `instance`: `rfa-fn-<name>[-<instance>]`.
pub fn function_service(instance: &Instance, name: &str) -> String {
    instance.function_container(name, 0)
}

/// Where the gateway finds a function's tasks: `tasks.<service>:6000` in the overlay's DNS,
/// which names a task only while it is healthy.
pub fn discover_name(instance: &Instance, name: &str) -> String {
    format!(
        "tasks.{}:{}",
        function_service(instance, name),
        rfa_wire::FUNCTION_PORT
    )
}

/// The node label of the nodes that get an instance's function images (the platform node and
/// every `--node-engine`): function tasks run only there.
pub fn images_label(instance: &Instance) -> String {
    format!("io.rfaas.images.{}", instance.label())
}

impl FunctionTemplate {
    /// The service that runs this function with `replicas` tasks, made the same way by the CLI
    /// (deploy, scale) and the scaler: every replica's container spec, as a `dnsrr` service whose
    /// updates start each new task first and roll back when it never gets healthy.
    pub fn service(&self, replicas: u64) -> ServiceSpec {
        let name = function_service(&self.instance, &self.name);
        let mut c = self.replica("swarm", 0, &name);
        // A service's tasks share one name in DNS; a replica's alias means nothing here, nor
        // does `host.docker.internal` (a service has no host-gateway entry).
        c.aliases.clear();
        c.host_gateway = false;
        c.labels.insert(
            LABEL_UPSTREAM.to_string(),
            discover_name(&self.instance, &self.name),
        );
        let s = ServiceSettings {
            replicas,
            constraints: vec![format!(
                "node.labels.{}==true",
                images_label(&self.instance)
            )],
            health: Some(FUNCTION_HEALTH.iter().map(|s| s.to_string()).collect()),
            start_first: true,
            labels: c.labels.clone(),
            ..Default::default()
        };
        service_spec(&c, &s)
    }
}

/// The engine's place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmRole {
    /// Not in a swarm (or joining, or locked): `state` as the engine says it.
    Outside { state: String },
    /// A worker: it runs tasks but cannot create services. `node_id` is its own node.
    Worker { node_id: String },
    /// A manager: services can be made through it. `node_id` is its own node.
    Manager { node_id: String },
}

/// One node of the swarm, as a manager lists it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub manager: bool,
    /// `ready`, `down`, …
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub addr: String,
    pub labels: HashMap<String, String>,
}

/// One task of a service.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub id: String,
    pub slot: i64,
    pub node_id: String,
    /// The task's state now (`starting`, `running`, `failed`, `shutdown`, …).
    pub state: String,
    /// What the orchestrator wants it to be (`running` or `shutdown`).
    pub desired: String,
    /// The engine's last word about it (an error when it failed).
    pub message: String,
    pub container_id: Option<String>,
    pub image: String,
    pub since: String,
}

impl TaskInfo {
    pub fn is_running(&self) -> bool {
        self.state == "running" && self.desired == "running"
    }
}

/// A secret file a service's tasks get at `/run/secrets/<file>`, owned by rfaas's user, mode
/// 0400.
#[derive(Debug, Clone)]
pub struct SecretFile {
    pub id: String,
    pub name: String,
    pub file: String,
}

/// What a service adds to a container spec.
#[derive(Debug, Clone, Default)]
pub struct ServiceSettings {
    pub replicas: u64,
    /// Placement constraints, e.g. `node.labels.io.rfaas.platform.x==true`.
    pub constraints: Vec<String>,
    pub secrets: Vec<SecretFile>,
    /// The health check's command (`CMD` form), run in the task every second.
    pub health: Option<Vec<String>>,
    /// A rolling update starts the new task first and rolls back on failure (functions); without
    /// it a task is replaced stop-first (the platform's one-replica services: one store writer,
    /// one gateway on the published port).
    pub start_first: bool,
    /// `(published, target)`: the port published in host mode on the node running the task.
    pub publish: Option<(u16, u16)>,
    /// Labels on the service itself (the container spec's labels go on its tasks' containers
    /// too).
    pub labels: HashMap<String, String>,
}

/// What [`Engine::put_service`] did; [`Engine::wait_service`] takes it to know what to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePut {
    Created,
    /// Its task template changed: a rolling update. `previous` is when the service's last
    /// update before this one started (none before it): until the engine reports a newer one,
    /// this update has not begun.
    Updated {
        previous: Option<String>,
    },
    /// Only its replica count changed: tasks were added or removed, none replaced.
    Scaled,
    /// The service already ran this spec ([`LABEL_SPEC`]) with this replica count.
    Unchanged,
}

/// How long a health check may take and how often it runs.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a task's process gets between SIGTERM and SIGKILL (its calls drain meanwhile).
pub const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long the orchestrator watches a new task before an update counts it healthy.
const UPDATE_MONITOR: Duration = Duration::from_secs(5);

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The service that runs `c` with `s`: the same image, command, environment, limits and
/// hardening a bridge container of `c` would get, as far as Swarm honours them (docs/SWARM.md:
/// `no-new-privileges`, seccomp and the OOM score have no service field on 20.10).
pub fn service_spec(c: &ContainerSpec, s: &ServiceSettings) -> ServiceSpec {
    let mut mounts: Vec<Mount> = c
        .volumes
        .iter()
        .map(|(volume, path)| Mount {
            target: Some(path.clone()),
            source: Some(volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        })
        .collect();
    let mut groups = None;
    if let Some(socket) = &c.engine_socket {
        mounts.push(Mount {
            target: Some(ENGINE_SOCKET.to_string()),
            source: Some(socket.host_path.clone()),
            typ: Some(MountType::BIND),
            ..Default::default()
        });
        groups = Some(vec![socket.gid.to_string()]);
    }
    let mut container = TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: Some(c.labels.clone()),
        args: (!c.cmd.is_empty()).then(|| c.cmd.clone()),
        env: Some(c.env.clone()),
        groups,
        init: Some(false),
        stop_grace_period: Some(nanos(STOP_GRACE)),
        health_check: s.health.as_ref().map(|cmd| HealthConfig {
            test: Some([vec!["CMD".to_string()], cmd.clone()].concat()),
            interval: Some(nanos(HEALTH_INTERVAL)),
            timeout: Some(nanos(HEALTH_TIMEOUT)),
            retries: Some(3),
            start_period: Some(0),
            start_interval: None,
        }),
        secrets: (!s.secrets.is_empty()).then(|| {
            s.secrets
                .iter()
                .map(|f| TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(f.file.clone()),
                        uid: Some(crate::UID.to_string()),
                        gid: Some(crate::UID.to_string()),
                        mode: Some(0o400),
                    }),
                    secret_id: Some(f.id.clone()),
                    secret_name: Some(f.name.clone()),
                })
                .collect()
        }),
        ..Default::default()
    };
    if c.hardened {
        let uid = crate::UID;
        container.user = Some(format!("{uid}:{uid}"));
        container.read_only = Some(true);
        container.capability_drop = Some(vec!["ALL".to_string()]);
        mounts.push(tmpfs("/tmp"));
    }
    container.mounts = Some(mounts);
    let update = ServiceSpecUpdateConfig {
        parallelism: Some(1),
        delay: Some(0),
        failure_action: Some(if s.start_first {
            ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK
        } else {
            ServiceSpecUpdateConfigFailureActionEnum::PAUSE
        }),
        monitor: Some(nanos(UPDATE_MONITOR)),
        max_failure_ratio: Some(0.0),
        order: Some(if s.start_first {
            ServiceSpecUpdateConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
        }),
    };
    let rollback = ServiceSpecRollbackConfig {
        parallelism: Some(1),
        delay: Some(0),
        failure_action: None,
        monitor: Some(nanos(UPDATE_MONITOR)),
        max_failure_ratio: Some(0.0),
        order: Some(if s.start_first {
            ServiceSpecRollbackConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecRollbackConfigOrderEnum::STOP_FIRST
        }),
    };
    let mut aliases = c.aliases.clone();
    aliases.retain(|a| a != &c.name);
    ServiceSpec {
        name: Some(c.name.clone()),
        labels: Some(s.labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: c.nano_cpus,
                    memory_bytes: c.memory_bytes,
                    pids: c.pids_limit,
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(nanos(Duration::from_millis(500))),
                max_attempts: None,
                window: None,
            }),
            placement: (!s.constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(s.constraints.clone()),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(c.network.clone()),
                aliases: (!aliases.is_empty()).then_some(aliases),
                driver_opts: None,
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::try_from(s.replicas).unwrap_or(i64::MAX)),
            }),
            ..Default::default()
        }),
        update_config: Some(update),
        rollback_config: Some(rollback),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: s.publish.map(|(published, target)| {
                vec![EndpointPortConfig {
                    name: None,
                    protocol: None,
                    target_port: Some(i64::from(target)),
                    published_port: Some(i64::from(published)),
                    publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                }]
            }),
        }),
        ..Default::default()
    }
}

fn tmpfs(path: &str) -> Mount {
    // TMPFS_OPTIONS' size and mode, as the service API takes them (its flags are implied).
    let size = TMPFS_OPTIONS
        .split(',')
        .find_map(|o| o.strip_prefix("size="))
        .and_then(|s| s.strip_suffix('m'))
        .and_then(|m| m.parse::<i64>().ok())
        .map(|m| m << 20);
    Mount {
        target: Some(path.to_string()),
        typ: Some(MountType::TMPFS),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: size,
            mode: Some(0o1777),
            options: None,
        }),
        ..Default::default()
    }
}

fn service_replicas(spec: Option<&ServiceSpec>) -> Option<u64> {
    spec?
        .mode
        .as_ref()?
        .replicated
        .as_ref()?
        .replicas
        .and_then(|r| u64::try_from(r).ok())
}

fn task_state(state: Option<&TaskState>) -> String {
    state.map(|s| s.to_string()).unwrap_or_default()
}

impl Engine {
    /// Connects to another node's engine at `url` (`tcp://host:port`, plain HTTP): the CLI
    /// copies images to it.
    pub async fn connect_to(url: &str) -> Result<Engine> {
        let unreachable = |e: &dyn std::fmt::Display| EngineError::Unreachable {
            socket: url.to_string(),
            reason: e.to_string(),
        };
        let docker = Docker::connect_with_http(url, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(&e))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        docker.ping().await.map_err(|e| unreachable(&e))?;
        Ok(Engine { docker })
    }

    /// This engine's place in a swarm.
    pub async fn swarm_role(&self) -> Result<SwarmRole> {
        let info = self
            .docker
            .info()
            .await
            .map_err(EngineError::api("cannot read the engine's info"))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::INACTIVE);
        if state != LocalNodeState::ACTIVE {
            let state = match state.to_string() {
                s if s.is_empty() => "inactive".to_string(),
                s => s,
            };
            return Ok(SwarmRole::Outside { state });
        }
        if swarm.control_available != Some(true) {
            return Ok(SwarmRole::Worker {
                node_id: swarm.node_id.unwrap_or_default(),
            });
        }
        Ok(SwarmRole::Manager {
            node_id: swarm.node_id.unwrap_or_default(),
        })
    }

    /// Every node of the swarm (a manager's view).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let nodes = self
            .docker
            .list_nodes(Some(ListNodesOptionsBuilder::default().build()))
            .await
            .map_err(EngineError::api("cannot list the swarm's nodes"))?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                let status = n.status.unwrap_or_default();
                NodeInfo {
                    id: n.id.unwrap_or_default(),
                    hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                    manager: n.manager_status.is_some(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
                    addr: status.addr.unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Sets label `key=value` on node `id` (kept if already so).
    pub async fn label_node(&self, id: &str, key: &str, value: &str) -> Result<()> {
        let node = self
            .docker
            .inspect_node(id)
            .await
            .map_err(EngineError::api(format!("cannot inspect node {id}")))?;
        let mut spec = node.spec.unwrap_or_default();
        let labels = spec.labels.get_or_insert_with(HashMap::new);
        if labels.get(key).map(String::as_str) == Some(value) {
            return Ok(());
        }
        labels.insert(key.to_string(), value.to_string());
        let version = node.version.and_then(|v| v.index).unwrap_or_default();
        let options = bollard::query_parameters::UpdateNodeOptionsBuilder::default()
            .version(i64::try_from(version).unwrap_or_default())
            .build();
        self.docker
            .update_node(id, spec, options)
            .await
            .map_err(EngineError::api(format!("cannot label node {id}")))
    }

    /// Creates the attachable overlay network `name` (interface MTU `mtu` + 50 on the wire)
    /// unless it exists; returns whether it made it. A bridge network of that name (left from a
    /// bridge-mode platform) is an error that says so.
    pub async fn ensure_overlay(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        mtu: u32,
    ) -> Result<bool> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let options = bollard::query_parameters::ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let existing = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(EngineError::api("cannot list networks"))?;
        if let Some(n) = existing.iter().find(|n| n.name.as_deref() == Some(name)) {
            let driver = n.driver.clone().unwrap_or_default();
            if driver != "overlay" {
                return Err(EngineError::Invalid(format!(
                    "network {name} exists with driver '{driver}', not an overlay: a bridge-mode \
                     platform of this instance is still here. Remove it first with `proxyCli \
                     stopFaas`"
                )));
            }
            return Ok(false);
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("overlay".to_string()),
                attachable: Some(true),
                labels: Some(labels),
                options: Some(HashMap::from([(
                    "com.docker.network.driver.mtu".to_string(),
                    mtu.to_string(),
                )])),
                ..Default::default()
            })
            .await
            .map_err(EngineError::api(format!("cannot create network {name}")))?;
        Ok(true)
    }

    /// The secret `name` holding `data`, made if missing; its id. A secret cannot change: the
    /// caller puts a hash of `data` in the name.
    pub async fn ensure_secret(
        &self,
        name: &str,
        data: &[u8],
        labels: HashMap<String, String>,
    ) -> Result<String> {
        if let Some(id) = self.secrets(&labels).await?.remove(name) {
            return Ok(id);
        }
        use base64_engine::encode;
        let created = self
            .docker
            .create_secret(SecretSpec {
                name: Some(name.to_string()),
                labels: Some(labels),
                data: Some(encode(data)),
                ..Default::default()
            })
            .await
            .map_err(EngineError::api(format!("cannot create secret {name}")))?;
        Ok(created.id)
    }

    /// Secrets carrying every label of `labels`: name → id.
    pub async fn secrets(
        &self,
        labels: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )]);
        let options = ListSecretsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_secrets(Some(options))
            .await
            .map_err(EngineError::api("cannot list secrets"))?;
        Ok(list
            .into_iter()
            .filter_map(|s| Some((s.spec?.name?, s.id?)))
            .collect())
    }

    /// Removes the secret `id`; one still used by a service stays (the engine refuses).
    pub async fn remove_secret(&self, id: &str) -> Result<bool> {
        match self.docker.delete_secret(id).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(EngineError::api(format!("cannot remove secret {id}"))(e)),
        }
    }

    /// The service `name`, if it exists.
    pub async fn service(&self, name: &str) -> Result<Option<bollard::models::Service>> {
        match self.docker.inspect_service(name, None).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(EngineError::api(format!("cannot inspect service {name}"))(
                e,
            )),
        }
    }

    /// Services whose labels match `filters` (`label` → `k=v` list).
    pub async fn list_services(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<bollard::models::Service>> {
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_services(Some(options))
            .await
            .map_err(EngineError::api("cannot list services"))
    }

    /// Creates the service `spec` names, or updates it to `spec` when its [`LABEL_SPEC`] label
    /// or replica count differ (an update of the task template is a rolling update as the
    /// spec's update settings say; a changed count alone replaces no task).
    ///
    /// Always the whole spec, made afresh: never one read back from the engine and sent again.
    /// bollard reads the health check under `HealthCheck` while the engine writes `Healthcheck`,
    /// so a spec read back has lost it, and sending it would roll every task to a version
    /// without one.
    pub async fn put_service(&self, spec: ServiceSpec) -> Result<ServicePut> {
        let name = spec.name.clone().unwrap_or_default();
        let Some(current) = self.service(&name).await? else {
            self.docker
                .create_service(spec, None)
                .await
                .map_err(EngineError::api(format!("cannot create service {name}")))?;
            return Ok(ServicePut::Created);
        };
        let hash = |s: Option<&ServiceSpec>| {
            s.and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get(LABEL_SPEC))
                .cloned()
        };
        if hash(current.spec.as_ref()) == hash(Some(&spec))
            && service_replicas(current.spec.as_ref()) == service_replicas(Some(&spec))
        {
            return Ok(ServicePut::Unchanged);
        }
        let only_count = hash(current.spec.as_ref()) == hash(Some(&spec));
        let previous = self.update_from(&name, current, spec).await?;
        Ok(if only_count {
            ServicePut::Scaled
        } else {
            ServicePut::Updated { previous }
        })
    }

    /// Replaces every task of service `spec.name` although its spec is unchanged (the spec's
    /// `force_update` counter one past the running one's), e.g. so that its tasks join the
    /// network's DNS again. `spec` is sent whole, made afresh by the caller (a spec read back
    /// loses its health check, see [`Engine::put_service`]). Wait for it with
    /// [`Engine::wait_service`] and the answer.
    pub async fn force_update_service(&self, mut spec: ServiceSpec) -> Result<ServicePut> {
        let name = spec.name.clone().unwrap_or_default();
        let Some(current) = self.service(&name).await? else {
            return Err(EngineError::ServiceNotFound(name));
        };
        let counter = current
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.force_update)
            .unwrap_or(0);
        spec.task_template
            .get_or_insert_with(Default::default)
            .force_update = Some(counter + 1);
        let previous = self.update_from(&name, current, spec).await?;
        Ok(ServicePut::Updated { previous })
    }

    /// Sends `spec` as the update of `current` (named `name`); the start time of the update
    /// before it, which [`Engine::wait_service`] tells this one's from.
    async fn update_from(
        &self,
        name: &str,
        current: bollard::models::Service,
        spec: ServiceSpec,
    ) -> Result<Option<String>> {
        let previous = current
            .update_status
            .and_then(|u| u.started_at)
            .map(|t| t.to_string());
        self.update_service(name, current.version.and_then(|v| v.index), spec)
            .await?;
        Ok(previous)
    }

    async fn update_service(
        &self,
        name: &str,
        version: Option<u64>,
        spec: ServiceSpec,
    ) -> Result<()> {
        let options = UpdateServiceOptionsBuilder::default()
            .version(i32::try_from(version.unwrap_or_default()).unwrap_or(i32::MAX))
            .build();
        let answer = self
            .docker
            .update_service(name, spec, options, None)
            .await
            .map_err(EngineError::api(format!("cannot update service {name}")))?;
        for warning in answer.warnings.unwrap_or_default() {
            tracing::warn!(service = name, "{warning}");
        }
        Ok(())
    }

    /// Removes service `name` (its tasks get SIGTERM once out of DNS, SIGKILL after their stop
    /// grace period); `false` when there was none.
    pub async fn remove_service(&self, name: &str) -> Result<bool> {
        match self.docker.delete_service(name).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(EngineError::api(format!("cannot remove service {name}"))(e)),
        }
    }

    /// The tasks of service `name`, newest first (old ones the orchestrator keeps as history
    /// too: see [`TaskInfo::is_running`]).
    pub async fn service_tasks(&self, name: &str) -> Result<Vec<TaskInfo>> {
        let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        let tasks = self
            .docker
            .list_tasks(Some(options))
            .await
            .map_err(EngineError::api(format!("cannot list the tasks of {name}")))?;
        let mut out: Vec<TaskInfo> = tasks
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                TaskInfo {
                    id: t.id.unwrap_or_default(),
                    slot: t.slot.unwrap_or_default(),
                    node_id: t.node_id.unwrap_or_default(),
                    state: task_state(status.state.as_ref()),
                    desired: task_state(t.desired_state.as_ref()),
                    message: status
                        .err
                        .filter(|e| !e.is_empty())
                        .or(status.message)
                        .unwrap_or_default(),
                    container_id: status.container_status.and_then(|c| c.container_id),
                    image: t
                        .spec
                        .and_then(|s| s.container_spec)
                        .and_then(|c| c.image)
                        .unwrap_or_default(),
                    since: status.timestamp.map(|t| t.to_string()).unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| b.since.cmp(&a.since));
        Ok(out)
    }

    /// The last `n` log lines of every task of service `name`, for error reports.
    pub async fn service_log_tail(&self, name: &str, n: usize) -> String {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        crate::docker::collect_logs(self.docker.service_logs(name, Some(options))).await
    }

    /// Waits until service `name` has finished its last update (or never had one) and runs
    /// `replicas` tasks: `Ok` then. An update rolled back (its new tasks never got healthy) or
    /// paused, or tasks not running after `timeout`, is an error with the tasks' last words and
    /// log lines.
    pub async fn wait_service(
        &self,
        name: &str,
        replicas: u64,
        put: &ServicePut,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = "no task yet".to_string();
        loop {
            let service = self
                .service(name)
                .await?
                .ok_or_else(|| EngineError::ServiceNotFound(name.to_string()))?;
            let status = service.update_status.unwrap_or_default();
            let message = status.message.clone().unwrap_or_default();
            let begun = match put {
                // The engine starts an update a moment after accepting it: until then the
                // service still shows the last one (or none), which says nothing about this.
                ServicePut::Updated { previous } => {
                    status.started_at.as_ref().map(|t| t.to_string()) != *previous
                }
                _ => true,
            };
            let settled = begun
                && match status.state {
                    None
                    | Some(ServiceUpdateStatusStateEnum::EMPTY)
                    | Some(ServiceUpdateStatusStateEnum::COMPLETED) => true,
                    Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => {
                        return Err(EngineError::RolledBack {
                            service: name.to_string(),
                            message,
                            logs: self.service_log_tail(name, 20).await,
                        });
                    }
                    Some(
                        ServiceUpdateStatusStateEnum::PAUSED
                        | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED,
                    ) => {
                        return Err(EngineError::UpdatePaused {
                            service: name.to_string(),
                            message,
                            logs: self.service_log_tail(name, 20).await,
                        });
                    }
                    Some(_) => {
                        last = format!("update in progress: {message}");
                        false
                    }
                };
            if settled {
                let tasks = self.service_tasks(name).await?;
                let running = tasks.iter().filter(|t| t.is_running()).count() as u64;
                let busy = tasks
                    .iter()
                    .any(|t| t.desired == "running" && t.state != "running");
                if running == replicas && !busy {
                    return Ok(());
                }
                last = match tasks
                    .iter()
                    .find(|t| t.desired == "running" && !t.is_running())
                {
                    Some(t) => format!(
                        "{running} of {replicas} tasks running; task {} is {}: {}",
                        t.slot, t.state, t.message
                    ),
                    None => format!("{running} of {replicas} tasks running"),
                };
                if let Some(failed) = tasks
                    .iter()
                    .find(|t| t.state == "failed" || t.state == "rejected")
                {
                    last = format!("{last}; a task {}: {}", failed.state, failed.message);
                }
            }
            if Instant::now() > deadline {
                return Err(EngineError::ServiceUnready {
                    service: name.to_string(),
                    seconds: timeout.as_secs(),
                    last,
                    logs: self.service_log_tail(name, 20).await,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Copies image `tag` from this engine to `to` (save here, load there: only what `to`
    /// lacks is unpacked, and nothing goes through a registry).
    pub async fn copy_image(&self, tag: &str, to: &Engine) -> Result<()> {
        let saved = self.docker.export_image(tag);
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut load = to.docker.import_image_stream(options, saved, None);
        while let Some(item) = load.next().await {
            let item = item.map_err(EngineError::api(format!("cannot load image {tag}")))?;
            if let Some(e) = item.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Invalid(format!(
                    "loading image {tag} failed: {e}"
                )));
            }
        }
        Ok(())
    }
}

/// Standard base64 (with padding) for secret data: the one encoding the secret API takes,
/// too small a need for a crate.
mod base64_engine {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn encodes_like_rfc_4648() {
            for (plain, coded) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(super::encode(plain.as_bytes()), coded);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerSpec {
        ContainerSpec {
            name: "rfa-fn-echo-t1".into(),
            image: "rfa-fn-echo-t1:abc".into(),
            env: vec!["A=1".into()],
            labels: HashMap::from([(LABEL_SPEC.to_string(), "h1".to_string())]),
            network: "rfa-net-t1".into(),
            aliases: vec!["rfa-fn-echo-t1".into(), "other".into()],
            memory_bytes: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(64),
            hardened: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_function_service_is_hardened_dnsrr_and_rolls_start_first() {
        let s = ServiceSettings {
            replicas: 2,
            health: Some(vec!["/app/main".into(), "healthcheck".into()]),
            start_first: true,
            ..Default::default()
        };
        let spec = service_spec(&container(), &s);
        assert_eq!(spec.name.as_deref(), Some("rfa-fn-echo-t1"));
        assert_eq!(service_replicas(Some(&spec)), Some(2));
        let endpoint = spec.endpoint_spec.clone().unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        assert!(endpoint.ports.is_none(), "a function publishes nothing");
        let update = spec.update_config.clone().unwrap();
        assert_eq!(
            update.order,
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(
            update.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        let rollback = spec.rollback_config.clone().unwrap();
        assert_eq!(
            rollback.order,
            Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST)
        );
        let task = spec.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.user.as_deref(), Some("10001:10001"));
        assert_eq!(c.read_only, Some(true));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            c.health_check.unwrap().test.unwrap(),
            ["CMD", "/app/main", "healthcheck"]
        );
        let mounts = c.mounts.unwrap();
        let tmp = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/tmp"))
            .unwrap();
        assert_eq!(tmp.typ, Some(MountType::TMPFS));
        assert_eq!(
            tmp.tmpfs_options.as_ref().unwrap().size_bytes,
            Some(64 << 20)
        );
        let limits = task.resources.unwrap().limits.unwrap();
        assert_eq!(
            (limits.memory_bytes, limits.nano_cpus, limits.pids),
            (Some(64 << 20), Some(500_000_000), Some(64))
        );
        let net = &task.networks.unwrap()[0];
        assert_eq!(net.target.as_deref(), Some("rfa-net-t1"));
        assert_eq!(
            net.aliases.clone().unwrap(),
            ["other"],
            "the service's own name needs no alias"
        );
    }

    #[test]
    fn a_platform_service_publishes_in_host_mode_and_replaces_stop_first() {
        let s = ServiceSettings {
            replicas: 1,
            publish: Some((9999, 8080)),
            constraints: vec!["node.labels.x==true".into()],
            secrets: vec![SecretFile {
                id: "sid".into(),
                name: "rfa-token-t1-ab".into(),
                file: "rfa-token".into(),
            }],
            ..Default::default()
        };
        let spec = service_spec(&container(), &s);
        let port = &spec.endpoint_spec.unwrap().ports.unwrap()[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!(
            (port.published_port, port.target_port),
            (Some(9999), Some(8080))
        );
        assert_eq!(
            spec.update_config.unwrap().order,
            Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        let task = spec.task_template.unwrap();
        assert_eq!(
            task.placement.unwrap().constraints.unwrap(),
            ["node.labels.x==true"]
        );
        let secret = &task.container_spec.unwrap().secrets.unwrap()[0];
        let file = secret.file.clone().unwrap();
        assert_eq!(file.name.as_deref(), Some("rfa-token"));
        assert_eq!(
            (file.uid.as_deref(), file.mode),
            (Some("10001"), Some(0o400))
        );
    }
}
