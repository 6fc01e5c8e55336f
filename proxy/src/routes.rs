//! The route table: which replicas serve each function. The CLI writes it through the admin API;
//! it is persisted to `<data_dir>/routes.json` (written to a temporary file, synced, then renamed
//! over the old one) so a restarted gateway serves the same functions at once.
//!
//! A replica that could not be reached is ejected (passive health checking): calls go round
//! robin over the others, or, when every replica of a function is ejected, over all of them as
//! before. It stays ejected until it answers its health check again (`health.rs` probes it) or a
//! new route for its function (the CLI writes one whenever its replicas change) clears it.
//!
//! Beside each route lives its function's [`Live`] state (`load.rs`): the load counters and the
//! power watch that held calls wait on. It outlives route replacements (the scaler rewrites a
//! route at every scale step), so counts never restart while the function stays registered.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rfa_wire::route::{FunctionKind, FunctionRoute};

use crate::ProxyError;
use crate::load::{InFlight, Live};

const FILE: &str = "routes.json";

/// One registered function: its route and its live state.
#[derive(Clone)]
struct Entry {
    route: FunctionRoute,
    live: Arc<Live>,
}

impl Entry {
    fn new(route: FunctionRoute) -> Entry {
        Entry {
            live: Arc::new(Live::new(route.power)),
            route,
        }
    }
}

/// What [`RouteTable::pick`] chose for one call.
pub struct Picked {
    pub route: FunctionRoute,
    /// The replica (`host:port`) to send the call to; `None` while the function is paused or
    /// stopped (the call is held, never sent into a frozen container).
    pub upstream: Option<String>,
    pub live: Arc<Live>,
    /// A sync call, counted in flight from the moment it was picked (under the table's lock, so
    /// a route change to `paused` either sees it or is seen by it); `None` for an async-kind
    /// function (its calls are queued, and counted when accepted).
    pub call: Option<InFlight>,
}

pub struct RouteTable {
    file: Option<PathBuf>,
    routes: RwLock<BTreeMap<String, Entry>>,
    next: AtomicUsize,
    /// Upstreams (`host:port`) skipped until they answer their health check again, with the
    /// time each was ejected.
    ejected: Mutex<HashMap<String, Instant>>,
}

impl RouteTable {
    /// Loads the persisted table from `data_dir`, or starts empty.
    pub fn load(data_dir: Option<&Path>) -> anyhow::Result<RouteTable> {
        let file = data_dir.map(|d| d.join(FILE));
        let routes = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read(path)?;
                let list: Vec<FunctionRoute> = serde_json::from_slice(&text)?;
                list.into_iter()
                    .map(|r| (r.name.clone(), Entry::new(r)))
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        Ok(RouteTable {
            file,
            routes: RwLock::new(routes),
            next: AtomicUsize::new(0),
            ejected: Mutex::new(HashMap::new()),
        })
    }

    pub fn get(&self, name: &str) -> Option<FunctionRoute> {
        self.read().get(name).map(|e| e.route.clone())
    }

    /// The route of `name` and its live state.
    pub fn get_live(&self, name: &str) -> Option<(FunctionRoute, Arc<Live>)> {
        self.read()
            .get(name)
            .map(|e| (e.route.clone(), e.live.clone()))
    }

    /// The live state of `name`.
    pub fn live(&self, name: &str) -> Option<Arc<Live>> {
        self.read().get(name).map(|e| e.live.clone())
    }

    pub fn all(&self) -> Vec<FunctionRoute> {
        self.read().values().map(|e| e.route.clone()).collect()
    }

    /// Every route with its live state.
    pub fn all_live(&self) -> Vec<(FunctionRoute, Arc<Live>)> {
        self.read()
            .values()
            .map(|e| (e.route.clone(), e.live.clone()))
            .collect()
    }

