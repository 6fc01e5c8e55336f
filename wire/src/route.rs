//! The record the CLI registers with the proxy for each deployed function
//! (`PUT /system/functions/<name>`) and the proxy lists (`GET /system/functions`).

use serde::{Deserialize, Serialize};

pub use crate::scale::{Power, ScaleSpec};

/// How a function is invoked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Called synchronously, reverse-proxied.
    #[default]
    Http,
    /// `/functions/<name>` is queued through NATS and answered with 202.
    Async,
    /// A mainProcess service: several routes, async work and store events.
    Main,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Http => "http",
            FunctionKind::Async => "async",
            FunctionKind::Main => "main",
        }
    }
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One deployed function as the gateway knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRoute {
    pub name: String,
    pub kind: FunctionKind,
    /// `host:port` of each replica inside `rfa-net`; calls are spread over them.
    pub upstreams: Vec<String>,
    pub image: String,
    /// RFC 3339 time of the deployment.
    pub deployed_at: String,
    /// Async calls waiting and running, filled in by the gateway when it lists functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStats>,
    /// How the function's replicas run, as last deployed: what a platform restart recreates
    /// them from (absent in records written before rfaas kept it: such a function needs a
    /// deploy after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSpec>,
    /// Whether the replicas run, are paused or are stopped (scale to zero); the scaler sets it.
    #[serde(default, skip_serializing_if = "Power::is_running")]
    pub power: Power,
    /// `<name>:<port>` whose addresses are the replicas (Docker Swarm: `tasks.<service>:6000`):
    /// the gateway looks it up every 250 ms and uses the answer as `upstreams` (in memory; the
    /// record keeps what was registered). Absent: `upstreams` as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover: Option<String>,
    /// The version the last deploy (or rollback) replaced, for `proxyCli rollback`: one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousVersion>,
}

/// A version of a function that was replaced: its image and how it ran, enough to run it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PreviousVersion {
    pub image: String,
    /// RFC 3339 time it was deployed.
    pub deployed_at: String,
    pub run: RunSpec,
}

/// Everything needed to run a function's replicas again from its image, without its sources:
/// the deploy file's settings after validation. The platform's own settings (NATS and store
/// URLs, tracing) are not in it: they are the running platform's at the time of the restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    pub replicas: u32,
    /// The deploy file's `env`, in order, as `KEY=value`.
    #[serde(default)]
    pub env: Vec<String>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub max_inflight: u32,
    /// Autoscaling bounds and idle rules (deploy.json's `scale`); absent: fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleSpec>,
}

/// The state of a function's async-call queue.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Calls stored and not yet picked up by a replica.
    pub pending: u64,
    /// Calls a replica is running (delivered, not yet acknowledged).
    pub inflight: u64,
}
