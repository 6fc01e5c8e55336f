//! `rfa-engine`: rfaas's one seam to the container engine.
//!
//! Every call to Docker in rfaas is made here (bollard over the engine's socket), by the CLI and
//! by the scaler alike:
//! - [`Engine`] is the connected client for platform objects: images, networks, volumes, the
//!   platform's own containers, logs.
//! - [`FunctionEngine`] is the interface to a function's replicas (list, create, remove, pause,
//!   resume, stop, start, health), with one implementation per engine mode: [`Bridge`] (one host,
//!   one bridge network per instance). Every operation first checks that its target carries
//!   this instance's labels and the function role, and refuses anything else
//!   ([`EngineError::NotOurs`]): that check is the scaler's trust boundary.
//! - [`FunctionTemplate`] turns a function's route record into the [`ContainerSpec`] of one
//!   replica, so the CLI and the scaler create identical replicas.

pub mod archive;
mod bridge;
mod docker;
mod error;
pub mod instance;
mod replica;
mod swarm;
mod template;

pub use bridge::{Bridge, Reach};
pub use docker::{
    ContainerFile, ContainerSpec, ENGINE_SOCKET, Engine, EngineSocket, LogChunk, LogRequest,
    TMPFS_OPTIONS, ip_of, log_stamp_sort_key, published_port_of, split_log_stamp,
};
pub use error::{EngineError, Result};
pub use instance::{Instance, Role};
pub use replica::{FunctionEngine, Replica, ReplicaState, check_ours};
pub use swarm::{
    NodeInfo, STOP_GRACE, SecretFile, ServicePut, ServiceSettings, SwarmRole, TaskInfo,
    discover_name, function_service, images_label, service_spec,
};
pub use template::FunctionTemplate;

/// The engine's own types callers read (container and image lists, inspect results), so that
/// no other crate depends on bollard.
pub use bollard::models::{ContainerInspectResponse, ContainerSummary, ImageSummary, ServiceSpec};

/// The non-root user (and group) every rfaas container runs as; the base image's `passwd`
/// names it `rfaas`.
pub const UID: u64 = 10001;
