//! `GET /system/health` (token): whether the platform's names resolve here, on the gateway's
//! network, through the engine's DNS. The answer ([`PlatformHealth`]) lists the store, NATS and
//! scaler names from the gateway's configuration and each running function's names from its
//! route; `startFaas` repairs the network when a platform name does not resolve
//! (docs/RELIABILITY.md, "DNS repair").

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use rfa_wire::health::{NameCheck, NameRole, PlatformHealth};
use rfa_wire::route::{FunctionRoute, Power};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::discover::{Resolve, SystemDns};
use crate::{ProxyError, SharedState, auth};

/// Longest one lookup may take before it counts as not resolving.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<PlatformHealth>, ProxyError> {
    auth::check(&state.token, &headers)?;
    let names = names_of(&state.config, &state.routes.all());
    Ok(Json(check(names, SystemDns).await))
}

/// A name to look up: `host:port`, whose it is, and for which function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub name: String,
    pub role: NameRole,
    pub function: Option<String>,
}

/// The names the gateway depends on: the platform's from `config` (an address given as an IP
/// needs no lookup and is left out), then those of every running function in `routes` (its
/// `discover` name, or the host names among its upstreams).
pub fn names_of(config: &Config, routes: &[FunctionRoute]) -> Vec<Name> {
    let mut names = Vec::new();
    let platform = [
        (Some(config.store_url.as_str()), NameRole::Store, 80),
        (
            config.nats_url.as_deref(),
            NameRole::Nats,
            rfa_wire::NATS_PORT,
        ),
        (config.scaler_url.as_deref(), NameRole::Scaler, 80),
    ];
    for (url, role, default_port) in platform {
        // NATS takes a comma-separated list of servers.
        for one in url.into_iter().flat_map(|u| u.split(',')) {
            if let Some(name) = host_port(one.trim(), default_port) {
                names.push(Name {
                    name,
                    role,
                    function: None,
                });
            }
        }
    }
    for route in routes.iter().filter(|r| r.power == Power::Running) {
        let of_route: Vec<String> = match &route.discover {
            Some(d) => vec![d.clone()],
            None => route
                .upstreams
                .iter()
                .filter(|u| !is_ip_address(u))
                .cloned()
                .collect(),
        };
        names.extend(of_route.into_iter().map(|name| Name {
            name,
            role: NameRole::Function,
            function: Some(route.name.clone()),
        }));
    }
    names
}

/// `host:port` of `url` when its host is a name (not an IP address).
fn host_port(url: &str, default_port: u16) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?;
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    Some(format!("{host}:{}", uri.port_u16().unwrap_or(default_port)))
}

/// Whether `upstream` (`host:port`) names its host by address.
fn is_ip_address(upstream: &str) -> bool {
    upstream.parse::<std::net::SocketAddr>().is_ok()
}

