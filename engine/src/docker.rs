//! Every conversation with the Docker engine goes through this module (bollard over the local
//! socket). Callers speak in rfaas terms (a container spec, a build context, label filters); this
//! module turns them into API calls and engine errors into messages that say what to do.
//!
//! It is long on purpose: it is the one seam to the engine, one method per engine operation
//! rfaas uses, and keeping them together keeps every engine call in one file. Function replicas
//! are handled through [`crate::FunctionEngine`] (its bridge implementation, [`crate::Bridge`],
//! calls the methods here), platform objects (images, networks, volumes, the platform's own
//! containers, logs) through [`Engine`] directly.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EndpointIpamConfig,
    EndpointSettings, HostConfig, ImageSummary, Ipam, IpamConfig, Mount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::error::{EngineError, Result, is_conflict, is_not_found, is_not_modified};

/// How long a container restarted by [`Engine::recreate_network`] has to stop.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// A container moved by [`Engine::recreate_network`].
struct Member {
    id: String,
    name: String,
    /// Whether it had an endpoint on the network (not: detached by an earlier, unfinished move).
    attached: bool,
    /// Running or paused: restarted once moved.
    running: bool,
    paused: bool,
    aliases: Vec<String>,
    /// An address it was given on purpose (kept); others get a new one.
    fixed_address: Option<String>,
}

/// A connected Docker engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
}

/// What to run: everything rfaas sets on a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub network: String,
    pub aliases: Vec<String>,
    /// `(host ip, host port, container port)`; host port 0 lets Docker choose.
    pub publish: Option<(String, u16, u16)>,
    /// `(volume name, mount path)`.
    pub volumes: Vec<(String, String)>,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Map `host.docker.internal` to the host.
    pub host_gateway: bool,
    /// Run as the non-root user rfaas images carry ([`crate::UID`]) with a read-only
    /// root filesystem (a small `noexec,nosuid` tmpfs at `/tmp`), every capability dropped and
    /// `no-new-privileges`.
    pub hardened: bool,
    /// Files put into the container after it is created and before it starts (into one of its
    /// volumes when the root is read-only). Not part of the spec's hash.
    pub files: Vec<ContainerFile>,
    /// The engine's own socket, bind-mounted at [`ENGINE_SOCKET`] with its group added to the
    /// container's user. Only the scaler gets it; it is the one bind mount rfaas ever makes.
    pub engine_socket: Option<EngineSocket>,
}

/// The engine's socket as a container gets it (see [`ContainerSpec::engine_socket`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSocket {
    /// The socket's path on the host.
    pub host_path: String,
    /// The socket file's group, added to the container's (non-root) user so it may connect.
    pub gid: u32,
}

/// Where a container given the engine's socket finds it.
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";

impl EngineSocket {
    /// The socket of the engine this process talks to (`DOCKER_HOST`, or the default), with
    /// its group; an error saying why a container cannot be given it (`DOCKER_HOST` is not a
    /// unix socket, or the socket is not there).
    pub fn of_host() -> Result<EngineSocket> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let path = if host.is_empty() {
            ENGINE_SOCKET.to_string()
        } else if let Some(path) = host.strip_prefix("unix://") {
            path.to_string()
        } else {
            return Err(EngineError::Invalid(format!(
                "DOCKER_HOST is {host}, not a unix socket: the engine's socket cannot be \
                 bind-mounted into a container from here. Run proxyCli on the engine's own host \
                 with DOCKER_HOST unset (or unix:///var/run/docker.sock)"
            )));
        };
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(&path).map_err(|source| EngineError::Io {
            what: format!("cannot read the engine's socket {path}"),
            source,
        })?;
        if !meta.file_type().is_socket() {
            return Err(EngineError::Invalid(format!(
                "{path} (the engine's socket per DOCKER_HOST) is not a socket"
            )));
        }
        Ok(EngineSocket {
            host_path: path,
            gid: meta.gid(),
        })
    }
}