    /// Picks the upstream (`host:port`) for the next call to `name`, round robin over the
    /// replicas that are not ejected (over all of them if every one is), and counts a sync call
    /// in flight. A paused or stopped function gets no upstream (the caller holds the call).
    pub fn pick(&self, name: &str) -> Result<Picked, ProxyError> {
        self.pick_for(name, None)
    }

    /// Picks again for a call held while its function was not running (`held` stays counted:
    /// as forwarded once the function runs).
    pub fn repick(&self, name: &str, held: Option<InFlight>) -> Result<Picked, ProxyError> {
        self.pick_for(name, Some(held))
    }

    fn pick_for(&self, name: &str, held: Option<Option<InFlight>>) -> Result<Picked, ProxyError> {
        let routes = self.read();
        let entry = routes
            .get(name)
            .ok_or_else(|| ProxyError::UnknownFunction(name.to_string()))?;
        let route = &entry.route;
        let running = route.power.is_running();
        let call = match held {
            Some(mut call) => {
                if running && let Some(call) = call.as_mut() {
                    call.forwarded();
                }
                call
            }
            None => (route.kind != FunctionKind::Async).then(|| entry.live.begin(running)),
        };
        if !running {
            return Ok(Picked {
                route: route.clone(),
                upstream: None,
                live: entry.live.clone(),
                call,
            });
        }
        let n = route.upstreams.len();
        if n == 0 {
            return Err(ProxyError::NoReplica(name.to_string()));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let chosen = {
            let ejected = self.ejected();
            if ejected.is_empty() {
                i
            } else {
                (0..n)
                    .map(|k| (i + k) % n)
                    .find(|&j| !ejected.contains_key(&route.upstreams[j]))
                    .unwrap_or(i)
            }
        };
        Ok(Picked {
            route: route.clone(),
            upstream: Some(route.upstreams[chosen].clone()),
            live: entry.live.clone(),
            call,
        })
    }

    /// Another replica of `name` to retry a call on that could not reach any of `tried`: one
    /// that is neither ejected nor tried, or `None`.
    pub fn pick_other(&self, name: &str, tried: &[String]) -> Option<String> {
        let routes = self.read();
        let route = &routes.get(name)?.route;
        let ejected = self.ejected();
        let n = route.upstreams.len();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &route.upstreams[(i + k) % n])
            .find(|u| !tried.contains(u) && !ejected.contains_key(*u))
            .cloned()
    }

    /// Skips `upstream` (it could not be reached) until [`RouteTable::readmit`]; returns whether
    /// it was not ejected yet (then the caller starts checking its health).
    pub fn eject(&self, upstream: &str) -> bool {
        let mut ejected = self.ejected();
        if ejected.contains_key(upstream) {
            return false;
        }
        ejected.insert(upstream.to_string(), Instant::now());
        true
    }

    /// Sends calls to `upstream` again; returns how long it was ejected, if it was.
    pub fn readmit(&self, upstream: &str) -> Option<Duration> {
        self.ejected().remove(upstream).map(|since| since.elapsed())
    }

    /// Whether `upstream` is ejected now.
    pub fn is_ejected(&self, upstream: &str) -> bool {
        self.ejected().contains_key(upstream)
    }

    /// Whether some route still sends calls to `upstream`.
    pub fn is_routed(&self, upstream: &str) -> bool {
        self.read()
            .values()
            .any(|e| e.route.upstreams.iter().any(|u| u == upstream))
    }

