//! A function replica as rfaas sees it, the label check that decides whether a container is one
//! of this instance's replicas, and the interface every engine implementation offers for them.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rfa_wire::route::FunctionKind;

use crate::error::EngineError;
use crate::instance::{
    LABEL_DEPLOYMENT, LABEL_FUNCTION, LABEL_INSTANCE, LABEL_KIND, LABEL_MANAGED, LABEL_ROLE,
    LABEL_SPEC, LABEL_UPSTREAM, Role,
};
use crate::template::FunctionTemplate;

/// Where a replica's processes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaState {
    Running,
    /// Frozen: its memory kept, no CPU; calls sent to it wait.
    Paused,
    /// Created and never started, or exited (stopped).
    Stopped,
    /// Anything else the engine reports (`restarting`, `removing`, `dead`), as it says it.
    Other(String),
}

impl ReplicaState {
    /// From the engine's state word (`running`, `paused`, `exited`, …).
    pub fn parse(state: &str) -> ReplicaState {
        match state {
            "running" => ReplicaState::Running,
            "paused" => ReplicaState::Paused,
            "created" | "exited" => ReplicaState::Stopped,
            other => ReplicaState::Other(other.to_string()),
        }
    }
}

/// One replica of a function, read from its container's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The container's name (`rfa-fn-<name>[-<k>][-<instance>]`, with `-<deployment>` while a
    /// roll-out has not renamed it yet).
    pub container: String,
    /// The container's id (empty when unknown).
    pub id: String,
    pub function: String,
    pub kind: FunctionKind,
    /// The deployment (roll-out) it belongs to: 8 hex digits.
    pub deployment: String,
    /// Its index `k` within the deployment.
    pub index: usize,
    /// `alias:port` the gateway reaches it at (`rfa-fn-<name>-<deployment>-<k>:6000`).
    pub upstream: String,
    /// The hash of the spec it was created from ([`FunctionTemplate::spec_hash`]).
    pub spec: String,
    pub state: ReplicaState,
}

impl Replica {
    /// The replica a container is, from its name, id, labels and state word; `None` when the
    /// labels do not make it one (no function name or upstream).
    pub fn from_labels(
        container: &str,
        id: &str,
        labels: &HashMap<String, String>,
        state: &str,
    ) -> Option<Replica> {
        let get = |key: &str| labels.get(key).map(String::as_str);
        let function = get(LABEL_FUNCTION).filter(|f| !f.is_empty())?;
        let upstream = get(LABEL_UPSTREAM).filter(|u| !u.is_empty())?;
        let deployment = get(LABEL_DEPLOYMENT).unwrap_or_default();
        let index = index_of(upstream, function, deployment).unwrap_or(0);
        Some(Replica {
            container: container.trim_start_matches('/').to_string(),
            id: id.to_string(),
            function: function.to_string(),
            kind: match get(LABEL_KIND) {
                Some("async") => FunctionKind::Async,
                Some("main") => FunctionKind::Main,
                _ => FunctionKind::Http,
            },
            deployment: deployment.to_string(),
            index,
            upstream: upstream.to_string(),
            spec: get(LABEL_SPEC).unwrap_or_default().to_string(),
            state: ReplicaState::parse(state),
        })
    }

    /// The replica a listed container is (see [`Replica::from_labels`]).
    pub fn from_summary(c: &crate::ContainerSummary) -> Option<Replica> {
        let name = c.names.as_ref()?.first()?;
        let state = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
        Replica::from_labels(
            name,
            c.id.as_deref().unwrap_or_default(),
            c.labels.as_ref()?,
            &state,
        )
    }

    /// The replica an inspected container is (see [`Replica::from_labels`]).
    pub fn from_inspect(c: &crate::ContainerInspectResponse) -> Option<Replica> {
        let labels = c.config.as_ref()?.labels.as_ref()?;
        let state = c
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_default();
        Replica::from_labels(
            c.name.as_deref().unwrap_or_default(),
            c.id.as_deref().unwrap_or_default(),
            labels,
            &state,
        )
    }

    pub fn is_running(&self) -> bool {
        self.state == ReplicaState::Running
    }

    /// The network alias, the upstream without its port.
    pub fn alias(&self) -> &str {
        self.upstream
            .rsplit_once(':')
            .map_or(self.upstream.as_str(), |(alias, _)| alias)
    }
}