impl ContainerSpec {
    /// A hash of everything in the spec that shapes the running container (not its name,
    /// labels or files), so a changed spec (new image, flag, limit) is recreated.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        if self.hardened {
            // A change to what hardening means recreates the containers that have the old one.
            h.update(format!("hardened:{}:{}|", crate::UID, TMPFS_OPTIONS));
        }
        if let Some(socket) = &self.engine_socket {
            h.update(format!(
                "socket:{}:{}:{ENGINE_SOCKET}|",
                socket.host_path, socket.gid
            ));
        }
        h.update(format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.image,
            self.cmd,
            self.env,
            self.network,
            self.aliases,
            self.publish,
            self.volumes,
            (
                self.memory_bytes,
                self.nano_cpus,
                self.pids_limit,
                self.hardened
            )
        ));
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A file given to a container through the engine's archive API, e.g. a secret that must not
/// show in `docker inspect` as an environment variable would.
#[derive(Clone)]
pub struct ContainerFile {
    /// The directory it goes into (it must exist in the container).
    pub dir: String,
    pub name: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Owner (uid and gid).
    pub owner: u64,
}

impl std::fmt::Debug for ContainerFile {
    /// Leaves the contents out: they may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerFile")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("bytes", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// The `/tmp` every hardened container gets: the only writable path besides its `/data` volume.
pub const TMPFS_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=64m,mode=1777";

impl Engine {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and agrees on an API
    /// version; fails with one line naming the socket and how to start Docker.
    pub async fn connect() -> Result<Engine> {
        let socket = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let unreachable = |e: &dyn std::fmt::Display| EngineError::Unreachable {
            socket: socket.clone(),
            reason: e.to_string(),
        };
        // `connect_with_defaults` honours DOCKER_HOST (unix://, tcp://, http://);
        // `connect_with_local_defaults` would ignore it and always use the local socket.
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&e))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        docker.ping().await.map_err(|e| unreachable(&e))?;
        Ok(Engine { docker })
    }

    // ---- images -------------------------------------------------------------------------

    pub async fn image_exists(&self, tag: &str) -> Result<bool> {
        match self.docker.inspect_image(tag).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(EngineError::api(format!("cannot inspect image {tag}"))(e)),
        }
    }

    /// The id of the image `tag`, if it is on this machine.
    pub async fn image_id(&self, tag: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(tag).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(EngineError::api(format!("cannot inspect image {tag}"))(e)),
        }
    }

    /// Builds `context` (a tar with a Dockerfile at its root) as `tag`. Every line the build
    /// prints goes to `progress`; any error item fails the build with the engine's words.
    pub async fn build_image(
        &self,
        tag: &str,
        context: Vec<u8>,
        mut progress: impl FnMut(&str),
    ) -> Result<()> {
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut last_lines: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::Build {
                tag: tag.to_string(),
                message: e.to_string(),
                output: String::new(),
            })?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Build {
                    tag: tag.to_string(),
                    message: err,
                    output: format!("\n{}", last_lines.join("\n")),
                });
            }
            if let Some(line) = info.stream {
                let line = line.trim_end();
                if !line.is_empty() {
                    progress(line);
                    last_lines.push(line.to_string());
                    if last_lines.len() > 5 {
                        last_lines.remove(0);
                    }
                }
            }
        }
        if !self.image_exists(tag).await? {
            return Err(EngineError::Build {
                tag: tag.to_string(),
                message: "the build ended without an image".to_string(),
                output: String::new(),
            });
        }
        Ok(())
    }

    pub async fn list_images(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<ImageSummary>> {
        let options = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_images(Some(options))
            .await
            .map_err(EngineError::api("cannot list images"))
    }

    /// Removes an image by tag or id; `Ok(false)` when it is in use or already gone.
    pub async fn remove_image(&self, image: &str) -> Result<bool> {
        let options = RemoveImageOptionsBuilder::default().build();
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(false),
            Err(e) => Err(EngineError::api(format!("cannot remove image {image}"))(e)),
        }
    }

    // ---- networks and volumes -----------------------------------------------------------

    /// Creates the bridge network `name` unless it exists (looked up first: the engine would
    /// happily create a second one with the same name).
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<bool> {
        if !self.networks_named(name).await?.is_empty() {
            return Ok(false);
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(EngineError::api(format!("cannot create network {name}")))?;
        Ok(true)
    }

    /// Makes bridge network `name` again, as it was, with the same containers on it: every
    /// container attached to it (running, paused or stopped), and every container matching
    /// `members` that was made for it but is on no network at all (left so by an earlier
    /// repair that stopped part way). Keeps the network's driver, labels, options, subnet and gateway, and each
    /// container's aliases and any address it was given; the others get a new address from the
    /// same subnet, so every container that ran is restarted (SIGTERM, SIGKILL after 10 s) and
    /// no connection made on the old network is left hanging. Paused containers are thawed for
    /// the move and frozen again after their restart. Returns the names of the containers moved.
    ///
    /// What it is for: after the engine is switched into or out of swarm mode, its embedded DNS
    /// answers "no such name" on bridge networks that existed at the time, until they are made
    /// again (docs/RELIABILITY.md, "DNS repair"). Calls to the containers fail while it runs.
    pub async fn recreate_network(
        &self,
        name: &str,
        members: HashMap<String, Vec<String>>,
    ) -> Result<Vec<String>> {
        let network = match self.docker.inspect_network(name, None).await {
            Ok(n) => Some(n),
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                return Err(EngineError::api(format!("cannot inspect network {name}"))(
                    e,
                ));
            }
        };
        let on_network = HashMap::from([("network".to_string(), vec![name.to_string()])]);
        let mut candidates = self.list_containers(on_network).await?;
        for c in self.list_containers(members).await? {
            let detached = c
                .network_settings
                .as_ref()
                .and_then(|s| s.networks.as_ref())
                .is_none_or(|n| n.is_empty());
            let made_for_it = c
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref())
                == Some(name);
            if detached && made_for_it && !candidates.iter().any(|k| k.id == c.id) {
                candidates.push(c);
            }
        }
        // What each container had on the network, read before anything changes.
        let mut moved = Vec::new();
        for c in candidates {
            let Some(id) = c.id else { continue };
            let Some(info) = self.inspect(&id).await? else {
                continue;
            };
            let endpoint = info
                .network_settings
                .as_ref()
                .and_then(|s| s.networks.as_ref())
                .and_then(|n| n.get(name))
                .cloned();
            let state = info.state.clone().unwrap_or_default();
            let paused = state.paused == Some(true);
            let short_id: String = id.chars().take(12).collect();
            let aliases: Vec<String> = endpoint
                .as_ref()
                .and_then(|e| e.aliases.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|a| *a != short_id)
                .collect();
            moved.push(Member {
                name: info
                    .name
                    .as_deref()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or(short_id),
                id,
                attached: endpoint.is_some(),
                running: state.running == Some(true),
                paused,
                aliases,
                fixed_address: endpoint
                    .and_then(|e| e.ipam_config)
                    .and_then(|c| c.ipv4_address)
                    .filter(|a| !a.is_empty()),
            });
        }
        for m in moved.iter().filter(|m| m.paused) {
            self.unpause(&m.id).await?;
        }
        for m in moved.iter().filter(|m| m.attached) {
            let request = NetworkDisconnectRequest {
                container: m.id.clone(),
                force: Some(true),
            };
            match self.docker.disconnect_network(name, request).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(EngineError::api(format!(
                        "cannot disconnect {} from network {name}",
                        m.name
                    ))(e));
                }
            }
        }
        let mut create = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            ..Default::default()
        };
        if let Some(n) = network {
            if let Some(id) = &n.id {
                match self.docker.remove_network(id).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(EngineError::api(format!("cannot remove network {name}"))(e));
                    }
                }
            }
            create.driver = n.driver.or(create.driver);
            create.labels = n.labels;
            create.options = n.options;
            create.internal = n.internal;
            create.attachable = n.attachable;
            create.enable_ipv6 = n.enable_ipv6.filter(|v| *v);
            create.ipam = n.ipam.map(|ipam| Ipam {
                driver: ipam.driver,
                options: ipam.options,
                config: ipam.config.map(|configs| {
                    configs
                        .into_iter()
                        .map(|c| IpamConfig {
                            subnet: c.subnet,
                            ip_range: c.ip_range,
                            gateway: c.gateway,
                            auxiliary_addresses: None,
                        })
                        .collect()
                }),
            });
        }
        self.docker
            .create_network(create)
            .await
            .map_err(EngineError::api(format!("cannot create network {name}")))?;
        for m in &moved {
            let request = NetworkConnectRequest {
                container: m.id.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: (!m.aliases.is_empty()).then(|| m.aliases.clone()),
                    ipam_config: m.fixed_address.clone().map(|a| EndpointIpamConfig {
                        ipv4_address: Some(a),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            };
            self.docker
                .connect_network(name, request)
                .await
                .map_err(EngineError::api(format!(
                    "cannot connect {} to network {name}",
                    m.name
                )))?;
        }
        // Connections made on the old network hang (the peers' addresses changed): every
        // container that ran starts afresh, and reconnects by name.
        for m in moved.iter().filter(|m| m.running) {
            self.restart(&m.id, RESTART_GRACE).await?;
        }
        for m in moved.iter().filter(|m| m.paused) {
            self.pause(&m.id).await?;
        }
        Ok(moved.into_iter().map(|m| m.name).collect())
    }

    /// The networks matching `filters`.
    async fn list_networks(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<bollard::models::Network>> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(filters)
            .build();
        self.docker
            .list_networks(Some(options))
            .await
            .map_err(EngineError::api("cannot list networks"))
    }

    /// Whether a network named exactly `name` exists (an overlay's removal is asynchronous:
    /// it stays listed for a moment after the engine accepted it).
    pub async fn network_exists(&self, name: &str) -> Result<bool> {
        Ok(!self.networks_named(name).await?.is_empty())
    }

    /// Ids of networks whose name is exactly `name`.
    async fn networks_named(&self, name: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        Ok(self
            .list_networks(&filters)
            .await?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect())
    }

    /// Removes the networks matching `filters`; returns their names.
    pub async fn remove_networks(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.list_networks(&filters).await? {
            if let Some(id) = n.id {
                match self.docker.remove_network(&id).await {
                    Ok(()) => removed.push(n.name.unwrap_or(id)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(EngineError::api("cannot remove network")(e)),
                }
            }
        }
        Ok(removed)
    }

    pub async fn ensure_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<bool> {
        if self.docker.inspect_volume(name).await.is_ok() {
            return Ok(false);
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(EngineError::api(format!("cannot create volume {name}")))?;
        Ok(true)
    }

    /// The volumes matching `filters`.
    async fn list_volumes(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<bollard::models::Volume>> {
        let options = ListVolumesOptionsBuilder::default()
            .filters(filters)
            .build();
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(EngineError::api("cannot list volumes"))?;
        Ok(list.volumes.unwrap_or_default())
    }

    /// The `io.rfaas.instance` label of every rfaas volume (one entry per volume).
    pub async fn list_volume_instances(&self) -> Result<Vec<String>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", crate::instance::LABEL_MANAGED)],
        )]);
        Ok(self
            .list_volumes(&filters)
            .await?
            .into_iter()
            .filter_map(|v| v.labels.get(crate::instance::LABEL_INSTANCE).cloned())
            .collect())
    }

    /// Removes the volumes matching `filters`; returns their names.
    pub async fn remove_volumes(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.list_volumes(&filters).await? {
            let options = RemoveVolumeOptionsBuilder::default().build();
            match self.docker.remove_volume(&v.name, Some(options)).await {
                Ok(()) => removed.push(v.name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(EngineError::api(format!("cannot remove volume {}", v.name))(e));
                }
            }
        }
        Ok(removed)
    }

    // ---- containers ---------------------------------------------------------------------

    /// Containers (running or not) matching `filters`.
    pub async fn list_containers(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(EngineError::api("cannot list containers"))
    }

    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(EngineError::api(format!("cannot inspect container {name}"))(e)),
        }
    }

    /// Creates and starts a container from `spec`.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<()> {
        let mut host = HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: spec.memory_bytes,
            memory_swap: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            pids_limit: spec.pids_limit,
            init: Some(false),
            mounts: Some(
                spec.volumes
                    .iter()
                    .map(|(volume, path)| Mount {
                        target: Some(path.clone()),
                        source: Some(volume.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        // Nothing here ever asks for more: no privileged mode, no host namespaces, no devices,
        // no bind mounts but the engine's socket for the scaler, so none of it is set.
        host.privileged = Some(false);
        // Only the instance's own network: never the host's (or the default bridge).
        host.network_mode = Some(spec.network.clone());
        let mut user = None;
        if let Some(socket) = &spec.engine_socket {
            if let Some(mounts) = host.mounts.as_mut() {
                mounts.push(Mount {
                    target: Some(ENGINE_SOCKET.to_string()),
                    source: Some(socket.host_path.clone()),
                    typ: Some(MountType::BIND),
                    ..Default::default()
                });
            }
            host.group_add = Some(vec![socket.gid.to_string()]);
        }
        if spec.hardened {
            host.readonly_rootfs = Some(true);
            host.cap_drop = Some(vec!["ALL".to_string()]);
            host.security_opt = Some(vec!["no-new-privileges:true".to_string()]);
            host.tmpfs = Some(HashMap::from([(
                "/tmp".to_string(),
                TMPFS_OPTIONS.to_string(),
            )]));
            // Explicit, so an image that forgot its USER line still runs non-root.
            let uid = crate::UID;
            user = Some(format!("{uid}:{uid}"));
        }
        if spec.host_gateway {
            host.extra_hosts = Some(vec!["host.docker.internal:host-gateway".to_string()]);
        }
        let mut exposed = None;
        if let Some((ip, host_port, port)) = &spec.publish {
            let key = format!("{port}/tcp");
            let host_port = if *host_port == 0 {
                String::new()
            } else {
                host_port.to_string()
            };
            host.port_bindings = Some(HashMap::from([(
                key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(host_port),
                }]),
            )]));
            exposed = Some(vec![key]);
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            user,
            cmd: if spec.cmd.is_empty() {
                None
            } else {
                Some(spec.cmd.clone())
            },
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            exposed_ports: exposed,
            stop_timeout: Some(30),
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings {
                        aliases: Some(spec.aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(EngineError::api(format!(
                "cannot create container {}",
                spec.name
            )))?;
        if let Err(e) = self.put_files(&spec.name, &spec.files).await {
            self.remove_container(&spec.name).await.ok();
            return Err(e);
        }
        let start_result = self.docker.start_container(&spec.name, None).await;
        if let Err(e) = start_result {
            let message = e.to_string();
            self.remove_container(&spec.name).await.ok();
            if message.contains("port is already allocated")
                || message.contains("address already in use")
            {
                let port = spec.publish.as_ref().map(|p| p.1).unwrap_or_default();
                return Err(EngineError::PortInUse {
                    name: spec.name.clone(),
                    port,
                });
            }
            return Err(EngineError::api(format!(
                "cannot start container {}",
                spec.name
            ))(e));
        }
        Ok(())
    }

    /// Writes `files` into the container `name` (created or running), each replacing what was
    /// there.
    pub async fn put_files(&self, name: &str, files: &[ContainerFile]) -> Result<()> {
        for file in files {
            let tar =
                crate::archive::single_file(&file.name, &file.contents, file.mode, file.owner)
                    .map_err(|source| EngineError::Io {
                        what: "cannot pack a file for a container".to_string(),
                        source,
                    })?;
            let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
                .path(&file.dir)
                .build();
            self.docker
                .upload_to_container(name, Some(options), bollard::body_full(tar.into()))
                .await
                .map_err(EngineError::api(format!(
                    "cannot write {}/{} into container {name}",
                    file.dir, file.name
                )))?;
        }
        Ok(())
    }

    /// Sends `signal` (e.g. `SIGHUP`) to the container's main process.
    pub async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let options = bollard::query_parameters::KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker
            .kill_container(name, Some(options))
            .await
            .map_err(EngineError::api(format!(
                "cannot send {signal} to container {name}"
            )))
    }

    /// Starts a created or stopped container; one already running is fine.
    pub async fn start(&self, name: &str) -> Result<()> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(EngineError::api(format!("cannot start container {name}"))(
                e,
            )),
        }
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace` (whole seconds, rounded up).
    /// `Ok(false)` when it is gone; one already stopped is fine.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<bool> {
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(seconds).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) if is_not_modified(&e) => Ok(true),
            Err(e) => Err(EngineError::api(format!("cannot stop container {name}"))(e)),
        }
    }

    /// Restarts a container: SIGTERM, SIGKILL after `grace` (whole seconds), then start.
    pub async fn restart(&self, name: &str, grace: Duration) -> Result<()> {
        let options = bollard::query_parameters::RestartContainerOptionsBuilder::default()
            .t(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX))
            .build();
        self.docker
            .restart_container(name, Some(options))
            .await
            .map_err(EngineError::api(format!("cannot restart container {name}")))
    }

    /// Freezes every process of a running container (cgroup freezer); its memory stays.
    pub async fn pause(&self, name: &str) -> Result<()> {
        self.docker
            .pause_container(name)
            .await
            .map_err(EngineError::api(format!("cannot pause container {name}")))
    }

    /// Thaws a paused container.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        self.docker
            .unpause_container(name)
            .await
            .map_err(EngineError::api(format!("cannot resume container {name}")))
    }

    /// Stops (SIGTERM, then SIGKILL after `grace`) and removes a container; gone already is fine.
    pub async fn stop_and_remove(&self, name: &str, grace: Duration) -> Result<()> {
        if !self.stop(name, grace).await? {
            return Ok(());
        }
        self.remove_container(name).await
    }

    /// Removes a container at once (killing it if it runs); gone already is fine.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(EngineError::api(format!("cannot remove container {name}"))(
                e,
            )),
        }
    }

    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let options = bollard::query_parameters::RenameContainerOptionsBuilder::default()
            .name(to)
            .build();
        self.docker
            .rename_container(from, options)
            .await
            .map_err(EngineError::api(format!(
                "cannot rename container {from} to {to}"
            )))
    }

    /// The container's address on `network`.
    pub async fn ip_on(&self, name: &str, network: &str) -> Result<Option<String>> {
        Ok(self
            .inspect(name)
            .await?
            .and_then(|info| ip_of(info, network)))
    }

    /// The host port the container publishes `port` on.
    pub async fn published_port(&self, name: &str, port: u16) -> Result<Option<u16>> {
        Ok(self
            .inspect(name)
            .await?
            .and_then(|info| published_port_of(&info, port)))
    }

    /// A container's log output as the engine sends it, piece by piece (a piece is usually
    /// one line, but may hold several or part of one). `follow` keeps it open until the
    /// container stops; `tail` keeps only the last lines; `since` (Unix seconds) skips older
    /// ones; `timestamps` starts every line with its RFC 3339 time and a space.
    pub fn log_stream(
        &self,
        name: &str,
        request: LogRequest,
    ) -> impl futures_util::Stream<Item = Result<LogChunk>> + Send + Unpin + 'static {
        let mut options = LogsOptionsBuilder::default()
            .follow(request.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(request.timestamps)
            .tail(
                &request
                    .tail
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "all".to_string()),
            );
        if let Some(since) = request.since {
            options = options.since(i32::try_from(since).unwrap_or(i32::MAX));
        }
        let name = name.to_string();
        self.docker
            .logs(&name, Some(options.build()))
            .map(move |item| match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => Ok(LogChunk {
                    stderr: true,
                    bytes: message.to_vec(),
                }),
                Ok(output) => Ok(LogChunk {
                    stderr: false,
                    bytes: output.into_bytes().to_vec(),
                }),
                Err(e) => Err(EngineError::api(format!("cannot read the logs of {name}"))(
                    e,
                )),
            })
    }

    /// The last `n` log lines of a container, for error reports.
    pub async fn tail_logs(&self, name: &str, n: usize) -> String {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        collect_logs(self.docker.logs(name, Some(options))).await
    }
}

/// A log stream (a container's or a service's) as text, up to its first error.
pub(crate) async fn collect_logs(
    stream: impl futures_util::Stream<
        Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
    >,
) -> String {
    let mut out = String::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(Ok(item)) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&item.into_bytes()));
    }
    out
}

/// A log line read with `timestamps` (`2024-05-01T12:34:56.5Z text`) → its stamp and its text;
/// `None` for a line that does not start with a UTC stamp.
pub fn split_log_stamp(raw: &str) -> Option<(&str, &str)> {
    raw.split_once(' ')
        .filter(|(stamp, _)| stamp.ends_with('Z'))
}

/// A stamp from [`split_log_stamp`] as a key that sorts in time order. The engine's RFC 3339
/// stamps drop trailing zeros of the fraction (`.5Z`, `.123456789Z`), so text order is not time
/// order; the key pads the fraction to 9 digits.
pub fn log_stamp_sort_key(stamp: &str) -> String {
    let body = stamp.strip_suffix('Z').unwrap_or(stamp);
    let (secs, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{secs}.{fraction:0<9}")
}

/// What [`Engine::log_stream`] asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRequest {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<u64>,
    pub timestamps: bool,
}

/// A piece of a container's log output, from its stdout or its stderr.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub stderr: bool,
    pub bytes: Vec<u8>,
}

/// The host port `info`'s container publishes `port` on.
pub fn published_port_of(info: &ContainerInspectResponse, port: u16) -> Option<u16> {
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&format!("{port}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_deref())
        .and_then(|p| p.parse().ok())
}

/// The container's address on `network`, from an inspect result.
pub fn ip_of(info: ContainerInspectResponse, network: &str) -> Option<String> {
    info.network_settings
        .and_then(|s| s.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
}