/// Looks every name up at once (each within [`LOOKUP_TIMEOUT`]) and summarises.
pub async fn check<R: Resolve + Clone>(names: Vec<Name>, dns: R) -> PlatformHealth {
    let mut lookups = JoinSet::new();
    for (i, n) in names.iter().enumerate() {
        let (dns, name) = (dns.clone(), n.name.clone());
        lookups.spawn(async move {
            let answer = match tokio::time::timeout(LOOKUP_TIMEOUT, dns.resolve(&name)).await {
                Ok(Ok(addrs)) if !addrs.is_empty() => Ok(()),
                Ok(Ok(_)) => Err("no address".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
            };
            (i, answer)
        });
    }
    let mut answers = vec![Err("not looked up".to_string()); names.len()];
    while let Some(done) = lookups.join_next().await {
        if let Ok((i, answer)) = done {
            answers[i] = answer;
        }
    }
    let checks = names
        .into_iter()
        .zip(answers)
        .map(|(n, answer)| NameCheck {
            name: n.name,
            role: n.role,
            function: n.function,
            resolves: answer.is_ok(),
            error: answer.err(),
        })
        .collect();
    let health = PlatformHealth::of(checks);
    for n in health.unresolved_platform_names() {
        tracing::warn!(name = %n.name, role = ?n.role, error = n.error.as_deref().unwrap_or(""), "a platform name does not resolve on the gateway's network");
    }
    health
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rfa_wire::health::DnsState;
    use rfa_wire::route::FunctionKind;

    use super::*;

    #[derive(Clone)]
    struct Known(Arc<HashSet<String>>);

    impl Resolve for Known {
        async fn resolve(&self, name: &str) -> std::io::Result<Vec<SocketAddr>> {
            if self.0.contains(name) {
                Ok(vec!["10.0.0.2:1".parse().unwrap()])
            } else {
                Err(std::io::Error::other("no such name"))
            }
        }
    }

    fn config() -> Config {
        Config {
            port: 0,
            token: "t".into(),
            token_file: None,
            store_url: "http://rfa-store-x:5001".into(),
            nats_url: Some("nats://rfa-nats-x:4222, nats://10.1.1.1:4222".into()),
            data_dir: None,
            max_body: 1,
            max_async_body: 1,
            upstream_timeout: Duration::from_secs(1),
            limits: Default::default(),
            scaler_url: Some("http://rfa-scaler-x:7070/".into()),
        }
    }

    fn route(
        name: &str,
        upstreams: &[&str],
        discover: Option<&str>,
        power: Power,
    ) -> FunctionRoute {
        FunctionRoute {
            name: name.into(),
            kind: FunctionKind::Http,
            upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
            image: "i".into(),
            deployed_at: "t".into(),
            queue: None,
            run: None,
            power,
            discover: discover.map(str::to_string),
            previous: None,
        }
    }

    #[test]
    fn names_are_the_platforms_then_running_functions() {
        let routes = [
            route(
                "a",
                &["rfa-fn-a-1:6000", "10.0.0.9:6000"],
                None,
                Power::Running,
            ),
            route("b", &[], Some("tasks.rfa-fn-b:6000"), Power::Running),
            route("c", &["rfa-fn-c-1:6000"], None, Power::Stopped),
        ];
        let names: Vec<(String, NameRole)> = names_of(&config(), &routes)
            .into_iter()
            .map(|n| (n.name, n.role))
            .collect();
        assert_eq!(
            names,
            [
                ("rfa-store-x:5001".to_string(), NameRole::Store),
                ("rfa-nats-x:4222".to_string(), NameRole::Nats),
                ("rfa-scaler-x:7070".to_string(), NameRole::Scaler),
                ("rfa-fn-a-1:6000".to_string(), NameRole::Function),
                ("tasks.rfa-fn-b:6000".to_string(), NameRole::Function),
            ]
        );
    }

    #[tokio::test]
    async fn a_platform_name_that_does_not_resolve_is_broken_a_function_one_is_not() {
        let routes = [route("a", &["rfa-fn-a-1:6000"], None, Power::Running)];
        let names = names_of(&config(), &routes);
        let all: HashSet<String> = names.iter().map(|n| n.name.clone()).collect();

        let health = check(names.clone(), Known(Arc::new(all.clone()))).await;
        assert_eq!(health.dns, DnsState::Ok);
        assert!(health.names.iter().all(|n| n.resolves));

        let mut without_replica = all.clone();
        without_replica.remove("rfa-fn-a-1:6000");
        let health = check(names.clone(), Known(Arc::new(without_replica))).await;
        assert_eq!(health.dns, DnsState::Ok);
        assert!(!health.names[3].resolves);
        assert_eq!(health.names[3].function.as_deref(), Some("a"));

        let mut without_store = all;
        without_store.remove("rfa-store-x:5001");
        let health = check(names, Known(Arc::new(without_store))).await;
        assert_eq!(health.dns, DnsState::Broken);
        let lost: Vec<&str> = health
            .unresolved_platform_names()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(lost, ["rfa-store-x:5001"]);
        assert_eq!(health.names[0].error.as_deref(), Some("no such name"));
    }
}
