//! A platform instance: the names, labels and volumes of one rfaas platform's engine objects.
//! The default instance uses the plain names of the contract (`rfa-net`, `rfa-proxy`, …); a named
//! one suffixes every object with `-<name>` and labels it `io.rfaas.instance=<name>`.

use std::collections::HashMap;

use crate::EngineError;

pub const LABEL_MANAGED: &str = "io.rfaas.managed";
pub const LABEL_ROLE: &str = "io.rfaas.role";
pub const LABEL_INSTANCE: &str = "io.rfaas.instance";
pub const LABEL_FUNCTION: &str = "io.rfaas.function";
pub const LABEL_SPEC: &str = "io.rfaas.spec";
/// On the proxy: the base image the platform was started on (function images use it too).
pub const LABEL_BASE: &str = "io.rfaas.base";
pub const LABEL_KIND: &str = "io.rfaas.kind";
pub const LABEL_DEPLOYMENT: &str = "io.rfaas.deployment";
/// On a function replica: the `alias:port` the gateway reaches it at.
pub const LABEL_UPSTREAM: &str = "io.rfaas.upstream";

pub const DEFAULT: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Proxy,
    Store,
    Nats,
    Function,
    Base,
    Scaler,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::Store => "store",
            Role::Nats => "nats",
            Role::Function => "function",
            Role::Base => "base",
            Role::Scaler => "scaler",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    name: Option<String>,
}

impl Instance {
    /// `None` or `"default"` is the default instance.
    pub fn new(name: Option<String>) -> Result<Instance, EngineError> {
        let name = name.filter(|n| !n.is_empty() && n != DEFAULT);
        if let Some(n) = &name {
            let ok = n.len() <= 32
                && n.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(EngineError::Invalid(format!(
                    "instance name '{n}' is not valid: use 1 to 32 lowercase letters, digits or '-', \
                     starting with a letter or digit"
                )));
            }
        }
        Ok(Instance { name })
    }

    /// The label value: the name, or `default`.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT)
    }

    pub fn is_default(&self) -> bool {
        self.name.is_none()
    }

    /// `base` for the default instance, `base-<name>` otherwise.
    pub fn object(&self, base: &str) -> String {
        match &self.name {
            Some(n) => format!("{base}-{n}"),
            None => base.to_string(),
        }
    }

    pub fn network(&self) -> String {
        self.object("rfa-net")
    }
    pub fn proxy(&self) -> String {
        self.object("rfa-proxy")
    }
    pub fn store(&self) -> String {
        self.object("rfa-store")
    }
    pub fn nats(&self) -> String {
        self.object("rfa-nats")
    }
    pub fn store_volume(&self) -> String {
        self.object("rfa-store-data")
    }
    pub fn nats_volume(&self) -> String {
        self.object("rfa-nats-data")
    }
    pub fn proxy_volume(&self) -> String {
        self.object("rfa-proxy-data")
    }
    /// The scaler's container (alias `rfa-scaler` on the instance's own network).
    pub fn scaler(&self) -> String {
        self.object("rfa-scaler")
    }
    /// The platform's containers by role, in start order: NATS, the store, the gateway, the
    /// scaler.
    pub fn platform_containers(&self) -> [(Role, String); 4] {
        [
            (Role::Nats, self.nats()),
            (Role::Store, self.store()),
            (Role::Proxy, self.proxy()),
            (Role::Scaler, self.scaler()),
        ]
    }
    /// The scaler's small volume: its admin token file.
    pub fn scaler_volume(&self) -> String {
        self.object("rfa-scaler-data")
    }

    /// Container name of replica `k` (0-based) of function `name`.
    pub fn function_container(&self, name: &str, k: usize) -> String {
        if k == 0 {
            self.object(&format!("rfa-fn-{name}"))
        } else {
            self.object(&format!("rfa-fn-{name}-{k}"))
        }
    }

    /// The image repository of function `name`'s images in this instance: `rfa-fn-<name>`, or
    /// `rfa-fn-<name>-<instance>`. Each instance tags its own, so pruning one instance never
    /// removes an image another still runs or would restore (a function name has no `-`, so
    /// the two never collide). Equal content shares the image's layers either way.
    pub fn function_image(&self, name: &str) -> String {
        self.object(&format!("rfa-fn-{name}"))
    }

    /// Labels of an object of this instance in `role`.
    pub fn labels(&self, role: Role) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_ROLE.to_string(), role.as_str().to_string()),
            (LABEL_INSTANCE.to_string(), self.label().to_string()),
        ])
    }

    /// Label filters selecting this instance's objects (optionally of one role).
    pub fn filters(&self, role: Option<Role>) -> HashMap<String, Vec<String>> {
        let mut labels = vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_INSTANCE}={}", self.label()),
        ];
        if let Some(role) = role {
            labels.push(format!("{LABEL_ROLE}={}", role.as_str()));
        }
        HashMap::from([("label".to_string(), labels)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let d = Instance::new(None).unwrap();
        assert_eq!(d.network(), "rfa-net");
        assert_eq!(d.function_container("method2", 0), "rfa-fn-method2");
        assert_eq!(d.function_container("method2", 2), "rfa-fn-method2-2");
        let t = Instance::new(Some("t1".into())).unwrap();
        assert_eq!(t.proxy(), "rfa-proxy-t1");
        assert_eq!(t.function_container("m", 1), "rfa-fn-m-1-t1");
        assert_eq!(t.label(), "t1");
        assert!(Instance::new(Some("Bad_Name".into())).is_err());
        assert!(Instance::new(Some("default".into())).unwrap().is_default());
        assert_eq!(t.scaler(), "rfa-scaler-t1");
        assert_eq!(d.scaler(), "rfa-scaler");
    }
}