/// `k` from an upstream `rfa-fn-<function>-<deployment>-<k>:<port>`.
fn index_of(upstream: &str, function: &str, deployment: &str) -> Option<usize> {
    let (alias, _) = upstream.rsplit_once(':')?;
    alias
        .strip_prefix(&format!("rfa-fn-{function}-{deployment}-"))?
        .parse()
        .ok()
}

/// Whether `labels` make a container one of instance `instance`'s function replicas: managed
/// by rfaas, in the function role, of that instance. `Err` says what is missing or different.
/// This is the check every [`FunctionEngine`] operation makes before it acts.
pub fn check_ours(labels: Option<&HashMap<String, String>>, instance: &str) -> Result<(), String> {
    let Some(labels) = labels else {
        return Err("it has no labels".to_string());
    };
    let get = |key: &str| labels.get(key).map(String::as_str);
    if get(LABEL_MANAGED) != Some("true") {
        return Err(format!("it is not labelled {LABEL_MANAGED}=true"));
    }
    match get(LABEL_ROLE) {
        Some(role) if role == Role::Function.as_str() => {}
        Some(role) => return Err(format!("its role is '{role}', not a function")),
        None => return Err(format!("it has no {LABEL_ROLE} label")),
    }
    match get(LABEL_INSTANCE) {
        Some(i) if i == instance => {}
        Some(i) => return Err(format!("it belongs to instance '{i}'")),
        None => return Err(format!("it has no {LABEL_INSTANCE} label")),
    }
    if get(LABEL_FUNCTION).is_none_or(str::is_empty) {
        return Err(format!("it has no {LABEL_FUNCTION} label"));
    }
    Ok(())
}

