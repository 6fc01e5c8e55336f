//! The record the CLI registers with the proxy for each deployed function
//! (`PUT /system/functions/<name>`) and the proxy lists (`GET /system/functions`).

use serde::{Deserialize, Serialize};

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