    fn ejected(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.ejected.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a route; returns whether it is new. Persisted before it takes effect;
    /// then calls held for the function see its new power.
    pub fn put(&self, mut route: FunctionRoute) -> Result<bool, ProxyError> {
        let mut routes = self.write();
        let mut next = routes.clone();
        {
            // Its replicas were (re)placed: give each of them a fresh chance.
            let mut ejected = self.ejected();
            for upstream in &route.upstreams {
                ejected.remove(upstream);
            }
        }
        if let Some(old) = routes.get(&route.name) {
            // A route found by DNS keeps what its last lookup found until the next one.
            if route.discover.is_some()
                && route.discover == old.route.discover
                && route.upstreams.is_empty()
            {
                route.upstreams = old.route.upstreams.clone();
            }
        }
        let power = route.power;
        let created = !routes.contains_key(&route.name);
        let entry = match next.remove(&route.name) {
            Some(old) => Entry {
                route,
                live: old.live,
            },
            None => Entry::new(route),
        };
        let live = entry.live.clone();
        next.insert(entry.route.name.clone(), entry);
        self.persist(&next)?;
        *routes = next;
        drop(routes);
        live.set_power(power);
        Ok(created)
    }

    /// Gives the route of `function` the `upstreams` its `discover` name has now (in memory: the
    /// file keeps the registered record). Returns whether they changed; `false` also when the
    /// function is gone or is no longer discovered by that name.
    pub fn set_discovered(&self, function: &str, discover: &str, upstreams: Vec<String>) -> bool {
        let mut routes = self.write();
        let Some(entry) = routes.get_mut(function) else {
            return false;
        };
        if entry.route.discover.as_deref() != Some(discover) || entry.route.upstreams == upstreams {
            return false;
        }
        {
            let mut ejected = self.ejected();
            for upstream in &upstreams {
                ejected.remove(upstream);
            }
        }
        entry.route.upstreams = upstreams;
        true
    }

    /// Removes a route; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, ProxyError> {
        let mut routes = self.write();
        if !routes.contains_key(name) {
            return Ok(false);
        }
        let mut next = routes.clone();
        let removed = next.remove(name);
        self.persist(&next)?;
        *routes = next;
        drop(routes);
        if let Some(entry) = removed {
            entry.live.removed();
        }
        Ok(true)
    }