/// What every engine implementation does with a function's replicas (the bridge one now, a
/// Swarm one later). Every operation on an existing replica first looks the container up and
/// refuses ([`EngineError::NotOurs`]) anything that is not this instance's function replica,
/// whatever the caller passes.
pub trait FunctionEngine: Send + Sync {
    /// This instance's replicas, of one function or of all; in any state.
    fn list(
        &self,
        function: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Replica>, EngineError>> + Send;

    /// Creates and starts replica `k` of deployment `deployment` from `template`, named
    /// `container_name`. It is not healthy yet: see [`FunctionEngine::wait_healthy`].
    fn create(
        &self,
        template: &FunctionTemplate,
        deployment: &str,
        k: usize,
        container_name: &str,
    ) -> impl Future<Output = Result<Replica, EngineError>> + Send;

    /// Drains and removes a replica: resumed first if paused, then SIGTERM (the runtime drains
    /// its calls), SIGKILL after `grace`, then removed. Gone already is fine.
    fn remove(
        &self,
        replica: &Replica,
        grace: Duration,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Freezes a running replica.
    fn pause(&self, replica: &Replica) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Thaws a paused replica.
    fn resume(&self, replica: &Replica) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Stops a replica (SIGTERM, SIGKILL after `grace`), keeping its container; resumed first
    /// if paused.
    fn stop(
        &self,
        replica: &Replica,
        grace: Duration,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Starts a stopped replica again.
    fn start(&self, replica: &Replica) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Renames a replica's container (a roll-out gives new replicas the contract's names once
    /// the old ones are gone); returns it as renamed.
    fn rename(
        &self,
        replica: &Replica,
        to: &str,
    ) -> impl Future<Output = Result<Replica, EngineError>> + Send;

    /// Waits until the replica answers `/healthz`; fails fast, with its last log lines, if it
    /// exits or restarts, and after `timeout`.
    fn wait_healthy(
        &self,
        replica: &Replica,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// The last `tail` log lines of each replica of `function` (running, paused or stopped),
    /// merged oldest first, each with the replica it came from.
    fn recent_logs(
        &self,
        function: &str,
        tail: usize,
    ) -> impl Future<Output = Result<Vec<rfa_wire::dashboard::LogLine>, EngineError>> + Send;
}

/// Splits a log read with timestamps (`<RFC 3339> <text>` per line) into lines of `replica`.
/// A line the engine did not stamp keeps an empty time.
pub fn stamped_lines(replica: &str, stderr: bool, text: &str) -> Vec<rfa_wire::dashboard::LogLine> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (at, text) = crate::docker::split_log_stamp(line).unwrap_or(("", line));
            rfa_wire::dashboard::LogLine {
                replica: replica.to_string(),
                at: at.to_string(),
                stderr,
                text: text.trim_end_matches('\r').to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_lines_split_time_from_text() {
        let lines = stamped_lines(
            "rfa-fn-a-1",
            true,
            "2026-12-04T05:00:00.123456789Z hello world\r\n\nno stamp <b>\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].at, "2026-12-04T05:00:00.123456789Z");
        assert_eq!(lines[0].text, "hello world");
        assert!(lines[0].stderr);
        assert_eq!(
            (lines[1].at.as_str(), lines[1].text.as_str()),
            ("", "no stamp <b>")
        );
    }

    #[test]
    fn log_stamps_sort_in_time_order_whatever_their_fraction_length() {
        use crate::docker::log_stamp_sort_key as key;
        // The engine drops trailing zeros: as text, ".1234Z" sorts after ".123456789Z".
        let earlier = "2026-12-04T05:00:00.1234Z";
        let later = "2026-12-04T05:00:00.123456789Z";
        assert!(earlier > later);
        assert!(key(earlier) < key(later));
        assert!(key("2026-12-04T05:00:00Z") < key(earlier));
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn replica_labels(instance: &str) -> HashMap<String, String> {
        labels(&[
            (LABEL_MANAGED, "true"),
            (LABEL_ROLE, "function"),
            (LABEL_INSTANCE, instance),
            (LABEL_FUNCTION, "echo"),
            (LABEL_KIND, "async"),
            (LABEL_DEPLOYMENT, "0a1b2c3d"),
            (LABEL_UPSTREAM, "rfa-fn-echo-0a1b2c3d-2:6000"),
            (LABEL_SPEC, "abc"),
        ])
    }

    #[test]
    fn only_this_instances_function_replicas_pass_the_check() {
        assert_eq!(check_ours(Some(&replica_labels("t1")), "t1"), Ok(()));
        let why = |l: &HashMap<String, String>, i: &str| check_ours(Some(l), i).unwrap_err();
        assert_eq!(check_ours(None, "t1").unwrap_err(), "it has no labels");
        assert!(why(&labels(&[]), "t1").contains("not labelled io.rfaas.managed=true"));
        assert!(
            why(&replica_labels("other"), "t1").contains("belongs to instance 'other'"),
            "another instance's replica"
        );
        for (key, value, says) in [
            (LABEL_MANAGED, "false", "not labelled io.rfaas.managed=true"),
            (LABEL_ROLE, "proxy", "its role is 'proxy'"),
            (LABEL_ROLE, "scaler", "its role is 'scaler'"),
            (LABEL_FUNCTION, "", "no io.rfaas.function label"),
        ] {
            let mut l = replica_labels("t1");
            l.insert(key.to_string(), value.to_string());
            assert!(
                why(&l, "t1").contains(says),
                "{key}={value}: {}",
                why(&l, "t1")
            );
        }
        for key in [LABEL_MANAGED, LABEL_ROLE, LABEL_INSTANCE, LABEL_FUNCTION] {
            let mut l = replica_labels("t1");
            l.remove(key);
            assert!(check_ours(Some(&l), "t1").is_err(), "without {key}");
        }
    }

    #[test]
    fn a_replica_is_read_from_its_labels() {
        let r = Replica::from_labels("/rfa-fn-echo-2-t1", "id1", &replica_labels("t1"), "paused")
            .unwrap();
        assert_eq!(r.container, "rfa-fn-echo-2-t1");
        assert_eq!(r.function, "echo");
        assert_eq!(r.kind, FunctionKind::Async);
        assert_eq!(r.deployment, "0a1b2c3d");
        assert_eq!(r.index, 2);
        assert_eq!(r.alias(), "rfa-fn-echo-0a1b2c3d-2");
        assert_eq!(r.state, ReplicaState::Paused);
        assert_eq!(ReplicaState::parse("exited"), ReplicaState::Stopped);
        assert_eq!(ReplicaState::parse("created"), ReplicaState::Stopped);
        assert_eq!(
            ReplicaState::parse("restarting"),
            ReplicaState::Other("restarting".into())
        );
        let mut no_upstream = replica_labels("t1");
        no_upstream.remove(LABEL_UPSTREAM);
        assert_eq!(Replica::from_labels("x", "", &no_upstream, "running"), None);
    }
}
