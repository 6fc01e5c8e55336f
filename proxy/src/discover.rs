//! Replicas found by DNS. A route with `discover` (`<name>:<port>`: on Docker Swarm
//! `tasks.rfa-fn-<function>:6000`, whose addresses are the function's healthy tasks) gets its
//! upstreams from that name, looked up every [`INTERVAL`], never cached: the engine's DNS names
//! a replica only while it is healthy, and drops a leaving one before it is told to stop
//! (docs/SWARM.md), so calls follow the orchestrator without the gateway holding its socket.
//!
//! The looked-up upstreams live in memory only (the route file keeps what the CLI wrote); a
//! restarted gateway has them again after its first lookup. A failed lookup keeps the last
//! answer; [`FAILURES_BEFORE_EMPTY`] in a row empty it (the name is gone: no replica is
//! healthy).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::routes::RouteTable;

/// How often every `discover` name is looked up.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// Failed lookups in a row (one per [`INTERVAL`]) after which a name's replicas are taken as
/// gone. Docker's DNS answers "no such name" for a service with no healthy task.
pub const FAILURES_BEFORE_EMPTY: u32 = 4;

/// Looks a `host:port` up.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, name: &str) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send;
}

/// The system's resolver (`getaddrinfo`, through tokio): inside a container on an engine's
/// network, the engine's DNS.
#[derive(Debug, Clone, Copy)]
pub struct SystemDns;

impl Resolve for SystemDns {
    async fn resolve(&self, name: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host(name).await?.collect())
    }
}

/// Consecutive failed lookups per `discover` name.
#[derive(Default)]
pub struct Failures(HashMap<String, u32>);

/// One round: looks up every route's `discover` name and gives the route the addresses found.
/// Returns how many routes changed.
pub async fn refresh<R: Resolve>(routes: &RouteTable, dns: &R, failures: &mut Failures) -> usize {
    let mut changed = 0;
    let names: Vec<(String, String)> = routes
        .all()
        .into_iter()
        .filter_map(|r| r.discover.map(|d| (r.name, d)))
        .collect();
    failures
        .0
        .retain(|name, _| names.iter().any(|(_, d)| d == name));
    for (function, name) in names {
        let found = match dns.resolve(&name).await {
            Ok(addrs) => {
                failures.0.remove(&name);
                let mut upstreams: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
                upstreams.sort();
                upstreams.dedup();
                upstreams
            }
            Err(e) => {
                let count = failures.0.entry(name.clone()).or_default();
                *count += 1;
                if *count < FAILURES_BEFORE_EMPTY {
                    tracing::debug!(function = %function, %name, error = %e, "lookup failed; keeping the replicas found before");
                    continue;
                }
                if *count == FAILURES_BEFORE_EMPTY {
                    tracing::info!(function = %function, %name, error = %e, "no replica found by DNS");
                }
                Vec::new()
            }
        };
        if routes.set_discovered(&function, &name, found) {
            changed += 1;
        }
    }
    changed
}

/// Looks `function`'s `discover` name up once now and gives its route what it found: the
/// admin API does this when a route is put, so that a function answers from the moment its
/// deploy returns rather than from the next round. A failed lookup changes nothing (the next
/// round tries again). Returns whether the route changed.
pub async fn lookup_once<R: Resolve>(
    routes: &RouteTable,
    dns: &R,
    function: &str,
    name: &str,
) -> bool {
    match dns.resolve(name).await {
        Ok(addrs) if !addrs.is_empty() => {
            let mut upstreams: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
            upstreams.sort();
            upstreams.dedup();
            routes.set_discovered(function, name, upstreams)
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!(%function, %name, error = %e, "lookup at put failed; the next round tries again");
            false
        }
    }
}

