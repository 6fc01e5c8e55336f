//! What every replica of one function looks like: its container spec, made the same way by the
//! CLI (deploy, restore) and the scaler (scale out, wake from stopped).

use rfa_wire::route::{FunctionKind, RunSpec};
use rfa_wire::{FUNCTION_PORT, PROXY_PORT, env};

use crate::docker::ContainerSpec;
use crate::instance::{
    Instance, LABEL_DEPLOYMENT, LABEL_FUNCTION, LABEL_KIND, LABEL_SPEC, LABEL_UPSTREAM, Role,
};

/// A function's replicas as its route record describes them, on one instance.
#[derive(Debug, Clone)]
pub struct FunctionTemplate {
    pub instance: Instance,
    pub name: String,
    pub kind: FunctionKind,
    pub image: String,
    pub run: RunSpec,
    /// What the platform gives every function (`RFAAS_NATS_URL`, `RFAAS_STORE_URL`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), as `KEY=value`.
    pub platform_env: Vec<String>,
}

impl FunctionTemplate {
    /// The spec every replica shares: image, environment (the function's name, kind, port,
    /// in-flight limit and the gateway's URL, then the platform's, then the deploy file's), limits, hardening.
    fn shared(&self) -> ContainerSpec {
        let mut env_vars = vec![
            format!("{}={}", env::FUNCTION_NAME, self.name),
            format!("{}={}", env::FUNCTION_KIND, self.kind),
            format!("{}={FUNCTION_PORT}", env::PORT),
            format!("{}={}", env::MAX_INFLIGHT, self.run.max_inflight),
            // Where `Ctx::call` reaches other functions: the gateway, by its name on the network.
            format!(
                "{}=http://{}:{PROXY_PORT}",
                env::GATEWAY_URL,
                self.instance.proxy()
            ),
        ];
        // Sorted: the CLI and the scaler read it from different places in different orders,
        // and equal replicas must have equal specs (on Swarm a different one is a rolling update).
        let mut platform_env = self.platform_env.clone();
        platform_env.sort();
        env_vars.extend(platform_env);
        env_vars.extend(self.run.env.iter().cloned());
        ContainerSpec {
            image: self.image.clone(),
            env: env_vars,
            network: self.instance.network(),
            memory_bytes: Some(self.run.memory_bytes),
            nano_cpus: Some(self.run.nano_cpus),
            pids_limit: Some(self.run.pids),
            host_gateway: true,
            hardened: true,
            ..Default::default()
        }
    }

    /// The hash a replica made from this template carries (`io.rfaas.spec`): equal hashes,
    /// equal replicas. The replica count is not in it: a replica does not change when the
    /// function has more or fewer of them.
    pub fn spec_hash(&self) -> String {
        format!("{}-{}", self.shared().hash(), self.kind)
    }

    /// The network alias of replica `k` of `deployment`.
    pub fn alias(&self, deployment: &str, k: usize) -> String {
        format!("rfa-fn-{}-{deployment}-{k}", self.name)
    }

    /// `alias:port`, where the gateway reaches replica `k` of `deployment`.
    pub fn upstream(&self, deployment: &str, k: usize) -> String {
        format!("{}:{FUNCTION_PORT}", self.alias(deployment, k))
    }

    /// The full spec of replica `k` of `deployment`, in the container `container_name`.
    pub fn replica(&self, deployment: &str, k: usize, container_name: &str) -> ContainerSpec {
        let mut labels = self.instance.labels(Role::Function);
        labels.insert(LABEL_FUNCTION.into(), self.name.clone());
        labels.insert(LABEL_KIND.into(), self.kind.to_string());
        labels.insert(LABEL_SPEC.into(), self.spec_hash());
        labels.insert(LABEL_DEPLOYMENT.into(), deployment.to_string());
        labels.insert(LABEL_UPSTREAM.into(), self.upstream(deployment, k));
        ContainerSpec {
            name: container_name.to_string(),
            aliases: vec![self.alias(deployment, k)],
            labels,
            ..self.shared()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{Replica, check_ours};

    fn template() -> FunctionTemplate {
        FunctionTemplate {
            instance: Instance::new(Some("t1".into())).unwrap(),
            name: "echo".into(),
            kind: FunctionKind::Http,
            image: "rfa-fn-echo-t1:abc".into(),
            run: RunSpec {
                replicas: 2,
                env: vec!["GREETING=hi".into()],
                memory_bytes: 64 << 20,
                nano_cpus: 500_000_000,
                pids: 64,
                max_inflight: 4,
                scale: None,
            },
            platform_env: vec!["RFAAS_NATS_URL=nats://rfa-nats-t1:4222".into()],
        }
    }

    #[test]
    fn a_replica_spec_carries_what_the_replica_is_read_back_from() {
        let t = template();
        let spec = t.replica("0a1b2c3d", 1, "rfa-fn-echo-1-t1-0a1b2c3d");
        assert_eq!(spec.name, "rfa-fn-echo-1-t1-0a1b2c3d");
        assert_eq!(spec.aliases, ["rfa-fn-echo-0a1b2c3d-1"]);
        assert_eq!(spec.network, "rfa-net-t1");
        assert!(spec.hardened && spec.host_gateway && spec.engine_socket.is_none());
        assert_eq!(
            (spec.memory_bytes, spec.nano_cpus, spec.pids_limit),
            (Some(64 << 20), Some(500_000_000), Some(64))
        );
        assert_eq!(
            spec.env,
            [
                "RFAAS_FUNCTION_NAME=echo",
                "RFAAS_FUNCTION_KIND=http",
                "RFAAS_PORT=6000",
                "RFAAS_MAX_INFLIGHT=4",
                "RFAAS_GATEWAY_URL=http://rfa-proxy-t1:9999",
                "RFAAS_NATS_URL=nats://rfa-nats-t1:4222",
                "GREETING=hi",
            ]
        );
        assert_eq!(check_ours(Some(&spec.labels), "t1"), Ok(()));
        let r = Replica::from_labels(&spec.name, "", &spec.labels, "running").unwrap();
        assert_eq!(
            (r.function.as_str(), r.deployment.as_str(), r.index),
            ("echo", "0a1b2c3d", 1)
        );
        assert_eq!(r.upstream, "rfa-fn-echo-0a1b2c3d-1:6000");
        assert_eq!(r.spec, t.spec_hash());
    }

    #[test]
    fn the_spec_hash_follows_the_replica_not_the_count() {
        let t = template();
        let mut more = template();
        more.run.replicas = 5;
        assert_eq!(t.spec_hash(), more.spec_hash());
        let mut other_env = template();
        other_env.run.env.push("X=1".into());
        assert_ne!(t.spec_hash(), other_env.spec_hash());
        let mut other_image = template();
        other_image.image = "rfa-fn-echo-t1:def".into();
        assert_ne!(t.spec_hash(), other_image.spec_hash());
        let mut other_kind = template();
        other_kind.kind = FunctionKind::Async;
        assert_ne!(t.spec_hash(), other_kind.spec_hash());
        assert_eq!(
            t.replica("a", 0, "x").labels.get(LABEL_SPEC),
            t.replica("b", 3, "y").labels.get(LABEL_SPEC)
        );
    }
}