    fn persist(&self, routes: &BTreeMap<String, Entry>) -> Result<(), ProxyError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let list: Vec<&FunctionRoute> = routes.values().map(|e| &e.route).collect();
        let write = || -> std::io::Result<()> {
            let tmp = path.with_extension("json.tmp");
            let body = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&body)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| ProxyError::Persist(format!("{}: {e}", path.display())))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, upstreams: &[&str]) -> FunctionRoute {
        FunctionRoute {
            name: name.into(),
            kind: FunctionKind::Http,
            upstreams: upstreams.iter().map(|s| s.to_string()).collect(),
            image: "img".into(),
            deployed_at: "now".into(),
            queue: None,
            run: None,
            power: Default::default(),
            discover: None,
            previous: None,
        }
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let table = RouteTable::load(Some(dir.path())).unwrap();
        assert!(table.put(route("a", &["x:1"])).unwrap());
        assert!(!table.put(route("a", &["y:1", "z:1"])).unwrap());
        assert!(table.put(route("b", &["b:1"])).unwrap());
        assert!(table.remove("b").unwrap());
        assert!(!table.remove("b").unwrap());
        let again = RouteTable::load(Some(dir.path())).unwrap();
        assert_eq!(again.all(), vec![route("a", &["y:1", "z:1"])]);

        // The power is kept: a restarted gateway holds calls to a paused function at once.
        let mut paused = route("a", &["y:1"]);
        paused.power = rfa_wire::route::Power::Paused;
        again.put(paused.clone()).unwrap();
        let third = RouteTable::load(Some(dir.path())).unwrap();
        assert_eq!(third.all(), vec![paused]);
        assert_eq!(third.pick("a").unwrap().upstream, None);
    }

    #[test]
    fn picks_round_robin() {
        let table = RouteTable::load(None).unwrap();
        table.put(route("a", &["x:1", "y:1"])).unwrap();
        let picks: Vec<String> = (0..4)
            .map(|_| table.pick("a").unwrap().upstream.unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|p| *p == "x:1").count(), 2);
        assert!(matches!(
            table.pick("nope"),
            Err(ProxyError::UnknownFunction(_))
        ));
        table.put(route("e", &[])).unwrap();
        assert!(matches!(table.pick("e"), Err(ProxyError::NoReplica(_))));
    }

    #[test]
    fn a_paused_or_stopped_function_gets_no_upstream_and_its_call_counts_as_held() {
        let table = RouteTable::load(None).unwrap();
        let mut paused = route("a", &["x:1"]);
        paused.power = rfa_wire::route::Power::Paused;
        table.put(paused.clone()).unwrap();
        let picked = table.pick("a").unwrap();
        assert_eq!(picked.upstream, None);
        let live = picked.live.clone();
        assert_eq!((live.inflight(), live.forwarding()), (1, 0));

        // Still paused: picked again, still held.
        let again = table.repick("a", picked.call).unwrap();
        assert_eq!(again.upstream, None);
        assert_eq!((live.inflight(), live.forwarding()), (1, 0));

        // Running again (the counts survive the new route): forwarded.
        table.put(route("a", &["x:1"])).unwrap();
        let running = table.repick("a", again.call).unwrap();
        assert_eq!(running.upstream.as_deref(), Some("x:1"));
        assert_eq!((live.inflight(), live.forwarding()), (1, 1));
        assert!(Arc::ptr_eq(&live, &running.live));
        drop(running);
        assert_eq!((live.inflight(), live.calls()), (0, 1));

        // A stopped function with no replicas listed is held too, not a 502.
        let mut stopped = route("s", &[]);
        stopped.power = rfa_wire::route::Power::Stopped;
        table.put(stopped).unwrap();
        assert_eq!(table.pick("s").unwrap().upstream, None);

        // Async-kind functions' calls are queued, not counted in flight here.
        let mut queued = route("q", &["q:1"]);
        queued.kind = FunctionKind::Async;
        table.put(queued).unwrap();
        assert!(table.pick("q").unwrap().call.is_none());
    }

    #[test]
    fn unreachable_replicas_are_skipped_until_readmitted() {
        let table = RouteTable::load(None).unwrap();
        table.put(route("a", &["x:1", "y:1", "z:1"])).unwrap();
        assert!(table.eject("y:1"));
        assert!(!table.eject("y:1"), "ejected once, checked once");
        let picks: Vec<String> = (0..30)
            .map(|_| table.pick("a").unwrap().upstream.unwrap())
            .collect();
        assert!(!picks.contains(&"y:1".to_string()), "{picks:?}");
        assert!(picks.contains(&"x:1".to_string()) && picks.contains(&"z:1".to_string()));

        // a retry goes to a replica neither tried nor ejected, until none is left
        let other = table.pick_other("a", &["x:1".into()]).unwrap();
        assert_eq!(other, "z:1");
        assert_eq!(table.pick_other("a", &["x:1".into(), "z:1".into()]), None);
        assert_eq!(table.pick_other("nope", &[]), None);

        // every replica ejected: calls still go out, round robin over all
        table.eject("x:1");
        table.eject("z:1");
        let picks: Vec<String> = (0..30)
            .map(|_| table.pick("a").unwrap().upstream.unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|p| *p == "y:1").count(), 10);

        // a new route (replicas replaced) clears them
        table.put(route("a", &["x:1", "y:1", "z:1"])).unwrap();
        let picks: Vec<String> = (0..30)
            .map(|_| table.pick("a").unwrap().upstream.unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|p| *p == "y:1").count(), 10);

        // an ejection lasts until the replica is readmitted (its health check passed)
        table.eject("x:1");
        std::thread::sleep(Duration::from_millis(5));
        let picks: Vec<String> = (0..30)
            .map(|_| table.pick("a").unwrap().upstream.unwrap())
            .collect();
        assert!(!picks.contains(&"x:1".to_string()), "{picks:?}");
        assert!(table.readmit("x:1").is_some());
        assert!(table.readmit("x:1").is_none());
        let picks: Vec<String> = (0..30)
            .map(|_| table.pick("a").unwrap().upstream.unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|p| *p == "x:1").count(), 10);

        assert!(table.is_routed("x:1"));
        table.remove("a").unwrap();
        assert!(!table.is_routed("x:1"));
    }
}