/// Refreshes every [`INTERVAL`] until the gateway stops (the task ends with the runtime).
pub fn spawn<R: Resolve>(state: crate::SharedState, dns: R) {
    tokio::spawn(async move {
        let mut failures = Failures::default();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let changed = refresh(&state.routes, &dns, &mut failures).await;
            if changed > 0 {
                state.metrics.set_service_counts(&state.routes.all());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rfa_wire::route::{FunctionKind, FunctionRoute};

    use super::*;

    /// Answers from a table the test changes; a missing name fails like "no such name".
    #[derive(Default)]
    struct FakeDns(Mutex<HashMap<String, Vec<SocketAddr>>>);

    impl FakeDns {
        fn set(&self, name: &str, addrs: &[&str]) {
            self.0.lock().unwrap().insert(
                name.to_string(),
                addrs.iter().map(|a| a.parse().unwrap()).collect(),
            );
        }
        fn forget(&self, name: &str) {
            self.0.lock().unwrap().remove(name);
        }
    }

    impl Resolve for FakeDns {
        async fn resolve(&self, name: &str) -> std::io::Result<Vec<SocketAddr>> {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .ok_or_else(|| std::io::Error::other("Name or service not known"))
        }
    }

    fn route(name: &str, discover: Option<&str>, upstreams: &[&str]) -> FunctionRoute {
        FunctionRoute {
            name: name.into(),
            kind: FunctionKind::Http,
            upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
            image: "img".into(),
            deployed_at: "2026-12-03T00:00:00Z".into(),
            queue: None,
            run: None,
            power: Default::default(),
            discover: discover.map(String::from),
            previous: None,
        }
    }

    #[tokio::test]
    async fn a_put_route_finds_its_replicas_at_once_and_a_failed_lookup_changes_nothing() {
        let table = RouteTable::load(None).unwrap();
        let svc = "tasks.rfa-fn-hello:6000";
        table.put(route("hello", Some(svc), &[])).unwrap();
        let dns = FakeDns::default();
        assert!(
            !lookup_once(&table, &dns, "hello", svc).await,
            "no such name yet"
        );
        assert!(table.get("hello").unwrap().upstreams.is_empty());
        dns.set(svc, &["10.0.1.9:6000", "10.0.1.8:6000", "10.0.1.9:6000"]);
        assert!(lookup_once(&table, &dns, "hello", svc).await);
        assert_eq!(
            table.get("hello").unwrap().upstreams,
            ["10.0.1.8:6000", "10.0.1.9:6000"]
        );
        // A name the route no longer has is not applied.
        assert!(!lookup_once(&table, &dns, "hello", "tasks.other:6000").await);
    }

    #[tokio::test]
    async fn routes_follow_their_names_and_keep_the_last_answer_through_short_failures() {
        let table = RouteTable::load(None).unwrap();
        let svc = "tasks.rfa-fn-hello:6000";
        table.put(route("hello", Some(svc), &[])).unwrap();
        table
            .put(route("fixed", None, &["rfa-fn-fixed:6000"]))
            .unwrap();
        let dns = FakeDns::default();
        let mut failures = Failures::default();

        dns.set(svc, &["10.0.1.7:6000", "10.0.1.5:6000"]);
        assert_eq!(refresh(&table, &dns, &mut failures).await, 1);
        assert_eq!(
            table.get("hello").unwrap().upstreams,
            ["10.0.1.5:6000", "10.0.1.7:6000"]
        );
        assert_eq!(table.get("fixed").unwrap().upstreams, ["rfa-fn-fixed:6000"]);
        assert_eq!(refresh(&table, &dns, &mut failures).await, 0, "unchanged");

        // A replica leaves the name: it leaves the route.
        dns.set(svc, &["10.0.1.7:6000"]);
        refresh(&table, &dns, &mut failures).await;
        assert_eq!(table.get("hello").unwrap().upstreams, ["10.0.1.7:6000"]);

        // Short failures keep the last answer; FAILURES_BEFORE_EMPTY of them empty it.
        dns.forget(svc);
        for _ in 1..FAILURES_BEFORE_EMPTY {
            refresh(&table, &dns, &mut failures).await;
            assert_eq!(table.get("hello").unwrap().upstreams, ["10.0.1.7:6000"]);
        }
        refresh(&table, &dns, &mut failures).await;
        assert!(table.get("hello").unwrap().upstreams.is_empty());

        // The CLI putting the route again (as a deploy does) keeps what was found.
        dns.set(svc, &["10.0.1.9:6000"]);
        refresh(&table, &dns, &mut failures).await;
        table.put(route("hello", Some(svc), &[])).unwrap();
        assert_eq!(table.get("hello").unwrap().upstreams, ["10.0.1.9:6000"]);
    }
}
