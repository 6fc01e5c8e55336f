//! `GET /system/health` (token): whether the platform's names resolve on its network, as the
//! gateway sees them. `startFaas` asks it and repairs the network when they do not (as after
//! the engine was switched into or out of swarm mode while a bridge-mode platform ran: its
//! embedded DNS then answers "no such name" for every container of that network until the
//! network is made again; docs/RELIABILITY.md, "DNS repair").

use serde::{Deserialize, Serialize};

/// The route, behind the admin token.
pub const PATH: &str = "/system/health";

/// What `GET /system/health` answers (always `200` to a caller with the token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformHealth {
    /// `broken` when the store's or NATS's name does not resolve.
    pub dns: DnsState,
    /// Every name the gateway looked up, platform names first.
    pub names: Vec<NameCheck>,
}

impl PlatformHealth {
    /// Summarises `names`: broken when the store's or NATS's name does not resolve (every
    /// platform has both). The others are reported, but alone never make it broken: a
    /// platform may run without its scaler (startFaas where the engine's socket cannot be
    /// mounted), and a replica that exited, or a Swarm service with no healthy task, has no
    /// name on purpose.
    pub fn of(names: Vec<NameCheck>) -> PlatformHealth {
        let broken = names.iter().any(|n| n.role.is_decisive() && !n.resolves);
        PlatformHealth {
            dns: if broken {
                DnsState::Broken
            } else {
                DnsState::Ok
            },
            names,
        }
    }

    /// The store's and NATS's names that do not resolve: what makes it broken.
    pub fn unresolved_platform_names(&self) -> impl Iterator<Item = &NameCheck> {
        self.names
            .iter()
            .filter(|n| n.role.is_decisive() && !n.resolves)
    }
}

/// Whether the platform's names resolve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DnsState {
    Ok,
    Broken,
}

/// Whose name it is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NameRole {
    Store,
    Nats,
    Scaler,
    /// A replica's name (bridge) or a function's `tasks.<service>` name (Swarm).
    Function,
}

impl NameRole {
    /// Whether a lost name of this role makes the platform's DNS broken.
    pub fn is_decisive(self) -> bool {
        matches!(self, NameRole::Store | NameRole::Nats)
    }
}

/// One looked-up name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NameCheck {
    /// `host:port` as the gateway uses it.
    pub name: String,
    pub role: NameRole,
    /// The function it belongs to (role `function`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub resolves: bool,
    /// Why it did not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(role: NameRole, resolves: bool) -> NameCheck {
        NameCheck {
            name: "x:1".into(),
            role,
            function: None,
            resolves,
            error: None,
        }
    }

    #[test]
    fn only_platform_names_make_it_broken() {
        let ok = PlatformHealth::of(vec![
            check(NameRole::Store, true),
            check(NameRole::Scaler, false),
            check(NameRole::Function, false),
        ]);
        assert_eq!(ok.dns, DnsState::Ok);
        assert_eq!(ok.unresolved_platform_names().count(), 0);
        let broken = PlatformHealth::of(vec![
            check(NameRole::Store, true),
            check(NameRole::Nats, false),
        ]);
        assert_eq!(broken.dns, DnsState::Broken);
        assert_eq!(
            broken.unresolved_platform_names().next().map(|n| n.role),
            Some(NameRole::Nats)
        );
        let json = serde_json::to_value(&broken).unwrap();
        assert_eq!(json["dns"], "broken");
        assert_eq!(json["names"][1]["role"], "nats");
    }
}
